"""`nodeboot gmsa generate`'s work: New-CredentialSpec run on a domain-joined host over WinRM."""

from __future__ import annotations

from typing import Any

from nodeboot import app
from nodeboot.errors import NodebootError
from nodeboot.redact import Redactor
from nodeboot.scripts import parse_result, script_text
from nodeboot.transport.factory import ConnectionDefaults, make_transport


def credspec(host: str, account: str, domain: str | None, inventory_file: str | None, user: str | None,
             password_env: str | None, winrm_ca: str | None, insecure_skip_tls_verify: bool) -> Any:
    """The credential spec JSON document the host made; a failure names the host."""
    sel = app.HostSelection(inventory_file, host if inventory_file else None, () if inventory_file else (host,),
                            "windows", {"ansible_user": user, "nodeboot_password_env": password_env})
    target = app.select_hosts(sel)[0]
    redactor = Redactor()
    transport = make_transport(target, ConnectionDefaults(winrm_ca=winrm_ca,
                                                          insecure_skip_tls_verify=insecure_skip_tls_verify), redactor)
    variables = {"NB_ACCOUNT": account, **({"NB_DOMAIN": domain} if domain else {})}
    try:
        out = transport.run_script(script_text("windows", "gmsa-credspec.ps1"), variables, None, 300)
    finally:
        transport.close()
    result = parse_result("gmsa-credspec.ps1", out.exit_status, out.stdout, out.stderr)
    if not result.ok:
        raise NodebootError(f"{target.name}: {redactor.redact(result.error)}")
    return result.facts.get("credspec")
