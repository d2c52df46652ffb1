"""A bare VM becomes a real worker: nodeboot installs containerd, runc, the CNI plugins, kubelet and kubeadm
from the lab's mirror, joins it, and the real kubelet, containerd and kube-proxy (IPVS) run on it."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml
from kubernetes import client

from labkit import LabHandle, summary
from nodeboot.verify import VERIFY_SERVICE_LABEL
from nodeboot_lab import pod_network
from nodekit import (
    ECHO_IMAGE,
    ECHO_NAMESPACE,
    ECHO_NODE_PORT,
    KUBERNETES_VERSION,
    TIMINGS,
    install_args,
    inventory,
    kubelet_patch_file,
    node_out,
    on_node,
    verify_passes,
    vm,
    wait_for,
    wait_proxy_mode,
)

KUBELET_PATCH = {"maxPods": 42, "serializeImagePulls": False}


@dataclass
class Joined:
    handle: LabHandle
    inventory: str
    args: list[str]
    node: str


def set_proxy_mode(handle: LabHandle, mode: str) -> None:
    """The cluster's kube-proxy configuration, as an operator's IPVS cluster would have it."""
    core = handle.cluster().core
    cm = core.read_namespaced_config_map("kube-proxy", "kube-system")
    config = yaml.safe_load(cm.data["config.conf"])
    config["mode"] = mode
    core.patch_namespaced_config_map("kube-proxy", "kube-system", {"data": {"config.conf": yaml.safe_dump(config)}})


def join(handle: LabHandle, inv: str, args: list[str]) -> tuple[dict, float]:
    started = time.monotonic()
    proc, events = handle.nodeboot_json("join", "-i", inv, "--kubeconfig", handle.kubeconfig, *args, timeout=1800)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return summary(events), round(time.monotonic() - started, 1)


def node_ready(handle: LabHandle, name: str) -> client.V1Node | None:
    try:
        node = handle.cluster().core.read_node(name)
    except client.ApiException:
        return None
    ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    return node if ready else None


def kube_proxy_pod(handle: LabHandle, node: str) -> client.V1Pod | None:
    pods = handle.cluster().core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-proxy",
                                                      field_selector=f"spec.nodeName={node}").items
    running = [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
               and all(s.ready for s in p.status.container_statuses or [])]
    return running[0] if running else None


@pytest.fixture(scope="module")
def joined(node_lab: LabHandle) -> Iterator[Joined]:
    name = vm(node_lab)["name"]
    set_proxy_mode(node_lab, "ipvs")
    # The lab wrote the pod network's conflist at boot (nodeboot_lab.pod_network).
    assert pod_network.CONFLIST_PATH in node_out(node_lab, f"ls {pod_network.CONFLIST_PATH}")
    inv = inventory(node_lab, "real-worker")
    args = [*install_args(node_lab), "--proxy-mode", "ipvs",
            "--kubelet-config", kubelet_patch_file(node_lab, KUBELET_PATCH)]
    result, seconds = join(node_lab, inv, args)
    TIMINGS["install_and_join_to_ready_s"] = seconds
    assert {h["result"] for h in result["hosts"]} == {"changed"}, result
    yield Joined(node_lab, inv, args, name)


def test_node_is_ready_as_the_real_kubelet_reports_it(joined: Joined) -> None:
    node = node_ready(joined.handle, joined.node)
    assert node is not None
    info = node.status.node_info
    assert info.kubelet_version == KUBERNETES_VERSION
    assert info.container_runtime_version.startswith("containerd://2.")
    assert info.kernel_version == node_out(joined.handle, "uname -r").strip()
    # The real kubelet under systemd, with the systemd cgroup driver containerd was set up for.
    assert node_out(joined.handle, "systemctl is-active kubelet containerd").split() == ["active", "active"]
    kubelet_config = yaml.safe_load(node_out(joined.handle, "cat /var/lib/kubelet/config.yaml"))
    assert kubelet_config["cgroupDriver"] == "systemd"
    assert "SystemdCgroup = true" in node_out(joined.handle, "cat /etc/containerd/config.toml")


def test_kubelet_configz_shows_the_patched_settings(joined: Joined) -> None:
    # Through the API server's node proxy, as `kubectl get --raw /api/v1/nodes/NODE/proxy/configz` reads it.
    raw = joined.handle.cluster().core.connect_get_node_proxy_with_path(joined.node, "configz",
                                                                         _preload_content=False).data
    live = json.loads(raw)["kubeletconfig"]
    assert {key: live[key] for key in KUBELET_PATCH} == KUBELET_PATCH


def test_kube_proxy_runs_in_ipvs_mode_with_its_image_pulled_through_the_mirror(joined: Joined) -> None:
    started = time.monotonic()
    wait_for("kube-proxy pod Running on the VM node", lambda: kube_proxy_pod(joined.handle, joined.node), 600)
    TIMINGS["kube_proxy_running_after_join_s"] = round(time.monotonic() - started, 1)
    h = joined.handle
    wait_proxy_mode(h, "ipvs")
    images = node_out(h, "/usr/local/bin/ctr -n k8s.io images ls -q")
    assert f"registry.k8s.io/kube-proxy:{KUBERNETES_VERSION}" in images.split()
    api = h.env["api_endpoint"]
    kubernetes_ip = h.cluster().core.read_namespaced_service("kubernetes", "default").spec.cluster_ip

    def ipvs_programmed() -> str | None:
        table = node_out(h, "ipvsadm -Ln")
        return table if f"{kubernetes_ip}:443" in table and api in table else None

    table = wait_for("IPVS virtual server for the kubernetes Service", ipvs_programmed, 120)
    virtual = table.split(f"{kubernetes_ip}:443", 1)[1]
    assert f"-> {api}" in virtual.split("TCP ", 1)[0]
    assert f"inet {kubernetes_ip}/32" in node_out(h, "ip -4 addr show dev kube-ipvs0")


def test_a_clusterip_service_answers_from_the_node(joined: Joined) -> None:
    h = joined.handle
    apps, core = h.cluster().apps, h.cluster().core
    labels = {"app": "nodeboot-echo"}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ECHO_NAMESPACE)))
    container = client.V1Container(
        name="echo", image=ECHO_IMAGE, ports=[client.V1ContainerPort(container_port=8080)],
        env=[client.V1EnvVar(name="POD_NAME", value_from=client.V1EnvVarSource(
            field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")))])
    apps.create_namespaced_deployment(ECHO_NAMESPACE, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="echo"),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container], node_name=joined.node)))))
    service = core.create_namespaced_service(ECHO_NAMESPACE, client.V1Service(
        # The label makes it what `nodeboot verify` connects to for the family the kubernetes Service lacks.
        metadata=client.V1ObjectMeta(name="echo", labels={VERIFY_SERVICE_LABEL: "true"}),
        # A NodePort too, so each proxy mode's NodePort rules are there for test_3 to check and capture;
        # both families on a dual-stack lab.
        spec=client.V1ServiceSpec(type="NodePort", selector=labels, ip_family_policy="PreferDualStack", ports=[
            client.V1ServicePort(port=80, target_port=8080, node_port=ECHO_NODE_PORT)])))
    cluster_ip = service.spec.cluster_ip
    started = time.monotonic()

    def running_pod() -> str | None:
        pods = core.list_namespaced_pod(ECHO_NAMESPACE, label_selector="app=nodeboot-echo").items
        ready = [p for p in pods if p.status.phase == "Running" and all(s.ready for s in p.status.container_statuses
                                                                          or [])]
        return ready[0].metadata.name if ready else None

    pod = wait_for("echo pod Running on the VM node", running_pod, 600)
    TIMINGS["echo_pod_running_s"] = round(time.monotonic() - started, 1)

    def answer() -> str | None:
        proc = on_node(h, f"curl -s --max-time 5 http://{cluster_ip}/")
        return proc.stdout if proc.returncode == 0 and pod in proc.stdout else None

    assert f"pod={pod}" in wait_for(f"an answer from {cluster_ip}:80", answer, 120)
    TIMINGS["service_answering_s"] = round(time.monotonic() - started, 1)


def test_dual_stack_the_node_has_both_families_and_kube_proxy_programs_both(joined: Joined) -> None:
    """The lab's dual-stack control plane, the node joined with nodeboot_node_ip "v4,v6"."""
    h = joined.handle
    node_ip4, node_ip6 = vm(h)["address"], vm(h)["address6"]
    assert h.env["dual_stack"] and node_ip6, "the node tier's lab is dual-stack"
    node = h.cluster().core.read_node(joined.node)
    internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
    assert internal == [node_ip4, node_ip6]
    assert [ipaddress.ip_network(c).version for c in node.spec.pod_cidrs] == [4, 6]
    service = h.cluster().core.read_namespaced_service("echo", ECHO_NAMESPACE)
    assert service.spec.ip_families == ["IPv4", "IPv6"]
    echo6 = service.spec.cluster_ips[1]

    def answer6() -> str | None:
        proc = on_node(h, f"curl -sg --max-time 5 http://[{echo6}]/")
        return proc.stdout if proc.returncode == 0 and "pod=" in proc.stdout else None

    wait_for(f"an answer from [{echo6}]:80", answer6, 120)
    # IPVS mode: the IPv6 ClusterIP is a virtual server and sits on kube-ipvs0.
    assert f"TCP  [{echo6}]:80" in node_out(h, "ipvsadm -Ln")
    assert f"inet6 {echo6}/128" in node_out(h, "ip -6 addr show dev kube-ipvs0")
    # verify connects to both families on a dual-stack node: the kubernetes Service and the echo Service's IPv6.
    reachable = verify_passes(h, joined.inventory)["nodes"][0]["checks"]["service-reachable"]
    assert reachable["status"] == "pass" and f"[{echo6}]:80 ({ECHO_NAMESPACE}/echo)" in reachable["detail"], reachable


def test_a_second_run_is_one_round_trip_and_makes_no_token(joined: Joined) -> None:
    result, seconds = join(joined.handle, joined.inventory, joined.args)
    TIMINGS["no_change_rerun_s"] = seconds
    assert result["tokens_created"] == 0
    assert [(h["result"], h["execs"]) for h in result["hosts"]] == [("ok", 1)]


CLEAN_CHECKS = {
    "kubelet running": "systemctl is-active kubelet || true",
    "KUBE-* chains": "{ iptables-save; ip6tables-save; } | grep '^:KUBE-' || true",
    "kube-proxy nft tables": "nft list tables | grep kube-proxy || true",
    "IPVS services": "ipvsadm -Ln | grep -E '^(TCP|UDP|SCTP)' || true",
    "kube-ipvs0": "ip -o link show kube-ipvs0 2>/dev/null || true",
    "cni0": "ip -o link show cni0 2>/dev/null || true",
    "/etc/cni/net.d entries": "ls -A /etc/cni/net.d 2>/dev/null || true",
    "/var/lib/kubelet": "ls -d /var/lib/kubelet 2>/dev/null || true",
}


def test_reset_leaves_the_node_clean_and_it_joins_again(joined: Joined) -> None:
    """Last in this module: it takes the node out, checks what is left, and joins it again."""
    h = joined.handle
    proc = h.nodeboot("reset", "-i", joined.inventory, "--kubeconfig", h.kubeconfig, "--yes", timeout=900)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    left = {what: node_out(h, command).strip() for what, command in CLEAN_CHECKS.items()}
    assert left == {**dict.fromkeys(CLEAN_CHECKS, ""), "kubelet running": "inactive"}
    with pytest.raises(client.ApiException):
        h.cluster().core.read_node(joined.node)
    # Reset removed it, as it would a CNI's; the CNI writes it again.
    node_out(h, pod_network.install_command(dual_stack=h.env["dual_stack"]))
    result, seconds = join(h, joined.inventory, joined.args)
    TIMINGS["rejoin_after_reset_s"] = seconds
    assert result["tokens_left"] == [] and node_ready(h, joined.node) is not None
