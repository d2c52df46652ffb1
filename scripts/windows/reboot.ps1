# nodeboot-script: reboot
# reboot.ps1: restart the host a few seconds from now, so this result reaches
# nodeboot before WinRM goes down; nodeboot then waits for WinRM to come back.
# Inputs: NB_REBOOT_DELAY (seconds, default 5), NB_REASON.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $delay = if ($NB_REBOOT_DELAY) { [int]$NB_REBOOT_DELAY } else { 5 }
    $reason = if ($NB_REASON) { $NB_REASON } else { 'nodeboot' }
    $out = Invoke-NbNative 'shutdown.exe' @('/r', '/t', [string]$delay, '/d', 'p:4:1', '/c', $reason)
    if ($out.ExitCode -ne 0) { throw "shutdown.exe /r failed (exit $($out.ExitCode))" }
    Add-NbChange $r "restart in $delay s: $reason"
    $r.facts['reboot_in'] = $delay
}

