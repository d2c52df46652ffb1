"""Fan-out over hosts: each host runs its own workflow on its own connection,
without waiting for the others; one host's failure never stops the rest
(unless --fail-fast). Ctrl-C stops new phases from starting, lets in-flight
ones end, deletes every token the run created, and reports each host's state.
"""

from __future__ import annotations

import resource
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodeboot.errors import NodebootError, PhaseError
from nodeboot.inventory import Host
from nodeboot.output import Output
from nodeboot.redact import Redactor
from nodeboot.steps.base import (
    CLUSTER_UNREAD,
    ClusterFacts,
    HostContext,
    PendingClusterFacts,
    Phase,
    PhaseOutcome,
    PhaseStatus,
    RunOptions,
    WorkflowResult,
    run_workflow,
)
from nodeboot.transport.factory import ConnectionDefaults, check_passwords, make_transport

if TYPE_CHECKING:
    from nodeboot.cluster.client import Cluster
    from nodeboot.cluster.nodes import NodeWatcher
    from nodeboot.cluster.tokens import TokenLedger


@dataclass
class HostReport:
    host: Host
    result: str  # ok | changed | failed | interrupted | not-started
    phase: str = ""
    detail: str = ""
    outcomes: list[PhaseOutcome] = field(default_factory=list)
    execs: int = 0
    connects: int = 0
    seconds: float = 0.0


@dataclass
class FleetReport:
    hosts: list[HostReport]
    seconds: float
    tokens_created: int
    tokens_left: list[str]

    @property
    def failed(self) -> list[HostReport]:
        return [h for h in self.hosts if h.result in ("failed", "interrupted", "not-started")]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.tokens_left else 0


# Descriptors a host in flight holds: its socket, the channel's select pipe (two),
# and room for the log and the API client (measured: 2.2 per host at --parallel 500).
FDS_PER_HOST = 4
FDS_BASE = 64


def fit_parallel_to_fds(parallel: int) -> tuple[int, str | None]:
    """Raise the soft RLIMIT_NOFILE for `parallel` hosts at once (the common default
    of 1024 is too low for a few hundred); if the hard limit forbids it, run fewer
    hosts at once and say so rather than fail hosts with EMFILE."""
    want = FDS_BASE + FDS_PER_HOST * parallel
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return parallel, None
    raised = want if hard == resource.RLIM_INFINITY else min(hard, want)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised >= want:
        return parallel, None
    fit = max(1, (raised - FDS_BASE) // FDS_PER_HOST)
    return fit, (f"--parallel {parallel} needs about {want} open files, and this process may have {raised} "
                 f"(ulimit -Hn): running {fit} hosts at a time")


class Fleet:
    def __init__(self, cluster: Cluster | None, options: RunOptions, output: Output, redactor: Redactor,
                 connection: ConnectionDefaults, parallel: int = 20, fail_fast: bool = False) -> None:
        self.cluster = cluster
        self.options = options
        self.output = output
        self.redactor = redactor
        self.connection = connection
        self.parallel = max(1, parallel)
        self.fail_fast = fail_fast
        self.cancelled = threading.Event()
        # A fleet with no cluster works on the hosts only: no tokens, no Node watch.
        self.tokens: TokenLedger | None = None
        self.watcher: NodeWatcher | None = None
        if cluster is not None:
            # Imported here: the kubernetes client costs ~150 ms of start-up that
            # host-only work never needs.
            from nodeboot.cluster.nodes import NodeWatcher
            from nodeboot.cluster.tokens import TokenLedger

            self.tokens = TokenLedger(cluster)
            self.watcher = NodeWatcher(cluster)
        if not self.options.run_id:  # the hosts' lock owner, and the run id of the events
            self.options.run_id = output.run_id

    def run(self, hosts: list[Host], workflow: Callable[[Host], list[Phase]], title: str,
            cluster_facts: ClusterFacts | PendingClusterFacts | None = None) -> FleetReport:
        """Every host's workflow; cluster facts still being read (PendingClusterFacts) are waited for
        by each host after its facts script, and if they fail no host goes further."""
        check_passwords(hosts)  # a missing password is a usage error, before any host starts
        started = time.monotonic()
        self.output.begin([h.name for h in hosts], title)
        reports: dict[str, HostReport] = {h.name: HostReport(h, "not-started") for h in hosts}
        previous = self._install_sigint()
        pending = (cluster_facts if isinstance(cluster_facts, PendingClusterFacts)
                   else PendingClusterFacts(known=cluster_facts))
        if self.watcher is not None:
            pending.when_cleared(self.watcher.start)
        try:
            at_once, warning = fit_parallel_to_fds(min(self.parallel, len(hosts)) or 1)
            if warning:
                self.output.message(warning, "yellow")
            with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="host") as pool:
                futures = {pool.submit(self._one_host, h, workflow, pending): h for h in hosts}
                for future in as_completed(futures):
                    report = future.result()
                    reports[report.host.name] = report
                    # Every host's result as an event, a host that never connected too.
                    self.output.event("host", report.host.name, status=report.result, phase=report.phase,
                                      detail=report.detail, seconds=round(report.seconds, 3))
                    if self.fail_fast and report.result == "failed":
                        self.output.message("--fail-fast: a host failed, stopping the others", "bold red")
                        self.cancelled.set()
        finally:
            self._restore_sigint(previous)
            if self.watcher is not None:
                self.watcher.stop()
            left = self.tokens.delete_all() if self.tokens is not None else []
            if self.tokens is not None and self.tokens.earlier_deleted:
                self.output.message(f"deleted bootstrap tokens an earlier run left for these nodes (killed before "
                                    f"its cleanup?): {', '.join(self.tokens.earlier_deleted)}", "yellow")
            self.output.end()
        for report in reports.values():
            if report.result == "not-started" and self.cancelled.is_set():
                report.result, report.detail = "interrupted", "not started"
        return FleetReport(list(reports.values()), time.monotonic() - started,
                           self.tokens.created if self.tokens is not None else 0, left)

    def _one_host(self, host: Host, workflow: Callable[[Host], list[Phase]],
                  cluster_facts: PendingClusterFacts) -> HostReport:
        started = time.monotonic()
        if self.cancelled.is_set():
            return HostReport(host, "interrupted", detail="not started")
        if cluster_facts.failed:  # the run ends with the cluster's error: no new host starts
            return HostReport(host, "not-started", detail=CLUSTER_UNREAD)

        def emit(kind: str, **fields) -> None:
            self.output.event(kind, host.name, **fields)

        try:
            transport = make_transport(host, self.connection, self.redactor)
        except NodebootError as exc:
            emit("phase", phase="connect", status="failed", detail=str(exc))
            return HostReport(host, "failed", "connect", self.redactor.redact(str(exc)))
        ctx = HostContext(host=host, transport=transport, cluster=self.cluster, watcher=self.watcher,
                          tokens=self.tokens, options=self.options, redactor=self.redactor,
                          cancelled=self.cancelled, emit=emit, pending=cluster_facts)
        try:
            try:
                transport.connect()
            except NodebootError as exc:
                error = PhaseError("connect", exc)
                emit("phase", phase="connect", status="failed", detail=self.redactor.redact(str(error)))
                return HostReport(host, "failed", "connect", self.redactor.redact(str(error)), [],
                                  transport.stats.execs, transport.stats.connects, time.monotonic() - started)
            result = run_workflow(workflow(host), ctx)
        finally:
            transport.close()
        if cluster_facts.failed:  # stopped after its facts script; the run's error says why
            return HostReport(host, "not-started", detail=CLUSTER_UNREAD, seconds=time.monotonic() - started)
        report = self._report(host, result, time.monotonic() - started)
        report.execs, report.connects = transport.stats.execs, transport.stats.connects
        return report

    def _report(self, host: Host, result: WorkflowResult, seconds: float) -> HostReport:
        if result.error is not None:
            return HostReport(host, "failed", result.error.phase, self.redactor.redact(str(result.error)),
                              result.outcomes, seconds=seconds)
        if result.interrupted:
            done = [o.phase for o in result.outcomes
                    if o.status in (PhaseStatus.CHANGED, PhaseStatus.OK, PhaseStatus.SKIPPED)]
            left = [o.phase for o in result.outcomes if o.interrupted]
            detail = (f"stopped by Ctrl-C after {done[-1] if done else 'nothing'}; "
                      f"not run: {', '.join(left)}")
            return HostReport(host, "interrupted", left[0] if left else "", detail, result.outcomes, seconds=seconds)
        detail = ""
        if self.options.dry_run:  # the summary names the phases; each one's would-lines are in its phase event
            would = [o.phase for o in result.outcomes if o.status is PhaseStatus.WOULD_RUN]
            detail = f"dry run: would run {', '.join(would)}" if would else "dry run: nothing to do"
        return HostReport(host, "changed" if result.changed else "ok", "", detail, result.outcomes, seconds=seconds)

    # -- Ctrl-C ---------------------------------------------------------------
    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame) -> None:
            if self.cancelled.is_set():
                raise KeyboardInterrupt
            self.cancelled.set()
            self.output.message("interrupt: letting running steps finish, starting no new ones "
                                "(Ctrl-C again to abort at once)", "bold magenta")

        return signal.signal(signal.SIGINT, handler)

    @staticmethod
    def _restore_sigint(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def summary_row(host: str, node: str, result: str, changed: bool, phase: str, detail: str, execs: int,
                seconds: float) -> dict[str, Any]:
    """One host's line of a run's summary, whichever engine ran it."""
    return {"host": host, "node": node, "result": result, "changed": changed, "phase": phase, "detail": detail,
            "execs": execs, "seconds": round(seconds, 3)}


def summary_totals(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """A run's counts from its summary rows, whichever engine ran it."""
    return {
        "ok": sum(1 for r in rows if r["result"] in ("ok", "changed")),
        "failed": sum(1 for r in rows if r["result"] == "failed"),
        "interrupted": sum(1 for r in rows if r["result"] in ("interrupted", "not-started")),
        "seconds": round(seconds, 3),
    }


def summarise(output: Output, report: FleetReport) -> None:
    rows = [summary_row(h.host.name, h.host.node_name, h.result, h.result == "changed", h.phase, h.detail,
                        h.execs, h.seconds)
            for h in report.hosts]
    totals = {**summary_totals(rows, report.seconds),
              "tokens_created": report.tokens_created, "tokens_left": report.tokens_left}
    output.summary(rows, totals)
    if report.tokens_left:
        output.message(f"could not delete bootstrap tokens {', '.join(report.tokens_left)}: "
                       "delete them with kubectl -n kube-system delete secret bootstrap-token-<id>", "bold red")
