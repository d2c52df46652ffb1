# common.ps1: the result protocol shared by nodeboot's Windows scripts.
# nodeboot sends, on the stdin of `powershell.exe -Command -`: the inputs as
# `$NB_X = '...'` lines, each secret as a statement that reads the next stdin line
# (base64) followed by that line, the script's `# nodeboot-script: NAME` line, this file,
# then the rest of the script. PowerShell reads such input as an interactive
# session would: every statement runs as soon as it is complete, and a statement
# that spans lines ends only at a blank line. Hence the layout rule of every
# Windows script: each multi-line statement is followed by one blank line and has
# no blank line inside; the body of a script is one `Invoke-NbMain { ... }`.
# Protocol: logs go to stderr; exactly one JSON line on stdout, last:
# {"ok":bool,"changed":bool,"facts":{...},"error":"..."}.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Write-NbLog {
    param([string]$Message)
    [Console]::Error.WriteLine("nodeboot: $Message")
}

function Add-NbChange {
    param($Result, [string]$What)
    $Result.changed = $true
    $Result.facts['actions'] = @($Result.facts['actions']) + @($What)
    Write-NbLog $What
}

function Invoke-NbMain {
    param([scriptblock]$Body)
    $result = [ordered]@{ ok = $true; changed = $false; facts = [ordered]@{ actions = @() }; error = '' }
    try {
        & $Body $result
    } catch {
        $result.ok = $false
        $result.error = ($_.Exception.Message -replace '\s+', ' ').Trim()
        Write-NbLog "error: $($result.error)"
    }
    [Console]::Out.WriteLine(($result | ConvertTo-Json -Compress -Depth 8))
    if ($result.ok) { exit 0 } else { exit 1 }
}

function Invoke-NbNative {
    param([string]$Exe, [string[]]$Arguments)
    # Native stderr must not become a terminating error: 'Continue' in this scope only.
    $ErrorActionPreference = 'Continue'
    $lines = @(& $Exe @Arguments 2>&1 | ForEach-Object { "$_" })
    $code = $LASTEXITCODE
    foreach ($line in $lines) { [Console]::Error.WriteLine($line) }
    [pscustomobject]@{ ExitCode = $code; Output = $lines }
}

function Get-NbMinor {
    param([string]$Version)
    if ($Version -match 'v?(\d+)\.(\d+)') { return [int]$Matches[2] }
    return -1
}

function Get-NbSha256 {
    param([string]$Path)
    (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
}

function Set-NbFileContent {
    param([string]$Path, [string]$Content)
    # Writes only when the content differs; $true when it wrote.
    $dir = Split-Path -Parent $Path
    if ($dir -and -not (Test-Path -LiteralPath $dir)) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
    if ((Test-Path -LiteralPath $Path) -and ([IO.File]::ReadAllText($Path) -ceq $Content)) { return $false }
    [IO.File]::WriteAllText("$Path.nodeboot.tmp", $Content, (New-Object Text.UTF8Encoding $false))
    Move-Item -LiteralPath "$Path.nodeboot.tmp" -Destination $Path -Force
    return $true
}

function Get-NbArtifact {
    param([string]$BaseUrl, [string]$Name, [string]$Destination)
    # The node fetches its own binaries from the mirror and checks each against SHA256SUMS there.
    if (Test-Path -LiteralPath $Destination) { return $false }
    if (-not $BaseUrl) { throw "$Destination is missing and no artifacts URL was given (--artifacts-url)" }
    [Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
    $base = $BaseUrl.TrimEnd('/')
    $sums = (Invoke-WebRequest -UseBasicParsing -Uri "$base/SHA256SUMS").Content
    $want = $null
    foreach ($line in ($sums -split "`n")) {
        $parts = $line.Trim() -split '\s+\*?'
        if ($parts.Count -ge 2 -and $parts[1] -eq $Name) { $want = $parts[0].ToLowerInvariant() }
    }
    if (-not $want) { throw "$base/SHA256SUMS has no entry for $Name" }
    $dir = Split-Path -Parent $Destination
    if (-not (Test-Path -LiteralPath $dir)) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
    $tmp = "$Destination.nodeboot.download"
    Invoke-WebRequest -UseBasicParsing -Uri "$base/$Name" -OutFile $tmp
    $got = Get-NbSha256 $tmp
    if ($got -ne $want) {
        Remove-Item -LiteralPath $tmp -Force
        throw "$base/$Name has sha256 $got, SHA256SUMS says $($want); not installed"
    }
    Move-Item -LiteralPath $tmp -Destination $Destination -Force
    return $true
}

function Set-NbServiceRecovery {
    param([string]$Name)
    # Restart after 10 s on each of the first three failures; the failure count resets after a day.
    $r = Invoke-NbNative 'sc.exe' @('failure', $Name, 'reset=', '86400', 'actions=', 'restart/10000/restart/10000/restart/10000')
    if ($r.ExitCode -ne 0) { throw "sc.exe failure $Name failed (exit $($r.ExitCode))" }
}

function Get-NbPipes {
    @([IO.Directory]::GetFiles('\\.\pipe\') | ForEach-Object { $_.Substring(9) })
}

function Get-NbKubeletArgs {
    param([string]$KubeDir, [int]$Minor)
    # kubeadm-flags.env (written by kubeadm join) plus the flags a Windows kubelet needs.
    # Version gates: --pod-infra-container-image breaks kubelet >= 1.34 (the sandbox image
    # comes from containerd's config); --network-plugin went in 1.24, --container-runtime in 1.27.
    $flags = @()
    $envFile = 'C:\var\lib\kubelet\kubeadm-flags.env'
    if (Test-Path -LiteralPath $envFile) {
        $text = (Get-Content -Raw -LiteralPath $envFile) -replace '^\s*KUBELET_KUBEADM_ARGS=', ''
        $flags = @($text.Trim().Trim('"') -split '\s+' | Where-Object { $_ })
    }
    $gone = @()
    if ($Minor -ge 34) { $gone += '--pod-infra-container-image' }
    if ($Minor -ge 24) { $gone += '--network-plugin' }
    if ($Minor -ge 27) { $gone += '--container-runtime' }
    $kept = @($flags | Where-Object { $gone -notcontains ($_ -split '=', 2)[0] })
    $kept + @(
        '--cert-dir=C:\var\lib\kubelet\pki', '--config=C:\var\lib\kubelet\config.yaml',
        '--bootstrap-kubeconfig=C:\etc\kubernetes\bootstrap-kubelet.conf', '--kubeconfig=C:\etc\kubernetes\kubelet.conf',
        '--enforce-node-allocatable=', '--cgroups-per-qos=false', '--resolv-conf='
    )
}

