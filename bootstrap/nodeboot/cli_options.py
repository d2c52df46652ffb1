"""Option groups that more than one command takes."""

from __future__ import annotations

from collections.abc import Callable

import click

from nodeboot import validate


def ipvs_options(f: Callable) -> Callable:
    """The KubeProxyConfiguration fields `proxy set-mode` and `proxy apply-config` can set."""
    decorators = [
        click.option("--scheduler", help="IPVS scheduler: " + "|".join(validate.IPVS_SCHEDULERS)),
        click.option("--strict-arp/--no-strict-arp", default=None),
        click.option("--sync-period", metavar="DURATION"),
        click.option("--min-sync-period", metavar="DURATION"),
        click.option("--exclude-cidrs", metavar="CIDRS"),
        click.option("--tcp-timeout", metavar="DURATION"),
        click.option("--tcp-fin-timeout", metavar="DURATION"),
        click.option("--udp-timeout", metavar="DURATION"),
        click.option("--rollout-timeout", default=300.0, type=click.FloatRange(1, 3600)),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f
