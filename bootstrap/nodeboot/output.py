"""What a run shows and writes: live progress, a summary, JSON events, a log.

Every line passes through the run's Redactor before it is written anywhere.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from nodeboot import runlog
from nodeboot.redact import Redactor

STATUS_STYLE = {
    "changed": "yellow", "ok": "green", "failed": "bold red", "skipped": "dim", "would-run": "cyan",
    "not-run": "dim", "start": "blue", "done": "green", "interrupted": "magenta",
}


@dataclass
class HostView:
    phase: str = "waiting"
    status: str = "pending"
    detail: str = ""
    changed: bool = False
    started: float = 0.0
    finished: float = 0.0


@dataclass
class Output:
    redactor: Redactor
    mode: str = "human"  # human | json | quiet (events to the run log only; messages to stderr)
    log_dir: Path | None = None
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        self.hosts: dict[str, HostView] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._log = None
        self.first_failure_at: float | None = None
        self.started = time.monotonic()
        if self.log_dir is not None:
            (self.log_dir / "hosts").mkdir(parents=True, exist_ok=True, mode=runlog.DIR_MODE)
            self._log = runlog.open_private(self.log_dir / "run.log")
        self.console = Console(file=self.err if self.mode == "json" else self.stream, highlight=False)

    # -- lifecycle ----------------------------------------------------------
    def begin(self, host_names: list[str], title: str) -> None:
        for name in host_names:
            self.hosts[name] = HostView()
        self._write_log(f"begin {title}: {len(host_names)} hosts")
        if self.mode == "human" and self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8, transient=True)
            self._live.start()
        elif self.mode == "human":
            self.console.print(f"{title}: {len(host_names)} host(s)")

    def end(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- events -------------------------------------------------------------
    def event(self, kind: str, host: str | None = None, **fields: Any) -> None:
        if kind == "transcript" and self.log_dir is None:
            return  # transcripts go to the run's log only
        clean = {k: self.redactor.redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        if kind == "transcript":
            self._transcript(host or "-", clean)
            return
        record = {"ts": round(time.time(), 3), "event": kind, **({"host": host} if host else {}), **clean}
        if self._log is not None:
            self._write_log(json.dumps(record))
        with self._lock:
            view = self.hosts.get(host or "")
            if view is not None and kind == "phase":
                view.phase, view.status, view.detail = clean.get("phase", ""), clean.get("status", ""), clean.get(
                    "detail", "")
                view.changed = view.changed or view.status == "changed"
                if view.status == "failed" and self.first_failure_at is None:
                    self.first_failure_at = time.monotonic()
        if self.mode == "json":
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
        elif self._live is not None:
            self._live.update(self._table())
        elif self.mode == "human" and kind in ("phase", "warning", "host") and clean.get("status") != "start":
            self._plain(kind, host, clean)

    def _plain(self, kind: str, host: str | None, data: dict[str, Any]) -> None:
        # Not a terminal (a terminal gets the live table): plain lines, written as they are.
        status = data.get("status", kind)
        detail = data.get("detail", "")
        line = f"{host or '':<20} {data.get('phase', ''):<14} {status}" + (f"  {detail}" if detail else "")
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("host")
        table.add_column("phase")
        table.add_column("status")
        table.add_column("detail", overflow="ellipsis", max_width=80)
        for name, view in self.hosts.items():
            style = STATUS_STYLE.get(view.status, "")
            table.add_row(escape(name), escape(view.phase), f"[{style}]{view.status}[/]", escape(view.detail))
        return table

    def _transcript(self, host: str, data: dict[str, Any]) -> None:
        assert self.log_dir is not None
        path = self.log_dir / "hosts" / f"{host}.log"
        with self._lock, runlog.open_private(path) as fh:
            fh.write(f"--- {time.strftime('%H:%M:%S')} {data.get('script')} exit {data.get('exit')}\n")
            fh.write(f"[stdout]\n{data.get('stdout', '')}\n[stderr]\n{data.get('stderr', '')}\n")

    def _write_log(self, line: str) -> None:
        if self._log is not None:
            with self._lock:
                self._log.write(self.redactor.redact(line) + "\n")
                self._log.flush()

    def message(self, text: str, style: str = "") -> None:
        text = self.redactor.redact(text)
        self._write_log(text)
        if self.mode in ("json", "quiet"):
            self.err.write(text + "\n")
        else:
            self.console.print(f"[{style}]{escape(text)}[/]" if style else text, markup=bool(style), soft_wrap=True)

    def summary(self, rows: list[dict[str, Any]], totals: dict[str, Any]) -> None:
        rows = [{k: self.redactor.redact(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows]
        record = {"ts": round(time.time(), 3), "event": "summary", "hosts": rows, **totals}
        self._write_log(json.dumps(record))
        if self.mode == "json":
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
            return
        if self.mode == "quiet":
            return
        table = Table(title="summary", box=None, header_style="bold")
        for col in ("host", "node", "result", "changed", "phase", "detail"):
            table.add_column(col, overflow="fold")
        for r in rows:
            style = {"ok": "green", "changed": "yellow", "failed": "bold red"}.get(r["result"], "magenta")
            # Host names and details come from inventories and hosts: text, never markup.
            table.add_row(escape(r["host"]), escape(r.get("node", "")), f"[{style}]{r['result']}[/]",
                          "yes" if r.get("changed") else "", escape(r.get("phase", "")), escape(r.get("detail", "")))
        self.console.print(table)
        self.console.print(
            f"{totals['ok']} ok, {totals['failed']} failed, {totals.get('interrupted', 0)} interrupted "
            f"in {totals['seconds']:.1f}s" + (f"; log: {self.log_dir}" if self.log_dir else "")
        )
