"""Bench hosts: N real sshd daemons on loopback addresses, one per host.

Host i listens on 127.77.<i // 250>.<i % 250 + 1>, port 22022, with its own
ed25519 host key, its own state directory (<state>/hosts/hNNN) and its own
"/" for the workload (<state>/hosts/hNNN/root, given to every tool as the
host's NB_ROOT). All hosts accept one client key and are listed in one
known_hosts file, which every tool checks against (strict checking).

Every tool meets the same server: one host key type (ssh-ed25519), one key
exchange (curve25519-sha256@libssh.org), one cipher (aes128-gcm@openssh.com).

Counting, on the host side and the same for every tool: sshd logs one
"Accepted publickey" line per connection and (LogLevel VERBOSE) one "Starting
session: command" line per exec request, "Starting session: subsystem" per SFTP
session.

Processes are started by this module and ended by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = BENCH / "scripts"
PORT = 22022
KEX = "curve25519-sha256@libssh.org"
CIPHER = "aes128-gcm@openssh.com"
MAC = "hmac-sha2-256-etm@openssh.com"
HOSTKEY_ALG = "ssh-ed25519"


def address(i: int) -> str:
    return f"127.77.{i // 250}.{i % 250 + 1}"


@dataclass
class BenchHost:
    index: int
    name: str
    address: str
    port: int
    dir: Path
    pid: int = 0

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"


class HostPool:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.ssh_dir = state / "ssh"
        self.key = self.ssh_dir / "id_ed25519"
        self.known_hosts = self.ssh_dir / "known_hosts"
        self.home = state / "home"
        self.hosts: list[BenchHost] = []
        self._procs: dict[int, subprocess.Popen] = {}

    # -- material -----------------------------------------------------------
    def _client_material(self) -> None:
        self.ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nodeboot-bench", "-f",
                            str(self.key)], check=True)
        shutil.copy(self.key.with_suffix(".pub"), self.ssh_dir / "authorized_keys")
        self.home.mkdir(parents=True, exist_ok=True)

    def _host_config(self, host: BenchHost, extra: str = "") -> Path:
        host.dir.mkdir(parents=True, exist_ok=True)
        key = host.dir / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        config = host.dir / "sshd_config"
        config.write_text(
            f"ListenAddress {host.address}:{host.port}\n"
            f"HostKey {key}\nPidFile none\n"
            f"AuthorizedKeysFile {self.ssh_dir / 'authorized_keys'}\n"
            f"HostKeyAlgorithms {HOSTKEY_ALG}\nKexAlgorithms {KEX}\nCiphers {CIPHER}\nMACs {MAC}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "UsePAM no\nStrictModes no\nUseDNS no\nMaxStartups 1000:30:1000\nMaxSessions 200\n"
            "LogLevel VERBOSE\nPrintMotd no\nPrintLastLog no\nAcceptEnv LANG\n"
            "Subsystem sftp internal-sftp\n" + extra
        )
        return config

    def known_hosts_line(self, host: BenchHost) -> str:
        pub = (host.dir / "ssh_host_ed25519_key.pub").read_text().split()
        return f"[{host.address}]:{host.port} {pub[0]} {pub[1]}\n"

    # -- lifecycle ------------------------------------------------------------
    def start(self, n: int) -> list[BenchHost]:
        """Make sure hosts 0..n-1 run (starting only the missing ones)."""
        fresh = []
        for i in range(len(self.hosts), n):
            host = BenchHost(i, f"h{i:03d}", address(i), PORT, self.state / "hosts" / f"h{i:03d}")
            self.spawn(host)
            self.hosts.append(host)
            fresh.append(host)
        with self.known_hosts.open("w") as fh:
            for host in self.hosts:
                fh.write(self.known_hosts_line(host))
        for host in fresh:
            wait_listening(host.address, host.port, self._procs[host.pid])
        return self.hosts[:n]

    def spawn(self, host: BenchHost, netns: str | None = None) -> None:
        """Start one host's sshd (inside network namespace `netns` if given)."""
        self._client_material()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        config = self._host_config(host)
        # A private mount namespace where /root is an empty directory: this machine's
        # /root/.bashrc runs pyenv (about 150 ms per exec), which no node would do.
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /root && exec /usr/sbin/sshd -D -e -f "$1"', str(self.home), str(config)]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        with open(host.sshd_log, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        host.pid = proc.pid
        self._procs[proc.pid] = proc
        host.root.mkdir(parents=True, exist_ok=True)

    def wait(self, host: BenchHost) -> None:
        wait_listening(host.address, host.port, self._procs[host.pid])

    def host_cpu(self, hosts: list[BenchHost]) -> float:
        """CPU seconds the hosts' sshd daemons and their reaped children (sessions, bash) have used."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for host in hosts:
            try:
                with open(f"/proc/{host.pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            except FileNotFoundError:
                pass
        return total / tick

    def stop_one(self, host: BenchHost) -> None:
        proc = self._procs.pop(host.pid, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self._procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        self.hosts.clear()

    # -- state --------------------------------------------------------------
    def reset(self, hosts: list[BenchHost]) -> None:
        """A cold host: empty root, empty counters."""
        for host in hosts:
            shutil.rmtree(host.root, ignore_errors=True)
            host.root.mkdir(parents=True)
            self.reset_counters([host])

    @staticmethod
    def reset_counters(hosts: list[BenchHost]) -> None:
        for host in hosts:
            host.sshd_log.write_bytes(b"")

    @staticmethod
    def counters(hosts: list[BenchHost]) -> dict[str, float]:
        """Per-host averages of connections, exec requests and SFTP sessions since the last reset."""
        conns = execs = sftp = 0
        for host in hosts:
            log = host.sshd_log.read_text(errors="replace")
            conns += log.count("Accepted publickey")
            execs += log.count("Starting session: command")
            sftp += log.count("Starting session: subsystem")
        n = max(1, len(hosts))
        return {"conns": conns / n, "execs": execs / n, "sftp": sftp / n}


def wait_listening(addr: str, port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"sshd for {addr}:{port} exited with {proc.returncode}")
        try:
            with socket.create_connection((addr, port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{addr}:{port} not listening after {timeout:.0f}s")


def raise_nofile(want: int = 65536) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit (children inherit it); return (old, new)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard) if hard != resource.RLIM_INFINITY else max(soft, want)
    if new != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return soft, new


def env_for_tools() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_AUTH_SOCK", "ANSIBLE_", "PYINFRA_"))}
    env["LANG"] = "C.UTF-8"
    return env
