"""Builds the real node's binaries (besides kubelet and kube-proxy, which
build.py makes with the control plane) from their published Go modules.

One generated Go module per project, as build.py does for Kubernetes: it
requires the upstream module at one release, so the dependency set is the
release's own. Each project lands in its own directory under
~/.cache/nodeboot/lab/<k8s-version>/node/bin/<project>/ with a `.complete`
marker (and the build's seconds), so an interrupted build redoes only what is
missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nodeboot_lab import build
from nodeboot_lab.build import BuildError
from nodeboot_lab.node_artifacts import CNI_PLUGINS, CNI_PLUGINS_VERSION, CONTAINERD_VERSION, RUNC_VERSION

DISTRIBUTION_VERSION = "v3.1.2"
PROGRAMS = Path(__file__).resolve().parent / "images"

Log = Callable[[str], None]


@dataclass(frozen=True)
class GoProject:
    name: str
    module: str
    version: str
    packages: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    cgo: bool = False
    tags: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)


CONTAINERD = GoProject(
    "containerd", "github.com/containerd/containerd/v2", f"v{CONTAINERD_VERSION}",
    tuple(f"github.com/containerd/containerd/v2/cmd/{n}" for n in ("containerd", "containerd-shim-runc-v2", "ctr")),
    # `containerd --version` and the CRI RuntimeVersion read this; upstream releases set "vX.Y.Z".
    (f"-X github.com/containerd/containerd/v2/version.Version=v{CONTAINERD_VERSION}",
     "-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"),
    # The btrfs snapshotter needs cgo headers; overlayfs is the node's snapshotter.
    tags=("no_btrfs",),
)
CNI = GoProject(
    "cni-plugins", "github.com/containernetworking/plugins", CNI_PLUGINS_VERSION,
    tuple(f"github.com/containernetworking/plugins/plugins/{kind}/{n}" for kind, n in (
        ("main", "bridge"), ("main", "loopback"), ("ipam", "host-local"), ("meta", "portmap"),
        ("meta", "bandwidth"), ("meta", "firewall"), ("meta", "tuning"))),
    (f"-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion={CNI_PLUGINS_VERSION}",),
)
# runc's nsenter is C, so runc needs cgo; linked statically so the node needs no libseccomp.
RUNC = GoProject(
    "runc", "github.com/opencontainers/runc", RUNC_VERSION, ("github.com/opencontainers/runc",),
    (f"-X main.version={RUNC_VERSION.lstrip('v')}", "-extldflags '-static'"),
    cgo=True, tags=("seccomp", "urfave_cli_no_docs", "netgo", "osusergo"),
)
REGISTRY = GoProject(
    "registry", "github.com/distribution/distribution/v3", DISTRIBUTION_VERSION,
    ("github.com/distribution/distribution/v3/cmd/registry",),
    (f"-X github.com/distribution/distribution/v3/version.version={DISTRIBUTION_VERSION}",),
)
PROJECTS = (CONTAINERD, CNI, RUNC, REGISTRY)
assert len(CNI.packages) == len(CNI_PLUGINS)


def node_root(k8s_version: str) -> Path:
    return build.cache_root() / k8s_version / "node"


def project_dir(k8s_version: str, name: str) -> Path:
    return node_root(k8s_version) / "bin" / name


def _go(args: list[str], cwd: Path, cgo: bool = False) -> None:
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="1" if cgo else "0")
    proc = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BuildError(f"go {' '.join(args[:2])} failed in {cwd}:\n{tail}")


def build_project(project: GoProject, k8s_version: str, log: Log = print) -> Path:
    """Build one project into its cache directory (once); return the directory."""
    target = project_dir(k8s_version, project.name)
    if (target / ".complete").exists():
        return target
    started = time.monotonic()
    work = node_root(k8s_version) / "src" / project.name
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(
        f"module nodeboot.lab/{project.name}\n\ngo 1.24\n\nrequire {project.module} {project.version}\n"
    )
    imports = "\n".join(f'\t_ "{pkg}"' for pkg in project.packages)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    log(f"lab: building {project.name} {project.version}")
    _go(["mod", "tidy"], work)
    target.mkdir(parents=True, exist_ok=True)
    args = ["build", "-trimpath", "-ldflags", " ".join(["-s", "-w", *project.ldflags])]
    if project.tags:
        args += ["-tags", ",".join(project.tags)]
    _go([*args, "-o", str(target) + "/", *project.packages], work, cgo=project.cgo)
    seconds = round(time.monotonic() - started, 1)
    (target / ".complete").write_text(json.dumps({"version": project.version, "seconds": seconds}))
    log(f"lab: {project.name} {project.version} built in {seconds:.0f}s")
    return target


def build_programs(k8s_version: str, log: Log = print) -> Path:
    """The lab's own static programs for its images: pause and the echo server."""
    target = project_dir(k8s_version, "programs")
    if (target / ".complete").exists():
        return target
    started = time.monotonic()
    target.mkdir(parents=True, exist_ok=True)
    for name in ("pause", "echo"):
        _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(target / name), f"./{name}"], PROGRAMS)
    seconds = round(time.monotonic() - started, 1)
    (target / ".complete").write_text(json.dumps({"seconds": seconds}))
    log(f"lab: pause and echo built in {seconds:.0f}s")
    return target


def build_all(k8s_version: str, log: Log = print) -> dict[str, Path]:
    dirs = {p.name: build_project(p, k8s_version, log) for p in PROJECTS}
    dirs["programs"] = build_programs(k8s_version, log)
    return dirs
