"""SSHTransport without a server: put_file's script run by a local bash exactly as
sshd would run it (the script and then the payload on stdin of `bash --noprofile
--norc -s`), and the known_hosts check with its parse-once cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from nodeboot.transport import ExecResult
from nodeboot.transport.ssh import SSHOptions, SSHTransport


class LocalBash(SSHTransport):
    def __init__(self) -> None:
        super().__init__("local", SSHOptions())

    def exec(self, command: str, stdin: bytes, timeout: float | None = None) -> ExecResult:
        self.stats.execs += 1
        proc = subprocess.run(command, shell=True, input=stdin, capture_output=True, timeout=30)
        return ExecResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_put_file_writes_exact_bytes_then_skips(tmp_path: Path) -> None:
    # Binary data with newlines and shell syntax in it: none of it may be run as commands.
    data = os.urandom(300_000) + b"\n$(touch pwned)\n;rm -rf x\n"
    target = tmp_path / "sub" / "artifact.bin"
    t = LocalBash()
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
    assert LocalBash().put_file(b"new\n" * 1000, str(target)) is True
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
