"""The inventory rules nodeboot shares with Ansible, one at a time (the differential test checks them together
against ansible-inventory itself): precedence, INI, ranges, host_vars/ and group_vars/, warnings, --list."""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from nodeboot.cli import main
from nodeboot.errors import UsageError
from nodeboot.inventory import load_inventory
from nodeboot.inventory_hostpatterns import HostPatternError, expand, hosts_of


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def by_name(path: str, warnings: list[str] | None = None) -> dict:
    return {h.name: h for h in load_inventory(path, warn=(warnings.append if warnings is not None else None))}


# -- precedence ---------------------------------------------------------------------------------
def test_the_host_beats_every_group_whatever_the_order(tmp_path):
    # The bug the issue found: a group listed after the host's own entry overrode the host's var.
    path = write(tmp_path, "inv.yml", """
all:
  children:
    a: {hosts: {h1: {ansible_user: host-user}}}
    b: {hosts: {h1: }, vars: {ansible_user: group-b}}
""")
    assert by_name(path)["h1"].user == "host-user"


def test_children_beat_parents_then_priority_then_name(tmp_path):
    path = write(tmp_path, "inv.yml", """
all:
  vars: {ansible_user: from-all}
  children:
    parent:
      vars: {ansible_user: from-parent, nodeboot_proxy_mode: iptables}
      children:
        child: {hosts: {h1: }, vars: {ansible_user: from-child}}
    zz: {hosts: {h1: }, vars: {nodeboot_proxy_mode: nftables}}
    aa: {hosts: {h2: }, vars: {nodeboot_proxy_mode: nftables, ansible_group_priority: 5}}
    bb: {hosts: {h2: }, vars: {nodeboot_proxy_mode: ipvs}}
""")
    hosts = by_name(path)
    assert hosts["h1"].user == "from-child"  # deeper group wins over its parent and all
    assert hosts["h1"].proxy_mode == "nftables"  # same depth: 'zz' sorts after 'parent'
    assert hosts["h2"].proxy_mode == "nftables"  # priority 5 beats the name order (bb after aa)
    assert hosts["h2"].groups == ["all", "bb", "aa"]  # lowest precedence first
    assert "ansible_group_priority" not in hosts["h2"].vars


def test_vars_directories_and_their_precedence(tmp_path):
    path = write(tmp_path, "inv.ini", "[web]\nweb-1 ansible_user=inline nodeboot_proxy_mode=ipvs\n"
                                      "[web:vars]\nansible_port=2200\nnodeboot_node_ip=10.0.0.1\n")
    write(tmp_path, "group_vars/all.yml", "ansible_port: 2300\n")  # group_vars/all beats the inventory's groups
    write(tmp_path, "group_vars/web/10-first.yml", "nodeboot_labels: {tier: one}\nnodeboot_node_ip: 10.0.0.9\n")
    write(tmp_path, "group_vars/web/20-second", "nodeboot_labels: {tier: two}\n")  # later file wins
    write(tmp_path, "group_vars/web/30-notes.txt", "nodeboot_labels: {tier: ignored}\n")
    write(tmp_path, "host_vars/web-1.yaml", "ansible_user: from-host-vars\n")
    web1 = by_name(path)["web-1"]
    assert (web1.port, web1.user, web1.proxy_mode) == (2300, "from-host-vars", "ipvs")
    assert web1.labels == {"tier": "two"} and web1.node_ips == ["10.0.0.9"]


def test_a_password_env_from_group_vars_stays_a_name(tmp_path, monkeypatch):
    path = write(tmp_path, "inv.yml", "windows:\n  hosts:\n    win-1:\n")
    write(tmp_path, "group_vars/windows.json",
          json.dumps({"ansible_connection": "winrm", "ansible_password": "{{ lookup('env', 'WIN_PW') }}"}))
    win = by_name(path)["win-1"]
    assert (win.os, win.password_env, win.password) == ("windows", "WIN_PW", None)
    monkeypatch.setenv("WIN_PW", "from-env")
    assert win.secret() == "from-env"


# -- INI ----------------------------------------------------------------------------------------
def test_ini_inventory(tmp_path):
    path = write(tmp_path, "hosts", """
# Ansible's default format
lone ansible_host=10.0.0.9
[linux:children]
web
[web]
web-[1:3]:2222 nodeboot_labels="{'tier': 'web'}" ansible_become=True
[web:vars]
ansible_user=root   ; not a comment in a vars line: Python literal or text
nodeboot_proxy_mode=ipvs
""")
    hosts = by_name(path)
    assert sorted(hosts) == ["lone", "web-1", "web-2", "web-3"]
    web2 = hosts["web-2"]
    assert (web2.port, web2.labels, web2.become, web2.proxy_mode) == (2222, {"tier": "web"}, True, "ipvs")
    assert web2.user == "root   ; not a comment in a vars line: Python literal or text"
    assert set(web2.groups) == {"all", "linux", "web"} and hosts["lone"].groups == ["all", "ungrouped"]


@pytest.mark.parametrize(("text", "problem"), [
    ("[web:children]\ndb\n", "line 2: [web:children] names 'db'"),
    ("[db:vars]\na=1\n", "line 1: [db:vars] is for a group that is never defined"),
    ("[web]\nh1 novalue\n", "line 2: expected key=value"),
    ("[web:nonsense]\nh1\n", "line 1: section"),
    ("[a]\n[b:children]\na\n[a:children]\nb\n", "inside itself"),
    ("[web]\nweb-[3]\n", "line 2: host pattern"),
])
def test_ini_errors_name_the_line(tmp_path, text, problem):
    path = write(tmp_path, "hosts.ini", text)
    with pytest.raises(UsageError) as err:
        load_inventory(path)
    assert str(err.value).startswith(path) and problem in str(err.value) and "\n" not in str(err.value)


def test_yaml_that_is_not_a_mapping_is_tried_as_ini(tmp_path):
    assert sorted(by_name(write(tmp_path, "hosts", "h1\nh2 ansible_port=22\n"))) == ["h1", "h2"]


# -- ranges -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("pattern", "names", "port"), [
    ("web-[1:3]", ["web-1", "web-2", "web-3"], None),
    ("db[a:c]", ["dba", "dbb", "dbc"], None),
    ("n[01:10]", [f"n{i:02d}" for i in range(1, 11)], None),
    ("n[1:10:2]", ["n1", "n3", "n5", "n7", "n9"], None),
    ("r[1:2]-[a:b].example.com:2200", ["r1-a.example.com", "r1-b.example.com", "r2-a.example.com",
                                        "r2-b.example.com"], 2200),
    ("10.1.[0:1].5", ["10.1.0.5", "10.1.1.5"], None),
    ("[fd00::1]:22", ["fd00::1"], 22),
    ("fd00::1", ["fd00::1"], None),
])
def test_host_patterns(pattern, names, port):
    assert hosts_of(pattern) == (names, port)


@pytest.mark.parametrize("pattern", ["n[1]", "n[01:100]", "n[1:]", "n[c:a]", "n[1:3", "n[1:3:0]"])
def test_bad_ranges(pattern):
    with pytest.raises(HostPatternError):
        expand(pattern)


def test_a_port_in_the_pattern_counts_where_the_host_first_appears(tmp_path):
    path = write(tmp_path, "inv.yml", "all:\n  children:\n    a: {hosts: {'h1:2201': }}\n"
                                      "    b: {hosts: {'h1:2202': }}\n")
    assert by_name(path)["h1"].port == 2201


# -- warnings and --list ------------------------------------------------------------------------
def test_unknown_nodeboot_vars_are_named_with_the_closest_known_one(tmp_path):
    path = write(tmp_path, "inv.yml", "all:\n  vars: {nodeboot_proxy_mod: ipvs}\n  hosts:\n"
                                      "    h1: {nodeboot_labels: {a: b}, nodeboot_zzz: 1}\n    h2:\n")
    warnings: list[str] = []
    by_name(path, warnings)
    assert f"{path}: host h1, h2: unknown var nodeboot_proxy_mod, nodeboot ignores it; " \
           "did you mean nodeboot_proxy_mode?" in warnings
    assert any("host h1: unknown var nodeboot_zzz" in w and "did you mean" not in w for w in warnings)
    assert not any("nodeboot_labels" in w for w in warnings)


def test_playbook_vars_are_known(tmp_path):
    path = write(tmp_path, "inv.yml", "all:\n  vars: {nodeboot_kubeconfig: /k, nodeboot_cli: nodeboot}\n"
                                      "  hosts: {h1: }\n")
    warnings: list[str] = []
    by_name(path, warnings)
    assert warnings == []


def run_cli(argv: list[str], monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["nodeboot", *argv])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as ended:
        main()
    return int(ended.value.code or 0), out.getvalue(), err.getvalue()


def test_inventory_list_command(tmp_path, monkeypatch):
    path = write(tmp_path, "inv.ini", "[win]\nwin-1 ansible_password=hunter22 nodeboot_proxy_mdoe=x\n"
                                      "win-2 ansible_password=\"{{ lookup('env', 'PW') }}\"\n[linux]\nl1\n")
    code, out, err = run_cli(["inventory", "--list", "-i", path], monkeypatch)
    assert code == 0
    document = json.loads(out)
    assert document["all"] == {"children": ["ungrouped", "win", "linux"]}
    assert document["win"] == {"hosts": ["win-1", "win-2"]} and document["linux"] == {"hosts": ["l1"]}
    assert document["_meta"]["hostvars"]["win-1"]["ansible_password"] == "******"
    assert document["_meta"]["hostvars"]["win-2"]["ansible_password"] == "{{ lookup('env', 'PW') }}"
    assert "hunter22" not in out + err
    assert "host win-1: unknown var nodeboot_proxy_mdoe" in err and "nodeboot_proxy_mode?" in err
    code, _, err = run_cli(["inventory", "-i", path], monkeypatch)
    assert code == 2 and "--list" in err
    code, _, err = run_cli(["inventory", "--list", "-i", str(tmp_path / "missing")], monkeypatch)
    assert code == 2 and "missing: cannot read inventory" in err
