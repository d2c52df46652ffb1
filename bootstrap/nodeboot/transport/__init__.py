"""How a command reaches a host.

A transport holds one connection to one host for a whole run (one SSH
connection, one WinRM shell) and runs nodeboot's host scripts over it. Scripts
get their inputs as variables set ahead of the script text on standard input,
never as command-line arguments, so nothing a script is given shows in the
host's process list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class ExecResult:
    exit_status: int
    stdout: str
    stderr: str


@dataclass
class TransportStats:
    """What a transport cost: counted for benchmarks and tests."""

    connects: int = 0
    execs: int = 0
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

    def put_file(self, data: bytes, remote_path: str, mode: int = 0o644) -> bool:
        """Write a file when its sha256 differs; return True if it was written."""
        ...

    def close(self) -> None: ...
