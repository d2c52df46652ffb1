"""The cluster side of Windows workers.

- kube-proxy for Windows: a HostProcess DaemonSet (NT AUTHORITY\\system, host
  network, image of the server's version) selected by kubernetes.io/os=windows.
- The CNI's Windows side: Flannel VXLAN (VNI 4096, UDP 4789, what Windows
  needs) or Calico through its operator (Installation windowsDataplane HNS).
- Linux DaemonSets (kube-proxy, the CNI's) pinned to kubernetes.io/os=linux, so
  they never land on a Windows node.

Manifests live in nodeboot/manifests and are rendered with the cluster's values.
Objects nodeboot owns carry the sha256 of their rendered manifest, so a re-run
that would change nothing makes no write.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from nodeboot.cluster.client import Cluster, short_api_error
from nodeboot.errors import ClusterError

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
HASH_ANNOTATION = "nodeboot.io/manifest-sha256"
OS_LABEL = "kubernetes.io/os"
KUBE_PROXY_IMAGE = "sigwindowstools/kube-proxy:{version}-{flavour}-hostprocess"
FLANNEL_IMAGE = "sigwindowstools/flannel:v0.26.1-hostprocess"
FLANNEL_VNI, FLANNEL_PORT = 4096, 4789
# (namespace, name) of Linux DaemonSets that must stay on Linux, by CNI.
LINUX_DAEMONSETS = {
    None: [("kube-system", "kube-proxy")],
    "flannel": [("kube-system", "kube-proxy"), ("kube-flannel", "kube-flannel-ds")],
    "calico": [("kube-system", "kube-proxy"), ("calico-system", "calico-node")],
}
CNIS = ("flannel", "calico")
LINUX_FLANNEL = ("kube-flannel", "kube-flannel-ds")


def render(name: str, values: dict[str, str]) -> list[dict[str, Any]]:
    text = string.Template((MANIFESTS / name).read_text()).substitute(values)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def pod_subnet(cluster: Cluster) -> str:
    try:
        cm = cluster.core.read_namespaced_config_map("kubeadm-config", "kube-system")
        cfg = yaml.safe_load((cm.data or {}).get("ClusterConfiguration", "")) or {}
        return str((cfg.get("networking") or {}).get("podSubnet") or "10.244.0.0/16").split(",")[0]
    except client.ApiException:
        return "10.244.0.0/16"


def desired(cluster: Cluster, cni: str | None) -> list[dict[str, Any]]:
    """The objects nodeboot owns for this CNI. Without one, none: kube-proxy for Windows comes in
    a flavour per CNI (its image and start script expect that CNI's HNS network), so nodeboot does
    not guess; both engines then only pin the Linux DaemonSets, which every CNI needs."""
    if cni is None:
        return []
    version = cluster.version[2].split("+")[0]
    docs = render("kube-proxy-windows.yaml", {"KUBE_PROXY_IMAGE": KUBE_PROXY_IMAGE.format(version=version,
                                                                                         flavour=cni)})
    if cni == "flannel":
        docs += render("flannel-windows.yaml", {"POD_SUBNET": pod_subnet(cluster), "FLANNEL_IMAGE": FLANNEL_IMAGE})
    for doc in docs:
        body = json.dumps(doc, sort_keys=True).encode()
        doc["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = hashlib.sha256(body).hexdigest()
    return docs


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    pin_linux: list[tuple[str, str]] = field(default_factory=list)
    flannel_backend: bool = False
    calico_patch: bool = False

    def pending(self) -> bool:
        return bool(self.create or self.update or self.pin_linux or self.flannel_backend or self.calico_patch)


def _read(cluster: Cluster, doc: dict[str, Any]) -> Any | None:
    kind, meta = doc["kind"], doc["metadata"]
    readers = {
        "Namespace": lambda: cluster.core.read_namespace(meta["name"]),
        "ServiceAccount": lambda: cluster.core.read_namespaced_service_account(meta["name"], meta["namespace"]),
        "ConfigMap": lambda: cluster.core.read_namespaced_config_map(meta["name"], meta["namespace"]),
        "DaemonSet": lambda: cluster.apps.read_namespaced_daemon_set(meta["name"], meta["namespace"]),
        "ClusterRole": lambda: cluster.rbac.read_cluster_role(meta["name"]),
        "ClusterRoleBinding": lambda: cluster.rbac.read_cluster_role_binding(meta["name"]),
    }
    try:
        return readers[kind]()
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise ClusterError(f"cannot read {kind} {meta['name']}: {short_api_error(exc)}") from None


def _flannel_backend_ok(cm: Any) -> bool:
    try:
        conf = json.loads((cm.data or {}).get("net-conf.json", "{}"))
    except ValueError:
        return False
    backend = conf.get("Backend") or {}
    return backend.get("Type") == "vxlan" and backend.get("VNI") == FLANNEL_VNI and backend.get("Port") == FLANNEL_PORT


def _refuse_live_vni_change(cluster: Cluster, cm: Any) -> None:
    """Flannel reads its VNI and port when it starts: rewriting them under running Linux flannel
    pods splits the overlay until every one restarts. nodeboot sets them only while no Linux
    flannel runs, and otherwise says how to make the change."""
    namespace, name = LINUX_FLANNEL
    try:
        cluster.apps.read_namespaced_daemon_set(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return
        raise ClusterError(f"cannot read DaemonSet {namespace}/{name}: {short_api_error(exc)}") from None
    try:
        backend = json.loads((cm.data or {}).get("net-conf.json", "{}")).get("Backend") or {}
    except ValueError:
        backend = {}
    raise ClusterError(
        f"--cni flannel: kube-flannel/kube-flannel-cfg has VXLAN VNI {backend.get('VNI', 1)}, port "
        f"{backend.get('Port', 8472)} (type {backend.get('Type', '?')}), and Windows needs VNI {FLANNEL_VNI}, port "
        f"{FLANNEL_PORT}; nodeboot does not change them under the running {namespace}/{name}, which would split "
        f"the overlay: set \"VNI\": {FLANNEL_VNI}, \"Port\": {FLANNEL_PORT} in the Backend of net-conf.json, run "
        f"'kubectl -n {namespace} rollout restart daemonset/{name}', wait for it, then join again")


def plan(cluster: Cluster, cni: str | None) -> Plan:
    if cni is not None and cni not in CNIS:
        raise ClusterError(f"--cni {cni!r}: expected one of {', '.join(CNIS)}")
    result = Plan()
    for doc in desired(cluster, cni):
        live = _read(cluster, doc)
        if live is None:
            result.create.append(doc)
        elif doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "kube-flannel-cfg":
            result.flannel_backend = not _flannel_backend_ok(live)  # the cluster's own: only the Backend is ours
            if result.flannel_backend:
                _refuse_live_vni_change(cluster, live)
        elif doc["kind"] in ("DaemonSet",):
            have = (live.metadata.annotations or {}).get(HASH_ANNOTATION)
            if have != doc["metadata"]["annotations"][HASH_ANNOTATION]:
                result.update.append(doc)
    for namespace, name in LINUX_DAEMONSETS[cni]:
        try:
            ds = cluster.apps.read_namespaced_daemon_set(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                continue
            raise ClusterError(f"cannot read DaemonSet {namespace}/{name}: {short_api_error(exc)}") from None
        if (ds.spec.template.spec.node_selector or {}).get(OS_LABEL) != "linux":
            result.pin_linux.append((namespace, name))
    if cni == "calico":
        result.calico_patch = _calico_pending(cluster)
    return result


def _calico_installation(cluster: Cluster) -> dict[str, Any]:
    custom = client.CustomObjectsApi(cluster.api)
    try:
        return custom.get_cluster_custom_object("operator.tigera.io", "v1", "installations", "default")
    except client.ApiException as exc:
        if exc.status == 404:
            raise ClusterError("--cni calico: no Calico Installation 'default' (operator.tigera.io/v1): install the "
                               "Tigera operator and Calico first, then join Windows nodes") from None
        raise ClusterError(f"cannot read the Calico Installation: {short_api_error(exc)}") from None


def _calico_pending(cluster: Cluster) -> bool:
    spec = _calico_installation(cluster).get("spec") or {}
    return (spec.get("calicoNetwork") or {}).get("windowsDataplane") != "HNS"


def apply(cluster: Cluster, cni: str | None) -> list[str]:
    """Bring the cluster side in line; returns what changed (empty when nothing did)."""
    todo = plan(cluster, cni)
    changes: list[str] = []
    for doc in todo.create:
        _create(cluster, doc)
        changes.append(f"created {doc['kind']} {_ref(doc)}")
    for doc in todo.update:
        meta = doc["metadata"]
        cluster.apps.replace_namespaced_daemon_set(meta["name"], meta["namespace"], doc)
        changes.append(f"updated DaemonSet {_ref(doc)}")
    if todo.flannel_backend:
        cm = cluster.core.read_namespaced_config_map("kube-flannel-cfg", "kube-flannel")
        conf = json.loads((cm.data or {}).get("net-conf.json", "{}") or "{}")
        conf["Backend"] = {**(conf.get("Backend") or {}), "Type": "vxlan", "VNI": FLANNEL_VNI, "Port": FLANNEL_PORT}
        cluster.core.patch_namespaced_config_map("kube-flannel-cfg", "kube-flannel",
                                                 {"data": {"net-conf.json": json.dumps(conf, indent=2)}})
        changes.append(f"set flannel's VXLAN backend to VNI {FLANNEL_VNI}, port {FLANNEL_PORT} (Windows needs both)")
    for namespace, name in todo.pin_linux:
        patch = {"spec": {"template": {"spec": {"nodeSelector": {OS_LABEL: "linux"}}}}}
        cluster.apps.patch_namespaced_daemon_set(name, namespace, patch)
        changes.append(f"pinned DaemonSet {namespace}/{name} to {OS_LABEL}=linux")
    if todo.calico_patch:
        client.CustomObjectsApi(cluster.api).patch_cluster_custom_object(
            "operator.tigera.io", "v1", "installations", "default",
            {"spec": {"calicoNetwork": {"windowsDataplane": "HNS"}}})
        changes.append("Calico Installation: windowsDataplane HNS")
    return changes


def _ref(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def _create(cluster: Cluster, doc: dict[str, Any]) -> None:
    kind, meta = doc["kind"], doc["metadata"]
    creators = {
        "Namespace": lambda: cluster.core.create_namespace(doc),
        "ServiceAccount": lambda: cluster.core.create_namespaced_service_account(meta["namespace"], doc),
        "ConfigMap": lambda: cluster.core.create_namespaced_config_map(meta["namespace"], doc),
        "DaemonSet": lambda: cluster.apps.create_namespaced_daemon_set(meta["namespace"], doc),
        "ClusterRole": lambda: cluster.rbac.create_cluster_role(doc),
        "ClusterRoleBinding": lambda: cluster.rbac.create_cluster_role_binding(doc),
    }
    try:
        creators[kind]()
    except client.ApiException as exc:
        if exc.status != 409:  # another host of this run made it a moment ago
            raise ClusterError(f"cannot create {kind} {_ref(doc)}: {short_api_error(exc)}") from None
