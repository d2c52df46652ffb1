"""`nodeboot verify`'s verdicts and `proxy set-mode`'s plan, without a cluster.

The check functions take what verify.sh reports (facts) and what the cluster says;
verify.sh, proxy-probe.sh and proxy-preflight.sh run here for real against this
machine's loopback and a private network namespace.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from localshell import host_script_facts
from nodeboot import verify
from nodeboot.cli.proxy import confirm
from nodeboot.cluster import kubeproxy
from nodeboot.errors import UsageError
from nodeboot.scripts import script_text, shell_preamble

VIEW = verify.ClusterView("ipvs", "10.96.0.1", 443, api_offset=0.0, api_offset_slack=0.5)


def run_script(name: str, variables: dict[str, str], netns: bool = False) -> dict:
    return host_script_facts(name, shell_preamble(variables) + script_text("linux", name),
                             wrapper=("unshare", "-n") if netns else ())


# ---- the check functions ---------------------------------------------------------

def test_proxy_mode_must_match_the_configmap() -> None:
    assert verify.kube_proxy_mode({"proxy_mode": "ipvs"}, "ipvs").status == "pass"
    wrong = verify.kube_proxy_mode({"proxy_mode": "iptables"}, "ipvs")
    assert wrong.status == "fail" and "runs iptables" in wrong.detail and "says ipvs" in wrong.detail
    silent = verify.kube_proxy_mode({"proxy_mode": "", "proxy_mode_error": "nothing answers on 127.0.0.1:10249"},
                                    "ipvs")
    assert silent.status == "fail" and "10249" in silent.detail


def test_cgroup_drivers_must_agree() -> None:
    ok = verify.cgroup_driver({"kubelet_cgroup_driver": "systemd", "containerd_systemd_cgroup": "true"})
    assert ok.status == "pass"
    bad = verify.cgroup_driver({"kubelet_cgroup_driver": "systemd", "containerd_systemd_cgroup": "false",
                                "containerd_config_source": "/etc/containerd/config.toml"})
    assert bad.status == "fail" and "cgroupfs" in bad.detail and "config.toml" in bad.detail
    assert verify.cgroup_driver({"kubelet_cgroup_driver": "", "containerd_systemd_cgroup": "true"}).status == "fail"


def test_kubelet_cert_near_expiry_fails() -> None:
    now = time.time()
    assert verify.kubelet_cert({"kubelet_cert_not_after": str(now + 300 * 86400)}, now, 30).status == "pass"
    near = verify.kubelet_cert({"kubelet_cert_not_after": str(now + 10 * 86400)}, now, 30)
    assert near.status == "fail" and "within 30" in near.detail
    assert "expired" in verify.kubelet_cert({"kubelet_cert_not_after": str(now - 60)}, now, 30).detail
    missing = verify.kubelet_cert({"kubelet_cert_not_after": "", "kubelet_cert_error": "x.pem is missing"}, now, 30)
    assert missing.status == "fail" and "missing" in missing.detail


def test_clock_skew_against_the_api_server() -> None:
    sent = time.time()
    fine = verify.clock_skew({"time": str(sent + 0.1)}, sent, sent + 0.2, VIEW)
    assert fine.status == "pass"
    off = verify.clock_skew({"time": str(sent + 30)}, sent, sent + 0.2, VIEW)
    assert off.status == "fail" and re.search(r"\+(29\.9|30\.0)s off the API server", off.detail)
    # Our clock is 30 s behind the API server's, and so is the node's: no skew between node and server.
    behind = verify.ClusterView("ipvs", "10.96.0.1", 443, api_offset=30.0, api_offset_slack=0.5)
    assert verify.clock_skew({"time": str(sent + 30)}, sent, sent + 0.2, behind).status == "pass"


def test_cni_and_service_and_pod_verdicts() -> None:
    assert verify.cni_config({"cni_configs": ["10-flannel.conflist"]}).status == "pass"
    assert "/etc/cni/net.d" in verify.cni_config({"cni_configs": []}).detail
    assert verify.service_reachable({"service_reachable": True, "service_connect_ms": 3}, VIEW).status == "pass"
    assert verify.service_reachable({"service_reachable": False, "service_error": "x"}, VIEW).status == "fail"
    running = SimpleNamespace(metadata=SimpleNamespace(name="kube-proxy-abc", deletion_timestamp=None),
                              status=SimpleNamespace(phase="Running"))
    pending = SimpleNamespace(metadata=SimpleNamespace(name="kube-proxy-xyz", deletion_timestamp=None),
                              status=SimpleNamespace(phase="Pending"))
    assert verify.kube_proxy_pod([running]).status == "pass"
    assert "Pending" in verify.kube_proxy_pod([pending]).detail
    assert verify.kube_proxy_pod([]).detail == "no kube-proxy pod on the node"


def test_json_output_names_every_check_and_the_verdict() -> None:
    report = verify.NodeReport("h1", "n1", "linux", [verify.Check("node-ready", "pass", "Ready"),
                                                      verify.Check("cni-config", "fail", "empty")])
    data = json.loads(verify.as_json([report]))
    assert data["ok"] is False
    assert data["nodes"][0]["checks"]["cni-config"] == {"status": "fail", "detail": "empty"}


# ---- the migration's plan ------------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "itself"), [
    ("iptables", "ipvs", False), ("ipvs", "iptables", False),
    ("iptables", "nftables", True), ("ipvs", "nftables", True),
    ("nftables", "iptables", True), ("nftables", "ipvs", True),
])
def test_which_transitions_kube_proxy_cleans_itself(old: str, new: str, itself: bool) -> None:
    assert kubeproxy.kube_proxy_cleans_itself(old, new) is itself
    plan = kubeproxy.cleanup_plan(old, new)
    assert plan.startswith(f"{old} mode's leftovers")
    assert ("kube-proxy removes these itself" in plan) is itself
    assert ("keeping the chains" in plan) is (not itself)


def test_warnings_for_what_users_notice() -> None:
    to_nft = kubeproxy.mode_warnings({"mode": "iptables"}, {"mode": "nftables"}, metallb=False)
    assert any("127.0.0.1" in w for w in to_nft)
    assert any("localhostNodePorts" in w for w in to_nft)
    off = kubeproxy.mode_warnings({"mode": "iptables", "iptables": {"localhostNodePorts": False},
                                   "nodePortAddresses": ["primary"]}, {"mode": "nftables"}, metallb=False)
    assert not any("localhostNodePorts" in w or "nodePortAddresses" in w for w in off)
    to_ipvs = kubeproxy.mode_warnings({"mode": "iptables"}, {"mode": "ipvs", "ipvs": {}}, metallb=True)
    assert any("strictARP" in w for w in to_ipvs)
    assert kubeproxy.mode_warnings({"mode": "iptables"}, {"mode": "ipvs", "ipvs": {"strictARP": True}},
                                   metallb=True) == []


def test_without_a_terminal_set_mode_needs_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", SimpleNamespace(isatty=lambda: False))
    with pytest.raises(UsageError, match="needs --yes"):
        confirm("switch?", yes=False)
    confirm("switch?", yes=True)  # no question asked


# ---- the node scripts, for real ------------------------------------------------------------

@pytest.fixture
def listener() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock, sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def test_verify_script_reports_a_reachable_service_and_a_silent_kube_proxy(listener) -> None:
    _, port = listener
    facts = run_script("verify.sh", {"NB_SERVICE_ADDR": "127.0.0.1", "NB_SERVICE_PORT": str(port),
                                     "NB_PROXY_METRICS": "127.0.0.1:1"})
    assert facts["service_reachable"] is True
    assert facts["proxy_mode"] == "" and "127.0.0.1:1" in facts["proxy_mode_error"]
    assert float(facts["time"]) == pytest.approx(time.time(), abs=30)


def test_verify_script_reads_proxy_mode_over_http() -> None:
    import http.server

    class Mode(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"nftables" if self.path == "/proxyMode" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        facts = run_script("verify.sh", {"NB_PROXY_METRICS": f"127.0.0.1:{server.server_address[1]}"})
    finally:
        server.shutdown()
    assert facts["proxy_mode"] == "nftables"


LISTEN = ("import socket, sys, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
          "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(256); print('up', flush=True); time.sleep(60)")


def listen_on(port: int) -> subprocess.Popen:
    """A listener in its own process (the kernel completes the handshakes): killing it closes the port."""
    proc = subprocess.Popen([sys.executable, "-c", LISTEN, str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc


def test_probe_measures_the_longest_gap(tmp_path: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    probe_dir = str(tmp_path / "probe")
    target = {"NB_PROBE_DIR": probe_dir, "NB_PROBE_TARGET": f"127.0.0.1:{port}", "NB_PROBE_INTERVAL_MS": "50"}
    first = listen_on(port)
    second = None
    try:
        run_script("proxy-probe.sh", {**target, "NB_PROBE_ACTION": "start"})
        results = Path(probe_dir) / "results"
        # A gap: the port answers, then is closed for a few probes, then answers again.
        wait_for_lines(results, lambda lines: sum(x.endswith(" 1") for x in lines) >= 3)
        first.kill()
        first.wait()
        wait_for_lines(results, lambda lines: sum(x.endswith(" 0") for x in lines) >= 4)
        second = listen_on(port)
        wait_for_lines(results, lambda lines: lines[-1].endswith(" 1"))
        facts = run_script("proxy-probe.sh", {"NB_PROBE_DIR": probe_dir, "NB_PROBE_ACTION": "stop"})
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert facts["failures"] >= 4
    assert facts["longest_failure_run"] >= 4
    assert facts["longest_gap_ms"] >= 4 * 50
    assert facts["probes"] > facts["failures"]
    assert not (Path(probe_dir) / "pid").exists()


def wait_for_lines(path: Path, done, limit: float = 20.0) -> None:
    """Poll the probe's result file (bounded) until `done(lines)`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if lines and done(lines):
            return
        time.sleep(0.05)
    raise AssertionError(f"probe results never got there: {path.read_text() if path.exists() else 'none'}")


def test_nftables_preflight_really_creates_kube_proxy_shaped_rules() -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root for a private network namespace")
    facts = run_script("proxy-preflight.sh", {"NB_PROXY_MODE": "nftables"}, netns=True)
    assert facts["problems"] == [], facts


def test_a_cluster_without_kube_proxy_does_not_fail_the_mode_check() -> None:
    check = verify.kube_proxy_mode({"proxy_mode": ""}, "")
    assert check.status == "not-run" and "ConfigMap" in check.detail
