"""`nodeboot status`: what the cluster says about each host's Node."""

from __future__ import annotations

from nodeboot.cluster import nodes
from nodeboot.cluster.client import Cluster
from nodeboot.inventory import Host


def node_status(hosts: list[Host], kubeconfig: str | None) -> list[dict]:
    cluster = Cluster.from_kubeconfig(kubeconfig)
    by_name = {n.metadata.name: n for n in cluster.core.list_node().items}
    rows = []
    for host in hosts:
        node = by_name.get(host.node_name)
        rows.append({
            "host": host.name,
            "node": host.node_name,
            "registered": node is not None,
            "ready": nodes.is_ready(node),
            "kubelet": node.status.node_info.kubelet_version if node is not None and node.status.node_info else "",
            "os": (node.metadata.labels or {}).get("kubernetes.io/os", "") if node is not None else "",
            "labels": {k: v for k, v in (node.metadata.labels or {}).items() if k in host.labels} if node else {},
            "taints": [f"{t.key}={t.value or ''}:{t.effect}" for t in (node.spec.taints or [])] if node else [],
            "unschedulable": bool(node.spec.unschedulable) if node is not None else False,
        })
    return rows
