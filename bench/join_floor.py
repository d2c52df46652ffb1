"""The floor for the real join: the least a controller can do to get N hosts
Ready with kubeadm, and nothing else.

One Node list (nodeboot's light read, as nodeboot's re-run makes it) and one SSH
exec per host (in parallel) find the hosts already joined (a re-run ends there).
For the others: all bootstrap tokens created at once, one cluster-info watch
until every token's JWS signature is in, then `kubeadm join --config` on every host at once over plain parallel SSH
(paramiko, one connection and one exec per host; the JoinConfiguration comes
from nodeboot.cluster.joinconfig and travels on stdin, never in argv), and one
Node watch until every Node is Ready. No labels, no taints, no token deletion
(the harness deletes the tokens afterwards, unmeasured): what nodeboot does
beyond this is its overhead. Prints one JSON line with its timings.

    PYTHONPATH=bootstrap python bench/join_floor.py HOSTS_JSON --kubeconfig F --ssh-key F --known-hosts F
        [--ignore-preflight-errors SystemVerification]

HOSTS_JSON: a file with [{"name": ..., "address": ..., "port": 22}, ...].
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
from kubernetes import watch

from nodeboot.cluster import nodes, tokens
from nodeboot.cluster.client import Cluster
from nodeboot.cluster.joinconfig import JoinSpec, render

JOIN = ('umask 077; f=$(mktemp /run/floor-join.XXXXXXXX) || exit 1; cat > "$f"; '
        'kubeadm join --config "$f" > /run/floor-join.log 2>&1; rc=$?; rm -f "$f"; '
        '[ $rc = 0 ] || tail -n 5 /run/floor-join.log >&2; exit $rc')
JOINED = "test -f /etc/kubernetes/kubelet.conf"


class Ssh:
    def __init__(self, key: str, known_hosts: str) -> None:
        self.key = paramiko.Ed25519Key.from_private_key_file(key)
        self.known = paramiko.HostKeys(known_hosts)

    def connect(self, address: str, port: int = 22) -> paramiko.SSHClient:
        c = paramiko.SSHClient()
        for host, keys in self.known.items():
            for kind, key in keys.items():
                c.get_host_keys().add(host, kind, key)
        c.set_missing_host_key_policy(paramiko.RejectPolicy())
        c.connect(address, port=port, username="root", pkey=self.key, allow_agent=False, look_for_keys=False,
                  timeout=30)
        return c


def run(c: paramiko.SSHClient, command: str, stdin: str = "") -> tuple[int, str]:
    chan = c.get_transport().open_session()  # type: ignore[union-attr]
    chan.exec_command(command)
    if stdin:
        chan.sendall(stdin.encode())
    chan.shutdown_write()
    err = chan.makefile_stderr().read().decode(errors="replace")
    return chan.recv_exit_status(), err


def wait_signed_all(cluster: Cluster, ids: list[str], timeout: float = 120) -> None:
    """One watch on cluster-info until every token's jws-kubeconfig-<id> key is in."""
    wanted = {f"jws-kubeconfig-{i}" for i in ids}
    cm = cluster.core.read_namespaced_config_map("cluster-info", "kube-public")
    if wanted <= set(cm.data or {}):
        return
    w = watch.Watch()
    for event in w.stream(cluster.core.list_namespaced_config_map, "kube-public",
                          field_selector="metadata.name=cluster-info",
                          resource_version=cm.metadata.resource_version, timeout_seconds=int(timeout)):
        if wanted <= set(event["object"].data or {}):
            w.stop()
            return
    raise SystemExit("floor: cluster-info not signed for every token in time")


class ReadyWatch(threading.Thread):
    """One Node watch, from a list, until every wanted Node is Ready."""

    def __init__(self, cluster: Cluster, names: set[str]) -> None:
        super().__init__(daemon=True)
        self.cluster, self.names = cluster, set(names)
        self.ready: set[str] = set()
        self.done = threading.Event()
        listing = cluster.core.list_node()
        self.rv = listing.metadata.resource_version
        self._note(listing.items)

    def _note(self, items) -> None:
        self.ready |= {n.metadata.name for n in items if n.metadata.name in self.names and nodes.is_ready(n)}
        if self.ready >= self.names:
            self.done.set()

    def run(self) -> None:
        w = watch.Watch()
        for event in w.stream(self.cluster.core.list_node, resource_version=self.rv, timeout_seconds=600):
            self._note([event["object"]])
            if self.done.is_set():
                w.stop()
                return


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("hosts")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--ssh-key", required=True)
    p.add_argument("--known-hosts", required=True)
    p.add_argument("--ignore-preflight-errors", default="SystemVerification")
    p.add_argument("--kubeadm-minor", type=int, default=37)
    p.add_argument("--tokens-out", help="write the created token ids here (the harness deletes them)")
    args = p.parse_args()
    started = time.monotonic()
    t: dict[str, float] = {}
    hosts = json.loads(Path(args.hosts).read_text())
    cluster = Cluster.from_kubeconfig(args.kubeconfig)
    ssh = Ssh(args.ssh_key, args.known_hosts)
    pool = ThreadPoolExecutor(max_workers=len(hosts) + 4)
    # What is already done: one Node list, one exec per host on its (kept) connection.
    conns = {h["name"]: pool.submit(ssh.connect, h["address"], h.get("port", 22)) for h in hosts}
    ready = {n.metadata.name for n in node_list(cluster).items if nodes.is_ready(n)}
    probes = {h["name"]: pool.submit(lambda h=h: run(conns[h["name"]].result(), JOINED)[0]) for h in hosts}
    todo = [h for h in hosts if not (h["name"] in ready and probes[h["name"]].result() == 0)]
    t["probed"] = time.monotonic() - started
    if todo:
        endpoint = tokens.join_endpoint(cluster)
        pins = tokens.ca_cert_hashes(cluster)
        made = list(pool.map(lambda h: _token(cluster, h["name"]), todo))
        if args.tokens_out:
            Path(args.tokens_out).write_text(json.dumps([m.token_id for m in made]))
        t["tokens_created"] = time.monotonic() - started
        wait_signed_all(cluster, [m.token_id for m in made])
        t["tokens_signed"] = time.monotonic() - started
        watcher = ReadyWatch(cluster, {h["name"] for h in todo})
        watcher.start()
        ignore = [e for e in args.ignore_preflight_errors.split(",") if e]
        configs = {h["name"]: render(JoinSpec(endpoint=endpoint, token=m.value, ca_hashes=pins, node_name=h["name"],
                                              ignore_preflight_errors=ignore), args.kubeadm_minor)
                   for h, m in zip(todo, made, strict=True)}
        joins = {h["name"]: pool.submit(lambda h=h: run(conns[h["name"]].result(), JOIN, configs[h["name"]]))
                 for h in todo}
        for name, job in joins.items():
            rc, err = job.result()
            if rc != 0:
                print(f"floor: {name}: kubeadm join failed (exit {rc}): {' '.join(err.split())[-300:]}",
                      file=sys.stderr)
                return 1
        t["joins_returned"] = time.monotonic() - started
        if not watcher.done.wait(300):
            print("floor: not every Node Ready in 300 s", file=sys.stderr)
            return 1
        t["all_ready"] = time.monotonic() - started
    for c in conns.values():
        c.result().close()
    t["exit"] = time.monotonic() - started
    print(json.dumps({"floor": {k: round(v, 3) for k, v in t.items()}, "joined": len(todo)}))
    return 0


def node_list(cluster: Cluster):
    """The Node list by nodeboot's own light read (the generated CoreV1Api's first use costs
    0.4-0.6 s of CPU, which nodeboot's re-run no longer pays: neither does the floor's)."""
    response = cluster.core.node_list_response((5, 30))
    try:
        return cluster.api.deserialize(response.data.decode(), "V1NodeList", "application/json")
    finally:
        response.release_conn()


def _token(cluster: Cluster, node: str) -> tokens.BootstrapToken:
    token = tokens.new_token(node)
    cluster.core.create_namespaced_secret("kube-system", tokens.token_secret_body(token))
    return token


if __name__ == "__main__":
    sys.exit(main())
