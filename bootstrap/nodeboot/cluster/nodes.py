"""Nodes: wait for Ready with one shared watch, labels and taints, drain, delete."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from kubernetes import client, watch

from nodeboot.cluster.client import Cluster, short_api_error
from nodeboot.cluster.retry import OUTAGE_TIMEOUT, with_retry
from nodeboot.errors import ClusterError
from nodeboot.validate import Taint


def is_ready(node: client.V1Node | None) -> bool:
    if node is None or node.status is None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


class WatchBackoff:
    """Delays between failed watches: exponential from `base`, capped at `cap`, with
    "equal jitter" (half the delay fixed, half random) so hosts that lost the same
    API server do not come back in step, and a long outage costs few requests."""

    def __init__(self, base: float = 0.5, cap: float = 8.0, rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.rng = base, cap, rng

    def ceiling(self, failures: int) -> float:
        return min(self.cap, self.base * 2 ** max(0, failures - 1))

    def delay(self, failures: int) -> float:
        ceiling = self.ceiling(failures)
        return ceiling / 2 + self.rng() * ceiling / 2


class NodeWatcher:
    """One watch on all Nodes for the whole run, shared by every host's wait.

    A watch, not polling: a node turning Ready is seen within milliseconds. If the
    API server goes away (restart, network), the watch re-lists and resumes after
    a backoff; a watch that keeps failing, or keeps ending at once with nothing
    seen, is given up after `give_up_failures` tries in a row spanning at least
    `give_up_after` seconds (longer than an API server restart), and every wait
    then fails with that error.

    stop() ends the watch at once, from the calling thread: it shuts the socket
    of the request in flight (a thread blocked in a TLS read wakes up) and joins
    the thread, so no thread is left inside a read when the interpreter exits.
    """

    WATCH_SECONDS = 30  # the server ends each watch after this; the next resumes where it left off
    HEALTHY_AFTER = WATCH_SECONDS / 2  # a watch that ran this long (or saw an event) was no failure
    LIST_TIMEOUT = (5, 15)  # (connect, read) seconds
    WATCH_TIMEOUT = (5, WATCH_SECONDS + 10)
    JOIN_TIMEOUT = WATCH_SECONDS + 15  # stop() waits at most this (a request not yet answered)

    def __init__(self, cluster: Cluster, give_up_failures: int = 10, give_up_after: float = OUTAGE_TIMEOUT + 30,
                 backoff: WatchBackoff | None = None) -> None:
        self.cluster = cluster
        self.give_up_failures = give_up_failures
        self.give_up_after = give_up_after
        self.backoff = backoff or WatchBackoff()
        self._nodes: dict[str, client.V1Node] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._synced = threading.Event()
        self._request_lock = threading.Lock()
        self._response: urllib3.BaseHTTPResponse | None = None
        self.restarts = 0  # failed or empty watches, in all
        self.requests = 0
        self.last_error = ""
        self.error: ClusterError | None = None  # set when the watch was given up

    def start(self) -> NodeWatcher:
        with self._request_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        """End the watch now and wait (bounded) for its thread."""
        with self._request_lock:
            self._stop.set()
            response, thread = self._response, self._thread
        if response is not None:
            _interrupt(response)
        self._synced.set()  # nobody waits for a first listing that will not come
        with self._changed:
            self._changed.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.JOIN_TIMEOUT)

    # -- the watch thread -------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        failing_since: float | None = None
        version: str | None = None  # None: list first
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if version is None:
                    version = self._list()
                version, events = self._watch(version)
                if events or time.monotonic() - started >= self.HEALTHY_AFTER:
                    failures, failing_since = 0, None
                    continue
                self.last_error = "the watch ended at once with nothing seen"
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                # 410 Gone (resource version too old), a restarted API server, a dropped
                # connection, or stop() shutting the socket: list again unless stopping.
                if self._stop.is_set():
                    return
                self.last_error, version = short_api_error(exc), None
            failures += 1
            self.restarts += 1
            failing_since = failing_since or started
            failing_for = time.monotonic() - failing_since
            if failures >= self.give_up_failures and failing_for >= self.give_up_after:
                self._give_up(failures, failing_for)
                return
            self._stop.wait(self.backoff.delay(failures))

    def _give_up(self, failures: int, seconds: float) -> None:
        self.error = ClusterError(
            f"the Node watch on {self.cluster.server} failed {failures} times in a row over {seconds:.0f}s; "
            f"gave up: {self.last_error}")
        with self._changed:
            self._changed.notify_all()
        self._synced.set()

    def _request(self, timeout: tuple[float, float], **query) -> urllib3.BaseHTTPResponse:
        """GET the Node list (or watch), with the response kept where stop() can reach it."""
        self.requests += 1
        response = self.cluster.core.node_list_response(timeout, **query)
        with self._request_lock:
            self._response = response
            stopping = self._stop.is_set()
        if stopping:
            _interrupt(response)
        return response

    def _release(self, response: urllib3.BaseHTTPResponse, close: bool = False) -> None:
        """Forget the response; close its connection if it may be half-read (a watch)."""
        with self._request_lock:
            self._response = None
        if close:
            response.close()
        response.release_conn()

    def _list(self) -> str:
        response = self._request(self.LIST_TIMEOUT)
        try:
            data = response.data
        finally:
            self._release(response)
        listing = self.cluster.api.deserialize(data.decode(), "V1NodeList", "application/json")
        with self._changed:
            self._nodes = {n.metadata.name: n for n in listing.items}
            self._changed.notify_all()
        self._synced.set()
        return listing.metadata.resource_version

    def _watch(self, version: str) -> tuple[str, int]:
        """Follow one watch from version until the server ends it; (last version, events seen)."""
        response = self._request(self.WATCH_TIMEOUT, watch=True, resource_version=version,
                                 timeout_seconds=self.WATCH_SECONDS, allow_watch_bookmarks=True)
        events = 0
        try:
            for line in watch.watch.iter_resp_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, raw = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise client.ApiException(status=raw.get("code"), reason=raw.get("reason") or "watch error")
                version = (raw.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                node = self.cluster.api.deserialize(json.dumps(raw), "V1Node", "application/json")
                events += 1
                with self._changed:
                    if kind == "DELETED":
                        self._nodes.pop(node.metadata.name, None)
                    else:
                        self._nodes[node.metadata.name] = node
                    self._changed.notify_all()
                if self._stop.is_set():
                    break
        finally:
            self._release(response, close=True)
        return version, events

    # -- waiting ----------------------------------------------------------------
    def get(self, name: str) -> client.V1Node | None:
        with self._changed:
            return self._nodes.get(name)

    def listed(self, name: str) -> client.V1Node | None:
        """The Node as the watch knows it once its first listing is in (waited for, at most
        LIST_TIMEOUT's read bound): a fleet's re-run then reads no Node one by one. None when
        the Node is not there or the listing did not come; callers read the Node itself then."""
        self.start()
        self._synced.wait(self.LIST_TIMEOUT[1])
        return self.get(name)

    def wait_for(self, name: str, predicate: Callable[[client.V1Node | None], bool], timeout: float,
                 cancelled: threading.Event | None = None) -> client.V1Node | None:
        self.start()
        self._synced.wait(timeout=min(timeout, 30))
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                node = self._nodes.get(name)
                if predicate(node):
                    return node
                if self.error is not None:
                    raise ClusterError(f"node {name}: {self.error}")
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (cancelled is not None and cancelled.is_set()) or self._stop.is_set():
                    raise ClusterError(
                        f"node {name} did not become Ready within {timeout:.0f}s"
                        + (f" (API watch: {self.last_error})" if self.last_error else "")
                    )
                self._changed.wait(min(remaining, 0.5))

    def wait_ready(self, name: str, timeout: float, cancelled: threading.Event | None = None) -> client.V1Node:
        node = self.wait_for(name, is_ready, timeout, cancelled)
        assert node is not None
        return node


def _interrupt(response: urllib3.BaseHTTPResponse) -> None:
    """Wake a thread blocked reading response: shut its socket's reading side down."""
    with contextlib.suppress(ValueError, RuntimeError, OSError):  # already released: nothing blocks on it
        response.shutdown()


def read_node(cluster: Cluster, name: str) -> client.V1Node | None:
    try:
        return with_retry(lambda: cluster.core.read_node(name))
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise ClusterError(f"cannot read node {name}: {short_api_error(exc)}") from None


def missing_labels(node: client.V1Node, labels: dict[str, str]) -> dict[str, str]:
    have = node.metadata.labels or {}
    return {k: v for k, v in labels.items() if have.get(k) != v}


def missing_taints(node: client.V1Node, taints: list[Taint]) -> list[Taint]:
    have = {(t.key, t.value or "", t.effect) for t in (node.spec.taints or [])}
    return [t for t in taints if (t.key, t.value, t.effect) not in have]


def apply_labels_and_taints(cluster: Cluster, node: client.V1Node, labels: dict[str, str],
                            taints: list[Taint]) -> bool:
    """Add what is missing; never drops labels or taints someone else set. True if anything changed."""
    new_labels = missing_labels(node, labels)
    new_taints = missing_taints(node, taints)
    if not new_labels and not new_taints:
        return False
    body: dict = {"metadata": {"labels": new_labels}} if new_labels else {}
    if new_taints:
        kept = [t.to_dict() for t in (node.spec.taints or [])]
        # Taints are a list without a merge key: send the whole list, guarded by resourceVersion.
        body.setdefault("metadata", {})["resourceVersion"] = node.metadata.resource_version
        body["spec"] = {"taints": [*({k: v for k, v in t.items() if v is not None} for t in kept),
                                   *(t.as_api() for t in new_taints)]}
    try:
        cluster.core.patch_node(node.metadata.name, body)
    except client.ApiException as exc:
        raise ClusterError(f"cannot label/taint node {node.metadata.name}: {short_api_error(exc)}") from None
    return True


@dataclass
class DrainResult:
    evicted: list[str]
    skipped_daemonset: list[str]
    deleted_bare: list[str]


def _owner_kind(pod: client.V1Pod) -> str | None:
    for ref in pod.metadata.owner_references or []:
        if ref.controller:
            return ref.kind
    return None


def _ref(pod: client.V1Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def _has_emptydir(pod: client.V1Pod) -> bool:
    return any(v.empty_dir is not None for v in (pod.spec.volumes or []))


def _drain_plan(name: str, pods: list[client.V1Pod], force: bool, delete_emptydir_data: bool,
                result: DrainResult) -> list[client.V1Pod]:
    """The pods to evict; refuses, as kubectl drain does, pods that no controller recreates
    (unless force) and pods whose emptyDir data would be lost (unless delete_emptydir_data)."""
    to_evict: list[client.V1Pod] = []
    result.skipped_daemonset.clear()
    for pod in pods:
        if pod.status.phase in ("Succeeded", "Failed"):
            continue
        kind = _owner_kind(pod)
        if kind == "DaemonSet" or "kubernetes.io/config.mirror" in (pod.metadata.annotations or {}):
            result.skipped_daemonset.append(_ref(pod))
            continue
        to_evict.append(pod)
    refusals = []
    bare = [_ref(p) for p in to_evict if _owner_kind(p) is None]
    if bare and not force:
        refusals.append(f"pods no controller will recreate ({', '.join(bare)}): drain with --force")
    local = [_ref(p) for p in to_evict if _has_emptydir(p)]
    if local and not delete_emptydir_data:
        refusals.append(f"pods with emptyDir volumes whose data would be lost ({', '.join(local)}): "
                        "drain with --delete-emptydir-data")
    if refusals:
        raise ClusterError(f"node {name} runs " + "; and ".join(refusals))
    return to_evict


def drain(cluster: Cluster, name: str, force: bool = False, timeout: float = 300.0,
          cancelled: threading.Event | None = None, progress: Callable[[str], None] = lambda _m: None,
          delete_emptydir_data: bool = False, grace_period: int | None = None) -> DrainResult:
    """Cordon, then evict through the Eviction API (so PodDisruptionBudgets hold),
    retrying evictions the API refuses with 429 until the timeout. grace_period: seconds
    each pod gets to stop (None: the pod's own terminationGracePeriodSeconds)."""
    result = DrainResult([], [], [])

    def listing() -> list[client.V1Pod]:
        try:
            return cluster.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items
        except client.ApiException as exc:
            raise ClusterError(f"cannot list the pods on node {name}: {short_api_error(exc)}") from None

    # Refuse before cordoning, so a refused drain leaves the node as it was.
    _drain_plan(name, listing(), force, delete_emptydir_data, result)
    try:
        cluster.core.patch_node(name, {"spec": {"unschedulable": True}})
    except client.ApiException as exc:
        if exc.status == 404:
            return result
        raise ClusterError(f"cannot cordon node {name}: {short_api_error(exc)}") from None
    # Again, now that nothing new lands: a pod may have arrived between the two lists.
    to_evict = _drain_plan(name, listing(), force, delete_emptydir_data, result)
    delete_options = client.V1DeleteOptions(grace_period_seconds=grace_period) if grace_period is not None else None
    deadline = time.monotonic() + timeout
    pending = list(to_evict)
    while pending:
        if cancelled is not None and cancelled.is_set():
            raise ClusterError(f"drain of {name} interrupted; {len(pending)} pods still on the node (node is cordoned)")
        blocked = []
        for pod in pending:
            ref = f"{pod.metadata.namespace}/{pod.metadata.name}"
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name,
                                                                   namespace=pod.metadata.namespace),
                                     delete_options=delete_options)
            try:
                cluster.core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
                (result.evicted if _owner_kind(pod) else result.deleted_bare).append(ref)
            except client.ApiException as exc:
                if exc.status == 404:
                    continue
                if exc.status == 429:  # a PodDisruptionBudget says not now
                    blocked.append(pod)
                    continue
                raise ClusterError(f"cannot evict {ref} from {name}: {short_api_error(exc)}") from None
        pending = blocked
        if pending:
            if time.monotonic() > deadline:
                refs = ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in pending)
                raise ClusterError(f"drain of {name} timed out after {timeout:.0f}s: PodDisruptionBudget still "
                                   f"blocks eviction of {refs} (node stays cordoned)")
            progress(f"{len(pending)} evictions blocked by a PodDisruptionBudget; retrying")
            time.sleep(2.0)
    _wait_pods_gone(cluster, name, [*result.evicted, *result.deleted_bare], deadline)
    return result


def _wait_pods_gone(cluster: Cluster, node: str, refs: list[str], deadline: float) -> None:
    remaining = set(refs)
    while remaining and time.monotonic() < deadline:
        pods = cluster.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        present = {f"{p.metadata.namespace}/{p.metadata.name}" for p in pods}
        remaining &= present
        if remaining:
            time.sleep(0.5)
    if remaining:
        raise ClusterError(f"pods on {node} did not terminate in time: {', '.join(sorted(remaining))}")


def uncordon(cluster: Cluster, name: str) -> bool:
    """Let the scheduler use the node again (after a reset stopped once it had drained). Changed?"""
    node = read_node(cluster, name)
    if node is None:
        raise ClusterError(f"node {name} does not exist")
    if not (node.spec and node.spec.unschedulable):
        return False
    try:
        cluster.core.patch_node(name, {"spec": {"unschedulable": False}})
    except client.ApiException as exc:
        raise ClusterError(f"cannot uncordon node {name}: {short_api_error(exc)}") from None
    return True


def delete_node(cluster: Cluster, name: str) -> bool:
    try:
        cluster.core.delete_node(name)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise ClusterError(f"cannot delete node {name}: {short_api_error(exc)}") from None
