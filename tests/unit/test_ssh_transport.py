"""SSHTransport's host side without a server: the framed shell loop run by a local
bash exactly as sshd would start it (framed_shell.py), put_file's script through
it, and the known_hosts check with its parse-once cache."""

from __future__ import annotations

import fcntl
import hashlib
import os
import resource
import select
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import paramiko
import pytest

from localshell import LocalShell, run_loop
from nodeboot.transport import ScriptCall
from nodeboot.transport.framed_shell import NOT_RUN, ShellFrames
from nodeboot.transport.ssh import SSHOptions, SSHTransport, coalesce


def test_loop_runs_each_frame_as_its_own_process_and_keeps_in_step() -> None:
    frames = ShellFrames()
    big = "echo start\nexit 4\n" + "# padding that the early exit never reads\n" * 3000  # > a pipe buffer
    scripts = [
        "echo one; echo err-one >&2; secret=abc; echo $BASHPID",
        big,
        "printf 'no newline at the end'",
        "echo \"${secret:-unset}\"; echo $BASHPID; cat; echo after",  # stdin: nothing, not the next frame
        "echo $'caf\\xc3\\xa9 \\xe2\\x9c\\x93'",  # multi-byte text: the frame counts bytes
    ]
    # A line that is not a header (a sudo password sudo did not ask for) is dropped, never run.
    stdin = b"hunter2; touch /tmp/nodeboot-loop-pwned\n" + b"".join(frames.frame(x.encode()) for x in scripts)
    results = run_loop(frames, stdin)
    assert [r.exit_status for r in results] == [0, 4, 0, 0, 0]
    first_pid = results[0].stdout.split()[-1]
    assert results[0].stdout.startswith(b"one\n") and results[0].stderr == b"err-one\n"
    assert results[1].stdout == b"start\n"  # output is exact: no newline added or lost
    assert results[2].stdout == b"no newline at the end"
    out = results[3].stdout.split(b"\n")
    assert out[0] == b"unset" and out[1] != first_pid  # no state carried from one script to the next
    assert out[2:] == [b"after", b""]  # cat found nothing to read: not the script, not the next frame
    assert results[4].stdout == "café ✓\n".encode()
    assert not Path("/tmp/nodeboot-loop-pwned").exists()


def test_loop_payload_reaches_the_script_and_is_removed() -> None:
    frames = ShellFrames()
    payload = os.urandom(200_000) + b"\n$(touch /tmp/nodeboot-payload-pwned)\n"
    script = b'sha256sum "$NB_PAYLOAD" | cut -d" " -f1; stat -c %a "$NB_PAYLOAD"; echo "$NB_PAYLOAD"'
    first, second = run_loop(frames, frames.frame(script, payload) + frames.frame(b'echo "[$NB_PAYLOAD]"'))
    digest, mode, path = first.stdout.decode().split()
    assert first.exit_status == 0 and digest == hashlib.sha256(payload).hexdigest() and mode == "600"
    assert second.exit_status == 0 and second.stdout == b"[]\n"  # a frame without a payload is told so
    assert not Path(path).parent.exists()  # the loop's private directory goes with it
    assert not Path("/tmp/nodeboot-payload-pwned").exists()


def test_loop_leaves_nothing_of_its_own_to_a_script() -> None:
    # A script runs in a subshell of the loop: the loop's variables are not its to read, its
    # EXIT trap and its exit end only itself, and the loop (payload directory and all) goes on.
    frames = ShellFrames()
    seen = b'for v in D h n m after last p; do printf "%s=%s " "$v" "${!v-unset}"; done; echo "$0"'
    trapped = b"trap 'echo trap-ran' EXIT; f() { exit 6; }; f; echo not-reached"
    payload = b"second payload\n"
    first, second, third = run_loop(frames, frames.frame(seen) + frames.frame(trapped)
                                    + frames.frame(b'cat "$NB_PAYLOAD"; umask', payload))
    assert first.stdout.decode().split() == [f"{v}=unset" for v in ("D", "h", "n", "m", "after", "last", "p")] \
        + ["nodeboot"]
    assert (second.exit_status, second.stdout) == (6, b"trap-ran\n")
    assert third.exit_status == 0 and third.stdout == payload + b"0077\n"


def test_frame_result_waits_for_both_streams() -> None:
    frames = ShellFrames("MARK")
    assert frames.take(bytearray(b"x\nMARK 3\n"), bytearray()) is None
    assert frames.take(bytearray(b"x\nMARK"), bytearray(b"\nMARK\n")) is None
    out, err = bytearray(b"x\nMARK 3\nnext\nMARK skip\n"), bytearray(b"e\nMARK\n\nMARK\n")
    first, second = frames.take(out, err), frames.take(out, err)
    assert first is not None and (first.exit_status, first.stdout, first.stderr) == (3, b"x", b"e")
    assert second is not None and (second.exit_status, second.stdout) == (NOT_RUN, b"next")
    assert not out and not err


def test_frame_result_skips_marker_look_alikes() -> None:
    # The marker followed by something that is not a status is a script's own output.
    frames = ShellFrames("MARK")
    out, err = bytearray(b"a\nMARK x\nb\nMARK 12x\nc\nMARK 0\nrest"), bytearray(b"\nMARK\n")
    result = frames.take(out, err)
    assert result is not None and result.exit_status == 0
    assert result.stdout == b"a\nMARK x\nb\nMARK 12x\nc" and out == b"rest"
    assert frames.take(bytearray(b"\nMARK 7"), bytearray(b"\nMARK\n")) is None  # its line not complete yet


def test_coalesce_keeps_a_large_payload_out_of_the_joined_buffers() -> None:
    payload = os.urandom(1 << 17)
    parts = [p for i, (s, pl) in enumerate([(b"one", b""), (b"two", payload), (b"three", b"")])
             for p in ShellFrames.frame_parts(s, pl, i > 0)]
    chunks = coalesce(parts)
    assert b"".join(chunks) == b"".join(parts)
    assert len(chunks) == 3 and chunks[1] is payload  # sent as it is, not copied


def test_batch_stops_on_the_host_at_the_first_failure(tmp_path: Path) -> None:
    t = LocalShell()
    calls = [ScriptCall(f"echo {i} >> {tmp_path}/ran; exit {status}") for i, status in enumerate((0, 0, 3, 0))]
    results = t.run_batch(calls)
    assert [r.exit_status if r else None for r in results] == [0, 0, 3, None]
    assert (tmp_path / "ran").read_text().split() == ["0", "1", "2"]  # the fourth was sent, never run
    assert t.stats.execs == 1  # one round trip for the four
    # Secrets in a batch travel as shell variables ahead of each script, never in argv.
    # The script's own process and the loop's ($$): neither argv holds it.
    (result,) = t.run_batch([ScriptCall('echo "${#TOKEN} $(tr "\\0" " " < /proc/$BASHPID/cmdline) '
                                        '$(tr "\\0" " " < /proc/$$/cmdline)"', {},
                                        {"TOKEN": "abcdef.0123456789abcdef"})])
    assert result is not None and result.stdout.startswith("23 ") and "abcdef" not in result.stdout


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


def test_put_file_of_nothing_and_to_a_relative_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    t = LocalShell()
    assert t.put_file(b"", "empty") is True and (tmp_path / "empty").read_bytes() == b""
    assert t.put_file(b"", "empty") is False
    assert t.put_file(b"x", "new/dir/f") is True and (tmp_path / "new" / "dir" / "f").read_bytes() == b"x"
    assert t.put_file(b"", "new/other/e") is True and (tmp_path / "new" / "other" / "e").read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]  # no temporary file left
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["dir", "other"]


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


class _PipeChannel:
    """Stands in for a paramiko Channel in _pump: a pipe as its fileno, stdout from a list."""

    def __init__(self, fd: int, chunks: list[bytes]) -> None:
        self.fd, self.chunks, self.eof_received = fd, chunks, False

    def fileno(self) -> int:
        return self.fd

    def recv_ready(self) -> bool:
        ready = select.poll()
        ready.register(self.fd, select.POLLIN)
        if not ready.poll(0):
            return False
        os.read(self.fd, 1)
        return True

    def recv(self, _n: int) -> bytes:
        return self.chunks.pop(0)

    def recv_stderr_ready(self) -> bool:
        return False


def test_pump_waits_on_a_descriptor_past_1023() -> None:
    # A thousand hosts hold more than 1024 descriptors; select() refused the rest
    # ("filedescriptor out of range in select()"), failing those hosts.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"the hard open-file limit ({hard}) is below 1100")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    held: list[int] = []
    writer: threading.Timer | None = None
    try:
        read_end, write_end = os.pipe()
        high = fcntl.fcntl(read_end, fcntl.F_DUPFD, 1050)
        held += [read_end, write_end, high]
        channel = _PipeChannel(high, [b"done"])
        t = SSHTransport("local", SSHOptions())
        t._transport = cast(paramiko.Transport, SimpleNamespace(is_active=lambda: True))
        writer = threading.Timer(0.2, os.write, (write_end, b"x"))  # data arrives while _pump waits
        writer.start()
        out, _err = t._pump(cast(paramiko.Channel, channel), lambda o, _e: o == b"done", time.monotonic() + 10, 10)
        assert out == b"done"
    finally:
        if writer is not None:
            writer.cancel()
            writer.join()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
