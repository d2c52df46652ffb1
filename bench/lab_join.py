"""The real join on the lab, for small N: wall time of `nodeboot join -i
--proxy-mode ipvs` cold and no-change, then `nodeboot reset`, with round trips
per host and tokens created, against the lab's real API server, kubeadm and
sshd hosts. Prints one line per figure.

    PYTHONPATH=bootstrap .venv/bin/python bench/lab_join.py [--sizes 3,10] [--runs 3] [--proxy-mode ipvs]

At fleet size, against tuned ansible-playbook and a floor, with controller CPU
and API requests counted at the API server: bench/join_compare.py (it reuses
inventory_of and nodeboot from here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from nodeboot_lab.lab import Lab

ROOT = Path(__file__).resolve().parents[1]


def inventory_of(env: dict, names: list[str], path: Path) -> Path:
    full = yaml.safe_load(Path(env["inventory"]).read_text())
    linux = full["all"]["children"]["linux"]
    linux["hosts"] = {n: v for n, v in linux["hosts"].items() if n in names}
    full["all"]["children"] = {"linux": linux}
    path.write_text(yaml.safe_dump(full))
    return path


def nodeboot(env: dict, inventory: Path, *command: str) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "nodeboot", *command, "-i", str(inventory), "--output", "json",
           "--kubeconfig", env["kubeconfig"], "--parallel", "50"]
    started = time.monotonic()
    env_vars = {**os.environ, "PYTHONPATH": str(ROOT / "bootstrap")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env_vars)
    elapsed = time.monotonic() - started
    summary = next(json.loads(line) for line in proc.stdout.splitlines() if '"event": "summary"' in line)
    if proc.returncode != 0:
        raise SystemExit(f"nodeboot {command[0]} failed: {proc.stderr[-500:]}")
    return elapsed, summary


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="3,10")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state-dir", default="/tmp/nb-lab-benchjoin")
    parser.add_argument("--proxy-mode", default="ipvs", help="passed to join: ipvs batches proxy-prereqs with it")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lab = Lab(Path(args.state_dir), log=lambda m: print(m, file=sys.stderr))
    started = time.monotonic()
    lab.up(linux=max(sizes) * args.runs, windows=0)
    print(f"lab up ({max(sizes) * args.runs} Linux hosts): {time.monotonic() - started:.1f}s")
    env = lab.env()
    names = [h["name"] for h in env["hosts"]]
    try:
        for n in sizes:
            cold, warm, resets, execs_cold, execs_warm, execs_reset = [], [], [], [], [], []
            for run in range(args.runs):
                chosen = names[run * max(sizes): run * max(sizes) + n]
                inv = inventory_of(env, chosen, Path(args.state_dir) / f"bench-{n}-{run}.yml")
                seconds, summary = nodeboot(env, inv, "join", "--proxy-mode", args.proxy_mode)
                cold.append(seconds)
                execs_cold.append(statistics.mean(h["execs"] for h in summary["hosts"]))
                seconds, summary = nodeboot(env, inv, "join", "--proxy-mode", args.proxy_mode)
                warm.append(seconds)
                execs_warm.append(statistics.mean(h["execs"] for h in summary["hosts"]))
                assert summary["tokens_created"] == 0
                seconds, summary = nodeboot(env, inv, "reset", "--yes")
                resets.append(seconds)
                execs_reset.append(statistics.mean(h["execs"] for h in summary["hosts"]))
            load = os.getloadavg()[0]
            runs = ", ".join(f"{c:.2f}" for c in cold)
            print(f"N={n} cold join: median {statistics.median(cold):.2f}s (runs {runs}),"
                  f" {statistics.median(execs_cold):.0f} round trips/host; load {load:.1f}")
            print(f"N={n} no-change re-run: median {statistics.median(warm):.2f}s, "
                  f"{statistics.median(execs_warm):.0f} round trip/host, 0 tokens")
            print(f"N={n} reset (drain, kubeadm reset + proxy cleanup, node delete): median "
                  f"{statistics.median(resets):.2f}s, {statistics.median(execs_reset):.0f} round trips/host")
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
