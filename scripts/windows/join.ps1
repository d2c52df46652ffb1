# nodeboot-script: join
# join.ps1: kubeadm join with a JoinConfiguration that never touches argv
# (criSocket npipe:////./pipe/containerd-containerd). The configuration arrives as
# data on stdin (read into NB_JOIN_CONFIG by the line ahead of this script, so
# script-block logging never sees it), goes to a file readable only by SYSTEM and
# Administrators, and is removed whatever happens. A failed join is undone with
# kubeadm reset -f. Inputs: NB_JOIN_CONFIG (secret), NB_KUBE_DIR.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $kube = if ($NB_KUBE_DIR) { $NB_KUBE_DIR } else { 'C:\k' }
    if (Test-Path -LiteralPath 'C:\etc\kubernetes\kubelet.conf') { $r.facts['joined'] = $true; return }
    if (-not $NB_JOIN_CONFIG) { throw 'no join configuration given (NB_JOIN_CONFIG)' }
    if (-not (Test-Path -LiteralPath "$kube\kubeadm.exe")) { throw "$kube\kubeadm.exe is missing: run the kubelet step first" }
    $cfg = Join-Path $kube ("nodeboot-join-{0}.yaml" -f [guid]::NewGuid().ToString('N'))
    try {
        New-Item -ItemType File -Path $cfg -Force | Out-Null
        # Owner-only before a byte is written: no inheritance, SYSTEM and Administrators only (by SID).
        $acl = Invoke-NbNative 'icacls.exe' @($cfg, '/inheritance:r', '/grant:r', '*S-1-5-18:F', '*S-1-5-32-544:F')
        if ($acl.ExitCode -ne 0) { throw "icacls on the join configuration failed (exit $($acl.ExitCode))" }
        [IO.File]::WriteAllText($cfg, $NB_JOIN_CONFIG, (New-Object Text.UTF8Encoding $false))
        $out = Invoke-NbNative "$kube\kubeadm.exe" @('join', '--config', $cfg, '-v=1')
    } finally {
        Remove-Item -LiteralPath $cfg -Force -ErrorAction SilentlyContinue
    }
    if ($out.ExitCode -eq 0) {
        # kubeadm started the kubelet (through StartKubelet.ps1, from the files it wrote); from now
        # on it also starts with the host.
        if ([string](Get-Service -Name kubelet).StartType -ne 'Automatic') { Set-Service -Name kubelet -StartupType Automatic }
        Add-NbChange $r 'kubeadm join'
        $r.facts['joined'] = $true
        return
    }
    $tail = (@($out.Output | Where-Object { $_.Trim() }) | Select-Object -Last 8) -join ' | '
    $reset = Invoke-NbNative "$kube\kubeadm.exe" @('reset', '-f', '--cri-socket', 'npipe:////./pipe/containerd-containerd')
    $r.facts['restored'] = ($reset.ExitCode -eq 0)
    if ($reset.ExitCode -eq 0) { throw "kubeadm join failed (exit $($out.ExitCode)); the host was reset with 'kubeadm reset -f'. kubeadm said: $tail" }
    throw "kubeadm join failed (exit $($out.ExitCode)) and 'kubeadm reset -f' failed too: run it on the host. kubeadm said: $tail"
}

