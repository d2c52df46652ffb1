"""Every option nodeboot's commands share, declared once here and reused by each command.

An option group (the hosts, the run, the install flags, the IPVS fields) hands its command one
typed value (request.HostArgs, ...) instead of a dozen keyword arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import click

from nodeboot import node_install, validate
from nodeboot.request import HostArgs, InstallArgs, IpvsArgs, RunArgs

# Kept here, not imported from nodeboot.cluster.client: parsing a command line loads no kubernetes client.
CONTEXT_ENV = "NODEBOOT_CONTEXT"
Decorator = Callable[[Callable], Callable]


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


def stack(*decorators: Decorator) -> Decorator:
    """Options applied top to bottom, as they would be written one above the other."""
    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


def grouped(name: str, kind: type, *decorators: Decorator) -> Decorator:
    """The options, handed to the command as one `kind` (a dataclass whose fields are their names).
    A command may take a group's options in more than one place (to keep its help's order): the
    outer place makes the value, the inner ones add their fields to it."""
    fields = {f.name for f in dataclasses.fields(kind)}

    def apply(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(*args: Any, **kw: Any) -> Any:
            given = {k: kw.pop(k) for k in list(kw) if k in fields}
            kw[name] = dataclasses.replace(kw[name], **given) if name in kw else kind(**given)
            return f(*args, **kw)
        return stack(*decorators)(command)
    return apply


# ---- the cluster --------------------------------------------------------------------------

def set_context(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--context: every cluster connection of this process, and nodeboot commands it starts
    (the Ansible engine's), use this kubeconfig context."""
    if value:
        os.environ[CONTEXT_ENV] = value


# Every command that reads a kubeconfig takes --context too.
kubeconfig = stack(
    click.option("--kubeconfig", metavar="FILE",
                 help="kubeconfig file (default: the files $KUBECONFIG lists, merged, then ~/.kube/config)."),
    click.option("--context", metavar="NAME", expose_value=False, callback=set_context, envvar=CONTEXT_ENV,
                 help="The kubeconfig context to use (default: its current-context)."),
)
api_server_endpoint = click.option("--api-server-endpoint", metavar="HOST:PORT",
                                   help="Endpoint nodes join (default: from cluster-info).")


def check_ca_hash(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not value.startswith("sha256:") or len(value) != 71:
            raise click.UsageError(f"--ca-cert-hash {value!r}: expected sha256:<64 hex digits>")
    return values


def ca_cert_hash(help: str) -> Decorator:
    return click.option("--ca-cert-hash", "ca_cert_hashes", multiple=True, metavar="sha256:HEX", help=help,
                        callback=check_ca_hash)


discovery_timeout = click.option("--discovery-timeout", default="5m0s", show_default=True, metavar="DURATION",
                                 help="How long kubeadm join may take to reach and verify the API server.")
def cni(help: str = "Windows: the cluster's CNI.") -> Decorator:
    return click.option("--cni", type=click.Choice(["flannel", "calico"]), default=None, help=help)
install_packages = click.option("--install-packages", is_flag=True,
                                help="Install ipset/ipvsadm with the host's package manager.")
engine = click.option("--engine", type=click.Choice(["nodeboot", "ansible"]), default="nodeboot", show_default=True,
                      help="Who does the work: nodeboot itself, or ansible-playbook with nodeboot's playbooks.")
yes = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
check = click.option("--check", is_flag=True, help="Report what would change; change nothing.")


def output(choices: tuple[str, ...] = ("human", "json"), default: str = "human", help: str | None = None,
           show_default: bool = False) -> Decorator:
    """-o/--output: the choices and their meaning are the command's own."""
    return click.option("-o", "--output", "output", type=click.Choice(list(choices)), default=default,
                        show_default=show_default, help=help or "human: a live view on a terminal, plain lines "
                                                                "otherwise; json: one event per line "
                                                                "(docs/output.md).")


def dry_run(help: str) -> Decorator:
    return click.option("--dry-run", is_flag=True, help=help)


def seconds(name: str, default: str, low: float, high: float, help: str) -> Decorator:
    """A time limit (`--X-timeout` and the like): a duration such as 10s, 5m or 1h30m."""
    return click.option(name, default=default, show_default=True, type=Seconds(low, high), help=help)


def timeout(high: float, help: str) -> Decorator:
    """The plumbing commands' one time limit."""
    return seconds("--timeout", "5m", 1, high, help)


# ---- drain (reset, and the playbooks' node drain) ------------------------------------------

force = click.option("--force", is_flag=True, help="Drain even pods that no controller manages.")
delete_emptydir_data = click.option("--delete-emptydir-data", is_flag=True,
                                    help="Drain even pods with emptyDir volumes (their data goes).")


def grace_period(help: str) -> Decorator:
    return click.option("--grace-period", type=click.IntRange(0, 86400), default=None, help=help)


# ---- the hosts and the run ------------------------------------------------------------------

def inventory(help: str = "Ansible YAML inventory.", dest: str = "inventory") -> Decorator:
    return click.option("-i", "--inventory", dest, metavar="FILE", help=help)


def user(help: str = "Login user for HOST arguments.") -> Decorator:
    return click.option("--user", help=help)


password_env = click.option("--password-env", metavar="VAR", help="Environment variable holding the password.")
winrm_ca = click.option("--winrm-ca", type=click.Path(dir_okay=False), help="CA that signed the WinRM certificates.")
insecure_skip_tls_verify = click.option("--insecure-skip-tls-verify", is_flag=True,
                                        help="Do not verify WinRM TLS certificates.")
parallel = click.option("--parallel", default=20, show_default=True, type=click.IntRange(1, 2000),
                        help="Hosts worked on at the same time.")
log_dir = click.option("--log-dir", metavar="DIR", help="Each run's log and host transcripts go to a new directory "
                                                        "under DIR (default ~/.local/state/nodeboot/runs).")
connect_timeout = seconds("--connect-timeout", "10s", 0.1, 600,
                          "How long to wait for a host's SSH or WinRM connection.")
step_timeout = seconds("--step-timeout", "10m", 1, 86400, "How long one script on a host may run.")

hosts = grouped(
    "hosts", HostArgs,
    click.argument("hosts", nargs=-1, metavar="[USER@]HOST[:PORT]..."),
    inventory(),
    click.option("--limit", metavar="PATTERN", help="Only hosts or groups matching (Ansible syntax)."),
    click.option("--os", "os_name", type=click.Choice(validate.OS_NAMES), default="linux", show_default=True,
                 help="OS of HOST arguments."),
    user(),
    click.option("--ssh-key", type=click.Path(dir_okay=False), help="SSH private key file."),
    password_env,
    click.option("--known-hosts", type=click.Path(dir_okay=False), help="known_hosts file (default ~/.ssh)."),
    click.option("--accept-new-host-keys", is_flag=True, help="Trust and record keys of hosts not yet known."),
    click.option("--become", is_flag=True, help="Use sudo on the host (password from --password-env)."),
    winrm_ca,
    insecure_skip_tls_verify,
)


def run(*decorators: Decorator) -> Decorator:
    """The run's options a command takes (each declared above), as one RunArgs."""
    return grouped("run", RunArgs, *decorators)


fleet_run = run(
    kubeconfig,
    parallel,
    click.option("--fail-fast", is_flag=True, help="Stop all hosts when one fails."),
    dry_run("Show each host's phases and whether they would run."),
    click.option("--skip-phases", metavar="LIST", help="Comma-separated phase names to skip."),
    output(show_default=True),
    log_dir,
    click.option("--keep-runs", type=click.IntRange(0), metavar="N",
                 help="Keep the newest N run directories there, delete older ones "
                      "(default $NODEBOOT_KEEP_RUNS, else 50; 0 keeps all)."),
    connect_timeout,
    step_timeout,
)

install = grouped(
    "install", InstallArgs,
    click.option("--artifacts-url", metavar="URL",
                 help="Where nodes download their binaries (Windows; Linux with --install), upstream's layout."),
    click.option("--install", is_flag=True,
                 help="Linux: install containerd, runc, the CNI plugins, kubelet and kubeadm on hosts "
                      "that lack them, from --artifacts-url (inventory: nodeboot_install: true)."),
    click.option("--artifacts-ca", metavar="FILE",
                 help="CA bundle the hosts check --artifacts-url's certificate against."),
    click.option("--kubernetes-version", metavar="vX.Y.Z", help="With --install (default: the API server's)."),
    click.option("--containerd-version", metavar="X.Y.Z",
                 help=f"With --install (default {node_install.DEFAULT_CONTAINERD_VERSION})."),
    click.option("--cni-version", metavar="X.Y.Z",
                 help=f"CNI plugins, with --install (default {node_install.DEFAULT_CNI_VERSION})."),
    click.option("--runc-version", metavar="X.Y.Z",
                 help=f"With --install (default {node_install.DEFAULT_RUNC_VERSION})."),
    click.option("--install-kubectl", is_flag=True, help="With --install: kubectl too."),
    click.option("--registry-mirror", "registry_mirrors", multiple=True, metavar="REGISTRY=URL",
                 help="With --install: containerd pulls REGISTRY's images through URL (repeatable)."),
    click.option("--registry-ca", metavar="FILE", help="With --install: the CA of the registry mirrors."),
    click.option("--disable-swap", is_flag=True, help="With --install: turn swap off now and across reboots."),
    click.option("--kubelet-config", metavar="FILE",
                 help="YAML mapping of KubeletConfiguration fields, applied through kubeadm patches "
                      "(inventory: nodeboot_kubelet_config)."),
)


# The KubeProxyConfiguration fields `proxy set-mode` and `proxy apply-config` can set, as one IpvsArgs.
ipvs = grouped(
        "ipvs", IpvsArgs,
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
        seconds("--rollout-timeout", "5m", 1, 3600, "How long the kube-proxy DaemonSet may take to roll out."),
)


def walk_commands(group: click.Group) -> Iterator[click.Command]:
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from walk_commands(command)
