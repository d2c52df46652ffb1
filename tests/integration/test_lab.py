"""The lab itself: real control plane, real kubeadm on real sshd hosts, real WinRM wire protocol."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import winrm
from kubernetes import client

from labkit import wait_for
from nodeboot.cluster import joinconfig, tokens
from nodeboot.scripts import parse_result, script_text
from nodeboot.transport.ssh import SSHOptions, SSHTransport
from nodeboot_lab.lab import Lab


def test_api_server_is_the_real_one(lab):
    major, minor, git = lab.cluster().version
    assert (major, minor) == (1, 37) and git == "v1.37.2"
    # kubeadm's own phases made these: a fake API server would not have them.
    cm = lab.cluster().core.read_namespaced_config_map("kubeadm-config", "kube-system")
    assert "ClusterConfiguration" in cm.data["ClusterConfiguration"]
    ds = lab.cluster().apps.read_namespaced_daemon_set("kube-proxy", "kube-system")
    assert ds.spec.template.spec.containers[0].image.endswith(":v1.37.2")


def test_bootstrapsigner_signs_cluster_info_for_a_new_token(lab):
    cluster = lab.cluster()
    ledger = tokens.TokenLedger(cluster)
    token = ledger.create("signer-check")
    try:
        started = time.monotonic()
        tokens.wait_signed(cluster, token, timeout=30)
        data = cluster.core.read_namespaced_config_map("cluster-info", "kube-public").data
        assert f"jws-kubeconfig-{token.token_id}" in data
        print(f"bootstrapsigner signed cluster-info in {time.monotonic() - started:.2f}s")
    finally:
        ledger.delete(token)
    # tokencleaner/bootstrapsigner also remove the signature once the token is gone.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data = cluster.core.read_namespaced_config_map("cluster-info", "kube-public").data
        if f"jws-kubeconfig-{token.token_id}" not in data:
            break
        time.sleep(0.2)
    assert f"jws-kubeconfig-{token.token_id}" not in data


def _transport(lab, host) -> SSHTransport:
    return SSHTransport(
        host["address"], SSHOptions(key_file=lab.env["ssh_key"], known_hosts=lab.env["known_hosts"]), name=host["name"]
    )


def test_real_kubeadm_join_and_reset_over_ssh(lab):
    (host,) = lab.reserve(1)
    cluster = lab.cluster()
    ledger = tokens.TokenLedger(cluster)
    token = ledger.create(host["name"])
    tokens.wait_signed(cluster, token)
    spec = joinconfig.JoinSpec(
        endpoint=tokens.join_endpoint(cluster),
        token=token.value,
        ca_hashes=tokens.ca_cert_hashes(cluster),
        node_name=host["name"],
        ignore_preflight_errors=["SystemVerification"],
    )
    t = _transport(lab, host)
    try:
        out = t.run_script(script_text("linux", "join.sh"), {}, {"NB_JOIN_CONFIG": joinconfig.render(spec, 37)})
        result = parse_result("join.sh", out.exit_status, out.stdout, out.stderr)
        assert result.ok and result.changed, out.stderr[-2000:]
        # kubeadm's own words: discovery against the JWS-signed cluster-info, then the TLS bootstrap.
        assert "This node has joined the cluster" in out.stderr
        # kubeadm is done once kubelet.conf exists; the kubelet registers its Node a moment later, and
        # posts the Node's status (its conditions) after that.
        node = wait_for(f"Node {host['name']} registered with its status",
                        lambda: with_status(read_node_or_none(cluster, host["name"])), 60, 0.5)
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        csrs = client.CertificatesV1Api(cluster.api).list_certificate_signing_request().items
        mine = [c for c in csrs if c.spec.username == f"system:bootstrap:{token.token_id}"]
        assert mine and all(any(x.type == "Approved" for x in c.status.conditions) for c in mine)
        # kubeadm reset on the host, for real.
        out = t.run_script(script_text("linux", "reset.sh"), {})
        result = parse_result("reset.sh", out.exit_status, out.stdout, out.stderr)
        assert result.ok and result.changed, out.stderr[-2000:]
        assert lab.ssh(host, "test -e /etc/kubernetes/kubelet.conf; echo $?").stdout.strip() == "1"
    finally:
        ledger.delete(token)
        t.close()
        if read_node_or_none(cluster, host["name"]):
            cluster.core.delete_node(host["name"])


def with_status(node):
    """The Node once its kubelet has posted conditions, else None."""
    return node if node is not None and node.status and node.status.conditions else None


def read_node_or_none(cluster, name: str):
    try:
        return cluster.core.read_node(name)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_pywinrm_runs_a_command_on_a_windows_lab_host(lab):
    (host,) = lab.reserve(1, "windows")
    for scheme, port, encryption in (("http", 5985, "always"), ("https", 5986, "auto")):
        session = winrm.Session(
            f"{scheme}://{host['address']}:{port}/wsman",
            auth=("Administrator", lab.winrm_password()),
            transport="ntlm",
            server_cert_validation="validate",
            ca_trust_path=lab.env["winrm_ca"],
            message_encryption=encryption,
        )
        result = session.run_cmd("hostname")
        assert result.status_code == 0 and result.std_out.strip(), (scheme, result.std_err)


def test_lab_status_and_env(lab):
    status = lab.lab.status()
    assert status["up"] and all(h["namespace"] for h in status["hosts"])
    env = lab.env
    for key in ("kubeconfig", "inventory", "known_hosts", "ssh_key"):
        assert Path(env[key]).exists(), key
    proc = lab.lab_cli("env", "--json", "--state-dir", env["state_dir"])
    assert proc.returncode == 0 and '"api_endpoint"' in proc.stdout


def test_lab_down_leaves_nothing_behind(tmp_path):
    state = tmp_path / "second-lab"
    small = Lab(state, log=lambda _m: None)
    record = small.up(linux=1, windows=1)
    pids = []
    for name in [f"{record.prefix}-cp", *[h.netns for h in record.hosts]]:
        pids += subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    assert pids
    small.down()
    assert not any(
        line.startswith(record.prefix)
        for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
    )
    assert subprocess.run(["ip", "link", "show", record.bridge], capture_output=True).returncode != 0
    mounts = Path("/proc/self/mounts").read_text()
    assert str(state) not in mounts
    assert not [pid for pid in pids if _running(pid)]


def _running(pid: str) -> bool:
    """Alive and not a zombie (a zombie is dead, waiting for PID 1 to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
