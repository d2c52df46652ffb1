"""The e2e tier: nodeboot's host scripts against a real Debian kernel in a qemu VM.

One VM per session: the image is built once per machine and cached (see
nodeboot.lab.vm); each session boots it on a fresh copy-on-write overlay.
If the VM cannot be built or booted, every test here errors with the reason:
this tier fails loudly, it never skips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from nodeboot.lab.vm import VM, ensure_image
from vmkit import Guest

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


@pytest.fixture
def guest(vm: VM) -> Iterator[Guest]:
    transport = vm.transport()
    try:
        yield Guest(vm, transport, TIMINGS)
    finally:
        transport.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    TIMINGS["session_s"] = round(time.monotonic() - _SESSION_START, 1)
    terminalreporter.section("e2e VM timings")
    for key, value in TIMINGS.items():
        terminalreporter.write_line(f"{key}: {value}")
