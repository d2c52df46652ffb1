"""SSH transport over paramiko: one connection per host for the whole run.

Host keys are checked against known_hosts; an unknown key is refused unless
the operator asked to accept new keys, and a changed key is always refused.
Scripts are fed on stdin to `bash --noprofile --norc -s`, so no rc file runs
and nothing the script is given shows in argv.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from nodeboot.errors import HostKeyError, TransportError
from nodeboot.scripts import sh_quote, shell_preamble
from nodeboot.transport import ExecResult, TransportStats

BASH = "bash --noprofile --norc -s"


@dataclass
class SSHOptions:
    user: str = "root"
    port: int = 22
    key_file: str | None = None
    password: str | None = None  # from the environment, never from argv
    known_hosts: str | None = None  # default: ~/.ssh/known_hosts
    accept_new_host_keys: bool = False
    become: bool = False  # sudo for a non-root user
    become_password: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    keepalive: int = 15


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256:base64 form, which is what operators compare against."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class SSHTransport:
    def __init__(self, host: str, options: SSHOptions, name: str | None = None) -> None:
        self.host = host
        self.options = options
        self.name = name or host
        self.stats = TransportStats()
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()

    # -- connection -------------------------------------------------------
    def connect(self) -> None:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return
            self._transport = self._open()
            self.stats.connects += 1

    def _open(self) -> paramiko.Transport:
        opts = self.options
        try:
            sock = socket.create_connection((self.host, opts.port), timeout=opts.connect_timeout)
        except OSError as exc:
            raise TransportError(f"{self.name}: cannot connect to {self.host}:{opts.port}: {exc}") from None
        # paramiko leaves Nagle on; every small request would then wait for an ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=opts.connect_timeout)
            self._check_host_key(transport)
            self._authenticate(transport)
        except HostKeyError:
            transport.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise TransportError(f"{self.name}: SSH to {self.host}:{opts.port} failed: {exc}") from None
        transport.set_keepalive(opts.keepalive)
        return transport

    def _known_hosts_path(self) -> Path:
        return Path(self.options.known_hosts or os.path.expanduser("~/.ssh/known_hosts"))

    def _check_host_key(self, transport: paramiko.Transport) -> None:
        key = transport.get_remote_server_key()
        path = self._known_hosts_path()
        entry = known_hosts_name(self.host, self.options.port)
        try:
            known = self._load_known_hosts(path)
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"{self.name}: cannot read known_hosts {path}: {exc}") from None
        stored = known.lookup(entry)
        if stored is not None and key.get_name() in stored:
            if stored[key.get_name()] == key:
                return
            raise HostKeyError(
                f"{self.name}: host key for {entry} CHANGED: known_hosts {path} has "
                f"{fingerprint(stored[key.get_name()])}, the host offers {fingerprint(key)}; refusing"
            )
        if stored is not None:
            # Known under another key type: the safe reading is still "changed".
            other = next(iter(stored.values()))
            raise HostKeyError(
                f"{self.name}: host key for {entry} CHANGED: known_hosts {path} has "
                f"{other.get_name()} {fingerprint(other)}, the host offers {key.get_name()} {fingerprint(key)}; "
                "refusing"
            )
        if not self.options.accept_new_host_keys:
            raise HostKeyError(
                f"{self.name}: host key for {entry} is not in {path} ({key.get_name()} {fingerprint(key)}); "
                "check it and add it, or pass --accept-new-host-keys"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_known_hosts(path), path.open("a") as fh:
            fh.write(f"{entry} {key.get_name()} {key.get_base64()}\n")

    _known_hosts_locks: dict[str, threading.Lock] = {}
    _known_hosts_guard = threading.Lock()

    _known_hosts_parsed: dict[str, tuple[tuple[int, int], paramiko.HostKeys]] = {}

    @classmethod
    def _load_known_hosts(cls, path: Path) -> paramiko.HostKeys:
        """known_hosts, parsed once per version of the file (mtime and size) and shared
        read-only by every connection: parsing it for each host is O(hosts^2) in a fleet
        run (15 ms per parse of 200 entries on the bench machine)."""
        with cls._lock_known_hosts(path):
            try:
                st = path.stat()
            except FileNotFoundError:
                return paramiko.HostKeys()
            stamp = (st.st_mtime_ns, st.st_size)
            cached = cls._known_hosts_parsed.get(str(path))
            if cached is not None and cached[0] == stamp:
                return cached[1]
            known = paramiko.HostKeys()
            known.load(str(path))
            cls._known_hosts_parsed[str(path)] = (stamp, known)
            return known

    @classmethod
    def _lock_known_hosts(cls, path: Path) -> threading.Lock:
        with cls._known_hosts_guard:
            return cls._known_hosts_locks.setdefault(str(path), threading.Lock())

    def _authenticate(self, transport: paramiko.Transport) -> None:
        opts = self.options
        if opts.key_file:
            try:
                pkey = paramiko.PKey.from_path(opts.key_file)
            except (OSError, paramiko.SSHException) as exc:
                raise TransportError(f"{self.name}: cannot read SSH key {opts.key_file}: {exc}", False) from None
            try:
                transport.auth_publickey(opts.user, pkey)
                return
            except paramiko.AuthenticationException:
                if not opts.password:
                    raise TransportError(
                        f"{self.name}: {opts.user}@{self.host} refused key {opts.key_file}", retryable=False
                    ) from None
        if opts.password:
            try:
                transport.auth_password(opts.user, opts.password)
                return
            except paramiko.AuthenticationException:
                raise TransportError(f"{self.name}: {opts.user}@{self.host} refused the password", False) from None
        agent_keys = paramiko.Agent().get_keys()
        for key in agent_keys:
            try:
                transport.auth_publickey(opts.user, key)
                return
            except paramiko.AuthenticationException:
                continue
        raise TransportError(f"{self.name}: no usable credentials for {opts.user}@{self.host}", retryable=False)

    # -- commands ---------------------------------------------------------
    def _command(self) -> tuple[str, str]:
        """The remote command line and what must precede the script on stdin."""
        if self.options.become and self.options.user != "root":
            # sudo -S reads the password as the first stdin line; bash gets the rest.
            prefix = (self.options.become_password or "") + "\n" if self.options.become_password else ""
            return f"sudo -S -p '' {BASH}", prefix
        return BASH, ""

    def exec(self, command: str, stdin: bytes, timeout: float | None = None) -> ExecResult:
        """One exec round trip: open a channel, send stdin, collect output and status."""
        self.connect()
        assert self._transport is not None
        timeout = timeout or self.options.command_timeout
        deadline = time.monotonic() + timeout
        try:
            channel = self._transport.open_session(timeout=self.options.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._drop()
            raise TransportError(f"{self.name}: SSH session failed: {exc}") from None
        self.stats.execs += 1
        self.stats.bytes_sent += len(stdin)
        out, err = bytearray(), bytearray()
        try:
            channel.settimeout(min(5.0, timeout))
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                if channel.recv_ready():
                    out += channel.recv(65536)
                    continue
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    continue
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise TransportError(f"{self.name}: command timed out after {timeout:.0f}s")
                if not self._transport.is_active():
                    raise TransportError(f"{self.name}: connection lost")
                if channel.eof_received:
                    # After EOF the channel's select pipe stays set for good, so select would
                    # return at once and this loop would spin until the exit status comes.
                    channel.status_event.wait(0.05)
                else:
                    # A channel has a fileno for select: data or EOF wakes us at once.
                    select.select([channel], [], [], 0.05)
            status = channel.recv_exit_status()
        except TransportError:
            channel.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            self._drop()
            raise TransportError(f"{self.name}: connection lost: {exc}") from None
        channel.close()
        return ExecResult(status, out.decode(errors="replace"), err.decode(errors="replace"))

    def run_script(
        self,
        script: str,
        variables: dict[str, str],
        secret_variables: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        command, prefix = self._command()
        body = prefix + shell_preamble(variables, secret_variables) + script
        return self.exec(command, body.encode(), timeout)

    def put_file(self, data: bytes, remote_path: str, mode: int = 0o644, remote_sha256: str | None = None) -> bool:
        """Write data to remote_path unless its sha256 already matches: one round trip at most.

        When the caller already knows the remote file's sha256 (from gathered
        facts) and it matches, nothing is sent at all.

        The script and then the payload travel on stdin. The script is one { }
        block: bash reads a whole compound command before running it (and reads
        a pipe byte by byte), so when head runs, what is left on stdin is exactly
        the payload. Without the block, head would swallow the script's later
        lines and bash would run the payload's bytes as commands.
        """
        digest = hashlib.sha256(data).hexdigest()
        if remote_sha256 == digest:
            return False
        q = sh_quote(remote_path)
        script = (
            "{\n"
            f"p={q}\n"
            f'if [ -f "$p" ] && [ "$(sha256sum "$p" | cut -d" " -f1)" = {digest} ]; then\n'
            f"  head -c {len(data)} >/dev/null; echo unchanged; exit 0\nfi\n"
            f'mkdir -p "$(dirname "$p")"; umask 077\n'
            f't="$p.nodeboot.$$"; head -c {len(data)} > "$t"\n'
            f'if [ "$(sha256sum "$t" | cut -d" " -f1)" != {digest} ]; then rm -f "$t"; echo mismatch; exit 3; fi\n'
            f'chmod {mode:o} "$t" && mv -f "$t" "$p" && echo written\n'
            "exit 0\n}\n"
        )
        command, prefix = self._command()
        self.stats.uploads += 1
        result = self.exec(command, (prefix + script).encode() + data)
        if result.exit_status != 0 or result.stdout.strip() not in ("written", "unchanged"):
            raise TransportError(
                f"{self.name}: upload to {remote_path} failed: {result.stdout.strip()} {result.stderr.strip()}",
                retryable=False,
            )
        return result.stdout.strip() == "written"

    def _drop(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
            self._transport = None

    def close(self) -> None:
        self._drop()
