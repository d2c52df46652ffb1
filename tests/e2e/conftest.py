"""The e2e tier: nodeboot's host scripts against a real Debian kernel in a qemu VM.

One VM per session: the image is built once per machine and cached (see
nodeboot.lab.vm); each session boots it on a fresh copy-on-write overlay.
If the VM cannot be built or booted, every test here errors with the reason:
this tier fails loudly, it never skips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from nodeboot.lab.vm import VM, ensure_image
from nodeboot.scripts import ScriptResult, parse_result, script_text
from nodeboot.transport import ExecResult
from nodeboot.transport.ssh import SSHTransport

TIMINGS: dict[str, float | str] = {}
_SESSION_START = time.monotonic()


@pytest.fixture(scope="session")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VM]:
    image = ensure_image()
    TIMINGS["image_build_s"] = image.build_seconds
    TIMINGS["image"] = f"{image.dir} ({'built now' if image.built_now else 'cached'})"
    TIMINGS["kernel"] = image.kernel_release
    machine = VM(image, tmp_path_factory.mktemp("vm"))
    TIMINGS["boot_to_ssh_s"] = machine.start()
    try:
        yield machine
    finally:
        machine.stop()


@dataclass
class Guest:
    """The VM as the tests see it: nodeboot's SSH transport plus a shell helper."""

    vm: VM
    transport: SSHTransport

    def script(self, name: str, **variables: str) -> ScriptResult:
        """Run scripts/linux/<name> exactly as nodeboot does and parse its JSON."""
        result = self.transport.run_script(script_text("linux", name), variables)
        return parse_result(name, result.exit_status, result.stdout, result.stderr)

    def sh(self, command: str, check: bool = True) -> ExecResult:
        result = self.transport.exec("bash --noprofile --norc -s", command.encode(), 120)
        if check and result.exit_status != 0:
            raise AssertionError(f"guest command failed ({result.exit_status}): {command}\n{result.stderr}")
        return result

    def modules(self) -> set[str]:
        """What lsmod says the guest kernel has loaded."""
        return {line.split()[0] for line in self.sh("lsmod").stdout.splitlines()[1:] if line.strip()}

    def reboot(self) -> float:
        self.transport.close()
        seconds = self.vm.reboot()
        TIMINGS["reboot_to_ssh_s"] = seconds
        return seconds


@pytest.fixture
def guest(vm: VM) -> Iterator[Guest]:
    transport = vm.transport()
    try:
        yield Guest(vm, transport)
    finally:
        transport.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    TIMINGS["session_s"] = round(time.monotonic() - _SESSION_START, 1)
    terminalreporter.section("e2e VM timings")
    for key, value in TIMINGS.items():
        terminalreporter.write_line(f"{key}: {value}")
