"""nodeboot's SSH host side without sshd: the framed shell loop, or one host script, run by a
local bash.

The loop, the frames and the scripts are nodeboot's own; only the SSH channel
between them is left out (a pipe to a local bash instead), for unit tests.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any

from nodeboot.inventory import Host
from nodeboot.redact import Redactor
from nodeboot.scripts import ScriptResult, parse_result
from nodeboot.steps.base import HostContext, RunOptions
from nodeboot.transport.framed_shell import FrameResult, ShellFrames
from nodeboot.transport.ssh import SSHOptions, SSHTransport


def run_host_script(name: str, text: str, env: dict[str, str] | None = None, timeout: float = 60,
                    wrapper: Sequence[str] = ()) -> tuple[ScriptResult, subprocess.CompletedProcess[str]]:
    """A host script's whole text (inputs, common functions, script) on the stdin of a local
    `bash --noprofile --norc -s` (under `wrapper`, e.g. unshare): its parsed result, and the
    process for tests that read its stdout or stderr themselves."""
    proc = subprocess.run([*wrapper, "bash", "--noprofile", "--norc", "-s"], input=text, capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)
    return parse_result(name, proc.returncode, proc.stdout, proc.stderr), proc


def host_script_facts(name: str, text: str, env: dict[str, str] | None = None,
                      wrapper: Sequence[str] = ()) -> dict:
    """run_host_script for a script that must succeed: its facts."""
    result, proc = run_host_script(name, text, env, wrapper=wrapper)
    assert result.ok, result.error + proc.stderr
    return result.facts


def run_loop(frames: ShellFrames, stdin: bytes) -> list[FrameResult]:
    """Every frame's result, from one run of the loop over all of stdin."""
    # As sshd starts it: the login shell (a bash here) given the loop's command line.
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", frames.command()], input=stdin,
                          capture_output=True, timeout=30)
    out, err = bytearray(proc.stdout), bytearray(proc.stderr)
    results = []
    while (result := frames.take(out, err)) is not None:
        results.append(result)
    assert not out and not err, (out, err)  # nothing left over: every byte belonged to a frame
    return results


class LocalShell(SSHTransport):
    """SSHTransport whose frames go to the real loop in a local bash instead of over SSH."""

    def __init__(self) -> None:
        super().__init__("local", SSHOptions())

    def _run_frames(self, frames_out: list[tuple[bytes, bytes]], timeout: float | None) -> list[FrameResult]:
        self.stats.execs += 1
        frames = ShellFrames()
        return run_loop(frames, b"".join(frames.frame(s, p, i > 0) for i, (s, p) in enumerate(frames_out)))


def local_context(host: Host | None = None, options: RunOptions | None = None,
                  emit: Callable[..., None] = lambda kind, **fields: None, **more: Any) -> HostContext:
    """A host's context for phases run against a LocalShell, with no cluster, watcher or tokens
    (more: other HostContext fields, e.g. pending or host_facts)."""
    return HostContext(host=host or Host(name="h1", address="127.0.0.1"), transport=LocalShell(),
                       cluster=None, watcher=None, tokens=None,  # type: ignore[arg-type]
                       options=options or RunOptions(), redactor=Redactor(), cancelled=threading.Event(),
                       emit=emit, **more)
