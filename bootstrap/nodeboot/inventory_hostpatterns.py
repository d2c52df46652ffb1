"""Host patterns as Ansible inventories write them: `web-[1:3]`, `db[a:c]`, `node[01:10:2]`, `host:2222`.

A pattern names one or more hosts and optionally a port for all of them. The
rules follow the behaviour of Ansible's inventory (written here from that
behaviour, not from its code): a `:PORT` suffix is taken only when what is left
is a valid host name or address (`[v6addr]:PORT` for IPv6); anything else is a
host name as written. Ranges expand left to right, zero-padded when the start
is, letters by their position in a-zA-Z.
"""

from __future__ import annotations

import ipaddress
import re
import string

_PORT_BRACKETED = re.compile(r"^\[(.+)\]:([0-9]+)$")
_PORT_SUFFIX = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_NUMERIC_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = r"\[[0-9a-fA-F]+:[0-9a-fA-F]+(?::[0-9]+)?\]"
_NAME_RANGE = r"\[(?:[a-zA-Z]:[a-zA-Z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
# A DNS-like label: starts with a word character (or a range), then word characters, '-' or ranges,
# never ending in '-' or '_'.
_LABEL = rf"(?:\w|{_NAME_RANGE})(?:[\w-]|{_NAME_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.UNICODE)


class HostPatternError(Exception):
    """A host pattern whose range cannot be expanded."""


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if re.fullmatch(_NUMERIC_RANGE, part):
            continue
        if not (part.isascii() and part.isdigit() and 1 <= len(part) <= 3 and int(part) <= 255):
            return False
    return True


def _is_ipv6(text: str) -> bool:
    if ":" not in text:
        return False
    plain = re.sub(_HEX_RANGE, "0", text)
    try:
        ipaddress.IPv6Address(plain)
    except ValueError:
        return False
    return "%" not in plain


def _is_host(text: str) -> bool:
    return _is_ipv4(text) or _is_ipv6(text) or bool(_HOSTNAME.match(text))


def split_port(pattern: str) -> tuple[str, int | None]:
    """('host pattern', port or None). A pattern that is not a host with a port stays whole."""
    address, port = pattern, None
    for regex in (_PORT_BRACKETED, _PORT_SUFFIX):  # both apply in turn, as Ansible does
        match = regex.match(address)
        if match:
            address, port = match.group(1), int(match.group(2))
    if not _is_host(address):
        return pattern, None
    return address, port


def expand(pattern: str) -> list[str]:
    """Every host name a pattern with [begin:end(:step)] ranges stands for, in order."""
    if "[" not in pattern:
        return [pattern]
    start = pattern.index("[")
    end = pattern.find("]")
    if end < start or "|" in pattern:
        raise HostPatternError(f"host pattern {pattern!r}: a range is written [begin:end] or [begin:end:step]")
    head, body, tail = pattern[:start], pattern[start + 1:end], pattern[end + 1:]
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise HostPatternError(f"host pattern {pattern!r}: a range is written [begin:end] or [begin:end:step]")
    first, last = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not last:
        raise HostPatternError(f"host pattern {pattern!r}: the range has no end")
    width = len(first) if first[0] == "0" and len(first) > 1 else 0
    if width and len(last) != width:
        raise HostPatternError(f"host pattern {pattern!r}: a zero-padded range needs begin and end of equal length")
    try:
        step = int(step_text)
        values: list[str] = _letters(first, last, step, pattern)
    except ValueError:
        try:
            values = [str(n).zfill(width) for n in range(int(first), int(last) + 1, int(step_text))]
        except ValueError:
            raise HostPatternError(f"host pattern {pattern!r}: range bounds must be numbers or letters") from None
    names: list[str] = []
    for value in values:
        names.extend(expand(f"{head}{value}{tail}"))
    return names


def _letters(first: str, last: str, step: int, pattern: str) -> list[str]:
    """Letter ranges go by position in a-zA-Z (ValueError when the bounds are not letters)."""
    begin, end = string.ascii_letters.index(first), string.ascii_letters.index(last)
    if begin > end:
        raise HostPatternError(f"host pattern {pattern!r}: the range begins after it ends")
    return list(string.ascii_letters[begin:end + 1:step])


def hosts_of(pattern: str) -> tuple[list[str], int | None]:
    """The host names and the port a pattern gives."""
    address, port = split_port(pattern)
    return expand(address), port
