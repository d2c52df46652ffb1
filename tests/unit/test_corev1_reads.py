"""nodeboot.cluster.corev1: the reads every run makes (a Node, a ConfigMap, the Node list
and watch) go to the same paths, with the same credentials, and come back as the same
model objects and errors as the generated CoreV1Api's, without importing its module;
any other call is the generated class's. A real loopback HTTP server; the real client."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from loopback import kubeconfig_for
from nodeboot.app import cluster_facts
from nodeboot.cluster import tokens
from nodeboot.cluster.client import Cluster, short_api_error
from nodeboot.steps.base import RunOptions

NODE = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1", "labels": {"a": "b"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def _ca_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


CA_PEM = _ca_pem()
CA_PIN = tokens.spki_hash(x509.load_pem_x509_certificate(CA_PEM))
CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
CONFIG_MAP = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cluster-info", "namespace": "kube-public"},
              "data": {"kubeconfig": yaml.safe_dump({"clusters": [{"name": "", "cluster": {
                  "server": "https://10.0.0.1:6443",
                  "certificate-authority-data": base64.b64encode(CA_PEM).decode()}}]})}}
VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0", "gitCommit": "", "gitTreeState": "", "buildDate": "",
           "goVersion": "", "compiler": "gc", "platform": "linux/amd64"}
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
             "message": 'nodes "gone" not found'}


class Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str | None]] = []  # (path with query, Authorization header)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Recorder
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        path = self.path.split("?")[0]
        status, body = {
            "/api/v1/nodes/n1": (200, NODE),
            CLUSTER_INFO: (200, CONFIG_MAP),
            "/version/": (200, VERSION),
            "/api/v1/nodes": (200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"},
                                    "items": [NODE]}),
            "/api/v1/namespaces/kube-system/pods": (200, {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                                          "items": []}),
        }.get(path, (404, NOT_FOUND))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def api_server(tmp_path: Path) -> Iterator[tuple[Recorder, Path]]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, kubeconfig_for(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_reads_come_back_as_the_generated_methods_return_them(tmp_path):
    with api_server(tmp_path) as (server, kubeconfig):
        core = Cluster.from_kubeconfig(str(kubeconfig)).core
        node = core.read_node("n1")
        config_map = core.read_namespaced_config_map("cluster-info", "kube-public")
    assert isinstance(node, client.V1Node) and node.metadata.labels == {"a": "b"}
    assert node.status.conditions[0].type == "Ready"
    assert isinstance(config_map, client.V1ConfigMap) and config_map.data == CONFIG_MAP["data"]
    assert server.requests == [("/api/v1/nodes/n1", "Bearer abc"),
                               ("/api/v1/namespaces/kube-public/configmaps/cluster-info", "Bearer abc")]


def test_a_missing_object_raises_the_clients_api_exception_with_the_servers_message(tmp_path):
    with api_server(tmp_path) as (_server, kubeconfig):
        core = Cluster.from_kubeconfig(str(kubeconfig)).core
        with pytest.raises(client.ApiException) as missing:
            core.read_node("gone")
        with pytest.raises(client.ApiException) as no_config_map:
            core.read_namespaced_config_map("nope", "kube-system")
    assert missing.value.status == no_config_map.value.status == 404
    assert short_api_error(missing.value) == '404 Not Found: nodes "gone" not found'


def test_the_node_list_and_watch_query_is_spelled_as_the_api_spells_it(tmp_path):
    with api_server(tmp_path) as (server, kubeconfig):
        core = Cluster.from_kubeconfig(str(kubeconfig)).core
        response = core.node_list_response((5, 15), watch=True, resource_version="7", timeout_seconds=30,
                                           allow_watch_bookmarks=True)
        listing = json.loads(response.data)
        response.release_conn()
    assert listing["metadata"]["resourceVersion"] == "9"
    assert server.requests == [
        ("/api/v1/nodes?watch=true&resourceVersion=7&timeoutSeconds=30&allowWatchBookmarks=true", "Bearer abc")]


def test_other_calls_are_the_generated_classs(tmp_path):
    with api_server(tmp_path) as (server, kubeconfig):
        core = Cluster.from_kubeconfig(str(kubeconfig)).core
        pods = core.list_namespaced_pod("kube-system")
    assert isinstance(pods, client.V1PodList) and pods.items == []
    assert server.requests[-1][0] == "/api/v1/namespaces/kube-system/pods"


def test_the_reads_do_not_import_the_generated_core_module(tmp_path):
    """The point of the module: in a fresh process, a run's reads leave core_v1_api unimported."""
    with api_server(tmp_path) as (_server, kubeconfig):
        code = ("import sys; from nodeboot.cluster.client import Cluster; "
                f"core = Cluster.from_kubeconfig({str(kubeconfig)!r}).core; "
                "core.read_node('n1'); core.read_namespaced_config_map('cluster-info', 'kube-public'); "
                "core.node_list_response(5).release_conn(); "
                "print('kubernetes.client.api.core_v1_api' in sys.modules)")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_a_joins_cluster_facts_read_cluster_info_once_for_endpoint_and_ca_pin(tmp_path):
    with api_server(tmp_path) as (server, kubeconfig):
        cluster = Cluster.from_kubeconfig(str(kubeconfig))
        facts = cluster_facts(cluster, RunOptions(ca_cert_hashes=(CA_PIN,)), need_join=True)
        wrong = cluster_facts(cluster, RunOptions(ca_cert_hashes=("sha256:" + "0" * 64,)), need_join=True)
    assert (facts.endpoint, facts.ca_hashes, facts.ca_problem) == ("10.0.0.1:6443", (CA_PIN,), None)
    assert wrong.ca_problem is not None and CA_PIN in wrong.ca_problem and "--ca-cert-hash" in wrong.ca_problem
    assert [path for path, _ in server.requests].count(CLUSTER_INFO) == 2  # one per run
