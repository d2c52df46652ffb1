"""GMSA in the cluster: the GMSACredentialSpec CRD, the windows-gmsa webhook
check, credential-spec resources with a ClusterRole (verb `use`) bound to
service accounts, and RunAsUserName/GMSA on a workload's pod template."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from nodeboot.cluster.client import Cluster, short_api_error
from nodeboot.errors import ClusterError, UsageError

CRD_NAME = "gmsacredentialspecs.windows.k8s.io"
GROUP, VERSION, PLURAL = "windows.k8s.io", "v1", "gmsacredentialspecs"
CRD_FILE = Path(__file__).resolve().parents[1] / "manifests" / "gmsa-crd.yaml"
WEBHOOK_HELP = ("the windows-gmsa admission webhook is not installed: without it pods are not checked against "
                "their credential spec and its use permission. Install it from "
                "https://github.com/kubernetes-sigs/windows-gmsa (its Helm chart, or "
                "admission-webhook/deploy/deploy-gmsa-webhook.sh), which needs cert-manager or its own certificates")
MANAGED = {"app.kubernetes.io/managed-by": "nodeboot"}
WORKLOAD_KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}


def _api(call, what: str):
    try:
        return call()
    except client.ApiException as exc:
        raise ClusterError(f"{what}: {short_api_error(exc)}") from None


def crd_installed(cluster: Cluster) -> bool:
    try:
        client.ApiextensionsV1Api(cluster.api).read_custom_resource_definition(CRD_NAME)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise ClusterError(f"cannot read CRD {CRD_NAME}: {short_api_error(exc)}") from None


def install_crd(cluster: Cluster, timeout: float = 30.0) -> bool:
    """Create the CRD if missing and wait until it is Established; True if created."""
    ext = client.ApiextensionsV1Api(cluster.api)
    if crd_installed(cluster):
        return False
    body = yaml.safe_load(CRD_FILE.read_text())
    try:
        ext.create_custom_resource_definition(body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise ClusterError(f"cannot create CRD {CRD_NAME}: {short_api_error(exc)}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(CRD_NAME)
        if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
            return True
        time.sleep(0.2)
    raise ClusterError(f"CRD {CRD_NAME} was not Established within {timeout:.0f}s")


def webhook_names(cluster: Cluster) -> list[str]:
    """Admission webhooks that look like windows-gmsa's (validating or mutating)."""
    reg = client.AdmissionregistrationV1Api(cluster.api)
    found = []
    for config in _api(reg.list_validating_webhook_configuration, "cannot list validating webhooks").items + _api(
            reg.list_mutating_webhook_configuration, "cannot list mutating webhooks").items:
        for hook in config.webhooks or []:
            if "gmsa" in hook.name.lower() or "gmsa" in config.metadata.name.lower():
                found.append(f"{config.metadata.name}/{hook.name}")
    return found


def role_name(spec_name: str) -> str:
    return f"gmsa-use-{spec_name}"


@dataclass
class ServiceAccountRef:
    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> ServiceAccountRef:
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise UsageError(f"--service-account {text!r}: expected NAMESPACE/NAME")
        return cls(namespace, name)


def apply_spec(cluster: Cluster, name: str, credspec: dict[str, Any],
               accounts: list[ServiceAccountRef]) -> list[str]:
    """The GMSACredentialSpec, its ClusterRole (verb use) and one RoleBinding per service account."""
    if not crd_installed(cluster):
        raise ClusterError(f"CRD {CRD_NAME} is not installed: run nodeboot gmsa install first")
    custom = client.CustomObjectsApi(cluster.api)
    changes = []
    metadata: dict[str, Any] = {"name": name, "labels": MANAGED}
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "GMSACredentialSpec",
            "metadata": metadata, "credspec": credspec}
    try:
        live = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        if live.get("credspec") != credspec:
            metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
            _api(lambda: custom.replace_cluster_custom_object(GROUP, VERSION, PLURAL, name, body),
                 f"cannot update GMSACredentialSpec {name}")
            changes.append(f"updated GMSACredentialSpec {name}")
    except client.ApiException as exc:
        if exc.status != 404:
            raise ClusterError(f"cannot read GMSACredentialSpec {name}: {short_api_error(exc)}") from None
        _api(lambda: custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body),
             f"cannot create GMSACredentialSpec {name}")
        changes.append(f"created GMSACredentialSpec {name}")
    role = client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name=role_name(name), labels=MANAGED),
        rules=[client.V1PolicyRule(api_groups=[GROUP], resources=[PLURAL], resource_names=[name], verbs=["use"])])
    if _create(lambda: cluster.rbac.create_cluster_role(role), f"ClusterRole {role_name(name)}"):
        changes.append(f"created ClusterRole {role_name(name)} (use {name})")
    for sa in accounts:
        binding_name = f"{role_name(name)}-{sa.name}"
        binding = client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=binding_name, namespace=sa.namespace, labels=MANAGED),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                      name=role_name(name)),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=sa.name, namespace=sa.namespace)])
        if _create(lambda b=binding, ns=sa.namespace: cluster.rbac.create_namespaced_role_binding(ns, b),
                   f"RoleBinding {sa.namespace}/{binding_name}"):
            changes.append(f"created RoleBinding {sa.namespace}/{binding_name} for {sa.namespace}/{sa.name}")
    return changes


def _create(call, what: str) -> bool:
    try:
        call()
        return True
    except client.ApiException as exc:
        if exc.status == 409:
            return False
        raise ClusterError(f"cannot create {what}: {short_api_error(exc)}") from None


def spec_exists(cluster: Cluster, name: str) -> bool:
    try:
        client.CustomObjectsApi(cluster.api).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise ClusterError(f"cannot read GMSACredentialSpec {name}: {short_api_error(exc)}") from None


def parse_workload(text: str) -> tuple[str, str]:
    """KIND/NAME (deployment, statefulset, daemonset) or NAME (a Deployment)."""
    kind, sep, name = text.partition("/")
    if not sep:
        kind, name = "deployment", text
    kind = kind.lower().removesuffix("s") if kind.lower() not in WORKLOAD_KINDS else kind.lower()
    if kind not in WORKLOAD_KINDS or not name:
        raise UsageError(f"workload {text!r}: expected deployment/NAME, statefulset/NAME or daemonset/NAME")
    return WORKLOAD_KINDS[kind], name


def patch_run_as(cluster: Cluster, kind: str, name: str, namespace: str, user: str | None,
                 gmsa: str | None, dry_run: bool = False) -> dict[str, Any]:
    """Set the pod template's securityContext.windowsOptions; returns the patch sent."""
    options: dict[str, Any] = {}
    if user is not None:
        options["runAsUserName"] = user
    if gmsa is not None:
        options["gmsaCredentialSpecName"] = gmsa
    patch = {"spec": {"template": {"spec": {"securityContext": {"windowsOptions": options}}}}}
    calls = {"Deployment": cluster.apps.patch_namespaced_deployment,
             "StatefulSet": cluster.apps.patch_namespaced_stateful_set,
             "DaemonSet": cluster.apps.patch_namespaced_daemon_set}
    kwargs = {"dry_run": "All"} if dry_run else {}
    _api(lambda: calls[kind](name, namespace, patch, **kwargs), f"cannot patch {kind} {namespace}/{name}")
    return patch
