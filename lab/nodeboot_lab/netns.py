"""Network, mount and UTS namespaces for lab hosts, made persistent so that
several processes (sshd, a kubelet stand-in, the control plane's four) can be
started into the same sandbox and torn down by name.

A sandbox is: a named network namespace (/run/netns/<name>) joined to the lab
bridge by a veth pair, plus a mount and a UTS namespace pinned by bind mounts
under the lab's state dir. Inside the mount namespace, a fixed list of paths is
replaced by per-host directories, so hosts do not see each other's
/etc/kubernetes, /var/lib/kubelet, /run and so on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from nodeboot.errors import NodebootError


class LabError(NodebootError):
    pass


def sh(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise LabError(f"lab: {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


@dataclass
class Sandbox:
    name: str  # netns name, also used for the veth
    hostname: str
    address: str  # a.b.c.d on the lab bridge
    prefix: int
    root: Path  # per-host state directory
    private_paths: dict[str, Path] = field(default_factory=dict)  # path in sandbox -> backing dir
    masked_files: tuple[str, ...] = ()  # files the sandbox sees empty (/dev/null bound over them)

    @property
    def ns_dir(self) -> Path:
        return self.root / "ns"

    @property
    def mnt_ns(self) -> Path:
        return self.ns_dir / "mnt"

    @property
    def uts_ns(self) -> Path:
        return self.ns_dir / "uts"

    def enter_argv(self) -> list[str]:
        """The argv prefix that runs a command inside this sandbox."""
        return [
            "nsenter",
            f"--net=/run/netns/{self.name}",
            f"--mount={self.mnt_ns}",
            f"--uts={self.uts_ns}",
            "--",
        ]


def create_bridge(bridge: str, gateway: str, prefix: int) -> None:
    if sh("ip", "link", "show", bridge, check=False).returncode == 0:
        return
    sh("ip", "link", "add", bridge, "type", "bridge")
    sh("ip", "addr", "add", f"{gateway}/{prefix}", "dev", bridge)
    sh("ip", "link", "set", bridge, "up")


def delete_bridge(bridge: str) -> None:
    sh("ip", "link", "del", bridge, check=False)


def create_sandbox(box: Sandbox, bridge: str, gateway: str) -> None:
    """Network namespace + veth on the bridge, then pinned mount and UTS namespaces."""
    sh("ip", "netns", "add", box.name)
    host_if = veth_name(box.name)
    sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", box.name)
    sh("ip", "link", "set", host_if, "master", bridge, "up")
    peer_if = "eth0"
    ns = ["ip", "netns", "exec", box.name]
    sh(*ns, "ip", "link", "set", "lo", "up")
    sh(*ns, "ip", "addr", "add", f"{box.address}/{box.prefix}", "dev", peer_if)
    sh(*ns, "ip", "link", "set", peer_if, "up")
    # No default route: nothing in the lab can reach beyond the bridge.
    sh(*ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    _pin_mount_and_uts(box)


def veth_name(sandbox: str) -> str:
    # Linux interface names are 15 characters at most.
    return f"{sandbox}-v"[-15:]


def _pin_mount_and_uts(box: Sandbox) -> None:
    box.ns_dir.mkdir(parents=True, exist_ok=True)
    # unshare can only pin a namespace onto a file that sits on a private mount.
    if sh("mountpoint", "-q", str(box.ns_dir), check=False).returncode != 0:
        sh("mount", "--bind", str(box.ns_dir), str(box.ns_dir))
    sh("mount", "--make-private", str(box.ns_dir))
    for f in (box.mnt_ns, box.uts_ns):
        f.touch()
    binds = []
    for inside, backing in box.private_paths.items():
        backing.mkdir(parents=True, exist_ok=True)
        binds.append(f"mkdir -p {inside} && mount --bind {backing} {inside}")
    binds += [f"{{ [ ! -f {f} ] || mount --bind /dev/null {f}; }}" for f in box.masked_files]
    setup = " && ".join([f"hostname {box.hostname}", *binds]) or "true"
    sh(
        "unshare",
        f"--mount={box.mnt_ns}",
        f"--uts={box.uts_ns}",
        "--propagation",
        "private",
        "sh",
        "-c",
        setup,
    )


def start_in(box: Sandbox, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> int:
    """Start a long-running process inside the sandbox; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            box.enter_argv() + argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C aimed at nodeboot must not kill the lab
        )
    return proc.pid


def run_in(box: Sandbox, argv: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return sh(*box.enter_argv(), *argv, check=check, input=input)


def netns_pids(name: str) -> list[int]:
    proc = sh("ip", "netns", "pids", name, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def kill_pids(pids: list[int], grace: float = 5.0) -> None:
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; reap it if it is our child.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def destroy_sandbox(name: str, ns_dir: Path) -> None:
    """Kill everything in the namespace, unpin the namespaces, delete the netns."""
    kill_pids(netns_pids(name))
    for f in ("mnt", "uts"):
        path = ns_dir / f
        if path.exists():
            sh("umount", str(path), check=False)
    if ns_dir.exists():
        sh("umount", str(ns_dir), check=False)
    sh("ip", "netns", "del", name, check=False)


def list_netns(prefix: str) -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]
