"""docs/benchmarks.png from bench/results.json: B1 wall time vs N per tool.

usage: bench/.venv/bin/python bench/plot.py [results.json] [out.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BENCH = Path(__file__).resolve().parent


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else BENCH.parent / "docs" / "benchmarks.png"
    b1 = json.loads(src.read_text())["b1"]
    sizes = sorted(int(n) for n in b1)
    tools = list(dict.fromkeys(t for n in b1 for t in b1[n]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, kind in zip(axes, ("cold", "no-change"), strict=True):
        for tool in tools:
            xs, ys = [], []
            for n in sizes:
                cell = b1[str(n)].get(tool, {}).get(kind)
                if cell and cell.get("ok"):
                    xs.append(n)
                    ys.append(cell["wall"])
            if xs:
                ax.plot(xs, ys, marker="o", label=tool, linewidth=2 if tool == "nodeboot" else 1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("hosts (N)")
        ax.set_title(f"B1 {kind} run")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("wall time, s (median)")
    axes[1].legend()
    fig.suptitle("node-prep workload on N sshd hosts (loopback), 2 shared cores")
    fig.tight_layout()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
