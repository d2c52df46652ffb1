"""The lab's kubelet stand-in: what a kubelet does toward the API server, and
nothing toward containers (no cgroup controllers here, so a real kubelet
cannot run).

Started by the systemctl stand-in inside a lab host's namespaces, it:
- does the real TLS bootstrap: CSR signed by the bootstrap token's kubeconfig,
  approved and signed by the real kube-controller-manager, client cert written
  and /etc/kubernetes/kubelet.conf pointed at it, as the kubelet does;
- registers the Node with the kubelet's labels, flags-given labels and taints,
  and keeps it Ready with Lease renewals and status heartbeats;
- answers 127.0.0.1:10248/healthz, which kubeadm join waits for;
- reports pods bound to its node Running and Ready (no container runs) and
  completes their graceful deletion, so rollouts, drains and
  PodDisruptionBudgets behave as they do on a real cluster.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import platform
import shlex
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

KUBELET_CONF = Path("/etc/kubernetes/kubelet.conf")
BOOTSTRAP_CONF = Path("/etc/kubernetes/bootstrap-kubelet.conf")
FLAGS_ENV = Path("/var/lib/kubelet/kubeadm-flags.env")
PKI = Path("/var/lib/kubelet/pki")
LEASE_SECONDS = 40
RENEW_EVERY = 10.0


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def log(msg: str) -> None:
    print(f"{now()} kubelet-standin: {msg}", flush=True)


class Api:
    """A few REST calls with client-certificate auth; enough for a kubelet."""

    def __init__(self, kubeconfig: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        self.server = cluster["server"].rstrip("/")
        ctx = ssl.create_default_context()
        ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        ctx.load_verify_locations(cadata=ca_pem)
        self.token = user.get("token")
        if "client-certificate" in user:
            ctx.load_cert_chain(user["client-certificate"], user.get("client-key", user["client-certificate"]))
        self.ctx = ctx

    def call(self, method: str, path: str, body: dict | None = None, content_type: str = "application/json",
             timeout: float = 10) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")

    def stream(self, path: str, timeout: float):
        req = urllib.request.Request(self.server + path)
        req.add_header("Accept", "application/json")
        resp = urllib.request.urlopen(req, context=self.ctx, timeout=timeout)
        with resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)


def read_flags() -> dict[str, str]:
    """kubeadm-flags.env plus /etc/default/kubelet, as the kubelet unit would pass them."""
    flags: dict[str, str] = {}
    for path, var in ((FLAGS_ENV, "KUBELET_KUBEADM_ARGS"), (Path("/etc/default/kubelet"), "KUBELET_EXTRA_ARGS")):
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.startswith(var + "="):
                value = line.split("=", 1)[1].strip().strip('"')
                for arg in shlex.split(value):
                    if arg.startswith("--") and "=" in arg:
                        key, val = arg[2:].split("=", 1)
                        flags[key] = val
    return flags


def bootstrap(node: str) -> None:
    """TLS bootstrap: key, CSR, wait for the controller manager to sign, write kubelet.conf."""
    if KUBELET_CONF.exists():
        return
    api = Api(BOOTSTRAP_CONF)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    name = f"node-csr-{node}-{int(time.time())}"
    api.call(
        "POST",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {
                "request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
            },
        },
    )
    log(f"CSR {name} created; waiting for approval and signature")
    cert_b64 = ""
    deadline = time.monotonic() + 300
    while not cert_b64 and time.monotonic() < deadline:
        obj = api.call("GET", f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}")
        cert_b64 = obj.get("status", {}).get("certificate", "")
        if not cert_b64:
            time.sleep(0.25)
    if not cert_b64:
        raise SystemExit(f"CSR {name} was not signed within 300s")
    PKI.mkdir(parents=True, exist_ok=True)
    pem = base64.b64decode(cert_b64) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    current = PKI / "kubelet-client-current.pem"
    stamped = PKI / f"kubelet-client-{dt.datetime.now(dt.UTC):%Y-%m-%d-%H-%M-%S}.pem"
    stamped.write_bytes(pem)
    stamped.chmod(0o600)
    if current.exists() or current.is_symlink():
        current.unlink()
    current.symlink_to(stamped)
    boot = yaml.safe_load(BOOTSTRAP_CONF.read_text())
    conf = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": boot["clusters"][0]["cluster"]}],
        "contexts": [{"name": "default-context", "context": {"cluster": "default-cluster", "user": "default-auth",
                                                              "namespace": "default"}}],
        "current-context": "default-context",
        "users": [{"name": "default-auth", "user": {"client-certificate": str(current), "client-key": str(current)}}],
    }
    tmp = KUBELET_CONF.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(conf))
    tmp.chmod(0o600)
    tmp.rename(KUBELET_CONF)
    log("TLS bootstrap complete: kubelet.conf written")


class Kubelet:
    def __init__(self, node: str, flags: dict[str, str], os_name: str) -> None:
        self.node = node
        self.flags = flags
        self.os_name = os_name
        self.api = Api(KUBELET_CONF)
        self.stop = threading.Event()
        self.node_ip = flags.get("node-ip", "").split(",")[0] or host_ip()

    def node_object(self) -> dict:
        labels = {
            "kubernetes.io/os": self.os_name,
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": self.node,
            "beta.kubernetes.io/os": self.os_name,
            "beta.kubernetes.io/arch": "amd64",
        }
        for item in filter(None, self.flags.get("node-labels", "").split(",")):
            key, _, value = item.partition("=")
            labels[key] = value
        taints = []
        for item in filter(None, self.flags.get("register-with-taints", "").split(",")):
            key_value, _, effect = item.partition(":")
            key, _, value = key_value.partition("=")
            taints.append({"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect})
        spec = {"taints": taints} if taints else {}
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": labels}, "spec": spec}

    def status(self) -> dict:
        stamp = now()

        def cond(kind: str, status: str, reason: str) -> dict:
            return {"type": kind, "status": status, "reason": reason, "message": "lab kubelet stand-in",
                    "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}

        return {
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                cond("Ready", "True", "KubeletReady"),
            ],
            "addresses": [{"type": "InternalIP", "address": self.node_ip}, {"type": "Hostname", "address": self.node}],
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": self.node, "systemUUID": self.node, "bootID": str(os.getpid()),
                "kernelVersion": platform.release(), "osImage": f"nodeboot lab ({self.os_name})",
                "containerRuntimeVersion": "containerd://lab", "kubeletVersion": os.environ["NB_LAB_K8S_VERSION"],
                "kubeProxyVersion": "", "operatingSystem": self.os_name, "architecture": "amd64",
            },
        }

    def register(self) -> None:
        try:
            self.api.call("POST", "/api/v1/nodes", self.node_object())
            log(f"registered Node {self.node}")
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
        self.report_status()

    def report_status(self) -> None:
        self.api.call("PATCH", f"/api/v1/nodes/{self.node}/status", {"status": self.status()},
                      "application/strategic-merge-patch+json")

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_now()}
        try:
            self.api.call("PATCH", path, {"spec": spec}, "application/merge-patch+json")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            self.api.call("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                          {"metadata": {"name": self.node}, "spec": spec})

    def heartbeat_loop(self) -> None:
        beats = 0
        while not self.stop.is_set():
            try:
                self.renew_lease()
                if beats % 4 == 0:
                    self.report_status()
                beats += 1
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log(f"heartbeat failed (will retry): {exc}")
            self.stop.wait(RENEW_EVERY)

    # -- pods -------------------------------------------------------------
    def pod_loop(self) -> None:
        selector = f"spec.nodeName={self.node}"
        while not self.stop.is_set():
            try:
                listing = self.api.call("GET", f"/api/v1/pods?fieldSelector={selector}")
                for pod in listing.get("items", []):
                    self.sync_pod(pod)
                rv = listing["metadata"]["resourceVersion"]
                for event in self.api.stream(
                    f"/api/v1/pods?watch=1&fieldSelector={selector}&resourceVersion={rv}&timeoutSeconds=60",
                    timeout=90,
                ):
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self.sync_pod(event["object"])
                    if self.stop.is_set():
                        return
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                log(f"pod watch interrupted (will resume): {exc}")
                self.stop.wait(1.0)

    def sync_pod(self, pod: dict) -> None:
        meta, status = pod["metadata"], pod.get("status", {})
        ns, name = meta["namespace"], meta["name"]
        try:
            if meta.get("deletionTimestamp"):
                # Containers would be stopped here; then the kubelet finishes the deletion.
                self.api.call("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}",
                              {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
                return
            if status.get("phase") == "Running":
                return
            self.api.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status",
                          {"status": self.running_status(pod)}, "application/merge-patch+json")
        except urllib.error.HTTPError as exc:
            if exc.code not in (404, 409):
                log(f"pod {ns}/{name}: {exc}")

    def running_status(self, pod: dict) -> dict:
        stamp = now()
        host_network = pod["spec"].get("hostNetwork", False)
        ip = self.node_ip if host_network else pod_ip(self.node, pod["metadata"]["name"])
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": stamp}
            for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled")
        ]
        containers = [
            {"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "started": True,
             "restartCount": 0, "state": {"running": {"startedAt": stamp}}}
            for c in pod["spec"]["containers"]
        ]
        return {"phase": "Running", "conditions": conditions, "containerStatuses": containers,
                "hostIP": self.node_ip, "hostIPs": [{"ip": self.node_ip}], "podIP": ip, "podIPs": [{"ip": ip}],
                "startTime": stamp}


def pod_ip(node: str, pod: str) -> str:
    # Stable per node and pod; nothing routes to it, it only has to look like a pod IP.
    return f"10.244.{zlib.crc32(node.encode()) % 250}.{zlib.crc32(pod.encode()) % 250 + 2}"


def host_ip() -> str:
    # The lab host's own address on the bridge: the source address toward the API server.
    try:
        server = Api(KUBELET_CONF).server.split("//", 1)[1].rsplit(":", 1)[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((server, 6443))
            return sock.getsockname()[0]
    except (OSError, IndexError):
        return "127.0.0.1"


class Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"ok"
        self.send_response(200 if self.path.startswith("/healthz") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def main() -> int:
    os_name = os.environ.get("NB_LAB_OS", "linux")
    flags = read_flags()
    node = (flags.get("hostname-override") or socket.gethostname()).lower()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 10248), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"starting for node {node}")
    while not stop.is_set():
        try:
            bootstrap(node)
            break
        except (urllib.error.URLError, OSError) as exc:
            log(f"bootstrap failed (will retry): {exc}")
            stop.wait(2.0)
    kubelet = Kubelet(node, flags, os_name)
    kubelet.stop = stop
    while not stop.is_set():
        try:
            kubelet.register()
            break
        except (urllib.error.URLError, OSError) as exc:
            log(f"register failed (will retry): {exc}")
            stop.wait(2.0)
    threading.Thread(target=kubelet.heartbeat_loop, daemon=True).start()
    threading.Thread(target=kubelet.pod_loop, daemon=True).start()
    stop.wait()
    server.shutdown()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
