"""`python -m nodeboot ...` with its cluster-side calls timed: where a join's time
goes, per host, beyond what the floor does. A diagnostic (its figures are not the
timed run's): it wraps, without changing them, the token ledger's create and
delete, the wait for the token's JWS signature, the Node watcher's start and
wait_ready, Node reads, label/taint, the SSH connect and the host batches, and
writes every call's start and end (seconds after this process started) to
$NB_TIMED_OUT as JSON when the run ends, with the calling thread's CPU time in
each (on these shared cores wall time is mostly waiting for a CPU).

    NB_TIMED_OUT=calls.json PYTHONPATH=bootstrap python bench/nodeboot_timed.py join -i INV ...
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import threading
import time
from typing import Any

T0 = time.monotonic()
CALLS: list[dict[str, Any]] = []
LOCK = threading.Lock()


def timed(owner: Any, attr: str, label: str) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.monotonic() - T0, time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            with LOCK:
                CALLS.append({"call": label, "thread": threading.current_thread().name,
                              "start": round(start, 4), "end": round(time.monotonic() - T0, 4),
                              "thread_cpu": round(time.thread_time() - cpu, 4)})

    setattr(owner, attr, wrapper)


def patch() -> None:
    from nodeboot import app
    from nodeboot.cluster import nodes, tokens
    from nodeboot.steps import base, cluster_phases
    from nodeboot.transport import ssh

    timed(tokens.TokenLedger, "create", "token-create")
    timed(tokens.TokenLedger, "delete", "token-delete")
    timed(tokens.TokenLedger, "delete_earlier", "token-list-earlier")
    timed(tokens, "wait_signed", "token-wait-signed")
    timed(nodes.NodeWatcher, "start", "watch-start")
    timed(nodes.NodeWatcher, "wait_ready", "wait-ready")
    timed(nodes.NodeWatcher, "listed", "node-listed")
    timed(base.PendingClusterFacts, "wait", "cluster-facts-wait")
    timed(nodes, "read_node", "node-read")
    timed(nodes, "apply_labels_and_taints", "label-taint")
    timed(ssh.SSHTransport, "connect", "ssh-connect")
    timed(base, "run_batch", "host-batch")
    timed(base, "run_one", "host-one")
    timed(cluster_phases, "gather_facts", "facts")
    timed(app, "select_hosts", "inventory")
    timed(app, "make_output", "make-output")
    timed(app, "check_proxy_modes", "check-proxy-modes")
    timed(app, "cluster_facts", "cluster-facts")


def dump() -> None:
    path = os.environ.get("NB_TIMED_OUT")
    if path:
        with open(path, "w") as fh:
            json.dump({"imports_done": IMPORTS_DONE, "exit": round(time.monotonic() - T0, 4),
                       "process_cpu": round(time.process_time(), 3), "calls": CALLS}, fh)


if __name__ == "__main__":
    patch()
    IMPORTS_DONE = round(time.monotonic() - T0, 4)
    atexit.register(dump)
    from nodeboot.cli import main

    sys.argv[0] = "nodeboot"
    main()
