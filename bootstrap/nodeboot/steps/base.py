"""The phase interface every workflow is built from (after k0sctl and kubeadm).

A phase has a name (kubeadm-style, so errors read "error execution phase
kubeadm-join: ...", and --skip-phases can name it), a `satisfied` check that
reads the facts gathered up front (which is what makes a re-run a no-op), and
`run`. A dry run asks `satisfied`, then, for a phase whose host script has a
dry-run mode, sends that script with NB_DRY_RUN=1 (it reads the host and says
what it would do, changing nothing) and reports the script's would-lines; any
other phase reports what it would do from the facts and the cluster's answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from nodeboot.errors import PhaseError, ScriptError, UsageError
from nodeboot.facts import HostFacts, LinuxFacts, WindowsFacts
from nodeboot.scripts import ScriptResult, parse_result, script_text
from nodeboot.transport import ExecResult, ScriptCall

if TYPE_CHECKING:
    from nodeboot.cluster.client import Cluster
    from nodeboot.cluster.nodes import NodeWatcher
    from nodeboot.cluster.tokens import BootstrapToken, TokenLedger
    from nodeboot.cluster.windows import Plan as WindowsPlan
    from nodeboot.inventory import Host
    from nodeboot.redact import Redactor
    from nodeboot.steps.linux_install import InstallPlan
    from nodeboot.transport import Transport


@dataclass
class RunOptions:
    """What the command line asked for, shared by every host of a run."""

    dry_run: bool = False
    skip_phases: frozenset[str] = frozenset()
    api_server_endpoint: str | None = None
    proxy_mode: str | None = None
    install_packages: bool = False
    ready_timeout: float = 300.0
    drain_timeout: float = 300.0
    force: bool = False
    step_timeout: float = 600.0
    discovery_timeout: str = "5m0s"
    run_id: str = ""  # set by the Fleet; the host scripts log it
    cni: str | None = None  # the cluster's CNI, for the Windows side (flannel | calico)
    artifacts_url: str | None = None  # where Windows hosts download kubelet/kubeadm from
    ca_cert_hashes: tuple[str, ...] = ()  # --ca-cert-hash: the CA pin given, instead of the kubeconfig's
    remove_modules_file: bool = True  # reset: also remove the IPVS modules-load.d file
    delete_emptydir_data: bool = False  # reset's drain
    grace_period: int | None = None  # reset's drain: seconds, or each pod's own


@dataclass(frozen=True)
class WindowsClusterOnce:
    """The run's one reconcile of the Windows cluster side: what it changed, or why it failed."""

    changes: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ClusterFacts:
    """The cluster-side facts of a run, read once before the hosts fan out, shared by every host."""

    server_minor: tuple[int, int] = (0, 0)
    server_version: str = ""
    endpoint: str = ""  # a join's API server endpoint
    ca_hashes: tuple[str, ...] = ()  # a join's CA pin
    ca_problem: str | None = None  # why the CA pin does not match the cluster's CA, if it does not
    windows_cluster: WindowsClusterOnce | None = None  # None: not reconciled once (skipped, dry run)


CLUSTER_UNREAD = "the cluster could not be read"  # why a host stopped after its facts script


class PendingClusterFacts:
    """The run's cluster facts, read on a thread of their own while the hosts connect and run
    their facts scripts (which only read), so the API round trips and the kubernetes client's
    first-call cost are not on the wall clock before the first host is touched. A host waits for
    them before its first phase that may use them; if they could not be read, no host goes on
    and the run raises the reader's error (`raise_failure`).

    A `gate` (optional) runs first: the questions that decide whether the run may ask the
    cluster anything more (a proxy mode the server's version rules out is a usage error). Once
    it has passed, the steps given to `when_cleared` (the Node watch) start beside the rest of
    the reading instead of after it."""

    def __init__(self, read: Callable[[], ClusterFacts] | None = None, known: ClusterFacts | None = None,
                 gate: Callable[[], object] | None = None) -> None:
        """Either `read` (called on a thread of its own, after `gate`) or the facts already
        `known` (the defaults when neither is given: a run on the hosts only)."""
        self._facts = None if read is not None else known or ClusterFacts()
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._cleared = read is None
        self._then: list[Callable[[], object]] = []
        if read is None:
            self._done.set()
        else:
            threading.Thread(target=self._read, args=(gate, read), name="cluster-facts", daemon=True).start()

    def _read(self, gate: Callable[[], object] | None, read: Callable[[], ClusterFacts]) -> None:
        try:
            if gate is not None:
                gate()
            self._clear()
            self._facts = read()
        except BaseException as exc:  # noqa: BLE001 - handed to the run's thread by raise_failure
            self.error = exc
        with self._lock:
            self._done.set()

    def _clear(self) -> None:
        with self._lock:
            self._cleared = True
            then, self._then = self._then, []
        for step in then:
            step()

    def when_cleared(self, step: Callable[[], object]) -> None:
        """Run `step` once the gate has passed (now, if it has), never if it failed: the cluster
        is asked nothing else before then."""
        with self._lock:
            if not self._cleared:
                if not self._done.is_set():
                    self._then.append(step)
                return
        step()

    @property
    def failed(self) -> bool:
        return self._done.is_set() and self.error is not None

    def wait(self) -> ClusterFacts | None:
        """The facts once read; None if reading them failed."""
        self._done.wait()
        return self._facts

    def raise_failure(self) -> None:
        """Once the hosts are done: the reader's error, raised on the calling thread."""
        self._done.wait()
        if self.error is not None:
            raise self.error


@dataclass
class HostState:
    """What one host's phases pass on to its later phases."""

    token: BootstrapToken | None = None  # this node's bootstrap token, deleted once Ready or on failure
    install_plan: InstallPlan | None = None
    installed_kubeadm_version: str | None = None
    windows_plan: WindowsPlan | None = None  # the Windows cluster side's plan, read once per host


@dataclass
class HostContext:
    """Everything one host's workflow may use."""

    host: Host
    transport: Transport
    cluster: Cluster | None  # None: a run on the hosts only (no kubeconfig)
    watcher: NodeWatcher | None
    tokens: TokenLedger | None
    options: RunOptions
    redactor: Redactor
    cancelled: threading.Event
    emit: Callable[..., None]
    host_facts: HostFacts | None = None  # the facts script's object, typed: what the phases decide with
    run: ClusterFacts = field(default_factory=ClusterFacts)
    pending: PendingClusterFacts | None = None  # `run` while it is still being read
    state: HostState = field(default_factory=HostState)

    def gathered(self) -> HostFacts:
        """The host's facts, gathered by the workflow's first phase."""
        if self.host_facts is None:
            raise RuntimeError(f"{self.host.name}: no facts gathered before a phase that needs them")
        return self.host_facts

    def linux_facts(self) -> LinuxFacts:
        facts = self.gathered()
        if not isinstance(facts, LinuxFacts):
            raise RuntimeError(f"{self.host.name}: a Linux phase on a host with {type(facts).__name__}")
        if facts.brief:
            # Only joined, kubelet_configured and the lock are the host's (gathered() has them):
            # a phase deciding with the defaults of the rest would decide wrong without a word.
            raise RuntimeError(f"{self.host.name}: a phase read facts the joined host's brief answer leaves out")
        return facts

    def windows_facts(self) -> WindowsFacts:
        facts = self.gathered()
        if not isinstance(facts, WindowsFacts):
            raise RuntimeError(f"{self.host.name}: a Windows phase on a host with {type(facts).__name__}")
        return facts

    def kube(self) -> Cluster:
        """The run's cluster, for a phase that needs it (a host-only run has none)."""
        if self.cluster is None:
            raise UsageError(f"{self.host.name}: this step needs the cluster (give --kubeconfig)")
        return self.cluster

    def nodes(self) -> NodeWatcher:
        """The run's Node watcher, for a phase that needs the cluster."""
        if self.watcher is None:
            raise UsageError(f"{self.host.name}: this step needs the cluster (give --kubeconfig)")
        return self.watcher

    def ledger(self) -> TokenLedger:
        """The run's bootstrap tokens, for a phase that needs the cluster."""
        if self.tokens is None:
            raise UsageError(f"{self.host.name}: this step needs the cluster (give --kubeconfig)")
        return self.tokens

    def call(self, name: str, variables: dict[str, str] | None = None,
             secret_variables: dict[str, str] | None = None) -> ScriptCall:
        """scripts/<os>/<name> with its inputs, ready to send; its secrets are redacted from now on."""
        for secret in (secret_variables or {}).values():
            self.redactor.add(secret)
        return ScriptCall(script_text(self.host.os, name), variables or {}, secret_variables, name=name)

    def check(self, call: ScriptCall, result: ExecResult) -> ScriptResult:
        """A script's JSON result, with its transcript logged; a failed result raises."""
        name = call.name
        self.emit("transcript", script=name, stdout=result.stdout, stderr=result.stderr, exit=result.exit_status)
        parsed = parse_result(name, result.exit_status, result.stdout, result.stderr)
        if not parsed.ok:
            raise ScriptError(name, self.redactor.redact(parsed.error or f"{name} failed"), result.exit_status,
                              self.redactor.redact("\n".join(result.stderr.strip().splitlines()[-10:])))
        return parsed

    def run_call(self, call: ScriptCall, timeout: float | None = None) -> ScriptResult:
        """Run one script on its own and return its JSON result; a failed result raises."""
        result = self.transport.run_script(call.script, call.variables, call.secret_variables,
                                           timeout or self.options.step_timeout)
        return self.check(call, result)

    def script(self, name: str, variables: dict[str, str] | None = None,
               secret_variables: dict[str, str] | None = None, timeout: float | None = None) -> ScriptResult:
        """Run scripts/<os>/<name> and return its JSON result; a failed result raises."""
        return self.run_call(self.call(name, variables, secret_variables), timeout)


class Phase:
    name: str = ""
    title: str = ""
    # A gather phase runs in dry-run too: it only reads.
    reads_only: bool = False
    # False only for a phase that never reads ctx.run (the facts scripts): it may run while the
    # cluster's facts are still being read.
    uses_cluster_facts: bool = True

    def satisfied(self, ctx: HostContext) -> str | None:
        """Why the phase has nothing to do (shown to the operator), or None."""
        return None

    # A phase whose host script has a dry-run mode (NB_DRY_RUN=1: reads, reports, changes nothing).
    dry_run_mode: bool = False

    def dry_run_script(self, ctx: HostContext) -> ScriptCall:
        """A dry_run_mode phase's script with NB_DRY_RUN=1; no controller-side change may happen here."""
        raise NotImplementedError

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        """What a dry run says this phase would do: the dry-run script's own would-lines when it has
        one (`result`), else what the controller knows."""
        return (would_lines(result) if result is not None else "") or self.title

    # A batched phase is one host script whose inputs come from the gathered facts
    # and the run's options only, never from what an earlier phase of this run
    # did; consecutive batched phases that have work go to the host together, in
    # one round trip, each running only if the one before it succeeded.
    batched: bool = False

    def host_script(self, ctx: HostContext) -> ScriptCall:
        """A batched phase's script (controller-side work, e.g. a token, may happen here)."""
        raise NotImplementedError

    def script_done(self, ctx: HostContext, call: ScriptCall, result: ExecResult) -> bool:
        """Read a batched phase's script result; return True if anything changed."""
        return ctx.check(call, result).changed

    def run(self, ctx: HostContext) -> bool:
        """Do the work of a phase that is not batched; return True if anything changed."""
        raise NotImplementedError

    def cleanup(self, ctx: HostContext) -> None:
        """Undo what a failed or interrupted run must not leave behind."""


class PhaseStatus(StrEnum):
    """A phase's outcome; the values are what the JSON output and the run log say."""

    CHANGED = "changed"
    OK = "ok"
    SKIPPED = "skipped"
    WOULD_RUN = "would-run"
    FAILED = "failed"
    NOT_RUN = "not-run"


@dataclass
class PhaseOutcome:
    phase: str
    status: PhaseStatus
    detail: str = ""
    interrupted: bool = False  # not run because of Ctrl-C


@dataclass
class WorkflowResult:
    outcomes: list[PhaseOutcome]
    error: PhaseError | None = None

    @property
    def changed(self) -> bool:
        return any(o.status is PhaseStatus.CHANGED for o in self.outcomes)

    @property
    def interrupted(self) -> bool:
        return any(o.interrupted for o in self.outcomes)


def in_dry_run_mode(call: ScriptCall) -> ScriptCall:
    """The same script with the same inputs, in its dry-run mode."""
    return ScriptCall(call.script, {**call.variables, "NB_DRY_RUN": "1"}, call.secret_variables, call.payload,
                      call.name)


def would_lines(result: ScriptResult) -> str:
    """A dry-run script's actions as one line: 'would load ...; would write ...'. (Some scripts
    record an action as it would read after it was done, and only their log line says 'would'.)"""
    actions = [str(a) for a in result.facts.get("actions") or []]
    return "; ".join(a if a.startswith("would ") else f"would {a}" for a in actions)


def phase_error(phase: str, exc: Exception) -> PhaseError:
    # Imported on failure only: it loads the kubernetes client, which host-only work never needs.
    from nodeboot.cluster.retry import describe

    return PhaseError(phase, describe(exc) or exc)


def run_workflow(phases: list[Phase], ctx: HostContext) -> WorkflowResult:
    """Run phases in order on one host; the first failure stops this host only."""
    outcomes: list[PhaseOutcome] = []
    failure: PhaseError | None = None
    index = 0
    try:
        while index < len(phases) and failure is None:
            phase = phases[index]
            if ctx.cancelled.is_set():
                outcomes += [PhaseOutcome(p.name, PhaseStatus.NOT_RUN, "interrupted", interrupted=True)
                             for p in phases[index:]]
                ctx.emit("phase", phase=phase.name, status=PhaseStatus.NOT_RUN, detail="interrupted")
                break
            if phase.name in ctx.options.skip_phases:
                outcomes.append(report(ctx, PhaseOutcome(phase.name, PhaseStatus.SKIPPED, "--skip-phases")))
                index += 1
                continue
            if phase.uses_cluster_facts and not cluster_facts_ready(ctx):
                outcomes += [PhaseOutcome(p.name, PhaseStatus.NOT_RUN, CLUSTER_UNREAD)
                             for p in phases[index:]]
                break
            ctx.emit("phase", phase=phase.name, status="start", detail=phase.title)
            try:
                outcome = decide(phase, ctx)
            except Exception as exc:
                outcome, failure = failed(ctx, phase, exc)
            if outcome is not None:
                outcomes.append(report(ctx, outcome))
                index += 1
                continue
            if dry_running(phase, ctx):  # its script in dry-run mode, with the dry-run phases after it
                batch = [phase, *batch_followers(phases[index + 1:], ctx, dry_running)]
                done, failure = run_batch(batch, ctx, dry=True)
            else:
                batch = [phase, *batch_followers(phases[index + 1:], ctx)] if phase.batched else [phase]
                done, failure = run_batch(batch, ctx) if phase.batched else run_one(phase, ctx)
            for started in batch[len(done):]:  # announced with the batch, never run on the host
                ctx.emit("phase", phase=started.name, status=PhaseStatus.NOT_RUN, detail="after failure")
            outcomes += done
            index += len(batch)
        if failure is not None:
            outcomes += [PhaseOutcome(p.name, PhaseStatus.NOT_RUN, "after failure") for p in phases[len(outcomes):]]
    finally:
        for phase in reversed(phases):
            try:
                phase.cleanup(ctx)
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
                ctx.emit("warning", detail=ctx.redactor.redact(f"cleanup of {phase.name}: {exc}"))
    return WorkflowResult(outcomes, failure)


def cluster_facts_ready(ctx: HostContext) -> bool:
    """Wait for the run's cluster facts if they are still being read; False if that failed."""
    if ctx.pending is None:
        return True
    facts = ctx.pending.wait()
    if facts is None:
        return False
    ctx.run, ctx.pending = facts, None
    return True


def report(ctx: HostContext, outcome: PhaseOutcome) -> PhaseOutcome:
    ctx.emit("phase", phase=outcome.phase, status=outcome.status, detail=outcome.detail)
    return outcome


def dry_running(phase: Phase, ctx: HostContext) -> bool:
    """A dry run sends this phase's script in its dry-run mode."""
    return ctx.options.dry_run and phase.dry_run_mode and not phase.reads_only


def decide(phase: Phase, ctx: HostContext) -> PhaseOutcome | None:
    """The outcome of a phase with nothing to send the host (satisfied, or a dry run of a
    phase without a dry-run mode), else None."""
    reason = None if phase.reads_only else phase.satisfied(ctx)
    if reason:
        return PhaseOutcome(phase.name, PhaseStatus.OK, reason)
    if ctx.options.dry_run and not phase.reads_only and not phase.dry_run_mode:
        return PhaseOutcome(phase.name, PhaseStatus.WOULD_RUN, phase.dry_run_detail(ctx))
    return None


def failed(ctx: HostContext, phase: Phase, exc: Exception) -> tuple[PhaseOutcome, PhaseError]:
    error = exc if isinstance(exc, PhaseError) else phase_error(phase.name, exc)
    return PhaseOutcome(phase.name, PhaseStatus.FAILED, ctx.redactor.redact(str(error))), error


def batch_followers(rest: list[Phase], ctx: HostContext,
                    joins: Callable[[Phase, HostContext], bool] = lambda p, _c: p.batched) -> list[Phase]:
    """The phases right after a batched one that `joins` the batch and have work to do, up
    to the first that does not join, is skipped, or has nothing to do (it is then
    reported on its own, and a new batch may start after it). A dry run's batch is its
    phases' dry-run scripts: they only read, so they share a round trip whatever the phase."""
    followers: list[Phase] = []
    for phase in rest:
        if not joins(phase, ctx) or phase.name in ctx.options.skip_phases or ctx.cancelled.is_set():
            break
        try:
            if decide(phase, ctx) is not None:
                break
        except Exception:  # noqa: BLE001 - asked again, and reported, when its turn comes
            break
        ctx.emit("phase", phase=phase.name, status="start", detail=phase.title)
        followers.append(phase)
    return followers


def run_one(phase: Phase, ctx: HostContext) -> tuple[list[PhaseOutcome], PhaseError | None]:
    try:
        changed = phase.run(ctx)
    except Exception as exc:
        outcome, error = failed(ctx, phase, exc)
        return [report(ctx, outcome)], error
    return [report(ctx, PhaseOutcome(phase.name, PhaseStatus.CHANGED if changed else PhaseStatus.OK))], None


def dry_run_call(phase: Phase, ctx: HostContext) -> ScriptCall:
    """A phase's dry-run script, refused unless it is in its dry-run mode and carries no secret."""
    call = phase.dry_run_script(ctx)
    if call.variables.get("NB_DRY_RUN") != "1" or call.secret_variables:
        raise RuntimeError(f"{phase.name}: its dry-run script must have NB_DRY_RUN=1 and no secret")
    return call


def dry_run_done(phase: Phase, ctx: HostContext, call: ScriptCall, result: ExecResult) -> PhaseOutcome:
    """A dry-run script's answer: would-run with its would-lines, or ok when it found nothing to do."""
    parsed = ctx.check(call, result)
    if not parsed.changed:
        return PhaseOutcome(phase.name, PhaseStatus.OK, "dry run: nothing to change")
    return PhaseOutcome(phase.name, PhaseStatus.WOULD_RUN, phase.dry_run_detail(ctx, parsed))


def run_batch(batch: list[Phase], ctx: HostContext, dry: bool = False) -> tuple[list[PhaseOutcome], PhaseError | None]:
    """Batched phases in one round trip (a dry run: their dry-run scripts); outcomes up to and
    including the first failure."""
    calls: list[ScriptCall] = []
    outcomes: list[PhaseOutcome] = []
    prepare_error: Exception | None = None
    for phase in batch:
        try:
            calls.append(dry_run_call(phase, ctx) if dry else phase.host_script(ctx))
        except Exception as exc:  # this phase fails; the ones before it still run
            prepare_error = exc
            break
    results: list[ExecResult | None] = []
    if calls:
        try:
            results = ctx.transport.run_batch(calls, ctx.options.step_timeout * len(calls))
        except Exception as exc:
            outcome, error = failed(ctx, batch[0], exc)
            return [report(ctx, outcome)], error
    for phase, call, result in zip(batch[:len(calls)], calls, results, strict=True):
        try:
            assert result is not None, "a batch goes on only after a success"
            if dry:
                done = dry_run_done(phase, ctx, call, result)
            else:
                done = PhaseOutcome(phase.name, PhaseStatus.CHANGED if phase.script_done(ctx, call, result)
                                    else PhaseStatus.OK)
        except Exception as exc:
            outcome, error = failed(ctx, phase, exc)
            return [*outcomes, report(ctx, outcome)], error
        outcomes.append(report(ctx, done))
    if prepare_error is not None:
        outcome, error = failed(ctx, batch[len(calls)], prepare_error)
        return [*outcomes, report(ctx, outcome)], error
    return outcomes, None
