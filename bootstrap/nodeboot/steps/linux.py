"""Linux workflows: join, reset and the kube-proxy prerequisites, as phases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodeboot.cluster.joinconfig import PATCHES_DIR, kubelet_patch
from nodeboot.facts import LinuxFacts, as_linux_facts
from nodeboot.node_layout import LINUX_CRI_SOCKET
from nodeboot.scripts import ScriptResult
from nodeboot.steps import cluster_phases, linux_install, preflight
from nodeboot.steps.base import HostContext, Phase, in_dry_run_mode
from nodeboot.transport import ExecResult, ScriptCall

MODULES_FILE = "/etc/modules-load.d/nodeboot-ipvs.conf"
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh")


class Facts(Phase):
    name = "facts"
    title = "gather facts"
    reads_only = True
    uses_cluster_facts = False

    def run(self, ctx: HostContext) -> bool:
        cluster_phases.gather_facts(ctx, "facts.sh", {"NB_MODULES_FILE": MODULES_FILE, **self.inputs(ctx)})
        return False

    def inputs(self, ctx: HostContext) -> dict[str, str]:
        return {}


class JoinFacts(Facts):
    """The join's facts. Of a host already joined (and still a Node) the join reads nothing but
    that, unless it installs (--install compares what is installed) or prepares an IPVS or
    nftables mode (modules, tools, kernel): then such a host answers briefly, which on a
    re-run of a fleet is most of what nodeboot asks of each host. A joined host whose Node
    is gone needs no more either: the preflight stops it (reset it first); with the preflight
    skipped, the join goes on to kubeadm and needs the whole answer."""

    def inputs(self, ctx: HostContext) -> dict[str, str]:
        needs_more = (ctx.host.install.enabled or needs_prerequisites(wanted_proxy_mode(ctx))
                      or Preflight.name in ctx.options.skip_phases)
        return {} if needs_more else {"NB_JOINED_FACTS": "brief"}


class Preflight(cluster_phases.JoinPreflight):
    kubelet_conf = "/etc/kubernetes/kubelet.conf"

    def problems(self, ctx: HostContext) -> list[str]:
        if ctx.host.install.enabled:  # what the install sets up is not checked
            return linux_install.preflight_problems(ctx)
        return (linux_install.missing_parts_problems(ctx)
                + preflight.linux_problems(ctx.linux_facts(), ctx.run.server_minor, node_parts=False))


def wanted_proxy_mode(ctx: HostContext) -> str | None:
    return ctx.host.proxy_mode or ctx.options.proxy_mode


def needs_prerequisites(mode: str | None) -> bool:
    """A kube-proxy mode that needs something of the node (IPVS, nftables); iptables, the default, does not."""
    return mode not in (None, "iptables")


def proxy_prereqs_met(facts: LinuxFacts | Mapping[str, Any], mode: str | None) -> bool:
    if not needs_prerequisites(mode):
        return True
    facts = as_linux_facts(facts)
    tools = set(facts.tools)
    if mode == "nftables":
        return "nft" in tools and kernel_at_least(facts.kernel, (5, 13))
    loaded = set(facts.modules_loaded)
    return (set(IPVS_MODULES) <= loaded and "nf_conntrack" in loaded and facts.modules_file
            and {"ipset", "ipvsadm"} <= tools)


def kernel_at_least(kernel: str, wanted: tuple[int, int]) -> bool:
    found = preflight.minor_of(kernel)
    return found is not None and found >= wanted


class ProxyPrereqs(Phase):
    name = "proxy-prereqs"
    title = "kube-proxy mode prerequisites"
    batched = True
    dry_run_mode = True

    def satisfied(self, ctx: HostContext) -> str | None:
        mode = wanted_proxy_mode(ctx)
        if not needs_prerequisites(mode):
            return "no IPVS or nftables mode asked"
        return f"{mode} prerequisites in place" if proxy_prereqs_met(ctx.linux_facts(), mode) else None

    def host_script(self, ctx: HostContext) -> ScriptCall:
        return ctx.call("proxy-prereqs.sh", {
            "NB_PROXY_MODE": wanted_proxy_mode(ctx) or "iptables",
            "NB_INSTALL_PACKAGES": "1" if ctx.options.install_packages else "0",
            "NB_MODULES_FILE": MODULES_FILE,
        })

    def dry_run_script(self, ctx: HostContext) -> ScriptCall:
        return in_dry_run_mode(self.host_script(ctx))


class KubeadmJoin(Phase):
    name = "kubeadm-join"
    title = "kubeadm join"
    batched = True
    dry_run_mode = True

    def satisfied(self, ctx: HostContext) -> str | None:
        return "already joined" if cluster_phases.is_joined(ctx) else None

    def _variables(self, ctx: HostContext) -> dict[str, str]:
        return {"NB_RUN_ID": ctx.options.run_id, "NB_KUBELET_PATCH": kubelet_patch(ctx.host.kubelet_config),
                "NB_PATCHES_DIR": PATCHES_DIR}

    def _kubeadm(self, ctx: HostContext) -> str:
        return ctx.state.installed_kubeadm_version or ctx.linux_facts().kubeadm_version

    def host_script(self, ctx: HostContext) -> ScriptCall:
        config = cluster_phases.make_join_config(ctx, self._kubeadm(ctx))
        return ctx.call("join.sh", self._variables(ctx), secret_variables={"NB_JOIN_CONFIG": config})

    def dry_run_script(self, ctx: HostContext) -> ScriptCall:
        # No token and no configuration: join.sh says what it would clear, write and run.
        return ctx.call("join.sh", {**self._variables(ctx), "NB_DRY_RUN": "1"})

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        kubeadm = self._kubeadm(ctx) or linux_install.planned_kubeadm(ctx)
        first = cluster_phases.join_config_plan(ctx, kubeadm)
        return "; ".join(filter(None, [first, super().dry_run_detail(ctx, result)]))

    def script_done(self, ctx: HostContext, call: ScriptCall, result: ExecResult) -> bool:
        changed = ctx.check(call, result).changed
        ctx.linux_facts().joined = True
        return changed


def join_phases() -> list[Phase]:
    return [
        JoinFacts(),
        Preflight(),
        linux_install.Install(),
        ProxyPrereqs(),
        KubeadmJoin(),
        *cluster_phases.after_join(),
    ]


class KubeadmReset(Phase):
    name = "kubeadm-reset"
    title = "kubeadm reset and CNI cleanup"
    batched = True
    dry_run_mode = True

    def satisfied(self, ctx: HostContext) -> str | None:
        facts = ctx.linux_facts()
        return None if (facts.joined or facts.kubelet_configured or facts.cni_leftovers) \
            else "not joined, no CNI leftovers"

    def host_script(self, ctx: HostContext) -> ScriptCall:
        return ctx.call("reset.sh", {"NB_RUN_ID": ctx.options.run_id,
                                     "NB_CRI_SOCKET": LINUX_CRI_SOCKET})

    def dry_run_script(self, ctx: HostContext) -> ScriptCall:
        return in_dry_run_mode(self.host_script(ctx))


class ProxyCleanup(Phase):
    name = "proxy-cleanup"
    title = "remove kube-proxy's rules, kube-ipvs0 and ipsets"
    batched = True
    dry_run_mode = True

    def host_script(self, ctx: HostContext) -> ScriptCall:
        return ctx.call("proxy-cleanup.sh", {
            "NB_CLEAN_MODES": "ipvs iptables nftables",  # a reset leaves no mode's rules behind
            "NB_REMOVE_MODULES_FILE": "1" if ctx.options.remove_modules_file else "0",
            "NB_MODULES_FILE": MODULES_FILE,
        })

    def dry_run_script(self, ctx: HostContext) -> ScriptCall:
        return in_dry_run_mode(self.host_script(ctx))


def reset_phases() -> list[Phase]:
    return [
        Facts(),
        cluster_phases.Drain(),
        KubeadmReset(),
        ProxyCleanup(),
        cluster_phases.DeleteNode(),
    ]


def proxy_prereq_phases() -> list[Phase]:
    return [Facts(), ProxyPrereqs()]
