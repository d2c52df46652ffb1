# nodeboot-script: containerd
# containerd.ps1: containerd's binaries, config (1.7: version 2; 2.x: version 3),
# the CNI directories, and the containerd service (auto start, restart on failure).
# Inputs: NB_CONTAINERD_DIR, NB_ARTIFACTS_URL (optional mirror), NB_SHA256_PINS, NB_CNI_BIN_DIR,
# NB_CNI_CONF_DIR, NB_PAUSE_IMAGE.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $dir = if ($NB_CONTAINERD_DIR) { $NB_CONTAINERD_DIR } else { "$env:ProgramFiles\containerd" }
    $cniBin = if ($NB_CNI_BIN_DIR) { $NB_CNI_BIN_DIR } else { 'C:\opt\cni\bin' }
    $cniConf = if ($NB_CNI_CONF_DIR) { $NB_CNI_CONF_DIR } else { 'C:\etc\cni\net.d' }
    $pause = if ($NB_PAUSE_IMAGE) { $NB_PAUSE_IMAGE } else { 'registry.k8s.io/pause:3.10' }
    foreach ($exe in @('containerd.exe', 'containerd-shim-runhcs-v1.exe', 'ctr.exe')) {
        if (Get-NbMissingArtifact $NB_ARTIFACTS_URL $exe "$dir\$exe" $NB_SHA256_PINS) { Add-NbChange $r "downloaded $exe" }
    }
    foreach ($d in @($cniBin, $cniConf)) {
        if (-not (Test-Path -LiteralPath $d)) {
            New-Item -ItemType Directory -Force -Path $d | Out-Null
            Add-NbChange $r "created $d"
        }
    }
    $version = ((Invoke-NbNative "$dir\containerd.exe" @('--version')).Output -join ' ')
    if ($version -notmatch 'v?(\d+)\.(\d+)\.(\d+)') { throw "cannot read containerd's version from '$version'" }
    $major = [int]$Matches[1]
    $r.facts['containerd_version'] = $Matches[0]
    $binToml = $cniBin.Replace('\', '\\')
    $confToml = $cniConf.Replace('\', '\\')
    if ($major -ge 2) {
        $lines = @(
            '# written by nodeboot (containerd 2.x)', 'version = 3', '',
            '[plugins."io.containerd.cri.v1.images".pinned_images]', "  sandbox = `"$pause`"", '',
            '[plugins."io.containerd.cri.v1.runtime".cni]', "  bin_dirs = [`"$binToml`"]", "  conf_dir = `"$confToml`""
        )
    } else {
        $lines = @(
            '# written by nodeboot (containerd 1.7)', 'version = 2', '',
            '[plugins."io.containerd.grpc.v1.cri"]', "  sandbox_image = `"$pause`"", '',
            '[plugins."io.containerd.grpc.v1.cri".cni]', "  bin_dir = `"$binToml`"", "  conf_dir = `"$confToml`""
        )
    }
    $configChanged = Set-NbFileContent "$dir\config.toml" (($lines -join "`r`n") + "`r`n")
    if ($configChanged) { Add-NbChange $r "wrote $dir\config.toml (config version $(if ($major -ge 2) { 3 } else { 2 }))" }
    $svc = Get-Service -Name containerd -ErrorAction SilentlyContinue
    if (-not $svc) {
        $out = Invoke-NbNative "$dir\containerd.exe" @('--register-service', '--config', "$dir\config.toml")
        if ($out.ExitCode -ne 0) { throw "containerd --register-service failed (exit $($out.ExitCode))" }
        Set-NbServiceRecovery 'containerd'
        Add-NbChange $r 'registered the containerd service'
        $svc = Get-Service -Name containerd
    }
    if ([string]$svc.StartType -ne 'Automatic') {
        Set-Service -Name containerd -StartupType Automatic
        Add-NbChange $r 'containerd starts automatically'
    }
    if ($svc.Status -ne 'Running') {
        Start-Service -Name containerd
        Add-NbChange $r 'started containerd'
    } elseif ($configChanged) {
        Restart-Service -Name containerd
        Add-NbChange $r 'restarted containerd for its new config'
    }
    $deadline = (Get-Date).AddSeconds(30)
    while (-not ((Get-NbPipes) -contains 'containerd-containerd')) {
        if ((Get-Date) -gt $deadline) { throw 'containerd runs but \\.\pipe\containerd-containerd did not appear within 30 s' }
        Start-Sleep -Milliseconds 500
    }
    $r.facts['cri_pipe'] = $true
}

