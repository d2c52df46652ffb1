"""Golden tests of what each phase sends a host (as pyinfra tests its operations).

Each scenario runs a real workflow (steps/linux.py, steps/windows.py, and proxy
set-mode's node phases) through run_workflow for given facts and options, against
a transport that records the scripts it is handed and answers with canned JSON
results, and a cluster that answers only what the workflows ask (cluster-info
signed, the Node after a join, a drain of no pods, a kube-proxy pod).
What it records - every phase's outcome, which scripts share a round trip, and
each script's name, NB_* variables and secret variables (the JoinConfiguration,
with a fixed fake token and CA hash) - is compared with
tests/unit/golden/<scenario>.yaml; a difference fails with a unified diff.

An intended change of inputs: regenerate with
    NODEBOOT_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/unit/test_golden_inputs.py
and review the diff of tests/unit/golden/ before committing it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from nodeboot import node_install, proxy_cmd
from nodeboot.cluster.tokens import BootstrapToken
from nodeboot.inventory import Host
from nodeboot.redact import Redactor
from nodeboot.scripts import SCRIPTS_DIR, script_text
from nodeboot.steps import base, linux, windows
from nodeboot.steps.base import HostContext, Phase, RunOptions, run_workflow
from nodeboot.transport import ExecResult, ScriptCall, TransportStats, run_one_by_one
from nodeboot.validate import Taint

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("NODEBOOT_UPDATE_GOLDEN") == "1"

# Fixed stand-ins for what a real run makes fresh: the bootstrap token and the CA pin.
TOKEN_ID, TOKEN_SECRET = "abcdef", "0123456789abcdef"
TOKEN = f"{TOKEN_ID}.{TOKEN_SECRET}"
CA_HASH = "sha256:" + "ab" * 32
ENDPOINT = "10.0.0.1:6443"
RUN_ID = "golden-run"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBgolden\n-----END CERTIFICATE-----\n"
WINDOWS_FILES = SCRIPTS_DIR / "windows" / "files"
REBOOT_WAIT = "wait_for_reboot"  # recorded where the workflow waits for the host to restart


# -- the fakes: a recording transport, a token ledger, a cluster and a node watcher --

def ready_node(host: Host) -> client.V1Node:
    """The Node a successful join leaves: Ready, with the host's labels and taints."""
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=host.node_name, labels=dict(host.labels)),
        spec=client.V1NodeSpec(taints=[client.V1Taint(key=t.key, value=t.value, effect=t.effect)
                                       for t in host.taints] or None, unschedulable=False),
        status=client.V1NodeStatus(conditions=[client.V1NodeCondition(type="Ready", status="True")]),
    )


class FakeCore:
    """The CoreV1 calls the workflows make: cluster-info (already signed for the token), a Node
    (there once a join script succeeded, or from the start for a reset), and a drain of no pods."""

    def __init__(self) -> None:
        self.nodes: dict[str, client.V1Node] = {}

    def read_namespaced_config_map(self, name: str, namespace: str) -> client.V1ConfigMap:
        assert (name, namespace) == ("cluster-info", "kube-public")
        return client.V1ConfigMap(data={f"jws-kubeconfig-{TOKEN_ID}": "signed"},
                                  metadata=client.V1ObjectMeta(resource_version="1"))

    def read_node(self, name: str) -> client.V1Node:
        if name not in self.nodes:
            raise client.ApiException(status=404, reason="Not Found")
        return self.nodes[name]

    # What a drain and a delete of a Node without pods ask.
    def list_pod_for_all_namespaces(self, field_selector: str) -> client.V1PodList:
        return client.V1PodList(items=[])

    def patch_node(self, name: str, body: dict[str, Any]) -> client.V1Node:
        node = self.read_node(name)
        node.spec.unschedulable = body["spec"]["unschedulable"]
        return node

    def delete_node(self, name: str) -> None:
        self.read_node(name)
        del self.nodes[name]

    # proxy set-mode's plan names the node's kube-proxy pod.
    def list_namespaced_pod(self, namespace: str, label_selector: str, field_selector: str) -> client.V1PodList:
        assert namespace == "kube-system" and field_selector.startswith("spec.nodeName=")
        return client.V1PodList(items=[client.V1Pod(metadata=client.V1ObjectMeta(name="kube-proxy-golden"))])


@dataclass
class FakeCluster:
    core: FakeCore = field(default_factory=FakeCore)


@dataclass
class FakeWatcher:
    cluster: FakeCluster

    def get(self, name: str) -> client.V1Node | None:
        return self.cluster.core.nodes.get(name)

    listed = get

    def wait_ready(self, name: str, timeout: float, cancelled: threading.Event) -> None:
        assert name in self.cluster.core.nodes, f"wait-ready ran before {name} joined"


@dataclass
class FakeTokens:
    created: list[BootstrapToken] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def create(self, node: str) -> BootstrapToken:
        token = BootstrapToken(TOKEN_ID, TOKEN_SECRET, node, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        self.created.append(token)
        return token

    def delete(self, token: BootstrapToken) -> None:
        self.deleted.append(token.token_id)


def script_names(os_name: str) -> dict[str, str]:
    """The text nodeboot sends for each host script of an OS, mapped back to the script's name."""
    return {script_text(os_name, p.name): p.name for p in sorted((SCRIPTS_DIR / os_name).iterdir()) if p.is_file()}


@dataclass
class Sent:
    name: str
    variables: dict[str, str]
    secret_variables: dict[str, str]
    script: str = field(repr=False)


class RecordingTransport:
    """Records every script it is handed; answers each with `answers[name]` (a script's JSON result)."""

    name = "recording"

    def __init__(self, host: Host, cluster: FakeCluster, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.host, self.cluster, self.answers = host, cluster, answers
        self.names = script_names(host.os)
        self.sent: list[Sent] = []
        self.round_trips: list[list[str]] = []  # the script names each round trip carried
        self._batch: list[str] | None = None
        self.stats = TransportStats()

    def connect(self) -> None:
        self.stats.connects += 1

    def run_script(self, script: str, variables: dict[str, str], secret_variables: dict[str, str] | None = None,
                   timeout: float | None = None) -> ExecResult:
        result = self._answer(script, variables, secret_variables)
        if self._batch is not None:
            self._batch.append(self.sent[-1].name)
        else:
            self.stats.execs += 1
            self.round_trips.append([self.sent[-1].name])
        return result

    def run_batch(self, calls: list[ScriptCall], timeout: float | None = None) -> list[ExecResult | None]:
        """One round trip, as over SSH: each script runs only if the one before it succeeded."""
        self._batch = []
        try:
            return run_one_by_one(self, calls, timeout)
        finally:
            self.stats.execs += 1
            self.round_trips.append(self._batch)
            self._batch = None

    def _answer(self, script: str, variables: dict[str, str], secrets: dict[str, str] | None) -> ExecResult:
        name = self.names.get(script)
        assert name is not None, "a script that is not one of scripts/<os>/* as nodeboot sends it"
        self.sent.append(Sent(name, dict(variables), dict(secrets or {}), script))
        queue = self.answers.get(name) or [{}]
        answer = {"ok": True, "changed": True, "facts": {}, **(queue.pop(0) if len(queue) > 1 else queue[0])}
        if name in ("join.sh", "join.ps1") and answer["ok"] and variables.get("NB_DRY_RUN") != "1":
            self.cluster.core.nodes[self.host.node_name] = ready_node(self.host)
        return ExecResult(0 if answer["ok"] else 1, json.dumps(answer) + "\n", "")

    def put_file(self, data: bytes, remote_path: str, mode: int = 0o644) -> bool:
        raise AssertionError("no phase uploads files")

    def wait_for_reboot(self, timeout: float) -> None:
        assert self.sent and self.sent[-1].name == "reboot.ps1", "waited for a reboot nobody asked for"
        self.sent.append(Sent(REBOOT_WAIT, {}, {}, ""))

    def close(self) -> None:
        pass


# -- scenarios --

@dataclass
class Scenario:
    name: str
    host: Host
    phases: Callable[[], list[Phase]]
    facts: dict[str, Any]  # what facts.sh / facts.ps1 answers
    options: dict[str, Any] = field(default_factory=dict)  # RunOptions fields
    server_version: str = "v1.37.2"
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # results, in turn (the last repeats)
    windows_cluster: tuple[str, ...] | None = None  # what the run's one reconcile of the Windows side changed
    reported: dict[str, Any] = field(default_factory=dict)  # what phases report besides outcomes (proxy plans)
    registered: bool = False  # the host's Node exists before the run


def linux_host(**kw: Any) -> Host:
    defaults: dict[str, Any] = dict(name="web-1", address="192.0.2.11", node_name="web-1")
    return Host(**{**defaults, **kw})


def windows_host(**kw: Any) -> Host:
    defaults: dict[str, Any] = dict(name="win-1", address="192.0.2.21", os="windows", connection="winrm",
                                    node_name="win-1")
    return Host(**{**defaults, **kw})


LINUX_READY = {  # a host with its node parts, not joined, nothing for IPVS yet
    "hostname": "web-1", "arch": "x86_64", "kernel": "6.1.0-28-amd64", "swap_on": False, "ip_forward": "1",
    "ipv6_forward": "1", "bridge_nf_call_iptables": "1", "cri_socket": True, "cri_check": "crictl",
    "cri_answered": True, "runc": True, "cni_plugins": list(node_install.CNI_CORE_PLUGINS),
    "kubelet_version": "v1.37.2", "kubeadm_version": "v1.37.2", "joined": False, "kubelet_configured": False,
    "tools": ["iptables"], "modules_loaded": ["nf_conntrack"], "modules_file": False,
}
LINUX_BARE = {**LINUX_READY, "cri_socket": False, "cri_check": "socket", "cri_answered": False, "runc": False,
              "cni_plugins": [], "kubelet_version": "", "kubeadm_version": "", "swap_on": True}
LINUX_JOINED = {**LINUX_READY, "joined": True, "kubelet_configured": True, "cni_leftovers": True}  # as facts.sh says it
# A joined host asked for brief facts (a join's re-run): all facts.sh says then.
LINUX_JOINED_BRIEF = {"hostname": "web-1", "arch": "x86_64", "kernel": "6.1.0-28-amd64", "joined": True,
                      "kubelet_configured": True, "brief": True, "lock": ""}

WINDOWS_BARE = {  # Windows Server 2022 with the Containers feature available, nothing of Kubernetes yet
    "hostname": "WIN-GOLDEN", "os_build": 20348, "os_caption": "Microsoft Windows Server 2022 Datacenter",
    "containers_feature": "Available", "reboot_pending": False, "services": {}, "joined": False,
    "kubelet_configured": False, "kubelet_version": "", "kubeadm_version": "",
}
WINDOWS_JOINED = {**WINDOWS_BARE, "containers_feature": "Installed", "joined": True, "kubelet_configured": True,
                  "services": {"kubelet": {"status": "Running"}, "containerd": {"status": "Running"}}}
WINDOWS_CLUSTER_DONE = ("kube-proxy-windows DaemonSet created",)

INSTALL = node_install.InstallSettings(
    enabled=True, artifacts_url="https://mirror.example/k8s", artifacts_ca=CA_PEM, disable_swap=True,
    registry_mirrors=(("registry.k8s.io", "https://mirror.example:5000"),), registry_ca=CA_PEM)

# A host that asks for everything a JoinConfiguration can carry.
WEB = dict(labels={"tier": "web"}, taints=[Taint("dedicated", "web", "NoSchedule")],
           node_ips=["10.0.0.11", "fd00::11"], kubelet_extra_args={"max-pods": "60"},
           ignore_preflight_errors=["SystemVerification"], kubelet_config={"maxPods": 60})


class ProxyCleanupAfterSwitch(Phase):
    """proxy set-mode's cleanup of the old mode on a node that now runs the new one (cleanup_node)."""

    name, title = "proxy-cleanup-old", "clean what the old mode left"

    def __init__(self, old: str, now: str) -> None:
        self.old, self.now = old, now

    def run(self, ctx: HostContext) -> bool:
        return proxy_cmd.cleanup_node(ctx, self.old, self.now).changed


PROXY_PLANS: dict[str, Any] = {}


def proxy_set_mode_phases() -> list[Phase]:
    """What `nodeboot proxy set-mode ipvs` sends a node: the plan (prerequisites in NB_DRY_RUN
    mode, then the preflight), and, after the switch, the cleanup of the old iptables rules."""
    return [linux.Facts(), proxy_cmd.PlanNode("ipvs", PROXY_PLANS), ProxyCleanupAfterSwitch("iptables", "ipvs")]


# What each Linux script's dry-run mode answers (install.sh's lines are what it prints for INSTALL).
# proxy-prereqs.sh and proxy-cleanup.sh record an action as done ("load modules ...") and say
# "would" only in their log line; the others record "would ..." themselves.
DRY_RUN_ANSWERS: dict[str, list[dict[str, Any]]] = {
    "install.sh": [{"facts": {"actions": [
        "would install kubelet v1.37.2 from https://mirror.example/k8s/release/v1.37.2/bin/linux/amd64/kubelet",
        "would install kubeadm v1.37.2 from https://mirror.example/k8s/release/v1.37.2/bin/linux/amd64/kubeadm",
        "would install containerd 2.3.7 from https://mirror.example/k8s/containerd/releases/download/v2.3.7/"
        "containerd-2.3.7-linux-amd64.tar.gz",
        "would install cni 1.10.0 from https://mirror.example/k8s/containernetworking/plugins/releases/download/"
        "v1.10.0/cni-plugins-linux-amd64-v1.10.0.tgz",
        "would install runc 1.5.3 from https://mirror.example/k8s/opencontainers/runc/releases/download/v1.5.3/"
        "runc.amd64",
        "would pull registry.k8s.io images through https://mirror.example:5000",
        "would turn swap off and keep it off"]}}],
    "proxy-prereqs.sh": [{"facts": {"actions": ["load modules ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh nf_conntrack",
                                                "write /etc/modules-load.d/nodeboot-ipvs.conf"]}}],
    "join.sh": [{"facts": {"joined": False, "actions": [
        "would write /etc/kubernetes/patches/kubeletconfiguration+merge.yaml",
        "would run kubeadm join (not installed yet) with the JoinConfiguration in a 0600 file under /run/nodeboot "
        "(removed afterwards; a failed join is undone with kubeadm reset -f)"]}}],
    "reset.sh": [{"facts": {"was_joined": True, "actions": [
        "would run kubeadm reset -f", "would remove /etc/cni/net.d/10-flannel.conflist", "would remove link cni0",
        "would remove iptables filter chains: FLANNEL-FWD"]}}],
    "proxy-cleanup.sh": [{"changed": False, "facts": {"actions": []}}],  # no kube-proxy rules on this host
}

SCENARIOS = [
    Scenario("linux-join", linux_host(**WEB, proxy_mode="ipvs"), linux.join_phases, LINUX_READY),
    # join.sh fails and echoes the token: the operator sees it masked, and the token is deleted.
    Scenario("linux-join-fails", linux_host(), linux.join_phases, LINUX_READY,
             answers={"join.sh": [{"ok": False, "changed": False,
                                   "error": f"kubeadm join: token {TOKEN} rejected by {ENDPOINT}"}]}),
    Scenario("linux-join-install", linux_host(install=INSTALL), linux.join_phases, LINUX_BARE,
             options={"proxy_mode": "nftables", "install_packages": True, "discovery_timeout": "2m0s"}),
    Scenario("linux-join-kubeadm-1.30", linux_host(), linux.join_phases,
             {**LINUX_READY, "kubelet_version": "v1.30.4", "kubeadm_version": "v1.30.4"},
             server_version="v1.33.1"),
    # The scripts with a dry-run mode get NB_DRY_RUN=1, in one round trip; their would-lines (as each
    # script words them) become the phases' details.
    Scenario("linux-join-dry-run", linux_host(install=INSTALL, proxy_mode="ipvs", kubelet_config={"maxPods": 60}),
             linux.join_phases, LINUX_BARE, options={"dry_run": True}, answers=DRY_RUN_ANSWERS),
    # A re-run: the host is joined and its Node there; it answers briefly and is sent nothing else.
    Scenario("linux-join-rerun", linux_host(**WEB), linux.join_phases, LINUX_JOINED_BRIEF, registered=True),
    Scenario("linux-reset", linux_host(), linux.reset_phases, LINUX_JOINED, registered=True),
    Scenario("linux-reset-dry-run", linux_host(), linux.reset_phases, LINUX_JOINED, registered=True,
             options={"dry_run": True}, answers=DRY_RUN_ANSWERS),
    # --keep-modules-file, on a host whose Node was deleted already.
    Scenario("linux-reset-keep-modules-file", linux_host(), linux.reset_phases, LINUX_JOINED,
             options={"remove_modules_file": False}),
    Scenario("linux-proxy-prereqs-ipvs", linux_host(), linux.proxy_prereq_phases, LINUX_JOINED,
             options={"proxy_mode": "ipvs"}),
    Scenario("linux-proxy-set-mode-ipvs", linux_host(), proxy_set_mode_phases, LINUX_JOINED,
             answers={"proxy-prereqs.sh": [{"changed": True, "facts": {"actions": [
                          "would load ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh",
                          "would write /etc/modules-load.d/nodeboot-ipvs.conf"]}}],
                      "proxy-preflight.sh": [{"changed": False, "facts": {
                          "kernel": "6.1.0-28-amd64", "problems": ["module ip_vs is not loaded"]}}]},
             reported=PROXY_PLANS),
    Scenario("windows-join", windows_host(**{k: v for k, v in WEB.items() if k not in ("node_ips", "kubelet_config")},
                                          vars={"nodeboot_windows_sha256": {"kubelet.exe": "cd" * 32}}),
             windows.join_phases, WINDOWS_BARE,
             options={"artifacts_url": "https://mirror.example/win", "cni": "flannel"},
             answers={"prepare.ps1": [{"facts": {"reboot_required": False}}],
                      "kubelet.ps1": [{"facts": {"kubelet_version": "v1.37.2", "kubeadm_version": "v1.37.2"}}]},
             windows_cluster=WINDOWS_CLUSTER_DONE),
    # The Containers feature needs a restart: reboot.ps1, the wait, and the facts again.
    Scenario("windows-join-reboot", windows_host(), windows.join_phases, WINDOWS_BARE,
             options={"artifacts_url": "https://mirror.example/win"},
             answers={"facts.ps1": [{"changed": False, "facts": WINDOWS_BARE},
                                    {"changed": False, "facts": {**WINDOWS_BARE, "containers_feature": "Installed"}}],
                      "prepare.ps1": [{"facts": {"reboot_required": True}}]},
             windows_cluster=WINDOWS_CLUSTER_DONE),
    # windows-cluster is skipped: its dry run asks the cluster's DaemonSets, which this fake does not hold.
    Scenario("windows-join-dry-run", windows_host(), windows.join_phases, WINDOWS_BARE,
             options={"dry_run": True, "skip_phases": frozenset({"windows-cluster"}),
                      "artifacts_url": "https://mirror.example/win"}),
    Scenario("windows-reset", windows_host(vars={"nodeboot_windows_hns_networks": ["extra-net"]}),
             windows.reset_phases, WINDOWS_JOINED, registered=True),
]


@dataclass
class Run:
    scenario: Scenario
    ctx: HostContext
    transport: RecordingTransport
    tokens: FakeTokens
    events: list[dict[str, Any]]
    outcomes: list[tuple[str, str, str]]
    error: str | None


def make_context(scenario: Scenario, transport: RecordingTransport, cluster: FakeCluster, tokens: FakeTokens,
                 events: list[dict[str, Any]]) -> HostContext:
    """The one place that knows how a run hands a host its options and the cluster-side facts."""
    major, minor = (int(p) for p in scenario.server_version.lstrip("v").split(".")[:2])
    common: dict[str, Any] = dict(host=scenario.host, transport=transport, cluster=cluster,
                                  watcher=FakeWatcher(cluster), tokens=tokens, redactor=Redactor(),
                                  cancelled=threading.Event(),
                                  emit=lambda kind, **f: events.append({"event": kind, **f}))
    once = None if scenario.windows_cluster is None else base.WindowsClusterOnce(changes=scenario.windows_cluster)
    run = base.ClusterFacts(server_minor=(major, minor), server_version=scenario.server_version, endpoint=ENDPOINT,
                            ca_hashes=(CA_HASH,), windows_cluster=once)
    return HostContext(**common, options=RunOptions(**{"run_id": RUN_ID, **scenario.options}), run=run)


def run_scenario(scenario: Scenario) -> Run:
    cluster, tokens, events = FakeCluster(), FakeTokens(), list[dict[str, Any]]()
    facts = [{"changed": False, "facts": scenario.facts}]
    answers = {"facts.sh": facts, "facts.ps1": facts, **{k: list(v) for k, v in scenario.answers.items()}}
    transport = RecordingTransport(scenario.host, cluster, answers)
    if scenario.registered:
        cluster.core.nodes[scenario.host.node_name] = ready_node(scenario.host)
    ctx = make_context(scenario, transport, cluster, tokens, events)
    result = run_workflow(scenario.phases(), ctx)
    outcomes = [(o.phase, str(getattr(o.status, "value", o.status)), o.detail) for o in result.outcomes]
    # As the runner reports it: the error through the run's redactor.
    error = ctx.redactor.redact(str(result.error)) if result.error else None
    return Run(scenario, ctx, transport, tokens, events, outcomes, error)


# -- the record --

def host_file_placeholders() -> dict[str, str]:
    return {p.read_text(): f"<content of scripts/windows/files/{p.name}>" for p in sorted(WINDOWS_FILES.iterdir())}


def shown_variables(variables: dict[str, str]) -> dict[str, str]:
    """Variables as recorded: files the node keeps are named, not copied, and install.sh's key
    (a digest that also covers install.sh's text) is checked against the inputs it sums up."""
    files = host_file_placeholders()
    shown = {k: files.get(v, v) for k, v in variables.items()}
    if "NB_INSTALL_KEY" in shown:
        assert shown["NB_INSTALL_KEY"] == node_install.install_key(
            {k: v for k, v in variables.items() if k not in ("NB_INSTALL_KEY", "NB_RUN_ID", "NB_DRY_RUN")})
        shown["NB_INSTALL_KEY"] = "<install_key of the NB_* inputs above and install.sh>"
    return shown


def record(run: Run) -> dict[str, Any]:
    calls = []
    for sent in run.transport.sent:
        if sent.name == REBOOT_WAIT:
            calls.append({"transport": REBOOT_WAIT})
            continue
        call: dict[str, Any] = {"script": sent.name, "variables": shown_variables(sent.variables)}
        if sent.secret_variables:
            call["secret_variables"] = sent.secret_variables
        calls.append(call)
    return {
        "scenario": run.scenario.name,
        "outcomes": [f"{phase}: {status}" + (f" ({detail})" if detail else "")
                     for phase, status, detail in run.outcomes],
        "error": run.error,
        **({"reported": run.scenario.reported} if run.scenario.reported else {}),
        "round_trips": [", ".join(trip) for trip in run.transport.round_trips],
        "calls": calls,
    }


class GoldenDumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # multi-line inputs (YAML, PEM, lists) read as they are sent
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


GoldenDumper.add_representer(str, _str)


def dump(data: dict[str, Any]) -> str:
    header = ("# Generated by tests/unit/test_golden_inputs.py: what nodeboot sends the host in this scenario.\n"
              "# Regenerate with NODEBOOT_UPDATE_GOLDEN=1 and review the diff.\n")
    return header + yaml.dump(data, Dumper=GoldenDumper, sort_keys=False, allow_unicode=True, width=10_000)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / f"{name}.yaml"
    if UPDATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run with NODEBOOT_UPDATE_GOLDEN=1 to create it")
    want = path.read_text()
    if want != text:
        diff = "".join(difflib.unified_diff(want.splitlines(keepends=True), text.splitlines(keepends=True),
                                            f"golden/{path.name}", "this run"))
        pytest.fail(f"the inputs sent in {name} changed (if intended: NODEBOOT_UPDATE_GOLDEN=1, then review):\n"
                    f"{diff}", pytrace=False)


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    yield {s.name: run_scenario(s) for s in SCENARIOS}


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_inputs_match_the_golden_file(runs: dict[str, Run], name: str) -> None:
    check_golden(name, dump(record(runs[name])))


def test_every_golden_file_belongs_to_a_scenario() -> None:
    names = {s.name for s in SCENARIOS}
    stale = sorted(p.name for p in GOLDEN_DIR.glob("*.yaml") if p.stem not in names)
    assert not stale, f"golden files without a scenario (remove them): {stale}"


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_secrets_stay_out_of_plain_inputs_and_events(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    secrets = {TOKEN, TOKEN_SECRET} | {v for s in run.transport.sent for v in s.secret_variables.values()}
    for sent in run.transport.sent:
        for key, value in sent.variables.items():
            leaked = [s for s in secrets if s in value]
            assert not leaked, f"{sent.name}: plain variable {key} carries a secret"
        assert not any(s in sent.script for s in secrets), f"{sent.name}: the script text carries a secret"
    for event in run.events:  # as the output shows them: each text field through the run's redactor
        shown = {k: run.ctx.redactor.redact(v) if isinstance(v, str) else v for k, v in event.items()}
        assert not any(s in json.dumps(shown, default=str) for s in secrets), f"an event shows a secret: {shown}"
    for phase, _, detail in run.outcomes:
        assert not any(s in detail for s in secrets), f"{phase}: its outcome shows a secret"
    assert not any(s in (run.error or "") for s in secrets), "the error shows a secret"
    made = ({TOKEN, TOKEN_SECRET} if run.tokens.created else set()) | (secrets - {TOKEN, TOKEN_SECRET})
    for secret in made:  # from the moment a phase makes or sends a secret, logs and errors mask it
        assert secret not in run.ctx.redactor.redact(f"error: {secret} refused"), "a secret is not redacted"


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS if s.name.startswith(("linux-join", "windows-join"))
                                  and not s.options.get("dry_run") and not s.registered])
def test_a_join_sends_its_configuration_as_a_secret_and_deletes_its_token(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    joins = [s for s in run.transport.sent if s.name.startswith("join.")]
    assert len(joins) == 1, [s.name for s in run.transport.sent]
    assert "NB_JOIN_CONFIG" in joins[0].secret_variables, f"{joins[0].name}: the JoinConfiguration is not secret"
    assert all("NB_JOIN_CONFIG" not in s.variables for s in run.transport.sent)
    doc = yaml.safe_load(joins[0].secret_variables["NB_JOIN_CONFIG"])
    assert doc["discovery"]["bootstrapToken"]["token"] == TOKEN
    assert doc["discovery"]["bootstrapToken"]["caCertHashes"] == [CA_HASH]
    assert run.tokens.deleted == [TOKEN_ID], "the token outlived the join"
    assert (run.error is not None) == name.endswith("-fails"), run.error


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS if s.options.get("dry_run")])
def test_a_dry_run_changes_nothing(runs: dict[str, Run], name: str) -> None:
    # A dry run sends the facts script, and the scripts that have a dry-run mode only with NB_DRY_RUN=1;
    # no token is made, so no JoinConfiguration (nor any other secret) is sent.
    run = runs[name]
    for sent in run.transport.sent:
        assert sent.name.startswith("facts.") or sent.variables.get("NB_DRY_RUN") == "1", \
            f"a dry run sent {sent.name} without NB_DRY_RUN=1"
        assert not sent.secret_variables, f"a dry run sent {sent.name} a secret"
    assert not run.tokens.created and not run.tokens.deleted
    assert all(status in ("ok", "would-run", "skipped") for _, status, _ in run.outcomes), run.outcomes
