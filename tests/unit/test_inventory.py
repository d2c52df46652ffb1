from __future__ import annotations

from pathlib import Path

import pytest

from nodeboot.errors import InventoryError, UsageError
from nodeboot.inventory import apply_limit, host_from_arg, load_inventory

INVENTORY = """
all:
  vars:
    ansible_user: root
    nodeboot_proxy_mode: iptables
  children:
    linux:
      vars:
        nodeboot_labels: {tier: web}
      hosts:
        web-1:
          ansible_host: 10.0.0.11
          ansible_port: 2222
          nodeboot_taints: ["dedicated=web:NoSchedule"]
          nodeboot_node_ip: [10.0.0.11, "fd00::11"]
          nodeboot_proxy_mode: ipvs
        web-2: {ansible_host: 10.0.0.12}
    windows:
      vars:
        ansible_connection: winrm
        ansible_password: "{{ lookup('env', 'WIN_PW') }}"
      hosts:
        WIN-1: {ansible_host: 10.0.0.21, nodeboot_node_name: win-1}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "inv.yml"
    path.write_text(text)
    return str(path)


def test_groups_vars_and_precedence(tmp_path):
    hosts = {h.name: h for h in load_inventory(write(tmp_path, INVENTORY))}
    web1, web2, win = hosts["web-1"], hosts["web-2"], hosts["WIN-1"]
    assert (web1.address, web1.port, web1.user, web1.os) == ("10.0.0.11", 2222, "root", "linux")
    assert web1.proxy_mode == "ipvs" and web2.proxy_mode == "iptables"  # host var beats group var
    assert web1.labels == {"tier": "web"} and str(web1.taints[0]) == "dedicated=web:NoSchedule"
    assert web1.node_ips == ["10.0.0.11", "fd00::11"]
    assert win.os == "windows" and win.connection == "winrm" and win.node_name == "win-1"
    assert win.password_env == "WIN_PW" and win.password is None
    assert set(win.groups) == {"all", "windows"}


def test_password_comes_from_the_environment_when_needed(tmp_path, monkeypatch):
    win = next(h for h in load_inventory(write(tmp_path, INVENTORY)) if h.name == "WIN-1")
    monkeypatch.setenv("WIN_PW", "s3cret-value")
    assert win.secret() == "s3cret-value"


@pytest.mark.parametrize(
    ("snippet", "field"),
    [
        ("ansible_port: 70000", "ansible_port"),
        ("nodeboot_os: solaris", "nodeboot_os"),
        ("nodeboot_proxy_mode: userspace", "nodeboot_proxy_mode"),
        ("nodeboot_taints: ['a=b:Sometimes']", "nodeboot_taints"),
        ("nodeboot_labels: {'bad key!': x}", "nodeboot_labels"),
        ("nodeboot_node_ip: [10.0.0.1, 10.0.0.2]", "nodeboot_node_ip"),
        ("nodeboot_node_name: Not_A_Node", "nodeboot_node_name"),
        ("nodeboot_password_env: 1bad", "nodeboot_password_env"),
    ],
)
def test_bad_values_name_file_host_and_field(tmp_path, snippet, field):
    path = write(tmp_path, f"all:\n  hosts:\n    h1:\n      {snippet}\n")
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    message = str(err.value)
    assert message.startswith(path) and "host h1" in message and f"field {field}" in message
    assert "\n" not in message


def test_not_yaml_and_not_an_inventory(tmp_path):
    with pytest.raises(UsageError, match="not valid YAML"):
        load_inventory(write(tmp_path, "all: [unclosed"))
    with pytest.raises(InventoryError, match="no hosts"):
        load_inventory(write(tmp_path, "all:\n  vars: {a: 1}\n"))
    with pytest.raises(UsageError, match="cannot read inventory"):
        load_inventory(str(tmp_path / "missing.yml"))


def test_host_arguments():
    h = host_from_arg("admin@node-1.example.com:2200", "linux", {"ansible_ssh_private_key_file": "/k"})
    assert (h.user, h.address, h.port, h.key_file, h.node_name) == ("admin", "node-1.example.com", 2200, "/k",
                                                                    "node-1.example.com")
    w = host_from_arg("win-1", "windows", {})
    assert w.connection == "winrm"
    with pytest.raises(UsageError):
        host_from_arg("bad host", "linux", {})
    with pytest.raises(InventoryError, match="ansible_port"):
        host_from_arg("h:99999", "linux", {})


def test_limit_patterns(tmp_path):
    hosts = load_inventory(write(tmp_path, INVENTORY))
    names = lambda pattern: sorted(h.name for h in apply_limit(hosts, pattern))  # noqa: E731
    assert names("linux") == ["web-1", "web-2"]
    assert names("web-*:!web-2") == ["web-1"]
    assert names("all:&windows") == ["WIN-1"]
    with pytest.raises(UsageError, match="matches no host"):
        apply_limit(hosts, "nothing-here")
