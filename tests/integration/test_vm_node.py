"""The lab's bare VM node: a real Debian kernel on the lab bridge, reached the way nodeboot reaches any host.

The node is what an operator's freshly installed machine would be (systemd as
PID 1, cgroup v2, D-Bus, no Kubernetes), on a lab address, with no route out of
the lab. Every check goes through nodeboot's own inventory loading and SSH
transport, host key verified against the lab's known_hosts.

Its own lab (state dir NODEBOOT_TEST_VM_LAB_STATE), with no namespace hosts,
taken down by the last test, which checks that nothing is left.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeboot.inventory import load_inventory
from nodeboot.redact import Redactor
from nodeboot.transport import ExecResult
from nodeboot.transport.factory import ConnectionDefaults, make_transport
from nodeboot.transport.ssh import SSHTransport
from nodeboot_lab import vm, vm_node
from nodeboot_lab.lab import Lab

pytestmark = pytest.mark.lab

# Addresses that are nobody's: TEST-NET-1 and the far end of the benchmark range.
NOT_IN_THE_LAB = ("192.0.2.1", "198.19.255.254")


@pytest.fixture(scope="module")
def vm_lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network namespaces, taps)")
    state = Path(os.environ.get("NODEBOOT_TEST_VM_LAB_STATE", "/tmp/nodeboot-test-vm-lab"))
    lab = Lab(state, log=lambda m: print(m, file=sys.stderr))
    try:
        lab.up(linux=0, windows=0, vm_nodes=1)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def env(vm_lab: Lab) -> dict[str, Any]:
    return vm_lab.env()


@pytest.fixture(scope="module")
def node(env: dict[str, Any]) -> dict[str, Any]:
    (entry,) = env["vm_hosts"]
    return entry


@pytest.fixture(scope="module")
def guest(env: dict[str, Any], node: dict[str, Any]) -> Iterator[SSHTransport]:
    """nodeboot's transport to the node, built from the lab inventory as `nodeboot join -i` builds it."""
    (host,) = [h for h in load_inventory(env["inventory"]) if h.name == node["name"]]
    # An emulated CPU can take many seconds for a key exchange on busy cores.
    transport = make_transport(host, ConnectionDefaults(connect_timeout=60, command_timeout=300), Redactor())
    assert isinstance(transport, SSHTransport)
    try:
        yield transport
    finally:
        transport.close()


def sh(transport: SSHTransport, command: str, check: bool = True) -> ExecResult:
    result = transport.run_script(command, {}, None, 120)
    if check and result.exit_status != 0:
        raise AssertionError(f"guest command failed ({result.exit_status}): {command}\n{result.stderr}")
    return result


def test_inventory_keeps_vm_nodes_apart(env: dict[str, Any], node: dict[str, Any]) -> None:
    inventory = yaml.safe_load(Path(env["inventory"]).read_text())
    group = inventory["all"]["children"]["vm_nodes"]
    assert group["hosts"] == {node["name"]: {"ansible_host": node["address"], "nodeboot_node_ip": node["address"]}}
    assert group["vars"]["ansible_user"] == "root"
    assert Path(group["vars"]["ansible_ssh_private_key_file"]).stat().st_mode & 0o077 == 0
    # The namespace hosts' list (what tests reserve from) does not hand out the VM.
    assert env["hosts"] == []
    assert inventory["all"]["children"]["linux"]["hosts"] == {}
    (host,) = [h for h in load_inventory(env["inventory"]) if h.name == node["name"]]
    assert host.address == node["address"] and host.node_ips == [node["address"]] and host.user == "root"
    assert host.ignore_preflight_errors == []  # a real kernel: kubeadm's system checks can pass


def test_host_key_is_the_nodes_own_and_verified(env: dict[str, Any], node: dict[str, Any],
                                                guest: SSHTransport) -> None:
    lines = [ln for ln in Path(env["known_hosts"]).read_text().splitlines() if ln.startswith(node["address"] + " ")]
    assert len(lines) == 1
    image_key = (vm_node.node_image.ensure_image().dir / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert lines[0].split()[2] != image_key  # per-boot key from fw_cfg, not the one baked into the image
    assert sh(guest, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip() == lines[0].split()[2]


def test_systemd_is_pid_1_with_cgroup2_controllers(guest: SSHTransport) -> None:
    assert sh(guest, "cat /proc/1/comm").stdout.strip() == "systemd"
    assert sh(guest, "stat -fc %T /sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    controllers = set(sh(guest, "cat /sys/fs/cgroup/cgroup.controllers").stdout.split())
    assert {"cpu", "memory", "pids"} <= controllers
    assert sh(guest, "cat /proc/swaps | wc -l").stdout.strip() == "1"  # header only: no swap


def test_systemd_answers_on_the_system_bus(guest: SSHTransport) -> None:
    # What runc's and the kubelet's systemd cgroup driver do: talk to systemd over D-Bus.
    sh(guest, "busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.DBus.Peer Ping")
    assert sh(guest, "systemctl is-active dbus.service").stdout.strip() == "active"
    assert sh(guest, "systemctl is-system-running || true").stdout.strip() in ("running", "degraded")
    failed = sh(guest, "systemctl list-units --failed --no-legend --plain").stdout.strip()
    assert failed == ""


def test_address_hostname_and_on_link_default_route(guest: SSHTransport, node: dict[str, Any]) -> None:
    assert sh(guest, "hostname").stdout.strip() == node["name"]
    assert f"inet {node['address']}/24 " in sh(guest, "ip -4 -o addr show dev eth0").stdout
    assert sh(guest, "ip -4 route show default").stdout.split() == ["default", "dev", "eth0", "scope", "link"]
    assert sh(guest, f"getent hosts {node['name']}").stdout.split()[0] == node["address"]


def test_control_plane_answers_from_the_node(env: dict[str, Any], guest: SSHTransport) -> None:
    kubeconfig = yaml.safe_load(Path(env["kubeconfig"]).read_text())
    ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
    assert guest.put_file(ca, "/tmp/lab-cluster-ca.crt")
    out = sh(guest, f"curl -sS --max-time 30 --cacert /tmp/lab-cluster-ca.crt https://{env['api_endpoint']}/healthz")
    assert out.stdout.strip() == "ok"


def test_nothing_of_kubernetes_is_installed(guest: SSHTransport) -> None:
    found = sh(guest, "for b in kubelet kubeadm kubectl containerd containerd-shim-runc-v2 runc crictl; do "
                      "command -v $b; done; ls -d /opt/cni /etc/containerd /var/lib/kubelet "
                      "/etc/systemd/system/kubelet.service 2>/dev/null", check=False)
    assert found.stdout.strip() == ""
    # ...but what a worker's OS provides is there.
    sh(guest, "command -v conntrack socat ethtool ipset ipvsadm nft iptables nsenter mount modprobe curl sysctl")


@pytest.mark.parametrize("outside", NOT_IN_THE_LAB)
def test_nothing_outside_the_lab_is_reachable(guest: SSHTransport, outside: str) -> None:
    result = sh(guest, f"curl -sS --max-time 8 http://{outside}/", check=False)
    assert result.exit_status in (7, 28), result.stderr  # could not connect / timed out
    # Nobody on the bridge claimed the address.
    assert "lladdr" not in sh(guest, f"ip neigh show {outside}").stdout


def test_this_machines_own_addresses_are_not_reachable(guest: SSHTransport, env: dict[str, Any]) -> None:
    # The bridge answers ARP only for its lab address, so the host's other addresses stay out of reach.
    ours = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                          check=True).stdout.split("\n")
    lab_prefix = env["api_endpoint"].rsplit(".", 1)[0] + "."
    others = [line.split()[3].split("/")[0] for line in ours if line.strip()]
    others = [a for a in others if not a.startswith(lab_prefix) and not a.startswith("198.18.")]
    for address in others[:2]:
        result = sh(guest, f"curl -sS --max-time 8 http://{address}:1/", check=False)
        assert "refused" not in result.stderr, f"{address} answered the VM: {result.stderr}"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"


def test_down_leaves_no_qemu_and_no_tap(vm_lab: Lab, env: dict[str, Any], node: dict[str, Any],
                                        guest: SSHTransport) -> None:
    guest.close()
    rss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{node['pid']}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    print(f"VM node {node['name']}: boot to SSH {node['boot_seconds']}s, qemu RSS {rss_kib // 1024} MiB")
    record = vm_lab.load()
    assert record is not None
    prefix = record.prefix
    # A tap left by a crash (never recorded) goes too.
    stray = vm_node.tap_name(prefix, 9)
    subprocess.run(["ip", "tuntap", "add", "dev", stray, "mode", "tap"], check=True)
    removed = vm_lab.down()
    assert f"qemu pid {node['pid']}" in removed and f"tap {node['tap']}" in removed and f"tap {stray}" in removed
    assert not vm._pid_alive(node["pid"])
    assert vm_node._qemu_pids_under(Path(env["state_dir"]) / "vms") == []
    for tap in (node["tap"], stray):
        assert subprocess.run(["ip", "link", "show", "dev", tap], capture_output=True).returncode != 0
    assert vm_node.lab_taps(prefix) == []
