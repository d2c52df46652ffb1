"""The Linux playbooks on the lab's hosts over real SSH, through ansible-runner
(`nodeboot join|reset --engine ansible`) and standalone (`ansible-playbook`):
nodes joined and Ready in the real API server, a second join changes nothing,
check mode changes nothing, reset removes the nodes and what kubeadm left."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

from labkit import ROOT, summary

PLAYBOOKS = ROOT / "playbooks"
TOKEN_SHAPE = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
# The lab's hosts see this machine's files; interpreter discovery there finds a
# pyenv shim that does not work in the hosts' environment.
HOST_PYTHON = {"ansible_python_interpreter": "/usr/bin/python3"}


def node_state(lab, name: str) -> dict | None:
    from nodeboot.cluster import nodes

    node = nodes.read_node(lab.cluster(), name)
    if node is None:
        return None
    return {"ready": nodes.is_ready(node), "labels": node.metadata.labels or {},
            "taints": [(t.key, t.value, t.effect) for t in node.spec.taints or []]}


def bootstrap_tokens_for(lab, names: list[str]) -> list[str]:
    secrets = lab.cluster().core.list_namespaced_secret(
        "kube-system", field_selector="type=bootstrap.kubernetes.io/token").items
    found = []
    for s in secrets:
        description = (s.data or {}).get("description", "")
        text = base64.b64decode(description).decode() if description else ""
        if any(text.endswith(f"node {n}") for n in names):
            found.append(s.metadata.name)
    return found


def run_engine(lab, *args: str, log_dir: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    proc, events = lab.nodeboot_json(*args, "--engine", "ansible", "--log-dir", str(log_dir))
    return proc, events


def all_text(path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in path.rglob("*") if p.is_file())


def test_engine_ansible_joins_rejoins_without_change_and_resets(lab, tmp_path: Path) -> None:
    hosts = lab.reserve(3)
    names = [h["name"] for h in hosts]
    inv = lab.inventory(hosts, "ansible-engine", host_vars={
        names[0]: {"nodeboot_labels": {"tier": "web"}, "nodeboot_taints": ["dedicated=web:NoSchedule"]},
    }, group_vars=HOST_PYTHON)

    proc, events = run_engine(lab, "join", "-i", str(inv), log_dir=tmp_path / "join1")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    first = summary(events)
    assert first["engine"] == "ansible"
    assert {r["host"]: r["result"] for r in first["hosts"]} == {n: "changed" for n in names}
    # Progress came per host and per phase, under nodeboot's phase names.
    phases = {(e["host"], e["phase"]) for e in events if e.get("event") == "phase" and e["status"] != "start"}
    for name in names:
        for phase in ("facts", "preflight", "kubeadm-join", "wait-ready", "label-taint", "delete-token"):
            assert (name, phase) in phases, (name, phase)
    for name in names:
        state = node_state(lab, name)
        assert state is not None and state["ready"], name
        assert lab.ssh(next(h for h in hosts if h["name"] == name), "test -f /etc/kubernetes/kubelet.conf"
                       ).returncode == 0
    labelled = node_state(lab, names[0])
    assert labelled["labels"].get("tier") == "web"
    assert ("dedicated", "web", "NoSchedule") in labelled["taints"]
    assert bootstrap_tokens_for(lab, names) == [], "the run's bootstrap tokens must be deleted"
    # No join configuration is left on the hosts, and no token reached any output or log.
    for h in hosts:
        assert lab.ssh(h, "ls /tmp | grep -c nodeboot-join || true").stdout.strip() == "0"
    assert not TOKEN_SHAPE.search(proc.stdout + proc.stderr + all_text(tmp_path / "join1"))

    proc, events = run_engine(lab, "join", "-i", str(inv), log_dir=tmp_path / "join2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = summary(events)
    assert {r["host"]: (r["result"], r["changed"]) for r in second["hosts"]} == {n: ("ok", False) for n in names}
    assert not [e for e in events if e.get("event") == "phase" and e.get("status") == "changed"]

    proc = lab.nodeboot("reset", "-i", str(inv), "--yes", "--engine", "ansible", "--output", "json",
                        "--log-dir", str(tmp_path / "reset"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for h in hosts:
        assert node_state(lab, h["name"]) is None, h["name"]
        assert lab.ssh(h, "test -e /etc/kubernetes/kubelet.conf").returncode != 0


def ansible_playbook(lab, *args: str) -> subprocess.CompletedProcess:
    env = lab.cli_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["ANSIBLE_NOCOLOR"] = "1"
    return subprocess.run(["ansible-playbook", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=900)


def recap(stdout: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", stdout, re.MULTILINE)
    assert match, stdout[-2000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_standalone_ansible_playbook_check_join_and_reset(lab) -> None:
    hosts = lab.reserve(1)
    name = hosts[0]["name"]
    inv = str(lab.inventory(hosts, "ansible-standalone", group_vars=HOST_PYTHON))

    check = ansible_playbook(lab, "-i", inv, "playbooks/join.yml", "--check")
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap(check.stdout, name)["changed"] >= 1  # it says a join would happen...
    assert node_state(lab, name) is None  # ...and does not do it
    assert lab.ssh(hosts[0], "test -e /etc/kubernetes/kubelet.conf").returncode != 0

    joined = ansible_playbook(lab, "-i", inv, "playbooks/join.yml")
    assert joined.returncode == 0, joined.stdout[-3000:]
    assert recap(joined.stdout, name)["failed"] == 0
    assert node_state(lab, name)["ready"]
    again = ansible_playbook(lab, "-i", inv, "playbooks/join.yml")
    assert again.returncode == 0 and recap(again.stdout, name)["changed"] == 0, again.stdout[-3000:]

    would_reset = ansible_playbook(lab, "-i", inv, "playbooks/reset.yml", "--check")
    assert would_reset.returncode == 0 and recap(would_reset.stdout, name)["changed"] >= 1
    assert node_state(lab, name) is not None

    reset = ansible_playbook(lab, "-i", inv, "playbooks/reset.yml")
    assert reset.returncode == 0, reset.stdout[-3000:]
    assert node_state(lab, name) is None
    assert lab.ssh(hosts[0], "test -e /etc/kubernetes/kubelet.conf").returncode != 0
    done = recap(reset.stdout, name)
    assert done["changed"] >= 1 and done["failed"] == 0 and done["unreachable"] == 0
