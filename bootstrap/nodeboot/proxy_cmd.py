"""`nodeboot proxy set-mode|status`: kube-proxy's mode across the cluster."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nodeboot import app, validate
from nodeboot.cluster import kubeproxy
from nodeboot.cluster.client import Cluster
from nodeboot.errors import EXIT_HOST_FAILED, ClusterError, NodebootError, UsageError
from nodeboot.redact import Redactor
from nodeboot.steps import linux
from nodeboot.steps.base import HostContext, Phase


def parse_change(mode: str, kw: dict) -> kubeproxy.ModeChange:
    """The change the flags ask for, checked before anything talks to the cluster."""
    app.check_choice("MODE", mode, validate.PROXY_MODES)
    change = kubeproxy.ModeChange(
        mode=mode,
        scheduler=app.check_choice("--scheduler", kw.get("scheduler"), validate.IPVS_SCHEDULERS),
        strict_arp=kw.get("strict_arp"),
        sync_period=app.check_flag("--sync-period", validate.duration, kw.get("sync_period")),
        min_sync_period=app.check_flag("--min-sync-period", validate.duration, kw.get("min_sync_period")),
        exclude_cidrs=app.check_flag("--exclude-cidrs", validate.cidrs, kw.get("exclude_cidrs")),
        tcp_timeout=app.check_flag("--tcp-timeout", validate.duration, kw.get("tcp_timeout")),
        tcp_fin_timeout=app.check_flag("--tcp-fin-timeout", validate.duration, kw.get("tcp_fin_timeout")),
        udp_timeout=app.check_flag("--udp-timeout", validate.duration, kw.get("udp_timeout")),
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


def print_plan(old: str, new: str, hosts, plans: dict, warnings: list[str], max_unavailable: int,
               output_mode: str = "human") -> None:
    if output_mode == "json":
        print(json.dumps({"event": "proxy-plan", "from": old, "to": new, "max_unavailable": max_unavailable,
                          "cleanup": kubeproxy.cleanup_plan(old, new), "warnings": warnings,
                          "nodes": [{"host": h.name, "node": h.node_name, **plans[h.name]} for h in hosts]}))
        return
    console = Console()
    console.print(f"kube-proxy mode {escape(old)} -> {escape(new)}: ConfigMap kube-system/kube-proxy patched once, "
                  f"then the kube-proxy pod restarted node by node ({max_unavailable} at a time), each node "
                  "verified and cleaned before the next")
    console.print(f"cleaned on each node: {escape(kubeproxy.cleanup_plan(old, new))}")
    table = Table(box=None, header_style="bold")
    for col in ("host", "node", "kube-proxy pod", "kernel", "will prepare", "problems"):
        table.add_column(col)
    for h in hosts:
        plan = plans[h.name]
        table.add_row(escape(h.name), escape(h.node_name), escape(plan.get("kube_proxy_pod") or "-"),
                      escape(plan.get("kernel") or ""), escape(", ".join(plan.get("would_prepare") or []) or "-"),
                      escape("; ".join(plan.get("problems") or []) or "-"))
    console.print(table)
    for text in warnings:
        console.print(f"[yellow]warning:[/] {escape(text)}")


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

    def __init__(self, old: str, new: str, view, outcomes: dict[str, NodeOutcome], kw: dict) -> None:
        self.old, self.new, self.view, self.outcomes, self.kw = old, new, view, outcomes, kw

    def run(self, ctx: HostContext) -> bool:
        from nodeboot import verify

        out = self.outcomes[ctx.host.name] = NodeOutcome(ctx.host.name, ctx.host.node_name)
        target = f"{self.view.service_ip}:{self.view.service_port}"
        interval = int(self.kw.get("probe_interval_ms") or 100)
        ctx.script("proxy-probe.sh", {"NB_PROBE_ACTION": "start", "NB_PROBE_TARGET": target,
                                      "NB_PROBE_INTERVAL_MS": str(interval), "NB_PROBE_MAX": "3000",
                                      "NB_PROBE_MAX_SECONDS": "600"})
        try:
            out.pod, out.restart_s = kubeproxy.restart_on_node(ctx.kube(), ctx.host.node_name,
                                                               float(self.kw.get("rollout_timeout") or 300))
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
        deadline = time.monotonic() + float(self.kw.get("verify_timeout") or 30)
        while True:
            checks = verify.linux_node_checks(ctx, self.view, expected_mode=self.new)
            gates = [c for c in checks if c.name in MIGRATION_GATES]
            if all(c.status != "fail" for c in gates) or time.monotonic() >= deadline:
                return checks
            time.sleep(1.0)


def set_mode(mode: str, sel: app.HostSelection, settings: app.RunSettings, kw: dict) -> int:
    from nodeboot import verify

    change = parse_change(mode, kw)
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
    max_unavailable = int(kw.get("max_unavailable") or 1)
    print_plan(old_mode, mode, hosts, plans, warnings, max_unavailable, settings.output)
    blocked = {h: p["problems"] for h, p in plans.items() if p["problems"]}
    if kw.get("dry_run"):
        output.message("dry run: nothing changed", "green")
        return EXIT_HOST_FAILED if blocked else 0
    if blocked:
        output.message(f"kube-proxy left unchanged: {len(blocked)} node(s) cannot run {mode} (see problems above)",
                       "bold red")
        return EXIT_HOST_FAILED
    confirm(f"Switch kube-proxy from {old_mode} to {mode} on {len(hosts)} node(s)?", kw.get("yes", False))
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
                                                                                        outcomes, kw)],
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
    if failed and not kw.get("no_rollback"):
        rollback(cluster, rolled, old_text, old_mode, mode, settings, redactor, output, kw)
    elif failed:
        output.message(f"--no-rollback: {len(rolled)} node(s) left as they are; the ConfigMap says {mode}",
                       "bold red")
    print_outcomes(list(outcomes.values()), settings.output)
    return EXIT_HOST_FAILED if failed else 0


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("proxy set-mode needs --yes when there is no terminal to confirm on")
    if not click.confirm(question, default=False):
        raise UsageError("nothing done")


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

    def __init__(self, old: str, new: str, kw: dict, outcomes: dict[str, dict]) -> None:
        self.old, self.new, self.kw, self.outcomes = old, new, kw, outcomes

    def run(self, ctx: HostContext) -> bool:
        _, seconds = kubeproxy.restart_on_node(ctx.kube(), ctx.host.node_name,
                                               float(self.kw.get("rollout_timeout") or 300))
        cleaned = cleanup_node(ctx, self.new, self.old).facts
        self.outcomes[ctx.host.name] = {"restart_s": round(seconds, 1), "cleanup": cleaned.get("actions", [])}
        return True


def rollback(cluster: Cluster, rolled, old_text: str, old: str, new: str, settings: app.RunSettings,
             redactor: Redactor, output, kw: dict) -> None:
    output.message(f"rolling back: ConfigMap to mode {old}, kube-proxy restarted on {len(rolled)} node(s)",
                   "bold yellow")
    kubeproxy.write_config_text(cluster, old_text)
    restored: dict[str, dict] = {}
    code = run_on_hosts(cluster, rolled, settings, redactor, lambda _h: [RestoreNode(old, new, kw, restored)],
                        f"kube-proxy back to {old}")
    if code == 0:
        output.message(f"rolled back: {len(rolled)} node(s) run {old} again", "yellow")
    else:
        output.message("rollback incomplete: see the failed nodes above", "bold red")


def print_outcomes(outcomes: list[NodeOutcome], output_mode: str) -> None:
    if output_mode == "json":
        print(json.dumps({"event": "proxy-switch", "nodes": [asdict(o) for o in outcomes]}))
        return
    table = Table(title="kube-proxy switch per node", box=None, header_style="bold")
    for col in ("host", "node", "result", "restart s", "gap ms", "failed probes", "error"):
        table.add_column(col)
    for o in outcomes:
        gap = o.gap or {}
        table.add_row(escape(o.host), escape(o.node), "ok" if o.ok else "failed", f"{o.restart_s:.1f}",
                      str(gap.get("longest_gap_ms", "-")), f"{gap.get('failures', '-')}/{gap.get('probes', '-')}",
                      escape(o.error))
    Console().print(table)


def status(sel: app.HostSelection, settings: app.RunSettings, output_mode: str) -> int:
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
                "modules_loaded": ctx.facts.get("modules_loaded", [])}
            return False

    report = app.run_hosts(cluster, hosts, settings, output, redactor, lambda _h: [linux.Facts(), Collect()],
                           "proxy status")
    rows = []
    for h in report.hosts:
        facts = collected.get(h.host.name, {})
        rows.append({"host": h.host.name, "node": h.host.node_name, "mode": mode, "scheduler": scheduler,
                     "modules": facts.get("modules_loaded", []), "virtual_servers": facts.get("virtual_servers"),
                     "error": h.detail if h.result == "failed" else ""})
    if output_mode == "json":
        print(json.dumps({"mode": mode, "scheduler": scheduler, "nodes": rows}, indent=2))
    else:
        print_status_table(mode, scheduler, rows)
    return 0 if not report.failed else EXIT_HOST_FAILED


def print_status_table(mode: str, scheduler: str, rows: list[dict], console: Console | None = None) -> None:
    table = Table(title=f"kube-proxy mode: {mode}" + (f" (scheduler {scheduler})" if scheduler else ""), box=None)
    for col in ("host", "node", "ipvs modules", "virtual servers", "error"):
        table.add_column(col)
    for r in rows:
        mods = ",".join(m for m in r["modules"] if m.startswith("ip_vs")) or "-"
        servers = str(r["virtual_servers"]) if r["virtual_servers"] is not None else "-"
        # Names and errors come from the inventory and the hosts: text, never markup.
        table.add_row(escape(r["host"]), escape(r["node"]), escape(mods), servers, escape(r["error"]))
    (console or Console()).print(table)
