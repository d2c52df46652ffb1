"""The lab's artifact mirror and OCI registry, as a real node would use them:
HTTPS with the lab CA, upstream paths with their checksum files, and images
pulled by the distribution API whose digests and contents hold up."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeboot_lab import node_artifacts as na
from nodeboot_lab import node_services
from nodeboot_lab.container_images import ECHO_IMAGE, pause_image
from nodeboot_lab.lab import Lab
from nodeboot_lab.netns import list_netns
from nodeboot_lab.oci import MANIFEST, RegistryClient, parse_reference

pytestmark = pytest.mark.lab
VERSION = na.KUBERNETES_VERSION


@pytest.fixture(scope="module")
def services_lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network and mount namespaces)")
    state = Path(os.environ.get("NODEBOOT_TEST_NODE_SERVICES_STATE", "/tmp/nodeboot-test-node-services"))
    lab = Lab(state, log=print)
    try:
        lab.up(linux=0, windows=0, node_services=True)
        yield lab
    finally:
        lab.down()


def _get(url: str, cafile: str) -> bytes:
    context = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(url, context=context, timeout=60) as resp:
        return resp.read()


def test_env_names_the_services(services_lab: Lab) -> None:
    env = services_lab.env()
    address = f"{env['api_endpoint'].split(':')[0].rsplit('.', 1)[0]}.{node_services.HOST_NUMBER}"
    assert env["artifacts_url"] == f"https://{address}:{node_services.MIRROR_PORT}"
    assert env["registry_mirror"] == f"registry.k8s.io=https://{address}:{node_services.REGISTRY_PORT}"
    assert Path(env["lab_ca"]).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_every_mirror_file_matches_its_checksum_over_https(services_lab: Lab) -> None:
    env = services_lab.env()
    for artifact, checksum_file in na.checksum_files(VERSION).items():
        data = _get(f"{env['artifacts_url']}/{artifact}", env["lab_ca"])
        listed = _get(f"{env['artifacts_url']}/{checksum_file}", env["lab_ca"]).decode()
        name = artifact.rsplit("/", 1)[1]
        fields = [line.split() for line in listed.splitlines()]
        wanted = [f[0] for f in fields if len(f) == 1 or f[1] == name]
        assert wanted == [hashlib.sha256(data).hexdigest()], artifact
        if artifact == na.containerd_tarball():
            names = _tar_names(data)
            assert {f"bin/{b}" for b in na.CONTAINERD_BINARIES} <= names
        if artifact == na.cni_tarball():
            assert {f"./{p}" for p in na.CNI_PLUGINS} <= _tar_names(data)
        if artifact.startswith("release/"):
            assert len(data) > 10_000_000  # a real Go binary, not a placeholder
    # The checksum files keep upstream's formats: hex only at dl.k8s.io, "HEX  NAME" on GitHub.
    kubelet_sum = _get(f"{env['artifacts_url']}/{na.kubernetes_binary('kubelet', VERSION)}.sha256", env["lab_ca"])
    assert len(kubelet_sum.decode().strip()) == 64


def _tar_names(data: bytes) -> set[str]:
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return set(tar.getnames())


def test_mirror_refuses_clients_without_the_lab_ca_and_unknown_paths(services_lab: Lab) -> None:
    env = services_lab.env()
    url = f"{env['artifacts_url']}/{na.runc_checksums()}"
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=10)
    with pytest.raises(urllib.error.HTTPError) as missing:
        _get(f"{env['artifacts_url']}/release/v1.99.0/bin/linux/amd64/kubelet", env["lab_ca"])
    assert missing.value.code == 404


def test_registry_answers_the_distribution_api_over_tls(services_lab: Lab) -> None:
    running = node_services.load(services_lab.state)
    assert running is not None
    headers = RegistryClient(running.registry_url, Path(running.ca)).ping()
    assert headers.get("docker-distribution-api-version") == "registry/2.0"


def test_images_pull_with_the_digests_pushed(services_lab: Lab, tmp_path: Path) -> None:
    running = node_services.load(services_lab.state)
    assert running is not None
    bins = Path(services_lab.load().bin_dir)
    wanted = {pause_image(bins / "kubeadm", VERSION), f"registry.k8s.io/kube-proxy:{VERSION}", ECHO_IMAGE}
    assert set(running.images) == wanted
    client = RegistryClient(running.registry_url, Path(running.ca))
    for ref, digest in running.images.items():
        target = parse_reference(ref)
        data, content_type = client.get_manifest(target.repository, target.tag)
        assert content_type == MANIFEST
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, ref
        manifest = json.loads(data)
        for blob in [manifest["config"], *manifest["layers"]]:
            out = tmp_path / blob["digest"].replace(":", "-")
            assert client.fetch_blob(target.repository, blob["digest"], out) == blob["digest"]
            assert out.stat().st_size == blob["size"]
        config = json.loads((tmp_path / manifest["config"]["digest"].replace(":", "-")).read_bytes())
        assert (config["os"], config["architecture"]) == ("linux", "amd64")
        assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]


def test_kube_proxy_image_runs_in_a_chroot(services_lab: Lab, tmp_path: Path) -> None:
    running = node_services.load(services_lab.state)
    assert running is not None
    client = RegistryClient(running.registry_url, Path(running.ca))
    data, _ = client.get_manifest("kube-proxy", VERSION)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    for layer in json.loads(data)["layers"]:
        blob = tmp_path / "layer.tar"
        assert client.fetch_blob("kube-proxy", layer["digest"], blob) == layer["digest"]
        with tarfile.open(blob) as tar:
            tar.extractall(rootfs, filter="tar")
    version = subprocess.run(["chroot", str(rootfs), "/usr/local/bin/kube-proxy", "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"Kubernetes {VERSION}"
    # `iptables` is the nft variant, as kube-proxy's iptables and nftables modes expect today.
    iptables = subprocess.run(["chroot", str(rootfs), "iptables", "--version"], capture_output=True, text=True,
                              env={"PATH": "/usr/sbin:/usr/bin"}, timeout=60)
    assert "(nf_tables)" in iptables.stdout
    # A rule with match and target extensions, in a throwaway network namespace: the xtables
    # extension libraries and their dependencies are all in the image.
    rule = subprocess.run(
        ["unshare", "--net", "chroot", str(rootfs), "/usr/sbin/iptables", "-t", "nat", "-A", "POSTROUTING",
         "-m", "comment", "--comment", "nodeboot", "-m", "conntrack", "--ctstate", "NEW", "-j", "MASQUERADE"],
        capture_output=True, text=True, timeout=60)
    assert rule.returncode == 0, rule.stderr


def test_down_removes_the_services(services_lab: Lab) -> None:
    running = node_services.load(services_lab.state)
    assert running is not None
    services_lab.down()
    assert running.netns not in list_netns(running.netns)
    for pid in running.pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
    assert node_services.load(services_lab.state) is None
    with pytest.raises(Exception, match="no lab is up"):
        services_lab.env()
