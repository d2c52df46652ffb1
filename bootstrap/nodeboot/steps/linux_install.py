"""The `install` phase of a Linux join: a bare host gets its node parts (opt-in).

The gathered facts alone decide whether the host already has what was asked
(install.sh's state file holds a key of the request; facts.sh reports it and
whether the files it wrote are unchanged), so an installed host costs no round
trip beyond the facts. The phase is batched: its inputs come from the facts and
the options only, so it goes to the host with proxy-prereqs and kubeadm-join.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodeboot import node_install
from nodeboot.facts import LinuxFacts, as_linux_facts
from nodeboot.scripts import ScriptResult
from nodeboot.steps import preflight
from nodeboot.steps.base import HostContext, Phase, in_dry_run_mode, would_lines
from nodeboot.transport import ExecResult, ScriptCall


class InstallPlan:
    """What install.sh is asked to do on one host: the version, the arch and the script's inputs."""

    def __init__(self, settings: node_install.InstallSettings, facts: LinuxFacts | Mapping[str, Any],
                 server_version: str) -> None:
        self.settings = settings
        self.kubernetes_version = node_install.wanted_kubernetes_version(settings, server_version)
        self.arch = node_install.arch_of(as_linux_facts(facts).arch)
        self.inputs = node_install.script_inputs(settings, self.kubernetes_version, self.arch)


def plan(ctx: HostContext) -> InstallPlan:
    """The host's plan, made once per run (a bad setting raises ValueError naming it)."""
    found = ctx.state.install_plan
    if found is None:
        found = ctx.state.install_plan = InstallPlan(ctx.host.install, ctx.linux_facts(), ctx.run.server_version)
    return found


def request_problems(wanted: InstallPlan, facts: LinuxFacts | Mapping[str, Any],
                     server_minor: tuple[int, int]) -> list[str]:
    """With --install: the request must make sense; what the install itself sets up is not checked.
    (The native phase and the playbooks' `nodeboot node plan-join` both ask this.)"""
    problems: list[str] = []
    skew = preflight.version_skew_problem(wanted.kubernetes_version, server_minor)
    if skew:
        problems.append(skew.replace("kubelet", "--kubernetes-version", 1))
    if as_linux_facts(facts).swap_on and not wanted.settings.disable_swap:
        problems.append("swap is on (the kubelet refuses to start with swap unless configured for it): "
                        "swapoff -a, or --disable-swap (nodeboot_disable_swap: true) to turn it off for good")
    return problems


def preflight_problems(ctx: HostContext) -> list[str]:
    try:
        wanted = plan(ctx)
    except ValueError as exc:
        return [str(exc)]
    return request_problems(wanted, ctx.linux_facts(), ctx.run.server_minor)


def skip_reason(wanted: InstallPlan, facts: LinuxFacts | Mapping[str, Any]) -> str | None:
    """Why an enabled install need not run on this host (facts alone decide), or None."""
    facts = as_linux_facts(facts)
    done = node_install.installed_as_asked(facts, wanted.inputs, wanted.kubernetes_version)
    if done:
        return done
    if facts.joined:
        return "already a node: left as it is (reset it first to reinstall)"
    return None


def missing_parts_problems(ctx: HostContext) -> list[str]:
    """Without --install: the node parts the host lacks, named in one line with the flag that installs them."""
    missing = node_install.missing_parts(ctx.linux_facts())
    cni = node_install.missing_cni_plugins(ctx.linux_facts())
    if cni and not missing:
        # A CNI DaemonSet (Flannel, Calico...) may bring its plugins itself: a warning, not a refusal.
        ctx.emit("warning", detail=f"{ctx.host.name}: no CNI plugins {', '.join(cni)} in /opt/cni/bin; "
                                   "the cluster's CNI must bring them, or --install installs them")
    if not missing:
        return []
    if cni:
        missing.append("CNI plugins (" + ", ".join(cni) + " in /opt/cni/bin)")
    return [f"missing {', '.join(missing)}: {node_install.INSTALL_HINT}"]


def planned_kubeadm(ctx: HostContext) -> str:
    """The kubeadm version the install would put on the host ('' when none is asked)."""
    return plan(ctx).kubernetes_version if ctx.host.install.enabled else ""


class Install(Phase):
    name = "install"
    title = "install containerd, runc, the CNI plugins, kubelet and kubeadm"
    batched = True
    dry_run_mode = True

    def satisfied(self, ctx: HostContext) -> str | None:
        if not ctx.host.install.enabled:
            return "not asked (--install)"
        return skip_reason(plan(ctx), ctx.linux_facts())

    def dry_run_script(self, ctx: HostContext) -> ScriptCall:
        return in_dry_run_mode(self.host_script(ctx))

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        # install.sh's own lines; without them, the plan as the controller reads it.
        said = would_lines(result) if result is not None else ""
        wanted = plan(ctx)
        return said or node_install.plan_text(wanted.settings, wanted.kubernetes_version, wanted.arch)

    def host_script(self, ctx: HostContext) -> ScriptCall:
        wanted = plan(ctx)
        # kubeadm-join, in the same batch, renders its config for the kubeadm installed here.
        ctx.state.installed_kubeadm_version = wanted.kubernetes_version
        return ctx.call("install.sh", {**wanted.inputs, "NB_RUN_ID": ctx.options.run_id})

    def script_done(self, ctx: HostContext, call: ScriptCall, result: ExecResult) -> bool:
        changed = ctx.check(call, result).changed
        facts, version = ctx.linux_facts(), plan(ctx).kubernetes_version
        facts.kubelet_version = facts.kubeadm_version = version
        facts.cri_socket = facts.runc = True
        return changed
