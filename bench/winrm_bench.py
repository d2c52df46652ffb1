"""WinRM: HTTP requests per command on nodeboot's reused shell vs pywinrm's
run_ps (a shell per command), against the lab's WS-Management endpoint
(nodeboot_lab.winrm_server.WinRMServer: real NTLM and message encryption,
plain HTTP on loopback) and its request counters.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import winrm
import yaml

from nodeboot.transport.winrm import WinRMOptions, WinRMTransport
from nodeboot_lab.windows_model import WindowsHostModel
from nodeboot_lab.winrm_server import WinRMServer

USER, PASSWORD = "BENCH\\nodeboot", "Bench-WinRM-Pa55!"


def measure_winrm(state: Path, commands: int, log) -> dict:
    state.mkdir(parents=True, exist_ok=True)
    users = state / "ntlm-users"
    users.write_text(f"BENCH:nodeboot:{PASSWORD}\n")
    users.chmod(0o600)
    server = WinRMServer(WindowsHostModel(state / "host", computer_name="WIN-BENCH"), str(users), "127.0.0.1",
                         http_port=0).start()
    out: dict = {"commands": commands}
    try:
        t = WinRMTransport("127.0.0.1", WinRMOptions(user=USER, password=PASSWORD, scheme="http",
                                                     port=server.http_port), name="win-bench")
        t.connect()
        server.reset_counters()
        client_before = t.stats.extra["http_requests"]
        times = []
        for i in range(commands):
            started = time.monotonic()
            result = t.run_script(f"Write-Output 'n{i}'\n", {"NB_I": str(i)})
            times.append(time.monotonic() - started)
            assert result.stdout == f"n{i}\r\n", result
        server_requests = server.counters().http_requests
        client_requests = t.stats.extra["http_requests"] - client_before
        t.close()
        out["reused_shell"] = {"http_requests_per_command": server_requests / commands,
                               "client_counted": client_requests / commands,
                               "ms_per_command": round(statistics.median(times) * 1000, 1),
                               "shells_opened": t.stats.extra.get("shells_opened")}
        server.reset_counters()
        session = winrm.Session(f"http://127.0.0.1:{server.http_port}/wsman", auth=(USER, PASSWORD),
                                transport="ntlm")
        times = []
        for i in range(commands):
            started = time.monotonic()
            assert session.run_ps(f"Write-Output 'n{i}'").std_out == f"n{i}\r\n".encode()
            times.append(time.monotonic() - started)
        counters = server.counters()
        out["pywinrm_run_ps"] = {"http_requests_per_command": counters.http_requests / commands,
                                 "ms_per_command": round(statistics.median(times) * 1000, 1),
                                 "shells_created": counters.actions["Create"]}
    finally:
        server.close()
    r, p = out["reused_shell"], out["pywinrm_run_ps"]
    log(f"WinRM: HTTP requests per command: nodeboot reused shell {r['http_requests_per_command']:.1f} "
        f"({r['ms_per_command']} ms/command), pywinrm run_ps {p['http_requests_per_command']:.1f} "
        f"({p['ms_per_command']} ms/command), over {commands} commands")
    return out


# -- item 4: Windows fan-out on the lab ----------------------------------------------
# `nodeboot join` of the lab's Windows hosts in one run (the WS-Man endpoints are real:
# NTLM, message encryption, HTTPS; what the scripts do to the host is modelled), against
# the naive way, pywinrm's Session.run_ps once per command, as many commands per host as
# nodeboot ran scripts. HTTP requests are counted by each host's endpoint, which writes
# its counters when it stops: the bench stops and restarts the endpoints between runs.

def _endpoints_stop(lab, hosts: list[dict]) -> dict[str, dict]:
    state = Path(lab.env()["state_dir"])
    counts = {}
    for h in hosts:
        model = state / "hosts" / h["name"] / "model"
        (model / "winrm-counters.json").unlink(missing_ok=True)
        os.kill(json.loads((model / "winrm-server.json").read_text())["pid"], signal.SIGTERM)
    for h in hosts:
        path = state / "hosts" / h["name"] / "model" / "winrm-counters.json"
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        counts[h["name"]] = json.loads(path.read_text())
    return counts


def _endpoints_start(lab, hosts: list[dict]) -> None:
    record = lab.load()
    for rec in record.hosts:
        if rec.name in {h["name"] for h in hosts}:
            lab._start_winrm(lab._host_sandbox(record, rec), rec)  # the lab's own start, as `up` does
    for rec in record.hosts:
        if rec.name in {h["name"] for h in hosts}:
            lab._wait_listening(rec)


def _per_host(counts: dict[str, dict]) -> dict:
    reqs = [c["http_requests"] for c in counts.values()]
    cmds = [len(c["per_command"]) for c in counts.values()]
    return {"http_per_host": statistics.median(reqs), "http_max": max(reqs),
            "commands_per_host": statistics.median(cmds),
            "http_per_command": round(sum(reqs) / max(1, sum(cmds)), 2),
            "shells_per_host": statistics.median(c["actions"].get("Create", 0) for c in counts.values())}


def _naive(env: dict, hosts: list[dict], commands: int) -> float:
    """pywinrm run_ps, `commands` times per host, every host at once (a thread each)."""
    from concurrent.futures import ThreadPoolExecutor

    password = Path(env["winrm_password_file"]).read_text().strip()

    def one(h: dict) -> None:
        s = winrm.Session(f"https://{h['address']}:5986/wsman", auth=("Administrator", password),
                          transport="ntlm", server_cert_validation="validate", ca_trust_path=env["winrm_ca"])
        for i in range(commands):
            r = s.run_ps(f"Write-Output 'n{i}'")
            assert r.status_code == 0 and r.std_out.strip() == f"n{i}".encode(), r

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        list(pool.map(one, hosts))
    return time.monotonic() - started


def _reused(env: dict, hosts: list[dict], commands: int) -> float:
    """The same trivial commands through nodeboot's WinRMTransport (one shell per host), every host at once."""
    from concurrent.futures import ThreadPoolExecutor

    password = Path(env["winrm_password_file"]).read_text().strip()

    def one(h: dict) -> None:
        t = WinRMTransport(h["address"], WinRMOptions(user="Administrator", password=password, scheme="https",
                                                      ca_file=env["winrm_ca"]), name=h["name"])
        t.connect()
        for i in range(commands):
            r = t.run_script(f"Write-Output 'n{i}'\n", {"NB_I": str(i)})
            assert r.stdout == f"n{i}\r\n", r
        t.close()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        list(pool.map(one, hosts))
    return time.monotonic() - started


def fanout(state: Path, n: int, out: Path, skip_join: bool = False) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from apicount import ApiCounter
    from join_compare import PY, ROOT, measure_command

    from nodeboot.cluster.client import Cluster
    from nodeboot_lab.lab import Lab

    lab = Lab(state, log=lambda m: print(m, file=sys.stderr))
    env = lab.env()
    hosts = [h for h in env["hosts"] if h["os"] == "windows"][:n]
    if len(hosts) < n:
        raise SystemExit(f"the lab has {len(hosts)} Windows hosts, {n} asked")
    out.mkdir(parents=True, exist_ok=True)
    full = yaml.safe_load(Path(env["inventory"]).read_text())
    win = full["all"]["children"]["windows"]
    win["hosts"] = {k: v for k, v in win["hosts"].items() if k in {h["name"] for h in hosts}}
    full["all"]["children"] = {"windows": win}
    inventory = out / "windows.yml"
    inventory.write_text(yaml.safe_dump(full))
    run_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bootstrap"), str(ROOT / "lab")]),
               env["winrm_password_env"]: Path(env["winrm_password_file"]).read_text().strip()}
    cluster = Cluster.from_kubeconfig(env["kubeconfig"])
    counter = ApiCounter(env["kubeconfig"])
    names = [h["name"] for h in hosts]
    results: dict = {"n": n}
    for run in () if skip_join else ("cold", "re-run"):
        argv = [PY, "-m", "nodeboot", "join", "-i", str(inventory), "--cni", "flannel", "--output", "json",
                "--kubeconfig", env["kubeconfig"], "--parallel", str(n), "--log-dir", str(out / f"logs-{run}")]
        row = measure_command(argv, run_env, r'"status": "failed"', names, cluster, counter,
                              out / f"nodeboot-{run}.json")
        tail = row.pop("tail_all")
        summary = next((json.loads(x) for x in reversed(tail) if '"event": "summary"' in x), {})
        row["execs_per_host"] = statistics.median(h["execs"] for h in summary.get("hosts", [{"execs": 0}]))
        row.update(_per_host(_endpoints_stop(lab, hosts)))
        _endpoints_start(lab, hosts)
        results[f"nodeboot_{run}"] = row
        print(f"Windows N={n} nodeboot {run}: wall {row['wall']:.2f}s, all Ready at {row['all_ready']}s, "
              f"CPU {row['cpu']:.2f}s, {row['http_per_host']} HTTP requests/host "
              f"({row['commands_per_host']} commands, {row['http_per_command']}/command, "
              f"{row['shells_per_host']} shell), API {row['api_per_node']}/node; load {row['load_before']}",
              flush=True)
    commands = int(results["nodeboot_cold"]["commands_per_host"]) if not skip_join else 8
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    wall = _reused(env, hosts, commands)
    reused = {"wall": round(wall, 2), "commands_per_host": commands, "load_before": load,
              **_per_host(_endpoints_stop(lab, hosts))}
    _endpoints_start(lab, hosts)
    results["nodeboot_transport_same_commands"] = reused
    print(f"Windows N={n} nodeboot WinRMTransport x{commands}/host (trivial commands): wall {reused['wall']:.2f}s, "
          f"{reused['http_per_host']} HTTP requests/host ({reused['http_per_command']}/command, "
          f"{reused['shells_per_host']} shells/host); load {load}", flush=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    wall = _naive(env, hosts, commands)
    naive = {"wall": round(wall, 2), "commands_per_host": commands, "load_before": load,
             **_per_host(_endpoints_stop(lab, hosts))}
    _endpoints_start(lab, hosts)
    results["pywinrm_run_ps"] = naive
    print(f"Windows N={n} pywinrm run_ps x{commands}/host (trivial commands): wall {naive['wall']:.2f}s, "
          f"{naive['http_per_host']} HTTP requests/host ({naive['http_per_command']}/command, "
          f"{naive['shells_per_host']} shells/host); load {load}", flush=True)
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Windows fan-out on a lab that is up (nodeboot-lab up --windows N)")
    parser.add_argument("--state", default="/tmp/lab-bench17")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--skip-join", action="store_true", help="only the like-for-like trivial commands")
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent / "results-winfanout.json"))
    a = parser.parse_args()
    res = fanout(Path(a.state), a.n, Path(a.state) / "bench17" / "windows", a.skip_join)
    Path(a.json).write_text(json.dumps(res, indent=1))
