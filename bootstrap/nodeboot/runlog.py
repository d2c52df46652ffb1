"""Where a run's log and host transcripts go: one private directory per run.

Transcripts name hosts, commands and their output, so a run's directory is
0700 and its files 0600. Each run gets its own directory, even when two start
in the same second (a random suffix, created with mkdir, which fails rather
than share), and only the newest runs are kept.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from pathlib import Path

from nodeboot.errors import UsageError

KEEP_RUNS_ENV = "NODEBOOT_KEEP_RUNS"
DEFAULT_KEEP_RUNS = 50
DIR_MODE = 0o700
FILE_MODE = 0o600
# This version's run ids, and the bare timestamps earlier versions used (pruned alike).
RUN_DIR_NAME = re.compile(r"^\d{8}-\d{6}(-[0-9a-f]{6})?$")


def default_base() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "nodeboot" / "runs"


def keep_runs(flag: int | None) -> int:
    """How many runs to keep: --keep-runs, else $NODEBOOT_KEEP_RUNS, else 50; 0 keeps all."""
    if flag is not None:
        return flag
    text = os.environ.get(KEEP_RUNS_ENV, "").strip()
    if not text:
        return DEFAULT_KEEP_RUNS
    if not text.isdigit():
        raise UsageError(f"{KEEP_RUNS_ENV}={text!r}: expected a whole number of runs to keep (0 keeps all)")
    return int(text)


def new_run_dir(base: Path) -> Path:
    """A fresh 0700 directory for this run under base (made, with base, if missing)."""
    try:
        if not base.is_dir():
            base.mkdir(parents=True, mode=DIR_MODE)
        for _ in range(8):
            path = base / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            try:
                path.mkdir(mode=DIR_MODE)  # fails if another run took the name: never shared
            except FileExistsError:
                continue
            os.chmod(path, DIR_MODE)  # exactly 0700, whatever the umask
            return path
    except FileExistsError:
        raise UsageError(f"log directory {base}: exists and is not a directory") from None
    except OSError as exc:
        raise UsageError(f"log directory {base}: cannot create a run directory: {exc.strerror or exc}") from None
    raise UsageError(f"log directory {base}: no free run directory name")


def prune(base: Path, keep: int, current: Path) -> list[Path]:
    """Delete the oldest run directories beyond the newest `keep` (never the current one)."""
    if keep <= 0:
        return []
    try:
        runs = sorted(p for p in base.iterdir() if RUN_DIR_NAME.match(p.name) and p.is_dir() and p != current)
    except OSError:
        return []
    doomed = runs[:max(0, len(runs) - (keep - 1))]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)  # a run pruning at the same time may have got there first
    return doomed


def open_private(path: Path):
    """Open path for appending, created 0600."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE), "a")
