"""Validators for everything an operator types: each returns the clean value or
raises ValueError with a short reason; callers add the file/host/field."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

OS_NAMES = ("linux", "windows")
PROXY_MODES = ("iptables", "ipvs", "nftables")
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def one_of(value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
    return value


def port(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port number")
    try:
        number = int(str(value), 10)
    except ValueError:
        raise ValueError(f"{value!r} is not a port number") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"{number} is not a port number (1-65535)")
    return number


def node_name(value: object) -> str:
    """A Node name: an RFC 1123 subdomain, at most 253 characters, lower case."""
    if not isinstance(value, str) or not value:
        raise ValueError("a node name must be a non-empty string")
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid node name (RFC 1123: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters)"
        )
    return value


def label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key {key!r}: prefix {prefix!r} is not a DNS subdomain")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        raise ValueError(f"label key {key!r}: name part must be 1-63 of [A-Za-z0-9-_.], alphanumeric at both ends")
    return key


def label_value(key: str, value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"label {key}: value {value!r} must be at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends"
        )
    return value


def labels(value: object) -> dict[str, str]:
    """A mapping, or 'k=v,k2=v2'."""
    if value is None:
        return {}
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in value.split(","))):
            if "=" not in item:
                raise ValueError(f"label {item!r} must be key=value")
            k, v = item.split("=", 1)
            pairs[k] = v
        value = pairs
    if not isinstance(value, dict):
        raise ValueError("labels must be a mapping of key: value")
    out = {}
    for k, v in value.items():
        k = label_key(str(k))
        out[k] = label_value(k, "" if v is None else str(v))
    return out


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"

    def as_api(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out


def taint(value: object) -> Taint:
    """'key[=value]:Effect' or a mapping {key, value, effect}."""
    if isinstance(value, dict):
        key, val, effect = str(value.get("key", "")), str(value.get("value", "") or ""), str(value.get("effect", ""))
    elif isinstance(value, str) and ":" in value:
        key_value, effect = value.rsplit(":", 1)
        key, _, val = key_value.partition("=")
    else:
        raise ValueError(f"taint {value!r} must be key[=value]:Effect")
    label_key(key)
    if val:
        label_value(key, val)
    if effect not in TAINT_EFFECTS:
        raise ValueError(f"taint {value!r}: effect must be one of {', '.join(TAINT_EFFECTS)}")
    return Taint(key, val, effect)


def taints(value: object) -> list[Taint]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ValueError("taints must be a list of key[=value]:Effect")
    return [taint(v) for v in value]


def ip_list(value: object) -> list[str]:
    """One address, or a dual-stack pair (one IPv4 and one IPv6)."""
    if value is None:
        return []
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("node IPs must be an address or a list of addresses")
    addrs = []
    for item in items:
        try:
            addrs.append(ipaddress.ip_address(str(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address") from None
    if len(addrs) > 2 or (len(addrs) == 2 and addrs[0].version == addrs[1].version):
        raise ValueError("node IPs: at most one IPv4 and one IPv6 address (dual-stack)")
    return [str(a) for a in addrs]


def cidrs(value: object) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("CIDRs must be a comma-separated list")
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(str(item), strict=True)))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a CIDR ({exc})") from None
    return out


def duration(value: object) -> str:
    """A Go duration as Kubernetes configs take it ('30s', '1m30s', '500ms')."""
    text = str(value).strip()
    if not _DURATION.match(text):
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 2m, 1h30m, 500ms)")
    return text


def duration_seconds(value: str) -> float:
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(duration(value)))


def kubelet_args(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("kubelet extra args must be a mapping of flag: value (without leading --)")
    out = {}
    for k, v in value.items():
        k = str(k).lstrip("-")
        if not re.match(r"^[a-z0-9][a-z0-9-]*$", k):
            raise ValueError(f"kubelet flag {k!r} is not a flag name")
        out[k] = "" if v is None else str(v)
    return out
