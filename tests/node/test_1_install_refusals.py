"""Bad input for `join --install` on the bare VM: one line naming the URL or image and the host, exit 1,
nothing half-installed. This module runs before test_2 (file order) because it needs the node still bare."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import LabHandle
from nodekit import KUBERNETES_VERSION, install_args, inventory, node_out, vm

INSTALLED = ("/usr/local/bin/kubelet", "/usr/local/bin/kubeadm", "/usr/local/bin/containerd",
             "/usr/local/sbin/runc", "/opt/cni/bin/bridge", "/etc/systemd/system/kubelet.service",
             "/etc/containerd/config.toml")


def unused_address(handle: LabHandle) -> str:
    """A lab address nobody holds: connections to it fail inside the lab bridge, nothing leaves."""
    return vm(handle)["address"].rsplit(".", 1)[0] + ".249"


def join_fails(handle: LabHandle, *args: str) -> list[str]:
    inv = inventory(handle, "refusals")
    proc = handle.nodeboot("join", "-i", inv, "--kubeconfig", handle.kubeconfig, *args, timeout=900)
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "install" in line and "error" in line]


def assert_nothing_installed(handle: LabHandle) -> None:
    present = node_out(handle, " ; ".join(f"test -e {p} && echo {p}" for p in INSTALLED) + " ; true").split()
    assert present == [], f"half-installed: {present}"
    assert node_out(handle, "ls -d /var/tmp/nodeboot-install* 2>/dev/null; true").strip() == ""


@pytest.fixture(scope="module")
def bare(node_lab: LabHandle) -> LabHandle:
    assert_nothing_installed(node_lab)
    return node_lab


def test_unreachable_mirror_names_the_url_and_host(bare: LabHandle) -> None:
    url = f"https://{unused_address(bare)}:8443"
    errors = join_fails(bare, *install_args(bare, artifacts_url=url))
    assert errors and url in errors[0] and vm(bare)["name"] in errors[0], errors
    assert_nothing_installed(bare)


def test_version_the_mirror_lacks_names_the_url(bare: LabHandle) -> None:
    errors = join_fails(bare, *install_args(bare), "--kubernetes-version", "v1.37.1")
    assert errors and "/release/v1.37.1/bin/linux/amd64/" in errors[0] and "404" in errors[0], errors
    assert_nothing_installed(bare)


def test_wrong_sha256_names_the_file_and_both_hashes(bare: LabHandle) -> None:
    mirror = Path(bare.env["state_dir"]) / "node-services" / "mirror"
    sha_file = mirror / "release" / KUBERNETES_VERSION / "bin" / "linux" / "amd64" / "kubelet.sha256"
    good = sha_file.read_text()
    wrong = "0" * 64
    sha_file.unlink()  # a hard link into the build cache: replace it, never write through it
    sha_file.write_text(wrong)
    try:
        errors = join_fails(bare, *install_args(bare))
    finally:
        sha_file.unlink()
        sha_file.write_text(good)
    assert errors and "kubelet" in errors[0] and wrong in errors[0] and good.split()[0] in errors[0], errors
    assert_nothing_installed(bare)


def test_unreachable_registry_names_the_image_and_mirror(bare: LabHandle) -> None:
    mirror = f"https://{unused_address(bare)}:5000"
    errors = join_fails(bare, *install_args(bare, registry=f"registry.k8s.io={mirror}"))
    assert errors and "pause" in errors[0] and mirror in errors[0] and vm(bare)["name"] in errors[0], errors
    # The pull comes last, once every file is in place: the error says so, and the next run
    # (test_2's join) installs again. No token is left by any of these runs.
    secrets = bare.cluster().core.list_namespaced_secret("kube-system",
                                                          field_selector="type=bootstrap.kubernetes.io/token")
    assert secrets.items == []
