# nodeboot-script: kubelet
# kubelet.ps1: kubelet.exe and kubeadm.exe of the Kubernetes version asked for in C:\k
# (replaced when another version is there), the start wrapper StartKubelet.ps1, the
# kubelet service that always runs through it (nssm when C:\k\nssm.exe is there, else
# sc.exe with nodeboot's service host, since powershell.exe cannot be a service), and
# the firewall rule for TCP 10250. The service starts on demand until the host has
# joined (kubeadm join starts it), automatically after.
# Inputs: NB_KUBE_DIR, NB_ARTIFACTS_URL, NB_KUBERNETES_VERSION (vX.Y.Z), NB_SHA256_PINS,
# NB_SERVICE_MANAGER (auto|nssm|sc), NB_START_KUBELET (the wrapper's text),
# NB_SERVICE_HOST_CS (the service host's C# source).
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $kube = if ($NB_KUBE_DIR) { $NB_KUBE_DIR } else { 'C:\k' }
    $manager = if ($NB_SERVICE_MANAGER) { $NB_SERVICE_MANAGER } else { 'auto' }
    if ($manager -eq 'auto') { $manager = if (Test-Path -LiteralPath "$kube\nssm.exe") { 'nssm' } else { 'sc' } }
    if (@('nssm', 'sc') -notcontains $manager) { throw "NB_SERVICE_MANAGER must be auto, nssm or sc, not '$manager'" }
    if (-not $NB_START_KUBELET) { throw 'no kubelet start wrapper given (NB_START_KUBELET)' }
    foreach ($d in @($kube, 'C:\var\lib\kubelet\etc\kubernetes\pki', 'C:\etc\kubernetes\pki', 'C:\var\log\kubelet')) {
        if (-not (Test-Path -LiteralPath $d)) { New-Item -ItemType Directory -Force -Path $d | Out-Null; Add-NbChange $r "created $d" }
    }
    $want = $NB_KUBERNETES_VERSION
    $base = ([string]$NB_ARTIFACTS_URL).TrimEnd('/')
    foreach ($tool in @(@('kubelet.exe', '--version'), @('kubeadm.exe', 'version', '-o', 'short'))) {
        $exe = $tool[0]
        $path = "$kube\$exe"
        $have = ''
        if (Test-Path -LiteralPath $path) {
            $out = (Invoke-NbNative $path @($tool[1..($tool.Count - 1)])).Output -join ' '
            if ($out -match 'v\d+\.\d+\.\d+[^\s]*') { $have = $Matches[0] }
        }
        $r.facts[$exe.Replace('.exe', '_version')] = $have
        if ($have -and (-not $want -or $have -eq $want)) { continue }
        if (-not $base) {
            if ($have) { continue }
            throw "$path is missing and no artifacts URL was given (--artifacts-url)"
        }
        $svc = Get-Service -Name kubelet -ErrorAction SilentlyContinue
        $wasRunning = $svc -and $svc.Status -ne 'Stopped'
        if ($wasRunning) { Stop-Service -Name kubelet -Force; Add-NbChange $r "stopped the kubelet to replace $exe" }
        Get-NbArtifact "$base/release/$want/bin/windows/amd64/$exe" $path (Get-NbPinnedSha256 $NB_SHA256_PINS $exe)
        Add-NbChange $r $(if ($have) { "replaced $exe $have with $want" } else { "installed $exe $want" })
        $r.facts[$exe.Replace('.exe', '_version')] = $want
        if ($wasRunning) { Start-Service -Name kubelet; Add-NbChange $r 'started the kubelet again' }
    }
    if (Set-NbFileContent "$kube\StartKubelet.ps1" $NB_START_KUBELET) { Add-NbChange $r "wrote $kube\StartKubelet.ps1" }
    $joined = Test-Path -LiteralPath 'C:\etc\kubernetes\kubelet.conf'
    $command = Get-NbKubeletServiceCommand
    if ($command -and $command -notmatch 'StartKubelet\.ps1') {
        # A kubelet service that starts kubelet.exe without the wrapper (another tool's, or an
        # older nodeboot's) would start without kubeadm-flags.env: it is made again.
        $old = Get-Service -Name kubelet
        if ($old.Status -ne 'Stopped') { Stop-Service -Name kubelet -Force }
        $del = Invoke-NbNative 'sc.exe' @('delete', 'kubelet')
        if ($del.ExitCode -ne 0) { throw "sc.exe delete kubelet failed (exit $($del.ExitCode))" }
        Add-NbChange $r "removed a kubelet service that did not start through StartKubelet.ps1 ($command)"
        $command = ''
    }
    $ps = "$env:SystemRoot\System32\WindowsPowerShell\v1.0\powershell.exe"
    if ($manager -eq 'sc') {
        $hostExe = "$kube\nodeboot-service-host.exe"
        $sourceChanged = Set-NbFileContent "$kube\nodeboot-service-host.cs" $NB_SERVICE_HOST_CS
        if ($sourceChanged -or -not (Test-Path -LiteralPath $hostExe)) {
            if ($command -and (Get-Service -Name kubelet).Status -ne 'Stopped') { Stop-Service -Name kubelet -Force }
            Remove-Item -LiteralPath $hostExe -Force -ErrorAction SilentlyContinue
            Add-Type -TypeDefinition $NB_SERVICE_HOST_CS -Language CSharp -ReferencedAssemblies 'System.ServiceProcess' -OutputAssembly $hostExe -OutputType ConsoleApplication
            Add-NbChange $r "built $hostExe"
        }
    }
    if (-not $command) {
        $start = if ($joined) { 'auto' } else { 'demand' }
        if ($manager -eq 'nssm') {
            foreach ($a in @(@('install', 'kubelet', $ps, '-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', "$kube\StartKubelet.ps1"), @('set', 'kubelet', 'DependOnService', 'containerd'), @('set', 'kubelet', 'AppExit', 'Default', 'Restart'), @('set', 'kubelet', 'AppRestartDelay', '10000'), @('set', 'kubelet', 'Start', $(if ($joined) { 'SERVICE_AUTO_START' } else { 'SERVICE_DEMAND_START' })))) {
                $out = Invoke-NbNative "$kube\nssm.exe" $a
                if ($out.ExitCode -ne 0) { throw "nssm $($a[0]) kubelet failed (exit $($out.ExitCode))" }
            }
        } else {
            $bin = "`"$kube\nodeboot-service-host.exe`" kubelet `"$kube\StartKubelet.ps1`""
            $out = Invoke-NbNative 'sc.exe' @('create', 'kubelet', 'binPath=', $bin, 'start=', $start, 'depend=', 'containerd', 'DisplayName=', 'kubelet')
            if ($out.ExitCode -ne 0) { throw "sc.exe create kubelet failed (exit $($out.ExitCode))" }
        }
        Set-NbServiceRecovery 'kubelet'
        Add-NbChange $r "created the kubelet service ($manager, through StartKubelet.ps1, start $start, restart on failure)"
    }
    $r.facts['service_manager'] = $manager
    $r.facts['kubelet_service_wrapper'] = $true
    if (-not (Get-NetFirewallRule -Name 'nodeboot-kubelet-10250' -ErrorAction SilentlyContinue)) {
        New-NetFirewallRule -Name 'nodeboot-kubelet-10250' -DisplayName 'kubelet (TCP 10250)' -Direction Inbound -Protocol TCP -LocalPort 10250 -Action Allow | Out-Null
        Add-NbChange $r 'opened TCP 10250 in the firewall'
    }
}
