"""Where a worker keeps what nodeboot sets up and talks to: the container runtime's
socket (as kubeadm names it, and as a path on Linux) and the Windows directories.
Named once here; phases, the JoinConfiguration, preflight and the lab use these."""

from __future__ import annotations

# kubeadm's criSocket for containerd, by OS.
LINUX_CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
WINDOWS_CRI_SOCKET = "npipe:////./pipe/containerd-containerd"
# The same Linux socket as the host sees it (/var/run is a link to /run).
LINUX_CRI_SOCKET_PATH = "/run/containerd/containerd.sock"

# Windows: kubelet.exe, kubeadm.exe, csi-proxy.exe and the kubelet's wrapper; containerd's binaries.
WINDOWS_KUBE_DIR = "C:\\k"
WINDOWS_CONTAINERD_DIR = "C:\\Program Files\\containerd"


def cri_socket(os_name: str) -> str:
    """kubeadm's criSocket for a host of this OS."""
    return WINDOWS_CRI_SOCKET if os_name == "windows" else LINUX_CRI_SOCKET
