"""Test helpers around the lab: host reservation, inventories, running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nodeboot.cluster.client import Cluster
from nodeboot_lab.lab import Lab

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass
class LabHandle:
    lab: Lab
    env: dict[str, Any]
    work: Path
    _taken: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, state: Path, linux: int, windows: int, work: Path) -> LabHandle:
        lab = Lab(state, log=lambda m: print(m, file=sys.stderr))
        lab.up(linux=linux, windows=windows)
        return cls(lab, lab.env(), work)

    def stop(self) -> None:
        if os.environ.get("NODEBOOT_TEST_KEEP_LAB"):
            return
        self.lab.down()

    # -- hosts ----------------------------------------------------------------
    def reserve(self, count: int, os_name: str = "linux") -> list[dict[str, Any]]:
        with self._lock:
            free = [h for h in self.env["hosts"] if h["os"] == os_name and h["name"] not in self._taken]
            if len(free) < count:
                raise RuntimeError(f"the lab has only {len(free)} free {os_name} hosts, {count} wanted")
            chosen = free[:count]
            self._taken.update(h["name"] for h in chosen)
            return chosen

    def inventory(self, hosts: list[dict[str, Any]], name: str, host_vars: dict[str, dict] | None = None,
                  group_vars: dict | None = None) -> Path:
        """An inventory of just these hosts, in the lab's format (Ansible YAML)."""
        full = yaml.safe_load(Path(self.env["inventory"]).read_text())
        wanted = {h["name"] for h in hosts}
        for group in full["all"]["children"].values():
            group["hosts"] = {n: {**v, **(host_vars or {}).get(n, {})} for n, v in group["hosts"].items()
                              if n in wanted}
        if group_vars:
            full["all"]["vars"].update(group_vars)
        path = self.work / f"{name}.yml"
        path.write_text(yaml.safe_dump(full, sort_keys=False))
        return path

    # -- cluster and CLI --------------------------------------------------------
    @property
    def kubeconfig(self) -> str:
        return self.env["kubeconfig"]

    def cluster(self) -> Cluster:
        return Cluster.from_kubeconfig(self.kubeconfig)

    def winrm_password(self) -> str:
        return Path(self.env["winrm_password_file"]).read_text().strip()

    def cli_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join((str(ROOT / "bootstrap"), str(ROOT / "lab")))
        env["KUBECONFIG"] = self.kubeconfig
        env[self.env["winrm_password_env"]] = self.winrm_password()
        env.pop("NODEBOOT_DEBUG", None)
        return env

    def nodeboot(self, *args: str, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nodeboot", *args], capture_output=True, text=True,
                              env=self.cli_env(), timeout=timeout, input=input, cwd=ROOT)

    def lab_cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nodeboot_lab.cli", *args], capture_output=True, text=True,
                              env=self.cli_env(), timeout=timeout, cwd=ROOT)

    def nodeboot_json(self, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, list[dict]]:
        proc = self.nodeboot(*args, "--output", "json", timeout=timeout)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        return proc, events

    def ssh(self, host: dict[str, Any], command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command on a lab host with the OpenSSH client (an independent check of the host's state)."""
        return subprocess.run(
            ["ssh", "-i", self.env["ssh_key"], "-o", f"UserKnownHostsFile={self.env['known_hosts']}",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"root@{host['address']}", command],
            capture_output=True, text=True, timeout=timeout,
        )


def summary(events: list[dict]) -> dict:
    return next(e for e in events if e.get("event") == "summary")


class BackgroundRun:
    """nodeboot running in the background with --output json; its events as they come."""

    def __init__(self, handle: LabHandle, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "nodeboot", *args, "--output", "json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=handle.cli_env(), cwd=ROOT)
        self.events: list[dict] = []
        self.stderr = ""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with self._changed:
                    self.events.append(json.loads(line))
                    self._changed.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_event(self, predicate, timeout: float = 120) -> dict:
        import time

        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"event not seen; stderr: {self.stderr[-2000:]}")
                self._changed.wait(min(remaining, 0.2))

    def wait(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(10)
        self._err_reader.join(10)
        return code

    def summary(self) -> dict:
        return summary(self.events)


class TokenSpy:
    """Records every bootstrap token secret created in the cluster while it runs,
    so a test can look for those secrets anywhere they must not be."""

    def __init__(self, handle: LabHandle) -> None:
        self.cluster = handle.cluster()
        self.secrets: dict[str, dict] = {}
        self._seen = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TokenSpy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _run(self) -> None:
        import base64

        from kubernetes import watch

        while not self._stop.is_set():
            listing = self.cluster.core.list_namespaced_secret("kube-system")
            self._ready.set()
            w = watch.Watch()
            for event in w.stream(self.cluster.core.list_namespaced_secret, "kube-system",
                                  resource_version=listing.metadata.resource_version, timeout_seconds=5):
                secret = event["object"]
                if secret.type == "bootstrap.kubernetes.io/token" and secret.data:
                    data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
                    data["_created"] = secret.metadata.creation_timestamp
                    with self._seen:
                        self.secrets[data["token-id"]] = data
                        self._seen.notify_all()
                if self._stop.is_set():
                    w.stop()
                    return

    def values(self) -> list[str]:
        return [d["token-secret"] for d in self.secrets.values()]

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Until the watch has delivered `count` tokens (a run's tokens may be deleted before
        their creation event reaches the spy: the watch still delivers it)."""
        with self._seen:
            if not self._seen.wait_for(lambda: len(self.secrets) >= count, timeout):
                raise AssertionError(f"the token spy saw {len(self.secrets)} tokens, {count} expected")


def netns_processes(netns: str) -> list[tuple[int, str, str]]:
    """(pid, comm, cmdline) of every process in a lab host's network namespace."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    procs = []
    for pid in out:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        procs.append((int(pid), comm, cmdline))
    return procs


def wait_for_process(netns: str, needle: str, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, _comm, cmdline in netns_processes(netns):
            if needle in cmdline:
                return pid
        time.sleep(0.02)
    raise AssertionError(f"no process matching {needle!r} in {netns} within {timeout}s")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 2.0) -> T:
    """Poll probe until it returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")
