"""Delay relays (delayproxy.DelayProxy) for many hosts at once, in a child process
with one asyncio loop: B1 behind added delay needs one relay per host, and 50
relays each with a thread in the bench process competed for its GIL and its
share of the 2 cores more than the tools did.

    relays = RelayProcess([(address, port), ...], rtt_ms=50).start()
    relays.ports            # the listening port on 127.0.0.1 for each upstream, in order
    relays.counts()         # [(connections, client turns), ...] since the last reset()
    relays.stop()

The child: python relays.py RTT_MS HOST:PORT...; it prints the ports as one JSON
line, then answers "counts" and "reset" lines on stdin and ends at EOF.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

from delayproxy import DelayProxy


class RelayProcess:
    def __init__(self, upstreams: list[tuple[str, int]], rtt_ms: float) -> None:
        self.upstreams, self.rtt_ms = upstreams, rtt_ms
        self.ports: list[int] = []
        self._proc: subprocess.Popen | None = None

    def start(self) -> RelayProcess:
        argv = [sys.executable, str(Path(__file__).resolve()), f"{self.rtt_ms:g}",
                *(f"{a}:{p}" for a, p in self.upstreams)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      cwd=Path(__file__).parent)
        self.ports = json.loads(self._ask(None))
        return self

    def _ask(self, command: str | None) -> str:
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        if command is not None:
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"delay relays ended (exit {self._proc.poll()})")
        return line

    def counts(self) -> list[tuple[int, int]]:
        return [tuple(x) for x in json.loads(self._ask("counts"))]

    def reset(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        if self._proc is None:
            return
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


def main() -> int:
    rtt_ms = float(sys.argv[1])
    upstreams = [(a, int(p)) for a, p in (x.rsplit(":", 1) for x in sys.argv[2:])]
    loop = asyncio.new_event_loop()
    proxies = [DelayProxy(("127.0.0.1", 0), up, rtt_ms=rtt_ms, loop=loop) for up in upstreams]
    for p in proxies:
        loop.run_until_complete(p.serve())
    print(json.dumps([p.port for p in proxies]), flush=True)

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "counts":
                print(json.dumps([[p.connections, p.turns] for p in proxies]), flush=True)
            elif line.strip() == "reset":
                for p in proxies:
                    p.connections = p.turns = 0
                print("ok", flush=True)
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=commands, daemon=True).start()
    loop.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
