"""What facts.sh starts on a host. It asks each of kubeadm, kubelet, containerd and runc
for its version once per binary: the answer is kept in a cache keyed by the file's inode,
ctime and size, so a re-run starts none of them, and a binary that was replaced is asked
again. It asks the container runtime (crictl) only on a host not yet joined. The real
facts.sh in a local bash; the binaries are small scripts on PATH that log each start."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from localshell import host_script_facts
from nodeboot.scripts import script_text, shell_preamble

VERSIONS = {  # name: (its version command's first line, the version facts.sh reads from it)
    "kubeadm": ("v1.37.2", "v1.37.2"),
    "kubelet": ("Kubernetes v1.37.1", "v1.37.1"),
    "containerd": ("containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7", "v2.1.4"),
    "runc": ("runc version 1.3.0", "1.3.0"),
}
FACT = {"kubeadm": "kubeadm_version", "kubelet": "kubelet_version", "containerd": "containerd_version",
        "runc": "runc_version"}


def install_binary(bin_dir: Path, name: str, first_line: str, starts: Path) -> None:
    """A stand-in binary, written beside and renamed into place as a package manager would."""
    new = bin_dir / f".{name}.new"
    new.write_text(f"#!/bin/sh\necho {name} >> {starts}\necho '{first_line}'\necho 'more lines'\n")
    new.chmod(0o755)
    new.rename(bin_dir / name)


def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    bin_dir, starts, root = tmp_path / "bin", tmp_path / "starts", tmp_path / "root"
    bin_dir.mkdir()
    (tmp_path / "run").mkdir()  # as /run is: facts.sh makes only the cache's own directory
    for name, (line, _) in VERSIONS.items():
        install_binary(bin_dir, name, line, starts)
    (root / "var/lib/nodeboot").mkdir(parents=True)  # an install state: containerd and runc are asked too
    (root / "var/lib/nodeboot/install.state").write_text("key k1\n")
    return bin_dir, starts, root


def facts(bin_dir: Path, root: Path, cache: str) -> dict:
    text = shell_preamble({"NB_MODULES_FILE": "/nonexistent"}) + script_text("linux", "facts.sh")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NB_ROOT": str(root), "NB_VERSION_CACHE": cache}
    return host_script_facts("facts.sh", text, env)


def started(starts: Path) -> list[str]:
    return sorted(starts.read_text().split()) if starts.exists() else []


def versions(raw: dict) -> dict[str, str]:
    return {name: raw[fact] for name, fact in FACT.items()}


def test_a_rerun_starts_no_binary_and_reads_the_same_versions(tmp_path: Path) -> None:
    bin_dir, starts, root = setup(tmp_path)
    cache = str(tmp_path / "run/nodeboot/versions")
    expected = {name: version for name, (_, version) in VERSIONS.items()}
    assert versions(facts(bin_dir, root, cache)) == expected
    assert started(starts) == sorted(VERSIONS)
    starts.unlink()
    assert versions(facts(bin_dir, root, cache)) == expected
    assert started(starts) == []


def test_a_replaced_binary_is_asked_again(tmp_path: Path) -> None:
    bin_dir, starts, root = setup(tmp_path)
    cache = str(tmp_path / "run/nodeboot/versions")
    facts(bin_dir, root, cache)
    starts.unlink()
    install_binary(bin_dir, "kubeadm", "v1.38.0", starts)  # an upgrade: same size, a new file
    raw = facts(bin_dir, root, cache)
    assert raw["kubeadm_version"] == "v1.38.0" and raw["kubelet_version"] == "v1.37.1"
    assert started(starts) == ["kubeadm"]


def test_without_a_writable_cache_every_binary_is_asked_every_time(tmp_path: Path) -> None:
    bin_dir, starts, root = setup(tmp_path)
    cache = "/proc/nodeboot-test/versions"  # a directory nobody can create
    for _ in range(2):
        assert versions(facts(bin_dir, root, cache))["kubelet"] == "v1.37.1"
    assert started(starts) == sorted([*VERSIONS, *VERSIONS])


def test_a_binary_that_prints_no_version_is_not_cached(tmp_path: Path) -> None:
    bin_dir, starts, root = setup(tmp_path)
    install_binary(bin_dir, "kubelet", "", starts)  # e.g. a kubelet that fails to start
    cache = str(tmp_path / "run/nodeboot/versions")
    for _ in range(2):
        assert facts(bin_dir, root, cache)["kubelet_version"] == ""
    assert started(starts).count("kubelet") == 2


def test_without_stat_every_binary_is_still_asked(tmp_path: Path) -> None:
    bin_dir, starts, root = setup(tmp_path)
    broken = bin_dir / "stat"  # first on PATH: a stat that reads nothing (missing, or not GNU's)
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    cache = str(tmp_path / "run/nodeboot/versions")
    expected = {name: version for name, (_, version) in VERSIONS.items()}
    for _ in range(2):
        assert versions(facts(bin_dir, root, cache)) == expected
    assert started(starts) == sorted([*VERSIONS, *VERSIONS])  # nothing could be keyed, so nothing cached


def runtime_host(tmp_path: Path, monkeypatch, joined: bool) -> tuple[Path, Path, Path]:
    """A host with a runtime socket and crictl; with kubelet.conf when joined."""
    bin_dir, starts, root = setup(tmp_path)
    crictl = bin_dir / "crictl"
    crictl.write_text(f"#!/bin/sh\necho crictl >> {starts}\necho 'RuntimeName:  containerd'\n"
                      "echo 'RuntimeVersion:  v2.1.4'\n")
    crictl.chmod(0o755)
    (root / "run/containerd").mkdir(parents=True)
    monkeypatch.chdir(root / "run/containerd")  # a relative bind: tmp_path may exceed a socket path's limit
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("containerd.sock")
    if joined:
        (root / "etc/kubernetes").mkdir(parents=True)
        (root / "etc/kubernetes/kubelet.conf").write_text("kind: Config\n")
    return bin_dir, starts, root


def test_a_host_not_joined_has_its_runtime_asked(tmp_path: Path, monkeypatch) -> None:
    bin_dir, starts, root = runtime_host(tmp_path, monkeypatch, joined=False)
    raw = facts(bin_dir, root, str(tmp_path / "run/nodeboot/versions"))
    assert (raw["joined"], raw["cri_socket"], raw["cri_check"], raw["cri_answered"]) == (False, True, "crictl", True)
    assert raw["cri_version"] == "containerd v2.1.4"
    assert "crictl" in started(starts)


def test_a_joined_host_does_not_start_the_runtime_client(tmp_path: Path, monkeypatch) -> None:
    bin_dir, starts, root = runtime_host(tmp_path, monkeypatch, joined=True)
    raw = facts(bin_dir, root, str(tmp_path / "run/nodeboot/versions"))
    assert (raw["joined"], raw["cri_socket"], raw["cri_check"], raw["cri_answered"]) == (True, True, "joined", False)
    assert "crictl" not in started(starts)
