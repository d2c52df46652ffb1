"""Windows workers on the lab: real WinRM (pywinrm against the lab endpoint), real API
server and controller manager (discovery, JWS, CA pin, TLS bootstrap); the PowerShell
effects are modelled by nodeboot_lab.windows_node."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml

from labkit import summary


def win_args(lab, host: dict) -> list[str]:
    return ["--os", "windows", "--user", "Administrator", "--password-env", lab.env["winrm_password_env"],
            "--winrm-ca", lab.env["winrm_ca"]]


def node(lab, name: str):
    from nodeboot.cluster import nodes

    return nodes.read_node(lab.cluster(), name)


@pytest.fixture(scope="module")
def win_hosts(lab) -> list[dict]:
    return lab.reserve(2, "windows")


def test_join_by_host_argument_is_ready_as_windows_then_a_noop_then_reset(lab, win_hosts) -> None:
    host = win_hosts[0]
    proc, events = lab.nodeboot_json("join", *win_args(lab, host), "--node-name", host["name"], host["address"])
    assert proc.returncode == 0, proc.stderr
    phases = {e["phase"]: e["status"] for e in events if e.get("event") == "phase" and e["status"] != "start"}
    assert phases["prepare"] == "changed" and phases["kubeadm-join"] == "changed"  # with the reboot in between
    n = node(lab, host["name"])
    assert n.metadata.labels["kubernetes.io/os"] == "windows"
    assert any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
    # Without --cni no kube-proxy flavour is guessed (as the Ansible engine): only Linux DaemonSets are pinned.
    # With --output json the notice is an event (docs/output.md), not stderr text.
    notices = [e.get("message", "") for e in events if e.get("event") in ("message", "warning")]
    assert any("no --cni: Linux DaemonSets pinned to Linux only" in m for m in notices), notices
    linux_ds = lab.cluster().apps.read_namespaced_daemon_set("kube-proxy", "kube-system")
    assert linux_ds.spec.template.spec.node_selector["kubernetes.io/os"] == "linux"
    assert summary(events)["tokens_left"] == []

    proc, events = lab.nodeboot_json("join", *win_args(lab, host), "--node-name", host["name"], host["address"])
    assert proc.returncode == 0, proc.stderr
    statuses = [e["status"] for e in events if e.get("event") == "phase" and e["status"] != "start"]
    assert "changed" not in statuses
    row = summary(events)["hosts"][0]
    assert row["execs"] == 1 and summary(events)["tokens_created"] == 0  # facts.ps1 only

    inv = lab.inventory([host], "win-reset", host_vars={host["name"]: {"nodeboot_node_name": host["name"]}})
    proc = lab.nodeboot("reset", "-i", str(inv), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert node(lab, host["name"]) is None
    kubelet_dir = Path(lab.env["state_dir"]) / "hosts" / host["name"] / "fs" / "var_lib_kubelet"
    assert not any(kubelet_dir.iterdir())
    proc, events = lab.nodeboot_json("reset", "-i", str(inv), "--yes")
    assert proc.returncode == 0 and summary(events)["hosts"][0]["result"] == "ok"  # nothing left to do


def test_join_by_inventory_with_taint_and_winrm_requests_per_command(lab, win_hosts, tmp_path) -> None:
    host = win_hosts[1]
    inv = lab.inventory([host], "win-join", host_vars={host["name"]: {"nodeboot_taints": ["os=windows:NoSchedule"]}})
    proc, events = lab.nodeboot_json("join", "-i", str(inv), "--cni", "flannel", "--log-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for path in [p for p in tmp_path.glob("**/*") if p.is_file()]:  # the transcripts hold no token secret
        assert not re.search(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b", path.read_text(errors="replace")), path
    n = node(lab, host["name"])
    assert n.metadata.labels["kubernetes.io/os"] == "windows"
    assert [(t.key, t.value, t.effect) for t in n.spec.taints] == [("os", "windows", "NoSchedule")]
    cm = lab.cluster().core.read_namespaced_config_map("kube-flannel-cfg", "kube-flannel")
    backend = json.loads(cm.data["net-conf.json"])["Backend"]
    assert backend == {"Type": "vxlan", "VNI": 4096, "Port": 4789}
    ds = lab.cluster().apps.read_namespaced_daemon_set("kube-proxy-windows", "kube-system")
    pod = ds.spec.template.spec
    assert pod.security_context.windows_options.host_process and pod.host_network
    assert pod.security_context.windows_options.run_as_user_name == "NT AUTHORITY\\system"
    assert pod.node_selector == {"kubernetes.io/os": "windows"}
    assert lab.cluster().version[2].split("+")[0] in pod.containers[0].image and "flannel" in pod.containers[0].image
    binding = lab.cluster().rbac.read_cluster_role_binding("nodeboot-flannel-windows")  # Windows flannel's RBAC
    assert (binding.subjects[0].namespace, binding.subjects[0].name) == ("kube-flannel", "flannel")
    execs = summary(events)["hosts"][0]["execs"]
    # The lab endpoint writes what it counted when it stops: stop this host's endpoint.
    model_dir = Path(lab.env["state_dir"]) / "hosts" / host["name"] / "model"
    pid = json.loads((model_dir / "winrm-server.json").read_text())["pid"]
    os.kill(pid, signal.SIGTERM)
    counters = model_dir / "winrm-counters.json"
    for _ in range(100):
        if counters.exists():
            break
        time.sleep(0.1)
    data = json.loads(counters.read_text())
    per_command = sorted(data["per_command"].values())
    figures = {"scripts": execs, "commands_seen": len(per_command), "http_requests": data["http_requests"],
               "per_command_min": per_command[0], "per_command_max": per_command[-1],
               "actions": data["actions"]}
    print("WINRM-FIGURES", json.dumps(figures))
    assert len(per_command) == execs  # the reboot's reconnect opened a new shell; every script is one command
    assert data["actions"]["Create"] <= 2  # one shell, plus one after the reboot
    assert per_command[-1] <= 4  # Command, Send, Receive (another Receive only for slow scripts)


def test_gmsa_generate_install_apply(lab, win_hosts, tmp_path) -> None:
    host = win_hosts[0]
    proc = lab.nodeboot("gmsa", "generate", "--host", host["address"], "--account", "WebApp1",
                        "--user", "Administrator", "--password-env", lab.env["winrm_password_env"],
                        "--winrm-ca", lab.env["winrm_ca"])
    assert proc.returncode == 0, proc.stderr
    spec_file = tmp_path / "webapp1.json"
    spec_file.write_text(proc.stdout)
    proc = lab.nodeboot("gmsa", "install")
    assert proc.returncode == 0, proc.stderr
    assert "windows-gmsa" in proc.stderr and "https://github.com/kubernetes-sigs/windows-gmsa" in proc.stderr
    proc = lab.nodeboot("gmsa", "apply", "--credspec", str(spec_file), "--name", "webapp1",
                        "--service-account", "default/webapp")
    assert proc.returncode == 0, proc.stderr
    from kubernetes import client

    cluster = lab.cluster()
    client.ApiextensionsV1Api(cluster.api).read_custom_resource_definition("gmsacredentialspecs.windows.k8s.io")
    obj = client.CustomObjectsApi(cluster.api).get_cluster_custom_object("windows.k8s.io", "v1",
                                                                         "gmsacredentialspecs", "webapp1")
    assert obj["credspec"]["CmsPlugins"] == ["ActiveDirectory"]
    role = cluster.rbac.read_cluster_role("gmsa-use-webapp1")
    assert role.rules[0].verbs == ["use"] and role.rules[0].resource_names == ["webapp1"]
    binding = cluster.rbac.read_namespaced_role_binding("gmsa-use-webapp1-webapp", "default")
    assert binding.subjects[0].name == "webapp" and binding.role_ref.name == "gmsa-use-webapp1"
    again = lab.nodeboot("gmsa", "apply", "--credspec", str(spec_file), "--name", "webapp1",
                         "--service-account", "default/webapp")
    assert again.returncode == 0 and again.stdout.strip() == "nothing to change"

    bad = json.loads(spec_file.read_text())
    bad["DomainJoinConfig"]["Guid"] = "not-a-guid"
    spec_file.write_text(json.dumps(bad))
    proc = lab.nodeboot("gmsa", "apply", "--credspec", str(spec_file), "--name", "webapp1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "DomainJoinConfig.Guid" in proc.stderr
    assert str(spec_file) in proc.stderr


def test_run_as_patches_a_deployment_the_api_server_accepts(lab) -> None:
    apps = lab.cluster().apps
    body = yaml.safe_load("""
metadata: {name: iis, namespace: default}
spec:
  selector: {matchLabels: {app: iis}}
  template:
    metadata: {labels: {app: iis}}
    spec:
      nodeSelector: {kubernetes.io/os: windows}
      containers: [{name: iis, image: mcr.microsoft.com/windows/servercore/iis}]
""")
    apps.create_namespaced_deployment("default", body)
    proc = lab.nodeboot("windows", "run-as", "deployment/iis", "--user", "CONTOSO\\webapp1$", "--gmsa", "webapp1")
    assert proc.returncode == 0, proc.stderr
    opts = apps.read_namespaced_deployment("iis", "default").spec.template.spec.security_context.windows_options
    assert opts.run_as_user_name == "CONTOSO\\webapp1$" and opts.gmsa_credential_spec_name == "webapp1"
    proc = lab.nodeboot("windows", "run-as", "deployment/iis", "--user", "A\\B\\C")
    assert proc.returncode == 2 and "--user" in proc.stderr and "Traceback" not in proc.stderr


def test_two_windows_hosts_in_one_run_reconcile_the_cluster_side_once(lab, tmp_path) -> None:
    hosts = lab.reserve(2, "windows")
    inv = lab.inventory(hosts, "win-pair")
    proc, events = lab.nodeboot_json("join", "-i", str(inv), "--cni", "flannel")
    assert proc.returncode == 0, proc.stderr
    details = [e["detail"] for e in events if e.get("event") == "phase" and e.get("phase") == "windows-cluster"
               and e["status"] != "start"]
    assert len(details) == 2 and all(d.startswith("reconciled once for this run") for d in details), details
    # The run wrote each object at most once, before the hosts fanned out: one generation, one writer.
    ds = lab.cluster().apps.read_namespaced_daemon_set("kube-proxy-windows", "kube-system")
    assert ds.metadata.generation == 1
    assert proc.stderr.count("windows-cluster: created DaemonSet kube-system/kube-proxy-windows") <= 1
    for host in hosts:
        assert node(lab, host["name"]).metadata.labels["kubernetes.io/os"] == "windows"


def test_a_live_flannel_vni_is_not_changed_under_running_pods(lab) -> None:
    from kubernetes import client

    cluster = lab.cluster()
    core, apps = cluster.core, cluster.apps
    try:
        core.create_namespace({"metadata": {"name": "kube-flannel"}})
    except client.ApiException as exc:
        assert exc.status == 409
    original = None
    with contextlib.suppress(client.ApiException):
        original = core.read_namespaced_config_map("kube-flannel-cfg", "kube-flannel").data
    live = {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}  # flannel's defaults: VNI 1, port 8472
    body = {"metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
            "data": {"net-conf.json": json.dumps(live)}}
    if original is None:
        core.create_namespaced_config_map("kube-flannel", body)
    else:
        core.replace_namespaced_config_map("kube-flannel-cfg", "kube-flannel", body)
    ds = yaml.safe_load("""
metadata: {name: kube-flannel-ds, namespace: kube-flannel}
spec:
  selector: {matchLabels: {app: flannel}}
  template:
    metadata: {labels: {app: flannel}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers: [{name: kube-flannel, image: ghcr.io/flannel-io/flannel:v0.26.7}]
""")
    apps.create_namespaced_daemon_set("kube-flannel", ds)
    try:
        proc = lab.nodeboot("node", "windows-cluster", "--cni", "flannel")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        line = proc.stderr.strip().splitlines()[-1]
        assert "VNI 1, port 8472" in line and "rollout restart daemonset/kube-flannel-ds" in line, line
        now = json.loads(core.read_namespaced_config_map("kube-flannel-cfg", "kube-flannel").data["net-conf.json"])
        assert now == live  # untouched
    finally:
        apps.delete_namespaced_daemon_set("kube-flannel-ds", "kube-flannel")
    proc = lab.nodeboot("node", "windows-cluster", "--cni", "flannel")  # no Linux flannel running: it is set
    assert proc.returncode == 0, proc.stderr
    now = json.loads(core.read_namespaced_config_map("kube-flannel-cfg", "kube-flannel").data["net-conf.json"])
    assert now["Backend"] == {"Type": "vxlan", "VNI": 4096, "Port": 4789}
