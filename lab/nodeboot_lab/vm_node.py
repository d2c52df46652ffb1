"""VM nodes on the lab bridge: bare Debian machines (nodeboot_lab.node_image) for nodeboot to install and join.

Each node is one qemu (TCG) with its NIC on a tap device enslaved to the lab
bridge, so it sits on the lab /24 like the namespace hosts and reaches the
control plane directly. Its address and hostname travel on the kernel
command line, its own SSH host key through qemu's firmware config. The lab
records every node's tap and qemu PID in lab.json before the boot, so `down`
(or the next `up`) removes exactly those: qemu powered down over QMP, then
SIGTERM/SIGKILL by PID, the tap deleted by name.

Nothing routes out of the lab: the guest's default route has no gateway (an
on-link route on eth0), so it can only ARP on the bridge, and the bridge is
set to answer ARP only for its own lab address. The root namespace does not
forward (the lab refuses to add VMs if it does).

A dual-stack lab also gives each node an address of the lab's IPv6 ULA /64
(fd00::/8, never routed), an on-link IPv6 default route like the IPv4 one, and
IPv6 forwarding (kubeadm's and nodeboot's preflight want it for an IPv6 node IP);
its inventory entry then names both node IPs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeboot_lab import node_image, pod_network, vm
from nodeboot_lab.netns import LabError, sh

MAX_VM_NODES = 20
FIRST_OCTET = 200  # lab-vm-1 is <subnet>.201; namespace hosts use .11-.89 and .101-.120
PREFIX_LEN = 24
PREFIX_LEN6 = 64
MEMORY_MB = int(os.environ.get("NODEBOOT_LAB_VM_MEMORY_MB", "2048"))
SMP = int(os.environ.get("NODEBOOT_LAB_VM_SMP", "2"))
# Boots at once: a booting TCG guest keeps about SMP host cores busy, and more at
# once than the cores allow only stretches every boot.
PARALLEL_BOOTS = int(os.environ.get("NODEBOOT_LAB_VM_PARALLEL") or max(1, min(4, (os.cpu_count() or 1) // SMP)))
POWERDOWN_WAIT = 15.0
GROUP = "vm_nodes"
RESTART_BOOT_UNITS = "".join(f"systemctl is-active -q {u} || systemctl restart {u}\n"
                             for u in ("dbus.service", "systemd-logind.service"))


@dataclass
class VMNodeRecord:
    name: str  # hostname and Node name
    address: str
    tap: str
    mac: str
    state_dir: str  # overlay, serial log, QMP socket, host key
    pid: int = 0
    boot_seconds: float = 0.0
    address6: str = ""  # dual-stack labs only


def tap_name(prefix: str, index: int) -> str:
    return f"{prefix}t{index - 1}"  # nbXXXXt0: well inside the 15 characters Linux allows


def mac_address(prefix: str, index: int) -> str:
    """A stable MAC, unique per lab and node (QEMU's 52:54:00 prefix)."""
    digest = hashlib.sha256(f"{prefix}/{index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def plan(state: Path, prefix: str, subnet: str, count: int, subnet6: str = "") -> list[VMNodeRecord]:
    if not 0 <= count <= MAX_VM_NODES:
        raise LabError(f"lab: --vm-nodes must be 0..{MAX_VM_NODES}, not {count}")
    return [
        VMNodeRecord(
            name=f"lab-vm-{i}",
            address=f"{subnet}.{FIRST_OCTET + i}",
            tap=tap_name(prefix, i),
            mac=mac_address(prefix, i),
            state_dir=str(state / "vms" / f"lab-vm-{i}"),
            address6=f"{subnet6}::{FIRST_OCTET + i}" if subnet6 else "",
        )
        for i in range(1, count + 1)
    ]


class NodeVM(vm.VM):
    """One boot of the node image, on a tap of the lab bridge."""

    def __init__(self, image: vm.VMImage, node: VMNodeRecord) -> None:
        super().__init__(image, Path(node.state_dir), MEMORY_MB)
        self.node = node
        self.smp = SMP
        self.ssh_host = node.address
        self.port = 22

    @property
    def host_key(self) -> Path:
        return self.state_dir / "ssh_host_ed25519_key"

    def known_hosts_line(self) -> str:
        kind, blob = self.host_key.with_name(self.host_key.name + ".pub").read_text().split()[:2]
        return f"{self.node.address} {kind} {blob}\n"

    def qemu_name(self) -> str:
        return self.node.name

    def kernel_cmdline(self) -> str:
        return node_image.kernel_cmdline(self.node.name, self.node.address, PREFIX_LEN)

    def network_args(self) -> list[str]:
        return [
            "-netdev",
            f"tap,id=n0,ifname={self.node.tap},script=no,downscript=no",
            "-device",
            f"virtio-net-pci,netdev=n0,mac={self.node.mac}",
            "-fw_cfg",
            f"name={node_image.FW_CFG_HOST_KEY},file={self.host_key}",
        ]

    def _prepare_network(self) -> None:
        self.port = 22
        if not self.host_key.exists():
            vm._new_keypair(self.host_key, f"root@{self.node.name}")
        self.known_hosts.write_text(self.known_hosts_line())


def _link_exists(name: str) -> bool:
    return sh("ip", "link", "show", "dev", name, check=False).returncode == 0


def _create_tap(tap: str, bridge: str) -> None:
    if _link_exists(tap):
        sh("ip", "link", "del", "dev", tap)
    sh("ip", "tuntap", "add", "dev", tap, "mode", "tap")
    sh("ip", "link", "set", "dev", tap, "master", bridge, "up")


def _check_no_forwarding(bridge: str, ipv6: bool = False) -> None:
    """The VMs' on-link default route is safe only if the host side never routes lab traffic on."""
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    if forwarding != "0":
        raise LabError(
            "lab: net.ipv4.ip_forward is on in the root namespace; VM nodes would be routed out of the lab "
            "(turn it off or run without --vm-nodes)"
        )
    if ipv6 and Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text().strip() != "0":
        raise LabError(
            "lab: net.ipv6.conf.all.forwarding is on in the root namespace; dual-stack VM nodes would be routed "
            "out of the lab (turn it off or run without --dual-stack)"
        )
    # Answer ARP on the bridge only for the bridge's own lab address, not for every
    # address this machine has: a guest then cannot even reach the host's other addresses.
    sh("sysctl", "-qw", f"net.ipv4.conf.{bridge}.arp_ignore=1")


def start_nodes(
    state: Path,
    bridge: str,
    nodes: list[VMNodeRecord],
    remember: Callable[[], None],
    log: Callable[[str], None] = print,
) -> None:
    """Boot the planned nodes on the bridge and wait for SSH on each.

    remember() (the lab saving lab.json, which holds these records) is called
    before any tap or qemu exists and again after the boots, so lab.json always
    names what a later `down` must remove.
    """
    if not nodes:
        return
    image = node_image.ensure_image()
    vm._need_tools("qemu-system-x86_64", "qemu-img")
    _check_no_forwarding(bridge, ipv6=any(n.address6 for n in nodes))
    remember()
    (state / "vms").mkdir(parents=True, exist_ok=True)
    key = state / "vms" / "id_ed25519"
    shutil.copyfile(image.client_key, key)
    key.chmod(0o600)
    for node in nodes:
        _create_tap(node.tap, bridge)
    started = time.monotonic()

    def boot(node: VMNodeRecord) -> None:
        machine = NodeVM(image, node)
        try:
            node.boot_seconds = machine.start(detach=True)
            # On oversubscribed host cores D-Bus and logind can miss systemd's start timeout; the
            # kubelet's and runc's systemd cgroup driver need D-Bus, so start what failed again.
            machine.run(RESTART_BOOT_UNITS)
            # The pod network's stand-in, in place before anyone joins the node (a CNI
            # DaemonSet would write it once the node joined; nodeboot's reset removes it).
            if node.address6:
                machine.run(ipv6_setup(node.address6))
            machine.run(pod_network.install_command(dual_stack=bool(node.address6)))
        finally:
            node.pid = machine.pid if machine.pid and vm._pid_alive(machine.pid) else 0

    with ThreadPoolExecutor(max_workers=PARALLEL_BOOTS, thread_name_prefix="lab-vm") as pool:
        jobs = [pool.submit(boot, node) for node in nodes]
        errors = [job.exception() for job in jobs]
    remember()
    failed = [exc for exc in errors if exc is not None]
    if failed:
        raise LabError(f"lab: a VM node did not come up: {failed[0]} (the rest of the lab is up: "
                       "`nodeboot-lab down` removes it)")
    with (state / "ssh" / "known_hosts").open("a") as fh:
        for node in nodes:
            fh.write(NodeVM(image, node).known_hosts_line())
    log(
        f"lab: {len(nodes)} VM node(s) up in {time.monotonic() - started:.1f}s "
        f"({', '.join(f'{n.name} {n.address} {n.boot_seconds:.0f}s' for n in nodes)})"
    )


def ipv6_setup(address6: str) -> str:
    """Shell for a dual-stack node: its IPv6 address, an on-link default route, forwarding."""
    return (
        "sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.conf.default.forwarding=1\n"
        "printf 'net.ipv6.conf.all.forwarding = 1\\nnet.ipv6.conf.default.forwarding = 1\\n' "
        "> /etc/sysctl.d/90-nodeboot-lab-ipv6.conf\n"
        f"ip -6 addr replace {address6}/{PREFIX_LEN6} dev eth0 nodad\n"
        "ip -6 route replace default dev eth0\n"
    )


def _qemu_pids_under(vms_dir: Path) -> list[int]:
    """qemu processes started for this lab's VMs (their argv names a path under vms_dir)."""
    needle = (str(vms_dir) + "/").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"qemu-system-x86_64") and any(needle in arg for arg in argv):
                pids.append(int(entry.name))
    return pids


def _power_down(pid: int, state_dir: Path) -> None:
    """QMP power-down (the guest's acpid shuts it down), then SIGTERM, then SIGKILL."""
    with suppress(OSError, ValueError):
        vm._qmp(state_dir / "qmp.sock", "system_powerdown")
    for sig, wait in ((0, POWERDOWN_WAIT), (15, 10.0), (9, 10.0)):
        if sig:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # ours when up and down ran in one process
            if not vm._pid_alive(pid):
                return
            time.sleep(0.2)
    raise LabError(f"lab: qemu pid {pid} survived SIGKILL")


def stop_nodes(state: Path, prefix: str, nodes: list[VMNodeRecord]) -> list[str]:
    """Power down every qemu of this lab and delete its taps; return what was removed.

    Works from lab.json's records and also finds what a crash left unrecorded:
    qemu processes whose argv points into this lab's vms/ directory, and taps
    named after this lab's prefix."""
    vms_dir = state / "vms"
    removed: list[str] = []
    pids = {pid: vms_dir / "unknown" for pid in _qemu_pids_under(vms_dir)}
    for node in nodes:
        if node.pid and vm._is_our_qemu(node.pid, Path(node.state_dir)):
            pids[node.pid] = Path(node.state_dir)
    for pid in list(pids):
        for node in nodes:
            if vm._is_our_qemu(pid, Path(node.state_dir)):
                pids[pid] = Path(node.state_dir)
    if pids:
        with ThreadPoolExecutor(max_workers=len(pids)) as pool:
            list(pool.map(lambda item: _power_down(*item), pids.items()))
        removed += [f"qemu pid {pid}" for pid in sorted(pids)]
    taps = {node.tap for node in nodes} | set(lab_taps(prefix))
    for tap in sorted(taps):
        if _link_exists(tap):
            sh("ip", "link", "del", "dev", tap, check=False)
            removed.append(f"tap {tap}")
    for node in nodes:
        with suppress(OSError):
            (Path(node.state_dir) / "overlay.qcow2").unlink()
    return removed


def lab_taps(prefix: str) -> list[str]:
    out = sh("ip", "-o", "link", "show", "type", "tun", check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(f"{prefix}t") and n[len(prefix) + 1 :].isdigit()]


def inventory_group(state: Path, nodes: list[VMNodeRecord]) -> dict[str, Any]:
    """The inventory group of the VM nodes (own key, so tests never mistake them for namespace hosts)."""
    return {
        "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(state / "vms" / "id_ed25519"),
            # A real kernel with cgroup v2: kubeadm's system verification can pass here.
            "nodeboot_ignore_preflight_errors": [],
        },
        "hosts": {n.name: {"ansible_host": n.address, "nodeboot_node_ip": node_ips(n)} for n in nodes},
    }


def node_ips(node: VMNodeRecord) -> str:
    """nodeboot_node_ip: the IPv4 address, and the IPv6 one on a dual-stack lab (the kubelet's --node-ip)."""
    return f"{node.address},{node.address6}" if node.address6 else node.address


def env_entries(state: Path, nodes: list[VMNodeRecord]) -> list[dict[str, Any]]:
    return [
        {
            "name": n.name,
            "os": "linux",
            "kind": "vm",
            "address": n.address,
            "address6": n.address6,
            "tap": n.tap,
            "pid": n.pid,
            "ssh_key": str(state / "vms" / "id_ed25519"),
            "serial_log": str(Path(n.state_dir) / "serial.log"),
            "boot_seconds": n.boot_seconds,
        }
        for n in nodes
    ]
