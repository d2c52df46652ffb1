"""SSH transport over paramiko: one connection per host for the whole run.

Host keys are checked against known_hosts; an unknown key is refused unless
the operator asked to accept new keys, and a changed key is always refused.
Scripts go down one long-lived shell per host (framed_shell.py), each into its
own `bash --noprofile --norc` through a pipe, so no rc file runs, nothing the
script is given shows in argv, and a script costs one round trip.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import select
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import paramiko

from nodeboot.errors import HostKeyError, TransportError
from nodeboot.scripts import sh_quote, shell_preamble
from nodeboot.transport import ExecResult, ScriptCall, TransportStats
from nodeboot.transport.framed_shell import NOT_RUN, FrameResult, ShellFrames

# paramiko logs a failed negotiation with a traceback at ERROR; with no handler
# configured, Python's last-resort handler would print it on stderr. nodeboot
# reports the failure itself, in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


# How often paramiko's reader thread wakes when nothing arrives (its own default: 0.1 s).
IDLE_WAKEUP_S = 1.0


@dataclass
class SSHOptions:
    user: str = "root"
    port: int = 22
    key_file: str | None = None  # named in the inventory: unreadable or refused is an error
    key_files: tuple[str, ...] = ()  # from ssh args / ssh_config: tried in turn, unusable ones skipped
    identities_only: bool = False  # ssh_config IdentitiesOnly: no agent or default keys
    password: str | None = None  # from the environment, never from argv
    known_hosts: str | None = None  # default: ~/.ssh/known_hosts
    accept_new_host_keys: bool = False
    become: bool = False  # sudo for a non-root user
    become_password: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    keepalive: int = 15
    # How the TCP stream to the host is made (ssh_config.py resolves these): through jump
    # hosts in order, each (address, its own options), or a ProxyCommand run on the controller.
    jumps: tuple[tuple[str, SSHOptions], ...] = ()
    proxy_command: str | None = None


class _ProxyCommand(paramiko.ProxyCommand):
    """paramiko's, with a close that leaves an ended command alone: paramiko signals its pid
    unconditionally, which raises (in paramiko's reader thread too) once the command was reaped."""

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                super().close()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256:base64 form, which is what operators compare against."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def printable(data: bytes, limit: int = 40) -> str:
    """The first line of what a server sent, safe to show: ASCII, printable, short."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")[:limit]
    return "".join(chr(b) if 32 <= b < 127 else "?" for b in line)


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
        self._run_lock = threading.Lock()
        self._shell: tuple[paramiko.Channel, ShellFrames] | None = None
        self._jumps: list[SSHTransport] = []  # open jump host connections, first hop first

    # -- connection -------------------------------------------------------
    def connect(self) -> None:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return
            self._transport = self._open()
            self.stats.connects += 1

    def _open(self, stream: paramiko.Channel | paramiko.ProxyCommand | None = None) -> paramiko.Transport:
        """A connected, checked, authenticated transport: over a TCP socket, or over stream
        (a jump host's direct-tcpip channel) when given, or the route in the options."""
        self._close_jumps()
        try:
            if stream is None and (self.options.jumps or self.options.proxy_command):
                stream = self._route()
            return self._handshake(stream)
        except BaseException:
            self._close_jumps()
            raise

    def _route(self) -> paramiko.Channel | paramiko.ProxyCommand:
        """The byte stream to the target through the jump hosts (each checked and
        authenticated as a host of its own), or from the ProxyCommand."""
        opts = self.options
        if opts.proxy_command:
            try:
                # On the controller, through sh as ssh runs it (pipes and quotes as the operator wrote them).
                return _ProxyCommand(shlex.join(["/bin/sh", "-c", "exec " + opts.proxy_command]))
            except (paramiko.SSHException, OSError, ValueError) as exc:
                raise TransportError(f"{self.name}: ProxyCommand could not start: {exc}", False) from None
        via: SSHTransport | None = None
        for address, hop_options in opts.jumps:
            hop = SSHTransport(address, hop_options, name=f"{self.name}: via jump host")
            hop._transport = hop._open(self._forward(via, address, hop_options.port) if via else None)
            self._jumps.append(hop)
            via = hop
        assert via is not None
        return self._forward(via, self.host, opts.port)

    def _forward(self, via: SSHTransport, host: str, port: int) -> paramiko.Channel:
        """A direct-tcpip channel from the jump host to host:port (ssh -W's stream)."""
        assert via._transport is not None
        where = f"{self.name}: via jump host {via.host}:{via.options.port}"
        try:
            return via._transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0),
                                               timeout=self.options.connect_timeout)
        except paramiko.ChannelException as exc:
            # The jump host's sshd could not connect, or forwarding is off there.
            raise TransportError(f"{where}: cannot reach {host}:{port}: {str(exc.text).lower()}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            cause = ' '.join(str(exc).split()).rstrip('.').lower() or type(exc).__name__
            raise TransportError(f"{where}: forwarding to {host}:{port} failed: {cause}") from None

    def _close_jumps(self) -> None:
        for hop in reversed(self._jumps):
            hop.close()
        self._jumps = []

    def _handshake(self, stream: paramiko.Channel | paramiko.ProxyCommand | None) -> paramiko.Transport:
        opts = self.options
        if stream is None:
            try:
                sock = socket.create_connection((self.host, opts.port), timeout=opts.connect_timeout)
            except OSError as exc:
                raise TransportError(f"{self.name}: cannot connect to {self.host}:{opts.port}: "
                                     f"{(exc.strerror or str(exc) or 'timed out').lower()}") from None
            # paramiko leaves Nagle on; every small request would then wait for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                first = self._await_banner(sock)
            except TransportError:
                sock.close()
                raise
        else:
            # A channel or a command's pipe cannot be peeked at; paramiko's banner wait speaks for it.
            first = b"SSH-"
        transport = paramiko.Transport(sock if stream is None else stream)
        if stream is None:
            # paramiko's reader thread wakes at its socket timeout (0.1 s) to see whether the
            # transport was closed: 10 wake-ups a second for every idle host (200 idle hosts:
            # 0.05-0.07 s of CPU a second, 0.015 s with 1 s). Data wakes it at once whatever
            # the timeout, and close() does not wait for it, so a longer one costs nothing.
            sock.settimeout(IDLE_WAKEUP_S)
        transport.banner_timeout = opts.connect_timeout
        try:
            transport.start_client(timeout=opts.connect_timeout)
            if not transport.initial_kex_done:  # start_client gives up quietly at its timeout
                raise TransportError(f"{self.name}: SSH to {self.host}:{opts.port}: key exchange did not finish "
                                     f"within {opts.connect_timeout:g}s", retryable=True)
            self._check_host_key(transport)
            self._authenticate(transport)
        except TransportError:
            # A ProxyCommand that ended before the key exchange is the cause, not the kex timeout.
            ended = "" if transport.initial_kex_done else self._proxy_ended(stream)
            transport.close()
            if ended:
                raise TransportError(f"{self.name}: ProxyCommand to {self.host}:{opts.port} {ended}") from None
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            ended = self._proxy_ended(stream)
            transport.close()
            if ended:
                raise TransportError(f"{self.name}: ProxyCommand to {self.host}:{opts.port} {ended}") from None
            if not first.startswith(b"SSH-"):
                raise TransportError(f"{self.name}: {self.host}:{opts.port} is not an SSH server "
                                     f"(it said {printable(first)!r})", retryable=False) from None
            # A ProxyCommandFailure's text holds the command: only its error is shown.
            cause = exc.error if isinstance(exc, paramiko.ProxyCommandFailure) else str(exc)
            raise TransportError(f"{self.name}: SSH to {self.host}:{opts.port} failed: "
                                 f"{' '.join(str(cause).split()) or type(exc).__name__}") from None
        transport.set_keepalive(opts.keepalive)
        return transport

    @staticmethod
    def _proxy_ended(stream: object) -> str:
        """'exited with status N: <its first stderr line>' when a ProxyCommand is why the
        handshake failed (the command's own text stays out: it is the operator's)."""
        if not isinstance(stream, paramiko.ProxyCommand):
            return ""
        try:
            status = stream.process.wait(timeout=2)
            said = b""
            if stream.process.stderr is not None:
                # Non-blocking: a child the command left behind may still hold its stderr open.
                os.set_blocking(stream.process.stderr.fileno(), False)
                said = stream.process.stderr.read(4096) or b""
        except (subprocess.TimeoutExpired, OSError, ValueError):  # still running, or its pipe is gone
            return ""
        line = printable(said.strip(), limit=200)
        return f"exited with status {status}" + (f": {line}" if line else "")

    def _await_banner(self, sock: socket.socket) -> bytes:
        """The first bytes the server sends, left in the socket for paramiko (MSG_PEEK):
        a port that closes at once or says nothing is named as such, not as
        paramiko's 'No existing session' or a traceback."""
        opts = self.options
        where = f"{self.name}: {self.host}:{opts.port}"
        sock.settimeout(opts.connect_timeout)
        try:
            data = sock.recv(256, socket.MSG_PEEK)
        except TimeoutError:
            raise TransportError(f"{where} accepted the connection but sent no SSH banner within "
                                 f"{opts.connect_timeout:g}s (banner timeout)") from None
        except OSError as exc:
            raise TransportError(f"{where}: connection failed before the SSH banner: "
                                 f"{(exc.strerror or str(exc)).lower()}") from None
        if not data:
            raise TransportError(f"{where} closed the connection before sending an SSH banner "
                                 "(is sshd running, and is this its port?)")
        return data

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

    # What ssh offers when no IdentityFile is given anywhere (after the agent's keys).
    DEFAULT_KEY_FILES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")

    def _authenticate(self, transport: paramiko.Transport) -> None:
        """The inventory's key file, the ssh args' and ssh_config's key files, the password, the
        agent's keys, then ssh's default key files: the first one the host accepts."""
        opts = self.options
        if opts.key_file:
            try:
                pkey = paramiko.PKey.from_path(opts.key_file)
            except (OSError, paramiko.SSHException) as exc:
                raise TransportError(f"{self.name}: cannot read SSH key {opts.key_file}: {exc}", False) from None
            if self._offer(transport, pkey):
                return
            if not opts.password and not opts.key_files:
                raise TransportError(
                    f"{self.name}: {opts.user}@{self.host} refused key {opts.key_file}", retryable=False
                ) from None
        refused = [opts.key_file] if opts.key_file else []
        for path, key in self._keys_from(opts.key_files):
            if self._offer(transport, key):
                return
            refused.append(path)
        if opts.password:
            try:
                transport.auth_password(opts.user, opts.password)
                return
            except paramiko.AuthenticationException:
                raise TransportError(f"{self.name}: {opts.user}@{self.host} refused the password", False) from None
        if not opts.identities_only:
            if any(self._offer(transport, key) for key in paramiko.Agent().get_keys()):
                return
            if not opts.key_file and not opts.key_files and any(
                    self._offer(transport, key) for _, key in self._keys_from(self.DEFAULT_KEY_FILES)):
                return
        tried = f" (it refused {', '.join(refused)})" if refused else ""
        raise TransportError(f"{self.name}: no usable credentials for {opts.user}@{self.host}{tried}",
                             retryable=False)

    def _offer(self, transport: paramiko.Transport, key: paramiko.PKey) -> bool:
        try:
            transport.auth_publickey(self.options.user, key)
            return True
        except paramiko.AuthenticationException:
            return False

    @staticmethod
    def _keys_from(paths: tuple[str, ...]) -> Iterator[tuple[str, paramiko.PKey]]:
        """The keys that load without a passphrase; ssh would ask for one, nodeboot cannot."""
        for path in paths:
            try:
                yield path, paramiko.PKey.from_path(os.path.expanduser(path))
            except (OSError, paramiko.SSHException, ValueError):
                continue

    # -- commands ---------------------------------------------------------
    def _sudo(self) -> bool:
        return self.options.become and self.options.user != "root"

    def _sudo_password_line(self) -> str:
        # sudo -S reads the password as the first stdin line; the shell gets the rest.
        return self.options.become_password + "\n" if self.options.become_password else ""

    def _open_channel(self) -> paramiko.Channel:
        self.connect()
        assert self._transport is not None
        try:
            return self._transport.open_session(timeout=self.options.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._drop()
            raise TransportError(f"{self.name}: SSH session failed: {exc}") from None

    def _pump(self, channel: paramiko.Channel, done: Callable[[bytearray, bytearray], bool], deadline: float,
              timeout: float) -> tuple[bytearray, bytearray]:
        """Read a channel's stdout and stderr until done(out, err) says so."""
        out, err = bytearray(), bytearray()
        assert self._transport is not None
        transport = self._transport
        # poll, not select: select() refuses descriptors past 1023, which a run of a
        # thousand hosts (a socket and a channel pipe each) reaches.
        poller = select.poll()
        poller.register(channel.fileno(), select.POLLIN)
        while True:
            if channel.recv_ready():
                out += channel.recv(65536)
                continue
            if channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
                continue
            if done(out, err):
                return out, err
            if time.monotonic() > deadline:
                raise TransportError(f"{self.name}: command timed out after {timeout:.0f}s")
            if not transport.is_active():
                raise TransportError(f"{self.name}: connection lost")
            if channel.eof_received:
                if channel.exit_status_ready():
                    # The far end is gone and everything it sent has been read.
                    return out, err
                # After EOF the channel's select pipe stays set for good, so select would
                # return at once and this loop would spin until the exit status comes.
                channel.status_event.wait(0.05)
            else:
                # A channel has a fileno to poll: data, EOF or a lost connection (paramiko
                # closes the channel) wakes us at once, so the timeout only bounds how late the
                # deadline is noticed; a short one woke every waiting host 20 times a second.
                poller.poll(500)

    @contextmanager
    def _closing_on_failure(self, close: Callable[[], None]) -> Iterator[None]:
        """Close a channel when its command fails; a lost connection is dropped as well."""
        try:
            yield
        except TransportError:
            close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            close()
            self._drop()
            raise TransportError(f"{self.name}: connection lost: {exc}") from None

    def _start_shell(self) -> tuple[paramiko.Channel, ShellFrames]:
        """The host's long-lived shell (framed_shell.py), opened on first use."""
        if self._shell is not None and not self._shell[0].closed and self._transport is not None \
                and self._transport.is_active():
            return self._shell
        self._close_shell()
        channel = self._open_channel()
        frames = ShellFrames()
        try:
            # sshd opens a session's window only once its command has started, so
            # waiting for exec's answer costs nothing: no data could go before it.
            channel.exec_command(frames.command(self._sudo()))
            if self._sudo():
                channel.sendall(self._sudo_password_line().encode())
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            self._drop()
            raise TransportError(f"{self.name}: cannot start the remote shell: {exc}") from None
        self._shell = (channel, frames)
        return self._shell

    def _close_shell(self) -> None:
        if self._shell is not None:
            self._shell[0].close()
        self._shell = None

    def _run_frames(self, frames_out: list[tuple[bytes, bytes]], timeout: float | None) -> list[FrameResult]:
        """Send scripts (with payloads) to the host's shell in one flight, each after the
        first only if the one before succeeded; one round trip once the shell is up."""
        timeout = timeout or self.options.command_timeout
        deadline = time.monotonic() + timeout
        with self._run_lock:
            channel, frames = self._start_shell()
            chunks = coalesce(part for i, (script, payload) in enumerate(frames_out)
                              for part in frames.frame_parts(script, payload, after_success=i > 0))
            self.stats.execs += 1
            self.stats.bytes_sent += sum(len(c) for c in chunks)
            results: list[FrameResult] = []

            def done(out: bytearray, err: bytearray) -> bool:
                while len(results) < len(frames_out) and (result := frames.take(out, err)) is not None:
                    results.append(result)
                return len(results) == len(frames_out)

            # On failure whatever is left of these scripts' output would be read as the
            # next ones': the shell goes, and the next script opens a new one.
            with self._closing_on_failure(self._close_shell):
                channel.settimeout(min(5.0, timeout))
                for chunk in chunks:
                    # A memoryview: paramiko's sendall drops what it sent with s = s[sent:],
                    # which for bytes copies the rest every packet (16 MiB per 1 MiB upload).
                    # paramiko takes any buffer there (Message.add_string writes it as is);
                    # its type hints say bytes.
                    channel.sendall(cast(bytes, memoryview(chunk)))
                _out, err = self._pump(channel, done, deadline, timeout)
            if len(results) < len(frames_out):
                # The shell itself ended (killed, or it could not start): say what it printed.
                self._close_shell()
                tail = err.decode(errors="replace").strip()[-300:]
                raise TransportError(f"{self.name}: the remote shell ended unexpectedly: {tail or 'no output'}")
            return results

    def run_script(
        self,
        script: str,
        variables: dict[str, str],
        secret_variables: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        (result,) = self.run_batch([ScriptCall(script, variables, secret_variables)], timeout)
        assert result is not None  # the first script of a batch always runs
        return result

    def run_batch(self, calls: list[ScriptCall], timeout: float | None = None) -> list[ExecResult | None]:
        results = self._run_frames(
            [((shell_preamble(c.variables, c.secret_variables) + c.script).encode(), c.payload) for c in calls],
            timeout)
        return [None if r.exit_status == NOT_RUN else
                ExecResult(r.exit_status, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
                for r in results]

    def put_file(self, data: bytes, remote_path: str, mode: int = 0o644, remote_sha256: str | None = None) -> bool:
        """Write data to remote_path unless its sha256 already matches: one round trip at most.

        When the caller already knows the remote file's sha256 (from gathered
        facts) and it matches, nothing is sent at all. Otherwise the data
        travels as the frame's payload ($NB_PAYLOAD on the host) and is moved
        into place only when its sha256 checks out.
        """
        digest = hashlib.sha256(data).hexdigest()
        if remote_sha256 == digest:
            return False
        self.stats.uploads += 1
        (result,) = self.run_batch([upload_call(data, remote_path, mode)])
        return upload_written(self.name, remote_path, result)

    def _drop(self) -> None:
        self._close_shell()
        with self._lock:
            if self._transport is not None:
                self._transport.close()
            self._transport = None
            self._close_jumps()  # after the target: its stream runs through them

    def close(self) -> None:
        self._drop()


def coalesce(parts: Iterable[bytes], large: int = 1 << 16) -> list[bytes]:
    """Frames' parts as few buffers to send: small ones joined, a large one (an
    upload's payload) kept as it is rather than copied into a joined buffer."""
    out: list[bytes] = []
    small: list[bytes] = []
    for part in parts:
        if len(part) < large:
            small.append(part)
            continue
        if small:
            out.append(b"".join(small))
            small = []
        out.append(part)
    if small:
        out.append(b"".join(small))
    return out


def upload_call(data: bytes, remote_path: str, mode: int = 0o644) -> ScriptCall:
    """put_file's host side as a script with the data as payload: keep an equal file,
    else move the payload next to the target (a rename when they share a
    filesystem), check its sha256 there and rename it into place, so nobody
    sees a half-written file."""
    digest = hashlib.sha256(data).hexdigest()
    script = (
        f"p={sh_quote(remote_path)}\n"
        'if [ -f "$p" ]; then read -r sum _ < <(sha256sum "$p"); '
        f'if [ "$sum" = {digest} ]; then echo unchanged; exit 0; fi; fi\n'
        f"d={sh_quote(os.path.dirname(remote_path) or '.')}\n"
        '[ -d "$d" ] || mkdir -p "$d" || exit 1\n'
        't=$p.nodeboot.$BASHPID\n'
        # No payload file for empty data: the loop only writes one when there are bytes.
        'if [ -n "${NB_PAYLOAD:-}" ]; then mv -f "$NB_PAYLOAD" "$t"; else : > "$t"; fi || exit 1\n'
        f'read -r sum _ < <(sha256sum "$t"); if [ "$sum" != {digest} ]; then rm -f "$t"; echo mismatch; exit 3; fi\n'
        f'chmod {mode:o} "$t" && mv -f "$t" "$p" && echo written\n'
    )
    return ScriptCall(script, payload=data)


def upload_written(name: str, remote_path: str, result: ExecResult | None) -> bool:
    """put_file's answer: True if written, False if the file was already equal."""
    if result is None or result.exit_status != 0 or result.stdout.strip() not in ("written", "unchanged"):
        said = f"{result.stdout.strip()} {result.stderr.strip()}" if result else "not run"
        raise TransportError(f"{name}: upload to {remote_path} failed: {said}", retryable=False)
    return result.stdout.strip() == "written"
