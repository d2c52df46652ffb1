"""JoinConfiguration, rendered for the kubeadm on the node.

v1beta4 (kubeadm >= 1.31) has kubeletExtraArgs as a list of {name, value} and a
timeouts block; v1beta3 has kubeletExtraArgs as a map and discovery.timeout.

KubeletConfiguration fields reach the node through kubeadm's patches: the
config names a directory, and join.sh writes the patch file there (its name,
kubeletconfiguration+merge.yaml, tells kubeadm the target and the patch type).
kubeletExtraArgs stays for command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from nodeboot.node_layout import cri_socket
from nodeboot.validate import Taint

PATCHES_DIR = "/etc/kubernetes/patches"
KUBELET_PATCH_FILE = "kubeletconfiguration+merge.yaml"


@dataclass
class JoinSpec:
    endpoint: str
    token: str = field(repr=False)
    ca_hashes: list[str]
    node_name: str
    os: str = "linux"
    taints: list[Taint] = field(default_factory=list)
    node_ips: list[str] = field(default_factory=list)
    kubelet_extra_args: dict[str, str] = field(default_factory=dict)
    ignore_preflight_errors: list[str] = field(default_factory=list)
    cri_socket: str | None = None
    discovery_timeout: str = "5m0s"
    kubelet_config: dict[str, Any] = field(default_factory=dict)  # Linux: merged into the kubelet's config


def kubelet_patch(kubelet_config: dict[str, Any]) -> str:
    """The patch file's text ("" when nothing is asked); join.sh writes it into PATCHES_DIR."""
    if not kubelet_config:
        return ""
    doc = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", **kubelet_config}
    return yaml.safe_dump(doc, sort_keys=False)


def api_version_for(kubeadm_minor: int) -> str:
    return "kubeadm.k8s.io/v1beta4" if kubeadm_minor >= 31 else "kubeadm.k8s.io/v1beta3"


def render(spec: JoinSpec, kubeadm_minor: int) -> str:
    api_version = api_version_for(kubeadm_minor)
    extra = dict(spec.kubelet_extra_args)
    if spec.node_ips:
        extra["node-ip"] = ",".join(spec.node_ips)
    registration: dict = {
        "name": spec.node_name,
        "criSocket": spec.cri_socket or cri_socket(spec.os),
        # Taints at registration: the node never runs an unwanted pod before they land.
        "taints": [t.as_api() for t in spec.taints],
    }
    if spec.ignore_preflight_errors:
        registration["ignorePreflightErrors"] = list(spec.ignore_preflight_errors)
    doc: dict = {
        "apiVersion": api_version,
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "apiServerEndpoint": spec.endpoint,
                "token": spec.token,
                "caCertHashes": list(spec.ca_hashes),
            }
        },
        "nodeRegistration": registration,
    }
    if spec.kubelet_config and spec.os != "windows":
        doc["patches"] = {"directory": PATCHES_DIR}
    if api_version.endswith("v1beta4"):
        if extra:
            registration["kubeletExtraArgs"] = [{"name": k, "value": v} for k, v in sorted(extra.items())]
        doc["timeouts"] = {"discovery": spec.discovery_timeout, "tlsBootstrap": "5m0s", "kubeletHealthCheck": "4m0s"}
    else:
        if extra:
            registration["kubeletExtraArgs"] = dict(sorted(extra.items()))
        doc["discovery"]["timeout"] = spec.discovery_timeout
    return yaml.safe_dump(doc, sort_keys=False)
