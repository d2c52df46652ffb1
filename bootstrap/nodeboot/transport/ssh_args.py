"""The inventory's `ansible_ssh_common_args` / `ansible_ssh_extra_args`, read as OpenSSH reads its argv.

Ansible appends these strings to the `ssh` command line; nodeboot speaks SSH
itself (paramiko), so it takes from them what changes where and how it
connects: `-J`/`-o ProxyJump`, `-o ProxyCommand`, `-F` (another ssh_config
file), `-o UserKnownHostsFile`, and `-l`/`-p`/`-i` or `-o User/Port/IdentityFile`. Anything else
(`-o StrictHostKeyChecking=no`, `-C`, ...) is kept by name and ignored with a
warning: nodeboot's own host key policy is not loosened by an inventory string.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# ssh(1) options that take an argument; the rest are flags.
_WITH_ARGUMENT = set("BbcDEeFIiJLlmOopQRSWw")
_FLAGS = set("46AaCfGgKkMNnqsTtVvXxYy")
# `-o Key=Value` or `-o "Key Value"`, as ssh_config(5) writes them.
_OPTION = re.compile(r"^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$", re.S)
_JUMP = re.compile(r"^(?:ssh://)?(?:(?P<user>[^@\s/]+)@)?(?P<host>\[[0-9A-Fa-f:.%\w]+\]|[^:@\s\[\]/]+)"
                   r"(?::(?P<port>\d+))?/?$")
# ssh's option letters that are short for a -o keyword: read by the same code.
_LETTER_OPTIONS = {"J": "ProxyJump", "l": "User", "p": "Port", "i": "IdentityFile"}


@dataclass(frozen=True)
class Jump:
    """One hop of a ProxyJump: [user@]host[:port]; unset parts come from ssh_config."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        return (f"{self.user}@" if self.user else "") + self.host + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class SSHArgs:
    """What nodeboot takes from the extra ssh arguments; None means not given there."""

    user: str | None = None
    port: int | None = None
    identity_files: tuple[str, ...] = ()
    proxy_jump: tuple[Jump, ...] | None = None  # () is `ProxyJump none`: no jump
    proxy_command: str | None = None  # "" is `ProxyCommand none`
    config_file: str | None = None  # -F
    known_hosts: str | None = None  # -o UserKnownHostsFile (the first file)
    ignored: tuple[str, ...] = field(default=())  # e.g. "-o StrictHostKeyChecking", "-C"


def parse_jumps(value: str) -> tuple[Jump, ...]:
    """`a,user@b:2222` (ProxyJump's form) as hops; `none` as no jump. ValueError if malformed."""
    if value.strip().lower() == "none":
        return ()
    hops = []
    for part in value.split(","):
        match = _JUMP.match(part.strip())
        if not match:
            raise ValueError(f"jump host {part.strip()!r}: expected [user@]host[:port]")
        port = int(match.group("port")) if match.group("port") else None
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"jump host {part.strip()!r}: {port} is not a port number (1-65535)")
        hops.append(Jump(match.group("host").strip("[]"), match.group("user"), port))
    return tuple(hops)


def _port(value: str, where: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{where}: {value!r} is not a port number (1-65535)")
    return int(value)


def parse_ssh_args(value: object) -> SSHArgs:
    """The string (or list of strings) as ssh's command line would read it. ValueError on bad quoting,
    an option missing its value, or a malformed value for an option nodeboot uses."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = " ".join(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"{value!r} must be a string of ssh options")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot split {text!r}: {exc}") from None
    found: dict[str, Any] = {}  # option -> the first value given
    identity: list[str] = []
    ignored: list[str] = []

    def first(key: str, item: Any) -> None:
        found.setdefault(key, item)  # ssh keeps the first value it is given, as ssh_config does

    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-") or len(word) < 2:
            raise ValueError(f"{word!r} is not an ssh option (the destination and command are nodeboot's)")
        letter, rest = word[1], word[2:]
        if letter in _FLAGS:
            ignored.append(f"-{letter}")
            # Flags may be bundled (-CA); the rest are more flags, or an option letter with its value.
            if rest:
                words.insert(i, "-" + rest)
            continue
        if letter not in _WITH_ARGUMENT:
            raise ValueError(f"{word!r} is not an ssh option")
        if not rest:
            if i >= len(words):
                raise ValueError(f"-{letter} needs a value")
            rest = words[i]
            i += 1
        if letter == "o":
            match = _OPTION.match(rest)
            if not match or not match.group(2):
                raise ValueError(f"-o {rest!r}: expected Key=Value")
            _option(match.group(1), match.group(2), first, identity, ignored)
        elif letter in _LETTER_OPTIONS:
            _option(_LETTER_OPTIONS[letter], rest, first, identity, ignored, port_flag=f"-{letter}")
        elif letter == "F":
            first("config_file", rest)
        else:
            ignored.append(f"-{letter}")
    return SSHArgs(
        user=found.get("user"),
        port=found.get("port"),
        identity_files=tuple(identity),
        proxy_jump=found.get("proxy_jump"),
        proxy_command=found.get("proxy_command"),
        config_file=found.get("config_file"),
        known_hosts=found.get("known_hosts"),
        ignored=tuple(dict.fromkeys(ignored)),
    )


def _option(key: str, value: str, first: Callable[[str, Any], None], identity: list[str],
            ignored: list[str], port_flag: str = "-o Port") -> None:
    name = key.lower()
    if name == "proxyjump":
        first("proxy_jump", parse_jumps(value))
    elif name == "proxycommand":
        first("proxy_command", "" if value.lower() == "none" else value)
    elif name == "user":
        first("user", value)
    elif name == "port":
        first("port", _port(value, port_flag))
    elif name == "identityfile":
        identity.append(value)
    elif name == "userknownhostsfile":
        first("known_hosts", value.split()[0])
    else:
        ignored.append(f"-o {key}")


def join_args(*values: SSHArgs | None) -> SSHArgs:
    """common args then extra args, as Ansible puts them on one command line: the first value wins."""
    given = [v for v in values if v is not None]
    if not given:
        return SSHArgs()

    def pick(attr: str) -> Any:
        return next((getattr(v, attr) for v in given if getattr(v, attr) is not None), None)

    return SSHArgs(
        user=pick("user"),
        port=pick("port"),
        identity_files=tuple(f for v in given for f in v.identity_files),
        proxy_jump=pick("proxy_jump"),
        proxy_command=pick("proxy_command"),
        config_file=pick("config_file"),
        known_hosts=pick("known_hosts"),
        ignored=tuple(dict.fromkeys(x for v in given for x in v.ignored)),
    )


def ignored_option_warnings(source: str, hosts: list[tuple[str, SSHArgs]]) -> list[str]:
    """One warning per ignored option for the whole inventory, naming the hosts that have it."""
    hosts_by_option: dict[str, list[str]] = {}
    for name, args in hosts:
        for option in args.ignored:
            hosts_by_option.setdefault(option, []).append(name)
    warnings = []
    for option, names in hosts_by_option.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        warnings.append(f"{source}: host {shown}: ssh option {option} in ansible_ssh_common_args/extra_args "
                        "is not used by nodeboot's SSH, it is ignored")
    return warnings
