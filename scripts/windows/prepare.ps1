# nodeboot-script: prepare
# prepare.ps1: the Windows Containers feature, which takes effect after a reboot.
# Reports facts.reboot_required; nodeboot then runs reboot.ps1 and waits for WinRM.
# Inputs: NB_FEATURES (comma-separated, default Containers).
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $names = if ($NB_FEATURES) { $NB_FEATURES -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ } } else { @('Containers') }
    $reboot = $false
    $states = [ordered]@{}
    foreach ($name in $names) {
        $feature = Get-WindowsFeature -Name $name
        if (-not $feature) { throw "Windows feature $name does not exist on this edition" }
        if ($feature.InstallState -eq 'Available') {
            $install = Install-WindowsFeature -Name $name
            if (-not $install.Success) { throw "Install-WindowsFeature $name failed" }
            Add-NbChange $r "installed Windows feature $name"
            if ([string]$install.RestartNeeded -ne 'No') { $reboot = $true }
            $feature = Get-WindowsFeature -Name $name
        }
        if ($feature.InstallState -eq 'InstallPending') { $reboot = $true }
        $states[$name] = [string]$feature.InstallState
    }
    $r.facts['features'] = $states
    $r.facts['reboot_required'] = $reboot
}

