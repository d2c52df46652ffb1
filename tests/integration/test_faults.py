"""Faults on the lab: nothing is lost, left half-done or hung (issue 6)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from kubernetes import client

from labkit import BackgroundRun, netns_processes, summary, wait_for_process
from nodeboot.cluster.nodes import NodeWatcher

# What the host's failure says (as nodeboot and the lab's kubeadm 1.37 word it).
LINK_CUT_DETAIL = "command timed out after 8s"  # --step-timeout 8
UNREACHABLE_DETAIL = "couldn't validate the identity of the API Server"


def nodeboot_tokens(cluster) -> list[str]:
    secrets = cluster.core.list_namespaced_secret("kube-system", field_selector="type=bootstrap.kubernetes.io/token")
    return [s.metadata.name for s in secrets.items
            if (s.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "nodeboot"]


def by_host(result: dict) -> dict[str, dict]:
    return {h["host"]: h for h in result["hosts"]}


def crash_session(netns: str) -> None:
    """What an sshd crash does to a join in flight: sshd, the session shell and kubeadm all die."""
    for pid, comm, _ in netns_processes(netns):
        if comm in ("sshd", "bash", "kubeadm"):
            os.kill(pid, signal.SIGKILL)


def test_sshd_killed_mid_join_on_one_of_ten_hosts(lab):
    hosts = lab.reserve(10)
    inventory = lab.inventory(hosts, "fault-sshd")
    victim = hosts[4]
    run = BackgroundRun(lab, "join", "-i", str(inventory), "--parallel", "10")
    wait_for_process(victim["netns"], "kubeadm join")
    crash_session(victim["netns"])
    assert run.wait(300) == 1
    first = by_host(run.summary())
    assert first[victim["name"]]["result"] == "failed"
    assert first[victim["name"]]["phase"] == "kubeadm-join"
    assert "kubeadm-join" in first[victim["name"]]["detail"]
    assert all(first[h["name"]]["result"] == "changed" for h in hosts if h is not victim)
    assert run.summary()["tokens_left"] == [] and nodeboot_tokens(lab.cluster()) == []
    # The host comes back; a re-run finishes it and leaves the nine alone.
    lab.lab.start_sshd(victim["name"])
    proc, events = lab.nodeboot_json("join", "-i", str(inventory))
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    second = summary(events)
    assert second["tokens_created"] == 1
    again = by_host(second)
    assert again[victim["name"]]["result"] == "changed"
    assert all(again[h["name"]]["result"] == "ok" for h in hosts if h is not victim)
    names = [n.metadata.name for n in lab.cluster().core.list_node().items]
    assert all(names.count(h["name"]) == 1 for h in hosts)
    assert nodeboot_tokens(lab.cluster()) == []


def test_link_cut_during_a_step_fails_that_host_within_its_timeout(lab):
    hosts = lab.reserve(3)
    inventory = lab.inventory(hosts, "fault-link")
    victim = hosts[0]
    run = BackgroundRun(lab, "join", "-i", str(inventory), "--step-timeout", "8", "--connect-timeout", "3")
    wait_for_process(victim["netns"], "kubeadm join")
    subprocess.run(["ip", "netns", "exec", victim["netns"], "ip", "link", "set", "eth0", "down"], check=True)
    try:
        code = run.wait(120)  # bounded: nothing may hang
    finally:
        subprocess.run(["ip", "netns", "exec", victim["netns"], "ip", "link", "set", "eth0", "up"], check=True)
    assert code == 1
    result = by_host(run.summary())
    assert result[victim["name"]]["result"] == "failed"
    # The host is failed by its own step timeout, and says so.
    assert LINK_CUT_DETAIL in result[victim["name"]]["detail"], result[victim["name"]]["detail"]
    assert all(result[h["name"]]["result"] == "changed" for h in hosts[1:])
    assert nodeboot_tokens(lab.cluster()) == []


def test_node_watch_survives_an_api_server_restart(lab):
    cluster = lab.cluster()
    watcher = NodeWatcher(cluster).start()
    name = "fault-watch-node"
    try:
        watcher.wait_for(name, lambda n: n is None, 30)
        lab.lab.restart_component("kube-apiserver")
        cluster.core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
        cluster.core.patch_node_status(name, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "Test", "message": "set by the test",
             "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
        node = watcher.wait_ready(name, 60)
        assert node.metadata.name == name
        assert watcher.restarts >= 1, "the watch never saw the API server go away"
    finally:
        watcher.stop()
        cluster.core.delete_node(name)


def test_join_completes_across_an_api_server_restart(lab):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "fault-apiserver")
    run = BackgroundRun(lab, "join", "-i", str(inventory))
    run.wait_event(lambda e: e.get("event") == "phase" and e.get("phase") == "kubeadm-join", 120)
    restart = threading.Thread(target=lab.lab.restart_component, args=("kube-apiserver",))
    restart.start()
    restart.join(120)
    assert run.wait(300) == 0, run.stderr + str(run.events[-5:])
    node = lab.cluster().core.read_node(host["name"])
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def test_failed_kubeadm_join_shows_kubeadm_and_leaves_the_host_clean(lab):
    # (A CA pin that is not the cluster's no longer reaches kubeadm: preflight stops it,
    # test_operator_safety.py.) An endpoint nobody answers on fails kubeadm's discovery.
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "fault-unreachable-endpoint")
    subnet = lab.env["api_endpoint"].rsplit(".", 1)[0]
    args = ["join", "-i", str(inventory), "--discovery-timeout", "8s",
            "--api-server-endpoint", f"{subnet}.250:6443"]  # a lab address nobody answers on
    proc, events = lab.nodeboot_json(*args, timeout=300)
    assert proc.returncode == 1
    failed = by_host(summary(events))[host["name"]]
    assert failed["phase"] == "kubeadm-join"
    detail = failed["detail"]
    assert "kubeadm join failed" in detail and "kubeadm said:" in detail
    assert UNREACHABLE_DETAIL in detail and f"{subnet}.250:6443" in detail, detail
    assert "the host was reset" in detail
    left = lab.ssh(host, "ls /etc/kubernetes /var/lib/kubelet 2>/dev/null | grep -v '^/' | grep -v '^$' | wc -l")
    assert left.stdout.strip() == "0", lab.ssh(host, "ls -R /etc/kubernetes /var/lib/kubelet").stdout
    assert nodeboot_tokens(lab.cluster()) == [] and summary(events)["tokens_left"] == []


def test_ctrl_c_during_a_fleet_run(lab):
    hosts = lab.reserve(4)
    inventory = lab.inventory(hosts, "fault-sigint")
    run = BackgroundRun(lab, "join", "-i", str(inventory), "--parallel", "1")
    run.wait_event(lambda e: e.get("event") == "phase" and e.get("phase") == "kubeadm-join", 120)
    run.proc.send_signal(signal.SIGINT)
    code = run.wait(300)
    assert code == 1
    result = run.summary()
    states = {h["host"]: (h["result"], h["detail"]) for h in result["hosts"]}
    # The host in flight finishes its kubeadm join and stops there; the others never start.
    in_flight = [d for r, d in states.values() if "after kubeadm-join" in d]
    assert len(in_flight) == 1 and "not run: wait-ready" in in_flight[0], states
    assert sum(1 for r, d in states.values() if r == "interrupted" and d == "not started") == 3, states
    assert result["tokens_left"] == [] and nodeboot_tokens(lab.cluster()) == []
    said = run.stderr + "".join(e.get("message", "") for e in run.events if e.get("event") in ("message", "warning"))
    assert "interrupt" in said


def test_a_second_run_on_a_locked_host_is_refused_until_the_lock_is_stale(lab):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "fault-lock")
    # Another run holds the lock: its shell (here, the host's sshd) is alive.
    sshd_pid = next(pid for pid, comm, _ in netns_processes(host["netns"]) if comm == "sshd")
    lab.ssh(host, f"mkdir -p /run/nodeboot.lock && echo 'other-run {int(time.time())} {sshd_pid}' "
                  "> /run/nodeboot.lock/owner")
    proc, events = lab.nodeboot_json("join", "-i", str(inventory))
    assert proc.returncode == 1
    detail = by_host(summary(events))[host["name"]]["detail"]
    assert "locked by another nodeboot run (other-run" in detail
    assert nodeboot_tokens(lab.cluster()) == []
    # The holder is gone: the lock is stale and the next run takes it over.
    lab.ssh(host, f"echo 'other-run {int(time.time())} 999999' > /run/nodeboot.lock/owner")
    proc, events = lab.nodeboot_json("join", "-i", str(inventory))
    assert proc.returncode == 0, proc.stderr
    assert lab.ssh(host, "test -d /run/nodeboot.lock; echo $?").stdout.strip() == "1"
