"""The lab's control plane, initialised the way kubeadm does it.

kubeadm's own `init phase` commands write the certificates, kubeconfigs and
static-pod manifests inside the control plane's sandbox; with no kubelet to
run static pods, the lab reads each manifest's command line and runs it as a
plain process in the same sandbox. The cluster-side phases (upload-config,
bootstrap-token, addon kube-proxy) then run against the live API server.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from nodeboot.node_layout import LINUX_CRI_SOCKET
from nodeboot_lab.netns import LabError, Sandbox, run_in, start_in

API_PORT = 6443
POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/12"
# A dual-stack lab's IPv6 ranges (ULA, fd00::/8: never routed). kubeadm hands both families
# to kube-apiserver (--service-cluster-ip-range), kube-controller-manager (--cluster-cidr,
# with --allocate-node-cidrs: a /64 per node) and kube-proxy (clusterCIDR).
POD_SUBNET6 = "fd00:10:244::/56"
SERVICE_SUBNET6 = "fd00:10:96::/112"
# Order matters: etcd before the API server, the API server before its clients.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# What the kubelet does for static pods: a component that exits (kube-controller-manager
# does, on losing its leader lease while the API server is away) is started again.
SUPERVISE = 'while :; do "$@"; echo "lab: ${1##*/} exited ($?); restarting in 1s" >&2; sleep 1; done'


@dataclass
class ControlPlane:
    box: Sandbox
    bin_dir: Path
    version: str
    state: Path  # the lab state dir
    dual_stack: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.box.address}:{API_PORT}"

    @property
    def etc_kubernetes(self) -> Path:
        return self.box.private_paths["/etc/kubernetes"]

    def kubeadm_config(self) -> str:
        docs = [
            {
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "InitConfiguration",
                "localAPIEndpoint": {"advertiseAddress": self.box.address, "bindPort": API_PORT},
                "nodeRegistration": {
                    "name": self.box.hostname,
                    "criSocket": LINUX_CRI_SOCKET,
                },
                # kubeadm would invent a token otherwise; the lab starts with none.
                "bootstrapTokens": [
                    {"token": "labini.0000000000000000", "ttl": "1s", "usages": ["signing", "authentication"]}
                ],
            },
            {
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "ClusterConfiguration",
                "kubernetesVersion": self.version,
                "clusterName": "nodeboot-lab",
                "controlPlaneEndpoint": self.endpoint,
                "certificatesDir": "/etc/kubernetes/pki",
                "networking": self.networking(),
                "apiServer": {"certSANs": [self.box.address, "127.0.0.1", self.box.hostname]},
                "etcd": {"local": {"dataDir": "/var/lib/etcd"}},
            },
            {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "iptables"},
        ]
        return yaml.safe_dump_all(docs, sort_keys=False)

    def networking(self) -> dict[str, str]:
        if self.dual_stack:
            return {"podSubnet": f"{POD_SUBNET},{POD_SUBNET6}", "serviceSubnet": f"{SERVICE_SUBNET},{SERVICE_SUBNET6}"}
        return {"podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET}

    def kubeadm(self, *args: str) -> str:
        cfg = "/etc/kubernetes/nodeboot-lab-kubeadm.yaml"
        out = run_in(self.box, [str(self.bin_dir / "kubeadm"), *args, "--config", cfg, "-v", "1"], check=False)
        if out.returncode != 0:
            raise LabError(f"lab: kubeadm {' '.join(args)} failed: {out.stderr.strip()[-800:]}")
        return out.stdout

    def init_files(self) -> None:
        (self.etc_kubernetes / "nodeboot-lab-kubeadm.yaml").write_text(self.kubeadm_config())
        self.kubeadm("init", "phase", "certs", "all")
        self.kubeadm("init", "phase", "kubeconfig", "all")
        self.kubeadm("init", "phase", "etcd", "local")
        self.kubeadm("init", "phase", "control-plane", "all")

    def manifest_command(self, component: str) -> list[str]:
        manifest = yaml.safe_load((self.etc_kubernetes / "manifests" / f"{component}.yaml").read_text())
        container = manifest["spec"]["containers"][0]
        argv = list(container.get("command", [])) + list(container.get("args", []))
        argv[0] = str(self.bin_dir / Path(argv[0]).name)
        return argv

    def start(self, log_dir: Path) -> dict[str, int]:
        pids: dict[str, int] = {}
        for component in COMPONENTS:
            argv = ["bash", "-c", SUPERVISE, "supervise", *self.manifest_command(component)]
            pids[component] = start_in(self.box, argv, log_dir / f"{component}.log")
            if component == "etcd":
                self._wait_port(2379, "etcd", log_dir)
            elif component == "kube-apiserver":
                self.wait_ready(log_dir)
        return pids

    def _wait_port(self, port: int, what: str, log_dir: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = run_in(self.box, ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise LabError(f"lab: {what} did not listen on {port} within {timeout:.0f}s; see {log_dir}/{what}.log")

    def _ssl_context(self) -> ssl.SSLContext:
        admin = yaml.safe_load((self.state / "admin.conf").read_text())
        ctx = ssl.create_default_context(cafile=str(self.etc_kubernetes / "pki" / "ca.crt"))
        cert_dir = self.state / "admin-cert"
        cert_dir.mkdir(mode=0o700, exist_ok=True)
        import base64

        user = admin["users"][0]["user"]
        (cert_dir / "crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
        (cert_dir / "key").write_bytes(base64.b64decode(user["client-key-data"]))
        (cert_dir / "key").chmod(0o600)
        ctx.load_cert_chain(str(cert_dir / "crt"), str(cert_dir / "key"))
        return ctx

    def wait_ready(self, log_dir: Path, timeout: float = 90) -> None:
        """Poll /readyz: the API server is the one thing the lab polls, at start-up only."""
        ctx = None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                ctx = ctx or self._ssl_context()
                with urllib.request.urlopen(f"https://{self.endpoint}/readyz", context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                last = str(exc)
            time.sleep(0.3)
        raise LabError(f"lab: kube-apiserver not ready in {timeout:.0f}s ({last}); see {log_dir}/kube-apiserver.log")

    def init_cluster_side(self) -> None:
        self.kubeadm("init", "phase", "upload-config", "all")
        self.kubeadm("init", "phase", "bootstrap-token")
        self.kubeadm("init", "phase", "addon", "kube-proxy")

    def server_version(self) -> str:
        ctx = self._ssl_context()
        with urllib.request.urlopen(f"https://{self.endpoint}/version", context=ctx, timeout=5) as resp:
            return json.load(resp)["gitVersion"]
