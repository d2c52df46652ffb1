"""--labels and --taints add to the inventory's (issue 14, item 1), in both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeboot import app, cluster_cmd
from nodeboot.ansible_engine import extra_vars
from nodeboot.errors import InventoryError

INVENTORY = """
all:
  children:
    linux:
      vars:
        nodeboot_labels: {tier: web, rack: r1}
      hosts:
        web-1:
          ansible_host: 10.0.0.11
          nodeboot_taints: ["dedicated=web:NoSchedule", "gpu:NoExecute"]
"""


def selection(tmp_path: Path, labels: str | None, taints: str | None) -> app.HostSelection:
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY)
    return app.HostSelection(str(path), None, (), "linux",
                             {"nodeboot_labels": labels, "nodeboot_taints": taints})


def test_native_engine_adds_labels_and_taints_command_line_wins(tmp_path):
    (host,) = app.select_hosts(selection(tmp_path, "zone=a,tier=db", "dedicated=db:NoSchedule,spot:PreferNoSchedule"))
    assert host.labels == {"tier": "db", "rack": "r1", "zone": "a"}
    assert sorted(map(str, host.taints)) == ["dedicated=db:NoSchedule", "gpu:NoExecute", "spot:PreferNoSchedule"]


def test_native_engine_without_flags_keeps_inventory_values(tmp_path):
    (host,) = app.select_hosts(selection(tmp_path, None, None))
    assert host.labels == {"tier": "web", "rack": "r1"}
    assert sorted(map(str, host.taints)) == ["dedicated=web:NoSchedule", "gpu:NoExecute"]


def test_bad_command_line_label_names_the_flag(tmp_path):
    with pytest.raises(InventoryError, match="field --labels"):
        app.select_hosts(selection(tmp_path, "bad key=1", None))


@pytest.mark.parametrize("with_inventory", [True, False])
def test_ansible_engine_passes_flags_under_their_own_names(tmp_path, with_inventory):
    sel = selection(tmp_path, "zone=a", "spot:NoSchedule")
    if not with_inventory:
        sel = app.HostSelection(None, None, ("10.0.0.11",), "linux", sel.cli_vars)
    ev = extra_vars("join", sel, app.RunSettings(), "run-1")
    # Extra vars beat inventory vars in Ansible: the inventory's own must not be overwritten.
    assert "nodeboot_labels" not in ev and "nodeboot_taints" not in ev
    assert ev["nodeboot_added_labels"] == "zone=a" and ev["nodeboot_added_taints"] == "spot:NoSchedule"


def test_controller_side_merges_what_the_playbook_sends():
    host = cluster_cmd.host_from_stdin({"host": "web-1", "groups": ["linux"], "vars": {
        "nodeboot_labels": {"tier": "web"}, "nodeboot_taints": ["dedicated=web:NoSchedule"],
        "nodeboot_added_labels": "tier=db,zone=a", "nodeboot_added_taints": "dedicated=db:NoSchedule"}})
    assert host.labels == {"tier": "db", "zone": "a"}
    assert [str(t) for t in host.taints] == ["dedicated=db:NoSchedule"]


def test_node_ip_flag_reaches_the_host_as_a_dual_stack_pair() -> None:
    # `join --node-ip 10.0.0.11,fd00::11 HOST` arrives as nodeboot_node_ip, the inventory var's own check.
    sel = app.HostSelection(None, None, ("10.0.0.11",), "linux", {"nodeboot_node_ip": "10.0.0.11, fd00::11"})
    (host,) = app.select_hosts(sel)
    assert host.node_ips == ["10.0.0.11", "fd00::11"]
