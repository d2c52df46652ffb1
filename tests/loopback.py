"""Loopback helpers for tests: a directory served over plain HTTP on 127.0.0.1 (a fake
download mirror), a port that refuses connections, and a kubeconfig for a loopback server."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, logs nothing, and records each requested path on the server."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@contextmanager
def serve_directory(root: Path) -> Iterator[tuple[str, list[str]]]:
    """Yield the base URL and the list of paths requested so far; the server stops on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_RecordingHandler, directory=str(root)))
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: the kernel refuses connections to it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubeconfig_for(tmp_path: Path, server: str) -> Path:
    """A well-formed kubeconfig naming server, with a bearer token (nothing is asked of the
    server until a command runs)."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}\n"
        "users:\n- name: u\n  user: {token: abc}\n"
        "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
    )
    return path
