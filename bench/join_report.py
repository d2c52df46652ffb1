"""The "Real join" tables of docs/benchmarks.md from bench/join_compare.py's JSON files.

    python3 bench/join_report.py bench/results-join.json [more.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BACKGROUND = "kubelet: status, leases, CSRs"


def rows(paths: list[str]) -> list[dict]:
    out: list[dict] = []
    for p in paths:
        out += json.loads(Path(p).read_text())["rows"]
    return out


def main() -> int:
    all_rows = rows(sys.argv[1:])
    print("| N | added RTT ms | tool | run | wall s | all Ready s | controller CPU s | API requests/node "
          "(less idle background) | tokens / cluster-info / Nodes per node | load 1-min before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in all_rows:
        if r["status"] != 0:
            print(f"| {r['n']} | {r['rtt_ms']:.0f} | {r['tool']} | {r['run']} | FAILED | | | | | |")
            continue
        n = r["n"]
        net = (r["api_requests"] - r["background_rps"] * r["wall"]) / n
        s = r["api_split"]
        own = (f"{s.get('secrets (tokens)', 0) / n:.1f} / "
               f"{s.get('configmaps (cluster-info, kubeadm-config, kubelet-config)', 0) / n:.1f} / "
               f"{s.get('nodes get/list/watch/patch', 0) / n:.1f}")
        loads = f"{r['load_before'].split()[0]} -> {r['load_after'].split()[0]}"
        print(f"| {n} | {r['rtt_ms']:.0f} | {r['tool']} | {r['run']} | {r['wall']:.1f} | {r['all_ready']} | "
              f"{r['cpu']:.2f} | {r['api_per_node']} ({net:.1f}) | {own} | {loads} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
