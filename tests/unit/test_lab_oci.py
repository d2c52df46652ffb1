"""The lab's OCI image building (layout, layer, config, manifest) and the mirror layout's paths."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from nodeboot_lab import node_artifacts as na
from nodeboot_lab.node_mirror import expected_sha256
from nodeboot_lab.oci import CONFIG, LAYER_TAR, MANIFEST, REF_NAME, Layout, OCIError, parse_reference, write_layer


def _tree(root: Path) -> Path:
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "usr" / "bin" / "tool").chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    return root


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_layer_is_reproducible_and_owned_by_root(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "rootfs")
    write_layer(tree, tmp_path / "a.tar")
    (tree / "usr" / "bin" / "tool").touch()  # a new mtime must not change the layer
    write_layer(tree, tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"bin", "usr", "usr/bin", "usr/bin/tool"}
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/tool"].mode & 0o777 == 0o755
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())


def test_image_in_layout_names_its_blobs_by_their_digests(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    ref = "registry.k8s.io/e2e-test-images/thing:1.0"
    descriptor = layout.add_image(ref, _tree(tmp_path / "rootfs"), ["/usr/bin/tool"], user="65534:65534")
    assert json.loads((tmp_path / "layout" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["annotations"][REF_NAME] == ref
    assert index["manifests"][0]["digest"] == descriptor.digest
    manifest_path = layout.blob_path(descriptor.digest)
    assert _sha(manifest_path) == descriptor.digest and manifest_path.stat().st_size == descriptor.size
    manifest = json.loads(manifest_path.read_text())
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MANIFEST
    assert manifest["config"]["mediaType"] == CONFIG
    layer = manifest["layers"][0]
    assert layer["mediaType"] == LAYER_TAR
    for blob in (manifest["config"], layer):
        path = layout.blob_path(blob["digest"])
        assert _sha(path) == blob["digest"] and path.stat().st_size == blob["size"]
    config = json.loads(layout.blob_path(manifest["config"]["digest"]).read_text())
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    # Uncompressed layer: its diff_id is its own digest.
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert config["config"]["Entrypoint"] == ["/usr/bin/tool"] and config["config"]["User"] == "65534:65534"


def test_renaming_an_image_replaces_its_index_entry(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    tree = _tree(tmp_path / "rootfs")
    layout.add_image("registry.k8s.io/a:1", tree, ["/x"])
    second = layout.add_image("registry.k8s.io/a:1", tree, ["/y"])
    layout.add_image("registry.k8s.io/b:1", tree, ["/x"])
    images = layout.images()
    assert sorted(images) == ["registry.k8s.io/a:1", "registry.k8s.io/b:1"]
    assert images["registry.k8s.io/a:1"] == second


def test_references() -> None:
    ref = parse_reference("registry.k8s.io/e2e-test-images/nodeboot-echo:1.0")
    assert (ref.registry, ref.repository, ref.tag) == ("registry.k8s.io", "e2e-test-images/nodeboot-echo", "1.0")
    for bad in ("pause", "registry.k8s.io/pause", "registry.k8s.io/:1"):
        with pytest.raises(OCIError, match="REGISTRY/REPOSITORY:TAG"):
            parse_reference(bad)


def test_mirror_paths_follow_upstream() -> None:
    assert na.kubernetes_binary("kubelet") == "release/v1.37.2/bin/linux/amd64/kubelet"
    assert na.containerd_tarball() == "containerd/releases/download/v2.3.7/containerd-2.3.7-linux-amd64.tar.gz"
    assert na.cni_tarball() == (
        "containernetworking/plugins/releases/download/v1.10.0/cni-plugins-linux-amd64-v1.10.0.tgz")
    assert na.runc_binary(arch="arm64") == f"opencontainers/runc/releases/download/{na.RUNC_VERSION}/runc.arm64"
    sums = na.checksum_files()
    assert sums[na.kubernetes_binary("kubeadm")].endswith("/kubeadm.sha256")
    assert sums[na.containerd_tarball()].endswith(".tar.gz.sha256sum")
    assert sums[na.runc_binary()].endswith("/runc.sha256sum")


def test_checksum_files_in_both_upstream_formats(tmp_path: Path) -> None:
    (tmp_path / "kubelet.sha256").write_text("ab" * 32)
    (tmp_path / "runc.sha256sum").write_text(f"{'cd' * 32}  runc.arm64\n{'ef' * 32}  runc.amd64\n")
    assert expected_sha256(tmp_path, "x/kubelet", "kubelet.sha256") == "ab" * 32
    assert expected_sha256(tmp_path, "x/runc.amd64", "runc.sha256sum") == "ef" * 32
    assert expected_sha256(tmp_path, "x/runc.riscv64", "runc.sha256sum") == ""
