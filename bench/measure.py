"""Run one tool and measure it: wall time, controller CPU, peak RSS, peak fds,
peak threads, time to its first failure line on screen.

This process is a child subreaper, so whatever the tool leaves running (SSH
ControlMasters that fork into the background) is re-parented here, sampled,
ended by PID (SIGTERM) once the tool exits, and reaped; its CPU is then in
RUSAGE_CHILDREN like the tool's own. The sampler sums the RSS of every
descendant every 20 ms, or less often when a sample takes more than 5 ms
(several ssh/ansible processes at once count together).

usage: measure.py OUT_JSON FAIL_REGEX TIMEOUT -- ARGV...
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
PAGE = os.sysconf("SC_PAGE_SIZE")


def descendants(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
                out += kids
                todo += kids
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return out


def rss_fds_threads(pids: list[int]) -> tuple[int, int, int]:
    rss = fds = threads = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                rss += int(fh.read().split()[1]) * PAGE
            fds += len(os.listdir(f"/proc/{pid}/fd"))
            threads += len(os.listdir(f"/proc/{pid}/task"))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return rss, fds, threads


def main() -> int:
    out_path, fail_regex, timeout = sys.argv[1], re.compile(sys.argv[2]), float(sys.argv[3])
    argv = sys.argv[sys.argv.index("--") + 1:]
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()
    peak = {"rss": 0, "fds": 0, "threads": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            t = time.monotonic()
            rss, fds, threads = rss_fds_threads(descendants(me))
            peak["rss"] = max(peak["rss"], rss)
            peak["fds"] = max(peak["fds"], fds)
            peak["threads"] = max(peak["threads"], threads)
            # Every 20 ms, or less often when a sample is costly (a tool with 2000 threads
            # and fds): at most a fifth of this process's time, so the sampler does not
            # slow the reading of the tool's output, nor take the tool's share of the cores.
            done.wait(max(0.02, 4 * (time.monotonic() - t)))

    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    first_failure = None
    tail: list[str] = []
    failures: list[str] = []
    lines = 0
    assert proc.stdout is not None
    deadline = started + timeout
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        lines += 1
        if first_failure is None and fail_regex.search(line):
            first_failure = time.monotonic() - started
        tail = (tail + [line])[-40:]
        if fail_regex.search(line) and len(failures) < 20:
            failures.append(line)
    status = proc.wait()
    wall = time.monotonic() - started
    timer.cancel()
    done.set()
    sampler.join()
    # Whatever the tool left behind (ControlMasters): end it by PID and reap it.
    left = descendants(me)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    reap_until = time.monotonic() + 10
    while time.monotonic() < reap_until:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.01)
    for pid in descendants(me):
        os.kill(pid, signal.SIGKILL)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(out_path).write_text(json.dumps({
        "status": status, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "peak_rss": peak["rss"],
        "max_single_rss": ru.ru_maxrss * 1024, "peak_fds": peak["fds"], "peak_threads": peak["threads"],
        "first_failure": first_failure,
        "left_behind": len(left), "lines": lines, "tail": tail, "failures": failures,
        "timed_out": time.monotonic() > deadline,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
