"""`nodeboot status`: what the cluster says about each host's Node."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


def print_table(rows: list[dict], console: Console | None = None) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("host", "node", "ready", "kubelet", "os", "taints"):
        table.add_column(col)
    for r in rows:
        ready = "[green]Ready[/]" if r["ready"] else ("[red]NotReady[/]" if r["registered"] else "[dim]absent[/]")
        # Names and taints come from the inventory and the cluster: text, never markup.
        table.add_row(escape(r["host"]), escape(r["node"]), ready, escape(r["kubelet"]), escape(r["os"]),
                      escape(", ".join(r["taints"])))
    (console or Console()).print(table)
