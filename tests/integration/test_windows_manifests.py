"""What windows-join.yml applies, and nodeboot's own Windows manifests, checked by the lab's
real API server with a server-side dry run (admission and validation, nothing stored)."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client, utils

ROOT = Path(__file__).resolve().parents[2]


def dry_run_apply(api: client.ApiClient, docs: list[dict]) -> None:
    for doc in docs:
        utils.create_from_dict(api, doc, dry_run="All")


def test_the_ci_recipes_flannel_and_nodeboots_windows_manifests_pass_a_server_side_dry_run(lab) -> None:
    from nodeboot.cluster import windows as cluster_windows

    cluster = lab.cluster()
    try:  # namespaced objects need their namespace to exist, even in a dry run
        cluster.core.create_namespace({"metadata": {"name": "kube-flannel"}})
    except client.ApiException as exc:
        assert exc.status == 409
    recipe = [d for d in yaml.safe_load_all((ROOT / ".github/windows-join/kube-flannel-linux.yaml").read_text()) if d]
    ours = cluster_windows.render("flannel-windows.yaml", {"POD_SUBNET": "10.244.0.0/16",
                                                           "FLANNEL_IMAGE": cluster_windows.FLANNEL_IMAGE})
    ours += cluster_windows.render("kube-proxy-windows.yaml", {"KUBE_PROXY_IMAGE": "sigwindowstools/kube-proxy:"
                                                               "v1.37.2-flannel-hostprocess"})
    rejected = []
    for doc in recipe + ours:
        if doc["kind"] == "Namespace":
            continue
        try:
            dry_run_apply(cluster.api, [doc])
        except utils.FailToCreateError as exc:
            for err in exc.api_exceptions:
                if err.status != 409:  # already there from another test: validated when it was made
                    rejected.append(f"{doc['kind']} {doc['metadata']['name']}: {err.status} {err.body[:300]}")
    assert rejected == []
    # The check can fail: a DaemonSet whose selector does not match its pods is refused.
    bad = next(d for d in recipe if d["kind"] == "DaemonSet")
    bad = {**bad, "metadata": {**bad["metadata"], "name": "broken"},
           "spec": {**bad["spec"], "selector": {"matchLabels": {"app": "other"}}}}
    try:
        dry_run_apply(cluster.api, [bad])
    except utils.FailToCreateError as exc:
        assert exc.api_exceptions[0].status == 422
    else:
        raise AssertionError("the API server accepted a DaemonSet whose selector does not match its template")
