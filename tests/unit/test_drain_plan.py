"""Drain refuses what kubectl drain refuses (issue 14, item 6): pods whose emptyDir data
would be lost, and pods no controller recreates, unless asked."""

from __future__ import annotations

import pytest
from kubernetes import client

from nodeboot.cluster.nodes import DrainResult, _drain_plan
from nodeboot.errors import ClusterError


def pod(name: str, owner: str | None = "ReplicaSet", empty_dir: bool = False) -> client.V1Pod:
    refs = [client.V1OwnerReference(api_version="apps/v1", kind=owner, name="o", uid="u", controller=True)] \
        if owner else None
    volumes = [client.V1Volume(name="scratch", empty_dir=client.V1EmptyDirVolumeSource())] if empty_dir else None
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, namespace="default", owner_references=refs),
                        spec=client.V1PodSpec(containers=[], volumes=volumes),
                        status=client.V1PodStatus(phase="Running"))


def plan(pods, force=False, delete_emptydir_data=False) -> list[str]:
    return [p.metadata.name for p in _drain_plan("n1", pods, force, delete_emptydir_data, DrainResult([], [], []))]


def test_emptydir_pod_is_refused_unless_asked():
    pods = [pod("web"), pod("cache", empty_dir=True)]
    with pytest.raises(ClusterError, match=r"emptyDir volumes whose data would be lost \(default/cache\): "
                                           r"drain with --delete-emptydir-data"):
        plan(pods)
    assert plan(pods, delete_emptydir_data=True) == ["web", "cache"]


def test_both_refusals_are_named_at_once():
    with pytest.raises(ClusterError) as refused:
        plan([pod("bare", owner=None), pod("cache", empty_dir=True)])
    assert "--force" in str(refused.value) and "--delete-emptydir-data" in str(refused.value)


def test_daemonset_pods_stay_even_with_emptydir():
    result = DrainResult([], [], [])
    assert _drain_plan("n1", [pod("ds", owner="DaemonSet", empty_dir=True)], False, False, result) == []
    assert result.skipped_daemonset == ["default/ds"]
