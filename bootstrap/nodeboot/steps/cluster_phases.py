"""Cluster-side phases shared by the Linux and Windows join workflows."""

from __future__ import annotations

import time

# nodeboot.cluster.nodes and .tokens are imported where they are used: they load the kubernetes
# client, which host-only work (the proxy-prereqs workflow, a dry run of it) never needs.
from nodeboot.cluster.joinconfig import JoinSpec, api_version_for, render
from nodeboot.errors import NodebootError
from nodeboot.facts import LinuxFacts, parse_facts
from nodeboot.scripts import ScriptResult
from nodeboot.steps import preflight
from nodeboot.steps.base import HostContext, Phase


class PreflightError(NodebootError):
    pass


def gather_facts(ctx: HostContext, script: str, variables: dict[str, str]) -> None:
    """Run the OS's facts script (one round trip), note when (for the clock-skew check), and read
    its facts into the OS's typed facts (a malformed field fails the phase, naming the host)."""
    sent = time.time()
    result = ctx.script(script, variables)
    received = time.time()
    ctx.host_facts = parse_facts(ctx.host.os, result.facts, ctx.host.name)
    ctx.host_facts.sent_at, ctx.host_facts.received_at = sent, received


def is_joined(ctx: HostContext) -> bool:
    return ctx.gathered().joined and node_registered(ctx)


class JoinPreflight(Phase):
    """What both OSes check before a join; each OS says where its kubelet.conf lives and what else to check."""

    name = "preflight"
    title = "check the host can join"
    reads_only = True
    kubelet_conf = ""

    def problems(self, ctx: HostContext) -> list[str]:
        raise NotImplementedError

    def run(self, ctx: HostContext) -> bool:
        if is_joined(ctx):
            return False
        facts = ctx.gathered()
        if facts.joined:
            raise PreflightError(
                f"{ctx.host.name} has {self.kubelet_conf} but no Node {ctx.host.node_name} exists in this cluster: "
                "it belongs to another cluster or was deleted; run nodeboot reset on it first"
            )
        linux = facts if isinstance(facts, LinuxFacts) else None
        problems = self.problems(ctx) + preflight.common_problems(facts, ctx.host.node_name)
        problems += filter(None, [preflight.ipv6_forwarding_problem(linux, ctx.host.node_ips) if linux else None,
                                  ctx.run.ca_problem])
        if problems:
            raise PreflightError("; ".join(problems))
        warning = preflight.cri_warning(linux) if linux else None
        if warning:
            ctx.emit("progress", phase=self.name, detail=warning)
        return False


def current_node(ctx: HostContext):
    """The host's Node: from the watch's first listing, else read on its own (None: not registered)."""
    from nodeboot.cluster import nodes
    return ctx.nodes().listed(ctx.host.node_name) or nodes.read_node(ctx.kube(), ctx.host.node_name)


def node_registered(ctx: HostContext) -> bool:
    return current_node(ctx) is not None


def config_minor(kubeadm_version: str) -> int:
    """The kubeadm minor a JoinConfiguration is rendered for (v1beta4's when the version is unknown)."""
    return (preflight.minor_of(kubeadm_version) or (1, 31))[1]


def join_config_plan(ctx: HostContext, kubeadm_version: str) -> str:
    """What make_join_config would make, for a dry run (which makes no token)."""
    return (f"would create a bootstrap token for {ctx.host.node_name} (deleted once it is Ready) and a "
            f"JoinConfiguration ({api_version_for(config_minor(kubeadm_version))}, API server {ctx.run.endpoint})")


def make_join_config(ctx: HostContext, kubeadm_version: str) -> str:
    """A fresh token for this node (made just before kubeadm needs it) and its JoinConfiguration,
    in the API version the node's kubeadm reads (v1beta4 when its version is unknown)."""
    from nodeboot.cluster import tokens
    kubeadm_minor = config_minor(kubeadm_version)
    token = ctx.ledger().create(ctx.host.node_name)
    ctx.state.token = token
    ctx.redactor.add(token.secret)
    ctx.redactor.add(token.value)
    tokens.wait_signed(ctx.kube(), token)
    spec = JoinSpec(
        endpoint=ctx.run.endpoint,
        token=token.value,
        ca_hashes=list(ctx.run.ca_hashes),
        node_name=ctx.host.node_name,
        os=ctx.host.os,
        taints=ctx.host.taints,
        node_ips=ctx.host.node_ips,
        kubelet_extra_args=ctx.host.kubelet_extra_args,
        ignore_preflight_errors=ctx.host.ignore_preflight_errors,
        discovery_timeout=ctx.options.discovery_timeout,
        kubelet_config=ctx.host.kubelet_config,
    )
    return render(spec, kubeadm_minor)


class WaitReady(Phase):
    name = "wait-ready"
    title = "wait for the Node to be Ready"

    def satisfied(self, ctx: HostContext) -> str | None:
        from nodeboot.cluster import nodes
        return "Ready" if nodes.is_ready(ctx.nodes().listed(ctx.host.node_name)) else None

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        return f"would wait up to {ctx.options.ready_timeout:g}s for Node {ctx.host.node_name} to be Ready"

    def run(self, ctx: HostContext) -> bool:
        ctx.nodes().wait_ready(ctx.host.node_name, ctx.options.ready_timeout, ctx.cancelled)
        return False


class LabelAndTaint(Phase):
    name = "label-taint"
    title = "apply labels and taints"

    def satisfied(self, ctx: HostContext) -> str | None:
        from nodeboot.cluster import nodes
        node = current_node(ctx)
        if node is None:
            return None if (ctx.host.labels or ctx.host.taints) else "nothing asked"
        if not nodes.missing_labels(node, ctx.host.labels) and not nodes.missing_taints(node, ctx.host.taints):
            return "labels and taints in place"
        return None

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        from nodeboot.cluster import nodes
        node = current_node(ctx)
        labels = nodes.missing_labels(node, ctx.host.labels) if node is not None else ctx.host.labels
        taints = nodes.missing_taints(node, ctx.host.taints) if node is not None else ctx.host.taints
        what = [f"labels {', '.join(f'{k}={v}' for k, v in labels.items())}" if labels else "",
                f"taints {', '.join(map(str, taints))}" if taints else ""]
        return f"would add to Node {ctx.host.node_name} " + " and ".join(filter(None, what))

    def run(self, ctx: HostContext) -> bool:
        from nodeboot.cluster import nodes
        node = nodes.read_node(ctx.kube(), ctx.host.node_name)
        if node is None:
            raise RuntimeError(f"node {ctx.host.node_name} is not registered")
        return nodes.apply_labels_and_taints(ctx.kube(), node, ctx.host.labels, ctx.host.taints)


class DeleteToken(Phase):
    name = "delete-token"
    title = "delete the bootstrap token"

    def satisfied(self, ctx: HostContext) -> str | None:
        return None if ctx.state.token else "no token was created"

    def run(self, ctx: HostContext) -> bool:
        token, ctx.state.token = ctx.state.token, None
        if token is not None:
            ctx.ledger().delete(token)
        return True

    def cleanup(self, ctx: HostContext) -> None:
        # A failed or interrupted join must not leave its token behind.
        token, ctx.state.token = ctx.state.token, None
        if token is not None:
            ctx.ledger().delete(token)


def after_join() -> list[Phase]:
    """What every join ends with, whatever the OS: Ready, labels and taints, token gone."""
    return [WaitReady(), LabelAndTaint(), DeleteToken()]


class Drain(Phase):
    name = "drain"
    title = "cordon and drain the Node"

    def satisfied(self, ctx: HostContext) -> str | None:
        from nodeboot.cluster import nodes
        return None if nodes.read_node(ctx.kube(), ctx.host.node_name) else "no such Node"

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        return (f"would cordon Node {ctx.host.node_name} and evict its pods (DaemonSet pods stay), "
                f"waiting up to {ctx.options.drain_timeout:g}s")

    def run(self, ctx: HostContext) -> bool:
        from nodeboot.cluster import nodes
        result = nodes.drain(ctx.kube(), ctx.host.node_name, force=ctx.options.force,
                             timeout=ctx.options.drain_timeout, cancelled=ctx.cancelled,
                             progress=lambda m: ctx.emit("progress", phase=self.name, detail=m),
                             delete_emptydir_data=ctx.options.delete_emptydir_data,
                             grace_period=ctx.options.grace_period)
        ctx.emit("progress", phase=self.name,
                 detail=f"evicted {len(result.evicted) + len(result.deleted_bare)} pods, "
                        f"left {len(result.skipped_daemonset)} DaemonSet pods")
        return True


class DeleteNode(Phase):
    name = "delete-node"
    title = "delete the Node object"

    def satisfied(self, ctx: HostContext) -> str | None:
        from nodeboot.cluster import nodes
        return None if nodes.read_node(ctx.kube(), ctx.host.node_name) else "no such Node"

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        return f"would delete Node {ctx.host.node_name}"

    def run(self, ctx: HostContext) -> bool:
        from nodeboot.cluster import nodes
        return nodes.delete_node(ctx.kube(), ctx.host.node_name)
