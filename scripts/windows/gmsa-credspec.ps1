# nodeboot-script: gmsa-credspec
# gmsa-credspec.ps1: New-CredentialSpec for a group Managed Service Account on a
# domain-joined host; the credential spec's JSON comes back as facts.credspec.
# Inputs: NB_ACCOUNT (the gMSA's name), NB_DOMAIN (optional).
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Invoke-NbMain {
    param($r)
    if (-not $NB_ACCOUNT) { throw 'no account given (NB_ACCOUNT)' }
    if (-not (Get-CimInstance Win32_ComputerSystem).PartOfDomain) { throw "$env:COMPUTERNAME is not joined to a domain: New-CredentialSpec needs one" }
    if (-not (Get-Command New-CredentialSpec -ErrorAction SilentlyContinue)) {
        Import-Module CredentialSpec -ErrorAction SilentlyContinue
        if (-not (Get-Command New-CredentialSpec -ErrorAction SilentlyContinue)) { throw 'the CredentialSpec module is not installed: Install-Module CredentialSpec' }
    }
    $path = Join-Path $env:TEMP ("nodeboot-credspec-{0}.json" -f [guid]::NewGuid().ToString('N'))
    try {
        $params = @{ AccountName = $NB_ACCOUNT; Path = $path }
        if ($NB_DOMAIN) { $params['Domain'] = $NB_DOMAIN }
        New-CredentialSpec @params | Out-Null
        $r.facts['credspec'] = Get-Content -Raw -LiteralPath $path | ConvertFrom-Json
    } finally {
        Remove-Item -LiteralPath $path -Force -ErrorAction SilentlyContinue
    }
}

