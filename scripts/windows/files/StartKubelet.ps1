# nodeboot-kubelet-wrapper v1
# StartKubelet.ps1: what the kubelet service runs (through nssm, or nodeboot's service
# host with sc.exe). It starts kubelet.exe only from the two files kubeadm join writes,
# so no start, before or after the join, ever lacks --hostname-override, the node IP
# or the taints:
#   C:\var\lib\kubelet\kubeadm-flags.env  KUBELET_KUBEADM_ARGS="--flag=value ..."
#   C:\var\lib\kubelet\config.yaml        the KubeletConfiguration (--config)
# Either missing: exit 3 with a message, and the service stays stopped until the join.
# Flags a kubelet of this version no longer has are dropped (--pod-infra-container-image
# from 1.34: the sandbox image comes from containerd's config; --network-plugin from
# 1.24; --container-runtime from 1.27).
param([string]$KubeDir = $PSScriptRoot)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$flagsFile = 'C:\var\lib\kubelet\kubeadm-flags.env'
$configFile = 'C:\var\lib\kubelet\config.yaml'
foreach ($file in @($flagsFile, $configFile)) {
    if (-not (Test-Path -LiteralPath $file)) {
        [Console]::Error.WriteLine("StartKubelet: $file is missing: the kubelet starts only after kubeadm join has written it")
        exit 3
    }
}
$kubelet = Join-Path $KubeDir 'kubelet.exe'
$versionText = (& $kubelet --version 2>&1 | Out-String)
if ($versionText -notmatch 'v?1\.(\d+)\.') {
    [Console]::Error.WriteLine("StartKubelet: cannot read the version of ${kubelet}: $versionText")
    exit 4
}
$minor = [int]$Matches[1]
$text = (Get-Content -Raw -LiteralPath $flagsFile).Trim()
if ($text -notmatch '^\s*KUBELET_KUBEADM_ARGS=(.*)$') {
    [Console]::Error.WriteLine("StartKubelet: $flagsFile has no KUBELET_KUBEADM_ARGS line")
    exit 5
}
$flags = @($Matches[1].Trim().Trim('"').Trim("'") -split '\s+' | Where-Object { $_ } | ForEach-Object { $_.Trim("'") })
$gone = @()
if ($minor -ge 24) { $gone += '--network-plugin' }
if ($minor -ge 27) { $gone += '--container-runtime' }
if ($minor -ge 34) { $gone += '--pod-infra-container-image' }
$flags = @($flags | Where-Object { $gone -notcontains ($_ -split '=', 2)[0] })
$flags += @(
    "--config=$configFile",
    '--cert-dir=C:\var\lib\kubelet\pki',
    '--bootstrap-kubeconfig=C:\etc\kubernetes\bootstrap-kubelet.conf',
    '--kubeconfig=C:\etc\kubernetes\kubelet.conf',
    '--enforce-node-allocatable=',
    '--cgroups-per-qos=false',
    '--resolv-conf='
)
$env:Path = "$KubeDir;$env:Path"
[Console]::Error.WriteLine("StartKubelet: kubelet 1.$minor $($flags -join ' ')")
& $kubelet @flags
exit $LASTEXITCODE
