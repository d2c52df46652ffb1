"""kube-proxy's mode, cluster-wide: the ConfigMap kube-system/kube-proxy
(config.conf holds a KubeProxyConfiguration) and the DaemonSet's rollout.

IPVS is being retired upstream: deprecated in 1.35, kubeadm warns from 1.37,
the KubeProxyIPVS feature gate defaults off in 1.40, and the code goes in
1.43. nftables is GA since 1.33 and is the way forward.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import yaml
from kubernetes import client, watch

from nodeboot.cluster.client import Cluster, short_api_error
from nodeboot.errors import ClusterError, UsageError

IPVS_DEPRECATED = 35
IPVS_GATE_OFF = 40
IPVS_REMOVED = 43
NFTABLES_GA = 33


def ipvs_notice(server: tuple[int, int]) -> str | None:
    minor = server[1]
    if minor >= IPVS_REMOVED:
        return f"kube-proxy 1.{minor} has no IPVS mode any more: use --proxy-mode nftables"
    if minor >= IPVS_GATE_OFF:
        return (f"IPVS mode is deprecated and off by default in 1.{minor}: nodeboot sets the KubeProxyIPVS feature "
                "gate; plan the move to nftables (nodeboot proxy set-mode nftables)")
    if minor >= IPVS_DEPRECATED:
        return f"IPVS mode is deprecated since 1.35 (server is 1.{minor}); nftables is the way forward"
    return None


def ipvs_gate_needed(server: tuple[int, int]) -> bool:
    return IPVS_GATE_OFF <= server[1] < IPVS_REMOVED


IPTABLES_BASED = ("iptables", "ipvs")

# What each mode leaves on a node (the list proxy-cleanup.sh works from; docs/proxy-modes.md).
MODE_OWNS = {
    "iptables": "its KUBE-* chains in nat, filter and mangle (KUBE-SVC-*, KUBE-SEP-*, KUBE-NODEPORTS, "
                "KUBE-PROXY-CANARY, ...) and the jumps into them",
    "ipvs": "its IPVS virtual servers, the link kube-ipvs0, its KUBE-* ipsets and its KUBE-* chains "
            "(KUBE-NODE-PORT, KUBE-LOAD-BALANCER, KUBE-IPVS-FILTER, ...)",
    "nftables": "the nftables tables ip kube-proxy and ip6 kube-proxy",
}


def kube_proxy_cleans_itself(old: str, new: str) -> bool:
    """kube-proxy removes OLD's rules when it starts in NEW (platformCleanup, cmd/kube-proxy/app/
    server_linux.go): the iptables-based modes' rules when it starts in nftables mode, the nftables
    tables when it starts in an iptables-based mode; nothing between iptables and IPVS."""
    return (old in IPTABLES_BASED) != (new in IPTABLES_BASED)


def cleanup_plan(old: str, new: str) -> str:
    """What a node has cleaned after kube-proxy switched from OLD to NEW, in one line."""
    if old == new:
        return "nothing (same mode)"
    what = f"{old} mode's leftovers: {MODE_OWNS[old]}"
    if old in IPTABLES_BASED and new in IPTABLES_BASED:
        what += f"; keeping the chains {new} mode shares with it (KUBE-SERVICES, KUBE-POSTROUTING, KUBE-MARK-MASQ, " \
                "KUBE-FORWARD, KUBE-PROXY-FIREWALL)"
    if kube_proxy_cleans_itself(old, new):
        what += " (kube-proxy removes these itself when it starts; nodeboot checks and removes what is left)"
    return what


def gates_for_mode(mode: str, server: tuple[int, int]) -> dict[str, bool]:
    """The feature gates kube-proxy needs to run MODE against this server; a mode the
    server's kube-proxy cannot run at all is a usage error. `proxy set-mode` and `join
    --proxy-mode` both ask this, so they agree on what each version allows."""
    if mode == "ipvs" and server[1] >= IPVS_REMOVED:
        raise UsageError(f"the API server is 1.{server[1]}: kube-proxy has no IPVS mode any more; use nftables")
    if mode == "nftables" and server[1] < NFTABLES_GA:
        raise UsageError(f"nftables mode is GA from 1.{NFTABLES_GA}; the API server is 1.{server[1]}")
    return {"KubeProxyIPVS": True} if mode == "ipvs" and ipvs_gate_needed(server) else {}


def missing_gates(config: dict, gates: dict[str, bool]) -> dict[str, bool]:
    """The gates kube-proxy's config does not set as wanted."""
    have = config.get("featureGates") or {}
    return {k: v for k, v in gates.items() if have.get(k) != v}


@dataclass
class ModeChange:
    mode: str
    scheduler: str | None = None
    strict_arp: bool | None = None
    sync_period: str | None = None
    min_sync_period: str | None = None
    exclude_cidrs: list[str] | None = None
    tcp_timeout: str | None = None
    tcp_fin_timeout: str | None = None
    udp_timeout: str | None = None
    feature_gates: dict[str, bool] = field(default_factory=dict)


def read_config(cluster: Cluster) -> tuple[client.V1ConfigMap, dict]:
    try:
        cm = cluster.core.read_namespaced_config_map("kube-proxy", "kube-system")
    except client.ApiException as exc:
        raise ClusterError(f"cannot read kube-system/kube-proxy: {short_api_error(exc)}") from None
    try:
        config = yaml.safe_load((cm.data or {}).get("config.conf", "")) or {}
    except yaml.YAMLError as exc:
        raise ClusterError(f"kube-system/kube-proxy config.conf is not YAML: {exc}") from None
    return cm, config


def apply_change(config: dict, change: ModeChange) -> dict:
    """The new KubeProxyConfiguration: only the fields asked for change; every other field is kept."""
    new = yaml.safe_load(yaml.safe_dump(config)) or {}
    new["mode"] = change.mode
    ipvs = dict(new.get("ipvs") or {})
    for key, value in (("scheduler", change.scheduler), ("strictARP", change.strict_arp),
                       ("syncPeriod", change.sync_period), ("minSyncPeriod", change.min_sync_period),
                       ("excludeCIDRs", change.exclude_cidrs), ("tcpTimeout", change.tcp_timeout),
                       ("tcpFinTimeout", change.tcp_fin_timeout), ("udpTimeout", change.udp_timeout)):
        if value is not None:
            ipvs[key] = value
    new["ipvs"] = ipvs
    if change.feature_gates:
        new["featureGates"] = {**(new.get("featureGates") or {}), **change.feature_gates}
    return new


def write_config(cluster: Cluster, cm: client.V1ConfigMap, config: dict) -> bool:
    text = yaml.safe_dump(config, sort_keys=False)
    if (cm.data or {}).get("config.conf") == text:
        return False
    body = {"metadata": {"resourceVersion": cm.metadata.resource_version}, "data": {"config.conf": text}}
    try:
        cluster.core.patch_namespaced_config_map("kube-proxy", "kube-system", body)
    except client.ApiException as exc:
        raise ClusterError(f"cannot update kube-system/kube-proxy: {short_api_error(exc)}") from None
    return True


def restart_daemonset(cluster: Cluster, name: str = "kube-proxy", namespace: str = "kube-system") -> int:
    """Roll the DaemonSet as `kubectl rollout restart` does; returns the generation to wait for."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {"nodeboot.io/restartedAt": stamp}}}}}
    try:
        ds = cluster.apps.patch_namespaced_daemon_set(name, namespace, body)
    except client.ApiException as exc:
        raise ClusterError(f"cannot restart {namespace}/{name}: {short_api_error(exc)}") from None
    return ds.metadata.generation


def rollout_done(ds: client.V1DaemonSet, generation: int) -> bool:
    st = ds.status
    if st is None or (st.observed_generation or 0) < generation:
        return False
    desired = st.desired_number_scheduled or 0
    return (st.updated_number_scheduled or 0) >= desired and (st.number_available or 0) >= desired and (
        st.number_unavailable or 0) == 0


def wait_rollout(cluster: Cluster, generation: int, timeout: float = 300.0, name: str = "kube-proxy",
                 namespace: str = "kube-system") -> client.V1DaemonSet:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ds = cluster.apps.read_namespaced_daemon_set(name, namespace)
        if rollout_done(ds, generation):
            return ds
        w = watch.Watch()
        try:
            for event in w.stream(cluster.apps.list_namespaced_daemon_set, namespace,
                                  field_selector=f"metadata.name={name}",
                                  resource_version=ds.metadata.resource_version,
                                  timeout_seconds=max(1, int(deadline - time.monotonic()))):
                if rollout_done(event["object"], generation):
                    return event["object"]
        except (client.ApiException, OSError, ValueError):
            time.sleep(0.5)
        finally:
            w.stop()
    raise ClusterError(f"{namespace}/{name} rollout did not finish within {timeout:.0f}s")


# ---- one node at a time --------------------------------------------------------
# set-mode changes the ConfigMap and then restarts kube-proxy node by node by deleting
# that node's pod: the DaemonSet's template does not change, so its controller only
# replaces the deleted pod, and nodes not reached yet keep their running kube-proxy
# (which reads its config only when it starts).

POD_SELECTOR = "k8s-app=kube-proxy"


def pods_on_node(cluster: Cluster, node: str) -> list[client.V1Pod]:
    from nodeboot.cluster.retry import with_retry

    try:
        return with_retry(lambda: cluster.core.list_namespaced_pod("kube-system", label_selector=POD_SELECTOR,
                                                                   field_selector=f"spec.nodeName={node}")).items
    except client.ApiException as exc:
        raise ClusterError(f"cannot list kube-proxy pods on {node}: {short_api_error(exc)}") from None


def restart_on_node(cluster: Cluster, node: str, timeout: float = 120.0) -> tuple[str, float]:
    """Delete the node's kube-proxy pod and wait for the DaemonSet's new one to run there.
    Returns the new pod's name and the seconds it took."""
    started = time.monotonic()
    old = {p.metadata.uid for p in pods_on_node(cluster, node)}
    for pod in pods_on_node(cluster, node):
        try:
            cluster.core.delete_namespaced_pod(pod.metadata.name, "kube-system")
        except client.ApiException as exc:
            if exc.status != 404:
                raise ClusterError(f"cannot delete pod kube-system/{pod.metadata.name}: "
                                   f"{short_api_error(exc)}") from None
    deadline = started + timeout
    while time.monotonic() < deadline:
        for pod in pods_on_node(cluster, node):
            if pod.metadata.uid in old or pod.metadata.deletion_timestamp:
                continue
            if pod.status and pod.status.phase == "Running":
                return pod.metadata.name, time.monotonic() - started
        time.sleep(0.5)
    raise ClusterError(f"no new kube-proxy pod Running on {node} within {timeout:.0f}s of deleting the old one "
                       "(is the DaemonSet still scheduled there?)")


def write_config_text(cluster: Cluster, text: str) -> None:
    """Put config.conf back exactly as it was (a rollback)."""
    try:
        cluster.core.patch_namespaced_config_map("kube-proxy", "kube-system", {"data": {"config.conf": text}})
    except client.ApiException as exc:
        raise ClusterError(f"cannot restore kube-system/kube-proxy: {short_api_error(exc)}") from None


def metallb_present(cluster: Cluster) -> bool:
    try:
        cluster.core.read_namespace("metallb-system")
        return True
    except client.ApiException:
        return False


def mode_warnings(old_config: dict, new_config: dict, metallb: bool) -> list[str]:
    """What changes for users when kube-proxy moves to new_config's mode."""
    old = old_config.get("mode") or "iptables"
    new = new_config.get("mode") or "iptables"
    out = []
    if new == "nftables" and old != "nftables":
        out.append("nftables mode: NodePort Services no longer answer on 127.0.0.1 or other loopback "
                   "addresses of the nodes (only on the nodes' real addresses)")
        local = (old_config.get("iptables") or {}).get("localhostNodePorts")
        if old == "iptables" and local is not False:
            out.append("iptables.localhostNodePorts is on today (the default): clients using "
                       "127.0.0.1:<nodePort> will stop working")
        if old_config.get("nodePortAddresses") in (None, []):
            out.append("nodePortAddresses is unset: nftables mode accepts NodePorts on the node's primary "
                       "addresses only (set it to ['primary'] or to CIDRs to choose)")
    if new == "ipvs" and metallb and not (new_config.get("ipvs") or {}).get("strictARP"):
        out.append("MetalLB is installed (namespace metallb-system): in IPVS mode it needs ipvs.strictARP: true "
                   "(--strict-arp)")
    return out
