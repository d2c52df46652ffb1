"""nodeboot_lab.vm without booting anything: cache keys, state files, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodeboot_lab import vm


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
