"""What a run shows and writes: live progress, a summary, JSON events, a log.

Every line passes through the run's Redactor before it is written anywhere.
The JSON events (`--output json`, and every line of run.log) follow
schemas/events.schema.json; docs/output.md describes them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from nodeboot import __version__, runlog
from nodeboot.redact import Redactor

# rich is imported where the terminal is written: a run with --output json or quiet never
# draws, and rich's import is about 40 ms of CPU on every start.
if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table


def escape(text: str) -> str:
    """Text made safe to print as rich markup (rich imported on first use)."""
    from rich.markup import escape as markup_escape

    return markup_escape(text)

STATUS_STYLE = {
    "changed": "yellow", "ok": "green", "failed": "bold red", "skipped": "dim", "would-run": "cyan",
    "not-run": "dim", "start": "blue", "done": "green", "interrupted": "magenta", "pending": "dim",
}
# The events' contract: a consumer checks `schema_version` in the first event. A new
# event kind or field keeps the version; a field removed or changed in meaning bumps it.
EVENTS_SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schemas" / "events.schema.json"
# Lines the live view keeps for itself (header, totals, a margin): a fleet taller than the
# terminal gets totals instead of a table whose top scrolls away.
LIVE_MARGIN = 4
# The live view redraws on events at most this often (the refresh thread redraws too).
LIVE_REDRAW_SECONDS = 0.1


def message_level(style: str) -> str:
    """A message's level in the events, from the style the terminal shows it in."""
    if "red" in style:
        return "error"
    if "yellow" in style or "magenta" in style:
        return "warning"
    return "info"


@dataclass
class HostView:
    phase: str = "waiting"
    status: str = "pending"
    detail: str = ""
    changed: bool = False
    started: float = 0.0
    finished: float = 0.0
    done: bool = False  # the host's final `host` event came


@dataclass
class Output:
    redactor: Redactor
    mode: str = "human"  # human | json | quiet (events to the run log only; messages to stderr)
    log_dir: Path | None = None
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    command: str = ""  # the command line, for the start event (default: this process's argv)
    run_id: str = ""  # default: the run directory's name, else pid and a random suffix

    def __post_init__(self) -> None:
        self.hosts: dict[str, HostView] = {}
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._log = None
        self._started_event = False
        self._redrawn = 0.0
        self.first_failure_at: float | None = None
        self.started = time.monotonic()
        if not self.run_id:
            self.run_id = self.log_dir.name if self.log_dir is not None else f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if not self.command:
            self.command = " ".join(["nodeboot", *sys.argv[1:]])
        if self.log_dir is not None:
            (self.log_dir / "hosts").mkdir(parents=True, exist_ok=True, mode=runlog.DIR_MODE)
            self._log = runlog.open_private(self.log_dir / "run.log")

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(file=self.err if self.mode == "json" else self.stream, highlight=False)

    # -- lifecycle ----------------------------------------------------------
    def begin(self, host_names: list[str], title: str) -> None:
        for name in host_names:
            self.hosts[name] = HostView()
        self._record({"event": "begin", "title": title, "hosts": len(host_names)})
        if self.mode == "human" and self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._view(), console=self.console, refresh_per_second=8, transient=True)
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
        self._record({"event": kind, **({"host": host} if host else {}), **clean})
        with self._lock:
            view = self.hosts.get(host or "")
            if view is not None and kind == "phase":
                view.phase, view.status, view.detail = clean.get("phase", ""), clean.get("status", ""), clean.get(
                    "detail", "")
                view.changed = view.changed or view.status == "changed"
                if view.status == "failed" and self.first_failure_at is None:
                    self.first_failure_at = time.monotonic()
            elif view is not None and kind == "progress":  # a long phase's note, in its detail column
                view.detail = clean.get("detail", "")
            elif view is not None and kind == "host":
                view.done, view.status = True, clean.get("status", "")
                view.phase, view.detail = clean.get("phase", "") or "done", clean.get("detail", "")
        if self.mode == "json":
            return
        if self._live is not None:
            if kind == "warning":  # printed above the live view, which keeps to itself
                self.console.print(f"[yellow]{escape(host or '')} warning: {escape(clean.get('detail', ''))}[/]")
            self._redraw()
        elif self.mode == "human" and kind in ("phase", "warning", "host") and clean.get("status") != "start":
            self._plain(kind, host, clean)

    def _redraw(self) -> None:
        # Redrawn on events too, not only by rich's refresh thread: a busy controller
        # (two cores, hundreds of hosts) must still show what changed.
        assert self._live is not None
        now = time.monotonic()
        refresh = now - self._redrawn >= LIVE_REDRAW_SECONDS
        if refresh:
            self._redrawn = now
        self._live.update(self._view(), refresh=refresh)

    def _plain(self, kind: str, host: str | None, data: dict[str, Any]) -> None:
        # Not a terminal (a terminal gets the live table): plain lines, written as they are.
        status = data.get("status", kind)
        detail = data.get("detail", "")
        # A host's last line is its result over all phases: the phase column says so
        # (a failed host's detail names the phase that failed).
        phase = "result" if kind == "host" else data.get("phase", "")
        line = f"{host or '':<20} {phase:<14} {status}" + (f"  {detail}" if detail else "")
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _view(self) -> Table | Group:
        """The live view: a row per host, or totals when the rows would not fit the terminal."""
        if len(self.hosts) + LIVE_MARGIN > self.console.size.height:
            return self._totals()
        return self._table()

    def totals(self) -> dict[str, int]:
        """How many hosts are done, failed, running and waiting."""
        with self._lock:
            views = list(self.hosts.values())
        failed = sum(1 for v in views if v.status == "failed")
        done = sum(1 for v in views if v.done and v.status != "failed")
        running = sum(1 for v in views if not v.done and v.status != "failed" and v.phase != "waiting")
        return {"hosts": len(views), "done": done, "failed": failed, "running": running,
                "waiting": len(views) - done - failed - running}

    def _totals(self) -> Group:
        from rich.console import Group

        counts = self.totals()
        line = (f"[bold]{counts['done'] + counts['failed']}/{counts['hosts']}[/] hosts finished: "
                f"[green]{counts['done']} done[/], [bold red]{counts['failed']} failed[/], "
                f"[blue]{counts['running']} running[/], {counts['waiting']} waiting")
        with self._lock:
            failed = [name for name, v in self.hosts.items() if v.status == "failed"]
        lines = [line]
        if failed:
            shown = ", ".join(failed[:10]) + (f" (+{len(failed) - 10} more)" if len(failed) > 10 else "")
            lines.append(f"[bold red]failed:[/] {escape(shown)}")
        return Group(*lines)

    def _table(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("host")
        table.add_column("phase")
        table.add_column("status")
        table.add_column("detail", overflow="ellipsis", max_width=80)
        for name, view in self.hosts.items():
            style = STATUS_STYLE.get(view.status, "")
            # Text, not markup: a status with no style ("pending") made "[]pending[/]", which
            # raised in rich's refresh thread and froze the live view until the run ended.
            table.add_row(Text(name), Text(view.phase), Text(view.status, style=style), Text(view.detail))
        return table

    def _transcript(self, host: str, data: dict[str, Any]) -> None:
        assert self.log_dir is not None
        path = self.log_dir / "hosts" / f"{host}.log"
        with self._lock, runlog.open_private(path) as fh:
            fh.write(f"--- {time.strftime('%H:%M:%S')} {data.get('script')} exit {data.get('exit')}\n")
            fh.write(f"[stdout]\n{data.get('stdout', '')}\n[stderr]\n{data.get('stderr', '')}\n")

    def _record(self, fields: dict[str, Any]) -> None:
        """One event to the run log and, with --output json, to stdout; the start event first."""
        with self._lock:
            if not self._started_event:
                self._started_event = True
                self._record({"event": "start", "schema_version": EVENTS_SCHEMA_VERSION, "run_id": self.run_id,
                              "version": __version__, "command": self.redactor.redact(self.command),
                              "log_dir": str(self.log_dir) if self.log_dir is not None else None})
            line = json.dumps({"ts": round(time.time(), 3), **fields})
            if self._log is not None:
                self._log.write(line + "\n")
                self._log.flush()
            if self.mode == "json":
                self.stream.write(line + "\n")
                self.stream.flush()

    def message(self, text: str, style: str = "") -> None:
        """A message to the operator: a `message` event in the log (and on stdout with
        --output json, where it is never stderr text); on the terminal otherwise."""
        text = self.redactor.redact(text)
        self._record({"event": "message", "level": message_level(style), "message": text})
        if self.mode == "json":
            return
        if self.mode == "quiet":
            self.err.write(text + "\n")
        else:
            self.console.print(f"[{style}]{escape(text)}[/]" if style else text, markup=bool(style), soft_wrap=True)

    def summary(self, rows: list[dict[str, Any]], totals: dict[str, Any]) -> None:
        rows = [{k: self.redactor.redact(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows]
        self._record({"event": "summary", "hosts": rows, **totals})
        if self.mode in ("json", "quiet"):
            return
        from rich.table import Table

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
