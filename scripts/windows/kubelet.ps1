# nodeboot-script: kubelet
# kubelet.ps1: kubelet.exe and kubeadm.exe in C:\k, a start script that reads
# kubeadm-flags.env with version-gated flags, the kubelet service (nssm when
# C:\k\nssm.exe is there, else sc.exe with kubelet's own --windows-service), restart
# on failure, and the firewall rule for TCP 10250. kubeadm join starts the service.
# Inputs: NB_KUBE_DIR, NB_ARTIFACTS_URL, NB_SERVICE_MANAGER (auto|nssm|sc).
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $kube = if ($NB_KUBE_DIR) { $NB_KUBE_DIR } else { 'C:\k' }
    $manager = if ($NB_SERVICE_MANAGER) { $NB_SERVICE_MANAGER } else { 'auto' }
    if ($manager -eq 'auto') { $manager = if (Test-Path -LiteralPath "$kube\nssm.exe") { 'nssm' } else { 'sc' } }
    if (@('nssm', 'sc') -notcontains $manager) { throw "NB_SERVICE_MANAGER must be auto, nssm or sc, not '$manager'" }
    foreach ($d in @($kube, 'C:\var\lib\kubelet\etc\kubernetes\pki', 'C:\etc\kubernetes\pki', 'C:\var\log\kubelet')) {
        if (-not (Test-Path -LiteralPath $d)) { New-Item -ItemType Directory -Force -Path $d | Out-Null; Add-NbChange $r "created $d" }
    }
    foreach ($exe in @('kubelet.exe', 'kubeadm.exe')) {
        if (Get-NbArtifact $NB_ARTIFACTS_URL $exe "$kube\$exe") { Add-NbChange $r "downloaded $exe" }
    }
    $version = ((Invoke-NbNative "$kube\kubelet.exe" @('--version')).Output -join ' ')
    $minor = Get-NbMinor $version
    if ($minor -lt 0) { throw "cannot read the kubelet version from '$version'" }
    $r.facts['kubelet_minor'] = $minor
    $start = @(
        '# written by nodeboot: starts the kubelet with kubeadm-flags.env, version-gated for kubelet 1.' + $minor,
        '$ErrorActionPreference = ''Stop''',
        "`$env:Path += ';$kube'",
        "`$flags = Get-NbKubeletArgs '$kube' $minor",
        "& '$kube\kubelet.exe' @flags"
    )
    $fn = (Get-Command Get-NbKubeletArgs).ScriptBlock.ToString()
    $body = "function Get-NbKubeletArgs {`r`n$fn`r`n}`r`n" + ($start -join "`r`n") + "`r`n"
    if (Set-NbFileContent "$kube\StartKubelet.ps1" $body) { Add-NbChange $r "wrote $kube\StartKubelet.ps1" }
    $svc = Get-Service -Name kubelet -ErrorAction SilentlyContinue
    if (-not $svc) {
        if ($manager -eq 'nssm') {
            $ps = "$env:SystemRoot\System32\WindowsPowerShell\v1.0\powershell.exe"
            foreach ($a in @(@('install', 'kubelet', $ps, '-ExecutionPolicy', 'Bypass', '-NoProfile', '-File', "$kube\StartKubelet.ps1"), @('set', 'kubelet', 'DependOnService', 'containerd'), @('set', 'kubelet', 'AppExit', 'Default', 'Restart'), @('set', 'kubelet', 'AppRestartDelay', '10000'), @('set', 'kubelet', 'Start', 'SERVICE_AUTO_START'))) {
                $out = Invoke-NbNative "$kube\nssm.exe" $a
                if ($out.ExitCode -ne 0) { throw "nssm $($a[0]) kubelet failed (exit $($out.ExitCode))" }
            }
        } else {
            $bin = "`"$kube\kubelet.exe`" --windows-service " + ((Get-NbKubeletArgs $kube $minor) -join ' ')
            $out = Invoke-NbNative 'sc.exe' @('create', 'kubelet', 'binPath=', $bin, 'start=', 'auto', 'depend=', 'containerd', 'DisplayName=', 'kubelet')
            if ($out.ExitCode -ne 0) { throw "sc.exe create kubelet failed (exit $($out.ExitCode))" }
        }
        Set-NbServiceRecovery 'kubelet'
        Add-NbChange $r "created the kubelet service ($manager, auto start, restart on failure)"
    }
    $r.facts['service_manager'] = $manager
    if (-not (Get-NetFirewallRule -Name 'nodeboot-kubelet-10250' -ErrorAction SilentlyContinue)) {
        New-NetFirewallRule -Name 'nodeboot-kubelet-10250' -DisplayName 'kubelet (TCP 10250)' -Direction Inbound -Protocol TCP -LocalPort 10250 -Action Allow | Out-Null
        Add-NbChange $r 'opened TCP 10250 in the firewall'
    }
}

