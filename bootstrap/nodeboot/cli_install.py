"""`nodeboot join`'s flags for installing a bare Linux host and for the kubelet's config.

Each flag is also an inventory var (nodeboot_<name>); the flags reach the hosts
as those vars, over the inventory's, so one parser (inventory.py) reads both.
A bad flag is a one-line usage error naming the flag (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from nodeboot import app, node_install


def install_options(f: Callable) -> Callable:
    decorators = [
        click.option("--install", is_flag=True,
                     help="Linux: install containerd, runc, the CNI plugins, kubelet and kubeadm on hosts "
                          "that lack them, from --artifacts-url (inventory: nodeboot_install: true)."),
        click.option("--artifacts-ca", metavar="FILE",
                     help="CA bundle the hosts check --artifacts-url's certificate against."),
        click.option("--kubernetes-version", metavar="vX.Y.Z", help="With --install (default: the API server's)."),
        click.option("--containerd-version", metavar="X.Y.Z",
                     help=f"With --install (default {node_install.DEFAULT_CONTAINERD_VERSION})."),
        click.option("--cni-version", metavar="X.Y.Z",
                     help=f"CNI plugins, with --install (default {node_install.DEFAULT_CNI_VERSION})."),
        click.option("--runc-version", metavar="X.Y.Z",
                     help=f"With --install (default {node_install.DEFAULT_RUNC_VERSION})."),
        click.option("--install-kubectl", is_flag=True, help="With --install: kubectl too."),
        click.option("--registry-mirror", "registry_mirrors", multiple=True, metavar="REGISTRY=URL",
                     help="With --install: containerd pulls REGISTRY's images through URL (repeatable)."),
        click.option("--registry-ca", metavar="FILE", help="With --install: the CA of the registry mirrors."),
        click.option("--disable-swap", is_flag=True, help="With --install: turn swap off now and across reboots."),
        click.option("--kubelet-config", metavar="FILE",
                     help="YAML mapping of KubeletConfiguration fields, applied through kubeadm patches "
                          "(inventory: nodeboot_kubelet_config)."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def install_vars(kw: dict[str, Any]) -> dict[str, Any]:
    """The flags, checked, as the inventory vars they stand for (None: not given, the inventory's applies)."""
    check = app.check_flag
    mirrors = [check("--registry-mirror", node_install.registry_mirror, m) for m in kw["registry_mirrors"]]
    given = {
        "nodeboot_install": True if kw["install"] else None,
        "nodeboot_artifacts_url": check("--artifacts-url", node_install.url, kw["artifacts_url"]),
        # Files are read here to check them, and again (with the inventory's) when the hosts are built.
        "nodeboot_artifacts_ca": kw["artifacts_ca"] if check("--artifacts-ca", node_install.pem_file,
                                                             kw["artifacts_ca"]) else None,
        "nodeboot_kubernetes_version": check("--kubernetes-version", node_install.kubernetes_version,
                                             kw["kubernetes_version"]),
        "nodeboot_containerd_version": check("--containerd-version", node_install.version, kw["containerd_version"]),
        "nodeboot_cni_version": check("--cni-version", node_install.version, kw["cni_version"]),
        "nodeboot_runc_version": check("--runc-version", node_install.version, kw["runc_version"]),
        "nodeboot_install_kubectl": True if kw["install_kubectl"] else None,
        "nodeboot_registry_mirror": [f"{r}={u}" for r, u in mirrors] or None,
        "nodeboot_registry_ca": kw["registry_ca"] if check("--registry-ca", node_install.pem_file,
                                                           kw["registry_ca"]) else None,
        "nodeboot_disable_swap": True if kw["disable_swap"] else None,
        "nodeboot_kubelet_config": check("--kubelet-config", node_install.kubelet_config_file, kw["kubelet_config"]),
    }
    return {k: v for k, v in given.items() if v is not None}
