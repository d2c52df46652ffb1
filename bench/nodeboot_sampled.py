"""`python -m nodeboot ...` with a sampler thread that charges each thread's CPU to
its stack: where the controller's CPU goes when host threads, paramiko's reader
threads and the cluster threads share one process. A diagnostic, not a timed run.

Every interval (NB_SAMPLE_MS, default 5 ms) the sampler reads every thread's own
CPU clock (pthread_getcpuclockid) and its current Python stack, and charges the CPU
the thread used since the previous sample to that stack. Unlike a profiler's
per-call timing, a thread blocked in recv() or a lock uses no CPU and is charged
none. A thread's last slice before it ends is lost (reported as "unattributed").
At exit it prints, to stderr, the CPU by thread kind, by package of the innermost
frame, by innermost nodeboot frame and the top stacks; $NB_SAMPLE_OUT (optional)
gets the collapsed stacks (flamegraph.pl's input: "frame;frame;... microseconds").

    NB_SAMPLE_OUT=run.folded PYTHONPATH=bootstrap python bench/nodeboot_sampled.py join -i INV ...
    PYTHONPATH=bootstrap python bench/nodeboot_sampled.py bench/join_floor.py HOSTS_JSON ...  (any script)
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import time
from collections import Counter
from types import FrameType

INTERVAL = float(os.environ.get("NB_SAMPLE_MS", "5")) / 1000
STACKS: Counter[tuple[str, str]] = Counter()  # (thread kind, collapsed stack) -> CPU seconds
LAST: dict[int, float] = {}
STOP = threading.Event()


def thread_kind(name: str) -> str:
    return re.sub(r"\d+", "N", name)


def collapsed(frame: FrameType | None) -> str:
    parts = []
    while frame is not None:
        code = frame.f_code
        path = code.co_filename
        short = path.split("site-packages/")[-1] if "site-packages/" in path else path.split("bootstrap/")[-1]
        parts.append(f"{code.co_name} ({short.rsplit('/', 2)[-2] if '/' in short else ''}/{short.rsplit('/', 1)[-1]})")
        frame = frame.f_back
    return ";".join(reversed(parts))


def thread_cpu(ident: int) -> float | None:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, ProcessLookupError):
        return None


def sample_once(me: int) -> None:
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        cpu = thread_cpu(ident)
        if cpu is None:
            continue
        used = cpu - LAST.get(ident, 0.0)
        LAST[ident] = cpu
        if used > 0:
            STACKS[(thread_kind(names.get(ident, "?")), collapsed(frame))] += used


def sampler() -> None:
    me = threading.get_ident()
    while not STOP.wait(INTERVAL):
        sample_once(me)


def package(frame_text: str) -> str:
    match = re.search(r"\((\S*)/", frame_text)
    return match.group(1) if match and match.group(1) else frame_text


def report(started_cpu: float, sampler_thread: threading.Thread) -> None:
    STOP.set()
    sampler_thread.join()
    own = thread_cpu(sampler_thread.ident or 0) or 0.0
    total = time.process_time() - started_cpu
    charged = sum(STACKS.values())
    out = sys.stderr
    print(f"process CPU {total:.2f}s; charged to stacks {charged:.2f}s; the sampler's own "
          f"{own:.2f}s; unattributed {total - charged - own:.2f}s", file=out)
    groups: dict[str, Counter[str]] = {"thread kind": Counter(), "package of the innermost frame": Counter(),
                                       "innermost nodeboot frame": Counter(), "innermost frame": Counter()}
    for (kind, stack), cpu in STACKS.items():
        frames = stack.split(";")
        ours = [f for f in frames if "(nodeboot/" in f or "/nodeboot/" in f]
        groups["thread kind"][kind] += cpu
        groups["package of the innermost frame"][package(frames[-1])] += cpu
        groups["innermost nodeboot frame"][ours[-1] if ours else "(none)"] += cpu
        groups["innermost frame"][frames[-1]] += cpu
    for title, counter in groups.items():
        print(f"== CPU by {title}", file=out)
        for key, cpu in counter.most_common(15):
            print(f"{cpu:7.3f}s {100 * cpu / max(charged, 1e-9):5.1f}%  {key}", file=out)
    path = os.environ.get("NB_SAMPLE_OUT")
    if path:
        with open(path, "w") as fh:
            for (kind, stack), cpu in STACKS.most_common():
                fh.write(f"{kind};{stack} {int(cpu * 1e6)}\n")


if __name__ == "__main__":
    start = time.process_time()
    thread = threading.Thread(target=sampler, name="sampler", daemon=True)
    thread.start()
    atexit.register(report, start, thread)
    if sys.argv[1].endswith(".py"):  # another program (the floor), for comparison
        import runpy

        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        from nodeboot.cli import main

        sys.argv[0] = "nodeboot"
        main()
