"""The images a real node pulls, built here into an OCI image layout:

- registry.k8s.io/pause:<the tag kubeadm asks for>: the lab's own static pause
  program (images/pause) as the pod sandbox;
- registry.k8s.io/kube-proxy:<k8s version>: the built kube-proxy plus the
  userland it calls (iptables nft and legacy, ip6tables, ipset, nft,
  conntrack), copied from this Debian host with their shared libraries, the
  dynamic loader and the xtables extensions;
- registry.k8s.io/e2e-test-images/nodeboot-echo:1.0: a static HTTP server
  (images/echo) that answers GET / with its pod's name.

Every image is one uncompressed layer (see oci.py); the kube-proxy image is
checked by running its tools in a chroot of the unpacked layer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from nodeboot_lab.build import BuildError
from nodeboot_lab.oci import Layout

ECHO_IMAGE = "registry.k8s.io/e2e-test-images/nodeboot-echo:1.0"
MULTIARCH = "x86_64-linux-gnu"
XTABLES_EXTENSIONS = Path(f"/usr/lib/{MULTIARCH}/xtables")
# Debian's iptables ships one multi-call binary per backend; the names pick the tool.
IPTABLES_NAMES = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore")
NFT_MULTI = "/usr/sbin/xtables-nft-multi"
LEGACY_MULTI = "/usr/sbin/xtables-legacy-multi"
TOOLS = (NFT_MULTI, LEGACY_MULTI, "/usr/sbin/ipset", "/usr/sbin/nft", "/usr/sbin/conntrack")
ETC_FILES = ("/etc/protocols", "/etc/services", "/etc/ethertypes")
# What the image's tools must answer in a chroot: proof the copied userland is complete.
CHECKS = (
    ("/usr/local/bin/kube-proxy", "--version"),
    ("/usr/sbin/iptables", "--version"),
    ("/usr/sbin/iptables-legacy", "--version"),
    ("/usr/sbin/ip6tables-save", "--version"),
    ("/usr/sbin/ipset", "version"),
    ("/usr/sbin/nft", "--version"),
    ("/usr/sbin/conntrack", "--version"),
)
Log = Callable[[str], None]


def pause_image(kubeadm: Path, k8s_version: str) -> str:
    """The sandbox image this kubeadm wants (`kubeadm config images list`)."""
    proc = subprocess.run([str(kubeadm), "config", "images", "list", "--kubernetes-version", k8s_version],
                          capture_output=True, text=True)
    found = re.search(r"^(registry\.k8s\.io/pause:\S+)$", proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        raise BuildError(f"{kubeadm} config images list: no pause image in its output: "
                         f"{(proc.stderr or proc.stdout).strip()[:300]}")
    return found.group(1)


def _merged_usr(rootfs: Path) -> None:
    # Debian 12 is merged-/usr: /bin, /sbin, /lib, /lib64 are links into /usr.
    for top in ("bin", "sbin", "lib", "lib64"):
        (rootfs / "usr" / top).mkdir(parents=True, exist_ok=True)
        link = rootfs / top
        if not link.is_symlink():
            link.symlink_to(f"usr/{top}")


def _place(rootfs: Path, host_path: str) -> None:
    """Copy a host file to the same place in rootfs; a symlinked name becomes a link to it."""
    real = os.path.realpath(host_path)
    dest = rootfs / real.lstrip("/")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dest)
    name_dir = os.path.realpath(os.path.dirname(host_path))
    alias = rootfs / name_dir.lstrip("/") / os.path.basename(host_path)
    if os.path.join(name_dir, os.path.basename(host_path)) != real and not alias.is_symlink():
        alias.parent.mkdir(parents=True, exist_ok=True)
        alias.symlink_to(os.path.relpath(real, name_dir))


def _libraries(path: str) -> list[str]:
    proc = subprocess.run(["ldd", path], capture_output=True, text=True)
    if proc.returncode != 0:
        return []  # a static binary
    return re.findall(r"(/\S+) \(0x", proc.stdout)


def _place_with_libraries(rootfs: Path, host_path: str) -> None:
    _place(rootfs, host_path)
    for library in _libraries(host_path):
        _place(rootfs, library)


def kube_proxy_rootfs(rootfs: Path, kube_proxy: Path) -> None:
    missing = [t for t in (*TOOLS, str(XTABLES_EXTENSIONS)) if not os.path.exists(t)]
    if missing:
        raise BuildError("the kube-proxy image copies this host's userland; missing: " + ", ".join(missing)
                         + " (Debian: iptables, ipset, nftables, conntrack)")
    _merged_usr(rootfs)
    for tool in TOOLS:
        _place_with_libraries(rootfs, tool)
    for extension in sorted(XTABLES_EXTENSIONS.glob("*.so")):
        _place_with_libraries(rootfs, str(extension))
    sbin = rootfs / "usr" / "sbin"
    for name in IPTABLES_NAMES:
        # nft is the backend kube-proxy's `iptables` uses; the legacy names stay for hosts that need them.
        (sbin / name).symlink_to("xtables-nft-multi")
        (sbin / name.replace("tables", "tables-nft", 1)).symlink_to("xtables-nft-multi")
        (sbin / name.replace("tables", "tables-legacy", 1)).symlink_to("xtables-legacy-multi")
    for etc in ETC_FILES:
        if os.path.exists(etc):
            _place(rootfs, etc)
    (rootfs / "usr" / "local" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(kube_proxy, rootfs / "usr" / "local" / "bin" / "kube-proxy")
    for d in ("run", "var/lib", "lib/modules", "proc", "sys", "dev"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)


def single_file_rootfs(rootfs: Path, program: Path, name: str) -> None:
    rootfs.mkdir(parents=True, exist_ok=True)
    shutil.copy2(program, rootfs / name)
    (rootfs / name).chmod(0o755)


def chroot_check(rootfs: Path) -> dict[str, str]:
    """Run each tool of the kube-proxy image in a chroot; return tool -> first output line."""
    answers = {}
    for argv in CHECKS:
        proc = subprocess.run(["chroot", str(rootfs), *argv], capture_output=True, text=True, timeout=60)
        line = (proc.stdout.strip() or proc.stderr.strip()).splitlines()[:1]
        if proc.returncode != 0:
            raise BuildError(f"kube-proxy image: `{' '.join(argv)}` fails in a chroot: {' '.join(line)}")
        answers[os.path.basename(argv[0])] = line[0] if line else ""
    return answers


def unpack_layers(layout: Layout, ref: str, into: Path) -> None:
    """Unpack an image's layers (uncompressed tars) in order into a directory."""
    manifest = layout.manifest(layout.images()[ref])
    for layer in manifest["layers"]:
        with tarfile.open(layout.blob_path(layer["digest"])) as tar:
            tar.extractall(into, filter="tar")


def build_images(layout_dir: Path, k8s_bin: Path, programs: Path, k8s_version: str,
                 log: Log = print) -> dict[str, str]:
    """Write the three images into the layout; return image ref -> manifest digest."""
    layout = Layout(layout_dir)
    pause_ref = pause_image(k8s_bin / "kubeadm", k8s_version)
    proxy_ref = f"registry.k8s.io/kube-proxy:{k8s_version}"
    with tempfile.TemporaryDirectory(prefix="nodeboot-images-") as tmp:
        work = Path(tmp)
        single_file_rootfs(work / "pause", programs / "pause", "pause")
        layout.add_image(pause_ref, work / "pause", ["/pause"], user="65535:65535")
        single_file_rootfs(work / "echo", programs / "echo", "echo")
        layout.add_image(ECHO_IMAGE, work / "echo", ["/echo"], user="65534:65534",
                         env=["PATH=/", "PORT=8080"])
        kube_proxy_rootfs(work / "kube-proxy", k8s_bin / "kube-proxy")
        layout.add_image(proxy_ref, work / "kube-proxy", ["/usr/local/bin/kube-proxy"])
        unpack_layers(layout, proxy_ref, work / "check")
        answers = chroot_check(work / "check")
    log("lab: kube-proxy image checked in a chroot: " + "; ".join(answers.values()))
    return {ref: d.digest for ref, d in layout.images().items()}
