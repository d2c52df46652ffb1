"""nodeboot_lab.vm without booting anything: cache keys, state files, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodeboot_lab import node_image, vm, vm_node


def test_cache_key_follows_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    key = vm.cache_key()
    assert key == vm.cache_key() and len(key) == 16
    monkeypatch.setattr(vm, "PACKAGES", (*vm.PACKAGES, "strace"))
    assert vm.cache_key() != key


def test_cache_root_can_be_moved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NODEBOOT_VM_CACHE", str(tmp_path))
    assert vm.cache_root() == tmp_path


def fake_image(tmp_path: Path) -> vm.VMImage:
    image_dir = tmp_path / "0123456789abcdef"
    image_dir.mkdir()
    for name in ("base.img", "vmlinuz", "initrd.img"):
        (image_dir / name).write_text("")
    vm._new_keypair(image_dir / "id_ed25519", "client")
    vm._new_keypair(image_dir / "ssh_host_ed25519_key", "host")
    meta = {"kernel_release": "6.1.0-test", "build_seconds": 1.5}
    (image_dir / "build.json").write_text(json.dumps(meta))
    return vm.VMImage(image_dir, "6.1.0-test", 1.5, built_now=False)


def test_known_hosts_line_names_the_forwarded_port(tmp_path: Path) -> None:
    image = fake_image(tmp_path)
    line = image.known_hosts_line(2222)
    assert line.startswith("[127.0.0.1]:2222 ssh-ed25519 AAAA")
    assert line.endswith("\n") and "host" not in line  # the key comment stays out


def test_attach_never_adopts_a_pid_that_is_not_our_qemu(tmp_path: Path) -> None:
    image = fake_image(tmp_path)
    state = tmp_path / "state"
    machine = vm.VM(image, state)
    state.mkdir()
    machine.port, machine.pid = 2222, os.getpid()  # this pytest process, not a qemu
    machine._save_state()
    attached = vm.VM.attach(state)
    assert attached.port == 2222
    assert attached.pid == 0  # so `stop` signals nobody
    attached.stop()


def test_attach_without_state_says_so(tmp_path: Path) -> None:
    with pytest.raises(vm.VMError, match="no VM state"):
        vm.VM.attach(tmp_path)


def test_qemu_command_line_keeps_the_guest_isolated(tmp_path: Path) -> None:
    machine = vm.VM(fake_image(tmp_path), tmp_path / "state")
    machine.port = 40022
    argv = machine.qemu_argv()
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev == "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert "root=/dev/vda" in argv[argv.index("-append") + 1]


def test_building_needs_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NODEBOOT_VM_CACHE", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(vm.VMError, match="needs root"):
        vm.ensure_image()


# ---- the lab's bare VM node (node_image, vm_node) -------------------------------
def test_node_image_is_its_own_recipe_in_its_own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NODEBOOT_VM_CACHE", str(tmp_path))
    node = node_image.recipe()
    assert node.cache_key() != vm.cache_key()
    # The e2e tier prunes old 16-hex image dirs in the cache root; the node's live in a subdir it never touches.
    assert node.cache_dir() == tmp_path / "node" and vm.e2e_recipe().cache_dir() == tmp_path


def test_node_image_has_a_workers_os_and_nothing_of_kubernetes() -> None:
    packages = set(node_image.recipe().packages)
    assert {"dbus", "systemd-sysv", "linux-image-amd64", "conntrack", "socat", "ipvsadm", "curl"} <= packages
    assert not {p for p in packages if any(k in p for k in ("kube", "containerd", "runc", "cri"))}
    assert "nodeboot-lab-node.service" in node_image.recipe().enable
    assert "systemd-networkd.service" not in node_image.recipe().enable  # the oneshot configures eth0


def test_node_setup_routes_on_link_only() -> None:
    script = node_image.SETUP_SCRIPT
    assert "ip route replace default dev eth0" in script
    assert "via" not in script  # no gateway: the guest can only ARP on the lab bridge


def test_node_kernel_command_line_says_who_the_boot_is() -> None:
    line = node_image.kernel_cmdline("lab-vm-1", "198.18.7.201", 24)
    assert line.startswith(vm.KERNEL_CMDLINE)
    assert line.endswith(" systemd.hostname=lab-vm-1 nodeboot.addr=198.18.7.201/24")


@pytest.mark.parametrize(
    ("hostname", "address", "message"),
    [("Lab_VM", "198.18.7.201", "not a valid hostname"), ("lab-vm-1", "198.18.7.300", "bad address")],
)
def test_node_kernel_command_line_refuses_bad_input(hostname: str, address: str, message: str) -> None:
    with pytest.raises(vm.VMError, match=message):
        node_image.kernel_cmdline(hostname, address, 24)


def test_vm_nodes_get_lab_addresses_taps_and_macs_of_their_own(tmp_path: Path) -> None:
    nodes = vm_node.plan(tmp_path, "nb1a2b", "198.18.7", 3)
    assert [n.address for n in nodes] == ["198.18.7.201", "198.18.7.202", "198.18.7.203"]
    assert [n.tap for n in nodes] == ["nb1a2bt0", "nb1a2bt1", "nb1a2bt2"]
    other_lab = vm_node.plan(tmp_path, "nb9f9f", "198.18.9", 3)
    macs = [n.mac for n in nodes + other_lab]
    assert len(set(macs)) == 6 and all(m.startswith("52:54:00:") for m in macs)
    assert max(len(vm_node.tap_name("nbffff", i)) for i in range(1, vm_node.MAX_VM_NODES + 1)) <= 15
    with pytest.raises(vm_node.LabError, match="--vm-nodes"):
        vm_node.plan(tmp_path, "nb1a2b", "198.18.7", vm_node.MAX_VM_NODES + 1)


def test_vm_node_qemu_is_on_its_tap_with_its_own_host_key(tmp_path: Path) -> None:
    (node,) = vm_node.plan(tmp_path, "nb1a2b", "198.18.7", 1)
    machine = vm_node.NodeVM(fake_image(tmp_path), node)
    machine.state_dir.mkdir(parents=True)
    machine._prepare_network()
    argv = machine.qemu_argv()
    assert argv[argv.index("-netdev") + 1] == "tap,id=n0,ifname=nb1a2bt0,script=no,downscript=no"
    assert argv[argv.index("-device") + 1] == f"virtio-net-pci,netdev=n0,mac={node.mac}"
    assert argv[argv.index("-fw_cfg") + 1] == f"name={node_image.FW_CFG_HOST_KEY},file={machine.host_key}"
    assert not any("hostfwd" in arg or arg.startswith("user,") for arg in argv)
    assert "nodeboot.addr=198.18.7.201/24" in argv[argv.index("-append") + 1]
    line = machine.known_hosts.read_text()
    assert line.startswith("198.18.7.201 ssh-ed25519 AAAA") and machine.known_hosts_line() == line
    assert machine.transport().host == "198.18.7.201" and machine.ssh_options().port == 22
