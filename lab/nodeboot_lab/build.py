"""Builds the real control-plane binaries from their published Go modules.

kube-apiserver, kube-controller-manager, kube-scheduler and kubeadm come from
k8s.io/kubernetes at one release; etcd from go.etcd.io/etcd/server/v3 at the
version that release pins. The build goes into a per-machine cache keyed by
version, so a second `lab up` finds it; `--bin-dir` skips the build entirely.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from nodeboot.errors import NodebootError, UsageError

CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubeadm")
# The real node's binaries come from the same module set at the same version.
NODE = ("kubelet", "kube-proxy")
KUBERNETES = (*CONTROL_PLANE, *NODE)
BINARIES = (*KUBERNETES, "etcd")
DEFAULT_VERSION = "v1.37.2"
_VERSION_RE = re.compile(r"^v1\.(\d+)\.(\d+)$")


class BuildError(NodebootError):
    pass


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "nodeboot" / "lab"


def bin_dir_for(version: str) -> Path:
    return cache_root() / version / "bin"


def check_bin_dir(bin_dir: Path) -> Path:
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise UsageError(f"--bin-dir {bin_dir}: missing executables: {', '.join(missing)}")
    return bin_dir


def ensure_binaries(version: str = DEFAULT_VERSION, bin_dir: Path | None = None, log=print) -> Path:
    """Return a directory holding all lab binaries for `version`, building them if needed."""
    if bin_dir is not None:
        return check_bin_dir(bin_dir)
    match = _VERSION_RE.match(version)
    if not match:
        raise UsageError(f"--k8s-version {version!r}: expected a release such as {DEFAULT_VERSION}")
    target = bin_dir_for(version)
    if (target / ".complete").exists() and all((target / n).exists() for n in BINARIES):
        return target
    if shutil.which("go") is None:
        raise BuildError(
            "the lab needs Go to build the control plane (or --bin-dir with release binaries); go is not on PATH"
        )
    started = time.monotonic()
    work = cache_root() / version / "src"
    target.mkdir(parents=True, exist_ok=True)
    _build_kubernetes(version, work / "kubernetes", target, log)
    _build_etcd(work / "kubernetes", work / "etcd", target, log)
    (target / ".complete").write_text(json.dumps({"version": version, "seconds": round(time.monotonic() - started)}))
    log(f"lab: control plane {version} built in {time.monotonic() - started:.0f}s into {target}")
    return target


def _go(args: list[str], cwd: Path, log) -> str:
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0")
    proc = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BuildError(f"go {' '.join(args[:2])} failed in {cwd}:\n{tail}")
    return proc.stdout


def _staging_replaces(upstream_mod: str, staging_version: str) -> list[str]:
    """k8s.io/kubernetes points its k8s.io/* staging modules at ./staging; a consumer
    must point them at the published v0.X.Y modules instead."""
    lines = []
    for name in re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/src/", upstream_mod, re.M):
        lines.append(f"\t{name} => {name} {staging_version}")
    return lines


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    # Without these the binaries say v0.0.0-master and kubeadm's version checks fail.
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _build_kubernetes(version: str, work: Path, target: Path, log) -> None:
    work.mkdir(parents=True, exist_ok=True)
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], work.parent, log) or "{}")
    upstream_mod = Path(info["GoMod"]).read_text()
    (work / "upstream.mod").write_text(upstream_mod)  # etcd's pin is read from it
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    go_line = re.search(r"^go (\S+)", upstream_mod, re.M)
    (work / "go.mod").write_text(
        "module nodeboot.lab/controlplane\n\n"
        f"go {go_line.group(1) if go_line else '1.24'}\n\n"
        f"require k8s.io/kubernetes {version}\n\n"
        "replace (\n" + "\n".join(_staging_replaces(upstream_mod, staging_version)) + "\n)\n"
    )
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{name}"' for name in KUBERNETES)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    log(f"lab: resolving k8s.io/kubernetes {version} modules")
    _go(["mod", "tidy"], work, log)
    log(f"lab: building {', '.join(KUBERNETES)} (several minutes, once)")
    pkgs = [f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES]
    _go(["build", "-trimpath", "-ldflags", _version_ldflags(version), "-o", str(target) + "/", *pkgs], work, log)


def _build_etcd(k8s_work: Path, work: Path, target: Path, log) -> None:
    pinned = re.search(r"go\.etcd\.io/etcd/server/v3 (v\S+)", (k8s_work / "upstream.mod").read_text())
    etcd_version = pinned.group(1) if pinned else "v3.6.5"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(
        f"module nodeboot.lab/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 {etcd_version}\n"
    )
    (work / "tools.go").write_text('//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n')
    log(f"lab: building etcd {etcd_version}")
    _go(["mod", "tidy"], work, log)
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(target / "etcd"), "go.etcd.io/etcd/server/v3"], work, log)
