"""Helpers for the real-node tier: commands on the VM node, the join command line, waits."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import yaml

from labkit import LabHandle, wait_for

# Figures this tier measures, printed at the end of the run (pytest_terminal_summary).
TIMINGS: dict[str, float | str] = {}
KUBERNETES_VERSION = "v1.37.2"
KUBERNETES_SERVICE_IP = "10.96.0.1"
ECHO_IMAGE = "registry.k8s.io/e2e-test-images/nodeboot-echo:1.0"


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
