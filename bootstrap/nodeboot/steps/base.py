"""The phase interface every workflow is built from (after k0sctl and kubeadm).

A phase has a name (kubeadm-style, so errors read "error execution phase
kubeadm-join: ...", and --skip-phases can name it), a `satisfied` check that
reads the facts gathered up front (which is what makes a re-run a no-op), and
`run`. Dry-run falls out: it asks `satisfied` and reports, never runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodeboot.cluster.retry import describe
from nodeboot.errors import PhaseError, ScriptError
from nodeboot.scripts import ScriptResult, parse_result, script_text

if TYPE_CHECKING:
    from nodeboot.cluster.client import Cluster
    from nodeboot.cluster.nodes import NodeWatcher
    from nodeboot.cluster.tokens import TokenLedger
    from nodeboot.inventory import Host
    from nodeboot.redact import Redactor
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
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostContext:
    """Everything one host's workflow may use."""

    host: Host
    transport: Transport
    cluster: Cluster
    watcher: NodeWatcher
    tokens: TokenLedger
    options: RunOptions
    redactor: Redactor
    cancelled: threading.Event
    emit: Callable[..., None]
    facts: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # what phases pass on to later phases

    def script(self, name: str, variables: dict[str, str] | None = None,
               secret_variables: dict[str, str] | None = None, timeout: float | None = None) -> ScriptResult:
        """Run one host script and return its JSON result; a failed result raises."""
        for secret in (secret_variables or {}).values():
            self.redactor.add(secret)
        result = self.transport.run_script(
            script_text(self.host.os, name), variables or {}, secret_variables, timeout or self.options.step_timeout
        )
        self.emit("transcript", script=name, stdout=result.stdout, stderr=result.stderr, exit=result.exit_status)
        parsed = parse_result(name, result.exit_status, result.stdout, result.stderr)
        if not parsed.ok:
            raise ScriptError(name, self.redactor.redact(parsed.error or f"{name} failed"), result.exit_status,
                              self.redactor.redact("\n".join(result.stderr.strip().splitlines()[-10:])))
        return parsed


class Phase:
    name: str = ""
    title: str = ""
    # A gather phase runs in dry-run too: it only reads.
    reads_only: bool = False

    def satisfied(self, ctx: HostContext) -> str | None:
        """Why the phase has nothing to do (shown to the operator), or None."""
        return None

    def run(self, ctx: HostContext) -> bool:
        """Do the work; return True if anything changed."""
        raise NotImplementedError

    def cleanup(self, ctx: HostContext) -> None:
        """Undo what a failed or interrupted run must not leave behind."""


@dataclass
class PhaseOutcome:
    phase: str
    status: str  # changed | ok | skipped | would-run | failed | not-run
    detail: str = ""


@dataclass
class WorkflowResult:
    outcomes: list[PhaseOutcome]
    error: PhaseError | None = None

    @property
    def changed(self) -> bool:
        return any(o.status == "changed" for o in self.outcomes)

    @property
    def interrupted(self) -> bool:
        return any(o.detail == "interrupted" for o in self.outcomes)


def run_workflow(phases: list[Phase], ctx: HostContext) -> WorkflowResult:
    """Run phases in order on one host; the first failure stops this host only."""
    outcomes: list[PhaseOutcome] = []
    failure: PhaseError | None = None
    try:
        for index, phase in enumerate(phases):
            if ctx.cancelled.is_set():
                outcomes += [PhaseOutcome(p.name, "not-run", "interrupted") for p in phases[index:]]
                ctx.emit("phase", phase=phase.name, status="not-run", detail="interrupted")
                break
            if phase.name in ctx.options.skip_phases:
                outcomes.append(PhaseOutcome(phase.name, "skipped", "--skip-phases"))
                ctx.emit("phase", phase=phase.name, status="skipped", detail="--skip-phases")
                continue
            ctx.emit("phase", phase=phase.name, status="start", detail=phase.title)
            try:
                reason = None if phase.reads_only else phase.satisfied(ctx)
                if reason:
                    outcome = PhaseOutcome(phase.name, "ok", reason)
                elif ctx.options.dry_run and not phase.reads_only:
                    outcome = PhaseOutcome(phase.name, "would-run", phase.title)
                else:
                    changed = phase.run(ctx)
                    outcome = PhaseOutcome(phase.name, "changed" if changed else "ok", "")
            except Exception as exc:
                error = exc if isinstance(exc, PhaseError) else PhaseError(phase.name, describe(exc) or exc)
                outcomes.append(PhaseOutcome(phase.name, "failed", ctx.redactor.redact(str(error))))
                ctx.emit("phase", phase=phase.name, status="failed", detail=ctx.redactor.redact(str(error)))
                outcomes += [PhaseOutcome(p.name, "not-run", "after failure") for p in phases[index + 1:]]
                failure = error
                break
            outcomes.append(outcome)
            ctx.emit("phase", phase=phase.name, status=outcome.status, detail=outcome.detail)
    finally:
        for phase in reversed(phases):
            try:
                phase.cleanup(ctx)
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
                ctx.emit("warning", detail=ctx.redactor.redact(f"cleanup of {phase.name}: {exc}"))
    return WorkflowResult(outcomes, failure)
