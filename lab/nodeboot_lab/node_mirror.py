"""The artifact mirror's tree (upstream layout, see node_artifacts) and the
node cache that holds it: built once per machine under
~/.cache/nodeboot/lab/<k8s-version>/node/ next to the binaries and images.

A lab serves its own copy of the tree (lab_copy): big files are hard links to
the cache, checksum files are real copies, so a test may rewrite a checksum
in its lab without touching the cache. (Rewriting a hard-linked binary in
place would reach the cache: replace such a file instead.)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodeboot_lab import build, container_images, node_build
from nodeboot_lab.node_artifacts import (
    CNI_PLUGINS,
    CONTAINERD_BINARIES,
    KUBERNETES_BINARIES,
    checksum_files,
    cni_tarball,
    containerd_tarball,
    kubernetes_binary,
    runc_binary,
    runc_checksums,
)
from nodeboot_lab.oci import sha256_file

Log = Callable[[str], None]


@dataclass(frozen=True)
class NodeCache:
    root: Path

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def registry_bin(self) -> Path:
        return self.root / "bin" / "registry" / "registry"

    @property
    def complete(self) -> Path:
        return self.root / ".complete"


def _hex(path: Path) -> str:
    return sha256_file(path)


def _tar_bytes(out: Path, members: list[tuple[str, Path]]) -> None:
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        for arcname, source in members:
            info = tar.gettarinfo(str(source), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(source, "rb") as fh:
                tar.addfile(info, fh)


def _install(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest)


def build_tree(tree: Path, k8s_bin: Path, dirs: dict[str, Path], k8s_version: str) -> None:
    """Write the mirror tree with its checksum files, in the upstream layout."""
    for name in KUBERNETES_BINARIES:
        dest = tree / kubernetes_binary(name, k8s_version)
        _install(k8s_bin / name, dest)
        dest.with_name(name + ".sha256").write_text(_hex(dest))
    containerd = tree / containerd_tarball()
    containerd.parent.mkdir(parents=True, exist_ok=True)
    _tar_bytes(containerd, [(f"bin/{n}", dirs["containerd"] / n) for n in CONTAINERD_BINARIES])
    containerd.with_name(containerd.name + ".sha256sum").write_text(f"{_hex(containerd)}  {containerd.name}\n")
    cni = tree / cni_tarball()
    cni.parent.mkdir(parents=True, exist_ok=True)
    _tar_bytes(cni, [(f"./{n}", dirs["cni-plugins"] / n) for n in CNI_PLUGINS])
    cni.with_name(cni.name + ".sha256").write_text(f"{_hex(cni)}  {cni.name}\n")
    runc = tree / runc_binary()
    _install(dirs["runc"] / "runc", runc)
    runc.chmod(0o755)
    (tree / runc_checksums()).write_text(f"{_hex(runc)}  {runc.name}\n")


def ensure_node_cache(k8s_version: str = build.DEFAULT_VERSION, k8s_bin: Path | None = None,
                      log: Log = print) -> NodeCache:
    """Build (once per machine) the node binaries, the mirror tree and the images."""
    cache = NodeCache(node_build.node_root(k8s_version))
    if cache.complete.exists():
        return cache
    k8s_bin = k8s_bin or build.ensure_binaries(k8s_version, log=log)
    started = time.monotonic()
    dirs = node_build.build_all(k8s_version, log)
    for d in (cache.mirror, cache.images):
        shutil.rmtree(d, ignore_errors=True)
    build_tree(cache.mirror, k8s_bin, dirs, k8s_version)
    digests = container_images.build_images(cache.images, k8s_bin, dirs["programs"], k8s_version, log)
    seconds = {name: json.loads((d / ".complete").read_text()).get("seconds") for name, d in dirs.items()}
    cache.complete.write_text(json.dumps({"k8s_version": k8s_version, "build_seconds": seconds,
                                          "images": digests}, indent=2))
    log(f"lab: node artifacts ready in {time.monotonic() - started:.0f}s in {cache.root}")
    return cache


def lab_copy(cache: NodeCache, dest: Path) -> Path:
    """This lab's own mirror tree: hard links for the artifacts, copies of the checksum files."""
    shutil.rmtree(dest, ignore_errors=True)
    small = set(checksum_files().values())
    for dirpath, _, filenames in os.walk(cache.mirror):
        for name in filenames:
            source = Path(dirpath) / name
            rel = source.relative_to(cache.mirror).as_posix()
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel in small:
                shutil.copy2(source, target)
            else:
                os.link(source, target)
    return dest


def expected_sha256(tree: Path, artifact: str, checksum_file: str) -> str:
    """The hex sha256 a checksum file names for artifact (hex-only or "HEX  NAME" lines)."""
    name = os.path.basename(artifact)
    for line in (tree / checksum_file).read_text().splitlines():
        fields = line.split()
        if len(fields) == 1 or (len(fields) == 2 and fields[1].lstrip("*") == name):
            return fields[0]
    return ""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()
