"""One long-lived shell per host, fed one script after another.

An SSH exec costs three round trips (open a channel, start the command, send
stdin and wait for the exit status) and sshd starts a fresh session for it.
nodeboot opens one session per host instead, running the loop below, and
sends each script down it as a frame; a script then costs one round trip.

A frame is a header line `NB <script bytes> <payload bytes>`, then the
payload, then the script. The loop reads the script into memory with
`read -N` (it never touches disk, and nothing of it shows in argv), writes the
payload, if any, to a file in a private directory ($NB_PAYLOAD), and pipes the
script into a fresh `bash --noprofile --norc -s`: each script is its own
process with its own $$, as it was with one exec per script. When that bash
exits, the loop prints a marker line carrying the exit status on stdout and a
marker line on stderr, so the reader knows both streams are complete.

Lines that are not headers are skipped: when sudo needs no password, the
password line sent ahead of the loop is read by the loop and dropped, never run.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

# Runs as `bash --noprofile --norc -c LOOP`; {marker} is filled in per shell.
_LOOP = r"""umask 077
D=$(mktemp -d) || exit 97
trap 'rm -rf "$D"' EXIT
trap 'exit 141' PIPE HUP TERM
while IFS=' ' read -r h n m; do
  [[ $h == NB && $n =~ ^[0-9]+$ && $m =~ ^[0-9]+$ ]] || continue
  if (( m > 0 )); then head -c "$m" > "$D/payload" || exit 98; fi
  LC_ALL=C IFS= read -r -N "$n" s || exit 99
  printf '%s' "$s" | NB_PAYLOAD="$D/payload" bash --noprofile --norc -s
  c=$?
  unset s
  rm -f "$D/payload"
  printf '\n{marker} %d\n' "$c"
  printf '\n{marker}\n' >&2
done
"""


@dataclass
class FrameResult:
    exit_status: int
    stdout: bytes
    stderr: bytes


class ShellFrames:
    """The loop's command line, the frames sent to it, and the reading of its answers."""

    def __init__(self, marker: str | None = None) -> None:
        # Random per shell, so a script's own output cannot end a frame by accident.
        self.marker = marker or f"__nodeboot_{secrets.token_hex(12)}__"
        self._out_end = re.compile(rb"\n" + re.escape(self.marker.encode()) + rb" (\d+)\n")
        self._err_end = b"\n" + self.marker.encode() + b"\n"

    def loop(self) -> str:
        return _LOOP.replace("{marker}", self.marker)

    def command(self, sudo: bool = False) -> str:
        """The remote command line that starts the loop (the loop is not secret)."""
        quoted = "'" + self.loop().replace("'", "'\"'\"'") + "'"
        shell = f"bash --noprofile --norc -c {quoted}"
        # sudo -S reads the password as the first line of stdin; the loop gets the rest.
        return f"sudo -S -p '' {shell}" if sudo else shell

    @staticmethod
    def frame(script: bytes, payload: bytes = b"") -> bytes:
        return b"NB %d %d\n" % (len(script), len(payload)) + payload + script

    def result(self, out: bytes | bytearray, err: bytes | bytearray) -> FrameResult | None:
        """The frame's result once both streams carry their end marker, else None.

        Whatever follows a marker (output of a background process the script
        left behind) belongs to no frame and is dropped.
        """
        end = self._out_end.search(out)
        if end is None:
            return None
        err_at = err.find(self._err_end)
        if err_at < 0:
            return None
        return FrameResult(int(end.group(1)), bytes(out[: end.start()]), bytes(err[:err_at]))
