"""Test helpers around the lab: host reservation, inventories, running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodeboot.cluster.client import Cluster
from nodeboot.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[1]


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
        env["PYTHONPATH"] = str(ROOT / "bootstrap")
        env["KUBECONFIG"] = self.kubeconfig
        env[self.env["winrm_password_env"]] = self.winrm_password()
        env.pop("NODEBOOT_DEBUG", None)
        return env

    def nodeboot(self, *args: str, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nodeboot", *args], capture_output=True, text=True,
                              env=self.cli_env(), timeout=timeout, input=input, cwd=ROOT)

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
