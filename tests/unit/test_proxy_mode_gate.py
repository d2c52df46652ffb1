"""join --proxy-mode and proxy set-mode judge a mode against the server's version by one rule
(issue 14, item 3). The servers here (1.32, 1.43) are versions this machine cannot run: a
stand-in answers only the version; anything else it is asked fails the test."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from loopback import closed_port
from nodeboot.cli import main
from nodeboot.cluster import kubeproxy
from nodeboot.cluster.client import Cluster
from nodeboot.errors import UsageError


class VersionOnlyCluster:
    def __init__(self, minor: int) -> None:
        self.version = (1, minor, f"v1.{minor}.0")

    def __getattr__(self, name: str):
        raise AssertionError(f"the cluster was asked for {name!r} after the version had ruled the mode out")


def run(argv: list[str], minor: int, monkeypatch, tmp_path) -> tuple[int, str]:
    monkeypatch.setattr(Cluster, "from_kubeconfig", classmethod(lambda cls, path=None: VersionOnlyCluster(minor)))
    monkeypatch.setattr(sys, "argv", ["nodeboot", *argv, "--log-dir", str(tmp_path / "logs")])
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err), pytest.raises(SystemExit) as ended:
        main()
    return int(ended.value.code or 0), err.getvalue()


@pytest.mark.parametrize(("mode", "minor", "message"), [
    ("ipvs", 43, "the API server is 1.43: kube-proxy has no IPVS mode any more; use nftables"),
    ("nftables", 32, "nftables mode is GA from 1.33; the API server is 1.32"),
])
def test_join_and_set_mode_refuse_the_same_modes(mode, minor, message, monkeypatch, tmp_path):
    # join connects to its hosts while the version is read (their facts scripts only read): the
    # host is a closed loopback port, so that attempt fails at once and nothing leaves the machine.
    host = f"127.0.0.1:{closed_port()}"
    join = run(["join", "--proxy-mode", mode, host], minor, monkeypatch, tmp_path)
    set_mode = run(["proxy", "set-mode", mode, host], minor, monkeypatch, tmp_path)
    assert join == set_mode == (2, f"nodeboot: {message}\n")


def test_gate_by_version():
    assert kubeproxy.gates_for_mode("ipvs", (1, 39)) == {}
    assert kubeproxy.gates_for_mode("ipvs", (1, 40)) == {"KubeProxyIPVS": True}
    assert kubeproxy.gates_for_mode("ipvs", (1, 42)) == {"KubeProxyIPVS": True}
    with pytest.raises(UsageError):
        kubeproxy.gates_for_mode("ipvs", (1, 43))
    assert kubeproxy.missing_gates({"featureGates": {"KubeProxyIPVS": True}}, {"KubeProxyIPVS": True}) == {}
    assert kubeproxy.missing_gates({}, {"KubeProxyIPVS": True}) == {"KubeProxyIPVS": True}
