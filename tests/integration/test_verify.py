"""`nodeboot verify` and `proxy set-mode`'s stop-and-roll-back, on the lab.

The lab's kubelet is a stand-in and no kube-proxy runs on its hosts, so some
checks fail there for a known reason, and each test says which and why:
- kube-proxy-pod passes: the DaemonSet's pod is bound to the node and the
  stand-in reports it Running;
- kube-proxy-mode fails: nothing answers on 127.0.0.1:10249;
- service-reachable fails: with no kube-proxy, nothing routes the ClusterIP.
A switch of kube-proxy's mode therefore never verifies on the lab: that is the
rollback path, shown here; the switch itself is for the real node.
"""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes.client import ApiException

CNI = '{"cniVersion": "1.0.0", "name": "lab", "plugins": [{"type": "bridge"}]}'
EXPECTED_ON_LAB = {
    "node-ready": "pass",
    "kube-proxy-pod": "pass",
    "kube-proxy-mode": "fail",
    "service-reachable": "fail",
    "cni-config": "pass",
    "kubelet-cert": "pass",
    "clock-skew": "pass",
}


@pytest.fixture(scope="module")
def joined(lab):
    hosts = lab.reserve(2)
    inventory = lab.inventory(hosts, "verify")
    proc = lab.nodeboot("join", "-i", str(inventory))
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    for host in hosts:
        put = lab.ssh(host, f"mkdir -p /etc/cni/net.d && echo '{CNI}' > /etc/cni/net.d/10-lab.conflist")
        assert put.returncode == 0, put.stderr
    return hosts, inventory


def verify_json(lab, inventory) -> tuple[int, dict]:
    proc = lab.nodeboot("verify", "-i", str(inventory), "--output", "json")
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def verdicts(data: dict) -> dict[str, dict[str, str]]:
    return {n["host"]: {name: c["status"] for name, c in n["checks"].items()} for n in data["nodes"]}


def test_verify_on_the_lab_gives_each_check_its_known_verdict(lab, joined):
    hosts, inventory = joined
    code, data = verify_json(lab, inventory)
    assert code == 1  # kube-proxy-mode and service-reachable cannot pass without a kube-proxy
    for host in hosts:
        got = verdicts(data)[host["name"]]
        assert {k: got[k] for k in EXPECTED_ON_LAB} == EXPECTED_ON_LAB, data
        node = next(n for n in data["nodes"] if n["host"] == host["name"])
        assert "127.0.0.1:10249" in node["checks"]["kube-proxy-mode"]["detail"]
        # kubeadm writes cgroupDriver systemd; the lab's containerd config decides the verdict: it names both.
        assert "kubelet" in node["checks"]["cgroup-driver"]["detail"] or \
            "containerd" in node["checks"]["cgroup-driver"]["detail"]
    table = lab.nodeboot("verify", "-i", str(inventory))
    assert table.returncode == 1
    assert "kube-proxy-mode" in table.stdout and "fail" in table.stdout and hosts[0]["name"] in table.stdout


def test_an_emptied_cni_directory_fails_naming_the_check(lab, joined):
    hosts, inventory = joined
    broken = hosts[0]
    assert lab.ssh(broken, "mv /etc/cni/net.d/10-lab.conflist /root/10-lab.conflist.saved").returncode == 0
    try:
        _, data = verify_json(lab, inventory)
        assert verdicts(data)[broken["name"]]["cni-config"] == "fail"
        assert verdicts(data)[hosts[1]["name"]]["cni-config"] == "pass"
        node = next(n for n in data["nodes"] if n["host"] == broken["name"])
        assert "/etc/cni/net.d" in node["checks"]["cni-config"]["detail"]
    finally:
        lab.ssh(broken, "mv /root/10-lab.conflist.saved /etc/cni/net.d/10-lab.conflist")


def test_kube_proxy_scheduled_away_from_a_node_fails_naming_the_check(lab, joined):
    hosts, inventory = joined
    away = hosts[0]["name"]
    cluster = lab.cluster()
    ds = cluster.apps.read_namespaced_daemon_set("kube-proxy", "kube-system")
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [away]}]}]}}}
    # OnDelete while the affinity is in: a new template would otherwise roll every node's kube-proxy pod,
    # and the other host's pod could be between old and new when verify looks.
    cluster.apps.patch_namespaced_daemon_set("kube-proxy", "kube-system", {"spec": {
        "updateStrategy": {"type": "OnDelete", "rollingUpdate": None},
        "template": {"spec": {"affinity": affinity}}}})
    try:
        for pod in cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-proxy",
                                                    field_selector=f"spec.nodeName={away}").items:
            try:
                cluster.core.delete_namespaced_pod(pod.metadata.name, "kube-system")
            except ApiException as exc:  # the DaemonSet controller may have removed it already
                if exc.status != 404:
                    raise
        wait_no_pod(cluster, away)
        code, data = verify_json(lab, inventory)
        assert code == 1
        assert verdicts(data)[away]["kube-proxy-pod"] == "fail"
        assert verdicts(data)[hosts[1]["name"]]["kube-proxy-pod"] == "pass"
        node = next(n for n in data["nodes"] if n["host"] == away)
        assert node["checks"]["kube-proxy-pod"]["detail"] == "no kube-proxy pod on the node"
    finally:
        # Back as it was (kubeadm's DaemonSet has no affinity: null removes ours). The template is the
        # original again, so going back to the original update strategy replaces no pod.
        original = cluster.api.sanitize_for_serialization(ds.spec.template.spec.affinity)
        strategy = cluster.api.sanitize_for_serialization(ds.spec.update_strategy)
        cluster.apps.patch_namespaced_daemon_set("kube-proxy", "kube-system", {"spec": {
            "updateStrategy": strategy, "template": {"spec": {"affinity": original}}}})


def wait_no_pod(cluster, node: str, limit: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pods = cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-proxy",
                                                field_selector=f"spec.nodeName={node}").items
        if not pods:
            return
        time.sleep(0.5)
    raise AssertionError(f"a kube-proxy pod is still on {node}")


def test_set_mode_dry_run_shows_the_plan_and_changes_nothing(lab, joined):
    hosts, inventory = joined
    cluster = lab.cluster()
    before = cluster.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"]
    proc = lab.nodeboot("proxy", "set-mode", "nftables", "-i", str(inventory), "--dry-run")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "iptables -> nftables" in proc.stdout or "ipvs -> nftables" in proc.stdout
    assert "127.0.0.1" in proc.stdout  # the NodePort warning
    assert all(h["name"] in proc.stdout for h in hosts)
    assert "kube-proxy removes these itself" in proc.stdout
    assert cluster.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"] == before


def test_set_mode_without_a_terminal_needs_yes(lab, joined):
    _, inventory = joined
    proc = lab.nodeboot("proxy", "set-mode", "nftables", "-i", str(inventory))
    assert proc.returncode == 2
    assert "needs --yes" in proc.stderr


def test_a_switch_that_does_not_verify_stops_and_rolls_back(lab, joined):
    hosts, inventory = joined
    cluster = lab.cluster()
    before = cluster.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"]
    old_mode = yaml.safe_load(before).get("mode") or "iptables"
    new_mode = "nftables" if old_mode != "nftables" else "iptables"
    pods_before = {p.metadata.uid for p in cluster.core.list_namespaced_pod(
        "kube-system", label_selector="k8s-app=kube-proxy").items}
    proc = lab.nodeboot("proxy", "set-mode", new_mode, "-i", str(inventory), "--yes", "--verify-timeout", "3")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "verification failed" in text and "kube-proxy-mode" in text
    assert "rolled back" in text
    # The ConfigMap is exactly as it was; only the first node was touched (max-unavailable 1).
    assert cluster.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"] == before
    first = hosts[0]["name"]
    on_first = cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-proxy",
                                                field_selector=f"spec.nodeName={first}").items
    assert on_first and all(p.metadata.uid not in pods_before for p in on_first)  # restarted (twice)
    on_second = cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-proxy",
                                                 field_selector=f"spec.nodeName={hosts[1]['name']}").items
    assert on_second and all(p.metadata.uid in pods_before for p in on_second)  # never reached
    # The probe ran on the switched node and saw the (unrouted) ClusterIP fail.
    assert "failed probes" in proc.stdout or "gap" in proc.stdout
