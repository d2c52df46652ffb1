"""The glue between the command line and the workflows: builds the run's
hosts, cluster connection, output and fleet, and returns an exit code.

The cluster modules (and with them the kubernetes client) are imported by the
functions that talk to a cluster: importing this module, selecting hosts and
checking flags load no kubernetes client."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeboot import inventory, runlog, validate
from nodeboot.errors import EXIT_USAGE, UsageError
from nodeboot.inventory import Host
from nodeboot.output import Output
from nodeboot.redact import Redactor
from nodeboot.runner import Fleet, FleetReport, summarise
from nodeboot.steps.base import ClusterFacts, PendingClusterFacts, Phase, RunOptions
from nodeboot.transport.factory import ConnectionDefaults, check_passwords
from nodeboot.workflows import phases_for, workflow_for

if TYPE_CHECKING:
    from nodeboot.cluster.client import Cluster
    from nodeboot.request import JoinRequest, ResetRequest


@dataclass
class HostSelection:
    inventory_file: str | None = None
    limit: str | None = None
    host_args: tuple[str, ...] = ()
    os_name: str = "linux"
    cli_vars: dict = field(default_factory=dict)  # ansible_* / nodeboot_* from flags


@dataclass
class RunSettings:
    kubeconfig: str | None = None
    output: str = "human"
    log_dir: str | None = None  # runs get their own directories under it
    keep_runs: int | None = None  # None: $NODEBOOT_KEEP_RUNS, else runlog.DEFAULT_KEEP_RUNS
    run_dir: Path | None = None  # made by the run's first make_output
    parallel: int = 20
    fail_fast: bool = False
    connection: ConnectionDefaults = field(default_factory=ConnectionDefaults)
    options: RunOptions = field(default_factory=RunOptions)
    notices: list[str] = field(default_factory=list)  # warnings from the flags, said by the run's output


def select_hosts(sel: HostSelection) -> list[Host]:
    hosts: list[Host] = []
    if sel.inventory_file:
        hosts += inventory.load_inventory(sel.inventory_file)
        overrides = {k: v for k, v in sel.cli_vars.items() if v is not None and k.startswith("nodeboot_")}
        if overrides:
            source = sel.inventory_file
            hosts = [inventory.host_from_vars(source, h.name, inventory.with_command_line(source, h.name, h.vars,
                                                                                          overrides), h.groups)
                     for h in hosts]
    for arg in sel.host_args:
        hosts.append(inventory.host_from_arg(arg, sel.os_name, sel.cli_vars))
    if not hosts:
        raise UsageError("no hosts: give HOST arguments or -i INVENTORY")
    hosts = inventory.apply_limit(hosts, sel.limit)
    seen: dict[str, str] = {}
    for host in hosts:
        if host.node_name in seen:
            raise UsageError(f"hosts {seen[host.node_name]} and {host.name} would both be node {host.node_name}")
        seen[host.node_name] = host.name
    return hosts


def make_output(settings: RunSettings, redactor: Redactor) -> Output:
    """The run's output, logging to a new private directory under --log-dir (default
    ~/.local/state/nodeboot/runs); the oldest runs beyond --keep-runs are deleted."""
    if settings.run_dir is None:  # a command's later stages (proxy set-mode's) log to the same run
        keep = runlog.keep_runs(settings.keep_runs)
        base = Path(settings.log_dir) if settings.log_dir else runlog.default_base()
        settings.run_dir = runlog.new_run_dir(base)
        runlog.prune(base, keep, settings.run_dir)
    try:
        output = Output(redactor=redactor, mode=settings.output, log_dir=settings.run_dir)
    except OSError as exc:
        raise UsageError(f"log directory {settings.run_dir}: cannot write the run log: "
                         f"{exc.strerror or exc}") from None
    while settings.notices:  # once, by the run's first output: with --output json an event, not stderr text
        output.message(settings.notices.pop(0), "yellow")
    return output


def cluster_facts(cluster: Cluster, options: RunOptions, need_join: bool) -> ClusterFacts:
    """What every host of a run shares: the server's version, and for a join the endpoint and CA pin."""
    from nodeboot.cluster import tokens

    major, minor, git_version = cluster.version
    if not need_join:
        return ClusterFacts(server_minor=(major, minor), server_version=git_version)
    pins, source = tokens.pins_and_source(cluster, options.ca_cert_hashes)
    info = tokens.read_cluster_info(cluster)  # one read serves the endpoint and the CA pin
    return ClusterFacts(server_minor=(major, minor), server_version=git_version,
                        endpoint=tokens.join_endpoint(cluster, options.api_server_endpoint, info),
                        ca_hashes=tuple(pins), ca_problem=tokens.ca_pin_problem(cluster, pins, source, info))


def run_hosts(cluster: Cluster, hosts: list[Host], settings: RunSettings, output: Output, redactor: Redactor,
              workflow: Callable[[Host], list[Phase]], title: str,
              facts: ClusterFacts | PendingClusterFacts | None = None) -> FleetReport:
    """A workflow over the hosts with the command line's connection, parallelism and --fail-fast;
    the cluster's facts are read for it, beside the hosts' facts scripts, unless given (a join's
    carry its endpoint and CA pin). If they cannot be read, the hosts stop after their facts
    scripts (which only read) and the reader's error is raised here."""
    fleet = Fleet(cluster, settings.options, output, redactor, settings.connection, settings.parallel,
                  settings.fail_fast)
    pending = facts or PendingClusterFacts(lambda: cluster_facts(cluster, settings.options, need_join=False))
    report = fleet.run(hosts, workflow, title, pending)
    if isinstance(pending, PendingClusterFacts):
        pending.raise_failure()
    return report


def run_fleet(action: str, sel: HostSelection, settings: RunSettings, hosts: list[Host] | None = None,
              redactor: Redactor | None = None) -> tuple[int, FleetReport | None]:
    from nodeboot.cluster.client import Cluster

    redactor = redactor or Redactor()
    hosts = hosts if hosts is not None else select_hosts(sel)
    check_skip_phases(action, hosts, settings.options.skip_phases)
    check_passwords(hosts)
    cluster = Cluster.from_kubeconfig(settings.kubeconfig)  # reads the file only: no request yet
    output = make_output(settings, redactor)  # a bad --log-dir is found before the cluster is asked
    facts = PendingClusterFacts(lambda: run_facts(action, cluster, settings.options, hosts, output),
                                gate=proxy_gate(action, cluster, settings.options, hosts, output))
    title = f"nodeboot {action}" + (" (dry run)" if settings.options.dry_run else "")
    report = run_hosts(cluster, hosts, settings, output, redactor, workflow_for(action), title, facts)
    summarise(output, report)
    return report.exit_code, report


def proxy_gate(action: str, cluster: Cluster, options: RunOptions, hosts: list[Host],
               output: Output) -> Callable[[], None] | None:
    """A join's question before any other to the cluster: the proxy modes its hosts ask for,
    against the server's version (a mode it cannot run is a usage error); what it warns about
    is said at once."""
    if action != "join":
        return None

    def gate() -> None:
        for notice in check_proxy_modes(cluster, options, hosts):
            output.message(notice, "yellow")

    return gate


def run_facts(action: str, cluster: Cluster, options: RunOptions, hosts: list[Host], output: Output) -> ClusterFacts:
    """A join's or reset's cluster side before its hosts' phases, once the proxy gate has
    passed: the facts every host shares, and for Windows hosts the cluster side reconciled
    once. Runs while the hosts connect and gather their facts (and the Node watch lists)."""
    facts = cluster_facts(cluster, options, need_join=action == "join")
    if action == "join" and any(h.os == "windows" for h in hosts):  # once per run, not per Windows host
        from nodeboot.steps import windows

        once = windows.cluster_side_once(cluster, options, lambda change: output.message(f"windows-cluster: {change}"))
        facts = dataclasses.replace(facts, windows_cluster=once)
    return facts


def check_proxy_modes(cluster: Cluster, options: RunOptions, hosts: list[Host]) -> list[str]:
    """Before the cluster is asked anything else: the kube-proxy modes the hosts ask for, against the
    server's version, by the rule `proxy set-mode` uses (a mode it cannot run is a usage error);
    returns what to warn about."""
    asked = sorted({m for m in (h.proxy_mode or options.proxy_mode for h in hosts) if m is not None})
    if not asked:
        return []  # nothing to judge: the version is read with the cluster's other facts
    from nodeboot.cluster import kubeproxy

    server = cluster.version[:2]
    notices = []
    for mode in asked:
        gates = kubeproxy.gates_for_mode(mode, server)
        if mode != "ipvs":
            continue
        missing = kubeproxy.missing_gates(kubeproxy.read_config(cluster)[1], gates) if gates else {}
        if missing:
            notices.append(f"IPVS mode is off by default in 1.{server[1]} and kube-proxy's config lacks the "
                           f"{', '.join(missing)} feature gate: nodeboot proxy set-mode ipvs sets it")
        else:
            notices += filter(None, [kubeproxy.ipvs_notice(server)])
    return notices


def parse_skip_phases(value: str | None) -> frozenset[str]:
    return frozenset(p.strip() for p in (value or "").split(",") if p.strip())


def check_skip_phases(action: str, hosts: list[Host], skip: frozenset[str]) -> None:
    """--skip-phases names only phases of this action's workflow (for these hosts' OSes):
    a typo must not silently run the phase it meant to skip."""
    names = list(dict.fromkeys(p.name for os_name in sorted({h.os for h in hosts})
                               for p in phases_for(os_name, action)))  # an unknown (OS, action): an error
    if not skip:
        return
    unknown = sorted(skip - set(names))
    if unknown:
        raise UsageError(f"--skip-phases: no phase {', '.join(unknown)} in {action}; its phases are: "
                         f"{', '.join(names)}")


def check_flag(flag: str, check: Callable[[Any], Any], value: Any) -> Any:
    """A flag's value through its validator; a bad one is a one-line usage error naming the flag."""
    if value is None:
        return None
    try:
        return check(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def check_choice(flag: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    return check_flag(flag, lambda v: validate.one_of(v, choices), value)


def join(req: JoinRequest) -> int:
    """`nodeboot join`: the flags checked, then the hosts joined by the engine asked for."""
    from nodeboot import request

    proxy_mode = check_choice("--proxy-mode", req.proxy_mode, validate.PROXY_MODES)
    extra_vars = {"nodeboot_labels": req.labels, "nodeboot_taints": req.taints, **request.install_vars(req.install)}
    if req.node_name:
        extra_vars["nodeboot_node_name"] = req.node_name
    if req.node_ip:
        extra_vars["nodeboot_node_ip"] = req.node_ip
    discovery_timeout = check_flag("--discovery-timeout", validate.duration, req.discovery_timeout)
    settings = request.run_settings(
        req.hosts, req.run, api_server_endpoint=req.api_server_endpoint, proxy_mode=proxy_mode,
        install_packages=req.install_packages, ready_timeout=req.ready_timeout, discovery_timeout=discovery_timeout,
        ca_cert_hashes=tuple(req.ca_cert_hashes), cni=req.cni, artifacts_url=req.install.artifacts_url)
    sel = request.selection(req.hosts, extra_vars)
    if req.engine == "ansible":
        from nodeboot import ansible_engine

        return ansible_engine.run("join", sel, settings)
    return run_fleet("join", sel, settings)[0]


def reset(req: ResetRequest, confirm: Callable[[str], None]) -> int:
    """`nodeboot reset`; confirm(question) returns only if the operator said yes (not asked with
    --yes or --dry-run)."""
    from nodeboot import request

    sel = request.selection(req.hosts)
    hosts = select_hosts(sel)
    if not req.yes and not req.run.dry_run:
        confirm(f"Reset and remove {len(hosts)} node(s): {', '.join(h.name for h in hosts)}?")
    settings = request.run_settings(req.hosts, req.run, force=req.force, drain_timeout=req.drain_timeout,
                                    remove_modules_file=not req.keep_modules_file,
                                    delete_emptydir_data=req.delete_emptydir_data, grace_period=req.grace_period)
    if req.engine == "ansible":
        from nodeboot import ansible_engine

        return ansible_engine.run("reset", sel, settings)
    return run_fleet("reset", sel, settings, hosts=hosts)[0]


__all__ = ["EXIT_USAGE", "HostSelection", "RunSettings", "join", "reset", "run_fleet", "select_hosts",
           "workflow_for"]
