"""What a host's facts script reports, typed: LinuxFacts (scripts/linux/facts.sh) and
WindowsFacts (scripts/windows/facts.ps1), parsed once where the facts arrive.

A field the script did not report keeps its default (an older script, or a test's
partial facts); a field of the wrong type is an error that names the host, the
script and the field. Fields that change during a run (joined, once kubeadm join
succeeded; the versions an install put there) are updated on the object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nodeboot.errors import NodebootError


class FactsError(NodebootError):
    """A facts script printed a field nodeboot cannot read."""


@dataclass
class HostFacts:
    """What both OSes report, and when the controller asked (for the clock-skew check)."""

    hostname: str = ""
    time: str = ""  # the host's clock, seconds since the epoch
    kubelet_version: str = ""
    kubeadm_version: str = ""
    joined: bool = False  # kubelet.conf is there
    kubelet_configured: bool = False  # the kubelet's config.yaml is there
    sent_at: float = 0.0  # controller clock when the facts script was sent
    received_at: float = 0.0  # ... and when its answer came back


@dataclass
class LinuxFacts(HostFacts):
    os_id: str = ""
    os_version: str = ""
    os_pretty: str = ""
    kernel: str = ""
    arch: str = ""
    cri_socket: bool = False
    # How the runtime was asked: crictl | ctr | socket (only the file) | joined (not asked: the
    # join preflight, the one reader of the answer, skips a joined host)
    cri_check: str = "socket"
    cri_answered: bool = False
    cri_version: str = ""
    cni_leftovers: bool = False
    swap_on: bool = False
    ip_forward: str | None = None  # None: not reported
    bridge_nf_call_iptables: str | None = None  # "missing": br_netfilter is not loaded
    ipv6_forward: str | None = None  # None: not reported
    modules_loaded: tuple[str, ...] = ()
    modules_file: bool = False  # the IPVS modules-load.d file is there
    tools: tuple[str, ...] = ()
    package_manager: str = ""
    runc: bool | None = None  # None: not reported
    cni_plugins: tuple[str, ...] | None = None  # None: not reported
    install_key: str = ""
    install_files_ok: bool = False
    containerd_version: str = ""
    runc_version: str = ""
    lock: str = ""
    # A joined host asked for brief facts (a join's re-run) reported only the host's identity,
    # joined, kubelet_configured and lock; every other field is its default, not the host's.
    brief: bool = False


@dataclass
class ServiceState:
    status: str = ""  # Running | Stopped | ...
    start: str = ""  # Automatic | Manual | ...


@dataclass
class WindowsFacts(HostFacts):
    os_caption: str = ""
    os_build: int = 0
    containers_feature: str = "Unknown"  # Installed | Available | InstallPending | Unknown
    reboot_pending: bool = False
    containerd_version: str = ""
    csi_proxy_installed: bool = False
    services: dict[str, ServiceState] = field(default_factory=dict)
    containerd_configured: bool = False
    kubelet_start_script: str = ""  # sha256 of StartKubelet.ps1
    kubelet_service_wrapper: bool = False
    firewall_kubelet: bool = False
    cri_pipe: bool = False
    csi_proxy_pipes: tuple[str, ...] = ()
    cni_conf_dir: bool = False

    def service(self, name: str) -> ServiceState | None:
        return self.services.get(name)


F = TypeVar("F", bound=HostFacts)
# Controller-side keys, not the script's: a caller that holds the facts as a dict puts them there.
CLOCK_KEYS = {"_sent_at": "sent_at", "_received_at": "received_at"}


def _types(cls: type) -> dict[str, str]:
    # The annotations as written ("bool | None", "tuple[str, ...]"): this module postpones them.
    return {f.name: str(f.type) for f in dataclasses.fields(cls)}


def _value(kind: str, value: Any, one_item_lists: bool) -> Any:
    """value as a field of this kind, or raise ValueError saying what was expected."""
    if value is None and "None" in kind:
        return None
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ValueError("expected true or false")
    if kind.startswith("str"):
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    if kind.startswith("int") or kind.startswith("float"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value) if kind.startswith("int") else float(value)
        raise ValueError("expected a number")
    if kind.startswith("tuple"):
        if one_item_lists and isinstance(value, str):  # PowerShell may write a one-item array as its item
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError("expected a list of strings")
    if kind.startswith("dict[str, ServiceState]"):
        if isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values()):
            return {str(k): ServiceState(str(v.get("status") or ""), str(v.get("start") or ""))
                    for k, v in value.items()}
        raise ValueError("expected an object of services, each with status and start")
    raise AssertionError(f"no reader for a field of type {kind}")


def _parse(cls: type[F], data: Any, host: str, script: str) -> F:
    if not isinstance(data, Mapping):
        raise FactsError(f"{host}: {script} printed facts that are not an object")
    kinds = _types(cls)
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = CLOCK_KEYS.get(key, key)
        if name not in kinds:
            continue  # facts nodeboot does not decide with (actions, an older or newer script's extras)
        try:
            values[name] = _value(kinds[name], raw, script.endswith(".ps1"))
        except ValueError as exc:
            raise FactsError(f"{host}: {script} fact {key!r} is {raw!r}: {exc}") from None
    return cls(**values)


def parse_linux_facts(data: Any, host: str) -> LinuxFacts:
    """facts.sh's facts object, typed; a field of the wrong type raises FactsError naming the host."""
    return _parse(LinuxFacts, data, host, "facts.sh")


def parse_windows_facts(data: Any, host: str) -> WindowsFacts:
    """facts.ps1's facts object, typed; a field of the wrong type raises FactsError naming the host."""
    return _parse(WindowsFacts, data, host, "facts.ps1")


def parse_facts(os_name: str, data: Any, host: str) -> LinuxFacts | WindowsFacts:
    return parse_windows_facts(data, host) if os_name == "windows" else parse_linux_facts(data, host)


def as_linux_facts(facts: LinuxFacts | Mapping[str, Any], host: str = "the host") -> LinuxFacts:
    """For callers that still hold facts.sh's object as a dict (node plan-join reads it from stdin)."""
    return facts if isinstance(facts, LinuxFacts) else parse_linux_facts(facts, host)
