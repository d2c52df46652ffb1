"""What a real node fetches in the lab: the artifact mirror and the OCI registry.

Both run in one sandbox ("mirror", a network namespace on the lab bridge at
SUBNET.3), with TLS certificates from the lab CA:

- https://SUBNET.3:8443/  the mirror tree (upstream layout, node_artifacts),
  this lab's own copy under STATE/node-services/mirror;
- https://SUBNET.3:5000/  distribution's registry (built from its Go module),
  filesystem storage under STATE/node-services/registry, holding the images of
  container_images pushed under their registry.k8s.io paths, so a node reaches
  it only as a containerd mirror of registry.k8s.io.

STATE/node-services/services.json records the namespace and PIDs; stop()
kills those PIDs, then the namespace and anything left in it.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nodeboot_lab import pki, python_path
from nodeboot_lab.netns import LabError, Sandbox, create_sandbox, destroy_sandbox, kill_pids, sh, start_in, veth_name
from nodeboot_lab.node_mirror import NodeCache, lab_copy
from nodeboot_lab.oci import Layout, RegistryClient, push_image

HOST_NUMBER = 3  # SUBNET.3: the control plane is .2, hosts start at .11
MIRROR_PORT = 8443
REGISTRY_PORT = 5000
UPSTREAM_REGISTRY = "registry.k8s.io"
RECORD = "services.json"
Log = Callable[[str], None]


@dataclass
class NodeServices:
    netns: str
    address: str
    artifacts_url: str
    registry_url: str
    ca: str
    pids: list[int] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # ref -> manifest digest

    @property
    def registry_mirror(self) -> str:
        """nodeboot's --registry-mirror value: which registry this one mirrors."""
        return f"{UPSTREAM_REGISTRY}={self.registry_url}"

    def env(self) -> dict[str, str]:
        return {"artifacts_url": self.artifacts_url, "registry_mirror": self.registry_mirror, "lab_ca": self.ca}


def services_dir(state: Path) -> Path:
    return state / "node-services"


def load(state: Path) -> NodeServices | None:
    path = services_dir(state) / RECORD
    if not path.exists():
        return None
    return NodeServices(**json.loads(path.read_text()))


def _save(state: Path, services: NodeServices) -> None:
    (services_dir(state) / RECORD).write_text(json.dumps(asdict(services), indent=2))


def _sandbox(state: Path, prefix: str, subnet: str) -> Sandbox:
    return Sandbox(name=f"{prefix}-mirror", hostname="lab-mirror", address=f"{subnet}.{HOST_NUMBER}", prefix=24,
                   root=services_dir(state))


def _registry_config(root: Path, address: str, crt: Path, key: Path) -> Path:
    config = root / "registry.yml"
    config.write_text(json.dumps({  # JSON is YAML; no dumper needed
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(root / "registry")}, "delete": {"enabled": True}},
        "http": {"addr": f"{address}:{REGISTRY_PORT}", "tls": {"certificate": str(crt), "key": str(key)}},
    }, indent=2))
    return config


def _wait_listening(address: str, port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise LabError(f"lab: the {what} is not listening on {address}:{port} after {timeout:.0f}s")


def start(state: Path, cache: NodeCache, prefix: str, subnet: str, bridge: str, log: Log = print) -> NodeServices:
    """Start the mirror and the registry in their sandbox and push the images."""
    started = time.monotonic()
    stop(state)
    root = services_dir(state)
    shutil.rmtree(root / "registry", ignore_errors=True)  # a new lab starts from an empty registry
    root.mkdir(parents=True, exist_ok=True)
    box = _sandbox(state, prefix, subnet)
    ca_crt, ca_key = pki.make_ca(state / "winrm")  # the one lab CA (WinRM endpoints use it too)
    crt, key = pki.make_server_cert(ca_crt, ca_key, root / "tls", box.hostname, [box.address])
    tree = lab_copy(cache, root / "mirror")
    services = NodeServices(netns=box.name, address=box.address,
                            artifacts_url=f"https://{box.address}:{MIRROR_PORT}",
                            registry_url=f"https://{box.address}:{REGISTRY_PORT}", ca=str(ca_crt))
    _save(state, services)  # first, so a crash mid-way is still cleaned up
    create_sandbox(box, bridge, f"{subnet}.1")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": python_path()}
    services.pids.append(start_in(box, [
        sys.executable, "-m", "nodeboot_lab.mirror_server", "--root", str(tree), "--listen", box.address,
        "--port", str(MIRROR_PORT), "--cert", str(crt), "--key", str(key)], root / "mirror.log", env=env))
    # The registry would otherwise try to export traces to an OpenTelemetry collector.
    registry_env = {**env, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                    "OTEL_LOGS_EXPORTER": "none"}
    config = _registry_config(root, box.address, crt, key)
    services.pids.append(start_in(box, [str(cache.registry_bin), "serve", str(config)], root / "registry.log",
                                  env=registry_env))
    _save(state, services)
    _wait_listening(box.address, MIRROR_PORT, "artifact mirror")
    _wait_listening(box.address, REGISTRY_PORT, "registry")
    services.images = push_images(services, cache)
    _save(state, services)
    log(f"lab: mirror {services.artifacts_url} and registry {services.registry_url} up with "
        f"{len(services.images)} images in {time.monotonic() - started:.1f}s")
    return services


def push_images(services: NodeServices, cache: NodeCache) -> dict[str, str]:
    # Pushed from the root namespace: it holds the bridge's gateway address.
    client = RegistryClient(services.registry_url, Path(services.ca))
    client.ping()
    layout = Layout(cache.images)
    return {ref: push_image(layout, ref, client) for ref in layout.images()}


def stop(state: Path) -> list[str]:
    """Kill the recorded processes, then remove the namespace; return what was removed."""
    services = load(state)
    if services is None:
        return []
    kill_pids(services.pids)
    box_dir = services_dir(state) / "ns"
    destroy_sandbox(services.netns, box_dir)
    sh("ip", "link", "del", veth_name(services.netns), check=False)
    (services_dir(state) / RECORD).unlink(missing_ok=True)
    return [f"netns {services.netns} (mirror, registry)"]
