"""`python -m nodeboot ...` under cProfile in every thread, on each thread's own CPU clock:
where the controller's CPU goes when many host threads, paramiko's reader threads and
the cluster threads share one process. A diagnostic, not a timed run (profiling slows
the run). At exit the threads' profiles are merged and written to $NB_PROFILE_OUT
(a pstats file; default nodeboot.pstats), and the top functions by own CPU time are
printed to stderr.

Caveat (issue 17, third round): on one N=40 re-run it charged 14.8 of 20.9 s to socket
`recv` calls that were not CPU (the run used 1.8 s of CPU unprofiled); read its figures
with the process's own CPU beside them.

    NB_PROFILE_OUT=run.pstats PYTHONPATH=bootstrap python bench/nodeboot_profiled.py join -i INV ...
"""

from __future__ import annotations

import atexit
import cProfile
import os
import pstats
import sys
import threading
import time

PROFILES: list[cProfile.Profile] = []
LOCK = threading.Lock()


def profile_this_thread(*_args: object) -> None:
    """threading.setprofile's hook: the thread's first event switches it to its own cProfile."""
    sys.setprofile(None)
    profile = cProfile.Profile(time.thread_time)
    with LOCK:
        PROFILES.append(profile)
    profile.enable()


def report() -> None:
    with LOCK:
        profiles = list(PROFILES)
    merged = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        merged.add(profile)
    merged.dump_stats(os.environ.get("NB_PROFILE_OUT", "nodeboot.pstats"))
    print(f"{len(profiles)} threads profiled; CPU by own time:", file=sys.stderr)
    merged.stream = sys.stderr  # type: ignore[attr-defined]
    merged.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    threading.setprofile(profile_this_thread)
    profile_this_thread()
    atexit.register(report)
    from nodeboot.cli import main

    sys.argv[0] = "nodeboot"
    main()
