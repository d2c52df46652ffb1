"""Credential-spec checks and workload parsing (the API-server agreement is tested on the lab)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeboot.cluster.gmsa import ServiceAccountRef, parse_workload
from nodeboot.errors import UsageError
from nodeboot.windows import credspec

GOOD = {
    "CmsPlugins": ["ActiveDirectory"],
    "DomainJoinConfig": {"Sid": "S-1-5-21-1-2-3", "MachineAccountName": "WebApp1",
                         "Guid": "244818ae-87ca-4fcd-92ec-e79e5252348a", "DnsTreeName": "contoso.com",
                         "DnsName": "contoso.com", "NetBiosName": "CONTOSO"},
    "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Name": "WebApp1", "Scope": "contoso.com"}]},
}


def write(tmp_path: Path, body: object, name: str = "spec.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return str(path)


def test_a_new_credentialspec_file_and_a_resource_yaml_both_load(tmp_path: Path) -> None:
    assert credspec.load(write(tmp_path, GOOD)) == GOOD
    doc = tmp_path / "res.yaml"
    doc.write_text("apiVersion: windows.k8s.io/v1\nkind: GMSACredentialSpec\nmetadata: {name: x}\ncredspec: "
                   + json.dumps(GOOD))
    assert credspec.load(str(doc)) == GOOD


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda s: s.pop("CmsPlugins"), "CmsPlugins"),
    (lambda s: s["DomainJoinConfig"].update(Guid="nope"), "DomainJoinConfig.Guid"),
    (lambda s: s["DomainJoinConfig"].update(Sid="S-1-5-32-544"), "DomainJoinConfig.Sid"),
    (lambda s: s["DomainJoinConfig"].pop("NetBiosName"), "DomainJoinConfig.NetBiosName"),
    (lambda s: s["ActiveDirectoryConfig"].update(GroupManagedServiceAccounts=[]), "GroupManagedServiceAccounts"),
    (lambda s: s["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"][0].pop("Scope"), "[0].Scope"),
])
def test_a_broken_credspec_is_one_line_naming_file_and_field(tmp_path: Path, mutate, field: str) -> None:
    spec = json.loads(json.dumps(GOOD))
    mutate(spec)
    path = write(tmp_path, spec)
    with pytest.raises(UsageError) as err:
        credspec.load(path)
    assert path in str(err.value) and field in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_workload_and_service_account_arguments() -> None:
    assert parse_workload("iis") == ("Deployment", "iis")
    assert parse_workload("statefulsets/db") == ("StatefulSet", "db")
    assert ServiceAccountRef.parse("ns/sa") == ServiceAccountRef("ns", "sa")
    for bad in ("pod/x", "deployment/"):
        with pytest.raises(UsageError):
            parse_workload(bad)
    with pytest.raises(UsageError):
        ServiceAccountRef.parse("just-a-name")
