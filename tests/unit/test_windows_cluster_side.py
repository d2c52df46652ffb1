"""The cluster side of Windows nodes, as both engines decide it (no API server needed here;
the lab tests run it against the real one)."""

from __future__ import annotations

from pathlib import Path

import yaml

from nodeboot.cluster import windows as cluster_windows

ROLE = Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "nodeboot_windows"


def test_without_a_cni_nodeboot_deploys_no_kube_proxy_flavour() -> None:
    assert cluster_windows.desired(None, None) == []  # type: ignore[arg-type] - never asks the cluster
    assert cluster_windows.LINUX_DAEMONSETS[None] == [("kube-system", "kube-proxy")]


def test_the_ansible_engine_runs_the_same_cluster_side_without_a_cni() -> None:
    tasks = yaml.safe_load((ROLE / "tasks" / "join.yml").read_text())
    task = next(t for t in tasks if t["name"].startswith("windows-cluster:"))
    assert "when" not in task and task["run_once"] is True  # always, once per run, as the native engine
    cmd = task["ansible.builtin.command"]["cmd"]
    assert "node windows-cluster" in cmd and "if nodeboot_cni else ''" in cmd
