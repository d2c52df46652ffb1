"""SSH the way operators have it (issue 18 part 3), through a real jump host in the lab: one lab
host is the bastion, a second one takes SSH only from the bastion (a firewall rule in its
network namespace resets the controller's connections to port 22), and nodeboot reaches it by
the inventory's ansible_ssh_common_args (ProxyJump, ProxyCommand), by an ssh_config file
named with -F, and by ~/.ssh/config."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from labkit import ROOT, summary


def iptables(netns: str, *args: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", netns, "iptables", *args], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def ssh_packets_from(netns: str, source: str) -> int:
    """Packets the target took on port 22 from source (the ACCEPT rule's counter)."""
    for line in iptables(netns, "-L", "INPUT", "-v", "-n", "-x").splitlines():
        words = line.split()
        if len(words) > 7 and words[2] == "ACCEPT" and words[7] == source:
            return int(words[0])
    raise AssertionError(f"no ACCEPT rule for {source} in {netns}")


@contextmanager
def reachable_only_through(target: dict[str, Any], jump: dict[str, Any]) -> Iterator[str]:
    """Port 22 of target takes the jump host and resets everyone else (the controller's bridge
    address among them); the rules go when the test ends. Yields the controller's address."""
    controller = target["address"].rsplit(".", 1)[0] + ".1"  # the lab bridge's address (its gateway)
    rules = [["-p", "tcp", "--dport", "22", "-s", jump["address"], "-j", "ACCEPT"],
             ["-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset"]]
    for rule in rules:
        iptables(target["netns"], "-A", "INPUT", *rule)
    try:
        yield controller
    finally:
        for rule in rules:
            iptables(target["netns"], "-D", "INPUT", *rule)


def dry_run(lab, inventory: Path, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    """`nodeboot join --dry-run` (connects, gathers facts, runs the preflight, changes nothing):
    exit code, the host's summary entry, stderr."""
    args = [sys.executable, "-m", "nodeboot", "join", "-i", str(inventory), "--dry-run", "--output", "json"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env or lab.cli_env(), timeout=300, cwd=ROOT)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    (host,) = summary(events)["hosts"]
    return proc.returncode, host, proc.stderr


@pytest.fixture(scope="module")
def pair(lab):
    """(jump host, target), the target firewalled to take SSH only from the jump host."""
    jump, target = lab.reserve(2)
    with reachable_only_through(target, jump) as controller:
        yield jump, target, controller


def test_the_target_is_not_reachable_directly(lab, pair):
    jump, target, controller = pair
    code, host, stderr = dry_run(lab, lab.inventory([target], "jump-direct"))
    assert code == 1, stderr
    assert host["phase"] == "connect"
    # One line naming the host and the cause (after the phase the runner puts in front).
    assert host["detail"].endswith(f": {target['name']}: cannot connect to {target['address']}:22: "
                                   "connection refused")
    # The OpenSSH client agrees: the rule is what stops it, not nodeboot.
    assert lab.ssh(target, "true").returncode == 255
    assert lab.ssh(jump, "true").returncode == 0


def through_jump(lab, pair, name: str, args: str) -> dict:
    """Dry-run join of the target with these ssh args; checks that it got there and by the jump host."""
    jump, target, _ = pair
    known_hosts = lab.env["known_hosts"]
    inventory = lab.inventory([target], name, host_vars={
        target["name"]: {"ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} {args}"}})
    before = ssh_packets_from(target["netns"], jump["address"])
    code, host, stderr = dry_run(lab, inventory)
    assert code == 0, (stderr, host)
    assert ssh_packets_from(target["netns"], jump["address"]) > before  # it came from the jump host
    return host


def test_proxy_jump_in_the_inventory(lab, pair):
    jump, target, _ = pair
    host = through_jump(lab, pair, "jump-proxyjump", f"-o ProxyJump=root@{jump['address']}")
    assert host["result"] in ("ok", "changed") and host["host"] == target["name"]


def test_dash_j_and_a_chain_through_the_same_bastion_twice(lab, pair):
    jump, _, _ = pair
    through_jump(lab, pair, "jump-chain", f"-J root@{jump['address']},root@{jump['address']}:22")


def test_proxy_command_with_the_openssh_client(lab, pair):
    jump, _, _ = pair
    command = (f"ssh -i {lab.env['ssh_key']} -o UserKnownHostsFile={lab.env['known_hosts']} -o BatchMode=yes "
               f"-W %h:%p root@{jump['address']}")
    through_jump(lab, pair, "jump-proxycommand", f"-o ProxyCommand='{command}'")


def ssh_config_text(lab, jump, target) -> str:
    # The target by an alias: HostName, the jump host by its own block with its own key.
    return (f"Host lab-behind-bastion\n    HostName {target['address']}\n    ProxyJump bastion\n\n"
            f"Host bastion\n    HostName {jump['address']}\n    User root\n"
            f"    IdentityFile {lab.env['ssh_key']}\n    IdentitiesOnly yes\n")


def test_ssh_config_file_named_in_the_inventory(lab, pair, tmp_path):
    jump, target, _ = pair
    config = tmp_path / "ssh_config"
    config.write_text(ssh_config_text(lab, jump, target))
    before = ssh_packets_from(target["netns"], jump["address"])
    inventory = lab.inventory([target], "jump-ssh-config", host_vars={target["name"]: {
        "ansible_host": "lab-behind-bastion", "ansible_ssh_common_args": f"-F {config}"}})
    code, host, stderr = dry_run(lab, inventory)
    assert code == 0, (stderr, host)
    assert ssh_packets_from(target["netns"], jump["address"]) > before


def test_the_operators_own_ssh_config(lab, pair, tmp_path):
    jump, target, _ = pair
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(ssh_config_text(lab, jump, target))
    inventory = lab.inventory([target], "jump-home-config", host_vars={target["name"]: {
        "ansible_host": "lab-behind-bastion"}})
    before = ssh_packets_from(target["netns"], jump["address"])
    code, host, stderr = dry_run(lab, inventory, env={**lab.cli_env(), "HOME": str(tmp_path)})
    assert code == 0, (stderr, host)
    assert ssh_packets_from(target["netns"], jump["address"]) > before
    # Without that HOME the alias means nothing, and the run fails on the name.
    code, host, _ = dry_run(lab, inventory, env={**lab.cli_env(), "HOME": str(tmp_path / "elsewhere")})
    assert code == 1 and "lab-behind-bastion" in host["detail"]


def test_a_jump_host_that_refuses_is_one_line_naming_both(lab, pair):
    jump, target, _ = pair
    inventory = lab.inventory([target], "jump-refused", host_vars={target["name"]: {
        "ansible_ssh_common_args": f"-J root@{jump['address']}:2222"}})
    code, host, stderr = dry_run(lab, inventory)
    assert code == 1
    assert host["phase"] == "connect"
    assert host["detail"].endswith(f": {target['name']}: via jump host: cannot connect to {jump['address']}:2222: "
                                   "connection refused")
    assert "\n" not in host["detail"]
    assert "Traceback" not in stderr


def test_a_jump_host_with_an_unknown_key_is_refused(lab, pair, tmp_path):
    # Same host key policy as for nodes: the bastion's key must be known, never taken on first sight.
    jump, target, _ = pair
    known = tmp_path / "known_hosts"
    known.write_text("".join(line + "\n" for line in Path(lab.env["known_hosts"]).read_text().splitlines()
                             if line.split() and line.split()[0] != jump["address"]))
    inventory = lab.inventory([target], "jump-unknown-key", host_vars={target["name"]: {
        "nodeboot_known_hosts": str(known), "ansible_ssh_common_args": f"-J root@{jump['address']}"}})
    code, host, _ = dry_run(lab, inventory)
    assert code == 1
    assert f": {target['name']}: via jump host: host key for {jump['address']} is not in" in host["detail"]
    assert known.read_text().count(jump["address"]) == 0
