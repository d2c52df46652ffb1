"""The node-preparation workload every tool runs, and the check of its end state.

Every host has its own directory standing for its "/" (NB_ROOT); every tool is
given the same per-host NB_ROOT and must leave the same files behind:

- facts read on the host: kernel (uname -r), arch (uname -m), hostname, active swap entries;
- directories: etc/kubernetes/manifests, var/lib/kubelet, opt/nodeboot;
- etc/modules-load.d/nodeboot.conf and etc/sysctl.d/99-nodeboot.conf, written only when they differ;
- opt/nodeboot/artifact.bin, 1 MiB, checked by sha256 and sent only when it differs;
- etc/kubernetes/kubelet.conf, written by one command standing in for `kubeadm join`
  (skipped when present); it records the facts the tool read, which is how the
  check knows the facts were really read on the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import socket
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MODULES = "overlay\nbr_netfilter\n"
SYSCTL = "net.bridge.bridge-nf-call-iptables = 1\nnet.ipv4.ip_forward = 1\n"
DIRS = ("etc/kubernetes/manifests", "var/lib/kubelet", "opt/nodeboot")
MODULES_PATH = "etc/modules-load.d/nodeboot.conf"
SYSCTL_PATH = "etc/sysctl.d/99-nodeboot.conf"
ARTIFACT_PATH = "opt/nodeboot/artifact.bin"
JOIN_PATH = "etc/kubernetes/kubelet.conf"
ARTIFACT_SIZE = 1 << 20
# The join stand-in: one command, skipped when its marker exists. printf's
# arguments are the facts the tool read (hostname kernel arch swap).
JOIN_FORMAT = "joined hostname=%s kernel=%s arch=%s swap=%s\\n"
FILES = (MODULES_PATH, SYSCTL_PATH, ARTIFACT_PATH, JOIN_PATH)


@cache
def artifact_bytes() -> bytes:
    """1 MiB that does not compress (a stand-in for a binary), the same on every run."""
    out = bytearray()
    counter = 0
    while len(out) < ARTIFACT_SIZE:
        out += hashlib.sha256(b"nodeboot-bench-%d" % counter).digest()
        counter += 1
    return bytes(out[:ARTIFACT_SIZE])


_sha_lock = threading.Lock()


def artifact_sha256() -> str:
    # Under a lock: @cache alone lets every host thread that asks before the first
    # answer is stored compute it too (53 concurrent 1 MiB builds in one floor run at
    # N=200, seconds of CPU charged to whichever tool asked first from its threads).
    with _sha_lock:
        return _artifact_sha256()


@cache
def _artifact_sha256() -> str:
    return hashlib.sha256(artifact_bytes()).hexdigest()


def ensure_artifact(state: Path) -> Path:
    path = state / "artifact.bin"
    data = artifact_bytes()
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path


def local_facts() -> dict[str, str]:
    """What every loopback host reports (they all run on this machine)."""
    return {"hostname": socket.gethostname(), "kernel": platform.release(), "arch": platform.machine(), "swap": "0"}


def join_line(facts: dict[str, str]) -> str:
    return f"joined hostname={facts['hostname']} kernel={facts['kernel']} arch={facts['arch']} swap={facts['swap']}\n"


@dataclass
class HostCheck:
    ok: bool
    problems: list[str]
    mtimes: dict[str, int]


def check_host(root: Path, expected_facts: dict[str, str], before: dict[str, int] | None = None) -> HostCheck:
    """Is the end state right? With `before` (mtimes after the cold run), also: nothing rewritten."""
    problems = []
    for d in DIRS:
        if not (root / d).is_dir():
            problems.append(f"missing dir {d}")
    wanted = {
        MODULES_PATH: MODULES.encode(),
        SYSCTL_PATH: SYSCTL.encode(),
        JOIN_PATH: join_line(expected_facts).encode(),
    }
    for rel, content in wanted.items():
        try:
            have = (root / rel).read_bytes()
        except FileNotFoundError:
            problems.append(f"missing {rel}")
            continue
        if have != content:
            problems.append(f"{rel} has {have[:80]!r}")
    try:
        digest = hashlib.sha256((root / ARTIFACT_PATH).read_bytes()).hexdigest()
        if digest != artifact_sha256():
            problems.append("artifact sha256 differs")
    except FileNotFoundError:
        problems.append(f"missing {ARTIFACT_PATH}")
    mtimes = {}
    for rel in FILES:
        with contextlib.suppress(FileNotFoundError):
            mtimes[rel] = os.stat(root / rel).st_mtime_ns
    if before is not None:
        for rel, stamp in before.items():
            if mtimes.get(rel) != stamp:
                problems.append(f"{rel} rewritten on a no-change run")
    return HostCheck(not problems, problems, mtimes)
