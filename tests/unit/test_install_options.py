"""--install's flags and inventory vars, the mirror layout nodeboot asks for, the
preflight without --install, and the kubelet's config through kubeadm patches."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from localshell import run_host_script
from nodeboot import node_install
from nodeboot.cli import main
from nodeboot.cluster.joinconfig import JoinSpec, kubelet_patch, render
from nodeboot.errors import InventoryError
from nodeboot.facts import parse_linux_facts
from nodeboot.inventory import load_inventory
from nodeboot.scripts import script_text, shell_preamble
from nodeboot.steps import linux_install
from nodeboot.steps.base import ClusterFacts, HostState
from nodeboot.steps.linux import Preflight

CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["nodeboot", *argv])
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err), pytest.raises(SystemExit) as ended:
        main()
    return int(ended.value.code or 0), err.getvalue()


@pytest.mark.parametrize(("flags", "words"), [
    (["--registry-mirror", "registry.k8s.io"], "--registry-mirror: 'registry.k8s.io' must be REGISTRY=URL"),
    (["--registry-mirror", "registry.k8s.io=ftp://m"], "--registry-mirror: 'ftp://m' is not an http(s) URL"),
    (["--registry-mirror", "a/b=https://m"], "--registry-mirror: 'a/b' is not a registry host"),
    (["--kubernetes-version", "1.37"], "--kubernetes-version: '1.37' is not a version"),
    (["--containerd-version", "latest"], "--containerd-version: 'latest' is not a version"),
    (["--artifacts-url", "mirror.example"], "--artifacts-url: 'mirror.example' is not an http(s) URL"),
    (["--artifacts-ca", "/nonexistent/ca.pem"], "--artifacts-ca: cannot read /nonexistent/ca.pem"),
])
def test_bad_install_flags_are_one_line_usage_errors(monkeypatch, flags: list[str], words: str) -> None:
    code, err = run_cli(["join", "--install", *flags, "linux-1"], monkeypatch)
    assert code == 2
    assert err.count("\n") == 1 and words in err, err


def test_kubelet_config_file_must_be_a_mapping(monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "kubelet.yaml"
    path.write_text("- maxPods\n")
    code, err = run_cli(["join", "--kubelet-config", str(path), "linux-1"], monkeypatch)
    assert code == 2 and err.count("\n") == 1
    assert f"--kubelet-config: {path}: must be a mapping of KubeletConfiguration fields" in err


def inventory(tmp_path: Path, host_vars: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(f"all:\n  hosts:\n    node-1:\n{host_vars}")
    return path


def test_inventory_vars_set_the_install(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(CA)
    path = inventory(tmp_path, f"""      nodeboot_install: true
      nodeboot_artifacts_url: https://mirror.example/k8s/
      nodeboot_artifacts_ca: {ca}
      nodeboot_kubernetes_version: 1.37.2
      nodeboot_containerd_version: v2.3.8
      nodeboot_registry_mirror: {{registry.k8s.io: "https://mirror.example:5000"}}
      nodeboot_registry_ca: {ca}
      nodeboot_disable_swap: yes
      nodeboot_kubelet_config: {{maxPods: 50, topologyManagerPolicy: single-numa-node}}
""")
    host = load_inventory(str(path))[0]
    s = host.install
    assert s.enabled and s.disable_swap and not s.install_kubectl
    assert s.artifacts_url == "https://mirror.example/k8s" and s.artifacts_ca == CA and s.registry_ca == CA
    assert s.kubernetes_version == "v1.37.2" and s.containerd_version == "2.3.8"
    assert s.cni_version == node_install.DEFAULT_CNI_VERSION and s.runc_version == node_install.DEFAULT_RUNC_VERSION
    assert s.registry_mirrors == (("registry.k8s.io", "https://mirror.example:5000"),)
    assert host.kubelet_config == {"maxPods": 50, "topologyManagerPolicy": "single-numa-node"}
    assert "BEGIN CERTIFICATE" not in repr(host.install)


@pytest.mark.parametrize(("line", "field"), [
    ("nodeboot_registry_mirror: [registry.k8s.io]", "nodeboot_registry_mirror"),
    ("nodeboot_install: maybe", "nodeboot_install"),
    ("nodeboot_kubelet_config: [maxPods]", "nodeboot_kubelet_config"),
    ("nodeboot_kubelet_config: {kind: KubeletConfiguration}", "nodeboot_kubelet_config"),
    ("nodeboot_registry_ca: /nonexistent/ca.pem", "nodeboot_registry_ca"),
])
def test_bad_install_vars_name_the_host_and_field(tmp_path: Path, line: str, field: str) -> None:
    path = inventory(tmp_path, f"      {line}\n")
    with pytest.raises(InventoryError) as raised:
        load_inventory(str(path))
    assert "node-1" in str(raised.value) and field in str(raised.value) and "\n" not in str(raised.value)


def test_the_layout_is_upstreams() -> None:
    s = node_install.InstallSettings(enabled=True, artifacts_url="https://m.example", install_kubectl=True)
    urls = {a.kind: (a.version, a.url, a.checksum_url) for a in node_install.artifacts(s, "v1.37.2", "arm64")}
    k8s = "https://m.example/release/v1.37.2/bin/linux/arm64"
    assert urls["kubelet"] == ("v1.37.2", f"{k8s}/kubelet", f"{k8s}/kubelet.sha256")
    assert urls["kubectl"] == ("v1.37.2", f"{k8s}/kubectl", f"{k8s}/kubectl.sha256")
    cd = "https://m.example/containerd/releases/download/v2.3.7/containerd-2.3.7-linux-arm64.tar.gz"
    assert urls["containerd"] == ("2.3.7", cd, cd + ".sha256sum")
    cni = ("https://m.example/containernetworking/plugins/releases/download/v1.10.0/"
           "cni-plugins-linux-arm64-v1.10.0.tgz")
    assert urls["cni"] == ("1.10.0", cni, cni + ".sha256")
    runc = "https://m.example/opencontainers/runc/releases/download/v1.5.3"
    assert urls["runc"] == ("1.5.3", f"{runc}/runc.arm64", f"{runc}/runc.sha256sum")
    assert node_install.arch_of("x86_64") == "amd64" and node_install.arch_of("aarch64") == "arm64"
    with pytest.raises(ValueError, match="riscv64"):
        node_install.arch_of("riscv64")
    assert node_install.wanted_kubernetes_version(s, "v1.37.2+lab.1") == "v1.37.2"


def fake_ctx(facts: dict, install: node_install.InstallSettings | None = None) -> SimpleNamespace:
    events: list[tuple[str, dict]] = []
    host = SimpleNamespace(name="node-1", node_name="node-1", install=install or node_install.InstallSettings())
    typed = parse_linux_facts(facts, host.name)
    return SimpleNamespace(linux_facts=lambda: typed, host=host,
                           run=ClusterFacts(server_minor=(1, 37), server_version="v1.37.2"),
                           state=HostState(),
                           emit=lambda kind, **f: events.append((kind, f)), events=events)


BARE = {"kubelet_version": "", "kubeadm_version": "", "cri_socket": False, "runc": False, "cni_plugins": [],
        "swap_on": False, "ip_forward": "0", "bridge_nf_call_iptables": "missing", "arch": "x86_64"}


def test_without_install_preflight_names_every_missing_part_and_the_flag() -> None:
    problems = Preflight().problems(fake_ctx(BARE))  # type: ignore[arg-type]
    first = problems[0]
    for words in ("missing kubelet, kubeadm, containerd (no CRI socket", "runc", "CNI plugins (bridge",
                  "use --install (or nodeboot_install: true) to install them"):
        assert words in first, words
    assert not any("kubeadm is not installed" in p or "cannot read the kubelet version" in p for p in problems)
    assert any("ip_forward" in p for p in problems)  # the host checks still run


def test_with_install_preflight_leaves_what_install_sets_up() -> None:
    install = node_install.InstallSettings(enabled=True, artifacts_url="https://m.example")
    assert Preflight().problems(fake_ctx(BARE, install)) == []  # type: ignore[arg-type]
    swap = Preflight().problems(fake_ctx({**BARE, "swap_on": True}, install))  # type: ignore[arg-type]
    assert len(swap) == 1 and "--disable-swap" in swap[0]
    no_url = Preflight().problems(fake_ctx(BARE, node_install.InstallSettings(enabled=True)))  # type: ignore[arg-type]
    assert no_url == ["--install needs --artifacts-url (or nodeboot_artifacts_url): where the host downloads from"]
    newer = node_install.InstallSettings(enabled=True, artifacts_url="https://m", kubernetes_version="v1.38.0")
    assert "newer than the API server" in Preflight().problems(fake_ctx(BARE, newer))[0]  # type: ignore[arg-type]


def test_install_phase_dry_run_names_versions_and_urls() -> None:
    install = node_install.InstallSettings(enabled=True, artifacts_url="https://m.example")
    ctx = fake_ctx(BARE, install)
    phase = linux_install.Install()
    assert phase.satisfied(ctx) is None  # type: ignore[arg-type]
    detail = phase.dry_run_detail(ctx)  # type: ignore[arg-type]
    assert "kubelet v1.37.2 from https://m.example/release/v1.37.2/bin/linux/amd64/kubelet" in detail
    assert "containerd 2.3.7 from https://m.example/containerd/releases/download/v2.3.7/" in detail
    assert linux_install.Install().satisfied(fake_ctx(BARE)) == "not asked (--install)"  # type: ignore[arg-type]


def test_join_configuration_names_the_patches_directory() -> None:
    base = dict(endpoint="10.0.0.1:6443", token="abcdef.0123456789abcdef", ca_hashes=["sha256:" + "a" * 64],
                node_name="web-1")
    config = {"maxPods": 50, "topologyManagerPolicy": "single-numa-node"}
    for minor in (37, 30):
        doc = yaml.safe_load(render(JoinSpec(**base, kubelet_config=config), minor))
        assert doc["patches"] == {"directory": "/etc/kubernetes/patches"}
    assert "patches" not in yaml.safe_load(render(JoinSpec(**base), 37))
    patch = yaml.safe_load(kubelet_patch(config))
    assert patch == {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", **config}
    assert kubelet_patch({}) == ""


def test_join_sh_writes_the_patch_before_kubeadm_join_and_removes_nothing(tmp_path: Path) -> None:
    # join.sh reads these to tell a joined host; the lab leaves an empty /etc/kubernetes (a mount point for its
    # namespaces) on the machine, which is no node.
    node_files = ("kubelet.conf", "bootstrap-kubelet.conf", "pki/ca.crt")
    if any(Path("/etc/kubernetes", name).exists() for name in node_files):
        pytest.skip("this machine has a kubelet configuration in /etc/kubernetes: join.sh would see a node")
    bin_dir, patches = tmp_path / "bin", tmp_path / "patches"
    bin_dir.mkdir()
    patches.mkdir()
    (patches / "kubeletconfiguration+json.yaml").write_text("[]\n")  # the operator's own: stays
    kubeadm = bin_dir / "kubeadm"
    # The stand-in kubeadm records the patch directory as it finds it when join runs.
    kubeadm.write_text(f'#!/bin/bash\n[ "$1" = join ] && ls {patches} > {tmp_path}/seen && '
                       f'cat {patches}/kubeletconfiguration+merge.yaml >> {tmp_path}/seen\nexit 0\n')
    kubeadm.chmod(0o755)
    variables = {"NB_KUBELET_PATCH": kubelet_patch({"maxPods": 50}), "NB_PATCHES_DIR": str(patches),
                 "NB_WORK_DIR": str(tmp_path / "work"), "NB_LOCK_DIR": str(tmp_path / "lock"), "NB_RUN_ID": "t"}
    text = shell_preamble(variables, {"NB_JOIN_CONFIG": "kind: JoinConfiguration"}) + script_text("linux", "join.sh")
    result, _ = run_host_script("join.sh", text, {"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert result.ok, result.error
    seen = (tmp_path / "seen").read_text()
    assert seen.startswith("kubeletconfiguration+json.yaml\nkubeletconfiguration+merge.yaml\n")
    assert "maxPods: 50" in seen and "kind: KubeletConfiguration" in seen


def test_a_flag_reaches_the_host_as_its_var(tmp_path: Path) -> None:
    from nodeboot import app

    path = inventory(tmp_path, "      nodeboot_install: false\n      nodeboot_containerd_version: 2.3.1\n")
    sel = app.HostSelection(str(path), None, (), "linux", {"nodeboot_install": True,
                                                          "nodeboot_registry_mirror": ["docker.io=https://m:5000"]})
    host = app.select_hosts(sel)[0]
    assert host.install.enabled and host.install.containerd_version == "2.3.1"  # the flag over, the rest kept
    assert host.install.registry_mirrors == (("docker.io", "https://m:5000"),)
