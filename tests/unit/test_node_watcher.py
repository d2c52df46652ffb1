"""The shared Node watch (issue 14 items 0 and 11): it backs off and gives up when the
server's watch keeps ending at once, stop() ends it at once even while its thread sits
inside a TLS read, and a host's question about its Node is answered from the first
listing (issue 17). A real loopback HTTP(S) server; the real kubernetes client."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from loopback import kubeconfig_for
from nodeboot.cluster.client import Cluster
from nodeboot.cluster.nodes import NodeWatcher, WatchBackoff, is_ready
from nodeboot.errors import ClusterError


def node_list(names: list[str]) -> str:
    items = [{"metadata": {"name": name, "resourceVersion": "7"}} for name in names]
    return json.dumps({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": items})


class FakeNodesAPI(http.server.ThreadingHTTPServer):
    """GET /api/v1/nodes: a list, or a watch that either ends at once or stays open and silent."""

    daemon_threads = True

    def __init__(self, watch_mode: str) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.watch_mode = watch_mode  # "end" | "hang"
        self.lists = 0
        self.watches = 0
        self.watching = threading.Event()
        self.release = threading.Event()
        self.nodes: list[str] = []  # the Nodes the list answers with
        self.list_gate = threading.Event()  # the list answers once this is set
        self.list_gate.set()
        self.paths: list[str] = []


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeNodesAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.paths.append(self.path.split("?")[0])
        if "watch=true" not in self.path.lower():
            self.server.lists += 1
            self.server.list_gate.wait(60)
            body = node_list(self.server.nodes).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.server.watches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.server.watch_mode == "end":
            self.send_header("Content-Length", "0")  # the watch is over before it began
            self.end_headers()
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.server.watching.set()
        self.server.release.wait(120)  # silent, as an idle cluster's watch is
        self.close_connection = True


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(hours=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def fake_api(tmp_path: Path, watch_mode: str, tls: bool = False) -> Iterator[tuple[FakeNodesAPI, Cluster]]:
    server = FakeNodesAPI(watch_mode)
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self_signed(tmp_path))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = kubeconfig_for(tmp_path, f"{scheme}://127.0.0.1:{server.server_address[1]}")
    try:
        yield server, Cluster.from_kubeconfig(str(kubeconfig))
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


# -- 11: a watch that ends at once ---------------------------------------------------------
def test_watch_that_ends_at_once_backs_off_and_gives_up(tmp_path):
    with fake_api(tmp_path, "end") as (server, cluster):
        watcher = NodeWatcher(cluster, give_up_failures=5, give_up_after=0, backoff=WatchBackoff(0.01, 0.05))
        with pytest.raises(ClusterError) as gave_up:
            watcher.wait_for("n1", is_ready, timeout=120)
        watcher.stop()
        assert not watcher._thread.is_alive()
        # One listing, then one watch per try: 5 tries, not thousands.
        assert (server.lists, server.watches) == (1, 5)
    assert watcher.requests == 6
    text = str(gave_up.value)
    assert text.startswith("node n1: the Node watch on http://127.0.0.1:")
    assert "failed 5 times in a row" in text and "gave up: the watch ended at once with nothing seen" in text


def test_backoff_doubles_up_to_its_cap_with_half_of_it_random():
    backoff = WatchBackoff(base=0.5, cap=8.0, rng=lambda: 0.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert [backoff.delay(n) for n in (1, 4, 9)] == [0.25, 2, 4]
    assert WatchBackoff(0.5, 8.0, rng=lambda: 1.0).delay(4) == 4


def test_default_bounds_outlast_an_api_server_restart():
    """Given up only after 10 failures spanning 2 minutes: an outage the rest of nodeboot
    rides out (retry.OUTAGE_TIMEOUT) never fails a wait, and the requests stay few."""
    from nodeboot.cluster.retry import OUTAGE_TIMEOUT

    watcher = NodeWatcher(cluster=None)  # type: ignore[arg-type] - only its bounds are read
    assert watcher.give_up_after > OUTAGE_TIMEOUT and watcher.give_up_failures >= 5
    lowest = WatchBackoff(rng=lambda: 0.0)
    # Over the give-up span, at the shortest delays, at most ~40 tries.
    spent, tries = 0.0, 0
    while spent < watcher.give_up_after:
        tries += 1
        spent += lowest.delay(tries)
    assert tries < 40


# -- 0: stop() ends a watch blocked in a TLS read ------------------------------------------
def test_stop_ends_a_watch_blocked_in_a_tls_read(tmp_path):
    with fake_api(tmp_path, "hang", tls=True) as (server, cluster):
        watcher = NodeWatcher(cluster).start()
        assert server.watching.wait(60), "the watch never started"
        watcher.stop()
        # stop() returned: the thread is gone, though the server has not said a word.
        assert not watcher._thread.is_alive()
        assert not server.release.is_set()
        assert server.watches == 1


# -- issue 17: a re-run's hosts ask the listing, not the API server one by one --------------
def test_listed_waits_for_the_first_listing_and_reads_no_node_alone(tmp_path):
    with fake_api(tmp_path, "hang") as (server, cluster):
        server.nodes = ["n1"]
        server.list_gate.clear()
        watcher = NodeWatcher(cluster)
        answer: dict = {}
        asking = threading.Thread(target=lambda: answer.update(node=watcher.listed("n1")), daemon=True)
        asking.start()
        asking.join(0.5)
        assert asking.is_alive(), "listed() answered before the listing came"
        server.list_gate.set()
        asking.join(30)
        assert answer["node"].metadata.name == "n1"
        assert watcher.listed("n2") is None  # not there: the caller reads it itself
        watcher.stop()
        assert set(server.paths) == {"/api/v1/nodes"} and server.lists == 1
