"""Markdown tables from bench/results.json (pasted into docs/benchmarks.md).

usage: python bench/report.py [results.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def trips(cell: dict) -> float:
    """Round trips per host: nodeboot's own count (a batch is one), else sshd's exec sessions."""
    return cell.get("round_trips", cell["execs"] + cell["sftp"])


def b1_table(b1: dict) -> list[str]:
    out = ["| N | tool | cold wall s | cold CPU s | cold host CPU s | cold peak RSS MiB | no-change wall s | "
           "no-change CPU s | no-change host CPU s | no-change peak RSS MiB | conns/host | round trips/host "
           "cold / no-change | runs | load (1-min) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, tools in b1.items():
        for tool, cells in tools.items():
            c, r = cells["cold"], cells["no-change"]
            if not (c["ok"] and r["ok"]):
                out.append(f"| {n} | {tool} | FAILED: {c.get('problems') or r.get('problems')} |")
                continue
            loads = sorted(float(x.split()[0]) for x in c["loads"] + r["loads"])
            out.append(
                f"| {n} | {tool} | {c['wall']:.2f} | {c['cpu']:.2f} | {c['host_cpu']:.2f} | "
                f"{c['peak_rss'] / 2**20:.0f} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['host_cpu']:.2f} | "
                f"{r['peak_rss'] / 2**20:.0f} | {c['conns']:.0f} | {trips(c):.0f} / {trips(r):.0f} | {c['runs']} | "
                f"{loads[0]:.0f}-{loads[-1]:.0f} |")
    return out


def ratios(b1: dict) -> list[str]:
    out = ["| N | run | nodeboot s | vs paramiko floor | pyinfra / nodeboot | Ansible / nodeboot |",
           "|---|---|---|---|---|---|"]
    for n, tools in b1.items():
        nb = tools.get("nodeboot")
        if not nb:
            continue
        for kind in ("cold", "no-change"):
            mine = nb[kind]["wall"]

            def ratio(tool: str, inverse: bool = False, kind: str = kind, mine: float = mine,
                      tools: dict = tools) -> str:
                cell = tools.get(tool, {}).get(kind)
                if not cell or not cell.get("ok"):
                    return "not run"
                return f"{mine / cell['wall']:.2f}x" if inverse else f"{cell['wall'] / mine:.1f}x"

            out.append(f"| {n} | {kind} | {mine:.2f} | {ratio('paramiko-floor', True)} | {ratio('pyinfra')} | "
                       f"{ratio('ansible')} |")
    return out


def cpu_table(c: dict) -> list[str]:
    out = [f"Cold controller CPU, N={c['hosts']}, {c['runs']} runs interleaved (s)\n",
           "| tool | CPU per run | median CPU | median wall | vs floor (CPU) | 1-min load per run |",
           "|---|---|---|---|---|---|"]
    floor = c.get("cpu_median", {}).get("paramiko-floor")
    for tool, runs in c["tools"].items():
        cpus = ", ".join(f"{r['cpu']:.2f}" if r["ok"] else "FAILED" for r in runs)
        med = c.get("cpu_median", {}).get(tool)
        ratio = f"{med / floor:.2f}x" if med and floor else ""
        loads = ", ".join(r["load"].split()[0] for r in runs)
        out.append(f"| {tool} | {cpus} | {med if med is not None else ''} | "
                   f"{c.get('wall_median', {}).get(tool, '')} | {ratio} | {loads} |")
    return out


def rtt_table(r: dict) -> list[str]:
    out = [f"B1 behind added delay, N={r['hosts']}, median of {r['runs']} (relay per host)\n",
           "| added RTT ms | tool | cold wall s | no-change wall s | cold CPU s | client turns/host cold / no-change "
           "| scripts' round trips/host cold / no-change | vs floor cold / no-change | 1-min load |",
           "|---|---|---|---|---|---|---|---|---|"]
    for delay, d in r["delays"].items():
        for tool in ("nodeboot", "paramiko-floor"):
            c, n = d[tool]["cold"], d[tool]["no-change"]
            if not (c.get("ok") and n.get("ok")):
                out.append(f"| {delay} | {tool} | FAILED: {c.get('problems') or n.get('problems')} |")
                continue
            ratio = (f"{d['ratio_cold']:.2f}x / {d['ratio_no-change']:.2f}x"
                     if tool == "nodeboot" and "ratio_cold" in d else "")
            loads = sorted(float(x.split()[0]) for x in c["loads"] + n["loads"])
            out.append(f"| {delay} | {tool} | {c['wall']:.2f} | {n['wall']:.2f} | {c['cpu']:.2f} | "
                       f"{c['turns']:.1f} / {n['turns']:.1f} | {c['round_trips']:.0f} / {n['round_trips']:.0f} | "
                       f"{ratio} | {loads[0]:.0f}-{loads[-1]:.0f} |")
    return out


def big_table(b: dict) -> list[str]:
    out = [f"{b['hosts']} hosts in one run, parallel {b['parallel']}\n",
           "| tool | run | result | wall s | CPU s | peak RSS MiB | peak fds | peak threads | load |",
           "|---|---|---|---|---|---|---|---|---|"]
    for tool, kinds in b["tools"].items():
        for kind, cell in kinds.items():
            for run in cell.get("runs", [cell]):
                result = "ok" if run["ok"] else f"FAILED ({'; '.join(run.get('failure_lines', [])[:1])})"
                out.append(f"| {tool} | {kind} | {result} | {run['wall']:.1f} | {run['cpu']:.1f} | "
                           f"{run['peak_rss'] / 2**20:.0f} | {run['peak_fds']} | {run.get('peak_threads', '')} | "
                           f"{run['load'].split()[0]} |")
    return out


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results.json"
    r = json.loads(src.read_text())
    m = r.get("machine", {})
    print(f"machine: {m}; started {r.get('started')}; {r.get('seconds')} s; load at end {r.get('load_end')}\n")
    if "b1" in r:
        print("\n".join(b1_table(r["b1"])) + "\n")
        print("\n".join(ratios(r["b1"])) + "\n")
    if "b2" in r:
        b2 = r["b2"]
        keys = [k for k in b2["rows"][0] if k not in ("delay_ms", "round_trips", "nodeboot_overhead_ms")]
        print(f"B2 (netem: {b2['netem']}; median of {b2['reps']}; ms)\n")
        print("| added RTT ms | " + " | ".join(keys) + " | nodeboot overhead beyond 1 RTT + host work |")
        print("|---" * (len(keys) + 2) + "|")
        for row in b2["rows"]:
            print(f"| {row['delay_ms']:.0f} | " + " | ".join(str(row[k]) for k in keys)
                  + f" | {row.get('nodeboot_overhead_ms', '')} |")
        for row in b2["rows"][1:]:
            print(f"\nround trips per step at {row['delay_ms']:.0f} ms: {row['round_trips']}")
        print()
    if "b3" in r:
        b3 = r["b3"]
        print(f"B3 ({b3['hosts']} hosts, one {b3['slow_connect_s']} s slow to connect, one failing)\n")
        print("| tool | total s | first failure on screen s | exit | correct | load |\n|---|---|---|---|---|---|")
        for tool, c in b3["tools"].items():
            ff = f"{c['first_failure']:.2f}" if c["first_failure"] is not None else "never"
            print(f"| {tool} | {c['wall']:.2f} | {ff} | {c['status']} | {'yes' if c['ok'] else c['problems']} | "
                  f"{c['load']} |")
        print()
    if "winrm" in r:
        print(f"WinRM: {json.dumps(r['winrm'])}\n")
    if "ready" in r:
        print(f"Ready: {json.dumps(r['ready'])}\n")
    if "cpu" in r and "tools" in r["cpu"]:
        print("\n".join(cpu_table(r["cpu"])) + "\n")
    if "b1rtt" in r and "delays" in r["b1rtt"]:
        print("\n".join(rtt_table(r["b1rtt"])) + "\n")
    for key in ("big", "big_p1000"):  # big_p1000: the parallel-1000 run, kept beside the last one
        if key in r and "tools" in r[key]:
            print("\n".join(big_table(r[key])) + "\n")


if __name__ == "__main__":
    main()
