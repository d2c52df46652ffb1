# nodeboot-script: csi-proxy
# csi-proxy.ps1: csi-proxy.exe as the service csiproxy (auto start, restart on
# failure) and a check that its API pipes are up.
# Inputs: NB_KUBE_DIR, NB_ARTIFACTS_URL, NB_SHA256_PINS, NB_CSI_PIPES (comma-separated groups).
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $kube = if ($NB_KUBE_DIR) { $NB_KUBE_DIR } else { 'C:\k' }
    $groups = if ($NB_CSI_PIPES) { $NB_CSI_PIPES -split ',' } else { @('disk', 'volume', 'filesystem', 'smb') }
    $wanted = @($groups | ForEach-Object { "csi-proxy-$($_.Trim())-v1" })
    if (Get-NbMissingArtifact $NB_ARTIFACTS_URL 'csi-proxy.exe' "$kube\csi-proxy.exe" $NB_SHA256_PINS) { Add-NbChange $r 'downloaded csi-proxy.exe' }
    $svc = Get-Service -Name csiproxy -ErrorAction SilentlyContinue
    if (-not $svc) {
        New-Item -ItemType Directory -Force -Path 'C:\etc\kubernetes\logs' | Out-Null
        $bin = "`"$kube\csi-proxy.exe`" -windows-service -log_file=C:\etc\kubernetes\logs\csi-proxy.log -logtostderr=false"
        $out = Invoke-NbNative 'sc.exe' @('create', 'csiproxy', 'binPath=', $bin, 'start=', 'auto', 'DisplayName=', 'CSI Proxy')
        if ($out.ExitCode -ne 0) { throw "sc.exe create csiproxy failed (exit $($out.ExitCode))" }
        Set-NbServiceRecovery 'csiproxy'
        Add-NbChange $r 'created the csiproxy service (auto start, restart on failure)'
        $svc = Get-Service -Name csiproxy
    }
    if ([string]$svc.StartType -ne 'Automatic') { Set-Service -Name csiproxy -StartupType Automatic; Add-NbChange $r 'csiproxy starts automatically' }
    if ($svc.Status -ne 'Running') { Start-Service -Name csiproxy; Add-NbChange $r 'started csiproxy' }
    $deadline = (Get-Date).AddSeconds(30)
    do {
        $missing = @($wanted | Where-Object { (Get-NbPipes) -notcontains $_ })
        if (-not $missing.Count) { break }
        Start-Sleep -Milliseconds 500
    } while ((Get-Date) -lt $deadline)
    $r.facts['csi_proxy_pipes'] = @($wanted | Where-Object { $missing -notcontains $_ })
    if ($missing.Count) { throw "csiproxy runs but these pipes are missing: $(($missing | ForEach-Object { '\\.\pipe\' + $_ }) -join ', ')" }
}

