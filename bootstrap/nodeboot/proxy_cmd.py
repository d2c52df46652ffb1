"""`nodeboot proxy set-mode|status`: kube-proxy's mode across the cluster."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nodeboot import app, validate
from nodeboot.cluster import kubeproxy
from nodeboot.cluster.client import Cluster
from nodeboot.errors import EXIT_HOST_FAILED, UsageError
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


class ProxyCleanupOldMode(Phase):
    name = "proxy-cleanup"
    title = "remove the previous mode's rules"

    def satisfied(self, ctx: HostContext) -> str | None:
        return None if ctx.state.get("clean_modes") else "no previous mode to clean"

    def run(self, ctx: HostContext) -> bool:
        return ctx.script("proxy-cleanup.sh", {"NB_CLEAN_MODES": ctx.state["clean_modes"],
                                               "NB_REMOVE_MODULES_FILE": "0",
                                               "NB_MODULES_FILE": linux.MODULES_FILE}).changed


def set_mode(mode: str, sel: app.HostSelection, settings: app.RunSettings, kw: dict) -> int:
    change = parse_change(mode, kw)
    hosts = [h for h in app.select_hosts(sel) if h.os == "linux"]
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
    old_mode = config.get("mode") or "iptables"
    # 1. Every Linux node gets the new mode's prerequisites before kube-proxy switches.
    code, _ = app.run_fleet("proxy-prereqs", sel, settings, hosts=hosts, redactor=redactor)
    if code != 0:
        output.message("kube-proxy left unchanged: some nodes lack the prerequisites (see above)", "bold red")
        return EXIT_HOST_FAILED
    # 2. The config, keeping every other field, then a rolling restart.
    new_config = kubeproxy.apply_change(config, change)
    changed = kubeproxy.write_config(cluster, cm, new_config)
    if changed:
        generation = kubeproxy.restart_daemonset(cluster)
        output.message(f"kube-proxy config: mode {old_mode} -> {mode}; rolling out the DaemonSet")
        kubeproxy.wait_rollout(cluster, generation, timeout=kw.get("rollout_timeout", 300.0))
        output.message("kube-proxy rolled out", "green")
    else:
        output.message(f"kube-proxy already runs mode {mode} with these settings: nothing to change", "green")
    # 3. What the old mode left on the nodes.
    if changed and old_mode != mode:
        return _cleanup(cluster, hosts, settings, redactor, {"clean_modes": old_mode})
    return 0


def _cleanup(cluster: Cluster, hosts, settings: app.RunSettings, redactor: Redactor, state_extra: dict) -> int:
    from nodeboot.runner import Fleet, summarise

    output = app.make_output(settings, redactor)
    fleet = Fleet(cluster, settings.options, output, redactor, settings.connection, settings.parallel)
    report = fleet.run(hosts, lambda _h: [linux.Facts(), ProxyCleanupOldMode()], "clean previous proxy mode",
                       {**app.cluster_state(cluster, settings.options, need_join=False), **state_extra})
    summarise(output, report)
    return report.exit_code


def status(sel: app.HostSelection, settings: app.RunSettings, output_mode: str) -> int:
    cluster = Cluster.from_kubeconfig(settings.kubeconfig)
    _, config = kubeproxy.read_config(cluster)
    mode = config.get("mode") or "iptables"
    scheduler = (config.get("ipvs") or {}).get("scheduler", "")
    hosts = [h for h in app.select_hosts(sel) if h.os == "linux"]
    from nodeboot.runner import Fleet

    settings.output = "quiet"  # the per-host events are not wanted here, only the facts (they stay in the log)
    redactor = Redactor()
    output = app.make_output(settings, redactor)
    fleet = Fleet(cluster, settings.options, output, redactor, settings.connection, settings.parallel)
    collected: dict[str, dict] = {}

    class Collect(Phase):
        name = "ipvs-status"
        reads_only = True

        def run(self, ctx: HostContext) -> bool:
            collected[ctx.host.name] = ctx.script("proxy-status.sh", {}).facts | {
                "modules_loaded": ctx.facts.get("modules_loaded", [])}
            return False

    report = fleet.run(hosts, lambda _h: [linux.Facts(), Collect()], "proxy status",
                       app.cluster_state(cluster, settings.options, need_join=False))
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
