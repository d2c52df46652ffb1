"""install.sh without a VM: a local bash installs into a fake root (NB_ROOT) from
a loopback HTTP mirror the test builds in upstream's layout, with real sha256
files and small shell scripts standing in for the binaries.

Stand-ins on PATH (tests only): systemctl, modprobe, sysctl and swapoff record
their calls; the containerd tarball's `ctr` records pulls (this machine cannot
run systemd units or load modules). Everything else is real: curl, sha256sum,
tar, the script's staging and its moves into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from localshell import run_host_script
from loopback import serve_directory
from nodeboot import node_install
from nodeboot.scripts import ScriptResult, script_text, shell_preamble

K8S = "v1.37.2"
ARCH = "amd64"
PAUSE = "registry.k8s.io/pause:3.10.1"
MIRROR = "https://mirror.lab.test:5000"
CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

STANDINS = {
    "systemctl": r"""echo "$*" >> "$NB_TEST_STATE/systemctl.calls"
case $1 in
  is-enabled) [ -e "$NB_TEST_STATE/enabled.$3" ] ;;
  is-active) [ -e "$NB_TEST_STATE/active.$3" ] ;;
  enable) touch "$NB_TEST_STATE/enabled.$2" ;;
  start|restart) touch "$NB_TEST_STATE/active.$2" ;;
  *) exit 0 ;;
esac
""",
    "modprobe": 'echo "$*" >> "$NB_TEST_STATE/modprobe.calls"\n',
    "sysctl": 'echo "$*" >> "$NB_TEST_STATE/sysctl.calls"\n',
    "swapoff": 'echo "$*" >> "$NB_TEST_STATE/swapoff.calls"\n',
}


def tool(text: str) -> bytes:
    return ("#!/bin/bash\n" + text).encode()


def fake_binaries(k8s: str = K8S, containerd: str = "2.3.7", runc: str = "1.5.3") -> dict[str, bytes]:
    return {
        "kubelet": tool(f'echo "Kubernetes {k8s}"\n'),
        "kubeadm": tool(f'case $1 in version) echo {k8s} ;; config) printf "%s\\n" '
                        f'registry.k8s.io/kube-proxy:{k8s} {PAUSE} registry.k8s.io/etcd:3.6.4-0 ;; esac\n'),
        "containerd": tool(f'echo "containerd github.com/containerd/containerd/v2 {containerd} fake"\n'),
        "containerd-shim-runc-v2": tool("exit 0\n"),
        # ctr: answers `version`, lists pulled images, records pulls (fails them when the registry is "down").
        "ctr": tool(r"""case "$*" in
  *" version") exit 0 ;;
  *"images ls -q") cat "$NB_TEST_STATE/images" 2>/dev/null; exit 0 ;;
  *"images pull"*) echo "$*" >> "$NB_TEST_STATE/pulls"
    if [ -e "$NB_TEST_STATE/registry_down" ]; then
      echo "ctr: failed to resolve reference \"${*: -1}\": dial tcp 198.18.0.9:5000: connect: connection refused" >&2
      exit 1
    fi
    echo "${*: -1}" >> "$NB_TEST_STATE/images" ;;
esac
"""),
        "runc": tool(f'echo "runc version {runc}"\n'),
    }


def tarball(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap", "tuning")


def build_mirror(top: Path) -> dict[str, bytes]:
    """Upstream's layout with real checksum files; returns the fake binaries by name."""
    bins = fake_binaries()
    k8s_dir = top / f"release/{K8S}/bin/linux/{ARCH}"
    k8s_dir.mkdir(parents=True)
    for name in ("kubelet", "kubeadm", "kubectl"):
        data = bins.get(name, tool("echo kubectl\n"))
        (k8s_dir / name).write_bytes(data)
        (k8s_dir / f"{name}.sha256").write_text(sha(data))  # hex only, as dl.k8s.io has it
    cd_dir = top / "containerd/releases/download/v2.3.7"
    cd_dir.mkdir(parents=True)
    cd_name = f"containerd-2.3.7-linux-{ARCH}.tar.gz"
    cd_data = tarball({f"bin/{n}": bins[n] for n in ("containerd", "containerd-shim-runc-v2", "ctr")})
    (cd_dir / cd_name).write_bytes(cd_data)
    (cd_dir / f"{cd_name}.sha256sum").write_text(f"{sha(cd_data)}  {cd_name}\n")
    cni_dir = top / "containernetworking/plugins/releases/download/v1.10.0"
    cni_dir.mkdir(parents=True)
    cni_name = f"cni-plugins-linux-{ARCH}-v1.10.0.tgz"
    cni_data = tarball({f"./{n}": tool(f'echo "CNI {n} plugin v1.10.0"\n') for n in CNI_PLUGINS})
    (cni_dir / cni_name).write_bytes(cni_data)
    (cni_dir / f"{cni_name}.sha256").write_text(f"{sha(cni_data)}  {cni_name}\n")
    runc_dir = top / "opencontainers/runc/releases/download/v1.5.3"
    runc_dir.mkdir(parents=True)
    (runc_dir / f"runc.{ARCH}").write_bytes(bins["runc"])
    other = tool("echo arm\n")
    (runc_dir / "runc.arm64").write_bytes(other)
    (runc_dir / "runc.sha256sum").write_text(f"{sha(other)}  runc.arm64\n{sha(bins['runc'])}  runc.{ARCH}\n")
    return bins


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, bytes], list[str]]]:
    top = tmp_path / "mirror"
    bins = build_mirror(top)
    with serve_directory(top) as (url, requests):
        yield url, top, bins, requests


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """The fake root, its stand-ins and their state."""
    for sub in ("root", "state", "bin", "tmp"):
        (tmp_path / sub).mkdir()
    for name, body in STANDINS.items():
        path = tmp_path / "bin" / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    return tmp_path


def settings(url: str, **changes: object) -> node_install.InstallSettings:
    base = node_install.InstallSettings(enabled=True, artifacts_url=url, registry_ca=CA,
                                        registry_mirrors=(("registry.k8s.io", MIRROR),))
    return replace(base, **changes)


def run_script(name: str, variables: dict[str, str], node: Path) -> ScriptResult:
    root = node / "root"
    env = {
        "PATH": f"{node / 'bin'}:{root}/usr/local/bin:{root}/usr/local/sbin:/usr/bin:/bin",
        "NB_TEST_STATE": str(node / "state"),
        "TMPDIR": str(node / "tmp"),
    }
    (node / "run").mkdir(exist_ok=True)  # the node's /run: facts.sh keeps its version cache there
    variables = {**variables, "NB_ROOT": str(root), "NB_LOCK_DIR": str(node / "lock"),
                 "NB_VERSION_CACHE": str(node / "run" / "nodeboot" / "versions")}
    result, proc = run_host_script(name, shell_preamble(variables) + script_text("linux", name), env, timeout=120)
    assert len(proc.stdout.splitlines()) == 1, proc.stdout + proc.stderr  # one JSON line, nothing else
    json.loads(proc.stdout)
    return result


def install(node: Path, s: node_install.InstallSettings, **extra: str) -> ScriptResult:
    return run_script("install.sh", {**node_install.script_inputs(s, K8S, ARCH), **extra}, node)


def calls(node: Path, tool_name: str) -> list[str]:
    path = node / "state" / f"{tool_name}.calls"
    return path.read_text().splitlines() if path.exists() else []


def installed(node: Path) -> list[str]:
    root = node / "root"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_install_puts_every_part_in_place_and_a_rerun_changes_nothing(mirror, node: Path) -> None:
    url, top, bins, _ = mirror
    root = node / "root"
    first = install(node, settings(url))
    assert first.ok and first.changed, first.error
    for name in ("kubelet", "kubeadm", "containerd", "containerd-shim-runc-v2", "ctr"):
        assert (root / "usr/local/bin" / name).read_bytes() == bins[name], name
    assert (root / "usr/local/sbin/runc").read_bytes() == bins["runc"]  # runc.amd64, not runc.arm64
    assert sorted(p.name for p in (root / "opt/cni/bin").iterdir()) == sorted(CNI_PLUGINS)
    assert not (root / "usr/local/bin/kubectl").exists()  # only with --install-kubectl

    config = (root / "etc/containerd/config.toml").read_text()
    assert "version = 3" in config and "SystemdCgroup = true" in config
    assert f"sandbox = '{PAUSE}'" in config  # what the downloaded kubeadm named
    assert "config_path = '/etc/containerd/certs.d'" in config
    hosts = (root / "etc/containerd/certs.d/registry.k8s.io/hosts.toml").read_text()
    assert 'server = "https://registry.k8s.io"' in hosts and f'[host."{MIRROR}"]' in hosts
    assert 'capabilities = ["pull", "resolve"]' in hosts
    assert 'ca = "/etc/containerd/certs.d/nodeboot-registry-ca.crt"' in hosts
    assert (root / "etc/containerd/certs.d/nodeboot-registry-ca.crt").read_text() == CA
    dropin = (root / "etc/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    for words in ("EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env", "EnvironmentFile=-/etc/default/kubelet",
                  "--config=/var/lib/kubelet/config.yaml",
                  "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
                  "ExecStart=\nExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS"):
        assert words in dropin, words
    assert "ExecStart=/usr/local/bin/containerd" in (root / "etc/systemd/system/containerd.service").read_text()
    assert (root / "etc/modules-load.d/nodeboot-k8s.conf").read_text().split()[-2:] == ["overlay", "br_netfilter"]
    sysctls = (root / "etc/sysctl.d/90-nodeboot-k8s.conf").read_text()
    for key in ("net.bridge.bridge-nf-call-iptables = 1", "net.bridge.bridge-nf-call-ip6tables = 1",
                "net.ipv4.ip_forward = 1"):
        assert key in sysctls
    assert calls(node, "modprobe") == ["-a overlay br_netfilter"]
    systemctl = calls(node, "systemctl")
    for call in ("daemon-reload", "enable containerd", "enable kubelet", "restart containerd"):
        assert call in systemctl, call
    assert not any(c.startswith(("start kubelet", "restart kubelet")) for c in systemctl)  # kubeadm join starts it
    pulls = (node / "state/pulls").read_text().splitlines()
    assert len(pulls) == 1 and f"--hosts-dir {root}/etc/containerd/certs.d {PAUSE}" in pulls[0]
    assert list((node / "tmp").iterdir()) == []  # the private temp dir is gone
    assert not (node / "lock").exists()

    # facts.sh reads back what was installed; the install phase is satisfied from these facts alone.
    facts = run_script("facts.sh", {}, node).facts
    inputs = node_install.script_inputs(settings(url), K8S, ARCH)
    assert facts["install_key"] == inputs["NB_INSTALL_KEY"] and facts["install_files_ok"] is True
    assert facts["kubelet_version"] == K8S and facts["kubeadm_version"] == K8S
    assert facts["containerd_version"] == "2.3.7" and facts["runc_version"] == "1.5.3"
    assert facts["runc"] is True and set(node_install.CNI_CORE_PLUGINS) <= set(facts["cni_plugins"])
    # The CRI socket is containerd's real one (/run/containerd), which no stand-in provides.
    assert node_install.installed_as_asked({**facts, "cri_socket": True}, inputs, K8S)
    other = node_install.script_inputs(settings(url, containerd_version="2.3.8"), K8S, ARCH)
    assert node_install.installed_as_asked({**facts, "cri_socket": True}, other, K8S) is None

    before = {p: (root / p).stat().st_mtime_ns for p in installed(node)}
    second = install(node, settings(url))
    assert second.ok and not second.changed, second.facts["actions"]
    assert {p: (root / p).stat().st_mtime_ns for p in installed(node)} == before
    assert calls(node, "systemctl").count("restart containerd") == 1
    assert len((node / "state/pulls").read_text().splitlines()) == 1

    # A config file changed by hand: facts say so, and the install rewrites just that file.
    (root / "etc/containerd/config.toml").write_text("# edited\n")
    assert run_script("facts.sh", {}, node).facts["install_files_ok"] is False
    third = install(node, settings(url))
    assert third.ok and third.facts["actions"][0] == "installed /etc/containerd/config.toml"
    assert "SystemdCgroup = true" in (root / "etc/containerd/config.toml").read_text()


def assert_nothing_installed(node: Path) -> None:
    assert installed(node) == []
    assert list((node / "tmp").iterdir()) == []
    assert calls(node, "systemctl") == [] and calls(node, "modprobe") == []


def test_a_wrong_sha256_names_the_file_and_both_hashes_and_installs_nothing(mirror, node: Path) -> None:
    url, top, _, _ = mirror
    path = top / f"release/{K8S}/bin/linux/{ARCH}/kubeadm"
    want = (path.parent / "kubeadm.sha256").read_text()
    path.write_bytes(b"#!/bin/sh\necho tampered\n")
    result = install(node, settings(url))
    assert not result.ok
    assert f"{url}/release/{K8S}/bin/linux/{ARCH}/kubeadm" in result.error
    assert want in result.error and sha(path.read_bytes()) in result.error
    assert "\n" not in result.error
    assert_nothing_installed(node)


def test_a_version_the_mirror_lacks_names_the_url(mirror, node: Path) -> None:
    url, _, _, _ = mirror
    result = install(node, settings(url, containerd_version="2.3.99"))
    assert not result.ok
    wanted = f"{url}/containerd/releases/download/v2.3.99/containerd-2.3.99-linux-{ARCH}.tar.gz"
    assert wanted in result.error and "404" in result.error and "\n" not in result.error
    assert_nothing_installed(node)


def test_an_unreachable_mirror_names_the_url_and_curls_reason(node: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = install(node, settings(url))
    assert not result.ok
    assert f"cannot download {url}/release/{K8S}/bin/linux/{ARCH}/kubelet" in result.error
    assert "connect" in result.error.lower() and "\n" not in result.error
    assert_nothing_installed(node)


def test_an_unreachable_registry_names_the_image_and_the_mirror(mirror, node: Path) -> None:
    url, _, _, _ = mirror
    (node / "state/registry_down").touch()
    result = install(node, settings(url))
    assert not result.ok
    assert f"cannot pull {PAUSE} through the mirror {MIRROR}" in result.error and "connection refused" in result.error
    assert not (node / "root/var/lib/nodeboot/install.state").exists()  # so facts say: not installed yet
    (node / "state/registry_down").unlink()
    again = install(node, settings(url))
    assert again.ok and again.facts["actions"] == [f"pulled {PAUSE}"]


def test_dry_run_lists_versions_and_urls_and_downloads_nothing(mirror, node: Path) -> None:
    url, _, _, requests = mirror
    result = install(node, settings(url, install_kubectl=True), NB_DRY_RUN="1")
    assert result.ok and result.changed
    actions = result.facts["actions"]
    for line in (f"would install kubelet {K8S} from {url}/release/{K8S}/bin/linux/{ARCH}/kubelet",
                 f"would install kubectl {K8S} from {url}/release/{K8S}/bin/linux/{ARCH}/kubectl",
                 f"would install containerd 2.3.7 from {url}/containerd/releases/download/v2.3.7/"
                 f"containerd-2.3.7-linux-{ARCH}.tar.gz",
                 f"would install cni 1.10.0 from {url}/containernetworking/plugins/releases/download/v1.10.0/"
                 f"cni-plugins-linux-{ARCH}-v1.10.0.tgz",
                 f"would install runc 1.5.3 from {url}/opencontainers/runc/releases/download/v1.5.3/runc.{ARCH}",
                 f"would pull registry.k8s.io images through {MIRROR}"):
        assert line in actions, line
    assert requests == []
    assert_nothing_installed(node)


def test_disable_swap_turns_it_off_and_keeps_it_off(mirror, node: Path) -> None:
    url, _, _, _ = mirror
    root = node / "root"
    (root / "proc").mkdir()
    (root / "proc/swaps").write_text("Filename Type Size Used Priority\n/dev/vda3 partition 1048572 0 -2\n")
    (root / "etc").mkdir()
    (root / "etc/fstab").write_text("/dev/vda1 / ext4 defaults 0 1\n/dev/vda3 none swap sw 0 0\n")
    result = install(node, settings(url, disable_swap=True))
    assert result.ok, result.error
    assert calls(node, "swapoff") == ["-a"]
    assert (root / "etc/fstab").read_text().splitlines() == [
        "/dev/vda1 / ext4 defaults 0 1", "# nodeboot --disable-swap: /dev/vda3 none swap sw 0 0"]


@pytest.mark.parametrize(("variables", "message"), [
    ({"NB_ARTIFACTS": "", "NB_KUBERNETES_VERSION": K8S}, "NB_ARTIFACTS is not set"),
    ({"NB_ARTIFACTS": "kubelet v1 http://x/k http://x/k.sha256", "NB_KUBERNETES_VERSION": "1.37"},
     "NB_KUBERNETES_VERSION '1.37' is not a version"),
    ({"NB_ARTIFACTS": "kubelet v1 ftp://x/k http://x/k.sha256", "NB_KUBERNETES_VERSION": K8S},
     "'kubelet' URLs must be http(s) URLs"),
    ({"NB_ARTIFACTS": "kubelet v1 http://x/k http://x/k.sha256", "NB_KUBERNETES_VERSION": K8S},
     "NB_ARTIFACTS has no 'kubeadm'"),
])
def test_bad_inputs_are_refused(node: Path, variables: dict[str, str], message: str) -> None:
    result = run_script("install.sh", variables, node)
    assert not result.ok and message in result.error
