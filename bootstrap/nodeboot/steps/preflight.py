"""Checks nodeboot makes from gathered facts before touching a host."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from nodeboot import validate
from nodeboot.facts import HostFacts, LinuxFacts, as_linux_facts
from nodeboot.node_layout import LINUX_CRI_SOCKET_PATH

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
MAX_KUBELET_SKEW = 3  # minors the kubelet may trail the API server
MAX_CLOCK_SKEW = 5.0  # seconds; certificates and tokens fail beyond this


def minor_of(version: str) -> tuple[int, int] | None:
    match = _VERSION.search(version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_skew_problem(kubelet: str, server_minor: tuple[int, int]) -> str | None:
    """The kubelet may not be newer than the API server, nor more than 3 minors older."""
    have = minor_of(kubelet)
    if have is None:
        return f"cannot read the kubelet version ({kubelet!r})"
    if have[0] != server_minor[0]:
        return f"kubelet {kubelet} and API server {server_minor[0]}.{server_minor[1]} differ in major version"
    if have[1] > server_minor[1]:
        return f"kubelet {kubelet} is newer than the API server (1.{server_minor[1]}); upgrade the control plane first"
    if server_minor[1] - have[1] > MAX_KUBELET_SKEW:
        return (f"kubelet {kubelet} is more than {MAX_KUBELET_SKEW} minors older than the API server "
                f"(1.{server_minor[1]}); upgrade the node's packages")
    return None


def clock_skew(host_time: str, sent_at: float, received_at: float) -> float:
    """Seconds between the host's clock and ours, allowing for the round trip."""
    try:
        remote = float(host_time)
    except ValueError:
        return 0.0
    midpoint = (sent_at + received_at) / 2
    skew = remote - midpoint
    slack = (received_at - sent_at) / 2
    return 0.0 if abs(skew) <= slack else skew


def common_problems(facts: HostFacts | Mapping[str, Any], node_name: str) -> list[str]:
    """Checks that do not depend on the OS: the node name and the host's clock."""
    facts = facts if isinstance(facts, HostFacts) else as_linux_facts(facts)
    problems = []
    try:
        validate.node_name(node_name)
    except ValueError as exc:
        problems.append(str(exc))
    drift = clock_skew(facts.time, facts.sent_at, facts.received_at)
    if abs(drift) > MAX_CLOCK_SKEW:
        problems.append(f"clock is {drift:+.1f}s off from this machine; fix time sync first (certificates will fail)")
    return problems


def linux_problems(facts: LinuxFacts | Mapping[str, Any], server_minor: tuple[int, int], need_cri: bool = True,
                   node_parts: bool = True) -> list[str]:
    """node_parts=False leaves the CRI socket, kubeadm and a missing kubelet to the caller
    (nodeboot names all missing parts in one line, with the flag that installs them)."""
    facts = as_linux_facts(facts)
    problems = []
    if facts.swap_on:
        problems.append("swap is on (the kubelet refuses to start with swap unless configured for it): swapoff -a")
    if facts.ip_forward != "1":
        problems.append(f"net.ipv4.ip_forward is {facts.ip_forward!r}, must be 1")
    bridge = facts.bridge_nf_call_iptables
    if bridge == "missing":
        problems.append("net.bridge.bridge-nf-call-iptables is missing: br_netfilter is not loaded (modprobe "
                        "br_netfilter, and name it in /etc/modules-load.d/ so it loads at boot)")
    elif bridge != "1":
        problems.append(f"net.bridge.bridge-nf-call-iptables is {bridge!r}, must be 1 "
                        "(sysctl -w net.bridge.bridge-nf-call-iptables=1, and persist it in /etc/sysctl.d/)")
    cri = cri_problem(facts)
    if need_cri and cri:
        problems.append(cri)
    if need_cri and node_parts and not facts.cri_socket:
        problems.append(f"no container runtime: {LINUX_CRI_SOCKET_PATH} is missing (is containerd running?)")
    if node_parts and not facts.kubeadm_version:
        problems.append("kubeadm is not installed")
    skew = None
    if node_parts or facts.kubelet_version:
        skew = version_skew_problem(facts.kubelet_version, server_minor)
    if skew:
        problems.append(skew)
    return problems


def cri_problem(facts: LinuxFacts | Mapping[str, Any]) -> str | None:
    """The runtime behind the socket was asked (facts.sh: crictl's CRI Version call, or containerd's
    ctr) and did not answer. A missing socket is the missing-parts check's to report."""
    facts = as_linux_facts(facts)
    if not facts.cri_socket or facts.cri_check == "socket" or facts.cri_answered:
        return None
    return (f"the container runtime at {LINUX_CRI_SOCKET_PATH} does not answer "
            f"({facts.cri_check} version: {facts.cri_version or 'no output'}); is containerd running?")


def cri_warning(facts: LinuxFacts | Mapping[str, Any]) -> str | None:
    facts = as_linux_facts(facts)
    if facts.cri_socket and facts.cri_check == "socket":
        return ("neither crictl nor ctr is on the host: only the runtime's socket was checked, "
                "not that the runtime answers")
    return None


def ipv6_forwarding_problem(facts: LinuxFacts | Mapping[str, Any], node_ips: list[str]) -> str | None:
    """A node with an IPv6 node IP routes pod traffic over IPv6: forwarding must be on.
    (Facts without ipv6_forward are not judged here.)"""
    v6 = [ip for ip in node_ips if ":" in ip]
    value = as_linux_facts(facts).ipv6_forward
    if not v6 or value is None or value == "1":
        return None
    return (f"node IP {v6[0]} is IPv6 but net.ipv6.conf.all.forwarding is {value!r}, must be 1 "
            "(sysctl -w net.ipv6.conf.all.forwarding=1, and persist it in /etc/sysctl.d/)")


def now() -> float:
    return time.time()
