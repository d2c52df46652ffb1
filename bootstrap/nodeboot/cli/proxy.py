"""`nodeboot proxy set-mode|status|apply-config`: flags in, plans, questions and tables out;
the work is proxy_cmd's."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from nodeboot import validate
from nodeboot.cli import options as o
from nodeboot.cli.plumbing import emit
from nodeboot.errors import EXIT_HOST_FAILED, UsageError
from nodeboot.output import escape
from nodeboot.request import HostArgs, IpvsArgs, RunArgs

if TYPE_CHECKING:  # rich is imported by the functions that print tables
    from rich.console import Console


@click.group()
def proxy() -> None:
    """kube-proxy's mode across the cluster: IPVS, nftables or iptables."""


@proxy.command("set-mode")
@click.argument("mode", type=click.Choice(validate.PROXY_MODES), metavar="MODE")
@o.hosts
@o.run(o.kubeconfig)
@o.ipvs
@o.install_packages
@o.run(o.parallel, o.output(), o.log_dir, o.connect_timeout, o.step_timeout,
       o.dry_run("Print the plan (nodes, missing prerequisites, cleanup); change nothing."))
@o.yes
@click.option("--max-unavailable", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Nodes switched at the same time.")
@click.option("--no-rollback", is_flag=True, help="On a failed node, stop without restoring the old mode.")
@click.option("--probe-interval-ms", default=100, show_default=True, type=click.IntRange(20, 5000),
              help="How often each node probes a ClusterIP during its switch (the traffic gap).")
@o.seconds("--verify-timeout", "30s", 1, 600,
           "How long a node's new kube-proxy may take to report its mode and serve the Service.")
def proxy_set_mode(mode: str, hosts: HostArgs, run: RunArgs, ipvs: IpvsArgs, install_packages: bool, **flags) -> None:
    """Prepare every Linux node for MODE, then switch kube-proxy node by node, verifying and cleaning each.

    MODE is iptables, ipvs or nftables.
    """
    from nodeboot import proxy_cmd, request

    req = proxy_cmd.SwitchRequest(mode, ipvs, dry_run=run.dry_run, **flags)
    settings = request.run_settings(hosts, run, install_packages=install_packages)
    show = proxy_cmd.SwitchView(plan=print_plan, confirm=confirm, outcomes=print_outcomes)
    sys.exit(proxy_cmd.set_mode(req, request.selection(hosts), settings, show))


def confirm(question: str, yes: bool) -> None:
    """Returns only if --yes, or the operator says yes on a terminal."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("proxy set-mode needs --yes when there is no terminal to confirm on")
    if not click.confirm(question, default=False):
        raise UsageError("nothing done")


def print_plan(old: str, new: str, hosts, plans: dict, warnings: list[str], max_unavailable: int,
               output_mode: str = "human") -> None:
    from nodeboot.cluster import kubeproxy

    if output_mode == "json":
        print(json.dumps({"event": "proxy-plan", "from": old, "to": new, "max_unavailable": max_unavailable,
                          "cleanup": kubeproxy.cleanup_plan(old, new), "warnings": warnings,
                          "nodes": [{"host": h.name, "node": h.node_name, **plans[h.name]} for h in hosts]}))
        return
    from rich.console import Console
    from rich.table import Table

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


def print_outcomes(outcomes: list, output_mode: str) -> None:
    if output_mode == "json":
        print(json.dumps({"event": "proxy-switch", "nodes": [asdict(o) for o in outcomes]}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="kube-proxy switch per node", box=None, header_style="bold")
    for col in ("host", "node", "result", "restart s", "gap ms", "failed probes", "error"):
        table.add_column(col)
    for outcome in outcomes:
        gap = outcome.gap or {}
        table.add_row(escape(outcome.host), escape(outcome.node), "ok" if outcome.ok else "failed",
                      f"{outcome.restart_s:.1f}", str(gap.get("longest_gap_ms", "-")),
                      f"{gap.get('failures', '-')}/{gap.get('probes', '-')}", escape(outcome.error))
    Console().print(table)


@proxy.command("status")
@o.hosts
@o.run(o.kubeconfig, o.output(help="human: a table; json: every node's state as one document."),
       o.connect_timeout, o.step_timeout)
def proxy_status(hosts: HostArgs, run: RunArgs) -> None:
    """Per node: kube-proxy's configured mode, the IPVS modules, the virtual-server count."""
    from nodeboot import proxy_cmd, request

    found = proxy_cmd.status(request.selection(hosts), request.run_settings(hosts, run))
    if run.output == "json":
        print(json.dumps({"mode": found.mode, "scheduler": found.scheduler, "nodes": found.rows}, indent=2))
    else:
        print_status_table(found.mode, found.scheduler, found.rows)
    sys.exit(EXIT_HOST_FAILED if found.failed else 0)


def print_status_table(mode: str, scheduler: str, rows: list[dict], console: Console | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"kube-proxy mode: {mode}" + (f" (scheduler {scheduler})" if scheduler else ""), box=None)
    for col in ("host", "node", "ipvs modules", "virtual servers", "error"):
        table.add_column(col)
    for r in rows:
        mods = ",".join(m for m in r["modules"] if m.startswith("ip_vs")) or "-"
        servers = str(r["virtual_servers"]) if r["virtual_servers"] is not None else "-"
        # Names and errors come from the inventory and the hosts: text, never markup.
        table.add_row(escape(r["host"]), escape(r["node"]), escape(mods), servers, escape(r["error"]))
    (console or Console()).print(table)


@proxy.command("apply-config", hidden=True)
@click.argument("mode")
@o.ipvs
@o.check
@o.kubeconfig
def proxy_apply_config(mode: str, ipvs: IpvsArgs, check: bool, kubeconfig: str | None) -> None:
    """Only the cluster half of `proxy set-mode`: patch kube-proxy's config.conf and roll the DaemonSet.
    The nodes' prerequisites and the old mode's cleanup are the playbook's (or set-mode's) job."""
    from nodeboot import proxy_cmd

    emit(proxy_cmd.apply_config(mode, ipvs, check, kubeconfig))
