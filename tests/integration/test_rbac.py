"""The shipped roles are enough, and nothing less is (issue 14, item 14): a ServiceAccount bound
by bootstrap/nodeboot/manifests/rbac.yaml joins and resets a lab host; one without the roles is
stopped with one line naming the verb and resource it lacks."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from labkit import ROOT, summary

RBAC = ROOT / "bootstrap" / "nodeboot" / "manifests" / "rbac.yaml"
NAMESPACE = "nodeboot-rbac-test"


def shipped() -> list[dict]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


def apply(cluster, doc: dict) -> None:
    rbac, kind, meta = cluster.rbac, doc["kind"], doc["metadata"]
    create = {"ClusterRole": lambda: rbac.create_cluster_role(doc),
              "Role": lambda: rbac.create_namespaced_role(meta["namespace"], doc),
              "ClusterRoleBinding": lambda: rbac.create_cluster_role_binding(doc),
              "RoleBinding": lambda: rbac.create_namespaced_role_binding(meta["namespace"], doc)}[kind]
    create()


def delete(cluster, doc: dict) -> None:
    rbac, kind, meta = cluster.rbac, doc["kind"], doc["metadata"]
    remove = {"ClusterRole": lambda: rbac.delete_cluster_role(meta["name"]),
              "Role": lambda: rbac.delete_namespaced_role(meta["name"], meta["namespace"]),
              "ClusterRoleBinding": lambda: rbac.delete_cluster_role_binding(meta["name"]),
              "RoleBinding": lambda: rbac.delete_namespaced_role_binding(meta["name"], meta["namespace"])}[kind]
    try:
        remove()
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def service_account_kubeconfig(lab, name: str, path: Path) -> Path:
    """A kubeconfig that is this ServiceAccount (a bound token, an hour) against the lab's API server."""
    cluster = lab.cluster()
    cluster.core.create_namespaced_service_account(NAMESPACE, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name=name)))
    token = cluster.core.create_namespaced_service_account_token(name, NAMESPACE, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    admin = yaml.safe_load(Path(lab.kubeconfig).read_text())
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "clusters": copy.deepcopy(admin["clusters"]),
                  "users": [{"name": name, "user": {"token": token}}],
                  "contexts": [{"name": name, "context": {"cluster": admin["clusters"][0]["name"], "user": name}}],
                  "current-context": name}
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def accounts(lab, tmp_path_factory) -> Iterator[dict[str, Path]]:
    """'operator': bound to every shipped role through the shipped bindings; 'join-only': bound to
    the roles join needs and nothing else; 'nobody': no binding at all."""
    cluster = lab.cluster()
    work = tmp_path_factory.mktemp("rbac")
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    operator = {"kind": "ServiceAccount", "name": "operator", "namespace": NAMESPACE}
    join_only = {"kind": "ServiceAccount", "name": "join-only", "namespace": NAMESPACE}
    docs = shipped()
    for doc in docs:
        if doc["kind"].endswith("Binding"):
            doc["subjects"].append(operator)
            if doc["roleRef"]["name"] in ("nodeboot:join", "nodeboot:nodes-read"):
                doc["subjects"].append(join_only)
        apply(cluster, doc)
    try:
        yield {name: service_account_kubeconfig(lab, name, work / f"{name}.conf")
               for name in ("operator", "join-only", "nobody")}
    finally:
        for doc in docs:
            delete(cluster, doc)
        cluster.core.delete_namespace(NAMESPACE)


def test_shipped_roles_join_and_reset_a_host(lab, accounts):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "rbac-operator")
    kubeconfig = str(accounts["operator"])
    proc, events = lab.nodeboot_json("join", "-i", str(inventory), "--kubeconfig", kubeconfig,
                                     "--labels", "tier=rbac", "--taints", "rbac=yes:NoSchedule")
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    assert summary(events)["tokens_left"] == []
    node = lab.cluster().core.read_node(host["name"])
    assert node.metadata.labels["tier"] == "rbac"
    assert [(t.key, t.effect) for t in node.spec.taints] == [("rbac", "NoSchedule")]
    proc = lab.nodeboot("reset", "-i", str(inventory), "--yes", "--kubeconfig", kubeconfig)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    with pytest.raises(client.ApiException) as gone:
        lab.cluster().core.read_node(host["name"])
    assert gone.value.status == 404


def test_without_the_roles_join_stops_with_one_forbidden_line(lab, accounts):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "rbac-nobody")
    proc = lab.nodeboot("join", "-i", str(inventory), "--kubeconfig", str(accounts["nobody"]))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ('forbidden: needs get on configmaps "cluster-info" in namespace kube-public '
            f"for system:serviceaccount:{NAMESPACE}:nobody") in lines[0]
    assert lab.ssh(host, "test -e /etc/kubernetes/kubelet.conf; echo $?").stdout.strip() == "1"


def test_join_roles_do_not_reset(lab, accounts):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "rbac-join-only")
    kubeconfig = str(accounts["join-only"])
    proc = lab.nodeboot("join", "-i", str(inventory), "--kubeconfig", kubeconfig)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    proc, events = lab.nodeboot_json("reset", "-i", str(inventory), "--yes", "--kubeconfig", kubeconfig)
    assert proc.returncode == 1
    (failed,) = summary(events)["hosts"]
    assert failed["phase"] == "drain"
    assert (f"forbidden: needs list on pods for system:serviceaccount:{NAMESPACE}:join-only"
            in failed["detail"]), failed["detail"]
    # Refused before the cordon: the node is as it was, and the admin's reset still works.
    assert not lab.cluster().core.read_node(host["name"]).spec.unschedulable
    proc = lab.nodeboot("reset", "-i", str(inventory), "--yes")
    assert proc.returncode == 0, proc.stderr
