"""Option groups that more than one command takes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import click

from nodeboot import validate
from nodeboot.cluster.client import CONTEXT_ENV


def format_seconds(seconds: float) -> str:
    """10.0 -> '10s', 300.0 -> '5m', 5400.0 -> '1h30m', 0.5 -> '500ms'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    parts = [(whole // 3600, "h"), (whole % 3600 // 60, "m"), (whole % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


class Seconds(click.ParamType):
    """A time span as kubectl writes it ('10s', '5m', '1h30m', '500ms'), in seconds; a bare
    number is seconds, as these flags took before."""

    name = "duration"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = str(value).strip()
            try:
                seconds = float(text)
            except ValueError:
                try:
                    seconds = validate.duration_seconds(text)
                except ValueError as exc:
                    self.fail(str(exc), param, ctx)
        if not self.low <= seconds <= self.high:
            self.fail(f"{value} is not between {format_seconds(self.low)} and {format_seconds(self.high)}",
                      param, ctx)
        return seconds


def ipvs_options(f: Callable) -> Callable:
    """The KubeProxyConfiguration fields `proxy set-mode` and `proxy apply-config` can set."""
    decorators = [
        click.option("--scheduler", type=click.Choice(validate.IPVS_SCHEDULERS), help="IPVS scheduler."),
        click.option("--strict-arp/--no-strict-arp", default=None,
                     help="ipvs.strictARP: answer ARP only for addresses on the interface (MetalLB needs it)."),
        click.option("--sync-period", metavar="DURATION", help="ipvs.syncPeriod: most time between full syncs."),
        click.option("--min-sync-period", metavar="DURATION",
                     help="ipvs.minSyncPeriod: least time between syncs of the rules."),
        click.option("--exclude-cidrs", metavar="CIDRS",
                     help="ipvs.excludeCIDRs: comma-separated CIDRs kube-proxy leaves alone when it cleans."),
        click.option("--tcp-timeout", metavar="DURATION", help="ipvs.tcpTimeout: idle TCP session timeout."),
        click.option("--tcp-fin-timeout", metavar="DURATION",
                     help="ipvs.tcpFinTimeout: TCP session timeout after a FIN."),
        click.option("--udp-timeout", metavar="DURATION", help="ipvs.udpTimeout: UDP session timeout."),
        click.option("--rollout-timeout", default="5m", type=Seconds(1, 3600), show_default=True,
                     help="How long the kube-proxy DaemonSet may take to roll out."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


# Help for the options many commands share, said once here (each command declares the option itself).
COMMON_HELP = {
    "--kubeconfig": "kubeconfig file (default: the files $KUBECONFIG lists, merged, then ~/.kube/config).",
    "--output": "human: a live view on a terminal, plain lines otherwise; json: one event per line "
                "(docs/output.md).",
    "--parallel": "Hosts worked on at the same time.",
    "--connect-timeout": "How long to wait for a host's SSH or WinRM connection.",
    "--step-timeout": "How long one script on a host may run.",
    "--log-dir": "Each run's log and host transcripts go to a new directory under DIR "
                 "(default ~/.local/state/nodeboot/runs).",
    "--api-server-endpoint": "The API server endpoint nodes join (default: from cluster-info).",
}


def set_context(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--context: every cluster connection of this process, and nodeboot commands it starts
    (the Ansible engine's), use this kubeconfig context."""
    if value:
        os.environ[CONTEXT_ENV] = value


def context_option() -> click.Option:
    return click.Option(["--context"], metavar="NAME", expose_value=False, callback=set_context,
                        envvar=CONTEXT_ENV, help="The kubeconfig context to use (default: its current-context).")


def walk_commands(group: click.Group) -> Iterator[click.Command]:
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from walk_commands(command)


def finish_options(group: click.Group) -> None:
    """Every command that reads a kubeconfig takes --context too; shared options get their help."""
    for command in walk_commands(group):
        names = {opt for param in command.params for opt in param.opts}
        if "--kubeconfig" in names and "--context" not in names:
            at = next(i for i, p in enumerate(command.params) if "--kubeconfig" in p.opts)
            command.params.insert(at + 1, context_option())
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                param.help = next((COMMON_HELP[o] for o in param.opts if o in COMMON_HELP), None)
