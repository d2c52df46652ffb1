"""An SSH port that is not what it should be (issue 14 item 8): one line naming the host and
the cause, nothing from paramiko on stderr. Real loopback TCP servers, real paramiko."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def tcp_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback TCP server that gives each accepted connection to handle; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()
        thread.join(5)


def close_at_once(conn: socket.socket) -> None:
    conn.close()


def speak_http(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    conn.close()


def stay_silent(conn: socket.socket) -> None:
    pass  # held open by tcp_server until the test ends


def bad_ssh_version(conn: socket.socket) -> None:
    conn.sendall(b"SSH-1.5-ancient\r\n")
    conn.close()


CONNECT = """
import sys
from nodeboot.errors import TransportError
from nodeboot.transport.ssh import SSHOptions, SSHTransport
port = int(sys.argv[1])
try:
    SSHTransport("127.0.0.1", SSHOptions(port=port, connect_timeout=float(sys.argv[2])), name="h1").connect()
except TransportError as exc:
    print(exc)
    sys.exit(1)
"""


def connect_in_a_fresh_process(port: int, timeout: float = 5.0) -> subprocess.CompletedProcess:
    """As the CLI does: no logging configured by anyone, so whatever paramiko logs would reach stderr."""
    return subprocess.run([sys.executable, "-c", CONNECT, str(port), str(timeout)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "bootstrap"), "HOME": "/nonexistent"})


@pytest.mark.parametrize("handle, cause", [
    (close_at_once, "127.0.0.1:{port} closed the connection before sending an SSH banner"),
    (speak_http, "127.0.0.1:{port} is not an SSH server (it said 'HTTP/1.1 400 Bad Request')"),
    (stay_silent, "127.0.0.1:{port} accepted the connection but sent no SSH banner within 0.5s (banner timeout)"),
    (bad_ssh_version, "SSH to 127.0.0.1:{port} failed: Incompatible version (1.5 instead of 2.0)"),
])
def test_a_port_that_is_not_ssh_is_one_line_naming_host_and_cause(handle, cause):
    with tcp_server(handle) as port:
        proc = connect_in_a_fresh_process(port, timeout=0.5)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""  # no paramiko traceback
    assert proc.stdout.strip().startswith("h1: " + cause.format(port=port))
    assert len(proc.stdout.strip().splitlines()) == 1


def test_refused_port_names_the_cause():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = connect_in_a_fresh_process(port)
    assert proc.stderr == ""
    assert proc.stdout.strip() == f"h1: cannot connect to 127.0.0.1:{port}: connection refused"
