"""kubelet.ps1's downloads, for real over HTTP: a small mirror in upstream's layout
(BASE/release/vX.Y.Z/bin/windows/amd64/NAME.exe beside NAME.exe.sha256) served by
http.server on loopback; the lab's model fetches and hashes as the script does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_windows_scripts import kubelet_inputs

from loopback import serve_directory
from nodeboot.scripts import script_text
from nodeboot.transport.winrm import powershell_preamble
from nodeboot_lab.windows_model import WindowsHostModel

OLD, NEW = "v1.36.4", "v1.37.2"


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "mirror"
    for name in ("kubelet.exe", "kubeadm.exe"):
        path = root / "release" / NEW / "bin" / "windows" / "amd64" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{name} {NEW}".encode())
        (path.parent / f"{name}.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
    with serve_directory(root) as (url, _requests):
        yield url, root


def kubelet_run(model: WindowsHostModel, **inputs: str) -> dict:
    stdin = (powershell_preamble(kubelet_inputs(**inputs)) + script_text("windows", "kubelet.ps1") + "\n\n").encode()
    out, _, code = model("shell", "powershell.exe", ["-NoProfile", "-Command", "-"], stdin)
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert (code == 0) == result["ok"]
    return result


def old_host(tmp_path: Path) -> WindowsHostModel:
    model = WindowsHostModel(tmp_path / "host")
    for exe in ("kubelet.exe", "kubeadm.exe"):
        model.node.w["binaries"][f"C:\\k\\{exe}"] = OLD
    return model


def test_binaries_of_another_version_are_replaced_by_the_servers(tmp_path: Path, mirror) -> None:
    base, _ = mirror
    model = old_host(tmp_path)
    model.node.w["services"]["kubelet"] = {"status": "Running", "start": "Automatic", "manager": "sc",
                                           "command": '"C:\\k\\nodeboot-service-host.exe" kubelet '
                                                      '"C:\\k\\StartKubelet.ps1"'}
    for name in ("kubeadm-flags.env", "config.yaml"):  # a joined host: the wrapper can start the kubelet again
        path = model.node._path(f"C:\\var\\lib\\kubelet\\{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("KUBELET_KUBEADM_ARGS=\"\"\n")
    result = kubelet_run(model, NB_ARTIFACTS_URL=base, NB_KUBERNETES_VERSION=NEW)
    assert result["ok"], result
    actions = result["facts"]["actions"]
    assert f"replaced kubelet.exe {OLD} with {NEW}" in actions and f"replaced kubeadm.exe {OLD} with {NEW}" in actions
    assert "stopped the kubelet to replace kubelet.exe" in actions  # Windows locks a running kubelet.exe
    assert model.node.w["binaries"]["C:\\k\\kubelet.exe"] == NEW
    assert result["facts"]["kubelet_version"] == NEW
    again = kubelet_run(model, NB_ARTIFACTS_URL=base, NB_KUBERNETES_VERSION=NEW)
    assert not any("replaced" in a or "installed" in a for a in again["facts"]["actions"])


def test_a_file_that_does_not_match_its_checksum_is_not_installed(tmp_path: Path, mirror) -> None:
    base, root = mirror
    (root / "release" / NEW / "bin" / "windows" / "amd64" / "kubelet.exe").write_bytes(b"tampered")
    model = old_host(tmp_path)
    result = kubelet_run(model, NB_ARTIFACTS_URL=base, NB_KUBERNETES_VERSION=NEW)
    assert not result["ok"] and "kubelet.exe has sha256" in result["error"] and ".sha256 says" in result["error"]
    assert model.node.w["binaries"]["C:\\k\\kubelet.exe"] == OLD


def test_a_pinned_checksum_wins_over_the_download_hosts(tmp_path: Path, mirror) -> None:
    base, root = mirror
    folder = root / "release" / NEW / "bin" / "windows" / "amd64"
    good = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("kubelet.exe", "kubeadm.exe")}
    for name in good:  # the mirror's own checksums lie (or are gone); the pins, from elsewhere, do not
        (folder / f"{name}.sha256").write_text("0" * 64)
    pins = ";".join(f"{n}={h}" for n, h in good.items())
    result = kubelet_run(old_host(tmp_path), NB_ARTIFACTS_URL=base, NB_KUBERNETES_VERSION=NEW, NB_SHA256_PINS=pins)
    assert result["ok"], result
    (folder / "kubeadm.exe").write_bytes(b"swapped on the mirror")
    bad = kubelet_run(old_host(tmp_path / "2"), NB_ARTIFACTS_URL=base, NB_KUBERNETES_VERSION=NEW,
                      NB_SHA256_PINS=pins)
    assert not bad["ok"] and "the pinned sha256 says" in bad["error"]


def test_the_pins_come_from_a_checksum_file_or_the_inventory(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from nodeboot.errors import UsageError
    from nodeboot.steps import windows

    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'a' * 64}  release/{NEW}/bin/windows/amd64/kubelet.exe\n{'b' * 64} *kubeadm.exe\n")
    host = SimpleNamespace(name="win-1", vars={"nodeboot_windows_checksums_file": str(sums),
                                               "nodeboot_windows_sha256": {"kubeadm.exe": "C" * 64}})
    ctx = SimpleNamespace(host=host)
    assert windows.sha256_pins(ctx) == {"kubelet.exe": "a" * 64, "kubeadm.exe": "c" * 64}
    sums.write_text("not a checksum line\n")
    with pytest.raises(UsageError, match=f"{sums}:1: expected"):
        windows.sha256_pins(ctx)
