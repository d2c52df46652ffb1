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

function Get-NbPinnedSha256 {
    param([string]$Pins, [string]$Name)
    # NB_SHA256_PINS: "NAME=HEX;NAME=HEX", from the inventory or a checksum file on the controller.
    foreach ($pair in @($Pins -split ';' | Where-Object { $_ })) {
        $kv = $pair -split '=', 2
        if ($kv.Count -eq 2 -and $kv[0].Trim() -eq $Name) { return $kv[1].Trim().ToLowerInvariant() }
    }
    return ''
}

function Get-NbArtifact {
    param([string]$Url, [string]$Destination, [string]$Sha256)
    # Downloads Url and puts it at Destination (replacing what is there) only if its sha256 is
    # the pinned one, or, with no pin, the one upstream publishes beside it at Url.sha256.
    [Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
    $want = $Sha256
    $from = 'the pinned sha256'
    if (-not $want) {
        $content = (Invoke-WebRequest -UseBasicParsing -Uri "$Url.sha256").Content
        if ($content -is [byte[]]) { $content = [Text.Encoding]::ASCII.GetString($content) }
        $want = ([string]$content).Trim() -split '\s+' | Select-Object -First 1
        $from = "$Url.sha256"
    }
    $want = ([string]$want).ToLowerInvariant()
    if ($want -notmatch '^[0-9a-f]{64}$') { throw "$from is not a sha256 for $Url" }
    $dir = Split-Path -Parent $Destination
    if (-not (Test-Path -LiteralPath $dir)) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
    $tmp = "$Destination.nodeboot.download"
    Invoke-WebRequest -UseBasicParsing -Uri $Url -OutFile $tmp
    $got = Get-NbSha256 $tmp
    if ($got -ne $want) {
        Remove-Item -LiteralPath $tmp -Force
        throw "$Url has sha256 $got, $from says $want; not installed"
    }
    Move-Item -LiteralPath $tmp -Destination $Destination -Force
}

function Get-NbMissingArtifact {
    param([string]$BaseUrl, [string]$Name, [string]$Destination, [string]$Pins)
    # Binaries not tied to the Kubernetes version (containerd, csi-proxy): fetched only when absent,
    # from BaseUrl/Name, checked as Get-NbArtifact does. $true when it downloaded.
    if (Test-Path -LiteralPath $Destination) { return $false }
    if (-not $BaseUrl) { throw "$Destination is missing and no artifacts URL was given (--artifacts-url)" }
    Get-NbArtifact "$($BaseUrl.TrimEnd('/'))/$Name" $Destination (Get-NbPinnedSha256 $Pins $Name)
    return $true
}

function Get-NbKubeletServiceCommand {
    # The kubelet service's command: its binary path, plus nssm's AppParameters when nssm hosts it.
    $svc = Get-CimInstance Win32_Service -Filter "Name='kubelet'"
    if (-not $svc) { return '' }
    $params = Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Services\kubelet\Parameters' -ErrorAction SilentlyContinue
    $extra = if ($params -and ($params.PSObject.Properties.Name -contains 'AppParameters')) { [string]$params.AppParameters } else { '' }
    return ("$($svc.PathName) $extra").Trim()
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
