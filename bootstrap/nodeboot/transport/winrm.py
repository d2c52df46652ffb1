"""WinRM transport over pywinrm's Protocol API: one shell per host, reused for every script.

- One WinRS shell is opened at connect and reused: each script costs Command,
  Send (its stdin) and Receive. pywinrm's run_ps opens and deletes a shell per
  command, and its close_session also throws the NTLM handshake away each time.
- Scripts are the stdin of `powershell.exe ... -Command -`, never -EncodedCommand:
  a Windows command line holds at most 8191 characters.
- HTTPS (5986) verifies certificates unless the operator explicitly opts out; plain
  HTTP (5985) is only used with message encryption, and Basic over HTTP is refused
  before a packet is sent. pywinrm would accept a cleartext reply in 'always'
  encryption mode when its Content-Type lacks the protocol string; this transport
  rejects it.
- A dropped connection or a lost shell is repaired by reconnecting with
  exponential backoff, bounded by reconnect_timeout; the script is then run again,
  which is safe because nodeboot's host scripts are idempotent.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

import requests
import requests.adapters
import winrm.exceptions as wexc
from winrm.protocol import Protocol
from winrm.transport import Transport as PywinrmTransport

from nodeboot.errors import TransportError
from nodeboot.scripts import powershell_preamble
from nodeboot.transport import ExecResult, ScriptCall, TransportStats, run_one_by_one

log = logging.getLogger("nodeboot.transport.winrm")

POWERSHELL = "powershell.exe"
POWERSHELL_ARGS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", "-")
AUTH_METHODS = ("ntlm", "kerberos", "credssp", "basic")
SHELL_NOT_FOUND = 2150858843
SEND_CHUNK = 64 * 1024  # raw stdin bytes per Send: base64 of it stays far below the 150 KB envelope
UTF8_CODEPAGE = 65001  # the shell's console code page: PowerShell then reads stdin as UTF-8



@dataclass
class WinRMOptions:
    user: str = "Administrator"  # DOMAIN\\user, user@domain or a local user
    password: str | None = field(default=None, repr=False)  # from the environment, never argv or logs
    password_env: str = "NODEBOOT_WINRM_PASSWORD"
    scheme: str = "https"
    port: int | None = None  # 5986 for https, 5985 for http
    path: str = "/wsman"
    transport: str = "ntlm"  # ntlm | kerberos | credssp | basic
    ca_file: str | None = None  # --winrm-ca: the CA that signed the host's certificate
    insecure_skip_tls_verify: bool = False  # explicit opt-in; logged as a warning
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # must exceed operation_timeout: a Receive blocks that long
    operation_timeout: int = 20
    command_timeout: float = 1800.0
    reconnect_timeout: float = 300.0
    # After a command reports Done its process has exited; a Signal would only free the
    # record early (the shell's Delete frees them all), so it is off the per-command path.
    signal_finished_commands: bool = False

    @property
    def effective_port(self) -> int:
        return self.port or (5986 if self.scheme == "https" else 5985)


# Kerberos and CredSSP come from pywinrm's optional extras; nodeboot's tests cover NTLM only.
_AUTH_MODULES = {"kerberos": "requests_kerberos", "credssp": "requests_credssp"}


def _missing_auth_module(transport: str) -> str | None:
    """The Python module this WinRM auth method needs and cannot import, if any."""
    import importlib.util

    module = _AUTH_MODULES.get(transport)
    return module if module and importlib.util.find_spec(module) is None else None


def clixml_to_text(stderr: str) -> str:
    """PowerShell may report errors as CLIXML on stderr; keep only the messages."""
    if not stderr.startswith("#< CLIXML"):
        return stderr
    xml = stderr.split("\n", 1)[1] if "\n" in stderr else ""
    try:
        root = ET.fromstring(re.sub(r'\sxmlns="[^"]*"', "", xml, count=1))
    except ET.ParseError:
        return stderr
    parts = [s.text or "" for s in root.iter("S") if s.get("S") == "Error"]
    return "".join(parts).replace("_x000D__x000A_", "\n") or stderr


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _root_cause(exc: BaseException) -> str:
    """The useful end of requests' nested messages: '[Errno 111] Connection refused', say."""
    text = str(exc)
    errno = re.findall(r"\[Errno -?\d+\][^'\")]*", text)
    if errno:
        return errno[-1].strip()
    for marker in ("certificate verify failed", "RemoteDisconnected", "Connection aborted", "timed out"):
        if marker in text:
            return marker
    return type(exc).__name__


class _CountingAdapter(requests.adapters.HTTPAdapter):
    """Counts every HTTP request, the NTLM legs included: requests_ntlm sends those on the adapter."""

    def __init__(self, on_request: Callable[[], None]) -> None:
        super().__init__()
        self._on_request = on_request

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self._on_request()
        return super().send(request, *args, **kwargs)


class _HardenedTransport(PywinrmTransport):
    """pywinrm's HTTP layer with its request counter and the cleartext-reply check."""

    def __init__(self, on_request: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_request = on_request

    def _mount(self, session: requests.Session) -> None:
        if not isinstance(session.get_adapter("http://"), _CountingAdapter):
            adapter = _CountingAdapter(self._on_request)
            session.mount("http://", adapter)
            session.mount("https://", adapter)

    def setup_encryption(self, session: requests.Session) -> None:
        self._mount(session)  # before the handshake, so its requests are counted too
        super().setup_encryption(session)

    def build_session(self) -> requests.Session:
        session = super().build_session()
        self._mount(session)
        return session

    def _get_message_response_text(self, response: requests.Response) -> bytes:
        if self.encryption is not None:
            content_type = response.headers.get("Content-Type", "")
            if f'protocol="{self.encryption.protocol_string.decode()}"' not in content_type:
                if response.status_code == 200:
                    raise TransportError(
                        f"WinRM at {self.endpoint} sent a reply without message encryption "
                        f"(Content-Type {content_type or 'none'}); refusing it",
                        retryable=False,
                    )
                raise TransportError(
                    f"WinRM at {self.endpoint} answered HTTP {response.status_code} unencrypted"
                )
        return super()._get_message_response_text(response)


class WinRMTransport:
    """One host over WinRM: a single shell for the whole run, reopened when it is lost."""

    def __init__(self, host: str, options: WinRMOptions, name: str | None = None) -> None:
        self.host = host
        self.options = options
        self.name = name or host
        self.stats = TransportStats()
        self.stats.extra.update(http_requests=0, shells_opened=0, reconnects=0)
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None
        self._lock = threading.RLock()

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.options.scheme}://{host}:{self.options.effective_port}{self.options.path}"

    # -- connection -------------------------------------------------------------------
    def connect(self) -> None:
        """Open the shell once; later calls are free while it stands."""
        with self._lock:
            if self._shell_id is not None:
                return
            self._check_options()
            try:
                self._open()
            except Exception as exc:
                self._drop()
                raise self._error("connect", exc) from None

    def _check_options(self) -> None:
        opts = self.options
        if opts.scheme not in ("https", "http"):
            raise TransportError(
                f"{self.name}: WinRM scheme must be https or http, not {opts.scheme!r}", False
            )
        if opts.transport not in AUTH_METHODS:
            raise TransportError(
                f"{self.name}: WinRM transport must be {'|'.join(AUTH_METHODS)}, not {opts.transport!r}",
                False,
            )
        if opts.transport == "basic" and opts.scheme == "http":
            raise TransportError(
                f"{self.name}: refusing Basic authentication over plain HTTP (the password would cross the "
                "network in the clear); use https or ntlm/kerberos/credssp",
                retryable=False,
            )
        missing = _missing_auth_module(opts.transport)
        if missing:
            raise TransportError(f"{self.name}: WinRM transport {opts.transport} needs {missing}: pip install "
                                 f"'nodeboot[winrm-{opts.transport}]' (nodeboot's tests do not cover "
                                 f"{opts.transport}; ntlm is the tested one)", retryable=False)
        if self._password() is None:
            raise TransportError(f"{self.name}: no WinRM password: set ${opts.password_env}", retryable=False)

    def _password(self) -> str | None:
        return (
            self.options.password
            if self.options.password is not None
            else os.environ.get(self.options.password_env)
        )

    def _open(self) -> None:
        """A fresh HTTP session (and NTLM context) and a fresh shell."""
        self._drop()
        opts = self.options
        if opts.scheme == "https" and opts.insecure_skip_tls_verify:
            log.warning(
                "%s: TLS certificate checks are OFF for %s (insecure_skip_tls_verify)",
                self.name,
                self.endpoint,
            )
        self._protocol = self._new_protocol()
        self._shell_id = self._protocol.open_shell(codepage=UTF8_CODEPAGE, noprofile=True)
        self.stats.connects += 1
        self.stats.extra["shells_opened"] += 1
        log.debug("%s: WinRM shell %s open on %s", self.name, self._shell_id, self.endpoint)

    def _new_protocol(self) -> Protocol:
        opts = self.options
        settings: dict[str, Any] = {
            "endpoint": self.endpoint,
            "username": opts.user,
            "password": self._password(),
            "service": "HTTP",
            "ca_trust_path": opts.ca_file,  # None: the system store, not REQUESTS_CA_BUNDLE guesswork
            "server_cert_validation": "ignore" if opts.insecure_skip_tls_verify else "validate",
            "message_encryption": "always" if opts.scheme == "http" else "auto",
            "proxy": None,
        }
        operation = max(1, int(opts.operation_timeout))
        protocol = Protocol(
            transport=opts.transport,  # type: ignore[arg-type]
            read_timeout_sec=max(int(opts.read_timeout), operation + 1),
            operation_timeout_sec=operation,
            **settings,
        )
        # Same settings, plus the request counter, the cleartext check and a separate connect timeout.
        protocol.transport = _HardenedTransport(
            self._count_request,
            auth_method=opts.transport,
            read_timeout_sec=(opts.connect_timeout, max(opts.read_timeout, operation + 1)),
            **settings,
        )
        return protocol

    def _count_request(self) -> None:
        self.stats.extra["http_requests"] += 1

    def _drop(self) -> None:
        """Forget the session; the shell id is forgotten too (reconnect opens a new one)."""
        protocol, self._protocol, self._shell_id = self._protocol, None, None
        if protocol is not None:
            protocol.transport.close_session()

    def close(self) -> None:
        with self._lock:
            if self._protocol is not None and self._shell_id is not None:
                try:
                    self._protocol.close_shell(self._shell_id)
                except Exception as exc:  # the host may be gone already; closing must not fail the run
                    log.debug("%s: closing the WinRM shell failed: %s", self.name, self._scrub(str(exc)))
            self._drop()

    # -- recovery ---------------------------------------------------------------------
    def _reconnect(self, bound: float, cause: str) -> None:
        """Reopen session and shell with exponential backoff for at most `bound` seconds."""
        deadline = time.monotonic() + bound
        old_protocol, old_shell = self._protocol, self._shell_id
        self._protocol = self._shell_id = None
        if old_protocol is not None:
            old_protocol.transport.close_session()
        delay, last = 0.25, cause
        while True:
            try:
                self._open()
                break
            except Exception as exc:
                if not self._recoverable(exc):
                    self._drop()
                    raise self._error("reconnect", exc) from None
                last = self._describe(exc)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._drop()
                raise TransportError(
                    f"{self.name}: WinRM endpoint {self.endpoint} did not come back within {bound:.3g}s "
                    f"(last error: {self._scrub(last)})"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 10.0)
        self._forget_shell(old_shell)

    def _forget_shell(self, shell_id: str | None) -> None:
        """Delete a shell left behind by a dropped connection: Windows caps shells per user."""
        if shell_id is None or self._protocol is None:
            return
        try:
            self._protocol.close_shell(shell_id, close_session=False)
        except Exception as exc:  # after a reboot it is gone anyway
            log.debug("%s: old shell %s not deleted: %s", self.name, shell_id, self._scrub(str(exc)))

    def wait_for_reboot(self, timeout: float = 600.0, poll: float = 0.25) -> None:
        """Wait for the endpoint to go away and come back, then reopen the shell.

        Call it right after asking the host to restart; the whole wait is bounded by timeout.
        """
        with self._lock:
            deadline = time.monotonic() + timeout
            self._drop()  # the shell does not survive a reboot
            while self._port_open():
                if time.monotonic() >= deadline:
                    raise TransportError(
                        f"{self.name}: {self.endpoint} did not go down for the reboot within {timeout:g}s"
                    )
                time.sleep(poll)
            log.info("%s: %s is down for the reboot; waiting for it to come back", self.name, self.endpoint)
            self._reconnect(max(0.0, deadline - time.monotonic()), "rebooting")
            self.stats.extra["reboots"] = self.stats.extra.get("reboots", 0) + 1

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.options.effective_port), timeout=1.0):
                return True
        except OSError:
            return False

    @staticmethod
    def _recoverable(exc: BaseException) -> bool:
        if isinstance(exc, TransportError):
            return exc.retryable
        if isinstance(exc, requests.exceptions.SSLError):
            return False  # a certificate problem does not fix itself
        if isinstance(exc, requests.exceptions.RequestException | wexc.WinRMTransportError):
            return True
        if isinstance(exc, wexc.WSManFaultError):
            return exc.wsman_fault_code == SHELL_NOT_FOUND
        return False

    # -- running scripts ----------------------------------------------------------------
    def run_script(
        self,
        script: str,
        variables: dict[str, str],
        secret_variables: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        stdin = (powershell_preamble(variables, secret_variables) + script.rstrip("\n") + "\n\n").encode()
        log.debug("%s: script of %d bytes, inputs %s", self.name, len(stdin), ", ".join(variables))
        return self._run(stdin, timeout or self.options.command_timeout, secret_variables or {})

    def run_batch(self, calls: list[ScriptCall], timeout: float | None = None) -> list[ExecResult | None]:
        # Each WinRM command is its own request sequence: the scripts go one by one.
        return run_one_by_one(self, calls, timeout)

    def _run(self, stdin: bytes, timeout: float, secrets: dict[str, str]) -> ExecResult:
        with self._lock:
            self.connect()
            try:
                return self._execute(stdin, timeout)
            except Exception as exc:
                if not self._recoverable(exc):
                    raise self._error("command", exc, secrets) from None
                cause = self._describe(exc)
            log.warning(
                "%s: WinRM connection lost (%s); reconnecting", self.name, self._scrub(cause, secrets)
            )
            self.stats.extra["reconnects"] += 1
            self._reconnect(self.options.reconnect_timeout, cause)
            try:  # once more on the new shell: host scripts are idempotent
                return self._execute(stdin, timeout)
            except Exception as exc:
                raise self._error("command after reconnect", exc, secrets) from None

    def _execute(self, stdin: bytes, timeout: float) -> ExecResult:
        """Command, Send (stdin, in chunks if large), Receive until Done."""
        protocol, shell_id = self._protocol, self._shell_id
        assert protocol is not None and shell_id is not None
        deadline = time.monotonic() + timeout
        command_id = protocol.run_command(shell_id, POWERSHELL, POWERSHELL_ARGS)
        self.stats.execs += 1
        for start in range(0, max(len(stdin), 1), SEND_CHUNK):
            chunk = stdin[start : start + SEND_CHUNK]
            protocol.send_command_input(shell_id, command_id, chunk, end=start + SEND_CHUNK >= len(stdin))
        self.stats.bytes_sent += len(stdin)
        out, err = bytearray(), bytearray()
        while True:
            try:
                stdout, stderr, code, done = protocol.get_command_output_raw(shell_id, command_id)
            except wexc.WinRMOperationTimeoutError:
                stdout, stderr, code, done = b"", b"", -1, False  # nothing yet: ask again
            out += stdout
            err += stderr
            if done:
                break
            if time.monotonic() > deadline:
                self._terminate(command_id)
                raise TransportError(f"{self.name}: script timed out after {timeout:.0f}s", retryable=False)
        if self.options.signal_finished_commands:
            protocol.cleanup_command(shell_id, command_id)
        text_err = clixml_to_text(err.decode("utf-8", errors="replace"))
        return ExecResult(code, out.decode("utf-8", errors="replace"), text_err)

    def _terminate(self, command_id: str) -> None:
        assert self._protocol is not None and self._shell_id is not None
        try:
            self._protocol.cleanup_command(self._shell_id, command_id)
        except Exception as exc:
            log.debug("%s: terminating a timed-out command failed: %s", self.name, self._scrub(str(exc)))

    # -- errors -----------------------------------------------------------------------
    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TransportError):
            return str(exc)
        if isinstance(exc, wexc.InvalidCredentialsError):
            return f"{self.endpoint} rejected the credentials of user {self.options.user}"
        if isinstance(exc, requests.exceptions.SSLError):
            hint = "" if self.options.ca_file else "; pass the CA that signed it (--winrm-ca)"
            return f"TLS verification of {self.endpoint} failed ({_root_cause(exc)}){hint}"
        if isinstance(exc, requests.exceptions.Timeout):
            return f"timed out talking to {self.endpoint}"
        if isinstance(exc, requests.exceptions.RequestException):
            return f"cannot reach {self.endpoint}: {_root_cause(exc)}"
        if isinstance(exc, wexc.WSManFaultError):
            return f"WinRM fault {exc.wsman_fault_code}: {exc.reason}"
        if isinstance(exc, wexc.WinRMTransportError):
            return f"HTTP {exc.code} from {self.endpoint}"
        return f"{type(exc).__name__}: {exc}"

    def _error(self, what: str, exc: BaseException, secrets: dict[str, str] | None = None) -> TransportError:
        """One line, naming the host, never holding the password or a secret input."""
        text = self._scrub(_one_line(f"{self.name}: WinRM {what} failed: {self._describe(exc)}"), secrets)
        return TransportError(text, retryable=self._recoverable(exc))

    def _scrub(self, text: str, secrets: dict[str, str] | None = None) -> str:
        for secret in [self._password() or "", *(secrets or {}).values()]:
            if len(secret) >= 4:
                text = text.replace(secret, "******")
        return text
