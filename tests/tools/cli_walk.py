"""Count the distinct nodeboot functions one `nodeboot join` passes through, from main() to the
host and back, per OS (native engine).

usage: PYTHONPATH=bootstrap:tests/unit:tests .venv/bin/python tests/tools/cli_walk.py linux|windows [--list]

Real: everything in nodeboot from cli main() down (parsing, selection, settings, app, Fleet,
run_workflow, the phases, scripts, parse_result, output, summary). Stand-ins, from
tests/unit/test_golden_inputs.py (as the golden tests use them): the transport (records scripts,
answers canned JSON), the Kubernetes API (CoreV1 only), the token ledger and the Node watch;
Cluster.from_kubeconfig returns the fake cluster, cluster.windows.apply returns one change.
Counted: functions whose code lives under the tree's bootstrap/nodeboot, seen by sys.setprofile
and threading.setprofile (the hosts run in pool threads) while main() runs; `<module>` bodies of
lazily imported modules and comprehensions/lambdas are reported separately.
"""
from __future__ import annotations

import base64
import datetime as dt
import os
import sys
import tempfile
import threading
from collections import Counter

import test_golden_inputs as g
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import nodeboot
from nodeboot import runner
from nodeboot.cluster import client as cluster_client
from nodeboot.cluster import nodes as cluster_nodes
from nodeboot.cluster import tokens as cluster_tokens
from nodeboot.cluster import windows as cluster_windows

OS = sys.argv[1]
LIST = "--list" in sys.argv
ROOT = os.path.dirname(nodeboot.__file__)


def ca_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


PEM = ca_pem()
PIN = cluster_tokens.spki_hash(x509.load_pem_x509_certificate(PEM))
INFO_KUBECONFIG = yaml.safe_dump({"clusters": [{"name": "", "cluster": {
    "server": "https://10.0.0.1:6443", "certificate-authority-data": base64.b64encode(PEM).decode()}}]})


class Core(g.FakeCore):
    def read_namespaced_config_map(self, name, namespace):
        cm = super().read_namespaced_config_map(name, namespace)
        cm.data["kubeconfig"] = INFO_KUBECONFIG
        return cm


class Cluster(g.FakeCluster):
    version = (1, 37, "v1.37.2")
    kubeconfig = "fake-kubeconfig"
    server = "https://10.0.0.1:6443"


CLUSTER = Cluster(core=Core())


class Ledger:
    """The token ledger the runner makes for a cluster: tokens as the golden tests' FakeTokens makes them."""

    def __init__(self, cluster=None) -> None:
        self.fake = g.FakeTokens()
        self.created = 0
        self.earlier_deleted: list[str] = []

    def create(self, node: str):
        self.created += 1
        return self.fake.create(node)

    def delete(self, token) -> None:
        self.fake.delete(token)

    def delete_all(self) -> list[str]:
        return []


class Watcher(g.FakeWatcher):
    def __init__(self, cluster=None) -> None:
        super().__init__(CLUSTER)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


ANSWERS = {
    "linux": {"facts.sh": [{"changed": False, "facts": g.LINUX_READY}]},
    "windows": {"facts.ps1": [{"changed": False, "facts": g.WINDOWS_BARE}],
                "prepare.ps1": [{"facts": {"reboot_required": False}}],
                "kubelet.ps1": [{"facts": {"kubelet_version": "v1.37.2", "kubeadm_version": "v1.37.2"}}]},
}
TRANSPORTS: list[g.RecordingTransport] = []


def make_transport(host, defaults, redactor):
    t = g.RecordingTransport(host, CLUSTER, {k: list(v) for k, v in ANSWERS[host.os].items()})
    TRANSPORTS.append(t)
    return t


cluster_client.Cluster.from_kubeconfig = classmethod(lambda cls, path=None, context=None: CLUSTER)
cluster_tokens.TokenLedger = Ledger
cluster_nodes.NodeWatcher = Watcher
cluster_windows.apply = lambda cluster, cni: ["kube-proxy-windows DaemonSet created"]
runner.make_transport = make_transport

log_dir = tempfile.mkdtemp()
os.environ["NB_WALK_PW"] = "not-a-real-password"
argv = {"linux": ["join", "192.0.2.11", "--node-name", "web-1"],
        "windows": ["join", "192.0.2.21", "--os", "windows", "--node-name", "win-1", "--user", "Administrator",
                    "--password-env", "NB_WALK_PW", "--artifacts-url", "https://mirror.example/win",
                    "--cni", "flannel"]}[OS]
argv += ["--kubeconfig", "fake-kubeconfig", "--ca-cert-hash", PIN, "--output", "json", "--log-dir", log_dir]

seen: Counter = Counter()


def profile(frame, event, arg):
    if event == "call":
        code = frame.f_code
        if code.co_filename.startswith(ROOT):
            seen[(os.path.relpath(code.co_filename, ROOT), code.co_firstlineno, code.co_qualname)] += 1


from nodeboot.cli import main  # noqa: E402  (imported before counting: the walk starts at main())

sys.argv = ["nodeboot", *argv]
out = tempfile.TemporaryFile("w+")  # noqa: SIM115 - stdout for the run, read back after it
real_stdout = sys.stdout
sys.stdout = out
threading.setprofile(profile)
sys.setprofile(profile)
try:
    main()
except SystemExit as exc:
    code = exc.code
finally:
    sys.setprofile(None)
    threading.setprofile(None)
    sys.stdout = real_stdout
out.seek(0)
events = [yaml.safe_load(line) for line in out if line.startswith("{")]
summary = [e for e in events if e.get("event") == "host"]
print(f"exit {code}; hosts: {[(e['host'], e['status'], e.get('detail')) for e in summary]}; "
      f"scripts: {[s.name for t in TRANSPORTS for s in t.sent]}")
funcs = {k for k in seen if not k[2].split(".")[-1].startswith("<")}
others = {k for k in seen if k not in funcs}
by_file: Counter = Counter(k[0] for k in funcs)
print(f"{OS}: {len(funcs)} distinct nodeboot functions (+{len(others)} module bodies/lambdas/comprehensions)")
for f, n in sorted(by_file.items()):
    print(f"  {n:3d} {f}")
if LIST:
    for k in sorted(funcs):
        print("   ", *k)
