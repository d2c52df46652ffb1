"""nodeboot's runAsUserName and GMSA-name validators agree with the lab's real
kube-apiserver: the same values go to both (a Pod, server-side dry run)."""

from __future__ import annotations

import pytest
from kubernetes import client

from nodeboot.windows import identity

RUN_AS = [
    "ContainerUser", "NT AUTHORITY\\NETWORK SERVICE", "NT AUTHORITY\\system", "CONTOSO\\svc$", "contoso.com\\app",
    "a" * 104, "D\\" + "u" * 104, "a" * 15 + "\\x", "a" * 16 + "\\x", "x" * 255 + "\\u", "x" * 256 + "\\u",
    "", "a\\b\\c", "\\user", "domain\\", ".dom\\user", "-bad-.com\\user", "dom\\...", "dom\\  ", "dom\\a@b",
    "dom\\a[b]", "dom\\a;b", "dom\\a,b", "user\tname", "user\x7fname", "a" * 105, "é" * 52, "é" * 53,
    "dom:x\\user", "x" * 63 + ".com\\u", "x" * 64 + ".com\\u", ("x" * 63 + ".") * 4 + "com\\u",
    "ünï\\user", "dom\\ünï", "Δ" * 15 + "\\u", "dom\\a b", "dom\\a.b", "dom.\\user",
]
GMSA = ["webapp1", "web.app-1", "", "WebApp1", "-web", "web-", "a" * 253, "a" * 254, "web_app", "a..b"]


def server_verdict(cluster, options: dict) -> str | None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "runas-check-"},
           "spec": {"containers": [{"name": "c", "image": "x"}], "securityContext": {"windowsOptions": options}}}
    try:
        cluster.core.create_namespaced_pod("default", pod, dry_run="All")
        return None
    except client.ApiException as exc:
        assert exc.status == 422, exc.body
        return exc.body


def local_verdict(check, value: str) -> str | None:
    try:
        check(value)
        return None
    except ValueError as exc:
        return str(exc)


@pytest.mark.parametrize("value", RUN_AS)
def test_run_as_user_name_verdicts_match_the_api_server(lab, value: str) -> None:
    server = server_verdict(lab.cluster(), {"runAsUserName": value})
    mine = local_verdict(identity.run_as_user_name, value)
    assert (server is None) == (mine is None), f"{value!r}: server {server!r}, nodeboot {mine!r}"
    if mine is not None:
        assert mine.split(":")[0].split(" cannot")[0] in server  # same rule named


@pytest.mark.parametrize("value", GMSA)
def test_gmsa_name_verdicts_match_the_api_server(lab, value: str) -> None:
    server = server_verdict(lab.cluster(), {"gmsaCredentialSpecName": value})
    mine = local_verdict(identity.gmsa_name, value)
    assert (server is None) == (mine is None), f"{value!r}: server {server!r}, nodeboot {mine!r}"
