"""What `--install` puts on a bare Linux host, and where the host downloads it.

One place for the default versions, for the mirror's layout (upstream's own, so
a plain copy of the release sites works as a mirror), for the checks of the
operator's values, and for the inputs of scripts/linux/install.sh. The host
does the downloading and checking; this module only decides what to ask for.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodeboot.facts import LinuxFacts, as_linux_facts
from nodeboot.node_layout import LINUX_CRI_SOCKET_PATH
from nodeboot.scripts import script_text

# containerd 2.3 is the LTS line (to 2028-04); Kubernetes 1.36+ needs containerd 2.2+.
DEFAULT_CONTAINERD_VERSION = "2.3.7"
DEFAULT_CNI_VERSION = "1.10.0"
DEFAULT_RUNC_VERSION = "1.5.3"
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
CNI_CORE_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
STATE_FILE = "/var/lib/nodeboot/install.state"
INSTALL_HINT = "use --install (or nodeboot_install: true) to install them"

_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)$")
_SERVER_VERSION = re.compile(r"v?(\d+\.\d+\.\d+)")
_URL = re.compile(r"^https?://[^\s\"'\\]+$")
_REGISTRY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$")


@dataclass(frozen=True)
class InstallSettings:
    """One host's install request: from its inventory vars, the command line's flags over them."""

    enabled: bool = False
    artifacts_url: str | None = None
    artifacts_ca: str | None = field(default=None, repr=False)  # PEM text, sent to the host as data
    kubernetes_version: str | None = None  # vX.Y.Z; None: the API server's version
    containerd_version: str = DEFAULT_CONTAINERD_VERSION
    cni_version: str = DEFAULT_CNI_VERSION
    runc_version: str = DEFAULT_RUNC_VERSION
    install_kubectl: bool = False
    registry_mirrors: tuple[tuple[str, str], ...] = ()
    registry_ca: str | None = field(default=None, repr=False)  # PEM text
    disable_swap: bool = False


@dataclass(frozen=True)
class Artifact:
    kind: str
    version: str
    url: str
    checksum_url: str


# -- the operator's values: each returns the clean value or raises ValueError --
def version(value: object) -> str:
    """X.Y.Z (a leading v is accepted and dropped)."""
    match = _VERSION.match(str(value).strip()) if isinstance(value, (str, int, float)) else None
    if not match or isinstance(value, bool):
        raise ValueError(f"{value!r} is not a version such as 1.2.3")
    return match.group(1)


def kubernetes_version(value: object) -> str:
    return "v" + version(value)


def url(value: object) -> str:
    text = str(value).strip().rstrip("/") if isinstance(value, str) else ""
    if not _URL.match(text):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return text


def registry_mirror(value: object) -> tuple[str, str]:
    """'REGISTRY=URL', e.g. registry.k8s.io=https://mirror.example:5000."""
    if not isinstance(value, str) or "=" not in value:
        raise ValueError(f"{value!r} must be REGISTRY=URL (e.g. registry.k8s.io=https://mirror:5000)")
    registry, _, mirror = value.partition("=")
    registry = registry.strip()
    if not _REGISTRY.match(registry):
        raise ValueError(f"{registry!r} is not a registry host[:port] (e.g. registry.k8s.io)")
    return registry, url(mirror)


def registry_mirrors(value: object) -> tuple[tuple[str, str], ...]:
    """A mapping {registry: url}, a list of REGISTRY=URL, or one such string."""
    if isinstance(value, dict):
        items = [f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("must be a mapping of registry: URL or a list of REGISTRY=URL")
    mirrors = dict(registry_mirror(item) for item in items)
    return tuple(sorted(mirrors.items()))


def pem_file(value: object) -> str:
    """A CA bundle file (on this machine): its text, which goes to the host as data."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} must name a PEM file")
    path = Path(value).expanduser()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {value}: {getattr(exc, 'strerror', None) or exc}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{value} holds no PEM certificate")
    return text.strip() + "\n"


def kubelet_config(value: object) -> dict[str, Any]:
    """KubeletConfiguration fields (a mapping of its camelCase keys) kubeadm merges into the node's config."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise ValueError("must be a mapping of KubeletConfiguration fields, e.g. {maxPods: 50}")
    bad = [k for k in value if k in ("apiVersion", "kind")]
    if bad:
        raise ValueError(f"leave out {', '.join(bad)}: nodeboot adds them")
    return dict(value)


def kubelet_config_file(path: str) -> dict[str, Any]:
    """--kubelet-config FILE: a YAML mapping of KubeletConfiguration fields."""
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        return kubelet_config(data or {})
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# -- what the host is asked to do ---------------------------------------------
def arch_of(machine: str) -> str:
    arch = ARCHES.get(machine or "")
    if arch is None:
        raise ValueError(f"architecture {machine!r} is not one nodeboot installs (amd64, arm64)")
    return arch


def wanted_kubernetes_version(settings: InstallSettings, server_version: str) -> str:
    """The version to install: the operator's, else the API server's (its vX.Y.Z, without build suffixes)."""
    if settings.kubernetes_version:
        return settings.kubernetes_version
    match = _SERVER_VERSION.search(server_version or "")
    if not match:
        raise ValueError(f"cannot read the API server's version {server_version!r}: give --kubernetes-version")
    return "v" + match.group(1)


def artifacts(settings: InstallSettings, k8s_version: str, arch: str) -> list[Artifact]:
    """Every download, with its checksum file, in upstream's layout under --artifacts-url."""
    if not settings.artifacts_url:
        raise ValueError("--install needs --artifacts-url (or nodeboot_artifacts_url): where the host downloads from")
    base = settings.artifacts_url
    k8s = f"{base}/release/{k8s_version}/bin/linux/{arch}"
    names = ["kubelet", "kubeadm"] + (["kubectl"] if settings.install_kubectl else [])
    found = [Artifact(n, k8s_version, f"{k8s}/{n}", f"{k8s}/{n}.sha256") for n in names]
    cd = settings.containerd_version
    tarball = f"{base}/containerd/releases/download/v{cd}/containerd-{cd}-linux-{arch}.tar.gz"
    found.append(Artifact("containerd", cd, tarball, tarball + ".sha256sum"))
    cni = settings.cni_version
    plugins = f"{base}/containernetworking/plugins/releases/download/v{cni}/cni-plugins-linux-{arch}-v{cni}.tgz"
    found.append(Artifact("cni", cni, plugins, plugins + ".sha256"))
    runc = f"{base}/opencontainers/runc/releases/download/v{settings.runc_version}"
    found.append(Artifact("runc", settings.runc_version, f"{runc}/runc.{arch}", f"{runc}/runc.sha256sum"))
    return found


def script_inputs(settings: InstallSettings, k8s_version: str, arch: str) -> dict[str, str]:
    """install.sh's NB_* inputs; NB_INSTALL_KEY sums up all of them and the script itself."""
    inputs = {
        "NB_ARTIFACTS": "\n".join(f"{a.kind} {a.version} {a.url} {a.checksum_url}"
                                  for a in artifacts(settings, k8s_version, arch)),
        "NB_ARTIFACTS_CA": (settings.artifacts_ca or "").strip(),
        "NB_KUBERNETES_VERSION": k8s_version,
        "NB_REGISTRY_MIRRORS": "\n".join(f"{r} {u}" for r, u in settings.registry_mirrors),
        "NB_REGISTRY_CA": (settings.registry_ca or "").strip(),
        "NB_DISABLE_SWAP": "1" if settings.disable_swap else "0",
    }
    inputs["NB_INSTALL_KEY"] = install_key(inputs)
    return inputs


def install_key(inputs: dict[str, str]) -> str:
    """A digest of what was asked and of install.sh's text: a host whose state file holds
    the same key got exactly this install (a new nodeboot with new unit text re-runs it)."""
    body = json.dumps({k: v for k, v in sorted(inputs.items()) if k != "NB_INSTALL_KEY"})
    return hashlib.sha256((body + script_text("linux", "install.sh")).encode()).hexdigest()


def missing_parts(facts: LinuxFacts | Mapping[str, Any]) -> list[str]:
    """The node parts a join needs that the host lacks (facts.sh's view)."""
    facts = as_linux_facts(facts)
    missing = []
    if not facts.kubelet_version:
        missing.append("kubelet")
    if not facts.kubeadm_version:
        missing.append("kubeadm")
    if not facts.cri_socket:
        missing.append(f"containerd (no CRI socket at {LINUX_CRI_SOCKET_PATH})")
    if facts.runc is False:
        missing.append("runc")
    return missing


def missing_cni_plugins(facts: LinuxFacts | Mapping[str, Any]) -> list[str]:
    present = as_linux_facts(facts).cni_plugins
    if present is None:  # an older facts.sh: nothing known
        return []
    return [p for p in CNI_CORE_PLUGINS if p not in present]


def installed_as_asked(facts: LinuxFacts | Mapping[str, Any], inputs: dict[str, str],
                       k8s_version: str) -> str | None:
    """Why the host needs no install (facts alone decide), or None."""
    facts = as_linux_facts(facts)
    if facts.install_key != inputs["NB_INSTALL_KEY"] or not facts.install_files_ok:
        return None
    if missing_parts(facts) or missing_cni_plugins(facts) or not facts.runc:
        return None
    if facts.kubelet_version != k8s_version or facts.kubeadm_version != k8s_version:
        return None
    return f"installed: Kubernetes {k8s_version}, containerd {_version_of(inputs, 'containerd')}"


def _version_of(inputs: dict[str, str], kind: str) -> str:
    for line in inputs["NB_ARTIFACTS"].splitlines():
        parts = line.split()
        if parts and parts[0] == kind:
            return parts[1]
    return "?"


def plan_text(settings: InstallSettings, k8s_version: str, arch: str) -> str:
    """What a dry run says the install would do: each part, its version and its URL."""
    parts = [f"{a.kind} {a.version} from {a.url}" for a in artifacts(settings, k8s_version, arch)]
    text = "would install " + "; ".join(parts)
    if settings.registry_mirrors:
        text += "; registry mirrors " + ", ".join(f"{r}={u}" for r, u in settings.registry_mirrors)
    if settings.disable_swap:
        text += "; swap turned off for good"
    return text
