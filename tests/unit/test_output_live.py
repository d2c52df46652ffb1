"""The live view on a real terminal: a pseudo-terminal runs a fleet whose hosts wait for the test
(tests/unit/live_fleet_driver.py), and the terminal shows each host's state while they still run,
not once at the end. Nothing here is timed: the test reads until it sees a frame, then opens the
gate; the deadline only bounds a broken run."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

DRIVER = Path(__file__).with_name("live_fleet_driver.py")
ROOT = Path(__file__).parents[2]
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
DEADLINE = 120.0


class Terminal:
    """nodeboot's fleet run on a pseudo-terminal of rows x columns."""

    def __init__(self, gate: Path, hosts: int, parallel: int, rows: int, columns: int = 120) -> None:
        self.gate = gate
        env = {**os.environ, "PYTHONPATH": str(ROOT / "bootstrap"), "TERM": "xterm-256color"}
        for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
            env.pop(name, None)  # the terminal's own size and nature, not the environment's
        self.fd, child = os.openpty()
        # The size is set before the run starts, so its first frame already fits it.
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.proc = subprocess.Popen([sys.executable, str(DRIVER), str(gate), str(hosts), str(parallel)],
                                     stdin=child, stdout=child, stderr=child, env=env, start_new_session=True)
        os.close(child)
        self.seen = b""
        self.ended = False

    def text(self) -> bytes:
        return ANSI.sub(b"", self.seen)

    def read_until(self, wanted: bytes) -> bool:
        """Read the terminal until its plain text (colours and cursor moves dropped) shows wanted."""
        deadline = time.monotonic() + DEADLINE
        while wanted not in self.text() and not self.ended and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: the run closed the terminal
                    data = b""
                self.seen += data
                self.ended = not data
        return wanted in self.text()

    def finish(self) -> int:
        self.gate.touch()
        self.read_until(b"\x00never")  # to the end of the output
        code = self.proc.wait(timeout=DEADLINE)
        os.close(self.fd)
        return code


def test_the_terminal_shows_hosts_running_and_waiting_before_the_run_ends(tmp_path) -> None:
    term = Terminal(tmp_path / "gate", hosts=4, parallel=2, rows=30)
    try:
        # Two hosts in their long phase, two waiting for a slot: the live table, mid-run.
        assert term.read_until(b"host-1  kubeadm-join  start"), term.text()[-2000:]
        assert term.read_until(b"host-3  waiting       pending"), term.text()[-2000:]
        assert b"summary" not in term.seen and not term.ended
    finally:
        code = term.finish()
    assert code == 0 and b"summary" in term.seen and b"Traceback" not in term.seen


def test_a_fleet_taller_than_the_terminal_shows_totals_while_it_runs(tmp_path) -> None:
    term = Terminal(tmp_path / "gate", hosts=40, parallel=40, rows=20)
    try:
        assert term.read_until(b"0/40 hosts finished: 0 done, 0 failed, 40 running, 0 waiting"), term.text()[-2000:]
        assert b"summary" not in term.seen and not term.ended
    finally:
        code = term.finish()
    assert code == 0 and b"40 ok, 0 failed" in ANSI.sub(b"", term.seen)
