"""The native --dry-run (issue 16 part 4): a phase whose host script has a dry-run mode sends
it with NB_DRY_RUN=1 and reports the script's own would-lines; the other phases say what
they would do from the facts. The Linux scripts run for real, through nodeboot's shell loop
in a local bash (localshell.py), with stand-ins first on PATH that record every call, so a
test sees both what a dry run reports and that it changed nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localshell import LocalShell
from nodeboot.facts import parse_linux_facts
from nodeboot.inventory import Host
from nodeboot.redact import Redactor
from nodeboot.scripts import ScriptResult
from nodeboot.steps import linux
from nodeboot.steps.base import ClusterFacts, HostContext, Phase, RunOptions, run_workflow, would_lines
from nodeboot.transport import ScriptCall


class NoTokens:
    """A dry run makes no bootstrap token: any attempt fails the test."""

    def create(self, node: str):
        raise AssertionError(f"a dry run created a token for {node}")

    def delete(self, token) -> None:
        raise AssertionError("a dry run deleted a token")


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin directory first on PATH: kubeadm, ip, iptables-save/-restore, lsmod. Each logs its
    arguments to calls.log; the read-only ones answer as a node with flannel's leftovers would."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    tools = {
        "kubeadm": f'echo "kubeadm $*" >> {log}\n[ "$1" = version ] && echo v1.37.2\nexit 0\n',
        "ip": (f'echo "ip $*" >> {log}\n'
               'case "$*" in "link show cni0"|"-o link show") exit 0 ;; "link delete"*) exit 0 ;; esac\nexit 1\n'),
        "iptables-save": (f'echo "iptables-save $*" >> {log}\n'
                          'if [ "$2" = filter ]; then printf "%s\\n" "*filter" ":FORWARD ACCEPT [0:0]" '
                          '":CNI-FORWARD - [0:0]" "-A FORWARD -j CNI-FORWARD" "COMMIT"; fi\n'),
        "iptables-restore": f'echo "iptables-restore $*" >> {log}\ncat > /dev/null\n',
        "lsmod": "echo 'Module                  Size  Used by'\n",
        "modprobe": f'echo "modprobe $*" >> {log}\n',
    }
    for name, body in tools.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin")
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def context(host: Host, facts: dict, transport, events: list[dict], dry_run: bool = True) -> HostContext:
    return HostContext(host=host, transport=transport, cluster=None, watcher=None,  # type: ignore[arg-type]
                       tokens=NoTokens(), options=RunOptions(dry_run=dry_run, run_id="dry"),  # type: ignore[arg-type]
                       redactor=Redactor(), cancelled=threading.Event(),
                       emit=lambda kind, **f: events.append({"event": kind, **f}),
                       host_facts=parse_linux_facts(facts, host.name),
                       run=ClusterFacts(server_minor=(1, 37), server_version="v1.37.2", endpoint="10.0.0.1:6443"))


def no_node_files() -> None:
    # join.sh and reset.sh read these fixed paths; the lab leaves an empty /etc/kubernetes mount point.
    if any(Path("/etc/kubernetes", n).exists() for n in ("kubelet.conf", "bootstrap-kubelet.conf", "pki/ca.crt")):
        pytest.skip("this machine has a kubelet configuration in /etc/kubernetes")


def test_would_lines_say_would_once_whatever_the_script_recorded() -> None:
    result = ScriptResult(True, True, {"actions": ["load modules ip_vs ip_vs_rr", "would remove link cni0"]})
    assert would_lines(result) == "would load modules ip_vs ip_vs_rr; would remove link cni0"
    assert would_lines(ScriptResult(True, False, {})) == ""


def test_join_dry_run_reports_join_shs_would_lines_and_makes_no_token(standins: Path, tmp_path: Path) -> None:
    no_node_files()
    patches = Path("/etc/kubernetes/patches/kubeletconfiguration+merge.yaml")
    had_patch = patches.exists()
    events: list[dict] = []
    host = Host(name="web-1", address="127.0.0.1", kubelet_config={"maxPods": 60})
    transport = LocalShell()
    result = run_workflow([linux.KubeadmJoin()], context(host, {"joined": False, "kubeadm_version": "v1.37.2"},
                                                          transport, events))
    (outcome,) = result.outcomes
    assert (outcome.phase, outcome.status) == ("kubeadm-join", "would-run"), outcome
    parts = outcome.detail.split("; ")
    assert parts[0].startswith("would create a bootstrap token for web-1") and "kubeadm.k8s.io/v1beta4" in parts[0]
    assert "would write /etc/kubernetes/patches/kubeletconfiguration+merge.yaml" in parts
    assert any(p.startswith("would run kubeadm join v1.37.2 with the JoinConfiguration in a 0600 file") for p in parts)
    # kubeadm was asked its version only; nothing was written or joined; one round trip.
    assert calls(standins) == ["kubeadm version -o short"]
    assert patches.exists() == had_patch
    assert transport.stats.execs == 1
    sent = [e for e in events if e["event"] == "transcript"]
    assert [e["script"] for e in sent] == ["join.sh"]


def test_join_dry_run_on_a_host_without_kubeadm_yet_says_so(standins: Path) -> None:
    no_node_files()
    (standins.parent / "bin" / "kubeadm").unlink()  # the install phase, before this one, would put it there
    host = Host(name="web-1", address="127.0.0.1")
    result = run_workflow([linux.KubeadmJoin()], context(host, {"joined": False}, LocalShell(), []))
    detail = result.outcomes[0].detail
    assert result.error is None and "would run kubeadm join (not installed yet)" in detail, detail
    assert "patches" not in detail  # no kubelet configuration asked: no patch file


def test_reset_dry_run_sends_both_scripts_in_one_round_trip_and_changes_nothing(standins: Path) -> None:
    no_node_files()
    transport = LocalShell()
    result = run_workflow([linux.KubeadmReset(), linux.ProxyCleanup()],
                          context(Host(name="web-1", address="127.0.0.1"), {"cni_leftovers": True}, transport, []))
    reset = result.outcomes[0]
    assert (reset.phase, reset.status) == ("kubeadm-reset", "would-run"), reset
    assert "would remove link cni0" in reset.detail.split("; ")
    assert "would remove iptables filter chains: CNI-FORWARD" in reset.detail.split("; ")
    assert all(part.startswith("would ") for part in reset.detail.split("; "))
    assert result.outcomes[1].phase == "proxy-cleanup" and result.outcomes[1].status in ("ok", "would-run")
    assert transport.stats.execs == 1
    changed = [c for c in calls(standins) if c.split()[0] in ("kubeadm", "iptables-restore", "modprobe")
               or c.startswith("ip link delete")]
    assert changed == [], changed


class Scripted(Phase):
    """A phase whose dry-run script is given: it prints `result` as its JSON line."""

    dry_run_mode = True

    def __init__(self, name: str, result: str, status: int = 0) -> None:
        self.name, self.title, self.result, self.status = name, name, result, status

    def dry_run_script(self, ctx: HostContext) -> ScriptCall:
        assert ctx.options.dry_run
        return ScriptCall(f"echo '{self.result}'\nexit {self.status}\n", {"NB_DRY_RUN": "1"}, name=self.name)


class Controller(Phase):
    """A phase without a dry-run mode (cluster work): it says what it would do."""

    def __init__(self, name: str) -> None:
        self.name, self.title = name, name

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        assert result is None
        return f"would do {self.name} on the cluster"

    def run(self, ctx: HostContext) -> bool:
        raise AssertionError("a dry run ran a phase")


def dry(phases: list[Phase]) -> tuple[list[tuple[str, str, str]], LocalShell]:
    transport = LocalShell()
    result = run_workflow(phases, context(Host(name="h1", address="127.0.0.1"), {}, transport, []))
    return [(o.phase, str(o.status), o.detail) for o in result.outcomes], transport


def test_a_script_with_nothing_to_do_is_ok_and_a_controller_phase_says_what_it_would_do() -> None:
    outcomes, transport = dry([
        Scripted("a", '{"ok":true,"changed":true,"facts":{"actions":["write /etc/x"]}}'),
        Scripted("b", '{"ok":true,"changed":false,"facts":{"actions":[]}}'),
        Controller("c"),
        Scripted("d", '{"ok":true,"changed":true,"facts":{"actions":["would remove /var/y"]}}'),
    ])
    assert outcomes == [("a", "would-run", "would write /etc/x"), ("b", "ok", "dry run: nothing to change"),
                        ("c", "would-run", "would do c on the cluster"), ("d", "would-run", "would remove /var/y")]
    assert transport.stats.execs == 2  # [a b] | c on the controller | [d]


def test_a_dry_run_script_that_finds_the_phase_would_fail_fails_it() -> None:
    outcomes, _ = dry([
        Scripted("a", '{"ok":false,"changed":false,"error":"kube-proxy mode ipvs needs ipvsadm"}', status=1),
        Scripted("b", '{"ok":true,"changed":true,"facts":{"actions":["x"]}}'),
        Controller("c"),
    ])
    assert outcomes[0][:2] == ("a", "failed") and "needs ipvsadm" in outcomes[0][2]
    assert [o[:2] for o in outcomes[1:]] == [("b", "not-run"), ("c", "not-run")]


class Forgetful(Scripted):
    """A dry-run script that forgot its dry-run mode: never sent."""

    def dry_run_script(self, ctx: HostContext) -> ScriptCall:
        return ScriptCall("touch /tmp/nodeboot-must-not-exist\n", {}, name=self.name)


def test_a_dry_run_script_without_nb_dry_run_is_refused_before_it_is_sent() -> None:
    outcomes, transport = dry([Forgetful("a", "")])
    assert outcomes[0][:2] == ("a", "failed") and "must have NB_DRY_RUN=1" in outcomes[0][2]
    assert transport.stats.execs == 0


def test_the_windows_cluster_sides_dry_run_names_what_it_would_create_and_patch() -> None:
    from nodeboot.cluster.windows import Plan
    from nodeboot.steps.windows import plan_lines

    daemonset = {"kind": "DaemonSet", "metadata": {"name": "kube-proxy-windows", "namespace": "kube-system"}}
    role = {"kind": "ClusterRole", "metadata": {"name": "flannel-windows"}}
    lines = plan_lines(Plan(create=[daemonset, role], pin_linux=[("kube-system", "kube-proxy")],
                            flannel_backend=True))
    assert lines[:2] == ["would create DaemonSet kube-system/kube-proxy-windows",
                         "would create ClusterRole flannel-windows"]
    assert lines[2].startswith("would set flannel's VXLAN backend to VNI 4096")
    assert lines[3] == "would pin DaemonSet kube-system/kube-proxy to kubernetes.io/os=linux"


def test_a_dry_runs_summary_names_the_phases_that_would_run() -> None:
    from types import SimpleNamespace

    from nodeboot.runner import Fleet
    from nodeboot.steps.base import PhaseOutcome, PhaseStatus, WorkflowResult

    host = Host(name="h1", address="127.0.0.1")
    result = WorkflowResult([PhaseOutcome("facts", PhaseStatus.OK), PhaseOutcome("install", PhaseStatus.WOULD_RUN, "x"),
                             PhaseOutcome("kubeadm-join", PhaseStatus.WOULD_RUN, "y"),
                             PhaseOutcome("label-taint", PhaseStatus.OK, "nothing asked")])
    fleet = SimpleNamespace(options=RunOptions(dry_run=True), redactor=Redactor())
    report = Fleet._report(fleet, host, result, 0.0)  # type: ignore[arg-type]
    assert (report.result, report.detail) == ("ok", "dry run: would run install, kubeadm-join")
    nothing = Fleet._report(fleet, host, WorkflowResult([PhaseOutcome("facts", PhaseStatus.OK)]), 0.0)  # type: ignore[arg-type]
    assert nothing.detail == "dry run: nothing to do"
    fleet.options = RunOptions()
    assert Fleet._report(fleet, host, result, 0.0).detail == ""  # type: ignore[arg-type]
