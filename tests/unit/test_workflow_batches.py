"""run_workflow's batches, with real host scripts run by nodeboot's shell loop in a
local bash (localshell.py): which phases share a round trip, and that a failure
stops the batch on the host exactly where one-by-one runs would have stopped."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localshell import LocalShell
from nodeboot.inventory import Host
from nodeboot.redact import Redactor
from nodeboot.steps.base import HostContext, Phase, RunOptions, run_workflow
from nodeboot.transport import ScriptCall


class Step(Phase):
    """A batched phase whose host script appends its name to a file, then exits `status`."""

    batched = True

    def __init__(self, name: str, log: Path, status: int = 0, done_already: bool = False,
                 prepare_error: str | None = None) -> None:
        self.name, self.title = name, name
        self.log, self.status, self.done_already, self.prepare_error = log, status, done_already, prepare_error

    def satisfied(self, ctx: HostContext) -> str | None:
        return "done already" if self.done_already else None

    def host_script(self, ctx: HostContext) -> ScriptCall:
        if self.prepare_error:
            raise RuntimeError(self.prepare_error)
        ok, error = ("true", "") if self.status == 0 else ("false", f"{self.name} broke")
        result = f'{{"ok":{ok},"changed":true,"error":"{error}"}}'
        return ScriptCall(f"echo {self.name} >> {self.log}\necho '{result}'\nexit {self.status}\n", name=self.name)


class Local(Phase):
    """A phase that is not batched (API work in real workflows): it ends a batch."""

    def __init__(self, name: str, log: Path) -> None:
        self.name, self.title, self.log = name, name, log

    def run(self, ctx: HostContext) -> bool:
        with self.log.open("a") as fh:
            fh.write(f"{self.name} (controller)\n")
        return True


def run(phases: list[Phase], **options) -> tuple[list[tuple[str, str]], LocalShell, list[dict]]:
    events: list[dict] = []
    transport = LocalShell()
    ctx = HostContext(host=Host(name="h1", address="127.0.0.1"), transport=transport, cluster=None,  # type: ignore[arg-type]
                      watcher=None, tokens=None, options=RunOptions(**options),  # type: ignore[arg-type]
                      redactor=Redactor(), cancelled=threading.Event(),
                      emit=lambda kind, **f: events.append({"event": kind, **f}))
    result = run_workflow(phases, ctx)
    return [(o.phase, o.status) for o in result.outcomes], transport, events


def ran(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_consecutive_phases_with_work_share_one_round_trip(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    phases = [Step("a", log), Step("b", log), Step("c", log, done_already=True), Step("d", log),
              Local("api", log), Step("e", log), Step("f", log)]
    outcomes, transport, _ = run(phases)
    assert outcomes == [("a", "changed"), ("b", "changed"), ("c", "ok"), ("d", "changed"), ("api", "changed"),
                        ("e", "changed"), ("f", "changed")]
    assert ran(log) == ["a", "b", "d", "api (controller)", "e", "f"]
    # [a b] | c satisfied ends the batch | [d] | api | [e f]: three round trips for six scripts.
    assert transport.stats.execs == 3


def test_a_failure_stops_the_batch_on_the_host(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    outcomes, transport, events = run([Step("a", log), Step("b", log, status=1), Step("c", log), Step("d", log)])
    assert outcomes == [("a", "changed"), ("b", "failed"), ("c", "not-run"), ("d", "not-run")]
    assert ran(log) == ["a", "b"]  # c and d were sent with the batch and never run
    assert transport.stats.execs == 1
    ends = {e["phase"]: e["status"] for e in events if e["event"] == "phase" and e["status"] != "start"}
    assert ends == {"a": "changed", "b": "failed", "c": "not-run", "d": "not-run"}
    assert "b broke" in next(e["detail"] for e in events if e.get("status") == "failed")


def test_a_phase_that_cannot_prepare_fails_after_the_ones_before_it_ran(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    outcomes, _, _ = run([Step("a", log), Step("b", log, prepare_error="no token"), Step("c", log)])
    assert outcomes == [("a", "changed"), ("b", "failed"), ("c", "not-run")]
    assert ran(log) == ["a"]


@pytest.mark.parametrize("options, expected", [
    ({"dry_run": True}, [("a", "would-run"), ("b", "would-run")]),
    ({"skip_phases": frozenset({"a"})}, [("a", "skipped"), ("b", "changed")]),
])
def test_dry_run_and_skipped_phases_send_nothing_for_them(tmp_path: Path, options, expected) -> None:
    log = tmp_path / "ran"
    outcomes, transport, _ = run([Step("a", log), Step("b", log)], **options)
    assert outcomes == expected
    assert ran(log) == [name for name, status in expected if status == "changed"]
    assert transport.stats.execs == (0 if options.get("dry_run") else 1)
