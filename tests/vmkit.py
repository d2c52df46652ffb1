"""The e2e VM as tests see it: nodeboot's SSH transport plus a few shell helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodeboot.scripts import ScriptResult, parse_result, script_text
from nodeboot.transport import ExecResult
from nodeboot.transport.ssh import SSHTransport
from nodeboot_lab.vm import VM


@dataclass
class Guest:
    vm: VM
    transport: SSHTransport
    timings: dict[str, float | str] = field(default_factory=dict)

    def script(self, name: str, **variables: str) -> ScriptResult:
        """Run scripts/linux/<name> exactly as nodeboot does and parse its JSON."""
        result = self.transport.run_script(script_text("linux", name), variables)
        return parse_result(name, result.exit_status, result.stdout, result.stderr)

    def sh(self, command: str, check: bool = True) -> ExecResult:
        result = self.transport.run_script(command, {}, None, 120)
        if check and result.exit_status != 0:
            raise AssertionError(f"guest command failed ({result.exit_status}): {command}\n{result.stderr}")
        return result

    def modules(self) -> set[str]:
        """What lsmod says the guest kernel has loaded."""
        return {line.split()[0] for line in self.sh("lsmod").stdout.splitlines()[1:] if line.strip()}

    def reboot(self) -> float:
        """A real guest reboot (same qemu, same overlay); returns seconds to SSH."""
        self.transport.close()  # the next command reconnects to the new boot
        seconds = self.vm.reboot()
        self.timings["reboot_to_ssh_s"] = seconds
        return seconds


def report_timings(reporter: Any, title: str, timings: dict[str, float | str]) -> None:
    """A tier's measured figures, printed at the end of the run (pytest_terminal_summary)."""
    if not timings:
        return
    reporter.section(title)
    for key, value in timings.items():
        reporter.write_line(f"{key}: {value}")
