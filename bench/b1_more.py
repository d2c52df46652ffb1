"""B1 variants of issue 17, run by bench/run.py (--only cpu,b1rtt,big):

- cpu: controller CPU of cold runs at N hosts, nodeboot against the paramiko
  floor, runs interleaved (the order alternating) so that other work on the
  machine falls on both alike; the ratio of the medians and of each pair.
- b1rtt: B1 (cold, then no-change) with every host behind its own delay relay
  (delayproxy.py, all in one child process: relays.py; the kernel has no
  netem), at 0 ms and at the added RTT; the relay counts each connection's
  client turns (the round trips a tool waited for).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from relays import RelayProcess

PAIR = ("nodeboot", "paramiko-floor")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def measure_cpu(bench, n: int, runs: int, log: Callable[[str], None]) -> dict:
    hosts = bench.pool.start(n)
    tools = PAIR + (("nodeboot-before",) if bench.args.before else ())
    cells: dict[str, list[dict]] = {t: [] for t in tools}
    for r in range(runs):
        for tool in tools if r % 2 == 0 else tools[::-1]:
            bench.pool.reset(hosts)
            m = bench.checked_run(tool, hosts, "cold", f"cpu-{tool}-{n}", n)
            split = m.get("nodeboot_stats", {})
            cells[tool].append({k: m[k] for k in ("ok", "wall", "cpu", "host_cpu", "peak_rss", "load", "problems")}
                               | ({"cpu_split": {k: round(v, 3) for k, v in split.items() if k.startswith("cpu")}}
                                  if split else {}))
            log(f"cpu N={n} {tool:<15} run {r + 1}: " + (
                f"cpu {m['cpu']:.2f}s wall {m['wall']:.2f}s" if m["ok"] else f"FAILED {m['problems'][:2]}")
                + (f" (nodeboot: before fleet {split['cpu_before_fleet']:.2f}s, fleet {split['cpu_fleet']:.2f}s, "
                   f"summary {split['cpu_summary']:.2f}s)" if split else "") + f" (load {m['load']})")
    out: dict = {"hosts": n, "runs": runs, "tools": cells}
    if all(c["ok"] for t in tools for c in cells[t]):
        nb, fl = ([c["cpu"] for c in cells[t]] for t in PAIR)
        out["cpu_median"] = {t: round(median([c["cpu"] for c in cells[t]]), 3) for t in tools}
        out["wall_median"] = {t: round(median([c["wall"] for c in cells[t]]), 3) for t in tools}
        out["ratio_of_medians"] = round(median(nb) / median(fl), 3)
        out["pair_ratios"] = [round(a / b, 3) for a, b in zip(nb, fl, strict=True)]
        log(f"cpu N={n}: nodeboot {median(nb):.2f}s, floor {median(fl):.2f}s of controller CPU (medians of "
            f"{runs}): {out['ratio_of_medians']:.2f}x; per pair {out['pair_ratios']}")
        if "nodeboot-before" in cells:
            before = median([c["cpu"] for c in cells["nodeboot-before"]])
            out["before_ratio"] = round(before / median(fl), 3)
            log(f"cpu N={n}: nodeboot-before {before:.2f}s: {out['before_ratio']:.2f}x the floor")
    return out


def measure_rtt(bench, n: int, delays: list[float], runs: int, log: Callable[[str], None]) -> dict:
    hosts = bench.pool.start(n)
    out: dict = {"hosts": n, "runs": runs, "delays": {}}
    for delay in delays:
        relays = RelayProcess([(h.address, h.port) for h in hosts], delay).start()
        try:
            known = bench.state / "ssh" / f"known_hosts_rtt{delay:g}"
            known.write_text(bench.pool.known_hosts.read_text() + "".join(
                f"[127.0.0.1]:{port} " + bench.pool.known_hosts_line(h).split(" ", 1)[1]
                for h, port in zip(hosts, relays.ports, strict=True)))
            overrides: dict = {h.name: {"address": "127.0.0.1", "port": port}
                               for h, port in zip(hosts, relays.ports, strict=True)}
            overrides["_known_hosts"] = str(known)
            cells: dict = {t: {"cold": [], "no-change": []} for t in PAIR}
            for r in range(runs):
                for tool in PAIR if r % 2 == 0 else PAIR[::-1]:
                    bench.pool.reset(hosts)
                    for kind in ("cold", "no-change"):
                        relays.reset()
                        m = bench.checked_run(tool, hosts, kind, f"rtt-{tool}-{n}", n, overrides)
                        counts = relays.counts()
                        conns, turns = (sum(c[i] for c in counts) / n for i in (0, 1))
                        cells[tool][kind].append({"ok": m["ok"], "wall": m["wall"], "cpu": m["cpu"],
                                                  "turns": turns, "relay_conns": conns,
                                                  "round_trips": m["round_trips"], "load": m["load"],
                                                  "problems": m["problems"],
                                                  "split": {k: round(v, 3) for k, v in m.get("nodeboot_stats", {})
                                                            .items() if k.startswith(("cpu", "wall"))}})
                        log(f"b1rtt +{delay:g}ms N={n} {tool:<15} {kind:<9} run {r + 1}: " + (
                            f"{m['wall']:.2f}s cpu {m['cpu']:.2f}s, relay: {turns:.1f} client turns and "
                            f"{conns:.1f} connections per host; scripts' round trips/host {m['round_trips']:.1f}"
                            + (f"; fleet {m['nodeboot_stats']['wall_fleet']:.2f}s, summary "
                               f"{m['nodeboot_stats']['wall_summary']:.2f}s" if "nodeboot_stats" in m else "")
                            if m["ok"] else f"FAILED {m['problems'][:2]}") + f" (load {m['load']})")
            out["delays"][f"{delay:g}"] = {t: {k: summary(v) for k, v in c.items()} for t, c in cells.items()}
        finally:
            relays.stop()
    base = out["delays"].get("0")
    for delay in delays:
        if not delay or base is None:
            continue
        d = out["delays"][f"{delay:g}"]
        for tool in PAIR:
            for kind in ("cold", "no-change"):
                c, b = d[tool][kind], base[tool][kind]
                if c.get("ok") and b.get("ok"):
                    # Wall added by the delay, in RTTs: the waits, plus what the relay's own work
                    # on the shared cores added (an upper bound on round trips, not a count).
                    c["added_wall_in_rtts"] = round((c["wall"] - b["wall"]) / (delay / 1000), 2)
        for kind in ("cold", "no-change"):
            nb, fl = d["nodeboot"][kind], d["paramiko-floor"][kind]
            if nb.get("ok") and fl.get("ok"):
                d[f"ratio_{kind}"] = round(nb["wall"] / fl["wall"], 3)
                log(f"b1rtt +{delay:g}ms N={n} {kind}: nodeboot {nb['wall']:.2f}s, floor {fl['wall']:.2f}s: "
                    f"{d[f'ratio_{kind}']:.2f}x; client turns/host {nb['turns']:.1f} against {fl['turns']:.1f}; "
                    f"wall added / RTT: {nb.get('added_wall_in_rtts')} against {fl.get('added_wall_in_rtts')}")
    return out


def summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["ok"]]
    if len(ok) < len(runs):
        return {"ok": False, "problems": next(r["problems"] for r in runs if not r["ok"])}
    med = {k: round(median([r[k] for r in ok]), 3) for k in ("wall", "cpu", "turns", "relay_conns", "round_trips")}
    return med | {"ok": True, "runs": len(ok), "walls": [round(r["wall"], 3) for r in ok],
                  "loads": [r["load"] for r in ok]}
