"""Security on the lab: host keys, and no secret anywhere it must not be (issue 6)."""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import stat
import threading
from pathlib import Path

from labkit import TokenSpy, netns_processes, summary


def test_unknown_host_is_refused_unless_new_keys_are_accepted(lab, tmp_path):
    (host,) = lab.reserve(1)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    args = ["join", "--dry-run", "--ssh-key", lab.env["ssh_key"], "--known-hosts", str(empty), host["address"]]
    proc, events = lab.nodeboot_json(*args)
    assert proc.returncode == 1
    detail = summary(events)["hosts"][0]["detail"]
    assert "is not in" in detail and "SHA256:" in detail and "--accept-new-host-keys" in detail
    assert empty.read_text() == ""  # not asked: nothing recorded
    proc, events = lab.nodeboot_json(*args, "--accept-new-host-keys")
    assert proc.returncode == 0, proc.stderr
    # Asked: the host's own key is recorded (the one the lab's known_hosts holds for it)...
    recorded = {tuple(line.split()[1:3]) for line in empty.read_text().splitlines() if line.strip()}
    real = {tuple(line.split()[1:3]) for line in Path(lab.env["known_hosts"]).read_text().splitlines()
            if line.split() and host["address"] in line.split()[0].split(",")}
    assert recorded and recorded <= real, (recorded, real)
    # ...and trusted from then on, without the flag.
    proc, _ = lab.nodeboot_json(*args)
    assert proc.returncode == 0, proc.stderr


def test_changed_host_key_is_refused_with_both_fingerprints(lab, tmp_path):
    (host,) = lab.reserve(1)
    forged = tmp_path / "known_hosts"
    other_key = Path(lab.env["state_dir"]) / "ssh" / "id_ed25519.pub"  # any other ed25519 key
    kind, blob = other_key.read_text().split()[:2]
    forged.write_text(f"{host['address']} {kind} {blob}\n")
    for extra in ([], ["--accept-new-host-keys"]):  # accepting new keys never accepts a changed one
        proc, events = lab.nodeboot_json("join", "--dry-run", "--ssh-key", lab.env["ssh_key"], "--known-hosts",
                                         str(forged), *extra, host["address"])
        assert proc.returncode == 1
        detail = summary(events)["hosts"][0]["detail"]
        assert "CHANGED" in detail and detail.count("SHA256:") == 2, detail


class HostSampler:
    """Watches a host during a join: every command line on it, and the mode of the join
    config file while kubeadm, the file's reader, is running (kubeadm runs for seconds; the
    file is looked at only between seeing kubeadm alive and seeing it still alive after)."""

    def __init__(self, netns: str, work_dir: Path) -> None:
        self.netns = netns
        self.work_dir = work_dir  # the host's private /run/nodeboot, seen from outside
        self.cmdlines: set[str] = set()
        self.config_modes: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HostSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, _comm, cmdline in netns_processes(self.netns):
                self.cmdlines.add(cmdline)
                if "kubeadm join" in cmdline:
                    self._config_mode(pid)
            self._stop.wait(0.02)

    def _config_mode(self, kubeadm_pid: int) -> None:
        """The mode of every join.* file while this kubeadm process is alive: join.sh removes
        the file only after kubeadm exits, so a file seen then is the one kubeadm reads."""
        modes = set()
        for path in glob.glob(str(self.work_dir / "join.*")):
            if ".log." not in path:
                with contextlib.suppress(FileNotFoundError):
                    modes.add(stat.S_IMODE(os.stat(path).st_mode))
        if os.path.exists(f"/proc/{kubeadm_pid}"):
            self.config_modes |= modes


def test_no_secret_leaks_anywhere_during_a_join(lab, tmp_path):
    hosts = lab.reserve(2)
    inventory = lab.inventory(hosts, "secrets")
    log_dir = tmp_path / "logs"
    work_dir = Path(lab.env["state_dir"]) / "hosts" / hosts[0]["name"] / "fs" / "run" / "nodeboot"
    with TokenSpy(lab) as spy, HostSampler(hosts[0]["netns"], work_dir) as sampler:
        proc, events = lab.nodeboot_json("join", "-i", str(inventory), "--log-dir", str(log_dir))
        spy.wait_for(2)
    assert proc.returncode == 0, proc.stderr
    secrets = spy.values()
    assert len(secrets) == 2, spy.secrets
    assert any("kubeadm join" in c for c in sampler.cmdlines), "the sampler never saw the join"
    # 1. Remote argv: kubeadm got a config file, never the token.
    for secret in secrets:
        assert not [c for c in sampler.cmdlines if secret in c]
    # 2. The join config file was 0600 whenever it existed, and is gone now.
    assert sampler.config_modes <= {0o600}
    assert sampler.config_modes == {0o600}, "the sampler never saw the join config file"
    assert not glob.glob(str(work_dir / "join.*"))
    # 3. Output, JSON events, log files and per-host transcripts.
    logs = "".join(p.read_text() for p in log_dir.rglob("*") if p.is_file())
    assert "kubeadm join" in logs  # the transcripts really hold kubeadm's output
    for secret in secrets:
        assert secret not in proc.stdout and secret not in proc.stderr and secret not in logs
    # 4. Tokens: one per node, at most 15 minutes, deleted after use.
    for token in spy.secrets.values():
        expires = dt.datetime.strptime(token["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        assert expires - token["_created"] <= dt.timedelta(minutes=15, seconds=5)
        assert token["description"].startswith("nodeboot join of node ")
    assert summary(events)["tokens_left"] == []


def test_no_secret_in_a_failing_join_or_human_output(lab, tmp_path):
    (host,) = lab.reserve(1)
    inventory = lab.inventory([host], "secrets-fail")
    log_dir = tmp_path / "logs"
    with TokenSpy(lab) as spy:
        proc = lab.nodeboot("join", "-i", str(inventory), "--log-dir", str(log_dir), "--discovery-timeout", "6s",
                            "--api-server-endpoint", f"{lab.env['api_endpoint'].rsplit('.', 1)[0]}.250:6443")
        spy.wait_for(1)
    assert proc.returncode == 1
    (secret,) = spy.values()
    logs = "".join(p.read_text() for p in log_dir.rglob("*") if p.is_file())
    assert "kubeadm join failed" in proc.stdout + logs
    assert secret not in proc.stdout + proc.stderr + logs


def test_tls_verification_off_only_when_asked_and_with_a_warning(lab):
    # A run that really starts (the lab's cluster, a password) against a WinRM port nothing listens on.
    args = ("join", "--os", "windows", "--password-env", lab.env["winrm_password_env"], "127.0.0.1:1")
    proc = lab.nodeboot(*args, "--insecure-skip-tls-verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "warning: --insecure-skip-tls-verify" in proc.stdout + proc.stderr
    # Without the flag there is nothing to warn about: certificates are checked.
    plain = lab.nodeboot(*args)
    assert plain.returncode == 1
    assert "insecure" not in plain.stdout + plain.stderr
