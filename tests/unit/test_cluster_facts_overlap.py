"""The run's cluster facts are read beside the hosts' facts scripts: a host's facts script
runs while the cluster is still being asked, the phases after it wait for the answer, and
when the cluster cannot be read no host goes past its facts script and the run raises the
cluster's error. Real scripts in a local bash (localshell.py); the cluster read is a
function the test controls, so it can be held until the facts script has run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localshell import local_context
from nodeboot.steps.base import (
    CLUSTER_UNREAD,
    ClusterFacts,
    HostContext,
    PendingClusterFacts,
    Phase,
    PhaseStatus,
    run_workflow,
)
from nodeboot.transport import ScriptCall

HOLD = 20.0  # bounds every wait below: a broken overlap fails the test instead of hanging it


class Gather(Phase):
    """Stands for a facts phase: a host script that leaves a mark, and never reads ctx.run."""

    name = title = "facts"
    reads_only = True
    uses_cluster_facts = False

    def __init__(self, log: Path, ran: threading.Event) -> None:
        self.log, self.ran = log, ran

    def run(self, ctx: HostContext) -> bool:
        ctx.run_call(ScriptCall(f"echo facts >> {self.log}\necho '{{\"ok\":true}}'\n", name="facts"))
        self.ran.set()
        return False


class Decide(Phase):
    """A phase that decides with the server's version, as preflight does."""

    name = title = "preflight"
    batched = True

    def __init__(self, log: Path) -> None:
        self.log = log
        self.seen: tuple[int, int] | None = None

    def host_script(self, ctx: HostContext) -> ScriptCall:
        self.seen = ctx.run.server_minor
        return ScriptCall(f"echo preflight >> {self.log}\necho '{{\"ok\":true,\"changed\":true}}'\n",
                          name="preflight")


def context(pending: PendingClusterFacts) -> HostContext:
    return local_context(pending=pending)


def test_the_facts_script_runs_while_the_cluster_is_read(tmp_path: Path) -> None:
    log, facts_ran = tmp_path / "ran", threading.Event()

    def read_cluster() -> ClusterFacts:
        # Answers only once the host's facts script has run: sequential code would wait HOLD s
        # here and the assertion below would fail.
        overlapped = facts_ran.wait(HOLD)
        return ClusterFacts(server_minor=(1, 37) if overlapped else (0, 0))

    decide = Decide(log)
    result = run_workflow([Gather(log, facts_ran), decide], context(PendingClusterFacts(read_cluster)))
    assert [(o.phase, o.status) for o in result.outcomes] == [("facts", "ok"), ("preflight", "changed")]
    assert decide.seen == (1, 37)
    assert log.read_text().splitlines() == ["facts", "preflight"]


def test_a_cluster_that_cannot_be_read_stops_every_host_after_its_facts(tmp_path: Path) -> None:
    log, facts_ran = tmp_path / "ran", threading.Event()

    def read_cluster() -> ClusterFacts:
        facts_ran.wait(HOLD)
        raise ConnectionRefusedError("API server 127.0.0.1:6443 unreachable: connection refused")

    pending = PendingClusterFacts(read_cluster)
    result = run_workflow([Gather(log, facts_ran), Decide(log)], context(pending))
    assert result.error is None
    assert [(o.phase, o.status, o.detail) for o in result.outcomes] == [
        ("facts", PhaseStatus.OK, ""), ("preflight", PhaseStatus.NOT_RUN, CLUSTER_UNREAD)]
    assert log.read_text().splitlines() == ["facts"]  # nothing past the read-only facts script
    assert pending.failed
    with pytest.raises(ConnectionRefusedError, match="connection refused"):
        pending.raise_failure()


def test_facts_already_known_are_used_as_they_are(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    decide = Decide(log)
    pending = PendingClusterFacts(known=ClusterFacts(server_minor=(1, 36)))
    result = run_workflow([Gather(log, threading.Event()), decide], context(pending))
    assert [o.status for o in result.outcomes] == ["ok", "changed"]
    assert decide.seen == (1, 36)
    pending.raise_failure()  # nothing to raise


def test_the_node_watch_starts_once_the_gate_passes_not_after_every_fact() -> None:
    # The read is held until the step given to when_cleared has run: if cleared steps waited for
    # the whole read, as they did before the gate, this would time out.
    order: list[str] = []
    watch_started = threading.Event()

    def read_cluster() -> ClusterFacts:
        order.append("read")
        assert watch_started.wait(HOLD), "the cleared step did not run while the facts were being read"
        return ClusterFacts(server_minor=(1, 36))

    pending = PendingClusterFacts(read_cluster, gate=lambda: order.append("gate"))
    pending.when_cleared(lambda: (order.append("watch"), watch_started.set()))
    facts = pending.wait()
    assert facts is not None and facts.server_minor == (1, 36)
    assert order.index("gate") < order.index("watch")
    pending.when_cleared(lambda: order.append("late"))  # once cleared: at once, on this thread
    assert order[-1] == "late"


def test_a_failing_gate_asks_nothing_more_and_starts_no_watch() -> None:
    steps: list[str] = []

    def gate() -> None:
        raise ValueError("the API server is 1.43: kube-proxy has no IPVS mode any more; use nftables")

    pending = PendingClusterFacts(lambda: steps.append("read") or ClusterFacts(), gate=gate)  # type: ignore[func-returns-value]
    pending.when_cleared(lambda: steps.append("watch"))
    with pytest.raises(ValueError, match="no IPVS mode"):
        pending.raise_failure()
    pending.when_cleared(lambda: steps.append("late watch"))
    assert steps == [] and pending.failed
