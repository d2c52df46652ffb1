"""What a run leaves when it ends (issue 14 items 0 and 15): the exit code it promised, every
time, and no valid bootstrap token from an earlier run that was killed."""

from __future__ import annotations

import base64
import contextlib

import pytest
from kubernetes import client

from labkit import summary
from nodeboot.cluster.tokens import TokenLedger, description_for

RUNS = 10


def fast_failures(lab, tmp_path) -> dict[str, list[str]]:
    """Runs that contact the cluster, start the Node watch, then fail on their only host at once."""
    linux = lab.reserve(1)[0]
    windows = lab.env["hosts"][[h["os"] for h in lab.env["hosts"]].index("windows")]
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    return {
        "refused port": ["join", "127.0.0.1:1", "--connect-timeout", "5"],
        "unknown host key": ["join", f"root@{linux['address']}", "--ssh-key", lab.env["ssh_key"],
                             "--known-hosts", str(empty_known_hosts)],
        "windows refused port": ["join", "--os", "windows", "--user", "Administrator",
                                 "--password-env", lab.env["winrm_password_env"], "127.0.0.1:1"],
        "windows wrong port": ["join", "--os", "windows", "--user", "Administrator",
                               "--password-env", lab.env["winrm_password_env"], f"{windows['address']}:1"],
    }


def test_a_run_that_fails_fast_exits_1_every_time(lab, tmp_path):
    """Not SIGABRT (134) at interpreter exit with the Node watch still in a TLS read."""
    codes: dict[str, list[int]] = {}
    for case, argv in fast_failures(lab, tmp_path).items():
        for _ in range(RUNS):
            proc = lab.nodeboot(*argv, "--log-dir", str(tmp_path / "logs"), timeout=120)
            codes.setdefault(case, []).append(proc.returncode)
            assert "Traceback" not in proc.stderr and "Fatal Python error" not in proc.stderr, proc.stderr
    assert codes == {case: [1] * RUNS for case in codes}


def test_missing_password_exits_2_every_time(lab, tmp_path):
    windows = next(h for h in lab.env["hosts"] if h["os"] == "windows")
    env = lab.cli_env()
    env.pop("D1_NO_SUCH_PASSWORD", None)
    for _ in range(RUNS):
        proc = lab.nodeboot("join", "--os", "windows", "--password-env", "D1_NO_SUCH_PASSWORD", windows["address"],
                            "--log-dir", str(tmp_path / "logs"))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (f"nodeboot: host {windows['address']}: environment variable "
                                       "D1_NO_SUCH_PASSWORD (its password) is not set")


def node_tokens(cluster, node: str) -> list[str]:
    """Ids of the bootstrap tokens in the cluster whose description names node."""
    secrets = cluster.core.list_namespaced_secret("kube-system", field_selector="type=bootstrap.kubernetes.io/token")
    found = []
    for secret in secrets.items:
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        if data.get("description") == description_for(node):
            found.append(data["token-id"])
    return found


def test_the_next_run_deletes_the_token_a_killed_run_left(lab, tmp_path):
    host = lab.reserve(1)[0]
    cluster = lab.cluster()
    # What a run SIGKILLed after making its token leaves: a valid token for the node, never deleted.
    left = TokenLedger(cluster).create(host["name"]).token_id
    other = TokenLedger(cluster).create("some-other-node").token_id
    try:
        assert node_tokens(cluster, host["name"]) == [left]
        inventory = lab.inventory([host], "leftover-token")
        proc, events = lab.nodeboot_json("join", "-i", str(inventory), "--log-dir", str(tmp_path / "logs"))
        assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
        assert summary(events)["tokens_created"] == 1
        said = proc.stderr + "".join(e.get("message", "") for e in events if e.get("event") in ("message", "warning"))
        assert f"earlier run left for these nodes (killed before its cleanup?): {left}" in said
        with pytest.raises(client.ApiException) as gone:
            cluster.core.read_namespaced_secret(f"bootstrap-token-{left}", "kube-system")
        assert gone.value.status == 404
        assert node_tokens(cluster, host["name"]) == []
        # Another node's token is not this run's business.
        assert node_tokens(cluster, "some-other-node") == [other]
    finally:
        for token_id in (left, other):
            with contextlib.suppress(client.ApiException):
                cluster.core.delete_namespaced_secret(f"bootstrap-token-{token_id}", "kube-system")
