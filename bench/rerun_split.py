"""Where a re-run's host-side time goes, against the join floor: the first N lab hosts of a
join_compare.py fleet connected at once (a thread per host), then one command on each, by

  floor      the floor's paramiko SSHClient, then `test -f /etc/kubernetes/kubelet.conf`
  nb-exec    nodeboot's SSH transport, then the same test as a nodeboot script
  nb-facts   nodeboot's SSH transport, then facts.sh (what nodeboot runs on a joined host)

Rounds alternate the three; prints each round and the medians (wall, controller CPU). The
lab must be up and a join_compare.py run must have written the fleet's files:

    PYTHONPATH=bootstrap:lab python bench/rerun_split.py --fleet /tmp/lab-bench17/bench17/n40-rtt0 \\
        --ssh-dir /tmp/lab-bench17/ssh --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import join_floor  # noqa: E402

from nodeboot.inventory import load_inventory  # noqa: E402
from nodeboot.redact import Redactor  # noqa: E402
from nodeboot.scripts import script_text  # noqa: E402
from nodeboot.steps.linux import MODULES_FILE  # noqa: E402
from nodeboot.transport.factory import ConnectionDefaults, make_transport  # noqa: E402

JOINED = join_floor.JOINED
WAYS = ("floor", "nb-exec", "nb-facts")


def one_host(way: str, fleet: Path, ssh_dir: Path) -> Callable[[dict], Any]:
    if way == "floor":
        ssh = join_floor.Ssh(str(ssh_dir / "id_ed25519"), str(ssh_dir / "known_hosts"))

        def floor(h: dict) -> Any:
            conn = ssh.connect(h["address"], h.get("port", 22))
            join_floor.run(conn, JOINED)
            return conn

        return floor
    inventory = {h.name: h for h in load_inventory(str(fleet / "inventory.yml"))}
    script, variables = ((script_text("linux", "facts.sh"), {"NB_MODULES_FILE": MODULES_FILE}) if way == "nb-facts"
                         else (f"{JOINED}\necho '{{\"ok\":true}}'\n", {}))

    def nodeboot(h: dict) -> Any:
        transport = make_transport(inventory[h["name"]], ConnectionDefaults(), Redactor())
        transport.connect()
        transport.run_script(script, variables, None, 30)
        return transport

    return nodeboot


def round_of(way: str, hosts: list[dict], fleet: Path, ssh_dir: Path) -> tuple[float, float]:
    work = one_host(way, fleet, ssh_dir)
    wall, cpu = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        conns = list(pool.map(work, hosts))
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    for conn in conns:
        conn.close()
    return wall, cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fleet", required=True, help="a join_compare.py fleet directory (hosts.json, inventory.yml)")
    p.add_argument("--ssh-dir", required=True, help="the lab's ssh directory (id_ed25519, known_hosts)")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    fleet, ssh_dir = Path(args.fleet), Path(args.ssh_dir)
    hosts = json.loads((fleet / "hosts.json").read_text())
    seen: dict[str, list[tuple[float, float]]] = {w: [] for w in WAYS}
    for r in range(args.rounds):
        for way in WAYS[r % len(WAYS):] + WAYS[:r % len(WAYS)]:
            wall, cpu = round_of(way, hosts, fleet, ssh_dir)
            seen[way].append((wall, cpu))
            print(f"round {r + 1} {way:9s} {len(hosts)} hosts: wall {wall:.3f} s, controller CPU {cpu:.3f} s",
                  flush=True)
    for way, runs in seen.items():
        print(f"{way:9s} median wall {statistics.median(w for w, _ in runs):.3f} s "
              f"(min {min(w for w, _ in runs):.3f}, max {max(w for w, _ in runs):.3f}), "
              f"controller CPU {statistics.median(c for _, c in runs):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
