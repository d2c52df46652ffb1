"""The e2e tier: nodeboot's host scripts against a real Debian kernel in a qemu VM.

One VM per run of this package: the image is built once per machine and
cached (see nodeboot_lab.vm); each run boots it on a fresh copy-on-write
overlay, and stops it after the package's last test, so it does not compete
for the CPU with the tiers that run after it.
If the VM cannot be built or booted, every test here errors with the reason:
this tier fails loudly, it never skips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from nodeboot_lab.vm import VM, ensure_image
from vmkit import Guest, report_timings

TIMINGS: dict[str, float | str] = {}


@pytest.fixture(scope="package")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VM]:
    started = time.monotonic()
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
        # Build (if any) + boot + every e2e test + stop: the tier's own cost.
        TIMINGS["tier_s"] = round(time.monotonic() - started, 1)


@pytest.fixture
def guest(vm: VM) -> Iterator[Guest]:
    transport = vm.transport()
    try:
        yield Guest(vm, transport, TIMINGS)
    finally:
        transport.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_timings(terminalreporter, "e2e VM timings", TIMINGS)
