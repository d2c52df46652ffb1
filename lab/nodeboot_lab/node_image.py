"""The lab's bare worker node: what its Debian image holds, and how a boot is told who it is.

The image is what an operator's freshly installed machine would be: Debian
bookworm with its stock kernel, systemd as PID 1 and cgroup v2, D-Bus (the
kubelet's and runc's systemd cgroup driver talk to systemd over it) and the
userland a kubeadm worker calls (conntrack, socat, ethtool, iptables, ipset,
ipvsadm, nft). Nothing of Kubernetes: no containerd, runc, CNI plugins, kubelet
or kubeadm. Installing those is nodeboot's job.

It is built and cached like the e2e tier's image (nodeboot_lab.vm), under its
own cache directory. One image serves every node: each boot learns its address
and hostname from the kernel command line (`nodeboot.addr=A.B.C.D/NN`,
`systemd.hostname=NAME`) and its own SSH host key from qemu's firmware config,
so nodes booted from the same image still have distinct, known host keys.
"""

from __future__ import annotations

import ipaddress
import re

from nodeboot_lab import vm

HOSTNAME = "lab-node"
PACKAGES = (
    "systemd-sysv",
    "dbus",
    "linux-image-amd64",
    "kmod",
    "openssh-server",
    "acpid",  # power button -> poweroff, so the lab's QMP power-down is clean
    "ca-certificates",
    "curl",
    "iproute2",
    "iptables",
    "ipset",
    "ipvsadm",
    "nftables",
    "conntrack",
    "socat",
    "ethtool",
    "util-linux",  # nsenter, mount: kubeadm's preflight wants both
    "mount",
    "procps",  # sysctl, for installers that apply /etc/sysctl.d
)
# Where the lab passes a per-VM host key (qemu -fw_cfg name=...).
FW_CFG_HOST_KEY = "opt/nodeboot/ssh_host_ed25519_key"
CMDLINE_ADDR = "nodeboot.addr"

# Run once per boot, before sshd and before anything that wants the network.
# A default route with no gateway (on-link): the kubelet and kube-proxy need a
# default route, but without a gateway the guest can only ARP on the lab bridge,
# where nothing answers for an address outside the lab, so nothing leaves it.
SETUP_SCRIPT = f"""#!/bin/sh
set -eu
addr=""
for word in $(cat /proc/cmdline); do
    case "$word" in {CMDLINE_ADDR}=*) addr="${{word#{CMDLINE_ADDR}=}}" ;; esac
done
if [ -z "$addr" ]; then
    echo "nodeboot-lab-node: no {CMDLINE_ADDR}= on the kernel command line" >&2
    exit 1
fi
# eth0 comes from the initrd (virtio_net is in it), so this wait is normally
# zero; bounded, because a guest on oversubscribed host cores can be very slow.
i=0
while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1))
    if [ "$i" -gt 600 ]; then
        echo "nodeboot-lab-node: no eth0 after 300s" >&2
        exit 1
    fi
    sleep 0.5
done
ip link set lo up
ip addr replace "$addr" dev eth0
ip link set eth0 up
ip route replace default dev eth0
name=$(hostname)
if ! grep -q "[[:space:]]$name\\$" /etc/hosts; then
    echo "${{addr%/*}} $name" >>/etc/hosts
fi
key=/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_HOST_KEY}/raw
modprobe qemu_fw_cfg 2>/dev/null || true
if [ -r "$key" ]; then
    install -m 600 "$key" /etc/ssh/ssh_host_ed25519_key
    ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key >/etc/ssh/ssh_host_ed25519_key.pub
fi
"""
SETUP_UNIT = """[Unit]
Description=Lab node: address, hostname entry and SSH host key from the boot parameters
Before=network.target ssh.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=330
ExecStart=/bin/sh /usr/local/lib/nodeboot-lab/node-setup

[Install]
WantedBy=multi-user.target
"""

SHARED_FILES = (
    "etc/fstab",
    "etc/ssh/sshd_config.d/nodeboot.conf",
    "etc/acpi/events/nodeboot-power",
    "etc/modprobe.d/nodeboot-blacklist.conf",
    "etc/initramfs-tools/conf.d/nodeboot",
)
FILES: dict[str, str] = {
    **{path: vm.GUEST_FILES[path] for path in SHARED_FILES},
    "etc/hostname": f"{HOSTNAME}\n",
    "etc/hosts": "127.0.0.1 localhost\n",
    # No DNS in the lab: names a node needs go in /etc/hosts.
    "etc/resolv.conf": "# the lab has no DNS server\n",
    "etc/systemd/journald.conf.d/nodeboot.conf": "[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\n",
    # The e2e tier's small initrd plus the NIC's driver: eth0 exists before udev
    # runs, so nothing waits for udev's (slow, emulated) coldplug to find it.
    "etc/initramfs-tools/modules": vm.GUEST_FILES["etc/initramfs-tools/modules"] + "virtio_net\n",
    "usr/local/lib/nodeboot-lab/node-setup": SETUP_SCRIPT,
    "etc/systemd/system/nodeboot-lab-node.service": SETUP_UNIT,
}
ENABLE_UNITS = ("ssh.service", "nodeboot-lab-node.service")
# Besides the e2e tier's masks: modules for hardware and features a lab node
# lacks or never uses; each costs seconds of emulated CPU during the boot.
MASK_UNITS = (
    *vm.MASK_UNITS,
    "modprobe@drm.service",
    "modprobe@fuse.service",
    "modprobe@dm_mod.service",
    "modprobe@efi_pstore.service",
    "modprobe@loop.service",
)
IMAGE_SIZE = "8G"  # sparse: a node unpacks containerd, the kubelet and images into it


def recipe() -> vm.Recipe:
    return vm.Recipe(
        packages=PACKAGES,
        files=FILES,
        enable=ENABLE_UNITS,
        mask=MASK_UNITS,
        slim=vm.SLIM_PATHS,
        size=IMAGE_SIZE,
        hostname=HOSTNAME,
        cache_subdir="node",
    )


def ensure_image() -> vm.VMImage:
    """The node image, built (as root, several minutes) the first time."""
    return vm.ensure_image(recipe())


_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def kernel_cmdline(hostname: str, address: str, prefix_len: int) -> str:
    """The node's kernel command line: the e2e tier's plus who this boot is."""
    if not _HOSTNAME_RE.match(hostname):
        raise vm.VMError(f"lab node: {hostname!r} is not a valid hostname (RFC 1123 label, lower case)")
    try:
        iface = ipaddress.IPv4Interface(f"{address}/{prefix_len}")
    except ValueError as exc:
        raise vm.VMError(f"lab node {hostname}: bad address {address}/{prefix_len}: {exc}") from None
    # no_timer_check: on oversubscribed host cores the emulated timer can miss the kernel's IO-APIC
    # timer check, which then panics the boot ("IO-APIC + timer doesn't work!").
    return f"{vm.KERNEL_CMDLINE} no_timer_check systemd.hostname={hostname} {CMDLINE_ADDR}={iface.with_prefixlen}"
