"""The commands that work on hosts: join, reset, and what the cluster says of them (status, verify)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from nodeboot import validate
from nodeboot.cli import options as o
from nodeboot.errors import EXIT_HOST_FAILED, EXIT_USAGE
from nodeboot.output import escape
from nodeboot.request import HostArgs, InstallArgs, JoinRequest, ResetRequest, RunArgs

if TYPE_CHECKING:  # rich is imported by the function that prints the table
    from rich.console import Console


@click.command()
@o.hosts
@o.fleet_run
@o.api_server_endpoint
@o.ca_cert_hash("Pin the CA by hash instead of reading it from the kubeconfig.")
@click.option("--proxy-mode", type=click.Choice(validate.PROXY_MODES), help="Prepare hosts for this kube-proxy mode.")
@o.install_packages
@click.option("--node-name", help="Node name for a single HOST argument.")
@click.option("--node-ip", metavar="IP[,IP]",
              help="The kubelet's node IP for a single HOST argument: one address, or an IPv4 and an IPv6 "
                   "address for a dual-stack node.")
@click.option("--labels", metavar="K=V,...", help="Labels added to every host's own (a key in both: this one wins).")
@click.option("--taints", metavar="K[=V]:EFFECT,...",
              help="Taints added to every host's own (same key and effect: this wins).")
@o.seconds("--ready-timeout", "5m", 1, 3600, "How long each new node may take to become Ready.")
@o.discovery_timeout
@o.cni()
@o.install
@o.engine
def join(hosts: HostArgs, run: RunArgs, install: InstallArgs, node_name: str | None, node_ip: str | None,
         **flags) -> None:
    """Make hosts workers of the cluster (idempotent: joined hosts are left as they are)."""
    from nodeboot import app

    for flag, value in (("--node-name", node_name), ("--node-ip", node_ip)):
        if value and (len(hosts.hosts) != 1 or hosts.inventory):
            raise click.UsageError(f"{flag} goes with exactly one HOST argument")
    sys.exit(app.join(JoinRequest(hosts, run, install, node_name=node_name, node_ip=node_ip, **flags)))


def confirm_reset(question: str) -> None:
    """Returns only if the operator says yes on a terminal."""
    if not sys.stdin.isatty():
        raise click.UsageError("reset needs --yes when there is no terminal to confirm on")
    if not click.confirm(question, default=False):
        click.echo("nothing done", err=True)
        sys.exit(EXIT_USAGE)


@click.command()
@o.hosts
@o.fleet_run
@o.yes
@o.force
@o.delete_emptydir_data
@o.grace_period("Seconds each drained pod gets to stop (default: the pod's own).")
@o.seconds("--drain-timeout", "5m", 1, 86400, "How long the drain of each node may take.")
@click.option("--keep-modules-file", is_flag=True, help="Leave nodeboot's modules-load.d file in place.")
@o.engine
def reset(hosts: HostArgs, run: RunArgs, **flags) -> None:
    """Drain, kubeadm reset, clean what kubeadm leaves, and delete the Node."""
    from nodeboot import app

    sys.exit(app.reset(ResetRequest(hosts, run, **flags), confirm_reset))


@click.command()
@o.hosts
@o.run(o.kubeconfig, o.output(("human", "json", "yaml"),
                              help="human: a table; json or yaml: the same rows as one document."))
def status(hosts: HostArgs, run: RunArgs) -> None:
    """Each host's Node in the cluster: registered, Ready, labels, taints."""
    from nodeboot import app, request
    from nodeboot import status as status_mod

    rows = status_mod.node_status(app.select_hosts(request.selection(hosts)), run.kubeconfig)
    if run.output == "json":
        click.echo(json.dumps(rows, indent=2))
    elif run.output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(rows, sort_keys=False), nl=False)
    else:
        print_status_table(rows)
    sys.exit(0 if all(r["ready"] for r in rows) else EXIT_HOST_FAILED)


def print_status_table(rows: list[dict], console: Console | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("host", "node", "ready", "kubelet", "os", "taints"):
        table.add_column(col)
    for r in rows:
        ready = "[green]Ready[/]" if r["ready"] else ("[red]NotReady[/]" if r["registered"] else "[dim]absent[/]")
        # Names and taints come from the inventory and the cluster: text, never markup.
        table.add_row(escape(r["host"]), escape(r["node"]), ready, escape(r["kubelet"]), escape(r["os"]),
                      escape(", ".join(r["taints"])))
    (console or Console()).print(table)


@click.command()
@o.hosts
@o.run(o.kubeconfig,
       o.output(help="human: a table; json: every node's checks as one document."),
       click.option("--cert-warn-days", default=30, show_default=True, type=click.IntRange(0, 3650),
                    help="Fail when the kubelet client certificate expires within this many days."),
       o.parallel, o.connect_timeout, o.log_dir)
def verify(hosts: HostArgs, run: RunArgs, cert_warn_days: int) -> None:
    """Post-join checks per node: Ready, kube-proxy pod and mode, Service reachable, CNI, cgroups, cert, clock."""
    from nodeboot import request
    from nodeboot import verify as verify_mod

    sys.exit(verify_mod.run(request.selection(hosts), request.run_settings(hosts, run), run.output, cert_warn_days))


COMMANDS = (join, reset, status, verify)
