"""Helpers for the real-node tier: commands on the VM node, the join command line, waits."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from labkit import LabHandle, wait_for

# Figures this tier measures, printed at the end of the run (pytest_terminal_summary).
TIMINGS: dict[str, float | str] = {}
KUBERNETES_VERSION = "v1.37.2"
KUBERNETES_SERVICE_IP = "10.96.0.1"
ECHO_IMAGE = "registry.k8s.io/e2e-test-images/nodeboot-echo:1.0"
# test_2's echo Deployment and its Service (ClusterIP port 80, NodePort below), used again by test_3.
ECHO_NAMESPACE = "nodeboot-echo"
ECHO_NODE_PORT = 30080


def vm(handle: LabHandle) -> dict[str, Any]:
    return handle.env["vm_hosts"][0]


def on_node(handle: LabHandle, command: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a command on the VM node with the OpenSSH client: an independent look at its state."""
    node = vm(handle)
    return subprocess.run(
        ["ssh", "-i", node["ssh_key"], "-o", f"UserKnownHostsFile={handle.env['known_hosts']}",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", f"root@{node['address']}", command],
        capture_output=True, text=True, timeout=timeout,
    )


def node_out(handle: LabHandle, command: str, timeout: float = 180) -> str:
    proc = on_node(handle, command, timeout)
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}"
    return proc.stdout


def inventory(handle: LabHandle, name: str, **host_vars: Any) -> str:
    node = vm(handle)
    return str(handle.inventory([node], name, host_vars={node["name"]: host_vars} if host_vars else None))


def install_args(handle: LabHandle, artifacts_url: str | None = None, registry: str | None = None) -> list[str]:
    env = handle.env
    return ["--install", "--artifacts-url", artifacts_url or env["artifacts_url"], "--artifacts-ca", env["lab_ca"],
            "--registry-mirror", registry or env["registry_mirror"], "--registry-ca", env["lab_ca"]]


def kubelet_patch_file(handle: LabHandle, settings: dict[str, Any]) -> str:
    path = handle.work / "kubelet-patch.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def wait_proxy_mode(handle: LabHandle, mode: str, timeout: float = 300) -> None:
    """Until kube-proxy on the node reports this mode and the kubernetes Service answers through it.

    Its pod shows Running a while before it listens on :10249, and it reports its mode before its
    first sync has programmed the rules: both are waited for, within one time budget."""
    deadline = time.monotonic() + timeout

    def answered() -> str | None:
        proc = on_node(handle, "curl -s --max-time 5 http://127.0.0.1:10249/proxyMode")
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() == mode else None

    def service_answers() -> bool:
        return on_node(handle, f"timeout 3 bash -c '</dev/tcp/{KUBERNETES_SERVICE_IP}/443'").returncode == 0

    wait_for(f"kube-proxy answering {mode} on 127.0.0.1:10249", answered, timeout)
    wait_for(f"the kubernetes Service ({KUBERNETES_SERVICE_IP}:443) answering on the node in {mode} mode",
             service_answers, max(deadline - time.monotonic(), 30))


# What tests/unit/fixtures/proxy-dumps holds per mode (its README), read on the node in one go.
# Only kube-proxy's nftables tables: iptables-nft keeps iptables' own rules as nft tables too.
PROXY_DUMP_FILES = {
    "iptables-save": "iptables-save | grep -v '^#'",
    "ip6tables-save": "ip6tables-save | grep -v '^#'",
    "ipset-save": "if lsmod | grep -q '^ip_set '; then ipset save; fi",
    "nft-ruleset": "for f in ip ip6; do nft list table $f kube-proxy 2>/dev/null; done",
    "ipvsadm": "if lsmod | grep -q '^ip_vs '; then ipvsadm -Ln | grep -q '^[TU]' && ipvsadm -Ln; fi",
    "kube-ipvs0": "ip -o addr show dev kube-ipvs0 2>/dev/null | awk '{ split($4, a, \"/\"); print a[1] }'",
}


def capture_proxy_dumps(handle: LabHandle, dest: Path, label: str) -> dict[str, str]:
    """The node's kube-proxy state as fixture files in DEST (an empty one is left out).

    `label` heads the files that take comments (iptables-save, ip6tables-save, nft-ruleset)."""
    script = "".join(f"echo '@@{name}'; {{ {cmd}; }} || true\n" for name, cmd in PROXY_DUMP_FILES.items())
    out = node_out(handle, script)
    sections: dict[str, list[str]] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith("@@") and line[2:] in PROXY_DUMP_FILES:
            current = line[2:]
            sections[current] = []
        elif current:
            sections[current].append(line)
    dest.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in PROXY_DUMP_FILES:
        body = "\n".join(sections.get(name, [])).strip("\n")
        (dest / name).unlink(missing_ok=True)
        if not body.strip():
            continue
        if name in ("iptables-save", "ip6tables-save", "nft-ruleset"):
            body = f"# {label}\n{body}"
        (dest / name).write_text(body + "\n")
        written[name] = body
    return written


def verify_passes(handle: LabHandle, inventory_path: str, timeout: float = 180) -> dict[str, Any]:
    """`nodeboot verify --output json` until it passes; its report. Its probes give each network try
    2 s, and on the emulated node under load starting the probe's shell alone can take that long: a
    healthy node was seen failing kube-proxy-mode and service-reachable once, then passing."""
    last: list[str] = []

    def passed() -> dict[str, Any] | None:
        proc = handle.nodeboot("verify", "-i", inventory_path, "--kubeconfig", handle.kubeconfig,
                               "--output", "json", timeout=300)
        last[:] = [proc.stdout[-2000:], proc.stderr[-500:]]
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    try:
        return wait_for("nodeboot verify passing", passed, timeout, interval=10)
    except AssertionError:
        raise AssertionError(f"nodeboot verify never passed within {timeout:.0f}s: {last}") from None
