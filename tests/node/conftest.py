"""The real-node tier: a bare Debian VM that nodeboot installs and joins.

One lab per run of this package, of its own: the real control plane, the
artifact mirror and OCI registry (node services), and one VM node on the lab
bridge with nothing of Kubernetes on it. The VM runs Debian's stock kernel
with systemd as PID 1 and cgroup v2 under qemu's software emulation, so the
kubelet, containerd and kube-proxy that nodeboot installs there are the real
ones. If any of it cannot be built or booted the tests error with the reason:
this tier fails loudly, it never skips.

NODEBOOT_TEST_KEEP_LAB=1 leaves the lab up after the run; NODEBOOT_TEST_REUSE_LAB=1 then
runs against that lab as it is (no new lab, no fresh VM), to iterate on one module
(test_3 needs a joined node: it starts from whatever mode the node is in).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import LabHandle
from nodeboot_lab.lab import Lab
from nodekit import TIMINGS
from vmkit import report_timings


@pytest.fixture(scope="package")
def node_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    if os.geteuid() != 0:
        pytest.fail("the real-node tier needs root (namespaces, taps, qemu)")
    state = Path(os.environ.get("NODEBOOT_TEST_NODE_LAB_STATE", "/tmp/nodeboot-node-lab"))
    started = time.monotonic()
    lab = Lab(state, log=lambda m: print(m, flush=True))
    if not (os.environ.get("NODEBOOT_TEST_REUSE_LAB") and lab.status()["up"]):
        # Dual-stack: the node joins with an IPv4 and an IPv6 node IP, kube-proxy programs both families.
        lab.up(linux=0, windows=0, node_services=True, vm_nodes=1, dual_stack=True)
    TIMINGS["lab_up_with_vm_s"] = round(time.monotonic() - started, 1)
    handle = LabHandle(lab, lab.env(), tmp_path_factory.mktemp("node-lab"))
    TIMINGS["vm_boot_to_ssh_s"] = handle.env["vm_hosts"][0]["boot_seconds"]
    try:
        yield handle
    finally:
        if not os.environ.get("NODEBOOT_TEST_KEEP_LAB"):
            lab.down()
        TIMINGS["tier_s"] = round(time.monotonic() - started, 1)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_timings(terminalreporter, "real node timings (qemu software emulation)", TIMINGS)
