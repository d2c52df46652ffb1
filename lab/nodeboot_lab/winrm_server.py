"""A WS-Management (WinRM) endpoint for the lab, spoken to by pywinrm as if it were Windows.

What is real: HTTP/1.1 keep-alive, NTLM (pyspnego acceptor, one context per TCP
connection), HTTP message encryption (multipart/encrypted framing), TLS with
channel binding, and the WinRS shell actions pywinrm uses (Create, Command, Send,
Receive, Signal, Delete) with proper WS-Man faults. What is modelled: the effect
of a command, which a handler computes:

    handler(shell_id, command, arguments, stdin) -> (stdout, stderr, exit_code)

The server also counts HTTP requests (in total, per action, per shell and per
command) and can simulate trouble for tests: dropped connections, a reboot (stop
listening, lose every shell, come back), a plaintext reply where an encrypted one
is due.

    python -m nodeboot_lab.winrm_server --listen 127.0.0.1 --http-port 0 --https-port 0 \\
        --cert server.pem --key server.key --users users.txt --state-dir DIR

runs until SIGTERM and writes DIR/winrm-server.json (pid and ports). SIGUSR1 drops
every connection; SIGUSR2 simulates a reboot (--reboot-downtime seconds).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import importlib
import json
import logging
import os
import re
import signal
import socket
import socketserver
import ssl
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

log = logging.getLogger("nodeboot_lab.winrm_server")

Handler = Callable[[str, str, list[str], bytes], tuple[bytes, bytes, int]]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
TRANSFER_URI = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
ACTIONS = {
    f"{TRANSFER_URI}/Create": "Create",
    f"{TRANSFER_URI}/Delete": "Delete",
    f"{SHELL_URI}/Command": "Command",
    f"{SHELL_URI}/Send": "Send",
    f"{SHELL_URI}/Receive": "Receive",
    f"{SHELL_URI}/Signal": "Signal",
}
RESPONSE_ACTIONS = {
    "Create": f"{TRANSFER_URI}/CreateResponse",
    "Delete": f"{TRANSFER_URI}/DeleteResponse",
    "Command": f"{SHELL_URI}/CommandResponse",
    "Send": f"{SHELL_URI}/SendResponse",
    "Receive": f"{SHELL_URI}/ReceiveResponse",
    "Signal": f"{SHELL_URI}/SignalResponse",
}
STATE_DONE = f"{SHELL_URI}/CommandState/Done"
STATE_RUNNING = f"{SHELL_URI}/CommandState/Running"

# WS-Man fault codes the client tells apart; the values are the ones Windows sends.
FAULT_TIMEOUT = 2150858793  # Receive found no output within OperationTimeout: pywinrm retries
FAULT_SHELL_NOT_FOUND = 2150858843
FAULT_INVALID = 2150858806
FAULT_UNENCRYPTED = 2150858818

MAX_ENVELOPE = 153600  # pywinrm's MaxEnvelopeSize; a bigger request is a client bug
RECEIVE_CHUNK = 64 * 1024  # raw bytes of output per Receive reply, well under the envelope limit
PROTOCOL_STRING = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_TYPE = f'multipart/encrypted;protocol="{PROTOCOL_STRING}";boundary="Encrypted Boundary"'
SOAP_TYPE = "application/soap+xml;charset=UTF-8"
INJECTED_COMMAND_ID = "00000000-0000-0000-0000-1NJECTED0000"  # what inject_plaintext_reply() answers
IDLE_TIMEOUT = 120.0  # longer than the client's Receive wait (20 s), as Windows' is


# -- counters -------------------------------------------------------------------
@dataclass
class ServerCounters:
    """What the endpoint saw; a snapshot is taken under the server's lock."""

    http_requests: int = 0  # every HTTP request, auth legs included
    unauthorized: int = 0  # requests answered 401
    actions: Counter[str] = field(default_factory=Counter)
    per_shell: Counter[str] = field(default_factory=Counter)
    per_command: Counter[str] = field(default_factory=Counter)
    connections: int = 0


# -- shells and commands --------------------------------------------------------
@dataclass
class _Command:
    command_id: str
    command: str
    arguments: list[str]
    stdin: bytearray = field(default_factory=bytearray)
    started: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    sent_out: int = 0
    sent_err: int = 0


@dataclass
class _Shell:
    shell_id: str
    commands: dict[str, _Command] = field(default_factory=dict)


class WSManFault(Exception):
    """A fault the endpoint answers with (HTTP 500), as Windows does."""

    def __init__(self, code: int, subcode: str, reason: str, status: int = 500) -> None:
        super().__init__(reason)
        self.code, self.subcode, self.reason, self.status = code, subcode, reason, status


@dataclass
class _Request:
    action: str
    message_id: str
    shell_id: str | None
    timeout: float
    body: ET.Element


def _parse_request(envelope: bytes) -> _Request:
    try:
        root = ET.fromstring(envelope)
    except ET.ParseError as exc:
        raise WSManFault(
            FAULT_INVALID, "w:InvalidMessageInformationHeader", f"malformed envelope: {exc}"
        ) from None
    header = root.find("s:Header", NS)
    body = root.find("s:Body", NS)
    if header is None or body is None:
        raise WSManFault(FAULT_INVALID, "w:InvalidMessageInformationHeader", "envelope lacks Header or Body")
    action_uri = (header.findtext("a:Action", "", NS) or "").strip()
    action = ACTIONS.get(action_uri)
    if action is None:
        raise WSManFault(FAULT_INVALID, "a:ActionNotSupported", f"action not supported: {action_uri}")
    selector = header.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
    shell_id = (selector.text or "").strip() if selector is not None else None
    return _Request(
        action=action,
        message_id=(header.findtext("a:MessageID", "", NS) or "").strip(),
        shell_id=shell_id,
        timeout=_duration(header.findtext("w:OperationTimeout", "", NS) or ""),
        body=body,
    )


def _duration(text: str) -> float:
    """Seconds from an xs:duration like PT20S or PT60.000S (other forms: 20 s)."""
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", text.strip())
    return float(match.group(1)) if match else 20.0


class WSManService:
    """The WinRS shell service: shells survive dropped connections, not reboots."""

    def __init__(self, handler: Handler, counters: ServerCounters, lock: threading.Lock) -> None:
        self.handler = handler
        self._counters = counters
        self._lock = lock
        self._shells: dict[str, _Shell] = {}
        self.endpoint = "http://localhost:5985/wsman"

    def forget_shells(self) -> None:
        with self._lock:
            self._shells.clear()

    def shell_ids(self) -> list[str]:
        with self._lock:
            return list(self._shells)

    def handle(self, envelope: bytes) -> tuple[int, bytes]:
        """One request envelope in, (HTTP status, reply envelope) out."""
        message_id = ""
        try:
            if len(envelope) > MAX_ENVELOPE:
                raise WSManFault(FAULT_INVALID, "w:EncodingLimit", "request exceeds MaxEnvelopeSize")
            request = _parse_request(envelope)
            message_id = request.message_id
            body, command_id = self._dispatch(request)
            self._count(request, command_id)
            return 200, self._envelope(RESPONSE_ACTIONS[request.action], message_id, body)
        except WSManFault as fault:
            return fault.status, self._fault(fault, message_id)

    def _count(self, request: _Request, command_id: str | None) -> None:
        with self._lock:
            self._counters.actions[request.action] += 1
            if request.shell_id:
                self._counters.per_shell[request.shell_id] += 1
            if command_id:
                self._counters.per_command[command_id] += 1

    def _dispatch(self, request: _Request) -> tuple[str, str | None]:
        if request.action == "Create":
            return self._create(), None
        shell = self._shell(request.shell_id)
        if request.action == "Delete":
            with self._lock:
                self._shells.pop(shell.shell_id, None)
            return "", None
        if request.action == "Command":
            return self._command(shell, request.body)
        if request.action == "Send":
            return self._send(shell, request.body)
        if request.action == "Receive":
            return self._receive(shell, request)
        return self._signal(shell, request.body)

    def _shell(self, shell_id: str | None) -> _Shell:
        with self._lock:
            shell = self._shells.get(shell_id or "")
        if shell is None:
            raise WSManFault(
                FAULT_SHELL_NOT_FOUND,
                "w:InvalidSelectors",
                f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell "
                "was not found on the server.",
            )
        return shell

    def _find_command(self, shell: _Shell, command_id: str) -> _Command:
        command = shell.commands.get(command_id)
        if command is None:
            raise WSManFault(FAULT_INVALID, "w:InvalidSelectors", f"unknown CommandId {command_id}")
        return command

    def _create(self) -> str:
        shell_id = str(uuid.uuid4()).upper()
        with self._lock:
            self._shells[shell_id] = _Shell(shell_id)
        return (
            f"<x:ResourceCreated><a:Address>{escape(self.endpoint)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{SHELL_URI}/cmd</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
            f"</x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
            "<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"
            "</rsp:Shell>"
        )

    def _command(self, shell: _Shell, body: ET.Element) -> tuple[str, str]:
        line = body.find("rsp:CommandLine", NS)
        if line is None:
            raise WSManFault(FAULT_INVALID, "w:SchemaValidationError", "Command without CommandLine")
        text = (line.findtext("rsp:Command", "", NS) or "").strip()
        arguments = [a.text or "" for a in line.findall("rsp:Arguments", NS)]
        command_id = str(uuid.uuid4()).upper()
        with self._lock:
            shell.commands[command_id] = _Command(command_id, text, arguments)
        return (
            f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>",
            command_id,
        )

    def _send(self, shell: _Shell, body: ET.Element) -> tuple[str, str]:
        stream = body.find("rsp:Send/rsp:Stream", NS)
        if stream is None:
            raise WSManFault(FAULT_INVALID, "w:SchemaValidationError", "Send without Stream")
        command = self._find_command(shell, stream.get("CommandId", ""))
        if command.started:
            raise WSManFault(FAULT_INVALID, "w:InvalidParameter", "stdin of this command is already closed")
        try:
            command.stdin += base64.b64decode(stream.text or "", validate=True)
        except binascii.Error:
            raise WSManFault(FAULT_INVALID, "w:SchemaValidationError", "stdin is not base64") from None
        if stream.get("End", "false").lower() == "true":
            self._start(shell, command)
        return "<rsp:SendResponse/>", command.command_id

    def _start(self, shell: _Shell, command: _Command) -> None:
        """Run the handler off the request thread: Receive then waits as it would on Windows."""
        command.started = True

        def run() -> None:
            try:
                command.stdout, command.stderr, command.exit_code = self.handler(
                    shell.shell_id, command.command, list(command.arguments), bytes(command.stdin)
                )
            except Exception as exc:  # a broken model must show up as a failed command, not a hang
                log.exception("handler failed")
                command.stdout, command.stderr, command.exit_code = (
                    b"",
                    f"lab handler error: {exc}\n".encode(),
                    1,
                )
            command.done.set()

        threading.Thread(target=run, name=f"winrm-cmd-{command.command_id[:8]}", daemon=True).start()

    def _receive(self, shell: _Shell, request: _Request) -> tuple[str, str]:
        desired = request.body.find("rsp:Receive/rsp:DesiredStream", NS)
        if desired is None:
            raise WSManFault(FAULT_INVALID, "w:SchemaValidationError", "Receive without DesiredStream")
        command = self._find_command(shell, desired.get("CommandId", ""))
        if not command.started:  # no stdin was sent: the command runs with empty input
            self._start(shell, command)
        if not command.done.wait(max(0.1, min(request.timeout, 60.0))):
            raise WSManFault(
                FAULT_TIMEOUT,
                "w:TimedOut",
                "The WS-Management service cannot complete the operation "
                "within the time specified in OperationTimeout.",
            )
        return self._output(command), command.command_id

    def _output(self, command: _Command) -> str:
        """Up to RECEIVE_CHUNK bytes per stream per reply; Done only with the last of it."""
        cid = command.command_id
        out = command.stdout[command.sent_out : command.sent_out + RECEIVE_CHUNK]
        err = command.stderr[command.sent_err : command.sent_err + RECEIVE_CHUNK]
        command.sent_out += len(out)
        command.sent_err += len(err)
        finished = command.sent_out >= len(command.stdout) and command.sent_err >= len(command.stderr)
        parts = ["<rsp:ReceiveResponse>"]
        for name, chunk in (("stdout", out), ("stderr", err)):
            if chunk:
                data = base64.b64encode(chunk).decode()
                parts.append(f'<rsp:Stream Name="{name}" CommandId="{cid}">{data}</rsp:Stream>')
        if finished:
            parts.append(f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(
                f'<rsp:CommandState CommandId="{cid}" State="{STATE_DONE}">'
                f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(f'<rsp:CommandState CommandId="{cid}" State="{STATE_RUNNING}"></rsp:CommandState>')
        parts.append("</rsp:ReceiveResponse>")
        return "".join(parts)

    def _signal(self, shell: _Shell, body: ET.Element) -> tuple[str, str]:
        node = body.find("rsp:Signal", NS)
        if node is None:
            raise WSManFault(FAULT_INVALID, "w:SchemaValidationError", "Signal without a body")
        command_id = node.get("CommandId", "")
        self._find_command(shell, command_id)
        with self._lock:
            shell.commands.pop(command_id, None)
        return "<rsp:SignalResponse/>", command_id

    def _envelope(self, action: str, relates_to: str, body: str) -> bytes:
        ns = " ".join(f"xmlns:{k}={quoteattr(v)}" for k, v in NS.items())
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xml:lang="en-US" {ns}><s:Header>'
            f"<a:Action>{action}</a:Action><a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
            "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
            f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
        ).encode()

    def _fault(self, fault: WSManFault, relates_to: str) -> bytes:
        body = (
            "<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode>"
            f"<s:Value>{escape(fault.subcode)}</s:Value></s:Subcode></s:Code>"
            f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
            f'<s:Detail><f:WSManFault Code="{fault.code}" Machine="lab">'
            f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
        )
        return self._envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


# -- message encryption ---------------------------------------------------------
def seal(ctx: spnego.ContextProxy, plaintext: bytes) -> bytes:
    """Frame one reply as multipart/encrypted: header part, then <u32 len><signature><sealed>."""
    wrapped = ctx.wrap_winrm(plaintext)
    return (
        BOUNDARY + b"\r\n"
        b"\tContent-Type: " + PROTOCOL_STRING.encode() + b"\r\n"
        b"\tOriginalContent: type="
        + SOAP_TYPE.encode()
        + b";Length="
        + str(len(plaintext)).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<I", len(wrapped.header))
        + wrapped.header
        + wrapped.data
        + BOUNDARY
        + b"--\r\n"
    )


def unseal(ctx: spnego.ContextProxy, body: bytes) -> bytes:
    """Undo seal(): the sealed bytes are sliced by the Length the header part names."""
    match = re.search(rb"Length=(\d+)\r\n", body)
    marker = b"\tContent-Type: application/octet-stream\r\n"
    start = body.find(marker, match.end()) if match else -1
    if match is None or start < 0:
        raise ValueError("not a multipart/encrypted WinRM message")
    length = int(match.group(1))
    start += len(marker)
    (sig_len,) = struct.unpack("<I", body[start : start + 4])
    signature = body[start + 4 : start + 4 + sig_len]
    sealed = body[start + 4 + sig_len : start + 4 + sig_len + length]
    if len(sealed) != length:
        raise ValueError("encrypted part shorter than its Length")
    return ctx.unwrap_winrm(signature, sealed)


def tls_channel_bindings(cert_file: str) -> spnego.channel_bindings.GssChannelBindings:
    """tls-server-end-point: the certificate's own signature hash (sha256 for md5/sha1)."""
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(Encoding.DER))
    return spnego.channel_bindings.GssChannelBindings(
        application_data=b"tls-server-end-point:" + digest.finalize()
    )


# -- HTTP -----------------------------------------------------------------------
class _Listener(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: WinRMServer, tls: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.tls = tls
        super().__init__(address, _ConnectionHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or refuses our certificate is routine here, not a traceback.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _ConnectionHandler(BaseHTTPRequestHandler):
    """One TCP connection: it owns the NTLM context, as WinRM on Windows does."""

    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body go out as two writes; Nagle would hold the second
    server: _Listener

    def setup(self) -> None:
        self._ctx: spnego.ContextProxy | None = None
        self._authenticated = False
        tls = self.server.tls
        if tls is not None:
            self.request.settimeout(10.0)
            self.request = tls.wrap_socket(self.request, server_side=True)
        self.server.owner._track(self.request)
        super().setup()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._untrack(self.request)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._reply(405, b"")

    def do_POST(self) -> None:
        owner = self.server.owner
        owner._count_http()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if owner._take_fault("plaintext"):
            self._plaintext_reply()
            return
        if not self._authenticate():
            return
        self._serve(body)

    # Authentication: any request may carry a new token; without one the connection must be authenticated.
    def _authenticate(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() in ("negotiate", "ntlm"):
            return self._step(scheme, token.strip())
        if self._authenticated and not header:
            return True
        self._unauthorized()  # no credentials, or Basic: Windows with Basic disabled answers the same
        return False

    def _step(self, scheme: str, token: str) -> bool:
        owner = self.server.owner
        if self._ctx is None or self._authenticated:
            self._ctx = spnego.server(
                protocol=owner.auth_protocol, channel_bindings=owner._bindings(self.server)
            )
            self._authenticated = False
        try:
            out = self._ctx.step(base64.b64decode(token))
        except Exception as exc:  # wrong password, bad binding, garbage: all are a plain 401
            log.info("authentication failed: %s", type(exc).__name__)
            self._ctx = None
            self._unauthorized()
            return False
        if not self._ctx.complete:
            self._reply(401, b"", {"WWW-Authenticate": f"{scheme} {base64.b64encode(out or b'').decode()}"})
            return False
        self._authenticated = True
        return True

    def _unauthorized(self) -> None:
        self.server.owner._count_unauthorized()
        self._reply(401, b"", {"WWW-Authenticate": "Negotiate"})

    def _serve(self, body: bytes) -> None:
        owner = self.server.owner
        if not body:  # pywinrm's empty POST that sets up the context for encryption
            self._reply(200, b"")
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.lower().startswith("multipart/encrypted")
        assert self._ctx is not None
        if encrypted:
            try:
                envelope = unseal(self._ctx, body)
            except Exception as exc:  # the keys no longer match: this connection is beyond repair
                log.info("cannot unseal request: %s", exc)
                self.close_connection = True
                self._reply(400, b"", {"Connection": "close"})
                return
        elif self.server.tls is None:
            fault = WSManFault(
                FAULT_UNENCRYPTED, "w:AccessDenied", "unencrypted traffic is disabled", status=500
            )
            self._reply(500, owner.service._fault(fault, ""), {"Content-Type": SOAP_TYPE})
            return
        else:
            envelope = body
        status, reply = owner.service.handle(envelope)
        if encrypted:
            self._reply(status, seal(self._ctx, reply), {"Content-Type": ENCRYPTED_TYPE})
        else:
            self._reply(status, reply, {"Content-Type": SOAP_TYPE})

    def _plaintext_reply(self) -> None:
        """A well-formed SOAP reply sent in the clear: what a downgrade or a bad proxy would look like."""
        body = self.server.owner.service._envelope(
            RESPONSE_ACTIONS["Command"],
            "",
            f"<rsp:CommandResponse><rsp:CommandId>{INJECTED_COMMAND_ID}</rsp:CommandId></rsp:CommandResponse>",
        )
        self.close_connection = True
        self._reply(200, body, {"Content-Type": SOAP_TYPE, "Connection": "close"})

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


# -- the server -----------------------------------------------------------------
class WinRMServer:
    """The endpoint: HTTP and/or HTTPS listeners in threads, one WinRS service behind them."""

    def __init__(
        self,
        handler: Handler,
        users_file: str,
        listen: str = "127.0.0.1",
        http_port: int | None = 0,
        https_port: int | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        auth_protocol: str = "negotiate",
    ) -> None:
        if http_port is None and https_port is None:
            raise ValueError("WinRMServer needs an HTTP or an HTTPS port")
        if https_port is not None and not (cert_file and key_file):
            raise ValueError("HTTPS needs cert_file and key_file")
        self.listen = listen
        self.http_port = http_port
        self.https_port = https_port
        self.cert_file, self.key_file = cert_file, key_file
        self.auth_protocol = auth_protocol
        self.users_file = users_file
        self.boots = 0
        self._closed = False  # close() is final: a pending reboot must not bring the endpoint back
        self._lock = threading.Lock()
        self._counters = ServerCounters()
        self.service = WSManService(handler, self._counters, self._lock)
        self._listeners: list[tuple[_Listener, threading.Thread]] = []
        self._sockets: set[socket.socket] = set()
        self._faults: Counter[str] = Counter()
        self._tls = self._tls_context() if https_port is not None else None
        self._cbt = tls_channel_bindings(cert_file) if cert_file and https_port is not None else None

    # The NTLM acceptor reads its users and policy from the environment of this process.
    def _configure_acceptor(self) -> None:
        os.environ["NTLM_USER_FILE"] = str(Path(self.users_file).resolve())
        os.environ["LM_COMPAT_LEVEL"] = "5"

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def _bindings(self, listener: _Listener) -> spnego.channel_bindings.GssChannelBindings | None:
        return self._cbt if listener.tls is not None else None

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> WinRMServer:
        """Start listening; port 0 picks a free port, which is then kept across restarts."""
        self._configure_acceptor()
        with self._lock:
            if self._listeners or self._closed:
                return self
        if self.http_port is not None:
            self.http_port = self._listen(self.http_port, None)
        if self.https_port is not None:
            self.https_port = self._listen(self.https_port, self._tls)
        log.info("WinRM lab endpoint on %s http=%s https=%s", self.listen, self.http_port, self.https_port)
        return self

    def _listen(self, port: int, tls: ssl.SSLContext | None) -> int:
        listener = _Listener((self.listen, port), self, tls)
        thread = threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"winrm-listen-{listener.server_address[1]}",
        )
        thread.start()
        with self._lock:
            closed = self._closed
            if not closed:
                self._listeners.append((listener, thread))
        if closed:  # close() ran while this one was starting: a reboot must not outlive the server
            listener.shutdown()
            listener.server_close()
        return int(listener.server_address[1])

    def stop(self) -> None:
        """Stop listening and drop every connection (shells stay: see reboot())."""
        with self._lock:
            listeners, self._listeners = self._listeners, []
        for listener, thread in listeners:
            listener.shutdown()
            listener.server_close()
            thread.join(timeout=5)
        self.drop_connections()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.stop()

    def __enter__(self) -> WinRMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def listening(self) -> bool:
        with self._lock:
            return bool(self._listeners)

    # -- trouble on demand ----------------------------------------------------------
    def drop_connections(self) -> int:
        """Cut every open TCP connection, as a network blip or a restarted service would."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(sockets)

    def reboot(self, downtime: float, wait: bool = False) -> threading.Thread:
        """Go away for `downtime` seconds and come back with no shells, as Windows does after a restart."""
        self.stop()
        self.service.forget_shells()
        self.boots += 1

        def come_back() -> None:
            time.sleep(downtime)
            self.start()

        thread = threading.Thread(target=come_back, name="winrm-reboot", daemon=True)
        thread.start()
        if wait:
            thread.join()
        return thread

    def inject_plaintext_reply(self, count: int = 1) -> None:
        """Answer the next `count` requests with a cleartext 200, whatever they were."""
        with self._lock:
            self._faults["plaintext"] += count

    def _take_fault(self, name: str) -> bool:
        with self._lock:
            if self._faults[name] <= 0:
                return False
            self._faults[name] -= 1
            return True

    # -- counters -------------------------------------------------------------------
    def counters(self) -> ServerCounters:
        with self._lock:
            c = self._counters
            return ServerCounters(
                http_requests=c.http_requests,
                unauthorized=c.unauthorized,
                actions=Counter(c.actions),
                per_shell=Counter(c.per_shell),
                per_command=Counter(c.per_command),
                connections=c.connections,
            )

    def reset_counters(self) -> None:
        with self._lock:
            c = self._counters
            c.http_requests = c.unauthorized = c.connections = 0
            c.actions.clear()
            c.per_shell.clear()
            c.per_command.clear()

    def _count_http(self) -> None:
        with self._lock:
            self._counters.http_requests += 1

    def _count_unauthorized(self) -> None:
        with self._lock:
            self._counters.unauthorized += 1

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            self._counters.connections += 1

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


# -- command line -----------------------------------------------------------------
def load_handler(spec: str, state_dir: str) -> Handler:
    """MODULE:FACTORY, the factory called with the state directory."""
    module_name, _, factory_name = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name or "WindowsHostModel")
    return factory(state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nodeboot_lab.winrm_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=None, help="0 picks a free port; omit for no HTTP")
    parser.add_argument("--https-port", type=int, default=None, help="0 picks a free port; omit for no HTTPS")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--users", required=True, help="NTLM user file: DOMAIN:user:password lines")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--handler", default="nodeboot_lab.windows_model:WindowsHostModel")
    parser.add_argument("--reboot-downtime", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s winrm-server %(levelname)s %(message)s")

    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    server = WinRMServer(
        load_handler(args.handler, str(state_dir)),
        args.users,
        args.listen,
        args.http_port,
        args.https_port,
        args.cert,
        args.key,
    ).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: server.drop_connections())
    signal.signal(signal.SIGUSR2, lambda *_: server.reboot(args.reboot_downtime))
    info = {
        "pid": os.getpid(),
        "listen": args.listen,
        "http_port": server.http_port,
        "https_port": server.https_port,
    }
    (state_dir / "winrm-server.json").write_text(json.dumps(info) + "\n")
    while not stop.wait(1.0):
        pass
    server.close()
    counters = server.counters()
    (state_dir / "winrm-counters.json").write_text(
        json.dumps(
            {
                "http_requests": counters.http_requests,
                "actions": dict(counters.actions),
                "per_command": dict(counters.per_command),
            }
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
