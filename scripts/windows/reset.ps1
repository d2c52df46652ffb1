# nodeboot-script: reset
# reset.ps1: kubeadm reset -f, then what it leaves on Windows: the kubelet,
# kube-proxy and csiproxy services, the CNI's HNS networks with their endpoints and
# policy lists (no other network), C:\etc\cni\net.d and C:\var\lib\kubelet.
# Inputs: NB_KUBE_DIR, NB_CRI_SOCKET, NB_HNS_NETWORKS (more network names, comma-separated).
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    $kube = if ($NB_KUBE_DIR) { $NB_KUBE_DIR } else { 'C:\k' }
    $cri = if ($NB_CRI_SOCKET) { $NB_CRI_SOCKET } else { 'npipe:////./pipe/containerd-containerd' }
    if ((Test-Path -LiteralPath "$kube\kubeadm.exe") -and ((Test-Path -LiteralPath 'C:\etc\kubernetes\kubelet.conf') -or (Test-Path -LiteralPath 'C:\var\lib\kubelet\config.yaml'))) {
        $out = Invoke-NbNative "$kube\kubeadm.exe" @('reset', '-f', '--cri-socket', $cri)
        if ($out.ExitCode -ne 0) { throw "kubeadm reset -f failed (exit $($out.ExitCode))" }
        Add-NbChange $r 'kubeadm reset -f'
    }
    foreach ($name in @('kubelet', 'kube-proxy', 'csiproxy')) {
        $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
        if (-not $svc) { continue }
        if ($svc.Status -ne 'Stopped') { Stop-Service -Name $name -Force }
        $del = Invoke-NbNative 'sc.exe' @('delete', $name)
        if ($del.ExitCode -ne 0) { throw "sc.exe delete $name failed (exit $($del.ExitCode))" }
        Add-NbChange $r "stopped and removed the $name service"
    }
    if (-not (Get-Command Get-HnsNetwork -ErrorAction SilentlyContinue)) {
        Import-Module HostNetworkingService -ErrorAction SilentlyContinue
        if (-not (Get-Command Get-HnsNetwork -ErrorAction SilentlyContinue) -and (Test-Path -LiteralPath "$kube\hns.psm1")) { Import-Module "$kube\hns.psm1" -DisableNameChecking }
    }
    if (Get-Command Get-HnsNetwork -ErrorAction SilentlyContinue) {
        # Only what the CNI made: flannel's networks (vxlan0, cbr0, flannel.<VNI>), Calico's, and the
        # names the inventory adds. Every other network (nat, a user's transparent or l2bridge one) stays.
        $cniNetworks = @('vxlan0', 'cbr0', 'flannel.4096', 'Calico') + @(([string]$NB_HNS_NETWORKS) -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ })
        $all = @(Get-HnsNetwork)
        $networks = @($all | Where-Object { $cniNetworks -contains $_.Name })
        $ids = @($networks | ForEach-Object { ([string]$_.Id).ToLowerInvariant() })
        $endpoints = @(Get-HnsEndpoint | Where-Object { $ids -contains ([string]$_.VirtualNetwork).ToLowerInvariant() })
        $endpointIds = @($endpoints | ForEach-Object { ([string]$_.Id).ToLowerInvariant() })
        $policies = @(Get-HnsPolicyList | Where-Object { @($_.References | Where-Object { $endpointIds -contains (([string]$_) -split '/')[-1].ToLowerInvariant() }).Count })
        if ($policies.Count) { $policies | Remove-HnsPolicyList; Add-NbChange $r "removed $($policies.Count) HNS policy lists of the CNI's endpoints" }
        if ($endpoints.Count) { $endpoints | Remove-HnsEndpoint; Add-NbChange $r "removed $($endpoints.Count) HNS endpoints of $(($networks | ForEach-Object { $_.Name }) -join ', ')" }
        if ($networks.Count) { $networks | Remove-HnsNetwork; Add-NbChange $r "removed HNS networks $(($networks | ForEach-Object { $_.Name }) -join ', ')" }
        $r.facts['hns_removed'] = @($networks | ForEach-Object { $_.Name })
        $r.facts['hns_kept'] = @($all | Where-Object { $cniNetworks -notcontains $_.Name } | ForEach-Object { $_.Name })
        $r.facts['hns'] = 'cleaned'
    } else {
        $r.facts['hns'] = 'no HNS module (HostNetworkingService or C:\k\hns.psm1): networks not checked'
    }
    foreach ($d in @('C:\etc\cni\net.d', 'C:\var\lib\kubelet')) {
        if ((Test-Path -LiteralPath $d) -and @(Get-ChildItem -LiteralPath $d -Force).Count) {
            Get-ChildItem -LiteralPath $d -Force | Remove-Item -Recurse -Force
            Add-NbChange $r "emptied $d"
        }
    }
    $r.facts['joined'] = $false
}

