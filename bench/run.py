"""nodeboot's benchmarks: prints the figures, writes them to a JSON file.

    PYTHONPATH=bootstrap python bench/run.py [--quick] [--only b1,cpu,b1rtt,b2,b3,winrm,ready,big]

Run as root (sshd hosts, a network namespace for B2). The peers (ansible-core,
pyinfra, matplotlib) come from bench/.venv (bench/setup.sh makes it).

- B1: N = 10, 50, 200 (quick: 10, 50) sshd hosts on loopback, every tool side
  by side, cold run then no-change re-run, median of --runs runs (Ansible:
  --ansible-runs, it is slow): wall, controller CPU, peak RSS, SSH connections
  and exec round trips per host; every host's end state checked, a tool that
  did not do the work is reported FAILED, not timed.
- B2: one host in a network namespace behind added delay; seconds per step.
- B3: one host slow to connect, one failing: total time, first failure on screen.
- WinRM: HTTP requests per command, reused shell vs pywinrm run_ps (lab endpoint).
- Ready: Node Ready in the API -> NodeWatcher noticed (needs the lab: --lab-state).
- cpu: controller CPU of cold runs at N=200, nodeboot against the floor, 5 runs
  interleaved (b1_more.py).
- b1rtt: B1 at N=50 with 50 ms added to every host's round trip (a delay relay
  per host), nodeboot against the floor: wall, and round trips per host as the
  relay counts them (b1_more.py).
- Big: 1000 hosts in one run, all at once (--big, --big-parallel), nodeboot
  against the floor: wall, peak RSS, fds and threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "bootstrap"))
sys.path.insert(0, str(ROOT / "lab"))

import workload  # noqa: E402
from hosts import HostPool, raise_nofile  # noqa: E402
from report import trips  # noqa: E402

PROJECT_PY = sys.executable
BENCH_PY = str(BENCH / ".venv" / "bin" / "python")
TOOLS = {
    # name: (python, driver, failure line on screen)
    "nodeboot": (PROJECT_PY, "nodeboot_tool.py", r" failed\b"),
    "nodeboot-before": (PROJECT_PY, "nodeboot_tool.py", r" failed\b"),  # --before DIR's nodeboot
    "paramiko-floor": (PROJECT_PY, "floor.py", r"FAILED"),
    "openssh-cm": (PROJECT_PY, "openssh_tool.py", r"FAILED"),
    "pyinfra": (BENCH_PY, "pyinfra_tool.py", r"Error|error|Failed|failed"),
    "ansible": (BENCH_PY, "ansible_tool.py", r"fatal:|failed: \[|UNREACHABLE"),
}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def log(msg: str) -> None:
    print(msg, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = Path(args.state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.pool = HostPool(self.state)
        self.artifact = workload.ensure_artifact(self.state)
        self.facts = workload.local_facts()
        self.results: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.profiles = 0

    # -- one measured tool run --------------------------------------------------
    def spec(self, hosts, name: str, overrides: dict | None = None) -> Path:
        work = self.state / "runs" / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        rows = []
        for h in hosts:
            row = {"name": h.name, "address": h.address, "port": h.port, "root": str(h.root)}
            row.update((overrides or {}).get(h.name, {}))
            rows.append(row)
        known = (overrides or {}).get("_known_hosts", str(self.pool.known_hosts))
        spec = {"key": str(self.pool.key), "known_hosts": known, "artifact": str(self.artifact), "hosts": rows}
        (work / "hosts.json").write_text(json.dumps(spec))
        return work / "hosts.json"

    def measure(self, tool: str, spec: Path, parallel: int, timeout: float) -> dict:
        python, driver, fail_re = TOOLS[tool]
        out = spec.parent / f"measure-{tool}.json"
        stats = spec.parent / f"stats-{tool}.json"
        driver, *extra = driver.split()
        argv = [python, str(BENCH / "tools" / driver), str(spec), str(parallel), *extra]
        if tool.startswith("nodeboot"):
            argv += ["--stats", str(stats)]
        if self.args.profile and tool in self.args.profile.split(","):
            # py-spy samples every thread of the tool (and its native frames) into a
            # collapsed-stack file; its own CPU is in the run's figures, so a profiled
            # run is for finding hot spots, not for the tables.
            self.profiles += 1
            folded = self.state / "profiles" / f"{spec.parent.name}-{tool}-{self.profiles}.txt"
            folded.parent.mkdir(exist_ok=True)
            argv = [self.args.py_spy, "record", "-r", "200", "--gil", "--native", "-f", "raw", "-o", str(folded),
                    "--", *argv]
        package = self.args.before if tool == "nodeboot-before" else self.args.bootstrap
        env = dict(os.environ, PYTHONPATH=f"{package}:{BENCH / 'tools'}", LANG="C.UTF-8",
                   HOME=os.environ.get("HOME", "/root"))
        env.pop("SSH_AUTH_SOCK", None)
        load_before = loadavg()
        subprocess.run([PROJECT_PY, str(BENCH / "measure.py"), str(out), fail_re, str(timeout), "--", *argv],
                       env=env, check=True)
        m = json.loads(out.read_text())
        m["load"] = load_before
        m["peak_rss"] = max(m["peak_rss"], m["max_single_rss"])
        if tool.startswith("nodeboot") and stats.exists():
            m["nodeboot_stats"] = json.loads(stats.read_text())
        return m

    def checked_run(self, tool: str, hosts, kind: str, name: str, parallel: int, overrides: dict | None = None) -> dict:
        """One measured run (cold or no-change) with host CPU, sshd's counts, round trips
        and the end-state check of every host; "ok" only when the tool did the work."""
        before = None
        if kind == "no-change":
            before = {h.name: workload.check_host(h.root, self.facts).mtimes for h in hosts}
            self.pool.reset_counters(hosts)
        spec = self.spec(hosts, name, overrides)
        host_cpu = self.pool.host_cpu(hosts)
        m = self.measure(tool, spec, parallel, self.args.timeout)
        m["host_cpu"] = self.pool.host_cpu(hosts) - host_cpu
        m.update(self.pool.counters(hosts))
        # sshd counts exec sessions; nodeboot runs its scripts in one session per
        # host, so its round trips come from its own count (a batch is one).
        m["round_trips"] = m["nodeboot_stats"]["execs"] if "nodeboot_stats" in m else m["execs"] + m["sftp"]
        problems = self.verify(hosts, before)
        m["ok"] = m["status"] == 0 and not problems and not m["timed_out"]
        m["problems"] = problems[:5]
        return m

    def verify(self, hosts, before: dict | None, skip: set[str] = frozenset()) -> list[str]:
        problems = []
        for h in hosts:
            if h.name in skip:
                continue
            check = workload.check_host(h.root, self.facts, before.get(h.name) if before else None)
            if not check.ok:
                problems.append(f"{h.name}: {', '.join(check.problems)}")
        return problems

    # -- B1 ------------------------------------------------------------------
    def b1(self) -> None:
        out: dict = {}
        for n in self.args.sizes:
            hosts = self.pool.start(n)
            tools = [t for t in self.args.tools if not (t == "ansible" and n > self.args.ansible_max_n)]
            cells = {t: {"cold": [], "no-change": []} for t in tools}
            # Runs interleave (run 1 of every tool, then run 2, ...): load from other
            # work on the machine then falls on every tool alike.
            for r in range(max(self.args.runs, self.args.ansible_runs)):
                for tool in tools:
                    if r >= (self.args.ansible_runs if tool == "ansible" else self.args.runs):
                        continue
                    self.pool.reset(hosts)
                    for kind in ("cold", "no-change"):
                        m = self.checked_run(tool, hosts, kind, f"b1-{tool}-{n}", n)
                        cells[tool][kind].append(m)
                        log(f"B1 N={n:<3} {tool:<15} {kind:<9} run {r + 1}: "
                            + (f"{m['wall']:.2f}s cpu {m['cpu']:.2f}s host-cpu {m['host_cpu']:.2f}s "
                               f"rss {m['peak_rss'] / 2**20:.0f}MiB "
                               f"conns/host {m['conns']:.1f} sessions/host {m['execs'] + m['sftp']:.1f} "
                               f"round trips/host {m['round_trips']:.1f}"
                               if m["ok"] else f"FAILED: {m['problems'][:2]} {m['tail'][-3:]}")
                            + f" (load {m['load']})")
            for tool in tools:
                out.setdefault(str(n), {})[tool] = {k: summarise(v) for k, v in cells[tool].items()}
        self.results["b1"] = out

    # -- issue 17: controller CPU, B1 behind added delay --------------------------
    def cpu(self) -> None:
        from b1_more import measure_cpu

        self.results["cpu"] = measure_cpu(self, self.args.cpu_n, self.args.cpu_runs, log)

    def b1rtt(self) -> None:
        from b1_more import measure_rtt

        self.results["b1rtt"] = measure_rtt(self, self.args.rtt_n, [0.0, self.args.rtt_ms], self.args.rtt_runs, log)

    # -- B2 ------------------------------------------------------------------
    def b2(self) -> None:
        from latency import measure_steps

        self.results["b2"] = measure_steps(self.state, self.pool, self.args.delays, self.args.b2_reps, log)

    # -- B3 ------------------------------------------------------------------
    def b3(self) -> None:
        from delayproxy import DelayProxy

        n = self.args.b3_hosts
        hosts = self.pool.start(n)
        slow, bad = hosts[1], hosts[2]
        proxy = DelayProxy(("127.0.0.1", 0), (slow.address, slow.port), accept_delay=self.args.slow_connect).start()
        known = self.state / "ssh" / "known_hosts_b3"
        pub = self.pool.known_hosts_line(slow).split(" ", 1)[1]
        known.write_text(self.pool.known_hosts.read_text() + f"[127.0.0.1]:{proxy.port} {pub}")
        out = {}
        try:
            for tool in self.args.tools:
                self.pool.reset(hosts)
                bad.root.rmdir()
                bad.root.write_text("not a directory: every write under it fails\n")
                overrides = {slow.name: {"address": "127.0.0.1", "port": proxy.port}, "_known_hosts": str(known)}
                spec = self.spec(hosts, f"b3-{tool}", overrides)
                m = self.measure(tool, spec, n, self.args.timeout)
                problems = self.verify(hosts, None, skip={bad.name})
                m["ok"] = m["status"] != 0 and not problems  # the bad host must be reported, the rest done
                m["problems"] = problems[:5]
                out[tool] = {k: m[k] for k in ("wall", "first_failure", "status", "ok", "problems", "load", "cpu")}
                ff = f"{m['first_failure']:.2f}s" if m["first_failure"] is not None else "never"
                log(f"B3 {tool:<15} total {m['wall']:.2f}s, first failure on screen {ff}, "
                    f"exit {m['status']}{'' if m['ok'] else ' WRONG: ' + str(problems[:2])} (load {m['load']})")
                bad.root.unlink()
                bad.root.mkdir()
        finally:
            proxy.stop()
        self.results["b3"] = {"hosts": n, "slow_connect_s": self.args.slow_connect, "tools": out}

    # -- WinRM ---------------------------------------------------------------
    def winrm(self) -> None:
        from winrm_bench import measure_winrm

        self.results["winrm"] = measure_winrm(self.state / "winrm", self.args.winrm_commands, log)

    # -- Ready ---------------------------------------------------------------
    def ready(self) -> None:
        from ready_bench import measure_ready

        self.results["ready"] = measure_ready(Path(self.args.lab_state), self.args.ready_reps, log)

    # -- many hosts in one run ------------------------------------------------
    def big(self) -> None:
        n = self.args.big
        t = time.monotonic()
        hosts = self.pool.start(n)
        log(f"big: {n} sshd hosts up in {time.monotonic() - t:.1f}s")
        out: dict = {}
        for r in range(self.args.big_runs):
            # Interleaved, the order alternating: the same load falls on both tools.
            for tool in [t for t in ("nodeboot", "paramiko-floor") if t in self.args.tools][::1 if r % 2 == 0 else -1]:
                self.pool.reset(hosts)
                for kind in ("cold", "no-change"):
                    m = self.checked_run(tool, hosts, kind, f"big-{tool}", self.args.big_parallel)
                    m["failure_lines"] = m["failures"][:5]
                    cell = {k: m[k] for k in ("wall", "cpu", "peak_rss", "peak_fds", "peak_threads", "ok", "problems",
                                              "load", "conns", "execs", "failure_lines")}
                    out.setdefault(tool, {}).setdefault(kind, []).append(cell)
                    log(f"big N={n} {tool:<15} {kind:<9} run {r + 1} "
                        f"{'ok' if m['ok'] else 'FAILED ' + str(m['problems'][:2])}: "
                        f"{m['wall']:.2f}s cpu {m['cpu']:.2f}s peak RSS {m['peak_rss'] / 2**20:.0f} MiB, "
                        f"peak fds {m['peak_fds']}, peak threads {m['peak_threads']} (load {m['load']})")
        for kinds in out.values():
            for kind, cells in kinds.items():
                ok = [c for c in cells if c["ok"]]
                kinds[kind] = {"runs": cells, "ok": len(ok) == len(cells)} | (
                    {k: statistics.median(c[k] for c in ok) for k in ("wall", "cpu", "peak_rss", "peak_fds",
                                                                     "peak_threads")} if ok else {})
        self.results["big"] = {"hosts": n, "parallel": self.args.big_parallel, "runs": self.args.big_runs,
                               "nofile": self.results["machine"]["nofile"], "tools": out}


def summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["ok"]]
    if len(ok) < len(runs):
        return {"ok": False, "runs": len(runs), "failed_runs": len(runs) - len(ok),
                "problems": next(r["problems"] or r["tail"][-3:] for r in runs if not r["ok"])}
    med = {k: statistics.median(r[k] for r in ok) for k in ("wall", "cpu", "host_cpu", "peak_rss", "conns", "execs",
                                                   "sftp", "round_trips")}
    med["walls"] = [round(r["wall"], 3) for r in ok]
    med["loads"] = [r["load"] for r in ok]
    med["ok"] = True
    med["runs"] = len(ok)
    return med


def machine() -> dict:
    mem = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1]
    import resource

    return {"nproc": os.cpu_count(), "mem_gib": round(int(mem) / 2**20, 1), "kernel": platform.release(),
            "python": platform.python_version(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()}


def print_b1(results: dict) -> None:
    b1 = results.get("b1")
    if not b1:
        return
    log("\nB1 (median): N  tool  | cold: wall cpu rssMiB conns/host round-trips/host | no-change: same")
    for n, tools in b1.items():
        for tool, cells in tools.items():
            parts = []
            for kind in ("cold", "no-change"):
                c = cells[kind]
                parts.append(f"{c['wall']:7.2f}s {c['cpu']:6.2f}s {c['peak_rss'] / 2**20:6.0f} {c['conns']:4.1f} "
                             f"{trips(c):5.1f}" if c["ok"] else "   FAILED" + " " * 30)
            log(f"{n:>4} {tool:<15} | {parts[0]} | {parts[1]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="N=10,50, 1 run, Ansible at N=10 only, 10 hosts in B3, 100 in the big run (a few minutes)")
    p.add_argument("--only", default="b1,cpu,b1rtt,b2,b3,winrm,ready,big")
    p.add_argument("--tools", default=",".join(TOOLS),
                   help=f"of {','.join(TOOLS)}")
    p.add_argument("--sizes", default="10,50,200")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ansible-runs", type=int, default=1)
    p.add_argument("--ansible-max-n", type=int, default=50, help="Ansible is skipped above this N (time)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--delays", default="0,10,50", help="B2 added round-trip delays, ms")
    p.add_argument("--b2-reps", type=int, default=15)
    p.add_argument("--b3-hosts", type=int, default=20)
    p.add_argument("--slow-connect", type=float, default=3.0)
    p.add_argument("--winrm-commands", type=int, default=20)
    p.add_argument("--lab-state", default="/tmp/nb-lab-bench")
    p.add_argument("--ready-reps", type=int, default=15)
    p.add_argument("--big", type=int, default=1000, help="hosts in the one-run scale test")
    p.add_argument("--big-parallel", type=int, default=1000, help="hosts at once in the scale test")
    p.add_argument("--big-runs", type=int, default=1)
    p.add_argument("--cpu-n", type=int, default=200, help="hosts in the cold controller-CPU comparison")
    p.add_argument("--cpu-runs", type=int, default=5)
    p.add_argument("--rtt-n", type=int, default=50, help="hosts in B1 behind added delay")
    p.add_argument("--rtt-ms", type=float, default=50.0, help="added round trip per host, ms (B1 behind delay)")
    p.add_argument("--rtt-runs", type=int, default=3)
    p.add_argument("--profile", default="", help="tools to run under py-spy (e.g. nodeboot): <state>/profiles/*.txt")
    p.add_argument("--py-spy", default=str(BENCH / ".venv" / "bin" / "py-spy"))
    p.add_argument("--state", default="/tmp/nbb")
    p.add_argument("--bootstrap", default=str(ROOT / "bootstrap"),
                   help="the directory holding the nodeboot package the tools run")
    p.add_argument("--before", default="",
                   help="another version's package directory, e.g. from `git archive REV bootstrap`: the cpu "
                        "section then runs it too, as nodeboot-before")
    p.add_argument("--out", default=str(BENCH / "results.json"))
    args = p.parse_args()
    if args.quick:
        args.sizes, args.runs, args.b2_reps, args.ready_reps, args.ansible_max_n = "10,50", 1, 5, 5, 10
        args.b3_hosts, args.big, args.big_parallel = 10, 100, 100
        args.cpu_n, args.cpu_runs, args.rtt_n, args.rtt_runs = 50, 2, 10, 1
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.delays = [float(x) for x in args.delays.split(",")]
    args.tools = args.tools.split(",")
    only = set(args.only.split(","))
    old, new = raise_nofile(65536)
    log(f"RLIMIT_NOFILE soft {old} -> {new} (inherited by the hosts and the tools); load {loadavg()}")
    bench = Bench(args)
    started = time.monotonic()
    try:
        for section in ("b1", "cpu", "b1rtt", "b2", "b3", "winrm", "ready", "big"):
            if section in only:
                log(f"== {section} (load {loadavg()})")
                t = time.monotonic()
                try:
                    getattr(bench, section)()
                except Exception as exc:  # noqa: BLE001 - one section's failure must not lose the others
                    bench.results[section] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                    log(f"== {section} FAILED: {type(exc).__name__}: {str(exc)[:500]}")
                log(f"== {section} took {time.monotonic() - t:.0f}s")
    finally:
        bench.pool.stop()
        bench.results["seconds"] = round(time.monotonic() - started, 1)
        bench.results["load_end"] = loadavg()
        previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        previous.update(bench.results)  # sections not run keep their last figures
        Path(args.out).write_text(json.dumps(previous, indent=1))
    print_b1(bench.results)
    log(f"\nresults: {args.out} ({bench.results['seconds']}s, load at end {bench.results['load_end']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
