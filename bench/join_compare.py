"""The real join at fleet size, side by side on the lab: nodeboot, nodeboot's own
playbooks through ansible-playbook (tuned), and the floor (bench/join_floor.py).

For each N (the first N Linux hosts of the lab), each tool in turn (the order
rotates per N so load hits them alike): a cold join, the same command again
(re-run), then `nodeboot reset --yes` and the floor's tokens deleted, so the
next tool starts from the same cold hosts. Each run is measured by
bench/measure.py (wall, CPU of the tool and everything it started); the bench
watches the Nodes itself for the moment all N are Ready (from the tool's
launch); API requests are counted at the API server (bench/apicount.py) and
shown per node, with the idle background rate. nodeboot's own run log gives
where its time went, per phase.

    PYTHONPATH=bootstrap:lab .venv/bin/python bench/join_compare.py --state /tmp/lab-bench17 \
        [--sizes 10,40] [--tools nodeboot,floor,ansible] [--rtt-ms 50] [--keep-lab] [--json OUT] [--reruns K]

--rtt-ms: every host's SSH behind bench/delayproxy.py's relay adding that round
trip (the kernel has no netem): the controller-host path only, not the host's
own path to the API server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import yaml
from kubernetes import watch
from kubernetes.client import ApiException

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from apicount import ApiCounter, describe, split  # noqa: E402
from delayproxy import DelayProxy  # noqa: E402
from lab_join import inventory_of, nodeboot  # noqa: E402

from nodeboot.cluster import nodes  # noqa: E402
from nodeboot.cluster.client import Cluster  # noqa: E402
from nodeboot_lab.lab import Lab  # noqa: E402

PY = sys.executable
ANSIBLE_PLAYBOOK = str(Path(PY).parent / "ansible-playbook")
PLAYBOOK = ROOT / "bootstrap" / "nodeboot" / "playbooks" / "join.yml"
FAIL = {"nodeboot": r'"status": "failed"', "ansible": r"fatal:|UNREACHABLE", "floor": r"^floor: "}
FAIL["nodeboot-before"] = FAIL["nodeboot"]
# --before DIR: "nodeboot-before" is the same command run from DIR/bootstrap (an earlier tree,
# e.g. `git archive REV bootstrap scripts | tar -x -C DIR`), so both run under the same load.
BEFORE: list[Path] = []


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def log(msg: str) -> None:
    print(msg, flush=True)


# -- the hosts each tool is given ------------------------------------------------
class Fleet:
    """The first n Linux hosts, as each tool takes them (direct, or behind delay relays)."""

    def __init__(self, env: dict, n: int, work: Path, rtt_ms: float) -> None:
        self.env, self.n, self.work = env, n, work
        work.mkdir(parents=True, exist_ok=True)
        linux = [h for h in env["hosts"] if h["os"] == "linux"][:n]
        if len(linux) < n:
            raise SystemExit(f"the lab has {len(linux)} Linux hosts, {n} asked")
        self.names = [h["name"] for h in linux]
        self.relays: list[DelayProxy] = []
        self.known_hosts = env["known_hosts"]
        self.targets = {h["name"]: (h["address"], 22) for h in linux}
        if rtt_ms:
            known = dict(line.split(" ", 1) for line in Path(env["known_hosts"]).read_text().splitlines() if line)
            lines = []
            for h in linux:
                relay = DelayProxy(("127.0.0.1", 0), (h["address"], 22), rtt_ms=rtt_ms).start()
                self.relays.append(relay)
                self.targets[h["name"]] = ("127.0.0.1", relay.port)
                lines.append(f"[127.0.0.1]:{relay.port} {known[h['address']]}")
            self.known_hosts = str(work / "known_hosts")
            Path(self.known_hosts).write_text("\n".join(lines) + "\n")
        self.inventory = self._inventory()
        self.hosts_json = work / "hosts.json"
        self.hosts_json.write_text(json.dumps([{"name": n, "address": a, "port": p}
                                               for n, (a, p) in self.targets.items()]))

    def _inventory(self) -> Path:
        path = inventory_of(self.env, self.names, self.work / "inventory.yml")
        inv = yaml.safe_load(path.read_text())
        allvars = inv["all"]["vars"]
        allvars["nodeboot_known_hosts"] = self.known_hosts
        allvars["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={self.known_hosts}"
        for name, hv in inv["all"]["children"]["linux"]["hosts"].items():
            hv["ansible_host"], hv["ansible_port"] = self.targets[name]
        path.write_text(yaml.safe_dump(inv))
        return path

    def close(self) -> None:
        for r in self.relays:
            r.stop()


# -- the tools ---------------------------------------------------------------------
def ansible_files(fleet: Fleet) -> tuple[Path, Path]:
    cfg = fleet.work / "ansible.cfg"
    cp_dir = fleet.work / "cp"
    cp_dir.mkdir(exist_ok=True)
    cfg.write_text(
        "[defaults]\n"
        f"forks = {fleet.n}\n"
        "host_key_checking = True\ngathering = explicit\nretry_files_enabled = False\n"
        "interpreter_python = /usr/bin/python3\ntimeout = 30\n"
        "[ssh_connection]\npipelining = True\n"
        "ssh_args = -o ControlMaster=auto -o ControlPersist=60s\n"
        f"control_path_dir = {cp_dir}\n"
    )
    extra = fleet.work / "ansible-vars.json"
    extra.write_text(json.dumps({
        "nodeboot_cli": f"{PY} -m nodeboot", "nodeboot_kubeconfig": fleet.env["kubeconfig"],
        "nodeboot_run_id": "bench17", "nodeboot_install_packages": False,
        "nodeboot_ready_timeout": 300, "nodeboot_discovery_timeout": "5m0s",
    }))
    return cfg, extra


def command(tool: str, fleet: Fleet, log_dir: Path) -> tuple[list[str], dict[str, str]]:
    source = BEFORE[0] if tool == "nodeboot-before" else ROOT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source / "bootstrap"), str(ROOT / "lab")])}
    if tool in ("nodeboot", "nodeboot-before"):
        return [PY, "-m", "nodeboot", "join", "-i", str(fleet.inventory), "--output", "json",
                "--kubeconfig", fleet.env["kubeconfig"], "--parallel", str(max(50, fleet.n)),
                "--log-dir", str(log_dir)], env
    if tool == "floor":
        return [PY, str(BENCH / "join_floor.py"), str(fleet.hosts_json), "--kubeconfig", fleet.env["kubeconfig"],
                "--ssh-key", fleet.env["ssh_key"], "--known-hosts", fleet.known_hosts,
                "--tokens-out", str(fleet.work / "floor-tokens.json")], env
    if tool == "ansible":
        cfg, extra = ansible_files(fleet)
        env.update(ANSIBLE_CONFIG=str(cfg), KUBECONFIG=fleet.env["kubeconfig"], ANSIBLE_NOCOLOR="1",
                   PATH=os.pathsep.join([str(Path(PY).parent), env.get("PATH", "")]))
        return [ANSIBLE_PLAYBOOK, "-i", str(fleet.inventory), str(PLAYBOOK), "-e", f"@{extra}"], env
    raise SystemExit(f"unknown tool {tool}")


# -- watching for Ready ----------------------------------------------------------------
class AllReady(threading.Thread):
    """The bench's own Node watch: when all the fleet's Nodes are Ready (time.monotonic())."""

    def __init__(self, cluster: Cluster, names: list[str]) -> None:
        super().__init__(daemon=True)
        self.cluster, self.names = cluster, set(names)
        self.at: float | None = None
        self.requests: Counter = Counter()
        listing = cluster.core.list_node()
        self.requests[("LIST", "nodes")] += 1
        self.rv = listing.metadata.resource_version
        self.ready = {n.metadata.name for n in listing.items if n.metadata.name in self.names and nodes.is_ready(n)}
        self.stopped = threading.Event()

    def run(self) -> None:
        if self.ready >= self.names:
            return
        self.requests[("WATCH", "nodes")] += 1
        w = watch.Watch()
        for event in w.stream(self.cluster.core.list_node, resource_version=self.rv, timeout_seconds=900):
            node = event["object"]
            if node.metadata.name in self.names:
                if nodes.is_ready(node) and event["type"] != "DELETED":
                    self.ready.add(node.metadata.name)
                else:
                    self.ready.discard(node.metadata.name)
            if self.ready >= self.names:
                self.at = time.monotonic()
                break  # closes the response: the API server counts the watch now
            if self.stopped.is_set():
                break


def measured(tool: str, run: str, fleet: Fleet, cluster: Cluster, counter: ApiCounter, out: Path) -> dict:
    log_dir = out / f"{tool}-{run}-logs"
    argv, env = command(tool, fleet, log_dir)
    row = measure_command(argv, env, FAIL[tool], fleet.names, cluster, counter, out / f"{tool}-{run}.json")
    row.update(tool=tool, run=run, n=fleet.n)
    if tool in ("nodeboot", "nodeboot-before"):
        row["phases"] = phase_times(log_dir, row["started_at"])
    if tool == "floor":
        row["floor"] = floor_times(row.pop("tail_all"))
    row.pop("tail_all", None)
    return row


def measure_command(argv: list[str], env: dict[str, str], fail_regex: str, names: list[str], cluster: Cluster,
                    counter: ApiCounter, result_file: Path) -> dict:
    """One tool run under bench/measure.py, with the bench's Node watch and the API count around it."""
    before = load()
    ready = AllReady(cluster, names)
    counter.start()
    ready.start()
    started = time.monotonic()
    wall_clock = time.time()
    subprocess.run([PY, str(BENCH / "measure.py"), str(result_file), fail_regex, "900", "--", *argv],
                   env=env, check=True)
    ready.stopped.set()
    ready.join(timeout=30)
    time.sleep(0.5)  # the last watches and calls close and are counted
    delta = counter.stop() - ready.requests
    m = json.loads(result_file.read_text())
    row = {
        "status": m["status"], "wall": round(m["wall"], 2), "cpu": round(m["cpu"], 2),
        "all_ready": round(ready.at - started, 2) if ready.at else (0.0 if ready.ready >= ready.names else None),
        "api_requests": sum(delta.values()), "api_per_node": round(sum(delta.values()) / len(names), 1),
        "api_split": split(delta), "api_top": describe(delta), "load_before": before, "load_after": load(),
        "api_all": {f"{verb} {res}": n for (verb, res), n in sorted(delta.items())},
        "started_at": wall_clock, "tail_all": m["tail"],
    }
    if m["status"] != 0:
        row["tail"] = m["tail"][-8:]
    return row


def floor_times(tail: list[str]) -> dict:
    for line in reversed(tail):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def phase_times(log_dir: Path, launched: float) -> dict:
    """From nodeboot's run.log: per phase, the median host's time in it and when the last
    host left it (seconds after launch); when the first event came (start-up)."""
    runs = sorted(log_dir.glob("*/run.log"))
    if not runs:
        return {}
    events = [json.loads(line) for line in runs[-1].read_text().splitlines() if line.strip()]
    begun: dict[tuple[str, str], float] = {}
    spans: dict[str, list[float]] = {}
    last_end: dict[str, float] = {}
    for e in events:
        if e.get("event") != "phase" or not e.get("host"):
            continue
        key = (e["host"], e.get("phase", ""))
        if e.get("status") == "start":
            begun[key] = e["ts"]
        elif key in begun:
            spans.setdefault(key[1], []).append(e["ts"] - begun.pop(key))
            last_end[key[1]] = max(last_end.get(key[1], 0.0), e["ts"] - launched)
    out = {"first_event": round(events[0]["ts"] - launched, 2)}
    for phase, times in spans.items():
        out[phase] = {"median": round(statistics.median(times), 2), "max": round(max(times), 2),
                      "last_done_at": round(last_end[phase], 2)}
    return out


# -- between runs ---------------------------------------------------------------------
def reset(fleet: Fleet, cluster: Cluster) -> None:
    token_file = fleet.work / "floor-tokens.json"
    if token_file.exists():
        for token_id in json.loads(token_file.read_text()):
            with contextlib.suppress(ApiException):  # already gone is fine
                cluster.core.delete_namespaced_secret(f"bootstrap-token-{token_id}", "kube-system")
        token_file.unlink()
    seconds, _ = nodeboot(fleet.env, fleet.inventory, "reset", "--yes")
    left = [n.metadata.name for n in cluster.core.list_node().items if n.metadata.name in fleet.names]
    if left:
        raise SystemExit(f"reset left Nodes: {left}")
    log(f"  reset {fleet.n} hosts: {seconds:.1f}s")


def reruns(fleet: Fleet, tools: list[str], rounds: int, cluster: Cluster, counter: ApiCounter, results: dict,
           args: argparse.Namespace) -> None:
    """The re-run alone, many times: one join (measured as the first tool's cold run), then
    `rounds` rounds of every tool's re-run, the order rotating per round; a reset at the end."""
    rows = [measured(tools[0], "cold", fleet, cluster, counter, fleet.work)]
    log(row_line(rows[0]))
    for r in range(rounds):
        for tool in tools[r % len(tools):] + tools[:r % len(tools)]:
            rows.append(measured(tool, "re-run", fleet, cluster, counter, fleet.work))
            log(row_line(rows[-1]))
    for row in rows:
        row.update(rtt_ms=args.rtt_ms, reruns_mode=True)
    results["rows"] += rows
    Path(args.json).write_text(json.dumps(results, indent=1))
    for tool in tools:
        walls = [r["wall"] for r in rows[1:] if r["tool"] == tool and r["status"] == 0]
        cpus = [r["cpu"] for r in rows[1:] if r["tool"] == tool and r["status"] == 0]
        if walls:
            log(f"N={fleet.n} {tool} re-run, {len(walls)} runs: wall median {statistics.median(walls):.2f}s "
                f"(min {min(walls):.2f}, max {max(walls):.2f}), CPU median {statistics.median(cpus):.2f}s")
    reset(fleet, cluster)


def compile_bytecode(trees: list[Path]) -> None:
    """Each tree's modules compiled to bytecode once, before anything is measured: an installed
    nodeboot (pip, a wheel) has its bytecode, and without it a run under PYTHONDONTWRITEBYTECODE
    (this machine's environment sets it) compiles every module it imports from source, every run
    (about 75 ms of CPU on nodeboot's join path; the floor imports a few of the same modules)."""
    for tree in trees:
        subprocess.run([PY, "-m", "compileall", "-q", str(tree)], check=True)


def row_line(r: dict) -> str:
    if r["status"] != 0:
        return f"N={r['n']} {r['tool']:8} {r['run']:6} FAILED (exit {r['status']}): {r.get('tail')}"
    return (f"N={r['n']} {r['tool']:8} {r['run']:6} wall {r['wall']:6.2f}s  all Ready at {r['all_ready']}s  "
            f"CPU {r['cpu']:5.2f}s  API {r['api_per_node']}/node ({r['api_requests']})  "
            f"load {r['load_before']} -> {r['load_after']}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--state", default="/tmp/lab-bench17")
    p.add_argument("--sizes", default="10,40")
    p.add_argument("--tools", default="nodeboot,floor,ansible")
    p.add_argument("--rtt-ms", type=float, default=0.0)
    p.add_argument("--linux", type=int, default=0, help="Linux hosts to bring up (default: the largest N)")
    p.add_argument("--windows", type=int, default=0, help="Windows hosts to bring up with the lab (for winrm_bench)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of every tool (interleaved) per N")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab up (and reuse one already up)")
    p.add_argument("--json", default=str(BENCH / "results-join.json"))
    p.add_argument("--before", help="a tree with an earlier bootstrap/nodeboot: adds tool nodeboot-before")
    p.add_argument("--reruns", type=int, default=0,
                   help="instead of cold rounds: join once (the first tool), then this many rounds of every "
                        "tool's re-run, interleaved, no reset between (re-runs are short and noisy: many of them)")
    args = p.parse_args()
    if args.before:
        BEFORE.append(Path(args.before).resolve())
    sizes = [int(s) for s in args.sizes.split(",")]
    tools = args.tools.split(",")
    compile_bytecode([ROOT / "bootstrap" / "nodeboot", ROOT / "lab", *(b / "bootstrap" / "nodeboot" for b in BEFORE)])
    lab = Lab(Path(args.state), log=lambda m: print(m, file=sys.stderr))
    if not (args.keep_lab and lab.load()):
        started = time.monotonic()
        lab.up(linux=max(args.linux, *sizes), windows=args.windows)
        log(f"lab up ({max(args.linux, *sizes)} Linux, {args.windows} Windows hosts): "
            f"{time.monotonic() - started:.1f}s")
    env = lab.env()
    cluster = Cluster.from_kubeconfig(env["kubeconfig"])
    counter = ApiCounter(env["kubeconfig"])
    results = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {"rows": []}
    try:
        for i, n in enumerate(sizes):
            fleet = Fleet(env, n, Path(args.state) / "bench17" / f"n{n}-rtt{int(args.rtt_ms)}", args.rtt_ms)
            try:
                idle = counter.background(5.0)
                log(f"N={n} rtt+{args.rtt_ms:.0f}ms: API background {idle:.1f} req/s idle; load {load()}")
                if args.reruns:
                    reruns(fleet, tools, args.reruns, cluster, counter, results, args)
                    continue
                order = (tools[i % len(tools):] + tools[:i % len(tools)]) * args.repeat
                for tool in order:
                    for run in ("cold", "re-run"):
                        row = measured(tool, run, fleet, cluster, counter, fleet.work)
                        row.update(rtt_ms=args.rtt_ms, background_rps=round(idle, 1))
                        results["rows"].append(row)
                        log(row_line(row))
                        Path(args.json).write_text(json.dumps(results, indent=1))
                        if row["status"] != 0:
                            break
                    reset(fleet, cluster)
            finally:
                fleet.close()
    finally:
        if not args.keep_lab:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
