"""GMSA credential specs: structure checks with errors naming the file and field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from nodeboot.errors import UsageError

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SID = re.compile(r"S-1-5-21(-\d+){3}")
DOMAIN_FIELDS = ("DnsName", "DnsTreeName", "Guid", "MachineAccountName", "NetBiosName", "Sid")


def load(path: str) -> dict[str, Any]:
    """The credspec body from FILE: New-CredentialSpec's JSON, or a GMSACredentialSpec document."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the credential spec: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: neither JSON nor YAML: {getattr(exc, 'problem', exc)}") from None
    if isinstance(data, dict) and data.get("kind") == "GMSACredentialSpec":
        data = data.get("credspec")
        where = "credspec."
    else:
        where = ""
    return check(path, data, where)


def check(source: str, spec: Any, where: str = "") -> dict[str, Any]:
    def fail(field: str, problem: str) -> UsageError:
        return UsageError(f"{source}: field {where}{field}: {problem}")

    if not isinstance(spec, dict):
        raise UsageError(f"{source}: a credential spec must be an object with CmsPlugins, DomainJoinConfig and "
                         "ActiveDirectoryConfig")
    plugins = spec.get("CmsPlugins")
    if not isinstance(plugins, list) or "ActiveDirectory" not in plugins:
        raise fail("CmsPlugins", 'must be a list holding "ActiveDirectory"')
    djc = spec.get("DomainJoinConfig")
    if not isinstance(djc, dict):
        raise fail("DomainJoinConfig", f"missing; it holds {', '.join(DOMAIN_FIELDS)}")
    for key in DOMAIN_FIELDS:
        if not isinstance(djc.get(key), str) or not djc[key]:
            raise fail(f"DomainJoinConfig.{key}", "missing or empty")
    if not _GUID.fullmatch(djc["Guid"]):
        raise fail("DomainJoinConfig.Guid", f"{djc['Guid']!r} is not a GUID")
    if not _SID.fullmatch(djc["Sid"]):
        raise fail("DomainJoinConfig.Sid", f"{djc['Sid']!r} is not a domain SID (S-1-5-21-a-b-c)")
    adc = spec.get("ActiveDirectoryConfig")
    accounts = adc.get("GroupManagedServiceAccounts") if isinstance(adc, dict) else None
    if not isinstance(accounts, list) or not accounts:
        raise fail("ActiveDirectoryConfig.GroupManagedServiceAccounts", "must list at least one {Name, Scope}")
    for i, account in enumerate(accounts):
        for key in ("Name", "Scope"):
            if not isinstance(account, dict) or not isinstance(account.get(key), str) or not account[key]:
                raise fail(f"ActiveDirectoryConfig.GroupManagedServiceAccounts[{i}].{key}", "missing or empty")
    return spec
