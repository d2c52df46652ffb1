# nodeboot-script: facts
# facts.ps1: everything nodeboot decides with, gathered in one round trip.
# Inputs: NB_KUBE_DIR (C:\k), NB_CONTAINERD_DIR.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $f = $r.facts
    $kube = if ($NB_KUBE_DIR) { $NB_KUBE_DIR } else { 'C:\k' }
    $ctrd = if ($NB_CONTAINERD_DIR) { $NB_CONTAINERD_DIR } else { "$env:ProgramFiles\containerd" }
    $os = Get-CimInstance Win32_OperatingSystem
    $f['os_caption'] = [string]$os.Caption
    $f['os_build'] = [int]$os.BuildNumber
    $f['hostname'] = [string]$env:COMPUTERNAME
    $f['time'] = [string]([DateTimeOffset]::UtcNow.ToUnixTimeMilliseconds() / 1000.0)
    $feature = Get-WindowsFeature -Name Containers -ErrorAction SilentlyContinue
    $f['containers_feature'] = if ($feature) { [string]$feature.InstallState } else { 'Unknown' }
    $pendingKeys = @(
        'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending',
        'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired'
    )
    $f['reboot_pending'] = [bool](@($pendingKeys | Where-Object { Test-Path $_ }).Count)
    $versions = [ordered]@{}
    foreach ($tool in @(@('kubelet', "$kube\kubelet.exe", '--version'), @('kubeadm', "$kube\kubeadm.exe", 'version', '-o', 'short'), @('containerd', "$ctrd\containerd.exe", '--version'))) {
        $versions[$tool[0]] = ''
        if (Test-Path -LiteralPath $tool[1]) {
            $out = (Invoke-NbNative $tool[1] @($tool[2..($tool.Count - 1)])).Output -join ' '
            if ($out -match 'v?\d+\.\d+\.\d+[^\s]*') { $versions[$tool[0]] = $Matches[0] }
        }
    }
    $f['kubelet_version'] = $versions['kubelet']
    $f['kubeadm_version'] = $versions['kubeadm']
    $f['containerd_version'] = $versions['containerd']
    $f['csi_proxy_installed'] = Test-Path -LiteralPath "$kube\csi-proxy.exe"
    $services = [ordered]@{}
    foreach ($name in @('containerd', 'kubelet', 'csiproxy', 'kube-proxy')) {
        $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
        if ($svc) { $services[$name] = [ordered]@{ status = [string]$svc.Status; start = [string]$svc.StartType } }
    }
    $f['services'] = $services
    $f['containerd_configured'] = (Test-Path -LiteralPath "$ctrd\config.toml") -and ((Get-Content -Raw -LiteralPath "$ctrd\config.toml") -match 'nodeboot')
    $f['kubelet_start_script'] = if (Test-Path -LiteralPath "$kube\StartKubelet.ps1") { Get-NbSha256 "$kube\StartKubelet.ps1" } else { '' }
    $f['kubelet_service_wrapper'] = (Get-NbKubeletServiceCommand) -match 'StartKubelet\.ps1'
    $f['firewall_kubelet'] = [bool](Get-NetFirewallRule -Name 'nodeboot-kubelet-10250' -ErrorAction SilentlyContinue)
    $pipes = Get-NbPipes
    $f['cri_pipe'] = $pipes -contains 'containerd-containerd'
    $f['csi_proxy_pipes'] = @($pipes | Where-Object { $_ -like 'csi-proxy-*' } | Sort-Object)
    $f['joined'] = Test-Path -LiteralPath 'C:\etc\kubernetes\kubelet.conf'
    $f['kubelet_configured'] = Test-Path -LiteralPath 'C:\var\lib\kubelet\config.yaml'
    $f['cni_conf_dir'] = Test-Path -LiteralPath 'C:\etc\cni\net.d'
}

