"""Where and as whom nodeboot's SSH connects: the inventory, the operator's ssh_config, then defaults.

Precedence, for each setting on its own (first found wins), as Ansible gets it
from OpenSSH when it runs `ssh -o User=... <ansible_host>` with the inventory's
extra args on the same command line:

1. explicit inventory vars: ansible_user, ansible_port, ansible_ssh_private_key_file
   (and nodeboot_known_hosts);
2. options in ansible_ssh_common_args / ansible_ssh_extra_args (`-l`, `-p`, `-i`,
   `-J`, `-o ProxyJump=`, `-o ProxyCommand=`, `-o UserKnownHostsFile=`);
3. the ssh_config file (`-F FILE` in those args, else ~/.ssh/config), whose Host and
   Match blocks are matched against the address nodeboot would dial (ansible_host,
   else the inventory name), as ssh matches its destination argument;
4. nodeboot's defaults: user root, port 22, keys from the agent and ~/.ssh/id_*.

The address is the one place an ssh_config value wins over the inventory: a
`HostName` in the block that matches ansible_host replaces it, because that is what
ssh does with `ssh <ansible_host>`, so an inventory whose ansible_host is an ssh
alias reaches the same machine under nodeboot as under Ansible.

A jump host is a connection of its own, as `ssh -J` makes it: its user, port and
keys come from its ProxyJump entry, then its own ssh_config block, then defaults
(the local user name, as ssh has it). The target's key file is offered to it as
well (a public key only; a password is never sent to a jump host), since one key
for bastion and nodes is the common case and Ansible users otherwise spell it in a
ProxyCommand.

Parsing is paramiko.SSHConfig's: Host patterns (with `!` negation), Match host,
originalhost, user, localuser, all, canonical, final and exec (exec needs the
`invoke` package). paramiko has no `Include`: nodeboot expands it here (globs,
relative paths from ~/.ssh, as ssh does for a user's file) before parsing.
"""

from __future__ import annotations

import getpass
import glob
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

from nodeboot.errors import UsageError
from nodeboot.transport.ssh_args import Jump, SSHArgs, parse_jumps

DEFAULT_CONFIG = "~/.ssh/config"
DEFAULT_USER = "root"  # nodeboot's own default for a node, as before ssh_config was read
_MAX_HOPS = 8  # a jump host whose ssh_config names another jump host, and so on
_MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to reach, with every source applied."""

    address: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()  # tried in order; the first is the explicit key when explicit_key
    explicit_key: bool = False  # the first key file was named in the inventory: unreadable is an error
    identities_only: bool = False  # ssh_config IdentitiesOnly: no agent keys
    known_hosts: str | None = None  # from args or ssh_config; None: the caller's default


@dataclass(frozen=True)
class Route:
    """The target and how to get there: jump hosts in order, or a command on the controller."""

    target: Endpoint
    jumps: tuple[Endpoint, ...] = ()
    proxy_command: str | None = None


class ConfigFiles:
    """ssh_config files, parsed once per version of the file (mtime and size) and shared by every host."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[tuple[int, int], paramiko.SSHConfig]] = {}

    def load(self, path: str, required: bool) -> paramiko.SSHConfig:
        full = Path(os.path.expanduser(path))
        try:
            st = full.stat()
        except FileNotFoundError:
            if required:
                raise UsageError(f"ssh config {path}: no such file") from None
            return paramiko.SSHConfig()
        except OSError as exc:
            raise UsageError(f"ssh config {path}: {exc.strerror or exc}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._parsed.get(str(full))
            if cached is not None and cached[0] == stamp:
                return cached[1]
            try:
                config = paramiko.SSHConfig.from_text(expand_includes(full, base=full.parent))
            except (OSError, paramiko.SSHException, ValueError) as exc:
                raise UsageError(f"ssh config {path}: {' '.join(str(exc).split())}") from None
            self._parsed[str(full)] = (stamp, config)
            return config


CONFIG_FILES = ConfigFiles()


def expand_includes(path: Path, base: Path, depth: int = 0) -> str:
    """The file's text with each `Include` line replaced by the files it names, in order
    (paramiko reads Include as an ordinary, unused keyword)."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise ValueError(f"Include nested more than {_MAX_INCLUDE_DEPTH} deep at {path}")
    lines = []
    for line in path.read_text().splitlines():
        words = line.strip().replace("=", " ", 1).split()
        if words and words[0].lower() == "include":
            for pattern in words[1:]:
                expanded = os.path.expanduser(pattern)
                if not os.path.isabs(expanded):
                    expanded = str(base / expanded)
                for name in sorted(glob.glob(expanded)):
                    lines.append(expand_includes(Path(name), base, depth + 1))
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def _config_port(looked: paramiko.SSHConfigDict, where: str) -> int | None:
    if "port" not in looked:
        return None
    text = str(looked["port"])
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"{where}: Port {text!r} is not a port number (1-65535)")
    return int(text)


def _known_hosts(looked: paramiko.SSHConfigDict) -> str | None:
    # ssh allows several files here; nodeboot checks and records keys in one, the first.
    words = str(looked.get("userknownhostsfile", "")).split()
    return os.path.expanduser(words[0]) if words and words[0].lower() != "none" else None


def _existing(files: object) -> tuple[str, ...]:
    # ssh skips an IdentityFile that is not there; so does nodeboot, for all but the inventory's key file.
    names = [os.path.expanduser(str(f)) for f in (files if isinstance(files, (list, tuple)) else [files])]
    return tuple(dict.fromkeys(f for f in names if os.path.exists(f)))


def resolve(name: str, address: str, user: str | None, port: int | None, key_file: str | None,
            args: SSHArgs) -> Route:
    """The route to one inventory host (name for messages; address is ansible_host or the name)."""
    config_path = args.config_file or DEFAULT_CONFIG
    config = CONFIG_FILES.load(config_path, required=args.config_file is not None)
    where = f"host {name}: ssh config {config_path}"
    try:
        looked = config.lookup(address)
    except ImportError:
        raise UsageError(f"{where}: 'Match exec' needs the Python package invoke") from None
    except paramiko.SSHException as exc:
        raise UsageError(f"{where}: {' '.join(str(exc).split())}") from None
    explicit = [key_file] if key_file else []
    target = Endpoint(
        address=str(looked.get("hostname", address)),
        port=port or args.port or _config_port(looked, where) or 22,
        user=user or args.user or looked.get("user") or DEFAULT_USER,
        key_files=tuple(dict.fromkeys(explicit + list(_existing(args.identity_files))
                                      + list(_existing(looked.get("identityfile", []))))),
        explicit_key=bool(key_file),
        identities_only=looked.get("identitiesonly", "no").lower() == "yes",
        known_hosts=args.known_hosts or _known_hosts(looked),
    )
    if args.proxy_jump is not None or args.proxy_command is not None:
        jumps, command = args.proxy_jump or (), args.proxy_command if not args.proxy_jump else None
        if command:
            command = expand_tokens(command, target)
    else:
        jumps, command = _config_proxy(looked, where)
    if jumps:
        hops = _resolve_jumps(config, config_path, name, jumps, key_file, set())
        return Route(target, hops)
    return Route(target, proxy_command=command or None)


def expand_tokens(command: str, target: Endpoint) -> str:
    """%h %p %r %% in a ProxyCommand from the inventory (paramiko expands the ssh_config ones)."""
    values = {"h": target.address, "p": str(target.port), "r": target.user, "%": "%"}
    out, i = [], 0
    while i < len(command):
        if command[i] == "%" and i + 1 < len(command) and command[i + 1] in values:
            out.append(values[command[i + 1]])
            i += 2
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


def _config_proxy(looked: paramiko.SSHConfigDict, where: str) -> tuple[tuple[Jump, ...], str | None]:
    # Both set in one file: ssh uses whichever came first; paramiko does not keep the order, and a
    # jump (checked host keys at each hop) is the safer reading.
    if looked.get("proxyjump"):
        try:
            return parse_jumps(str(looked["proxyjump"])), None
        except ValueError as exc:
            raise UsageError(f"{where}: ProxyJump: {exc}") from None
    return (), looked.get("proxycommand") or None


def _resolve_jumps(config: paramiko.SSHConfig, config_path: str, name: str, jumps: tuple[Jump, ...],
                   key_file: str | None, seen: set[str]) -> tuple[Endpoint, ...]:
    """Each hop as its own ssh would see it; the first hop may itself be behind a jump host
    (its ssh_config ProxyJump), as with ssh."""
    hops: list[Endpoint] = []
    for index, jump in enumerate(jumps):
        where = f"host {name}: jump host {jump}: ssh config {config_path}"
        looked = config.lookup(jump.host)
        files = _existing(looked.get("identityfile", []))
        if key_file:
            files += (key_file,) if key_file not in files else ()
        hop = Endpoint(
            address=str(looked.get("hostname", jump.host)),
            port=jump.port or _config_port(looked, where) or 22,
            user=jump.user or looked.get("user") or getpass.getuser(),
            key_files=files,
            identities_only=looked.get("identitiesonly", "no").lower() == "yes",
            known_hosts=_known_hosts(looked),
        )
        if index == 0:
            before, command = _config_proxy(looked, where)
            if command:
                raise UsageError(f"{where}: a ProxyCommand on a jump host is not supported; use ProxyJump")
            if before:
                key = f"{hop.address}:{hop.port}"
                if key in seen or len(seen) >= _MAX_HOPS:
                    # ssh stops here too ("jumphost loop"): `Host *` with a ProxyJump and no `!bastion`.
                    raise UsageError(f"{where}: its ProxyJump leads back to a jump host already on the way "
                                     f"(a loop), or the chain is longer than {_MAX_HOPS}")
                hops.extend(_resolve_jumps(config, config_path, name, before, key_file, seen | {key}))
        hops.append(hop)
    if len(hops) > _MAX_HOPS:
        raise UsageError(f"host {name}: a chain of {len(hops)} jump hosts is longer than {_MAX_HOPS}")
    return tuple(hops)
