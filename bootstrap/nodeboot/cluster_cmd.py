"""Cluster-side steps as small commands, for the Ansible playbooks (and scripts).

The playbooks run the host work through scripts/; everything that talks to the
Kubernetes API runs on the controller through these commands, so it is the same
code nodeboot's own phases call. Each command prints one JSON object on stdout;
a bad input is one line on stderr and exit 2, a cluster failure exit 1.

Commands that concern one inventory host read it as JSON on stdin:
{"host": NAME, "groups": [...], "vars": {...nodeboot_* vars...}}, so the node
name, labels, taints and join settings are validated by nodeboot's own
inventory code, whatever tool loaded the inventory.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from nodeboot import inventory, node_install, validate
from nodeboot.cli_options import Seconds, ipvs_options
from nodeboot.cluster import joinconfig, nodes, tokens
from nodeboot.cluster.client import Cluster
from nodeboot.errors import UsageError
from nodeboot.inventory import Host
from nodeboot.steps import linux_install, preflight

STDIN_SOURCE = "stdin"


def emit(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, sort_keys=True))


def read_stdin_json() -> dict[str, Any]:
    text = sys.stdin.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{STDIN_SOURCE}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{STDIN_SOURCE}: expected a JSON object")
    return data


def host_from_stdin(data: dict[str, Any]) -> Host:
    name = data.get("host")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{STDIN_SOURCE}: 'host' must name the inventory host")
    host_vars = data.get("vars") or {}
    groups = data.get("groups") or []
    if not isinstance(host_vars, dict) or not isinstance(groups, list):
        raise UsageError(f"{STDIN_SOURCE}: 'vars' must be an object and 'groups' a list")
    # Only nodeboot's own vars: connection details stay with the tool that connects.
    wanted = {k: v for k, v in host_vars.items() if k.startswith("nodeboot_") and k != "nodeboot_password_env"}
    # The run's --labels/--taints (the Ansible engine's extra vars) add to the host's own.
    added = {key: wanted.pop(extra, None) for key, extra in inventory.ADDED_BY_COMMAND_LINE.items()}
    wanted = inventory.with_command_line(STDIN_SOURCE, name, wanted, added)
    return inventory.host_from_vars(STDIN_SOURCE, name, wanted, [str(g) for g in groups])


def kubeadm_minor(version: str) -> int:
    found = preflight.minor_of(version)
    if found is None:
        raise UsageError(f"--kubeadm-version {version!r}: expected a version such as v1.37.2")
    return found[1]


def checked_node_name(name: str) -> str:
    try:
        return validate.node_name(name)
    except ValueError as exc:
        raise UsageError(f"NODE: {exc}") from None


kubeconfig_option = click.option("--kubeconfig", metavar="FILE", help="Default: $KUBECONFIG, then ~/.kube/config.")
check_option = click.option("--check", is_flag=True, help="Report what would change; change nothing.")


@click.group("join-config")
def join_config() -> None:
    """The JoinConfiguration for one host (stdin: the host as JSON)."""


@join_config.command("create")
@click.option("--kubeadm-version", required=True, help="The node's kubeadm version (picks v1beta4 or v1beta3).")
@click.option("--api-server-endpoint", metavar="HOST:PORT", help="Endpoint nodes join (default: from cluster-info).")
@click.option("--ca-cert-hash", "ca_cert_hashes", multiple=True, metavar="sha256:HEX",
              help="Pin the CA by hash instead of reading it from the kubeconfig.")
@click.option("--discovery-timeout", default="5m0s", show_default=True, metavar="DURATION",
              help="How long kubeadm join may take to reach and verify the API server.")
@kubeconfig_option
def join_config_create(kubeadm_version: str, api_server_endpoint: str | None, ca_cert_hashes: tuple[str, ...],
                       discovery_timeout: str, kubeconfig: str | None) -> None:
    """Create a 15-minute token for the host's node and print its JoinConfiguration.

    The output holds the token: read it with no_log and hand it to the host in a
    0600 file or on stdin, never in argv."""
    minor = kubeadm_minor(kubeadm_version)
    for value in ca_cert_hashes:
        if not value.startswith("sha256:") or len(value) != 71:
            raise UsageError(f"--ca-cert-hash {value!r}: expected sha256:<64 hex digits>")
    try:
        discovery_timeout = validate.duration(discovery_timeout)
    except ValueError as exc:
        raise UsageError(f"--discovery-timeout: {exc}") from None
    host = host_from_stdin(read_stdin_json())
    cluster = Cluster.from_kubeconfig(kubeconfig)
    endpoint = tokens.join_endpoint(cluster, api_server_endpoint)
    hashes = list(ca_cert_hashes) or tokens.ca_cert_hashes(cluster)
    ledger = tokens.TokenLedger(cluster)
    token = ledger.create(host.node_name)
    try:
        tokens.wait_signed(cluster, token)
    except BaseException:
        ledger.delete(token)
        raise
    spec = joinconfig.JoinSpec(endpoint=endpoint, token=token.value, ca_hashes=hashes, node_name=host.node_name,
                               os=host.os, taints=host.taints, node_ips=host.node_ips,
                               kubelet_extra_args=host.kubelet_extra_args,
                               ignore_preflight_errors=host.ignore_preflight_errors,
                               discovery_timeout=discovery_timeout, kubelet_config=host.kubelet_config)
    emit({"node": host.node_name, "token_id": token.token_id, "endpoint": endpoint,
          "expires": token.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
          "api_version": joinconfig.api_version_for(minor), "join_config": joinconfig.render(spec, minor),
          # join.sh writes it where the config's patches.directory points (NB_KUBELET_PATCH).
          "kubelet_patch": joinconfig.kubelet_patch(host.kubelet_config)})


@click.group("node")
def node() -> None:
    """One Node in the cluster: join plan, wait Ready, labels and taints, drain, delete."""


@node.command("plan-join")
@click.option("--ca-cert-hash", "ca_cert_hashes", multiple=True, metavar="sha256:HEX",
              help="The pins join-config create will use (default: the kubeconfig's CA).")
@kubeconfig_option
def node_plan_join(ca_cert_hashes: tuple[str, ...], kubeconfig: str | None) -> None:
    """From the host (stdin, with 'facts' from facts.sh and the controller's 'sent_at'/'received_at'):
    is its Node registered and Ready, and what would stop it joining."""
    data = read_stdin_json()
    host = host_from_stdin(data)
    facts = data.get("facts") or {}
    if not isinstance(facts, dict):
        raise UsageError(f"{STDIN_SOURCE}: 'facts' must be the facts object facts.sh printed")
    cluster = Cluster.from_kubeconfig(kubeconfig)
    current = nodes.read_node(cluster, host.node_name)
    registered = current is not None
    server_version = "v" + cluster.version[2].lstrip("v").split("+")[0].split("-")[0]
    install = install_plan(host, facts, server_version)
    problems: list[str] = []
    if facts.get("joined") and not registered:
        problems.append(f"{host.name} has /etc/kubernetes/kubelet.conf but no Node {host.node_name} exists in this "
                        "cluster: it belongs to another cluster or was deleted; run nodeboot reset on it first")
    elif not facts.get("joined") and host.os == "linux":
        facts = {**facts, "_sent_at": float(data.get("sent_at") or time.time()),
                 "_received_at": float(data.get("received_at") or time.time())}
        if host.install.enabled:  # what the install sets up is not checked, as in nodeboot's own preflight
            problems += install_problems(install, facts, cluster.version[:2])
        else:
            problems += preflight.linux_problems(facts, cluster.version[:2])
        problems += preflight.common_problems(facts, host.node_name)
        problems += filter(None, [preflight.ipv6_forwarding_problem(facts, host.node_ips)])
    elif not facts.get("joined") and host.os == "windows":
        from nodeboot.windows import builds

        problems += filter(None, [builds.build_problem(int(facts.get("os_build") or 0),
                                                       str(facts.get("os_caption") or ""), cluster.version[:2])])
    if not (facts.get("joined") and registered):
        source = "--ca-cert-hash" if ca_cert_hashes else f"the kubeconfig {cluster.kubeconfig}"
        pins = list(ca_cert_hashes) or tokens.ca_cert_hashes(cluster)
        problems += filter(None, [tokens.ca_pin_problem(cluster, pins, source)])
    emit({"node": host.node_name, "registered": registered, "ready": nodes.is_ready(current),
          "joined": bool(facts.get("joined")) and registered, "problems": problems,
          "server_version": server_version, "install": install_answer(install, facts)})


def install_plan(host: Host, facts: dict[str, Any], server_version: str) -> linux_install.InstallPlan | str | None:
    """The host's install (nodeboot_install and its vars): its plan, a bad setting's message, or None (not asked)."""
    if host.os != "linux" or not host.install.enabled:
        return None
    try:
        return linux_install.InstallPlan(host.install, facts, server_version)
    except ValueError as exc:
        return str(exc)


def install_problems(install: linux_install.InstallPlan | str | None, facts: dict[str, Any],
                     server_minor: tuple[int, int]) -> list[str]:
    if isinstance(install, str):
        return [install]
    return linux_install.request_problems(install, facts, server_minor) if install else []


def install_answer(install: linux_install.InstallPlan | str | None, facts: dict[str, Any]) -> dict[str, Any]:
    """For the playbooks' install task: whether install.sh runs, why not, and its NB_* inputs
    (the same ones nodeboot's own install phase sends)."""
    if not isinstance(install, linux_install.InstallPlan):
        return {"needed": False, "reason": "not asked (nodeboot_install)" if install is None else install}
    reason = linux_install.skip_reason(install, facts)
    return {"needed": reason is None, "reason": reason or node_install.plan_text(
                install.settings, install.kubernetes_version, install.arch),
            "kubernetes_version": install.kubernetes_version, "inputs": install.inputs}


@node.command("wait-ready")
@click.argument("name")
@click.option("--timeout", default="5m", show_default=True, type=Seconds(1, 3600),
              help="How long the node may take to become Ready.")
@kubeconfig_option
def node_wait_ready(name: str, timeout: float, kubeconfig: str | None) -> None:
    """Wait (a watch, not polling) until the Node is Ready."""
    name = checked_node_name(name)
    cluster = Cluster.from_kubeconfig(kubeconfig)
    if nodes.is_ready(nodes.read_node(cluster, name)):
        emit({"node": name, "ready": True, "changed": False})
        return
    watcher = nodes.NodeWatcher(cluster)
    try:
        watcher.wait_ready(name, timeout)
    finally:
        watcher.stop()  # ends the watch thread, even one inside a TLS read: nothing left at exit
    emit({"node": name, "ready": True, "changed": False})


@node.command("label-taint")
@check_option
@kubeconfig_option
def node_label_taint(check: bool, kubeconfig: str | None) -> None:
    """Add the host's labels and taints (stdin) that its Node lacks; never removes any."""
    host = host_from_stdin(read_stdin_json())
    cluster = Cluster.from_kubeconfig(kubeconfig)
    current = nodes.read_node(cluster, host.node_name)
    if current is None:
        if check:
            emit({"node": host.node_name, "changed": bool(host.labels or host.taints), "registered": False})
            return
        raise UsageError(f"node {host.node_name} is not registered")
    missing = bool(nodes.missing_labels(current, host.labels) or nodes.missing_taints(current, host.taints))
    changed = missing if check else nodes.apply_labels_and_taints(cluster, current, host.labels, host.taints)
    emit({"node": host.node_name, "changed": changed, "registered": True})


@node.command("drain")
@click.argument("name")
@click.option("--force", is_flag=True, help="Drain even pods that no controller manages.")
@click.option("--delete-emptydir-data", is_flag=True, help="Drain even pods with emptyDir volumes (their data goes).")
@click.option("--grace-period", type=click.IntRange(0, 86400), default=None,
              help="Seconds each pod gets to stop (default: the pod's own).")
@click.option("--timeout", default="5m", show_default=True, type=Seconds(1, 86400),
              help="How long the drain may take.")
@check_option
@kubeconfig_option
def node_drain(name: str, force: bool, delete_emptydir_data: bool, grace_period: int | None, timeout: float,
               check: bool, kubeconfig: str | None) -> None:
    """Cordon and evict through the Eviction API (PodDisruptionBudgets hold; DaemonSet pods stay)."""
    name = checked_node_name(name)
    cluster = Cluster.from_kubeconfig(kubeconfig)
    if nodes.read_node(cluster, name) is None:
        emit({"node": name, "changed": False, "registered": False})
        return
    if check:
        emit({"node": name, "changed": True, "registered": True})
        return
    result = nodes.drain(cluster, name, force=force, timeout=timeout, delete_emptydir_data=delete_emptydir_data,
                         grace_period=grace_period)
    emit({"node": name, "changed": True, "registered": True,
          "evicted": len(result.evicted) + len(result.deleted_bare), "daemonset_pods": len(result.skipped_daemonset)})


@node.command("uncordon")
@click.argument("names", nargs=-1, required=True, metavar="NODE...")
@kubeconfig_option
def node_uncordon(names: tuple[str, ...], kubeconfig: str | None) -> None:
    """Make drained nodes schedulable again (a reset stopped after its drain leaves them cordoned)."""
    checked = [checked_node_name(n) for n in names]
    cluster = Cluster.from_kubeconfig(kubeconfig)
    for name in checked:
        emit({"node": name, "changed": nodes.uncordon(cluster, name)})


@node.command("delete")
@click.argument("name")
@check_option
@kubeconfig_option
def node_delete(name: str, check: bool, kubeconfig: str | None) -> None:
    """Delete the Node object (no change if there is none)."""
    name = checked_node_name(name)
    cluster = Cluster.from_kubeconfig(kubeconfig)
    if check:
        emit({"node": name, "changed": nodes.read_node(cluster, name) is not None})
        return
    emit({"node": name, "changed": nodes.delete_node(cluster, name)})


@node.command("windows-cluster")
@click.option("--cni", type=click.Choice(["flannel", "calico"]), default=None, help="The cluster's CNI.")
@check_option
@kubeconfig_option
def node_windows_cluster(cni: str | None, check: bool, kubeconfig: str | None) -> None:
    """The cluster side Windows nodes need (kube-proxy for Windows, the CNI's Windows part,
    Linux DaemonSets pinned to Linux): what nodeboot's windows-cluster phase does."""
    from nodeboot.cluster import windows as cluster_windows

    cluster = Cluster.from_kubeconfig(kubeconfig)
    if check:
        emit({"changed": bool(cluster_windows.plan(cluster, cni).pending()), "changes": []})
        return
    changes = cluster_windows.apply(cluster, cni)
    emit({"changed": bool(changes), "changes": changes})


@click.command("apply-config")
@click.argument("mode")
@ipvs_options
@check_option
@kubeconfig_option
def proxy_apply_config(mode: str, check: bool, kubeconfig: str | None, **kw) -> None:
    """Only the cluster half of `proxy set-mode`: patch kube-proxy's config.conf and roll the DaemonSet.
    The nodes' prerequisites and the old mode's cleanup are the playbook's (or set-mode's) job."""
    from nodeboot import proxy_cmd
    from nodeboot.cluster import kubeproxy

    change = proxy_cmd.parse_change(mode, kw)  # flags first: bad input never waits on the cluster
    cluster = Cluster.from_kubeconfig(kubeconfig)
    server = cluster.version[:2]
    proxy_cmd.fit_to_server(change, server)
    cm, config = kubeproxy.read_config(cluster)
    old_mode = config.get("mode") or "iptables"
    new_config = kubeproxy.apply_change(config, change)
    notice = kubeproxy.ipvs_notice(server) if mode == "ipvs" else None
    result = {"mode": mode, "old_mode": old_mode, "notice": notice or ""}
    if check:
        emit({**result, "changed": new_config != config})
        return
    changed = kubeproxy.write_config(cluster, cm, new_config)
    if changed:
        generation = kubeproxy.restart_daemonset(cluster)
        kubeproxy.wait_rollout(cluster, generation, timeout=kw["rollout_timeout"])
    emit({**result, "changed": changed})


def register(cli: click.Group) -> None:
    cli.add_command(join_config)
    cli.add_command(node)
    proxy_group = cli.commands.get("proxy")
    if isinstance(proxy_group, click.Group):
        proxy_group.add_command(proxy_apply_config)
