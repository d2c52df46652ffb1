"""WinRM: HTTP requests per command on nodeboot's reused shell vs pywinrm's
run_ps (a shell per command), against the lab's WS-Management endpoint
(nodeboot_lab.winrm_server.WinRMServer: real NTLM and message encryption,
plain HTTP on loopback) and its request counters.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import winrm

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
