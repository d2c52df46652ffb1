"""One long-lived shell per host, fed one script after another.

An SSH exec costs three round trips (open a channel, start the command, send
stdin and wait for the exit status) and sshd starts a fresh session for it.
nodeboot opens one session per host instead, running the loop below, and
sends each script down it as a frame; a script then costs one round trip, and
a batch of scripts sent together costs one round trip for all of them.

A frame is a header line `NB <script bytes> <payload bytes> <after>`, then the
payload, then the script. The loop reads the script into memory with
`read -N` (it never touches disk, and nothing of it shows in argv), writes the
payload, if any, to a file in a private directory ($NB_PAYLOAD), and evals the
script in a subshell of its own: each script is its own process (its $BASHPID;
`$$` is the loop's), nothing it sets outlives it, and its stdin is /dev/null,
so no command can read the frames that follow. A subshell is a fork of a shell
that has already started: a fresh `bash -c` per script (exec, start-up, and a
pipe to carry the script) cost 2-3 ms more of a host's CPU for every script of
every run. The loop runs with --noprofile --norc and sets nothing a script
would notice but the umask. When the subshell exits, the loop prints a marker
line carrying the exit status on stdout and a marker line on stderr, so the
reader knows both streams are complete.

<after> = 1 makes a frame conditional: it runs only if the frame before it
exited 0, else it is read, not run, and its marker says `skip`. That is what
lets the phases of a batch stop on the host at the first failure, as they
would one round trip at a time.

Lines that are not headers are skipped: when sudo needs no password, the
password line sent ahead of the loop is read by the loop and dropped, never run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from nodeboot.scripts import sh_quote

# Runs as `bash --noprofile --norc -c LOOP nodeboot`; {marker} is filled in per shell.
# The payload directory is made on the first payload: most shells never carry one.
_LOOP = r"""umask 077
D=
last=0
trap '[[ -z $D ]] || rm -rf "$D"' EXIT
trap 'exit 141' PIPE HUP TERM
while IFS=' ' read -r h n m after; do
  [[ $h == NB && $n =~ ^[0-9]+$ && $m =~ ^[0-9]+$ ]] || continue
  p=
  if (( m > 0 )); then
    [[ -n $D ]] || D=$(mktemp -d) || exit 97
    p=$D/payload
    head -c "$m" > "$p" || exit 98
  fi
  LC_ALL=C IFS= read -r -N "$n" s || exit 99
  if [[ $after == 1 && $last != 0 ]]; then
    last=skip
  else
    ( unset D h n m after last; export NB_PAYLOAD=$p; unset p; eval "$s" ) </dev/null
    last=$?
  fi
  unset s
  [[ -z $p || ! -e $p ]] || rm -f "$p"  # a script may have moved it away
  printf '\n{marker} %s\n' "$last"
  printf '\n{marker}\n' >&2
done
"""

NOT_RUN = -1  # the exit status of a conditional frame the loop did not run


@dataclass
class FrameResult:
    exit_status: int  # NOT_RUN: skipped after an earlier frame failed
    stdout: bytes
    stderr: bytes


class ShellFrames:
    """The loop's command line, the frames sent to it, and the reading of its answers."""

    def __init__(self, marker: str | None = None) -> None:
        # Random per shell, so a script's own output cannot end a frame by accident.
        self.marker = marker or f"__nodeboot_{secrets.token_hex(12)}__"
        # Plain byte searches, not a regex: a marker is new for every shell, so a
        # pattern would be compiled once per host (re's cache cannot help).
        self._out_end = b"\n" + self.marker.encode() + b" "
        self._err_end = b"\n" + self.marker.encode() + b"\n"

    def loop(self) -> str:
        return _LOOP.replace("{marker}", self.marker)

    def command(self, sudo: bool = False) -> str:
        """The remote command line that starts the loop (the loop is not secret)."""
        # $0 "nodeboot": what bash's own messages (a script's syntax error) are prefixed with.
        shell = f"bash --noprofile --norc -c {sh_quote(self.loop())} nodeboot"
        # sudo -S reads the password as the first line of stdin; the loop gets the rest.
        return f"sudo -S -p '' {shell}" if sudo else shell

    @staticmethod
    def frame(script: bytes, payload: bytes = b"", after_success: bool = False) -> bytes:
        return b"".join(ShellFrames.frame_parts(script, payload, after_success))

    @staticmethod
    def frame_parts(script: bytes, payload: bytes = b"", after_success: bool = False) -> tuple[bytes, bytes, bytes]:
        """A frame as (header, payload, script), in sending order: a large payload can
        then go out as it is, without being copied into one buffer with the rest."""
        return b"NB %d %d %d\n" % (len(script), len(payload), after_success), payload, script

    def take(self, out: bytearray, err: bytearray) -> FrameResult | None:
        """Remove the first complete frame's output from out and err and return it,
        or None while either stream still lacks its end marker."""
        at = 0
        while True:  # the marker, then a status (digits or "skip"), then a newline
            at = out.find(self._out_end, at)
            if at < 0:
                return None
            first = at + len(self._out_end)
            nl = out.find(b"\n", first)
            if nl < 0:
                return None  # the status line is still on its way
            word = bytes(out[first:nl])
            if word == b"skip" or word.isdigit():
                break
            at += 1  # a marker look-alike in the script's own output (not followed by a status)
        err_at = err.find(self._err_end)
        if err_at < 0:
            return None
        status = NOT_RUN if word == b"skip" else int(word)
        result = FrameResult(status, bytes(out[:at]), bytes(err[:err_at]))
        del out[: nl + 1]
        del err[: err_at + len(self._err_end)]
        return result
