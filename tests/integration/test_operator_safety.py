"""What an operator relies on, on real hosts (issue 14): preflight stops a join that would fail
later (item 4), reset leaves no CNI traces behind and nothing else touched (item 5), drain is as
careful as kubectl's (item 6)."""

from __future__ import annotations

import json
import threading

from kubernetes import client, watch

from labkit import summary, wait_for
from nodeboot.cluster import tokens


def failed_host(events: list[dict]) -> dict:
    (host,) = [h for h in summary(events)["hosts"] if h["result"] == "failed"]
    return host


# -- item 4: preflight ------------------------------------------------------------------------
def test_join_refuses_a_runtime_that_does_not_answer(lab):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "dead-runtime")
    # containerd killed hard: its socket file stays behind, nobody answers on it.
    killed = lab.ssh(host, "kill -9 $(cat /run/nodeboot-lab/containerd.pid) && sleep 0.2 && "
                           "test -S /run/containerd/containerd.sock && echo socket-left")
    assert killed.stdout.strip() == "socket-left", killed.stderr
    try:
        proc, events = lab.nodeboot_json("join", "-i", str(inventory))
        assert proc.returncode == 1
        failed = failed_host(events)
        assert failed["phase"] == "preflight"
        assert "the container runtime at /run/containerd/containerd.sock does not answer (ctr version:" \
            in failed["detail"]
        assert summary(events)["tokens_created"] == 0
    finally:
        lab.ssh(host, "rm -f /run/nodeboot-lab/containerd.pid; systemctl start containerd")
        wait_for("containerd answering again",
                 lambda: lab.ssh(host, "ctr --address /run/containerd/containerd.sock version").returncode == 0,
                 60, interval=0.2)


def test_join_with_a_pin_that_is_not_the_cluster_ca_fails_in_preflight_with_both_hashes(lab):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "wrong-pin")
    wrong = "sha256:" + "0" * 64
    (real,) = tokens.ca_cert_hashes(lab.cluster())
    proc, events = lab.nodeboot_json("join", "-i", str(inventory), "--ca-cert-hash", wrong)
    assert proc.returncode == 1
    failed = failed_host(events)
    assert failed["phase"] == "preflight"
    assert real in failed["detail"] and wrong in failed["detail"]
    assert summary(events)["tokens_created"] == 0
    assert lab.ssh(host, "test -e /etc/kubernetes/kubelet.conf; echo $?").stdout.strip() == "1"


# -- item 5: reset and the CNI's traces ---------------------------------------------------------
TRACES = """
set -e
ip link add cni0 type bridge
ip link add flannel.1 type vxlan id 1 dstport 8472
ip link add vxlan.calico type vxlan id 4096 dstport 4789
ip link add keep0 type bridge
mkdir -p /var/lib/cni/networks/cbr0 && echo 10.244.1.2 > /var/lib/cni/networks/cbr0/last_reserved_ip.0
iptables -t nat -N CNI-0123456789abcdef; iptables -t nat -A POSTROUTING -j CNI-0123456789abcdef
iptables -N FLANNEL-FWD; iptables -A FORWARD -j FLANNEL-FWD
iptables -N cali-INPUT; iptables -A INPUT -j cali-INPUT
iptables -N KEEP-ME; iptables -A INPUT -j KEEP-ME; iptables -A INPUT -s 192.0.2.9 -j DROP
ip6tables -N CNI-FORWARD; ip6tables -A FORWARD -j CNI-FORWARD
nft add table inet flannel
nft add table inet keep
"""


def test_reset_removes_cni_traces_names_them_and_keeps_the_rest(lab):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "cni-traces")
    made = lab.ssh(host, TRACES)
    assert made.returncode == 0, made.stderr
    logs = lab.work / "cni-traces-logs"
    proc = lab.nodeboot("reset", "-i", str(inventory), "--yes", "--log-dir", str(logs))
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    # What was removed is named in the host's transcript (reset.sh's lines).
    transcript = "".join(p.read_text() for p in logs.glob(f"**/hosts/{host['name']}.log"))
    for named in ("removed link cni0", "removed link flannel.1", "removed link vxlan.calico", "removed /var/lib/cni",
                  "removed iptables filter chains: FLANNEL-FWD cali-INPUT", "removed iptables nat chains: "
                  "CNI-0123456789abcdef", "removed ip6tables filter chains: CNI-FORWARD",
                  "removed nft table inet flannel"):
        assert f"reset.sh: {named}" in transcript, named
    state = json.loads(lab.ssh(host, "ip -j link show").stdout)
    links = {link["ifname"] for link in state}
    assert not links & {"cni0", "flannel.1", "vxlan.calico"} and "keep0" in links
    # The CNI's state is gone (the lab's /var/lib/cni is a mount point, so the directory may stay).
    assert lab.ssh(host, "ls -A /var/lib/cni 2>/dev/null | wc -l").stdout.strip() == "0"
    rules = lab.ssh(host, "iptables-save; ip6tables-save").stdout
    assert "CNI-" not in rules and "FLANNEL-" not in rules and "cali-" not in rules
    assert "-A INPUT -j KEEP-ME" in rules and "-A INPUT -s 192.0.2.9/32 -j DROP" in rules
    tables = lab.ssh(host, "nft list tables").stdout
    assert "inet flannel" not in tables and "inet keep" in tables
    lab.ssh(host, "ip link delete keep0; iptables -D INPUT -j KEEP-ME; iptables -X KEEP-ME; "
                  "iptables -D INPUT -s 192.0.2.9 -j DROP; nft delete table inet keep")


# -- item 6: drain ------------------------------------------------------------------------------
NAMESPACE = "nodeboot-drain-test"


def scratch_deployment(node: str) -> client.V1Deployment:
    """One pod on this node with an emptyDir volume and a 45 s grace period of its own."""
    labels = {"app": "scratch"}
    affinity = client.V1Affinity(node_affinity=client.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=client.V1NodeSelector(node_selector_terms=[
            client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                key="kubernetes.io/hostname", operator="In", values=[node])])])))
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="scratch"),
        spec=client.V1DeploymentSpec(replicas=1, selector=client.V1LabelSelector(match_labels=labels),
                                     template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels=labels),
            spec=client.V1PodSpec(affinity=affinity, termination_grace_period_seconds=45,
                                  volumes=[client.V1Volume(name="scratch", empty_dir=client.V1EmptyDirVolumeSource())],
                                  containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")]))))


class GraceWatch:
    """Every deletionGracePeriodSeconds the API server sets on the namespace's pods."""

    def __init__(self, cluster) -> None:
        self.cluster, self.seen, self._stop = cluster, [], threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        version = self.cluster.core.list_namespaced_pod(NAMESPACE).metadata.resource_version
        self._started.set()
        while not self._stop.is_set():
            w = watch.Watch()
            for event in w.stream(self.cluster.core.list_namespaced_pod, NAMESPACE, resource_version=version,
                                  timeout_seconds=2):
                version = event["object"].metadata.resource_version
                grace = event["object"].metadata.deletion_grace_period_seconds
                if grace is not None:
                    self.seen.append(grace)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(10)
        return self.seen


def test_drain_refuses_emptydir_then_honours_grace_period_and_uncordon_undoes_a_cordon(lab):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "drain-safety")
    proc = lab.nodeboot("join", "-i", str(inventory))
    assert proc.returncode == 0, proc.stderr
    cluster = lab.cluster()
    node = host["name"]
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    try:
        cluster.apps.create_namespaced_deployment(NAMESPACE, scratch_deployment(node))
        running = lambda: [p for p in cluster.core.list_namespaced_pod(NAMESPACE).items  # noqa: E731
                           if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
        wait_for("the emptyDir pod running", lambda: len(running()) == 1, 60, interval=0.2)
        # Without --delete-emptydir-data: refused, named, and the node not even cordoned.
        proc, events = lab.nodeboot_json("reset", "-i", str(inventory), "--yes")
        assert proc.returncode == 1
        failed = failed_host(events)
        assert failed["phase"] == "drain" and "--delete-emptydir-data" in failed["detail"]
        assert f"{NAMESPACE}/{running()[0].metadata.name}" in failed["detail"]
        assert not cluster.core.read_node(node).spec.unschedulable
        assert lab.ssh(host, "test -e /etc/kubernetes/kubelet.conf; echo $?").stdout.strip() == "0"
        # A reset stopped after its drain leaves the node cordoned: node uncordon undoes it.
        cluster.core.patch_node(node, {"spec": {"unschedulable": True}})
        proc = lab.nodeboot("node", "uncordon", node)
        assert proc.returncode == 0 and json.loads(proc.stdout) == {"node": node, "changed": True}, proc.stderr
        assert not cluster.core.read_node(node).spec.unschedulable
        assert json.loads(lab.nodeboot("node", "uncordon", node).stdout)["changed"] is False
        # Asked: the pod goes with the grace period given, not its own 45 s.
        grace = GraceWatch(cluster)
        proc = lab.nodeboot("reset", "-i", str(inventory), "--yes", "--delete-emptydir-data", "--grace-period", "7")
        seen = grace.stop()
        assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
        assert seen and seen[0] == 7, seen
    finally:
        cluster.core.delete_namespace(NAMESPACE)
        wait_for(f"namespace {NAMESPACE} gone",
                 lambda: NAMESPACE not in {n.metadata.name for n in cluster.core.list_namespace().items},
                 120, interval=0.2)


# -- item 1: --labels/--taints add to the inventory's, in both engines ---------------------------
def test_labels_and_taints_add_to_the_inventory_in_both_engines(lab):
    hosts = lab.reserve(2)
    own = {"nodeboot_labels": {"tier": "web", "rack": "r1"}, "nodeboot_taints": ["dedicated=web:NoSchedule"]}
    for host, engine in zip(hosts, ("nodeboot", "ansible"), strict=True):
        inventory = lab.inventory([host], f"adds-{engine}", {host["name"]: own})
        proc = lab.nodeboot("join", "-i", str(inventory), "--engine", engine, "--labels", "zone=a,tier=db",
                            "--taints", "spot=yes:PreferNoSchedule", timeout=900)
        assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
        node = lab.cluster().core.read_node(host["name"])
        labels = node.metadata.labels
        assert (labels["tier"], labels["rack"], labels["zone"]) == ("db", "r1", "a"), (engine, labels)
        assert sorted((t.key, t.value, t.effect) for t in node.spec.taints) == [
            ("dedicated", "web", "NoSchedule"), ("spot", "yes", "PreferNoSchedule")], engine
