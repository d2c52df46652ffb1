"""`nodeboot-lab`: bring the whole lab up, describe it, take it down.

State lives in one directory (default $XDG_STATE_HOME/nodeboot/lab): lab.json
says what exists, so `down` (and an `up` after a crash) can remove exactly what
this lab made: processes by PID and namespace, namespaces and the bridge by
name, mounts by path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from kubernetes.client import ApiException

from nodeboot.cluster.client import Cluster
from nodeboot_lab import build, node_mirror, python_path
from nodeboot_lab import node_services as services
from nodeboot_lab.controlplane import ControlPlane
from nodeboot_lab.netns import (
    LabError,
    Sandbox,
    create_bridge,
    create_sandbox,
    delete_bridge,
    destroy_sandbox,
    kill_pids,
    list_netns,
    netns_pids,
    run_in,
    sh,
    start_in,
    veth_name,
)
from nodeboot_lab.vm_node import VMNodeRecord, env_entries, inventory_group, plan, start_nodes, stop_nodes

STANDINS = Path(__file__).resolve().parent / "standins"
LINUX_PRIVATE = (
    "/etc/kubernetes",
    "/var/lib/kubelet",
    "/etc/cni/net.d",
    "/var/lib/cni",  # reset removes it: never the machine's own
    "/etc/modules-load.d",
    "/etc/sysctl.d",
    "/etc/default",
    "/run",
    "/var/lib/nodeboot-lab",
    "/var/lib/containerd",
)
CP_PRIVATE = ("/etc/kubernetes", "/var/lib/etcd", "/var/lib/kubelet", "/run")
# The hosts share this machine's /root, whose .bashrc (pyenv, cargo) bash sources for every SSH
# command: 0.14 s of CPU per session here, which no real node's root shell costs.
LINUX_MASKED = ("/root/.bashrc",)
WINDOWS_USER = "Administrator"
# A host's sessions start from this, not from whatever environment ran `lab up`.
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
WINRM_PASSWORD_ENV = "NODEBOOT_LAB_WINRM_PASSWORD"


def mount_points_in_any_namespace() -> set[str]:
    """Every path that is a mount point in some mount namespace of this machine."""
    points: set[str] = set()
    seen: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ns = os.readlink(proc / "ns" / "mnt")
            if ns in seen:
                continue
            seen.add(ns)
            for line in (proc / "mountinfo").read_text().splitlines():
                points.add(line.split()[4].replace("\\040", " "))
    return points


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "nodeboot" / "lab"


@dataclass
class HostRecord:
    name: str  # hostname and Node name
    os: str
    netns: str
    address: str


@dataclass
class LabRecord:
    prefix: str
    subnet: str  # a.b.c (a /24)
    bridge: str
    version: str
    bin_dir: str
    hosts: list[HostRecord] = field(default_factory=list)
    vm_nodes: list[VMNodeRecord] = field(default_factory=list)  # qemu VMs on the bridge, not namespace hosts
    created_dirs: list[str] = field(default_factory=list)
    started_at: float = 0.0
    # Dual-stack (opt-in): the cluster's IPv6 Service and Pod ranges, and this ULA /64 on the bridge
    # for the VM nodes (fd00::/8, never routed; "" when the lab is IPv4 only).
    dual_stack: bool = False
    subnet6: str = ""

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"

    @property
    def cp_address(self) -> str:
        return f"{self.subnet}.2"


class Lab:
    def __init__(self, state_dir: Path | None = None, log=print) -> None:
        self.state = (state_dir or default_state_dir()).resolve()
        self.log = log

    # -- naming -------------------------------------------------------------
    def _subnet6(self) -> str:
        """The lab's IPv6 ULA /64 (its first four groups), from the same digest as its names."""
        digest = hashlib.sha256(str(self.state).encode()).hexdigest()
        return f"fd00:6e62:{digest[6:10]}:{int(digest[4:6], 16):x}"

    def _names(self) -> tuple[str, str]:
        digest = hashlib.sha256(str(self.state).encode()).hexdigest()
        # 198.18.0.0/15 is set aside for network benchmarks: it is never anyone's real address.
        third = int(digest[4:6], 16)
        return f"nb{digest[:4]}", f"198.18.{third}"

    @property
    def record_path(self) -> Path:
        return self.state / "lab.json"

    def load(self) -> LabRecord | None:
        if not self.record_path.exists():
            return None
        data = json.loads(self.record_path.read_text())
        data["hosts"] = [HostRecord(**h) for h in data.get("hosts", [])]
        data["vm_nodes"] = [VMNodeRecord(**v) for v in data.get("vm_nodes", [])]
        return LabRecord(**data)

    def save(self, record: LabRecord) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.record_path.write_text(json.dumps(asdict(record), indent=2))

    # -- up -----------------------------------------------------------------
    def up(self, linux: int = 3, windows: int = 1, version: str = build.DEFAULT_VERSION,
           bin_dir: Path | None = None, node_services: bool = False, vm_nodes: int = 0,
           dual_stack: bool = False) -> LabRecord:
        if os.geteuid() != 0:
            raise LabError("lab: needs root (network and mount namespaces)")
        for tool in ("ip", "nsenter", "unshare", "ssh-keygen"):
            if shutil.which(tool) is None:
                raise LabError(f"lab: {tool} is not installed (Debian: iproute2, util-linux, openssh-client)")
        if not Path("/usr/sbin/sshd").exists():
            raise LabError("lab: /usr/sbin/sshd is not installed (Debian: openssh-server)")
        if linux + windows > 80:
            raise LabError("lab: at most 80 hosts fit the lab's /24")
        started = time.monotonic()
        self.down(quiet=True)  # leftovers of a crashed lab go first
        self._room_for_inotify(linux)
        for old in ("controlplane", "hosts", "logs"):
            shutil.rmtree(self.state / old, ignore_errors=True)  # a new lab starts from an empty cluster
        bins = build.ensure_binaries(version, bin_dir, log=self.log)
        node_cache = node_mirror.ensure_node_cache(version, bins, log=self.log) if node_services else None
        prefix, subnet = self._names()
        record = LabRecord(prefix=prefix, subnet=subnet, bridge=f"{prefix}br", version=version,
                           bin_dir=str(bins), started_at=time.time(), dual_stack=dual_stack,
                           subnet6=self._subnet6() if dual_stack else "")
        for i in range(1, linux + 1):
            record.hosts.append(HostRecord(f"lab-linux-{i}", "linux", f"{prefix}-l{i}", f"{subnet}.{10 + i}"))
        for i in range(1, windows + 1):
            record.hosts.append(HostRecord(f"lab-windows-{i}", "windows", f"{prefix}-w{i}", f"{subnet}.{100 + i}"))
        self.state.mkdir(parents=True, exist_ok=True)
        self.save(record)  # saved first, so a crash mid-way can still be cleaned up
        create_bridge(record.bridge, record.gateway, 24)
        if record.subnet6:
            sh("sysctl", "-qw", f"net.ipv6.conf.{record.bridge}.disable_ipv6=0")
            sh("ip", "-6", "addr", "add", f"{record.subnet6}::1/64", "dev", record.bridge, "nodad")
        self._ssh_material()
        self._windows_material()
        with ThreadPoolExecutor(max_workers=2) as pool:
            cp_job = pool.submit(self._start_control_plane, record)
            hosts_job = pool.submit(self._start_hosts, record)
            cp_job.result()
            hosts_job.result()
        if vm_nodes:  # bare Debian VMs on the lab bridge, for nodeboot to install and join
            record.vm_nodes = plan(self.state, prefix, subnet, vm_nodes, record.subnet6)
            start_nodes(self.state, record.bridge, record.vm_nodes, lambda: self.save(record), log=self.log)
        if node_cache is not None:  # the artifact mirror and registry a real node fetches from
            services.start(self.state, node_cache, prefix, subnet, record.bridge, log=self.log)
        self.save(record)
        self._write_inventory(record)
        self.log(f"lab: up in {time.monotonic() - started:.1f}s: API https://{record.cp_address}:6443, "
                 f"{linux} Linux and {windows} Windows hosts; state in {self.state}")
        return record

    def _cp_sandbox(self, record: LabRecord) -> Sandbox:
        root = self.state / "controlplane"
        return Sandbox(
            name=f"{record.prefix}-cp", hostname="lab-control-plane", address=record.cp_address, prefix=24,
            root=root, private_paths={p: root / "fs" / p.strip("/").replace("/", "_") for p in CP_PRIVATE},
        )

    def _host_sandbox(self, record: LabRecord, host: HostRecord) -> Sandbox:
        root = self.state / "hosts" / host.name
        private = {p: root / "fs" / p.strip("/").replace("/", "_") for p in LINUX_PRIVATE}
        private["/usr/local/sbin"] = self.state / "host-bin"
        return Sandbox(name=host.netns, hostname=host.name, address=host.address, prefix=24, root=root,
                       private_paths=private, masked_files=LINUX_MASKED)

    def _start_control_plane(self, record: LabRecord) -> None:
        box = self._cp_sandbox(record)
        self._note_created_dirs(record, box)
        create_sandbox(box, record.bridge, record.gateway)
        cp = ControlPlane(box, Path(record.bin_dir), record.version, self.state, record.dual_stack)
        cp.init_files()
        shutil.copy(cp.etc_kubernetes / "admin.conf", self.state / "admin.conf")
        (self.state / "admin.conf").chmod(0o600)
        cp.start(self.state / "logs")
        cp.init_cluster_side()
        self._delete_init_token()

    def _delete_init_token(self) -> None:
        # The init phase insists on a token; the lab starts with none left.
        cluster = Cluster.from_kubeconfig(str(self.state / "admin.conf"))
        try:
            cluster.core.delete_namespaced_secret("bootstrap-token-labini", "kube-system")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _note_created_dirs(self, record: LabRecord, box: Sandbox) -> None:
        for inside in box.private_paths:
            if not os.path.exists(inside):
                record.created_dirs.append(inside)

    def _room_for_inotify(self, linux: int) -> None:
        """Each Linux host's containerd takes an inotify instance for its CNI directory; past the
        per-user limit (128 by default: a few labs side by side reach it) its CRI plugin does not load
        and kubeadm's preflight fails on that host. The limit is raised, never lowered, and stays."""
        path = Path("/proc/sys/fs/inotify/max_user_instances")
        current = int(path.read_text())
        wanted = max(1024, 4 * linux)
        if current < wanted:
            path.write_text(f"{wanted}\n")
            self.log(f"lab: fs.inotify.max_user_instances raised from {current} to {wanted} "
                     "(a containerd per host watches its CNI directory)")

    def _start_hosts(self, record: LabRecord) -> None:
        self._host_bin(record)
        for host in record.hosts[:1]:
            self._note_created_dirs(record, self._host_sandbox(record, host))
        # Hosts are independent: a few at a time keeps a 40-host lab quick to start.
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="lab-host") as pool:
            list(pool.map(lambda h: self._start_host(record, h), record.hosts))
        for host in record.hosts:
            self._wait_listening(host)

    def _start_host(self, record: LabRecord, host: HostRecord) -> None:
        box = self._host_sandbox(record, host)
        create_sandbox(box, record.bridge, record.gateway)
        self._host_env(box, host, record)
        if host.os == "linux":
            run_in(box, ["/usr/local/sbin/systemctl", "enable", "--now", "containerd"])
            self._start_sshd(box, host)
        else:
            self._start_winrm(box, host)

    def _host_bin(self, record: LabRecord) -> None:
        bin_dir = self.state / "host-bin"
        if bin_dir.exists():
            shutil.rmtree(bin_dir)
        bin_dir.mkdir(parents=True)
        for item in STANDINS.iterdir():
            if item.name != "README.md":
                shutil.copy(item, bin_dir / item.name)
        (bin_dir / "kubeadm").symlink_to(Path(record.bin_dir) / "kubeadm")

    def _host_env(self, box: Sandbox, host: HostRecord, record: LabRecord) -> None:
        lab_dir = box.private_paths["/var/lib/nodeboot-lab"]
        (lab_dir / "env").write_text(
            f"export NB_LAB_PYTHON={sys.executable}\n"
            f"export PYTHONPATH={python_path()}\n"
            f"export NB_LAB_K8S_VERSION={record.version}\n"
            f"export NB_LAB_OS={host.os}\n"
        )

    def _ssh_material(self) -> None:
        ssh_dir = self.state / "ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ssh_dir / "id_ed25519"
        if not key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nodeboot-lab", "-f", str(key))
        shutil.copy(key.with_suffix(".pub"), ssh_dir / "authorized_keys")
        (ssh_dir / "known_hosts").write_text("")

    def _start_sshd(self, box: Sandbox, host: HostRecord, record_known_host: bool = True) -> None:
        ssh_dir = box.root / "sshd"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        host_key = ssh_dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        config = ssh_dir / "sshd_config"
        config.write_text(
            f"ListenAddress {host.address}\nPort 22\nHostKey {host_key}\nPidFile /run/sshd.pid\n"
            f"AuthorizedKeysFile {self.state / 'ssh' / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "UsePAM no\nStrictModes no\nMaxStartups 1000:30:1000\nMaxSessions 200\nLogLevel ERROR\n"
            "Subsystem sftp internal-sftp\nUseDNS no\n"
        )
        pub = host_key.with_suffix(".pub").read_text().split()
        if record_known_host:
            with (self.state / "ssh" / "known_hosts").open("a") as fh:
                fh.write(f"{host.address} {pub[0]} {pub[1]}\n")
        start_in(box, ["sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f " + str(config)],
                 box.root / "sshd.log", env=HOST_ENV)

    def _windows_material(self) -> None:
        win = self.state / "winrm"
        win.mkdir(parents=True, exist_ok=True, mode=0o700)
        pw = win / "password"
        if not pw.exists():
            pw.write_text(secrets.token_urlsafe(18))
            pw.chmod(0o600)

    def _start_winrm(self, box: Sandbox, host: HostRecord) -> None:
        from nodeboot_lab import winrm_lab

        winrm_lab.start(self, box, host)

    def _wait_listening(self, host: HostRecord, timeout: float = 30) -> None:
        port = 22 if host.os == "linux" else 5986
        deadline = time.monotonic() + timeout
        import socket

        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host.address, port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise LabError(f"lab: {host.name} is not listening on {host.address}:{port} after {timeout:.0f}s")

    def _write_inventory(self, record: LabRecord) -> None:
        ssh_dir = self.state / "ssh"
        linux = {h.name: {"ansible_host": h.address} for h in record.hosts if h.os == "linux"}
        windows = {h.name: {"ansible_host": h.address} for h in record.hosts if h.os == "windows"}
        inventory: dict = {
            "all": {
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(ssh_dir / "id_ed25519"),
                    "ansible_ssh_common_args": f"-o UserKnownHostsFile={ssh_dir / 'known_hosts'}",
                    "nodeboot_known_hosts": str(ssh_dir / "known_hosts"),
                    # Ansible's own interpreter discovery would find the controller's pyenv shims.
                    "ansible_python_interpreter": "/usr/bin/python3",
                    # cgroup v1 on this machine: kubeadm's kernel/cgroup check cannot pass here.
                    "nodeboot_ignore_preflight_errors": ["SystemVerification"],
                },
                "children": {"linux": {"hosts": linux}},
            }
        }
        if windows:
            inventory["all"]["children"]["windows"] = {
                "vars": {
                    "ansible_connection": "winrm",
                    "ansible_winrm_transport": "ntlm",
                    "ansible_winrm_scheme": "https",
                    "ansible_port": 5986,
                    "ansible_user": WINDOWS_USER,
                    "ansible_password": f"{{{{ lookup('env', '{WINRM_PASSWORD_ENV}') }}}}",
                    "ansible_winrm_ca_trust_path": str(self.state / "winrm" / "ca.crt"),
                    "nodeboot_os": "windows",
                },
                "hosts": windows,
            }
        if record.vm_nodes:
            inventory["all"]["children"]["vm_nodes"] = inventory_group(self.state, record.vm_nodes)
        (self.state / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))

    # -- faults (for tests) ---------------------------------------------------
    def _pids_named(self, netns: str, name: str) -> list[int]:
        found = []
        for pid in netns_pids(netns):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                    found.append(pid)
            except FileNotFoundError:
                continue
        return found

    def restart_component(self, component: str) -> None:
        """Kill one control-plane process, as a crash would; its supervisor starts it again."""
        record = self._require()
        box = self._cp_sandbox(record)
        kill_pids(self._pids_named(box.name, component))
        if component == "kube-apiserver":
            time.sleep(1.0)
            ControlPlane(box, Path(record.bin_dir), record.version, self.state).wait_ready(self.state / "logs")

    def stop_sshd(self, host_name: str) -> None:
        """Kill the host's sshd and every session it serves, as a crash would."""
        record = self._require()
        host = next(h for h in record.hosts if h.name == host_name)
        kill_pids(self._pids_named(host.netns, "sshd"), grace=0.0)

    def start_sshd(self, host_name: str) -> None:
        record = self._require()
        host = next(h for h in record.hosts if h.name == host_name)
        self._start_sshd(self._host_sandbox(record, host), host, record_known_host=False)
        self._wait_listening(host)

    def _require(self) -> LabRecord:
        record = self.load()
        if record is None:
            raise LabError(f"lab: no lab is up in {self.state}")
        return record

    # -- down ---------------------------------------------------------------
    def down(self, quiet: bool = False) -> list[str]:
        """Remove everything this lab made; return what was removed."""
        removed: list[str] = services.stop(self.state)
        prefix, _ = self._names()
        record = self.load()
        removed += stop_nodes(self.state, prefix, record.vm_nodes if record else [])
        names = set(list_netns(prefix + "-"))
        if record:
            names |= {h.netns for h in record.hosts} | {f"{record.prefix}-cp"}
        for name in sorted(names):
            ns_dir = self._ns_dir_for(name, record)
            destroy_sandbox(name, ns_dir)
            sh("ip", "link", "del", veth_name(name), check=False)
            removed.append(f"netns {name}")
        bridge = record.bridge if record else f"{prefix}br"
        if sh("ip", "link", "show", bridge, check=False).returncode == 0:
            delete_bridge(bridge)
            removed.append(f"bridge {bridge}")
        for path in self._stale_mounts():
            sh("umount", "-l", path, check=False)
            removed.append(f"mount {path}")
        if record:
            in_use = mount_points_in_any_namespace()
            for d in record.created_dirs:
                # Removing a directory detaches every mount on it in every other mount
                # namespace: another lab's /etc/kubernetes or /var/lib/etcd would vanish.
                if d in in_use:
                    continue
                with contextlib.suppress(OSError):  # only empty ones go
                    os.rmdir(d)
            self.record_path.unlink(missing_ok=True)
        if removed and not quiet:
            self.log("lab: removed " + ", ".join(removed))
        return removed

    def _ns_dir_for(self, netns: str, record: LabRecord | None) -> Path:
        if record and netns == f"{record.prefix}-cp":
            return self.state / "controlplane" / "ns"
        if record:
            for h in record.hosts:
                if h.netns == netns:
                    return self.state / "hosts" / h.name / "ns"
        return self.state / "unknown-ns"

    def _stale_mounts(self) -> list[str]:
        mounts = []
        with open("/proc/self/mounts") as fh:
            for line in fh:
                target = line.split()[1]
                if target.startswith(str(self.state) + "/"):
                    mounts.append(target)
        return sorted(mounts, key=len, reverse=True)

    # -- describe -----------------------------------------------------------
    def env(self) -> dict:
        record = self.load()
        if record is None:
            raise LabError(f"lab: no lab is up in {self.state} (run: nodeboot-lab up)")
        return {
            "state_dir": str(self.state),
            "kubeconfig": str(self.state / "admin.conf"),
            "inventory": str(self.state / "inventory.yml"),
            "known_hosts": str(self.state / "ssh" / "known_hosts"),
            "ssh_key": str(self.state / "ssh" / "id_ed25519"),
            "api_endpoint": f"{record.cp_address}:6443",
            "winrm_password_env": WINRM_PASSWORD_ENV,
            "winrm_password_file": str(self.state / "winrm" / "password"),
            "winrm_ca": str(self.state / "winrm" / "ca.crt"),
            "version": record.version,
            "dual_stack": record.dual_stack,
            "ipv6_subnet": f"{record.subnet6}::/64" if record.subnet6 else "",
            "hosts": [asdict(h) for h in record.hosts],
            "vm_hosts": env_entries(self.state, record.vm_nodes),
            **(running.env() if (running := services.load(self.state)) else {}),
        }

    def status(self) -> dict:
        record = self.load()
        if record is None:
            return {"up": False, "state_dir": str(self.state)}
        alive = set(list_netns(record.prefix + "-"))
        hosts = []
        for h in record.hosts:
            hosts.append({**asdict(h), "namespace": h.netns in alive})
        cp_up = f"{record.prefix}-cp" in alive
        return {"up": cp_up, "state_dir": str(self.state), "api_endpoint": f"{record.cp_address}:6443",
                "version": record.version, "hosts": hosts}


def memory_mib(record: LabRecord) -> float:
    """Resident memory of every lab process, summed (for the lab's own figures)."""
    total = 0
    for name in [f"{record.prefix}-cp", *[h.netns for h in record.hosts]]:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except FileNotFoundError:
                pass
    return total / 1024
