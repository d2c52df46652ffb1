"""proxy-prereqs.sh on a real kernel: modules really load, persist across a
reboot, and IPVS really works afterwards. Each step is run twice; the second
run must change nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from vmkit import Guest

pytestmark = pytest.mark.e2e

IPVS_MODULES = ["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"]
MODULES_FILE = "/etc/modules-load.d/nodeboot-ipvs.conf"


def test_ipvs_prereqs_load_the_modules_and_persist_them(guest: Guest) -> None:
    # Unload what an earlier test may have loaded, so this run has real work to do.
    # (Virtual servers and every scheduler module hold ip_vs: clear them first.)
    guest.sh("ipvsadm -C 2>/dev/null; ip link del kube-ipvs0 2>/dev/null; "
             "modprobe -r -a $(lsmod | awk '$1 ~ /^ip_vs_/ {print $1}') ip_vs", check=False)
    assert "ip_vs" not in guest.modules()

    first = guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs")
    assert first.ok, first.error
    assert first.changed
    assert "ip_vs" in first.facts["modules_loaded_now"]
    assert first.facts["modules_loaded"] == IPVS_MODULES
    assert set(IPVS_MODULES) <= guest.modules()  # lsmod on the real kernel agrees
    assert first.facts["modules_file"] == MODULES_FILE
    assert first.facts["modules_file_written_by_nodeboot"] is True
    assert first.facts["tools"] == {"ipvsadm": True, "ipset": True}
    listed = guest.sh(f"grep -v '^#' {MODULES_FILE}").stdout.split()
    assert listed == IPVS_MODULES

    second = guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs")
    assert second.ok, second.error
    assert not second.changed, second.facts["actions"]
    assert second.facts["modules_loaded_now"] == []
    assert second.facts["modules_file_written"] is False


def test_ipvsadm_can_add_a_virtual_server(guest: Guest) -> None:
    assert guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs").ok
    try:
        guest.sh("ipvsadm -A -t 10.96.0.1:443 -s rr && ipvsadm -a -t 10.96.0.1:443 -r 10.0.2.15:6443 -m")
        listing = guest.sh("ipvsadm -Ln -t 10.96.0.1:443").stdout
        assert "TCP  10.96.0.1:443 rr" in listing
        assert "-> 10.0.2.15:6443" in listing
    finally:
        guest.sh("ipvsadm -D -t 10.96.0.1:443", check=False)


def test_the_modules_come_back_after_a_reboot(guest: Guest) -> None:
    assert guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs").ok
    before = guest.sh("cat /proc/sys/kernel/random/boot_id").stdout.strip()
    guest.reboot()
    assert guest.sh("cat /proc/sys/kernel/random/boot_id").stdout.strip() != before
    # Nothing but systemd-modules-load reading the persisted file loads them at boot.
    assert set(IPVS_MODULES) <= guest.modules()
    assert guest.sh("systemctl is-active systemd-modules-load.service").stdout.strip() == "active"
    again = guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs")
    assert again.ok and not again.changed, again.facts["actions"]


@pytest.mark.parametrize("mode", ["nftables", "iptables"])
def test_nftables_and_iptables_prereqs_pass_on_this_kernel(guest: Guest, mode: str) -> None:
    for _ in range(2):
        result = guest.script("proxy-prereqs.sh", NB_PROXY_MODE=mode)
        assert result.ok, result.error
        assert not result.changed
    assert result.facts["kernel"] == guest.vm.image.kernel_release
    assert all(result.facts["tools"].values())


def test_a_modules_file_nodeboot_did_not_write_is_kept(guest: Guest) -> None:
    path = "/etc/modules-load.d/site-ipvs.conf"
    guest.sh(f"printf '# ours, not nodeboot s\\n%s\\n' {' '.join(IPVS_MODULES)} > {path}")
    digest = guest.sh(f"sha256sum {path}").stdout
    try:
        prereqs = guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs", NB_MODULES_FILE=path)
        assert prereqs.ok, prereqs.error
        assert prereqs.facts["modules_file_written"] is False
        assert prereqs.facts["modules_file_written_by_nodeboot"] is False

        cleanup = guest.script("proxy-cleanup.sh", NB_CLEAN_MODES="", NB_REMOVE_MODULES_FILE="1", NB_MODULES_FILE=path)
        assert cleanup.ok, cleanup.error
        assert not cleanup.changed
        assert cleanup.facts["modules_file_removed"] is False
        assert guest.sh(f"sha256sum {path}").stdout == digest
    finally:
        guest.sh(f"rm -f {path}")


def test_a_modules_file_nodeboot_wrote_is_removed_once(guest: Guest) -> None:
    path = "/etc/modules-load.d/nodeboot-e2e-removal.conf"
    assert guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs", NB_MODULES_FILE=path).changed
    for attempt in range(2):
        result = guest.script("proxy-cleanup.sh", NB_CLEAN_MODES="", NB_REMOVE_MODULES_FILE="1", NB_MODULES_FILE=path)
        assert result.ok, result.error
        assert result.changed is (attempt == 0)
        assert result.facts["modules_file_removed"] is (attempt == 0)
    assert guest.sh(f"test -e {path}", check=False).exit_status != 0
