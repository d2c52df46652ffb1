"""A fleet run whose hosts wait for the test: run under a pseudo-terminal by test_output_live.

Each host runs two phases. The first ends at once; the second waits until the
file GATE exists, so the test can look at the terminal while every host is
still running, then let them finish. The transport is a stand-in (no host to
reach); the Fleet, the Output and its live view are nodeboot's own.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from nodeboot import runner
from nodeboot.inventory import Host
from nodeboot.output import Output
from nodeboot.redact import Redactor
from nodeboot.steps.base import HostContext, Phase, RunOptions
from nodeboot.transport import TransportStats
from nodeboot.transport.factory import ConnectionDefaults

GATE = Path(sys.argv[1])
HOSTS = int(sys.argv[2])
PARALLEL = int(sys.argv[3]) if len(sys.argv) > 3 else HOSTS


class StandIn:
    def __init__(self) -> None:
        self.stats = TransportStats()

    def connect(self) -> None:
        self.stats.connects += 1

    def close(self) -> None:
        pass


class Quick(Phase):
    name, title = "facts", "gather facts"

    def run(self, ctx: HostContext) -> bool:
        return False


class WaitForGate(Phase):
    name, title = "kubeadm-join", "wait for the test's gate"

    def run(self, ctx: HostContext) -> bool:
        deadline = time.monotonic() + 60  # bounded: a broken test must not hang forever
        while not GATE.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return True


runner.make_transport = lambda host, defaults, redactor: StandIn()
redactor = Redactor()
output = Output(redactor=redactor, mode="human")
fleet = runner.Fleet(None, RunOptions(), output, redactor, ConnectionDefaults(), parallel=PARALLEL)
report = fleet.run([Host(name=f"host-{i}", address="127.0.0.1") for i in range(HOSTS)],
                   lambda host: [Quick(), WaitForGate()], "nodeboot join")
runner.summarise(output, report)
sys.stdout.flush()
os._exit(report.exit_code)
