"""SSHTransport's host side without a server: the framed shell loop run by a local
bash exactly as sshd would start it (framed_shell.py), put_file's script through
it, and the known_hosts check with its parse-once cache."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

from nodeboot.transport import ExecResult
from nodeboot.transport.framed_shell import ShellFrames
from nodeboot.transport.ssh import SSHOptions, SSHTransport


def run_loop(frames: ShellFrames, stdin: bytes) -> list[tuple[int, bytes, bytes]]:
    """Every frame's (status, stdout, stderr), from one run of the loop over all of stdin."""
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", frames.loop()], input=stdin,
                          capture_output=True, timeout=30)
    marker = re.escape(frames.marker.encode())
    outs = re.split(rb"\n" + marker + rb" (\d+)\n", proc.stdout)
    errs = proc.stderr.split(b"\n" + frames.marker.encode() + b"\n")
    results = [(int(outs[i + 1]), outs[i], errs[i // 2]) for i in range(0, len(outs) - 1, 2)]
    assert frames.result(proc.stdout, proc.stderr) is None or results, proc.stderr
    return results


class LocalShell(SSHTransport):
    """SSHTransport whose frames go to the real loop in a local bash instead of over SSH."""

    def __init__(self) -> None:
        super().__init__("local", SSHOptions())

    def _run_frame(self, script: bytes, payload: bytes, timeout: float | None) -> ExecResult:
        self.stats.execs += 1
        frames = ShellFrames()
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", frames.loop()],
                              input=frames.frame(script, payload), capture_output=True, timeout=30)
        result = frames.result(proc.stdout, proc.stderr)
        assert result is not None, proc.stderr
        return ExecResult(result.exit_status, result.stdout.decode(), result.stderr.decode())


def test_loop_runs_each_frame_as_its_own_process_and_keeps_in_step() -> None:
    frames = ShellFrames()
    big = "echo start\nexit 4\n" + "# padding that the early exit never reads\n" * 3000  # > a pipe buffer
    scripts = [
        "echo one; echo err-one >&2; secret=abc; echo $$",
        big,
        "printf 'no newline at the end'",
        "echo \"${secret:-unset}\"; echo $$; cat",  # stdin is the rest of this script, then EOF
        "echo $'caf\\xc3\\xa9 \\xe2\\x9c\\x93'",  # multi-byte text: the frame counts bytes
    ]
    # A line that is not a header (a sudo password sudo did not ask for) is dropped, never run.
    stdin = b"hunter2; touch /tmp/nodeboot-loop-pwned\n" + b"".join(frames.frame(x.encode()) for x in scripts)
    results = run_loop(frames, stdin)
    assert [r[0] for r in results] == [0, 4, 0, 0, 0]
    first_pid = results[0][1].split()[-1]
    assert results[0][1].startswith(b"one\n") and results[0][2] == b"err-one\n"
    assert results[1][1] == b"start\n"  # output is exact: no newline added or lost
    assert results[2][1] == b"no newline at the end"
    out = results[3][1].split(b"\n")
    assert out[0] == b"unset" and out[1] != first_pid  # no state carried from one script to the next
    assert results[4][1] == "café ✓\n".encode()
    assert not Path("/tmp/nodeboot-loop-pwned").exists()


def test_loop_payload_reaches_the_script_and_is_removed() -> None:
    frames = ShellFrames()
    payload = os.urandom(200_000) + b"\n$(touch /tmp/nodeboot-payload-pwned)\n"
    script = b'sha256sum "$NB_PAYLOAD" | cut -d" " -f1; stat -c %a "$NB_PAYLOAD"; echo "$NB_PAYLOAD"'
    ((status, out, _err), (status2, out2, _)) = run_loop(
        frames, frames.frame(script, payload) + frames.frame(b'test -e "$NB_PAYLOAD"; echo $?'))
    digest, mode, path = out.decode().split()
    assert status == 0 and digest == hashlib.sha256(payload).hexdigest() and mode == "600"
    assert status2 == 0 and out2 == b"1\n"  # the next frame has no payload left behind
    assert not Path(path).parent.exists()  # the loop's private directory goes with it
    assert not Path("/tmp/nodeboot-payload-pwned").exists()


def test_frame_result_waits_for_both_streams() -> None:
    frames = ShellFrames("MARK")
    assert frames.result(b"x\nMARK 3\n", b"") is None
    assert frames.result(b"x\nMARK", b"\nMARK\n") is None
    result = frames.result(b"x\nMARK 3\nlate output", b"e\nMARK\n")
    assert result is not None and (result.exit_status, result.stdout, result.stderr) == (3, b"x", b"e")


def test_put_file_writes_exact_bytes_then_skips(tmp_path: Path) -> None:
    # Binary data with newlines and shell syntax in it: none of it may be run as commands.
    data = os.urandom(300_000) + b"\n$(touch pwned)\n;rm -rf x\n"
    target = tmp_path / "sub" / "artifact.bin"
    t = LocalShell()
    assert t.put_file(data, str(target), 0o640) is True
    assert target.read_bytes() == data
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert t.put_file(data, str(target)) is False  # same sha256 on the host: unchanged
    assert t.put_file(data, str(target), remote_sha256=hashlib.sha256(data).hexdigest()) is False
    assert t.stats.execs == 2  # the known sha256 skipped the round trip


def test_put_file_replaces_different_content(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    assert LocalShell().put_file(b"new\n" * 1000, str(target)) is True
    assert target.read_bytes() == b"new\n" * 1000


def test_known_hosts_parsed_once_and_reread_when_the_file_changes(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import paramiko
    import pytest

    from nodeboot.errors import HostKeyError

    known = tmp_path / "known_hosts"
    key_a, key_b = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    t = SSHTransport("10.0.0.9", SSHOptions(known_hosts=str(known), accept_new_host_keys=True))
    t._check_host_key(SimpleNamespace(get_remote_server_key=lambda: key_a))  # accepted, appended
    assert f"10.0.0.9 {key_a.get_name()} " in known.read_text()
    first = SSHTransport._load_known_hosts(known)
    assert SSHTransport._load_known_hosts(known) is first  # unchanged file: not parsed again
    t._check_host_key(SimpleNamespace(get_remote_server_key=lambda: key_a))
    with pytest.raises(HostKeyError, match="CHANGED"):
        t._check_host_key(SimpleNamespace(get_remote_server_key=lambda: key_b))
    # The operator replaces the entry: the new file is read, the new key accepted, the old refused.
    known.write_text(f"10.0.0.9 {key_b.get_name()} {key_b.get_base64()}\n")
    t._check_host_key(SimpleNamespace(get_remote_server_key=lambda: key_b))
    with pytest.raises(HostKeyError, match="CHANGED"):
        t._check_host_key(SimpleNamespace(get_remote_server_key=lambda: key_a))
