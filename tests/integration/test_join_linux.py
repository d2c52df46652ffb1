"""Issue 3's must-show, on the lab: join, no-change re-run, dry run, reset with drain, proxy set-mode."""

from __future__ import annotations

import time

import pytest
import yaml
from kubernetes import client

from labkit import summary

LABELS = {"tier": "web", "node-role.kubernetes.io/worker": ""}


def nodeboot_tokens(cluster) -> list[str]:
    secrets = cluster.core.list_namespaced_secret("kube-system", field_selector="type=bootstrap.kubernetes.io/token")
    return [s.metadata.name for s in secrets.items if (s.metadata.labels or {}).get("app.kubernetes.io/managed-by")
            == "nodeboot"]


@pytest.fixture(scope="module")
def joined(lab):
    hosts = lab.reserve(3)
    host_vars = {hosts[0]["name"]: {"nodeboot_labels": LABELS, "nodeboot_taints": ["dedicated=web:NoSchedule"]},
                 hosts[1]["name"]: {"nodeboot_labels": {"tier": "db"}}}
    inventory = lab.inventory(hosts, "core-join", host_vars)
    started = time.monotonic()
    proc, events = lab.nodeboot_json("join", "-i", str(inventory))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    print(f"3-host join: {elapsed:.1f}s wall (CLI process included)")
    return hosts, inventory, events


def test_three_hosts_join_ready_with_labels_and_taints(lab, joined):
    hosts, _, events = joined
    cluster = lab.cluster()
    for host in hosts:
        node = cluster.core.read_node(host["name"])
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        assert node.metadata.labels["kubernetes.io/os"] == "linux"
    first = cluster.core.read_node(hosts[0]["name"])
    assert {k: first.metadata.labels.get(k) for k in LABELS} == LABELS
    assert [(t.key, t.value, t.effect) for t in first.spec.taints or []] == [("dedicated", "web", "NoSchedule")]
    assert cluster.core.read_node(hosts[1]["name"]).metadata.labels["tier"] == "db"
    assert nodeboot_tokens(cluster) == []
    result = summary(events)
    assert result["tokens_created"] == 3 and result["tokens_left"] == []
    assert {h["result"] for h in result["hosts"]} == {"changed"}


def test_second_run_changes_nothing_and_creates_no_token(lab, joined):
    _, inventory, _ = joined
    proc, events = lab.nodeboot_json("join", "-i", str(inventory))
    assert proc.returncode == 0, proc.stderr
    result = summary(events)
    assert result["tokens_created"] == 0
    assert {h["result"] for h in result["hosts"]} == {"ok"}
    # A joined host costs one round trip: the facts script.
    assert [h["execs"] for h in result["hosts"]] == [1, 1, 1]


def phase_statuses(events: list[dict], host: str) -> dict[str, str]:
    return {e["phase"]: e["status"] for e in events
            if e.get("event") == "phase" and e.get("host") == host and e["status"] != "start"}


def test_cold_ipvs_join_is_two_round_trips_and_a_failed_batch_stops_on_the_host(lab):
    good, bad = lab.reserve(2)
    # A modules file nodeboot did not write and that lacks the IPVS modules: proxy-prereqs refuses it.
    assert lab.ssh(bad, "echo overlay > /etc/modules-load.d/nodeboot-ipvs.conf").returncode == 0
    inventory = lab.inventory([good, bad], "batch")
    proc, events = lab.nodeboot_json("join", "-i", str(inventory), "--proxy-mode", "ipvs")
    assert proc.returncode == 1, proc.stderr
    hosts = {h["host"]: h for h in summary(events)["hosts"]}
    # facts, then proxy-prereqs and kubeadm-join together: two round trips for the whole cold join.
    assert hosts[good["name"]]["result"] == "changed" and hosts[good["name"]]["execs"] == 2
    assert phase_statuses(events, good["name"])["proxy-prereqs"] == "changed"
    assert phase_statuses(events, good["name"])["kubeadm-join"] == "changed"
    # The batch went out whole, but the join never ran after its prerequisites failed.
    assert hosts[bad["name"]]["result"] == "failed" and hosts[bad["name"]]["phase"] == "proxy-prereqs"
    assert "was not written by nodeboot" in hosts[bad["name"]]["detail"]
    assert phase_statuses(events, bad["name"])["kubeadm-join"] == "not-run"
    assert hosts[bad["name"]]["execs"] == 2
    assert lab.ssh(bad, "test -e /etc/kubernetes/kubelet.conf; echo $?").stdout.strip() == "1"
    # No join config left (facts.sh's version cache, /run/nodeboot/versions, may be there).
    assert lab.ssh(bad, "ls /run/nodeboot/join.* 2>/dev/null | wc -l").stdout.strip() == "0"
    # The token made for the join that did not run is gone too.
    assert summary(events)["tokens_left"] == [] and nodeboot_tokens(lab.cluster()) == []
    with pytest.raises(client.ApiException):
        lab.cluster().core.read_node(bad["name"])


def test_dry_run_changes_nothing(lab):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "dry-run")
    proc, events = lab.nodeboot_json("join", "-i", str(inventory), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    phases = {e["phase"]: e["status"] for e in events if e.get("event") == "phase" and e["status"] != "start"}
    assert phases["kubeadm-join"] == "would-run" and phases["facts"] == "ok"
    assert summary(events)["tokens_created"] == 0
    with pytest.raises(client.ApiException):
        lab.cluster().core.read_node(host["name"])
    assert lab.ssh(host, "test -e /etc/kubernetes/kubelet.conf; echo $?").stdout.strip() == "1"


@pytest.fixture
def kube_proxy_config_restored(lab):
    """kube-proxy's mode is the whole lab's: put its config back as this test found it."""
    cluster = lab.cluster()
    original = cluster.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"]
    yield
    cluster.core.patch_namespaced_config_map("kube-proxy", "kube-system", {"data": {"config.conf": original}})


def test_proxy_set_mode_without_a_kube_proxy_prepares_hosts_then_rolls_back(lab, joined, kube_proxy_config_restored):
    """The lab's hosts run no kube-proxy (the stand-in kubelet starts no containers), so the per-node check
    after the switch must fail and the old configuration come back. The switch itself, on a real
    kube-proxy, is tests/node/test_3_proxy_migration.py."""
    hosts, inventory, _ = joined
    cluster = lab.cluster()
    before = cluster.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"]
    proc = lab.nodeboot("proxy", "set-mode", "ipvs", "--scheduler", "lc", "-i", str(inventory), "--yes",
                        "--verify-timeout", "10")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "kube-proxy-mode" in proc.stdout + proc.stderr  # the check that failed is named
    # Prerequisites came first, on every host.
    for host in hosts:
        content = lab.ssh(host, "cat /etc/modules-load.d/nodeboot-ipvs.conf").stdout.split()
        assert {"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"} <= set(content)
        assert "ip_vs" in lab.ssh(host, "lsmod").stdout
    # Rolled back: the configuration as it was, byte for byte.
    assert cluster.core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"] == before
    mode = yaml.safe_load(before).get("mode") or "iptables"
    status = lab.nodeboot("proxy", "status", "-i", str(inventory), "--output", "json")
    assert status.returncode == 0 and f'"mode": "{mode}"' in status.stdout
    table = lab.nodeboot("proxy", "status", "-i", str(inventory))
    assert table.returncode == 0 and all(h["name"] in table.stdout for h in hosts), table.stderr


def _deployment(name: str, replicas: int, nodes: list[str]) -> client.V1Deployment:
    """Pods that may only run on these nodes (the lab has many others)."""
    labels = {"app": name}
    affinity = client.V1Affinity(node_affinity=client.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=client.V1NodeSelector(node_selector_terms=[
            client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                key="kubernetes.io/hostname", operator="In", values=nodes)])])))
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(affinity=affinity,
                                      containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")]),
            ),
        ),
    )


def _wait(predicate, what: str, timeout: float = 60) -> None:
    """Poll a condition, bounded in time; a failure names what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def test_reset_drains_respecting_pdb_then_resets_and_deletes(lab):
    # Its own hosts: a reset is destructive, and the other tests' joined hosts stay joined.
    hosts = lab.reserve(2)
    inventory = lab.inventory(hosts, "reset-drain")
    proc = lab.nodeboot("join", "-i", str(inventory))
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    cluster = lab.cluster()
    # The pods land on both hosts; the busier one is drained.
    cluster.apps.create_namespaced_deployment("default", _deployment("web", 4, [h["name"] for h in hosts]))
    _wait(lambda: len([p for p in cluster.core.list_namespaced_pod("default", label_selector="app=web").items
                       if p.status.phase == "Running"]) == 4, "4 web pods running")
    placed = [p.spec.node_name for p in cluster.core.list_namespaced_pod("default", label_selector="app=web").items]
    victim = max((h["name"] for h in hosts), key=placed.count)
    on_victim = lambda: [p for p in cluster.core.list_namespaced_pod(  # noqa: E731
        "default", label_selector="app=web", field_selector=f"spec.nodeName={victim}").items]
    assert on_victim(), "the scheduler put no pod on the node to drain"
    # A PodDisruptionBudget that allows nothing: the drain must stop, not force its way.
    cluster.policy.create_namespaced_pod_disruption_budget("default", client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1PodDisruptionBudgetSpec(max_unavailable=0,
                                              selector=client.V1LabelSelector(match_labels={"app": "web"}))))
    _wait(lambda: cluster.policy.read_namespaced_pod_disruption_budget("web", "default").status.observed_generation,
          "the PodDisruptionBudget observed")
    proc = lab.nodeboot("reset", "-i", str(inventory), "--limit", victim, "--yes", "--drain-timeout", "4")
    assert proc.returncode == 1
    assert "PodDisruptionBudget" in proc.stdout + proc.stderr
    assert cluster.core.read_node(victim).spec.unschedulable  # cordoned, still there
    # With room in the budget the same reset goes through.
    cluster.policy.patch_namespaced_pod_disruption_budget("web", "default", {"spec": {"maxUnavailable": 1}})
    proc = lab.nodeboot("reset", "-i", str(inventory), "--limit", victim, "--yes")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    with pytest.raises(client.ApiException) as gone:
        cluster.core.read_node(victim)
    assert gone.value.status == 404
    assert on_victim() == []
    host = next(h for h in hosts if h["name"] == victim)
    assert lab.ssh(host, "ls /etc/kubernetes/kubelet.conf /etc/modules-load.d/nodeboot-ipvs.conf 2>&1; "
                         "ls /etc/cni/net.d | wc -l").stdout.count("No such file") == 2
    cluster.apps.delete_namespaced_deployment("web", "default")
    cluster.policy.delete_namespaced_pod_disruption_budget("web", "default")


def test_reset_without_yes_and_no_terminal_refuses(lab, joined):
    _, inventory, _ = joined
    proc = lab.nodeboot("reset", "-i", str(inventory), input="")
    assert proc.returncode == 2 and "--yes" in proc.stderr and "Traceback" not in proc.stderr
