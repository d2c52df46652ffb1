"""Cluster-side steps as small commands, for the Ansible playbooks (and scripts): their work
(cli/plumbing.py parses their flags and prints what they return).

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
from collections.abc import Iterator
from typing import Any

from nodeboot import inventory, node_install, validate
from nodeboot.cluster import joinconfig, nodes, tokens
from nodeboot.cluster.client import Cluster
from nodeboot.errors import UsageError
from nodeboot.inventory import Host
from nodeboot.steps import linux_install, preflight

STDIN_SOURCE = "stdin"


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


def join_config_create(kubeadm_version: str, api_server_endpoint: str | None, ca_cert_hashes: tuple[str, ...],
                       discovery_timeout: str, kubeconfig: str | None) -> dict[str, Any]:
    """A 15-minute token for the stdin host's node and its JoinConfiguration (the answer holds the token).
    The pins' form was checked with the flags (cli.options.check_ca_hash)."""
    minor = kubeadm_minor(kubeadm_version)
    try:
        discovery_timeout = validate.duration(discovery_timeout)
    except ValueError as exc:
        raise UsageError(f"--discovery-timeout: {exc}") from None
    host = host_from_stdin(read_stdin_json())
    cluster = Cluster.from_kubeconfig(kubeconfig)
    endpoint = tokens.join_endpoint(cluster, api_server_endpoint)
    hashes = tokens.pins_and_source(cluster, ca_cert_hashes)[0]
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
    return {"node": host.node_name, "token_id": token.token_id, "endpoint": endpoint,
            "expires": token.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "api_version": joinconfig.api_version_for(minor), "join_config": joinconfig.render(spec, minor),
            # join.sh writes it where the config's patches.directory points (NB_KUBELET_PATCH).
            "kubelet_patch": joinconfig.kubelet_patch(host.kubelet_config)}


def plan_join(ca_cert_hashes: tuple[str, ...], kubeconfig: str | None) -> dict[str, Any]:
    """From the stdin host (with 'facts' from facts.sh and the controller's 'sent_at'/'received_at'):
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
        pins, source = tokens.pins_and_source(cluster, ca_cert_hashes)
        problems += filter(None, [tokens.ca_pin_problem(cluster, pins, source)])
    return {"node": host.node_name, "registered": registered, "ready": nodes.is_ready(current),
            "joined": bool(facts.get("joined")) and registered, "problems": problems,
            "server_version": server_version, "install": install_answer(install, facts)}


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


def wait_ready(name: str, timeout: float, kubeconfig: str | None) -> dict[str, Any]:
    """Wait (a watch, not polling) until the Node is Ready."""
    name = checked_node_name(name)
    cluster = Cluster.from_kubeconfig(kubeconfig)
    if nodes.is_ready(nodes.read_node(cluster, name)):
        return {"node": name, "ready": True, "changed": False}
    watcher = nodes.NodeWatcher(cluster)
    try:
        watcher.wait_ready(name, timeout)
    finally:
        watcher.stop()  # ends the watch thread, even one inside a TLS read: nothing left at exit
    return {"node": name, "ready": True, "changed": False}


def label_taint(check: bool, kubeconfig: str | None) -> dict[str, Any]:
    """Add the stdin host's labels and taints that its Node lacks; never removes any."""
    host = host_from_stdin(read_stdin_json())
    cluster = Cluster.from_kubeconfig(kubeconfig)
    current = nodes.read_node(cluster, host.node_name)
    if current is None:
        if check:
            return {"node": host.node_name, "changed": bool(host.labels or host.taints), "registered": False}
        raise UsageError(f"node {host.node_name} is not registered")
    missing = bool(nodes.missing_labels(current, host.labels) or nodes.missing_taints(current, host.taints))
    changed = missing if check else nodes.apply_labels_and_taints(cluster, current, host.labels, host.taints)
    return {"node": host.node_name, "changed": changed, "registered": True}


def drain(name: str, force: bool, delete_emptydir_data: bool, grace_period: int | None, timeout: float,
          check: bool, kubeconfig: str | None) -> dict[str, Any]:
    """Cordon and evict through the Eviction API (PodDisruptionBudgets hold; DaemonSet pods stay)."""
    name = checked_node_name(name)
    cluster = Cluster.from_kubeconfig(kubeconfig)
    if nodes.read_node(cluster, name) is None:
        return {"node": name, "changed": False, "registered": False}
    if check:
        return {"node": name, "changed": True, "registered": True}
    result = nodes.drain(cluster, name, force=force, timeout=timeout, delete_emptydir_data=delete_emptydir_data,
                         grace_period=grace_period)
    return {"node": name, "changed": True, "registered": True,
            "evicted": len(result.evicted) + len(result.deleted_bare),
            "daemonset_pods": len(result.skipped_daemonset)}


def uncordon(names: tuple[str, ...], kubeconfig: str | None) -> Iterator[dict[str, Any]]:
    """Make drained nodes schedulable again (a reset stopped after its drain leaves them cordoned);
    one answer per node, as each is done."""
    checked = [checked_node_name(n) for n in names]
    cluster = Cluster.from_kubeconfig(kubeconfig)
    for name in checked:
        yield {"node": name, "changed": nodes.uncordon(cluster, name)}


def delete(name: str, check: bool, kubeconfig: str | None) -> dict[str, Any]:
    """Delete the Node object (no change if there is none)."""
    name = checked_node_name(name)
    cluster = Cluster.from_kubeconfig(kubeconfig)
    if check:
        return {"node": name, "changed": nodes.read_node(cluster, name) is not None}
    return {"node": name, "changed": nodes.delete_node(cluster, name)}


def windows_cluster(cni: str | None, check: bool, kubeconfig: str | None) -> dict[str, Any]:
    """The cluster side Windows nodes need: what nodeboot's windows-cluster phase does."""
    from nodeboot.cluster import windows as cluster_windows

    cluster = Cluster.from_kubeconfig(kubeconfig)
    if check:
        return {"changed": bool(cluster_windows.plan(cluster, cni).pending()), "changes": []}
    changes = cluster_windows.apply(cluster, cni)
    return {"changed": bool(changes), "changes": changes}
