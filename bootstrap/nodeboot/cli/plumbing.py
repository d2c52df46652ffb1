"""The cluster-side steps nodeboot's Ansible playbooks run (join-config, node): hidden from the
top-level help. Each prints one JSON object; the work is cluster_cmd's."""

from __future__ import annotations

import json
from typing import Any

import click

from nodeboot.cli import options as o


def emit(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, sort_keys=True))


@click.group("join-config", hidden=True)
def join_config() -> None:
    """The JoinConfiguration for one host (stdin: the host as JSON)."""


@join_config.command("create")
@click.option("--kubeadm-version", required=True, help="The node's kubeadm version (picks v1beta4 or v1beta3).")
@o.api_server_endpoint
@o.ca_cert_hash("Pin the CA by hash instead of reading it from the kubeconfig.")
@o.discovery_timeout
@o.kubeconfig
def join_config_create(kubeadm_version: str, api_server_endpoint: str | None, ca_cert_hashes: tuple[str, ...],
                       discovery_timeout: str, kubeconfig: str | None) -> None:
    """Create a 15-minute token for the host's node and print its JoinConfiguration.

    The output holds the token: read it with no_log and hand it to the host in a
    0600 file or on stdin, never in argv."""
    from nodeboot import cluster_cmd

    emit(cluster_cmd.join_config_create(kubeadm_version, api_server_endpoint, ca_cert_hashes, discovery_timeout,
                                        kubeconfig))


@click.group("node", hidden=True)
def node() -> None:
    """One Node in the cluster: join plan, wait Ready, labels and taints, drain, delete."""


@node.command("plan-join")
@o.ca_cert_hash("The pins join-config create will use (default: the kubeconfig's CA).")
@o.kubeconfig
def node_plan_join(ca_cert_hashes: tuple[str, ...], kubeconfig: str | None) -> None:
    """From the host (stdin, with 'facts' from facts.sh and the controller's 'sent_at'/'received_at'):
    is its Node registered and Ready, and what would stop it joining."""
    from nodeboot import cluster_cmd

    emit(cluster_cmd.plan_join(ca_cert_hashes, kubeconfig))


@node.command("wait-ready")
@click.argument("name")
@o.timeout(3600, "How long the node may take to become Ready.")
@o.kubeconfig
def node_wait_ready(name: str, timeout: float, kubeconfig: str | None) -> None:
    """Wait (a watch, not polling) until the Node is Ready."""
    from nodeboot import cluster_cmd

    emit(cluster_cmd.wait_ready(name, timeout, kubeconfig))


@node.command("label-taint")
@o.check
@o.kubeconfig
def node_label_taint(check: bool, kubeconfig: str | None) -> None:
    """Add the host's labels and taints (stdin) that its Node lacks; never removes any."""
    from nodeboot import cluster_cmd

    emit(cluster_cmd.label_taint(check, kubeconfig))


@node.command("drain")
@click.argument("name")
@o.force
@o.delete_emptydir_data
@o.grace_period("Seconds each pod gets to stop (default: the pod's own).")
@o.timeout(86400, "How long the drain may take.")
@o.check
@o.kubeconfig
def node_drain(name: str, force: bool, delete_emptydir_data: bool, grace_period: int | None, timeout: float,
               check: bool, kubeconfig: str | None) -> None:
    """Cordon and evict through the Eviction API (PodDisruptionBudgets hold; DaemonSet pods stay)."""
    from nodeboot import cluster_cmd

    emit(cluster_cmd.drain(name, force, delete_emptydir_data, grace_period, timeout, check, kubeconfig))


@node.command("uncordon")
@click.argument("names", nargs=-1, required=True, metavar="NODE...")
@o.kubeconfig
def node_uncordon(names: tuple[str, ...], kubeconfig: str | None) -> None:
    """Make drained nodes schedulable again (a reset stopped after its drain leaves them cordoned)."""
    from nodeboot import cluster_cmd

    for answer in cluster_cmd.uncordon(names, kubeconfig):
        emit(answer)


@node.command("delete")
@click.argument("name")
@o.check
@o.kubeconfig
def node_delete(name: str, check: bool, kubeconfig: str | None) -> None:
    """Delete the Node object (no change if there is none)."""
    from nodeboot import cluster_cmd

    emit(cluster_cmd.delete(name, check, kubeconfig))


@node.command("windows-cluster")
@o.cni("The cluster's CNI.")
@o.check
@o.kubeconfig
def node_windows_cluster(cni: str | None, check: bool, kubeconfig: str | None) -> None:
    """The cluster side Windows nodes need (kube-proxy for Windows, the CNI's Windows part,
    Linux DaemonSets pinned to Linux): what nodeboot's windows-cluster phase does."""
    from nodeboot import cluster_cmd

    emit(cluster_cmd.windows_cluster(cni, check, kubeconfig))


COMMANDS = (join_config, node)
