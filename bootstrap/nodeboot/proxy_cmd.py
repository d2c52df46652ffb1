"""`nodeboot proxy set-mode|status|apply-config`: kube-proxy's mode across the cluster.

The commands' work; what they show and ask goes through the callbacks the cli hands in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from nodeboot import app, validate
from nodeboot.cluster import kubeproxy
from nodeboot.cluster.client import Cluster
from nodeboot.errors import EXIT_HOST_FAILED, ClusterError, NodebootError, UsageError
from nodeboot.redact import Redactor
from nodeboot.request import IpvsArgs
from nodeboot.steps import linux
from nodeboot.steps.base import HostContext, Phase


@dataclass(frozen=True)
class SwitchRequest:
    """`proxy set-mode`'s own flags."""

    mode: str
    ipvs: IpvsArgs = field(default_factory=IpvsArgs)
    dry_run: bool = False
    yes: bool = False
    max_unavailable: int = 1
    no_rollback: bool = False
    probe_interval_ms: int = 100
    verify_timeout: float = 30.0


@dataclass
class SwitchView:
    """What set-mode shows and asks, handed in by the cli: the plan, the question, the outcomes."""

    plan: Callable[..., None]
    confirm: Callable[[str, bool], None]
    outcomes: Callable[[list[NodeOutcome], str], None]


def parse_change(mode: str, ipvs: IpvsArgs) -> kubeproxy.ModeChange:
    """The change the flags ask for, checked before anything talks to the cluster."""
    app.check_choice("MODE", mode, validate.PROXY_MODES)
    change = kubeproxy.ModeChange(
        mode=mode,
        scheduler=app.check_choice("--scheduler", ipvs.scheduler, validate.IPVS_SCHEDULERS),
        strict_arp=ipvs.strict_arp,
        sync_period=app.check_flag("--sync-period", validate.duration, ipvs.sync_period),
        min_sync_period=app.check_flag("--min-sync-period", validate.duration, ipvs.min_sync_period),
        exclude_cidrs=app.check_flag("--exclude-cidrs", validate.cidrs, ipvs.exclude_cidrs),
        tcp_timeout=app.check_flag("--tcp-timeout", validate.duration, ipvs.tcp_timeout),
        tcp_fin_timeout=app.check_flag("--tcp-fin-timeout", validate.duration, ipvs.tcp_fin_timeout),
        udp_timeout=app.check_flag("--udp-timeout", validate.duration, ipvs.udp_timeout),
    )
    ipvs_only = [change.scheduler, change.strict_arp, change.exclude_cidrs, change.tcp_timeout,
                 change.tcp_fin_timeout, change.udp_timeout]
    if mode != "ipvs" and any(v is not None for v in ipvs_only):
        raise UsageError("--scheduler, --strict-arp, --exclude-cidrs and the IPVS timeouts go with mode ipvs")
    return change


def fit_to_server(change: kubeproxy.ModeChange, server: tuple[int, int]) -> None:
    """What the server's version allows or needs: the IPVS gate, or no IPVS at all."""
    change.feature_gates.update(kubeproxy.gates_for_mode(change.mode, server))


def cleanup_node(ctx: HostContext, old: str, now: str):
    """What `old` left on this node, now that kube-proxy runs `now` there."""
    return ctx.script("proxy-cleanup.sh", {"NB_CLEAN_MODES": old, "NB_PROXY_MODE_NOW": now,
                                           "NB_REMOVE_MODULES_FILE": "0", "NB_MODULES_FILE": linux.MODULES_FILE})


# ---- the plan -------------------------------------------------------------------

class PlanNode(Phase):
    """Reads only: what the node lacks for the new mode (proxy-prereqs.sh in dry-run mode,
    then proxy-preflight.sh) and its kube-proxy pod."""

    name = "proxy-plan"
    title = "check the node for the new mode"
    reads_only = True

    def __init__(self, mode: str, plans: dict[str, dict]) -> None:
        self.mode, self.plans = mode, plans

    def run(self, ctx: HostContext) -> bool:
        plan: dict = {"would_prepare": [], "problems": []}
        try:
            prereqs = ctx.script("proxy-prereqs.sh", {"NB_PROXY_MODE": self.mode, "NB_DRY_RUN": "1",
                                                      "NB_MODULES_FILE": linux.MODULES_FILE,
                                                      "NB_INSTALL_PACKAGES": "1" if ctx.options.install_packages
                                                      else "0"})
            plan["would_prepare"] = prereqs.facts.get("actions", [])
        except NodebootError as exc:
            plan["problems"].append(str(exc))
        preflight = ctx.script("proxy-preflight.sh", {"NB_PROXY_MODE": self.mode})
        plan["kernel"] = preflight.facts.get("kernel", "")
        # Missing modules and tools that proxy-prereqs will provide are not problems.
        fixable = bool(plan["would_prepare"])
        plan["problems"] += [p for p in preflight.facts.get("problems", [])
                             if not (fixable and ("not loaded" in p or "not installed" in p))]
        pods = kubeproxy.pods_on_node(ctx.kube(), ctx.host.node_name)
        plan["kube_proxy_pod"] = pods[0].metadata.name if pods else ""
        self.plans[ctx.host.name] = plan
        return False


def collect_plans(cluster: Cluster, hosts, settings: app.RunSettings, redactor: Redactor, mode: str) -> dict:
    quiet = app.RunSettings(**{**settings.__dict__, "output": "quiet"})
    output = app.make_output(quiet, redactor)
    plans: dict[str, dict] = {}
    report = app.run_hosts(cluster, hosts, settings, output, redactor, lambda _h: [PlanNode(mode, plans)],
                           "proxy set-mode plan")
    for h in report.hosts:
        if h.host.name not in plans:
            plans[h.host.name] = {"problems": [h.detail or "unreachable"], "would_prepare": [], "kernel": "",
                                  "kube_proxy_pod": ""}
    return plans


# ---- the roll ---------------------------------------------------------------------

@dataclass
class NodeOutcome:
    host: str
    node: str
    ok: bool = False
    pod: str = ""
    restart_s: float = 0.0
    gap: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    cleanup: dict = field(default_factory=dict)
    error: str = ""


# Which verify checks stop the roll: the ones a kube-proxy switch can break.
MIGRATION_GATES = ("node-ready", "kube-proxy-pod", "kube-proxy-mode", "service-reachable")


class SwitchNode(Phase):
    """On one node: probe a ClusterIP, restart kube-proxy, wait for its new mode, verify, clean the old mode."""

    name = "proxy-switch"
    title = "restart kube-proxy in the new mode and verify"

    def __init__(self, old: str, new: str, view, outcomes: dict[str, NodeOutcome], req: SwitchRequest) -> None:
        self.old, self.new, self.view, self.outcomes, self.req = old, new, view, outcomes, req

    def run(self, ctx: HostContext) -> bool:
        from nodeboot import verify

        out = self.outcomes[ctx.host.name] = NodeOutcome(ctx.host.name, ctx.host.node_name)
        target = f"{self.view.service_ip}:{self.view.service_port}"
        interval = self.req.probe_interval_ms
        ctx.script("proxy-probe.sh", {"NB_PROBE_ACTION": "start", "NB_PROBE_TARGET": target,
                                      "NB_PROBE_INTERVAL_MS": str(interval), "NB_PROBE_MAX": "3000",
                                      "NB_PROBE_MAX_SECONDS": "600"})
        try:
            out.pod, out.restart_s = kubeproxy.restart_on_node(ctx.kube(), ctx.host.node_name,
                                                               self.req.ipvs.rollout_timeout)
            checks = self.wait_for_mode(ctx, verify)
        except NodebootError as exc:
            out.error = str(exc)
            raise
        finally:
            out.gap = ctx.script("proxy-probe.sh", {"NB_PROBE_ACTION": "stop"}).facts
        out.checks = [asdict(c) for c in checks]
        failed = [c for c in checks if c.name in MIGRATION_GATES and c.status == "fail"]
        if failed:
            out.error = "; ".join(f"{c.name}: {c.detail}" for c in failed)
            raise ClusterError(f"verification failed on {ctx.host.node_name}: {out.error}")
        out.cleanup = cleanup_node(ctx, self.old, self.new).facts
        out.ok = True
        return True

    def wait_for_mode(self, ctx: HostContext, verify) -> list:
        """kube-proxy needs a moment after Running to program its rules: ask again for up to --verify-timeout."""
        deadline = time.monotonic() + self.req.verify_timeout
        while True:
            checks = verify.linux_node_checks(ctx, self.view, expected_mode=self.new)
            gates = [c for c in checks if c.name in MIGRATION_GATES]
            if all(c.status != "fail" for c in gates) or time.monotonic() >= deadline:
                return checks
            time.sleep(1.0)


def set_mode(req: SwitchRequest, sel: app.HostSelection, settings: app.RunSettings, show: SwitchView) -> int:
    from nodeboot import verify

    mode = req.mode
    change = parse_change(mode, req.ipvs)
    hosts = [h for h in app.select_hosts(sel) if h.os == "linux"]
    if not hosts:
        raise UsageError("no Linux hosts selected: kube-proxy's mode is switched on Linux nodes")
    cluster = Cluster.from_kubeconfig(settings.kubeconfig)
    server = cluster.version[:2]
    fit_to_server(change, server)
    redactor = Redactor()
    output = app.make_output(settings, redactor)
    notice = kubeproxy.ipvs_notice(server) if mode == "ipvs" else None
    if notice:
        output.message(notice, "yellow")
    settings.options.proxy_mode = mode
    cm, config = kubeproxy.read_config(cluster)
    old_text = (cm.data or {}).get("config.conf", "")
    old_mode = config.get("mode") or "iptables"
    new_config = kubeproxy.apply_change(config, change)
    if yaml.safe_dump(new_config, sort_keys=False) == old_text:
        output.message(f"kube-proxy already runs mode {mode} with these settings: nothing to change", "green")
        return 0
    warnings = kubeproxy.mode_warnings(config, new_config, kubeproxy.metallb_present(cluster))
    plans = collect_plans(cluster, hosts, settings, redactor, mode)
    max_unavailable = req.max_unavailable
    show.plan(old_mode, mode, hosts, plans, warnings, max_unavailable, settings.output)
    blocked = {h: p["problems"] for h, p in plans.items() if p["problems"]}
    if req.dry_run:
        output.message("dry run: nothing changed", "green")
        return EXIT_HOST_FAILED if blocked else 0
    if blocked:
        output.message(f"kube-proxy left unchanged: {len(blocked)} node(s) cannot run {mode} (see problems above)",
                       "bold red")
        return EXIT_HOST_FAILED
    show.confirm(f"Switch kube-proxy from {old_mode} to {mode} on {len(hosts)} node(s)?", req.yes)
    # 1. Every node gets the new mode's prerequisites before anything switches.
    code, _ = app.run_fleet("proxy-prereqs", sel, settings, hosts=hosts, redactor=redactor)
    if code != 0:
        output.message("kube-proxy left unchanged: some nodes lack the prerequisites (see above)", "bold red")
        return EXIT_HOST_FAILED
    # 2. The config, keeping every other field; running kube-proxies read it only when they start.
    view = verify.ClusterView.read(cluster)
    kubeproxy.write_config(cluster, cm, new_config)
    output.message(f"kube-proxy config: mode {old_mode} -> {mode}; restarting kube-proxy node by node")
    # 3. Node by node: restart, verify, clean; a failure stops the roll.
    outcomes: dict[str, NodeOutcome] = {}
    rolled: list = []
    failed = False
    for batch_start in range(0, len(hosts), max_unavailable):
        batch = hosts[batch_start:batch_start + max_unavailable]
        rolled += batch
        code = run_on_hosts(cluster, batch, settings, redactor, lambda _h: [SwitchNode(old_mode, mode, view,
                                                                                        outcomes, req)],
                            f"kube-proxy {old_mode} -> {mode}")
        for h in batch:
            out = outcomes.get(h.name) or NodeOutcome(h.name, h.node_name, error="not switched (see the log)")
            outcomes[h.name] = out
            gap = out.gap or {}
            if out.ok:
                output.message(f"{h.name}: {mode} verified; traffic gap {gap.get('longest_gap_ms', '?')} ms "
                               f"({gap.get('failures', '?')}/{gap.get('probes', '?')} probes failed); "
                               f"kube-proxy restarted in {out.restart_s:.1f}s", "green")
            else:
                output.message(f"{h.name}: failed: {out.error}", "bold red")
        if code != 0 or not all(outcomes[h.name].ok for h in batch):
            failed = True
            break
    if failed and not req.no_rollback:
        rollback(cluster, rolled, old_text, old_mode, mode, settings, redactor, output, req.ipvs.rollout_timeout)
    elif failed:
        output.message(f"--no-rollback: {len(rolled)} node(s) left as they are; the ConfigMap says {mode}",
                       "bold red")
    show.outcomes(list(outcomes.values()), settings.output)
    return EXIT_HOST_FAILED if failed else 0


def run_on_hosts(cluster: Cluster, hosts, settings: app.RunSettings, redactor: Redactor, workflow, title: str) -> int:
    from nodeboot.runner import summarise

    output = app.make_output(settings, redactor)
    report = app.run_hosts(cluster, hosts, settings, output, redactor, workflow, title)
    summarise(output, report)
    return report.exit_code


class RestoreNode(Phase):
    """Rollback on one node: kube-proxy back in the old mode, then the new mode's rules cleaned."""

    name = "proxy-rollback"
    title = "restart kube-proxy in the old mode"

    def __init__(self, old: str, new: str, rollout_timeout: float, outcomes: dict[str, dict]) -> None:
        self.old, self.new, self.rollout_timeout, self.outcomes = old, new, rollout_timeout, outcomes

    def run(self, ctx: HostContext) -> bool:
        _, seconds = kubeproxy.restart_on_node(ctx.kube(), ctx.host.node_name, self.rollout_timeout)
        cleaned = cleanup_node(ctx, self.new, self.old).facts
        self.outcomes[ctx.host.name] = {"restart_s": round(seconds, 1), "cleanup": cleaned.get("actions", [])}
        return True


def rollback(cluster: Cluster, rolled, old_text: str, old: str, new: str, settings: app.RunSettings,
             redactor: Redactor, output, rollout_timeout: float) -> None:
    output.message(f"rolling back: ConfigMap to mode {old}, kube-proxy restarted on {len(rolled)} node(s)",
                   "bold yellow")
    kubeproxy.write_config_text(cluster, old_text)
    restored: dict[str, dict] = {}
    code = run_on_hosts(cluster, rolled, settings, redactor,
                        lambda _h: [RestoreNode(old, new, rollout_timeout, restored)], f"kube-proxy back to {old}")
    if code == 0:
        output.message(f"rolled back: {len(rolled)} node(s) run {old} again", "yellow")
    else:
        output.message("rollback incomplete: see the failed nodes above", "bold red")


@dataclass
class ProxyStatus:
    mode: str
    scheduler: str
    rows: list[dict[str, Any]]
    failed: bool


def status(sel: app.HostSelection, settings: app.RunSettings) -> ProxyStatus:
    cluster = Cluster.from_kubeconfig(settings.kubeconfig)
    _, config = kubeproxy.read_config(cluster)
    mode = config.get("mode") or "iptables"
    scheduler = (config.get("ipvs") or {}).get("scheduler", "")
    hosts = [h for h in app.select_hosts(sel) if h.os == "linux"]
    settings.output = "quiet"  # the per-host events are not wanted here, only the facts (they stay in the log)
    redactor = Redactor()
    output = app.make_output(settings, redactor)
    collected: dict[str, dict] = {}

    class Collect(Phase):
        name = "ipvs-status"
        reads_only = True

        def run(self, ctx: HostContext) -> bool:
            collected[ctx.host.name] = ctx.script("proxy-status.sh", {}).facts | {
                "modules_loaded": list(ctx.linux_facts().modules_loaded)}
            return False

    report = app.run_hosts(cluster, hosts, settings, output, redactor, lambda _h: [linux.Facts(), Collect()],
                           "proxy status")
    rows = []
    for h in report.hosts:
        facts = collected.get(h.host.name, {})
        rows.append({"host": h.host.name, "node": h.host.node_name, "mode": mode, "scheduler": scheduler,
                     "modules": facts.get("modules_loaded", []), "virtual_servers": facts.get("virtual_servers"),
                     "error": h.detail if h.result == "failed" else ""})
    return ProxyStatus(mode, scheduler, rows, bool(report.failed))


def apply_config(mode: str, ipvs: IpvsArgs, check: bool, kubeconfig: str | None) -> dict[str, Any]:
    """Only the cluster half of set-mode (for the playbooks): patch config.conf, roll the DaemonSet."""
    change = parse_change(mode, ipvs)  # flags first: bad input never waits on the cluster
    cluster = Cluster.from_kubeconfig(kubeconfig)
    server = cluster.version[:2]
    fit_to_server(change, server)
    cm, config = kubeproxy.read_config(cluster)
    old_mode = config.get("mode") or "iptables"
    new_config = kubeproxy.apply_change(config, change)
    notice = kubeproxy.ipvs_notice(server) if mode == "ipvs" else None
    result = {"mode": mode, "old_mode": old_mode, "notice": notice or ""}
    if check:
        return {**result, "changed": new_config != config}
    changed = kubeproxy.write_config(cluster, cm, new_config)
    if changed:
        generation = kubeproxy.restart_daemonset(cluster)
        kubeproxy.wait_rollout(cluster, generation, timeout=ipvs.rollout_timeout)
    return {**result, "changed": changed}
