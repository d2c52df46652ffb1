"""B2: seconds per step on one host behind added delay.

The host is an sshd in a network namespace of its own (nbb-lat, veth
198.19.77.1 <-> 198.19.77.2). The delay is tc netem on the namespace's side
when the kernel has netem; otherwise (this machine's kernel has no sch_netem)
a relay on loopback (delayproxy.DelayProxy) holds every chunk back by half
the added round trip in each direction.

Per step, against the same host at the same delay:
- nodeboot: SSHTransport.run_script of the bench phase scripts and put_file,
  on the host's long-lived shell (framed_shell.py); a batch of the three
  prepare scripts (node-files, artifact check, join) in one run_batch; the
  first script on a fresh connection (opening the shell costs two round trips more,
  as a first exec does);
- paramiko exec: open_session + exec_command + stdin + wait (what the floor does),
  on the warm connection and as the first exec of a fresh one;
- SSH RTT: a global request with want-reply (keepalive@openssh.com): one round trip;
- host work: the facts script run by a local bash, the part of a step no
  transport can remove.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

import paramiko
from hosts import BenchHost, HostPool
from tools.common import host_script, preamble, script_vars

from nodeboot.transport import ScriptCall
from nodeboot.transport.ssh import SSHOptions, SSHTransport, upload_call

NETNS = "nbb-lat"
HOST_IF = "nbb-lat-h"
NS_ADDR, HOST_ADDR = "198.19.77.2", "198.19.77.1"
BENCH = Path(__file__).resolve().parent
BASH = "bash --noprofile --norc -s"
def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def make_netns() -> None:
    remove_netns()
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "eth0", "netns", NETNS)
    sh("ip", "addr", "add", f"{HOST_ADDR}/30", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
    sh("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{NS_ADDR}/30", "dev", "eth0")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "eth0", "up")


def remove_netns() -> None:
    sh("ip", "link", "del", HOST_IF, check=False)
    sh("ip", "netns", "del", NETNS, check=False)


def netem(delay_ms: float) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", NETNS, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay",
              f"{delay_ms}ms", check=False)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def floor_exec(transport: paramiko.Transport, stdin: bytes) -> tuple[int, bytes]:
    chan = transport.open_session()
    chan.exec_command(BASH)
    chan.sendall(stdin)
    chan.shutdown_write()
    out = b""
    while data := chan.recv(65536):
        out += data
    status = chan.recv_exit_status()
    chan.close()
    return status, out


def measure_steps(state: Path, pool: HostPool, delays: list[float], reps: int, log) -> dict:
    from delayproxy import DelayProxy

    make_netns()
    host = BenchHost(999, "lat", NS_ADDR, 22022, state / "hosts" / "lat")
    proxy = None
    out: dict = {"reps": reps, "rows": []}
    try:
        probe = netem(0)
        out["netem"] = probe.returncode == 0
        out["netem_error"] = probe.stderr.strip()
        log(f"B2: tc netem in this kernel: {'yes' if out['netem'] else 'no (' + out['netem_error'] + ')'}"
            + ("" if out["netem"] else "; delay added by a relay on loopback instead"))
        pool.spawn(host, netns=NETNS)
        pool.wait(host)
        pub = pool.known_hosts_line(host).split(" ", 1)[1]
        variables = script_vars(str(host.root))
        facts_script = host_script("nb-facts.sh")
        files_script = host_script("nb-files.sh")
        files_vars = {k: variables[k] for k in ("NB_ROOT", "NB_MODULES", "NB_SYSCTL")}
        data = (state / "artifact.bin").read_bytes()
        for delay in delays:
            if out["netem"]:
                netem(delay)
                target = (NS_ADDR, 22022)
            else:
                proxy = DelayProxy(("127.0.0.1", 0), (NS_ADDR, 22022), rtt_ms=delay).start()
                target = ("127.0.0.1", proxy.port)
            known = state / "ssh" / "known_hosts_lat"
            known.write_text(f"[{target[0]}]:{target[1]} {pub}")
            opts = SSHOptions(port=target[1], key_file=str(pool.key), known_hosts=str(known))
            nb = SSHTransport(target[0], opts, name="lat")
            t = time.monotonic()
            nb.connect()
            connect = time.monotonic() - t
            raw = nb._transport  # the same connection, driven directly for the floor's exec and the RTT
            assert raw is not None
            row: dict = {"delay_ms": delay, "connect_ms": round(connect * 1000, 1)}
            samples: dict[str, list[float]] = {k: [] for k in (
                "rtt", "nodeboot facts", "nodeboot node-files", "nodeboot put_file 1MiB", "nodeboot batch of 3",
                "nodeboot first script", "paramiko exec", "paramiko first exec", "host work (local bash)")}
            nb.run_script(files_script, files_vars)  # the no-change state for node-files
            batch = [ScriptCall(files_script, files_vars),
                     upload_call(data, f"{host.root}/opt/nodeboot/artifact.bin"),
                     ScriptCall(files_script, files_vars)]
            for _ in range(reps):
                t = time.monotonic()
                raw.global_request("keepalive@openssh.com", wait=True)
                samples["rtt"].append(time.monotonic() - t)
                t = time.monotonic()
                nb.run_script(facts_script, {"NB_ROOT": str(host.root)})
                samples["nodeboot facts"].append(time.monotonic() - t)
                t = time.monotonic()
                nb.run_script(files_script, files_vars)
                samples["nodeboot node-files"].append(time.monotonic() - t)
                t = time.monotonic()
                nb.put_file(data, f"{host.root}/opt/nodeboot/artifact.bin")
                samples["nodeboot put_file 1MiB"].append(time.monotonic() - t)
                t = time.monotonic()
                floor_exec(raw, (preamble({"NB_ROOT": str(host.root)}) + facts_script).encode())
                samples["paramiko exec"].append(time.monotonic() - t)
                t = time.monotonic()
                results = nb.run_batch(batch)
                samples["nodeboot batch of 3"].append(time.monotonic() - t)
                assert all(r is not None and r.exit_status == 0 for r in results), results
                fresh = SSHTransport(target[0], opts, name="lat-fresh")
                fresh.connect()
                t = time.monotonic()
                fresh.run_script(facts_script, {"NB_ROOT": str(host.root)})
                samples["nodeboot first script"].append(time.monotonic() - t)
                fresh.close()
                # The same on a fresh connection with a plain exec: sshd's first session costs
                # the same setup whichever way the script comes.
                fresh = SSHTransport(target[0], opts, name="lat-fresh")
                fresh.connect()
                assert fresh._transport is not None
                t = time.monotonic()
                floor_exec(fresh._transport, (preamble({"NB_ROOT": str(host.root)}) + facts_script).encode())
                samples["paramiko first exec"].append(time.monotonic() - t)
                fresh.close()
                # The same script run by a local bash: the host-side work every step above includes.
                t = time.monotonic()
                subprocess.run(["bash", "--noprofile", "--norc", "-s"], capture_output=True, check=True,
                               input=(preamble({"NB_ROOT": str(host.root)}) + facts_script).encode())
                samples["host work (local bash)"].append(time.monotonic() - t)
            nb.close()
            if proxy is not None:
                proxy.stop()
                proxy = None
            row.update({k: median_ms(v) for k, v in samples.items()})
            out["rows"].append(row)
            log(f"B2 delay {delay:>4.0f} ms: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "delay_ms")
                + f" (ms, median of {reps}; load {Path('/proc/loadavg').read_text().split()[:3]})")
        base = out["rows"][0]
        for row in out["rows"][1:]:
            d = row["delay_ms"]
            row["round_trips"] = {k: round((row[k] - base[k]) / d, 2) for k in (
                "nodeboot facts", "nodeboot node-files", "nodeboot batch of 3", "nodeboot first script",
                "paramiko exec", "paramiko first exec", "rtt")}
            # Overhead per step beyond one round trip and the host's own work.
            row["nodeboot_overhead_ms"] = round(row["nodeboot facts"] - row["rtt"] - row["host work (local bash)"], 1)
    finally:
        if proxy is not None:
            proxy.stop()
        pool.stop_one(host)
        remove_netns()
    return out
