"""A real Linux kernel in the loop: a Debian bookworm VM under qemu (TCG).

The lab's own kernel has no IPVS and cannot load modules, so the e2e tier runs
nodeboot's host scripts against Debian's stock kernel in a VM instead:

    python -m nodeboot_lab.vm build                     # build and cache the image
    python -m nodeboot_lab.vm boot --state-dir DIR      # boot it; prints ssh-info
    python -m nodeboot_lab.vm ssh-info --state-dir DIR
    python -m nodeboot_lab.vm stop --state-dir DIR

The image is built once per machine and cached under
~/.cache/nodeboot/vm/<key>/ (NODEBOOT_VM_CACHE overrides the root), keyed by a
hash of the package list and the build recipe. Building needs root: debootstrap
chroots into the new tree. The root file system is made with `mkfs.ext4 -d`,
so no loop device and no mount of the image is ever needed.

Each boot gets a qcow2 overlay on top of the cached raw image, so the cache
stays clean. The guest network is qemu's user-mode stack with restrict=on (the
guest reaches nothing) and one forward, 127.0.0.1:PORT -> guest port 22.

Anything that keeps the VM from being built or booted raises VMError with a
one-line reason: the e2e tier must fail loudly, never skip.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodeboot.errors import NodebootError, TransportError
from nodeboot.transport import ExecResult
from nodeboot.transport.ssh import SSHOptions, SSHTransport

log = logging.getLogger("nodeboot_lab.vm")

# ---- the recipe -------------------------------------------------------------
# Everything below up to build_image() is hashed into the cache key. Change the
# build steps themselves (not just this data) and RECIPE_VERSION must go up.
RECIPE_VERSION = 1
SUITE = "bookworm"
PACKAGES = (
    "systemd-sysv",
    "openssh-server",
    "kmod",
    "ipvsadm",
    "ipset",
    "nftables",
    "iptables",
    "iproute2",
    "linux-image-amd64",
    # ACPI power button -> poweroff, so `stop` can shut the guest down cleanly
    # (systemd-logind would need D-Bus for that, which minbase lacks).
    "acpid",
)
HOSTNAME = "nodeboot-e2e"
# qemu's user-mode network always hands out 10.0.2.15 with 10.0.2.2 as the
# host side, so a static address gives the same result as DHCP without waiting
# for a lease on every (slow, emulated) boot.
GUEST_FILES: dict[str, str] = {
    "etc/hostname": f"{HOSTNAME}\n",
    "etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n",
    # fsck pass 0: every boot starts from a fresh overlay, a check only costs time.
    "etc/fstab": "/dev/vda / ext4 rw,noatime 0 0\n",
    "etc/systemd/network/10-eth0.network": (
        "[Match]\nName=eth0\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    ),
    "etc/ssh/sshd_config.d/nodeboot.conf": (
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
    ),
    "etc/acpi/events/nodeboot-power": "event=button[ /]power\naction=/bin/systemctl poweroff\n",
    # Drivers udev would load for the emulated hardware that the tests never use.
    "etc/modprobe.d/nodeboot-blacklist.conf": "".join(
        f"blacklist {name}\n" for name in ("kvm_amd", "kvm_intel", "kvm", "cfg80211")
    ),
    "etc/systemd/journald.conf.d/nodeboot.conf": "[Journal]\nStorage=volatile\n",
    # The initrd only has to find an ext4 root on virtio-blk: a short module
    # list makes it ~6 MB instead of ~36 MB, which TCG unpacks much faster.
    "etc/initramfs-tools/conf.d/nodeboot": "MODULES=list\nCOMPRESS=gzip\n",
    "etc/initramfs-tools/modules": "virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n",
}
ENABLE_UNITS = ("systemd-networkd.service", "ssh.service")
# No login prompts to wait on, no background jobs competing for the one
# emulated CPU, and no wait for "network online" (nothing needs it here).
MASK_UNITS = (
    "getty@tty1.service",
    "getty-static.service",
    "serial-getty@ttyS0.service",
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
)
SLIM_PATHS = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
)
IMAGE_SIZE = "2G"  # sparse; the tree is ~700 MB and the tests need room to write

KERNEL_CMDLINE = (
    "root=/dev/vda rootfstype=ext4 rw console=ttyS0 quiet net.ifnames=0 systemd.unit=multi-user.target mitigations=off"
)
MEMORY_MB = 1024

BUILD_TIMEOUT = 45 * 60  # debootstrap over a slow mirror is the long pole
LOCK_TIMEOUT = 50 * 60  # another process may be building the same image
# ~20 s on an idle 2-core machine; 3-4x that with the cores shared, and once
# 256 s at a load average of 75. NODEBOOT_VM_BOOT_TIMEOUT raises the bound.
BOOT_TIMEOUT = float(os.environ.get("NODEBOOT_VM_BOOT_TIMEOUT", "420"))
STOP_TIMEOUT = 30.0
PORT_ATTEMPTS = 3


class VMError(NodebootError):
    """The e2e VM could not be built, booted or stopped (one line, says why)."""


@dataclass(frozen=True)
class Recipe:
    """What goes into one kind of image. The e2e tier's is e2e_recipe(); the
    lab's bare worker node has its own (nodeboot_lab.node_image)."""

    packages: tuple[str, ...]
    files: dict[str, str]
    enable: tuple[str, ...]
    mask: tuple[str, ...]
    slim: tuple[str, ...]
    size: str
    hostname: str
    cache_subdir: str = ""  # under cache_root(); each kind prunes only its own old images

    def as_dict(self) -> dict[str, object]:
        return {
            "version": RECIPE_VERSION,
            "suite": SUITE,
            "packages": sorted(self.packages),
            "files": self.files,
            "enable": self.enable,
            "mask": self.mask,
            "slim": self.slim,
            "size": self.size,
        }

    def cache_key(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def cache_dir(self) -> Path:
        return cache_root() / self.cache_subdir if self.cache_subdir else cache_root()


def e2e_recipe() -> Recipe:
    # Read at call time, so the module-level lists stay the one place to edit.
    return Recipe(PACKAGES, GUEST_FILES, ENABLE_UNITS, MASK_UNITS, SLIM_PATHS, IMAGE_SIZE, HOSTNAME)


def recipe() -> dict[str, object]:
    return e2e_recipe().as_dict()


def cache_key() -> str:
    return e2e_recipe().cache_key()


def cache_root() -> Path:
    env = os.environ.get("NODEBOOT_VM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "nodeboot" / "vm"


def mirror() -> str:
    return os.environ.get("NODEBOOT_VM_MIRROR", "http://deb.debian.org/debian")


# ---- the cached image ---------------------------------------------------------
@dataclass(frozen=True)
class VMImage:
    dir: Path
    kernel_release: str
    build_seconds: float
    built_now: bool  # False when it came from the cache

    @property
    def image(self) -> Path:
        return self.dir / "base.img"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_public_key(self) -> str:
        """'ssh-ed25519 AAAA...': the guest's baked-in host key."""
        kind, blob = (self.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"{kind} {blob}"

    def known_hosts_line(self, port: int) -> str:
        return f"[127.0.0.1]:{port} {self.host_public_key}\n"


def _tool_env() -> dict[str, str]:
    """debootstrap, chroot and mkfs live in sbin, which a CI user's PATH may lack."""
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin"
    env["LC_ALL"] = "C"
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def _need_tools(*names: str) -> None:
    path = _tool_env()["PATH"]
    missing = [name for name in names if shutil.which(name, path=path) is None]
    if missing:
        raise VMError(
            f"e2e VM: {', '.join(missing)} not installed "
            "(apt-get install debootstrap qemu-system-x86 qemu-utils e2fsprogs)"
        )


def _run(argv: list[str], logfile: Path, what: str, timeout: float) -> None:
    """Run one build step, appending its output to the build log."""
    with logfile.open("a") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n")
        fh.flush()
        try:
            proc = subprocess.run(
                argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_tool_env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise VMError(f"e2e VM: {what} took longer than {timeout:.0f}s; see {logfile}") from None
    if proc.returncode != 0:
        tail = _last_line(logfile)
        raise VMError(f"e2e VM: {what} failed (exit {proc.returncode}): {tail} (log: {logfile})")


def _last_line(path: Path, pattern: str = "") -> str:
    """The last non-empty line of a log (containing pattern, when given)."""
    with suppress(OSError):
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        matching = [ln for ln in lines if pattern in ln] if pattern else lines
        if matching:
            return matching[-1][:300]
    return "(no output)"


def _new_keypair(path: Path, comment: str) -> str:
    """Write an OpenSSH ed25519 key pair at path (+ .pub); return the public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.write_bytes(private)
    path.chmod(0o600)
    line = f"{public.decode()} {comment}\n"
    path.with_name(path.name + ".pub").write_text(line)
    return line


def _write(root: Path, relpath: str, text: str | bytes, mode: int = 0o644) -> None:
    target = root / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text)
    target.chmod(mode)


def _configure(rootfs: Path, keys_dir: Path, logfile: Path, spec: Recipe) -> None:
    """Bake the guest's configuration and credentials into the new tree."""
    for relpath, text in spec.files.items():
        _write(rootfs, relpath, text)
    # Only our host key, so the known_hosts line written at boot is the whole truth.
    for old in (rootfs / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    _write(rootfs, "etc/ssh/ssh_host_ed25519_key", (keys_dir / "ssh_host_ed25519_key").read_bytes(), 0o600)
    _write(rootfs, "etc/ssh/ssh_host_ed25519_key.pub", (keys_dir / "ssh_host_ed25519_key.pub").read_text())
    (rootfs / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    _write(rootfs, "root/.ssh/authorized_keys", (keys_dir / "id_ed25519.pub").read_text(), 0o600)
    # A fixed machine-id: an empty one would make systemd treat every boot as
    # the first and re-apply unit presets over the masks below.
    _write(rootfs, "etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    chroot = ["chroot", str(rootfs)]
    _run([*chroot, "systemctl", "enable", *spec.enable], logfile, "enabling guest units", 120)
    _run([*chroot, "systemctl", "mask", *spec.mask], logfile, "masking guest units", 120)
    _run([*chroot, "systemctl", "set-default", "multi-user.target"], logfile, "setting the default target", 120)
    _run([*chroot, "update-initramfs", "-u", "-k", "all"], logfile, "rebuilding the initrd", 600)


def _kernel_release(rootfs: Path) -> str:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise VMError(f"e2e VM: debootstrap installed no kernel under {rootfs / 'boot'}")
    return kernels[-1].name.removeprefix("vmlinuz-")


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    points = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            point = line.split()[1].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a build tree, but never through a mount a failed debootstrap left behind."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, env=_tool_env())
    left = _mounts_under(path)
    if left:
        raise VMError(f"e2e VM: {left[0]} is still mounted; not deleting {path}")
    shutil.rmtree(path)


def _build(work: Path, logfile: Path, spec: Recipe) -> str:
    """Build everything into work/; return the guest's kernel release."""
    rootfs = work / "rootfs"
    debs = cache_root() / "debs"  # kept across recipe changes: rebuilds download nothing
    debs.mkdir(parents=True, exist_ok=True)
    _new_keypair(work / "ssh_host_ed25519_key", f"root@{spec.hostname}")
    _new_keypair(work / "id_ed25519", f"{spec.hostname}-client")
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(spec.packages)}",
            f"--cache-dir={debs}",
            SUITE,
            str(rootfs),
            mirror(),
        ],
        logfile,
        f"debootstrap {SUITE} from {mirror()}",
        BUILD_TIMEOUT,
    )
    release = _kernel_release(rootfs)
    _configure(rootfs, work, logfile, spec)
    shutil.copyfile(rootfs / "boot" / f"vmlinuz-{release}", work / "vmlinuz")
    shutil.copyfile(rootfs / "boot" / f"initrd.img-{release}", work / "initrd.img")
    for rel in spec.slim:
        for child in (rootfs / rel).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    _run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "nodeboot-root",
            "-d",
            str(rootfs),
            str(work / "base.img"),
            spec.size,
        ],
        logfile,
        "mkfs.ext4 -d",
        900,
    )
    _remove_tree(rootfs)
    return release


@contextmanager
def _cache_lock(root: Path, key: str) -> Iterator[None]:
    """One builder per image: a second process waits (bounded) for the first."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{key}.lock").open("w") as fh:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise VMError(f"e2e VM: waited {LOCK_TIMEOUT}s for another build of {root / key}") from None
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_cached(final: Path) -> VMImage | None:
    meta = final / "build.json"
    if not meta.exists():
        return None
    data = json.loads(meta.read_text())
    image = VMImage(final, data["kernel_release"], float(data["build_seconds"]), built_now=False)
    for needed in (image.image, image.kernel, image.initrd, image.client_key):
        if not needed.exists():
            raise VMError(f"e2e VM: cached image {final} lacks {needed.name}; delete {final} to rebuild")
    return image


def _prune_stale(root: Path, keep: str) -> None:
    """Drop finished images of older recipes: each is ~650 MB and nothing boots
    them any more. A VM still running on one keeps its open file; only the name
    goes. Builds in progress (*.building) and lock files are left alone."""
    for entry in root.iterdir():
        name = entry.name
        if name != keep and len(name) == 16 and all(c in "0123456789abcdef" for c in name) and entry.is_dir():
            _remove_tree(entry)


def ensure_image(spec: Recipe | None = None) -> VMImage:
    """The cached image for a recipe (default: the e2e tier's), built first if need be."""
    spec = spec or e2e_recipe()
    root, key = spec.cache_dir(), spec.cache_key()
    final = root / key
    cached = _load_cached(final)
    if cached:
        return cached
    with _cache_lock(root, key):
        cached = _load_cached(final)  # another process may have built it meanwhile
        if cached:
            return cached
        if os.geteuid() != 0:
            raise VMError("e2e VM: building the image needs root (debootstrap chroots into it); run as root once")
        _need_tools("debootstrap", "chroot", "mkfs.ext4", "qemu-img", "qemu-system-x86_64")
        work = root / f"{key}.building"
        _remove_tree(work)
        work.mkdir(parents=True)
        logfile = work / "build.log"
        log.info("building the %s VM image %s (debootstrap %s, several minutes)", spec.hostname, key, SUITE)
        started = time.monotonic()
        try:
            release = _build(work, logfile, spec)
        except BaseException:
            _remove_tree(work / "rootfs")  # keep the log, drop the big tree
            raise
        seconds = round(time.monotonic() - started, 1)
        meta = {"key": key, "kernel_release": release, "build_seconds": seconds, "recipe": spec.as_dict()}
        (work / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.rename(work, final)
        _prune_stale(root, keep=key)
        log.info("built the %s VM image in %.1fs: %s (kernel %s)", spec.hostname, seconds, final, release)
        return VMImage(final, release, seconds, built_now=True)


# ---- a running VM ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """preexec: qemu gets SIGTERM if the process that started it dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _ssh_banner(port: int, host: str = "127.0.0.1") -> bool:
    """True once sshd answers. User-mode networking accepts the TCP connection
    itself before the guest listens, so a connect alone proves nothing."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.settimeout(3)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is gone for our purposes.
    with suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _qmp(path: Path, command: str, timeout: float = 5.0) -> None:
    """Send one QMP command (after the capabilities handshake) on qemu's socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        reader = sock.makefile("r")
        reader.readline()  # greeting
        for cmd in ("qmp_capabilities", command):
            sock.sendall(json.dumps({"execute": cmd}).encode() + b"\n")
            while True:  # skip asynchronous events until the reply
                reply = json.loads(reader.readline() or "{}")
                if "return" in reply or "error" in reply or not reply:
                    break


class VM:
    """One boot of the cached image; state (logs, overlay, sockets) in state_dir."""

    def __init__(self, image: VMImage, state_dir: Path, memory_mb: int = MEMORY_MB) -> None:
        self.image = image
        self.state_dir = state_dir.resolve()
        self.memory_mb = memory_mb
        self.smp = 1
        self.ssh_host = "127.0.0.1"
        self.port = 0
        self.pid = 0
        self.boot_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths ---------------------------------------------------------------
    @property
    def overlay(self) -> Path:
        return self.state_dir / "overlay.qcow2"

    @property
    def serial_log(self) -> Path:
        return self.state_dir / "serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.state_dir / "qemu.log"

    @property
    def qmp_socket(self) -> Path:
        return self.state_dir / "qmp.sock"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    # -- life cycle ------------------------------------------------------------
    # Kinds of VM (nodeboot_lab.vm_node) change these four, not the rest.
    def qemu_name(self) -> str:
        return "nodeboot-e2e"

    def kernel_cmdline(self) -> str:
        return KERNEL_CMDLINE

    def network_args(self) -> list[str]:
        return [
            "-netdev",
            f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device",
            "virtio-net-pci,netdev=n0",
        ]

    def _prepare_network(self) -> None:
        """Pick the SSH port and write the known_hosts that goes with it."""
        self.port = _free_port()
        self.known_hosts.write_text(self.image.known_hosts_line(self.port))

    def qemu_argv(self) -> list[str]:
        img = self.image
        return [
            "qemu-system-x86_64",
            "-name",
            self.qemu_name(),
            "-accel",
            "tcg",
            "-m",
            str(self.memory_mb),
            "-smp",
            str(self.smp),
            "-nodefaults",
            "-nographic",
            "-serial",
            f"file:{self.serial_log}",
            "-monitor",
            "none",
            "-qmp",
            f"unix:{self.qmp_socket},server=on,wait=off",
            "-kernel",
            str(img.kernel),
            "-initrd",
            str(img.initrd),
            "-append",
            self.kernel_cmdline(),
            "-drive",
            f"file={self.overlay},if=virtio,format=qcow2,cache=unsafe",
            *self.network_args(),
            # sshd wants entropy early; an emulated CPU gathers it slowly.
            "-device",
            "virtio-rng-pci",
        ]

    def start(self, detach: bool = False, timeout: float = BOOT_TIMEOUT) -> float:
        """Boot and wait for SSH; return the seconds from qemu start to a login.

        detach=True lets qemu outlive this process (the CLI's `boot`);
        otherwise it is tied to us and dies with us.
        """
        _need_tools("qemu-system-x86_64", "qemu-img")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.qmp_socket)) > 100:
            raise VMError(f"e2e VM: state dir {self.state_dir} is too long for a unix socket path")
        for attempt in range(1, PORT_ATTEMPTS + 1):
            started = self._launch(detach)
            try:
                self.wait_for_ssh(timeout)
                break
            except VMError:
                self.stop()
                # The port was free when picked; another process may have taken it since.
                if attempt < PORT_ATTEMPTS and "host forwarding" in _last_line(self.qemu_log, "forwarding"):
                    log.warning("e2e VM: port %d was taken meanwhile; trying another", self.port)
                    continue
                raise
            except BaseException:
                self.stop()
                raise
        self.boot_seconds = round(time.monotonic() - started, 1)
        self._save_state()
        name, release = self.qemu_name(), self.image.kernel_release
        log.info("%s: booted to SSH in %.1fs (kernel %s)", name, self.boot_seconds, release)
        return self.boot_seconds

    def _launch(self, detach: bool) -> float:
        """Start qemu on a fresh overlay and a free port; return the start time."""
        self.overlay.unlink(missing_ok=True)
        self.qmp_socket.unlink(missing_ok=True)
        self._create_overlay()
        self._prepare_network()
        started = time.monotonic()
        with self.qemu_log.open("w") as out:
            self._proc = subprocess.Popen(
                self.qemu_argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_tool_env(),
                start_new_session=detach,
                preexec_fn=None if detach else _die_with_parent,
            )
        self.pid = self._proc.pid
        self._save_state()
        name, pid, host, port = self.qemu_name(), self.pid, self.ssh_host, self.port
        log.info("%s: qemu pid %d, ssh on %s:%d; waiting for sshd", name, pid, host, port)
        return started

    def _create_overlay(self) -> None:
        argv = [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            str(self.image.image),
            "-F",
            "raw",
            str(self.overlay),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, env=_tool_env(), timeout=60, check=False)
        if proc.returncode != 0:
            raise VMError(f"e2e VM: qemu-img create failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def _save_state(self) -> None:
        info = self.ssh_info() | {
            "pid": self.pid,
            "boot_seconds": self.boot_seconds,
            "qmp": str(self.qmp_socket),
            "serial_log": str(self.serial_log),
        }
        self.state_file.write_text(json.dumps(info, indent=2) + "\n")

    def _check_running(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise VMError(
                f"{self.qemu_name()}: qemu exited with status {self._proc.returncode} before SSH came up: "
                f"{_last_line(self.qemu_log)} (serial: {_last_line(self.serial_log)})"
            )
        if self._proc is None and not _pid_alive(self.pid):
            raise VMError(f"{self.qemu_name()}: qemu (pid {self.pid}) is not running")

    def wait_for_ssh(self, timeout: float = BOOT_TIMEOUT, not_boot_id: str = "") -> str:
        """Wait until root can log in over SSH; return the guest's boot id.

        not_boot_id: keep waiting while the guest still runs that boot (a
        reboot was asked for and the old sshd may still be answering)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            if _ssh_banner(self.port, self.ssh_host):
                with suppress(TransportError):
                    boot_id = self.run("cat /proc/sys/kernel/random/boot_id", timeout=60).stdout.strip()
                    if boot_id and boot_id != not_boot_id:
                        return boot_id
            time.sleep(0.5)
        raise VMError(
            f"{self.qemu_name()}: no SSH login on {self.ssh_host}:{self.port} after {timeout:.0f}s "
            f"(serial log {self.serial_log}: {_last_line(self.serial_log)})"
        )

    def ssh_options(self) -> SSHOptions:
        # Generous timeouts: an emulated CPU on busy host cores can take tens of
        # seconds just to answer a key exchange or open a channel.
        return SSHOptions(
            user="root",
            port=self.port,
            key_file=str(self.image.client_key),
            known_hosts=str(self.known_hosts),
            connect_timeout=60.0,
            command_timeout=300.0,
        )

    def transport(self) -> SSHTransport:
        """A fresh nodeboot SSH transport to the guest (the caller closes it)."""
        return SSHTransport(self.ssh_host, self.ssh_options(), name=self.qemu_name())

    def run(self, command: str, timeout: float = 120.0) -> ExecResult:
        """Run a shell snippet as root in the guest over a one-off connection."""
        transport = self.transport()
        try:
            return transport.run_script(command, {}, None, timeout)
        finally:
            transport.close()

    def reboot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Reboot the guest (same qemu, same overlay); return seconds to SSH."""
        old = self.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()
        # Detached and delayed, so this SSH session ends cleanly before sshd goes.
        # (A timer fires within AccuracySec, which is a minute unless set.)
        self.run("systemd-run --quiet --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot")
        started = time.monotonic()
        self.wait_for_ssh(timeout, not_boot_id=old)
        return round(time.monotonic() - started, 1)

    def ssh_info(self) -> dict[str, object]:
        return {
            "host": self.ssh_host,
            "port": self.port,
            "user": "root",
            "key_file": str(self.image.client_key),
            "known_hosts": str(self.known_hosts),
            "kernel_release": self.image.kernel_release,
        }

    def stop(self) -> None:
        """ACPI power-down through QMP, then SIGTERM, then SIGKILL, all by PID."""
        if not self.pid or not _pid_alive(self.pid):
            self._reap()
            return
        with suppress(OSError, ValueError):
            _qmp(self.qmp_socket, "system_powerdown")
        if not self._wait_gone(STOP_TIMEOUT):
            log.warning("e2e VM: guest ignored the power-down; terminating qemu pid %d", self.pid)
            for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
                with suppress(ProcessLookupError):
                    os.kill(self.pid, sig)
                if self._wait_gone(wait):
                    break
            else:
                raise VMError(f"e2e VM: qemu pid {self.pid} survived SIGKILL")
        self._reap()
        self.overlay.unlink(missing_ok=True)

    def _wait_gone(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                return True
            if self._proc is None and not _pid_alive(self.pid):
                return True
            time.sleep(0.2)
        return False

    def _reap(self) -> None:
        if self._proc is not None:
            with suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)

    @classmethod
    def attach(cls, state_dir: Path) -> VM:
        """The VM a `boot` in another process left running in state_dir."""
        state_file = state_dir / "state.json"
        if not state_file.exists():
            raise VMError(f"e2e VM: no VM state in {state_dir} (boot one first)")
        data = json.loads(state_file.read_text())
        image = _load_cached(Path(data["key_file"]).parent)
        if image is None:
            raise VMError(f"e2e VM: the image behind {state_dir} is gone from the cache")
        vm = cls(image, state_dir)
        vm.port, vm.pid, vm.boot_seconds = int(data["port"]), int(data["pid"]), float(data["boot_seconds"])
        if vm.pid and not _is_our_qemu(vm.pid, vm.state_dir):
            vm.pid = 0  # the PID is gone or now belongs to someone else: never signal it
        return vm


def _is_our_qemu(pid: int, state_dir: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(argv) and argv[0].endswith(b"qemu-system-x86_64") and any(str(state_dir).encode() in arg for arg in argv)
    )


# ---- command line ---------------------------------------------------------------
def _print(data: dict[str, object]) -> None:
    print(json.dumps(data, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodeboot_lab.vm", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("build", "boot", "ssh-info", "stop"))
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/tmp/nodeboot-vm"),
        help="where a booted VM keeps its overlay, logs and sockets",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    try:
        if args.action == "build":
            image = ensure_image()
            _print(
                {
                    "dir": str(image.dir),
                    "kernel_release": image.kernel_release,
                    "build_seconds": image.build_seconds,
                    "built_now": image.built_now,
                }
            )
        elif args.action == "boot":
            vm = VM(ensure_image(), args.state_dir)
            vm.start(detach=True)
            _print(vm.ssh_info() | {"pid": vm.pid, "boot_seconds": vm.boot_seconds})
        elif args.action == "ssh-info":
            vm = VM.attach(args.state_dir)
            _print(vm.ssh_info() | {"pid": vm.pid, "running": bool(vm.pid)})
        else:
            VM.attach(args.state_dir).stop()
    except NodebootError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
