"""How a command reaches a host.

A transport holds one connection to one host for a whole run (one SSH
connection, one WinRM shell) and runs nodeboot's host scripts over it. Scripts
get their inputs as variables set ahead of the script text on standard input,
never as command-line arguments, so nothing a script is given shows in the
host's process list.

A batch (run_batch) is several scripts for one host that go together: each
runs only if the one before it succeeded. Over SSH the whole batch is one
round trip; a transport that cannot do that runs them one by one
(run_one_by_one), with the same stop-at-the-first-failure result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class ExecResult:
    exit_status: int
    stdout: str
    stderr: str


@dataclass
class ScriptCall:
    """One script of a batch, with its inputs (secrets stay out of argv and logs)."""

    script: str
    variables: dict[str, str] = field(default_factory=dict)
    secret_variables: dict[str, str] | None = None
    payload: bytes = b""  # on the host as the file $NB_PAYLOAD (SSH only)
    name: str = "script"  # for transcripts and errors


@dataclass
class TransportStats:
    """What a transport cost: counted for benchmarks and tests."""

    connects: int = 0
    execs: int = 0  # round trips that ran scripts (a batch counts once)
    uploads: int = 0
    bytes_sent: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Transport(Protocol):
    name: str
    stats: TransportStats

    def connect(self) -> None: ...

    def run_script(
        self,
        script: str,
        variables: dict[str, str],
        secret_variables: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run a whole script: inputs first as variables, then the body, all on stdin."""
        ...

    def run_batch(self, calls: list[ScriptCall], timeout: float | None = None) -> list[ExecResult | None]:
        """Run scripts in order, each only if the one before exited 0; None for those not run."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Rebootable(Protocol):
    """A transport that can wait out its host's restart and reconnect (WinRM: a Windows
    feature needs one); a phase that restarts a host checks for it."""

    def wait_for_reboot(self, timeout: float = 600.0) -> None:
        """Wait for the host to go down and come back, then reconnect; bounded by timeout."""
        ...


def run_one_by_one(transport: Transport, calls: list[ScriptCall], timeout: float | None) -> list[ExecResult | None]:
    """run_batch for a transport without batches: a round trip per script, same result."""
    results: list[ExecResult | None] = []
    for call in calls:
        if results and (results[-1] is None or results[-1].exit_status != 0):
            results.append(None)
            continue
        if call.payload:
            raise ValueError(f"{transport.name}: this transport takes no script payload")
        results.append(transport.run_script(call.script, call.variables, call.secret_variables, timeout))
    return results
