"""Versions of the real node's artifacts and where a mirror keeps them.

The lab's mirror copies the paths upstream publishes, so a node fetches from
`--artifacts-url BASE` exactly what it would fetch from dl.k8s.io and GitHub:

    BASE/release/{K8S}/bin/linux/{ARCH}/{kubelet,kubeadm,kube-proxy}
        each with NAME.sha256                 -> "HEX" (hex only, as dl.k8s.io)
    BASE/containerd/releases/download/v{CD}/containerd-{CD}-linux-{ARCH}.tar.gz
        with .sha256sum                       -> "HEX  containerd-{CD}-linux-{ARCH}.tar.gz"
        entries: bin/containerd, bin/containerd-shim-runc-v2, bin/ctr
    BASE/containernetworking/plugins/releases/download/{CNI}/cni-plugins-linux-{ARCH}-{CNI}.tgz
        with .sha256                          -> "HEX  cni-plugins-linux-{ARCH}-{CNI}.tgz"
        entries: the plugins at the top level (./bridge, ./loopback, ...)
    BASE/opencontainers/runc/releases/download/{RUNC}/runc.{ARCH}
        with runc.sha256sum (same directory)  -> "HEX  runc.{ARCH}"

K8S, CNI and RUNC carry their leading "v"; CD (containerd) does not, as in
containerd's own file names. The product keeps its own copy of this layout
(it cannot import the lab); this module is the lab's single source for it.
"""

from __future__ import annotations

KUBERNETES_VERSION = "v1.37.2"
CONTAINERD_VERSION = "2.3.7"
CNI_PLUGINS_VERSION = "v1.10.0"
RUNC_VERSION = "v1.5.3"
ARCH = "amd64"

KUBERNETES_BINARIES = ("kubelet", "kubeadm", "kube-proxy")
CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")
CNI_PLUGINS = ("bridge", "loopback", "host-local", "portmap", "bandwidth", "firewall", "tuning")


def kubernetes_binary(name: str, version: str = KUBERNETES_VERSION, arch: str = ARCH) -> str:
    """Path of one Kubernetes binary; its checksum is at this path + ".sha256"."""
    return f"release/{version}/bin/linux/{arch}/{name}"


def containerd_tarball(version: str = CONTAINERD_VERSION, arch: str = ARCH) -> str:
    """Path of containerd's release tarball; its checksum is at this path + ".sha256sum"."""
    return f"containerd/releases/download/v{version}/containerd-{version}-linux-{arch}.tar.gz"


def cni_tarball(version: str = CNI_PLUGINS_VERSION, arch: str = ARCH) -> str:
    """Path of the CNI plugins tarball; its checksum is at this path + ".sha256"."""
    return f"containernetworking/plugins/releases/download/{version}/cni-plugins-linux-{arch}-{version}.tgz"


def runc_binary(version: str = RUNC_VERSION, arch: str = ARCH) -> str:
    """Path of the runc binary; its checksum is runc.sha256sum in the same directory."""
    return f"opencontainers/runc/releases/download/{version}/runc.{arch}"


def runc_checksums(version: str = RUNC_VERSION) -> str:
    return f"opencontainers/runc/releases/download/{version}/runc.sha256sum"


def checksum_files(k8s_version: str = KUBERNETES_VERSION, arch: str = ARCH) -> dict[str, str]:
    """Every artifact path of one mirror -> the path of the file holding its sha256."""
    pairs = {kubernetes_binary(n, k8s_version, arch): kubernetes_binary(n, k8s_version, arch) + ".sha256"
             for n in KUBERNETES_BINARIES}
    pairs[containerd_tarball(arch=arch)] = containerd_tarball(arch=arch) + ".sha256sum"
    pairs[cni_tarball(arch=arch)] = cni_tarball(arch=arch) + ".sha256"
    pairs[runc_binary(arch=arch)] = runc_checksums()
    return pairs
