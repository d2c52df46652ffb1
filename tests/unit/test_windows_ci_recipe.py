""".github/workflows/windows-join.yml, checked as far as this machine can: the recipe's
order and values, and kind.yaml decoded strictly into kind's
own v1alpha4 types (tests/tools/kindconfig, from the Go module cache; offline)."""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "windows-join.yml"
RECIPE = ROOT / ".github" / "windows-join"
SAMPLE = {"HOST_ADDR": "192.168.122.1", "API_PORT": "6443"}


def steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["join"]["steps"]


def kind_config() -> dict:
    return yaml.safe_load(string.Template((RECIPE / "kind.yaml").read_text()).substitute(SAMPLE))


def test_kind_runs_without_its_cni_and_serves_the_api_where_the_vm_reaches_it() -> None:
    cfg = kind_config()
    assert cfg["networking"]["disableDefaultCNI"] is True and cfg["networking"]["podSubnet"] == "10.244.0.0/16"
    patch = yaml.safe_load(cfg["kubeadmConfigPatches"][0])
    assert patch["controlPlaneEndpoint"] == "192.168.122.1:6443"  # cluster-info points the VM's kubelet there
    assert "192.168.122.1" in patch["apiServer"]["certSANs"]


def test_flannel_goes_on_the_linux_side_with_the_vni_and_port_windows_needs() -> None:
    docs = [d for d in yaml.safe_load_all((RECIPE / "kube-flannel-linux.yaml").read_text()) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    net = json.loads(cm["data"]["net-conf.json"])
    assert net["Backend"] == {"Type": "vxlan", "VNI": 4096, "Port": 4789} and net["Network"] == "10.244.0.0/16"
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    assert (ds["metadata"]["namespace"], ds["metadata"]["name"]) == ("kube-flannel", "kube-flannel-ds")
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_the_recipe_runs_kind_flannel_join_verify_in_that_order() -> None:
    text = "\n".join(s.get("run", "") for s in steps())
    order = ["kind create cluster", "kube-flannel-linux.yaml", "rollout status daemonset/kube-flannel-ds",
             "nodeboot join", "nodeboot verify -i /tmp/inventory.yml", "nodeboot reset"]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))
    join = text[text.index("nodeboot join"):]
    assert '--api-server-endpoint "${HOST_ADDR}:${API_PORT}"' in join and "--cni flannel" in join
    assert "kindnet" not in text.replace("kindnet has no Windows side", "")


def test_kind_yaml_decodes_strictly_into_kinds_own_types(tmp_path: Path) -> None:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        pytest.fail("no Go toolchain (the machine's setup installs Go)")
    rendered = tmp_path / "kind.yaml"
    rendered.write_text(string.Template((RECIPE / "kind.yaml").read_text()).substitute(SAMPLE))
    # kind's module comes from the module cache, or the first time from the Go module proxy.
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    proc = subprocess.run([go, "run", ".", str(rendered)], cwd=ROOT / "tests" / "tools" / "kindconfig", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "disableDefaultCNI=true" in proc.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(rendered.read_text().replace("disableDefaultCNI", "disableKindnet"))
    proc = subprocess.run([go, "run", ".", str(broken)], cwd=ROOT / "tests" / "tools" / "kindconfig", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "disableKindnet" in proc.stderr  # the check does catch a wrong field
