"""Ready noticed: time from a Node turning Ready in the API server to
nodeboot's NodeWatcher (cluster/nodes.py) seeing it.

Needs the lab's real API server: `Lab(state).up(linux=1, windows=0)`, made by
this module if it is not up. The bench registers a Node of its own
(bench-ready-node, which no kubelet keeps), then flips its Ready condition
with a status patch, again and again: t0 just before the patch is sent, t1
when the patch's reply is back (the API server has stored it), t2 when the
watcher's wait_ready returns. Reported: t2 - t1 (noticed after the API said
it was stored; can be below 0 when the watch event beats the reply) and
t2 - t0 (an upper bound). The node is deleted and the lab taken down at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import statistics
import threading
import time
from pathlib import Path

from kubernetes import client

from nodeboot.cluster.client import Cluster
from nodeboot.cluster.nodes import NodeWatcher, is_ready

NODE = "bench-ready-node"


def condition(ready: bool) -> dict:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "Bench", "message": "set by the bench",
                                       "lastHeartbeatTime": now, "lastTransitionTime": now}]}}


def measure_ready(lab_state: Path, reps: int, log) -> dict:
    from nodeboot_lab.lab import Lab

    lab = Lab(lab_state, log=lambda m: None)
    if lab.load() is None or not lab.status().get("up"):
        t = time.monotonic()
        lab.up(linux=1, windows=0)
        log(f"Ready: lab up in {time.monotonic() - t:.1f}s ({lab_state})")
    cluster = Cluster.from_kubeconfig(str(lab_state / "admin.conf"))
    core = cluster.core
    with contextlib.suppress(client.ApiException):
        core.delete_node(NODE)
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=NODE, labels={"bench": "ready"})))
    watcher = NodeWatcher(cluster).start()
    after_stored, upper = [], []
    try:
        watcher.wait_for(NODE, lambda n: n is not None, timeout=30)
        for _ in range(reps):
            core.patch_node_status(NODE, condition(False))
            watcher.wait_for(NODE, lambda n: n is not None and not is_ready(n), timeout=30)
            time.sleep(0.05)
            stored: list[float] = []
            t0 = time.monotonic()

            def patch(stored: list[float] = stored) -> None:
                core.patch_node_status(NODE, condition(True))
                stored.append(time.monotonic())

            # The patch is sent from another thread so that this one waits on the watcher at once.
            sender = threading.Thread(target=patch)
            sender.start()
            watcher.wait_ready(NODE, timeout=30)
            t2 = time.monotonic()
            sender.join()
            after_stored.append(t2 - stored[0])
            upper.append(t2 - t0)
    finally:
        watcher.stop()
        with contextlib.suppress(client.ApiException):
            core.delete_node(NODE)
        lab.down(quiet=True)  # the bench's own lab: its API server would load the machine for nothing
    out = {"reps": reps, "after_stored_ms": round(statistics.median(after_stored) * 1000, 1),
           "upper_bound_ms": round(statistics.median(upper) * 1000, 1),
           "upper_bound_max_ms": round(max(upper) * 1000, 1), "watch_restarts": watcher.restarts}
    log(f"Ready noticed: median {out['after_stored_ms']} ms after the API stored it, "
        f"{out['upper_bound_ms']} ms from sending the patch (max {out['upper_bound_max_ms']} ms), {reps} flips")
    return out
