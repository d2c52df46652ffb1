"""examples/: every inventory loads without a warning, says what its comments say, reads the same in
ansible-inventory, and the README's inventory is examples/mixed.yml (issue 18.6)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nodeboot import inventory_cmd
from nodeboot.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INVENTORIES = ["mixed.yml", "linux.yml", "windows.yml", "inventory.ini", "bare-hosts/hosts.yml"]
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def hosts_of(name: str) -> dict:
    warnings: list[str] = []
    hosts = {h.name: h for h in load_inventory(str(EXAMPLES / name), warn=warnings.append)}
    assert warnings == []
    return hosts


def test_every_example_is_tested():
    found = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file()
             and "_vars" not in p.parent.as_posix()}
    assert found == set(INVENTORIES)


def test_mixed():
    hosts = hosts_of("mixed.yml")
    linux, win = hosts["linux-1"], hosts["win-1"]
    assert (linux.os, linux.user, linux.proxy_mode, linux.node_ips) == ("linux", "root", "ipvs",
                                                                        ["10.0.0.11", "fd00::11"])
    assert linux.kubelet_extra_args == {"max-pods": "60"} and str(linux.taints[0]) == "dedicated=web:NoSchedule"
    assert (win.os, win.connection, win.user, win.password_env, win.password) == (
        "windows", "winrm", "Administrator", "WIN_PASSWORD", None)


def test_the_ini_form_is_the_mixed_inventory():
    def shape(name: str) -> dict:
        return {n: (h.os, h.address, h.user, h.connection, h.labels, [str(t) for t in h.taints], h.node_ips,
                    h.proxy_mode, h.kubelet_extra_args, h.password_env, sorted(h.groups))
                for n, h in hosts_of(name).items()}

    assert shape("inventory.ini") == shape("mixed.yml")


def test_linux():
    hosts = hosts_of("linux.yml")
    assert sorted(hosts) == ["db-1.example.com", "web-1.example.com", "web-2.example.com", "web-3.example.com"]
    web, db = hosts["web-2.example.com"], hosts["db-1.example.com"]
    assert (web.labels, web.proxy_mode, web.known_hosts) == ({"tier": "web"}, "ipvs", "~/.ssh/known_hosts")
    assert (db.address, db.port, db.labels, db.node_name) == ("10.0.1.21", 2222, {"tier": "db"}, "db-1.example.com")


def test_windows():
    hosts = hosts_of("windows.yml")
    assert sorted(hosts) == ["WIN-LEGACY", "win-1.example.com", "win-2.example.com"]
    legacy = hosts["WIN-LEGACY"]
    assert (legacy.os, legacy.port, legacy.node_name, legacy.password_env) == ("windows", 5986, "win-legacy",
                                                                               "WIN_PASSWORD")


def test_bare_hosts_take_their_settings_from_the_vars_directories():
    hosts = hosts_of("bare-hosts/hosts.yml")
    assert sorted(hosts) == [*(f"node-0{i}.example.com" for i in range(1, 5)), "node-gpu.example.com"]
    gpu, plain = hosts["node-gpu.example.com"], hosts["node-01.example.com"]
    assert plain.install.enabled and plain.install.artifacts_url == "https://mirror.example/k8s"
    assert (plain.user, plain.proxy_mode, plain.labels) == ("root", "nftables", {})
    assert gpu.labels == {"accelerator": "gpu"} and gpu.kubelet_config == {"maxPods": 50}


def test_the_readme_shows_examples_mixed():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    mixed = yaml.safe_load((EXAMPLES / "mixed.yml").read_text())
    assert any(yaml.safe_load(block) == mixed for block in blocks)


@pytest.mark.skipif(not ANSIBLE_INVENTORY.exists(), reason="ansible-core (the test extra) is not installed")
def test_ansible_reads_every_example_the_same(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}
    runs = {name: subprocess.Popen([str(ANSIBLE_INVENTORY), "-i", str(EXAMPLES / name), "--list"], cwd=tmp_path,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in INVENTORIES}
    for name, run in runs.items():
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        expected = json.loads(out)
        expected["_meta"].pop("profile", None)
        document, _ = inventory_cmd.listing(str(EXAMPLES / name))
        for hvars in expected["_meta"]["hostvars"].values():  # nodeboot masks inline passwords; none here
            assert hvars.get("ansible_password", "{{").startswith("{{")
        assert json.loads(json.dumps(document)) == expected, name
