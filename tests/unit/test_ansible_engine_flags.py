"""--engine ansible honours the same join/reset flags as nodeboot's own engine (issue 14, item 2)."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeboot import app
from nodeboot.ansible_engine import extra_vars, runner_env
from nodeboot.cli import main
from nodeboot.cli.plumbing import join_config
from nodeboot.errors import UsageError


def settings(**kw) -> app.RunSettings:
    s = app.RunSettings(fail_fast=kw.pop("fail_fast", False))
    s.connection.connect_timeout = kw.pop("connect_timeout", 10.0)
    s.options.step_timeout = kw.pop("step_timeout", 600.0)
    s.options.discovery_timeout = kw.pop("discovery_timeout", "5m0s")
    s.connection.winrm_ca = kw.pop("winrm_ca", None)
    s.connection.insecure_skip_tls_verify = kw.pop("insecure", False)
    s.connection.known_hosts = kw.pop("known_hosts", None)
    assert not kw
    return s


def test_fail_fast_and_timeouts_reach_ansible():
    env = runner_env(settings(fail_fast=True, connect_timeout=2.5, step_timeout=90))
    assert env["ANSIBLE_ANY_ERRORS_FATAL"] == "1"
    assert env["ANSIBLE_TIMEOUT"] == "3" and env["ANSIBLE_TASK_TIMEOUT"] == "90"
    assert "ANSIBLE_ANY_ERRORS_FATAL" not in runner_env(settings())


def test_discovery_timeout_and_winrm_tls_flags_reach_the_playbooks(tmp_path):
    sel = app.HostSelection(str(tmp_path / "inv.yml"), None, (), "linux", {})
    ev = extra_vars("join", sel, settings(discovery_timeout="45s", winrm_ca="ca.pem", insecure=True,
                                          known_hosts="kh"), "run")
    assert ev["nodeboot_discovery_timeout"] == "45s"
    assert ev["ansible_winrm_ca_trust_path"] == str(Path("ca.pem").resolve())
    assert ev["ansible_winrm_server_cert_validation"] == "ignore"
    assert ev["ansible_ssh_extra_args"] == f"-o UserKnownHostsFile={Path('kh').resolve()}"
    reset_ev = extra_vars("reset", sel, settings(winrm_ca="ca.pem"), "run")
    assert reset_ev["ansible_winrm_ca_trust_path"] == str(Path("ca.pem").resolve())


def test_no_ansible_playbook_is_one_line_exit_2_before_anything(tmp_path, monkeypatch):
    # A Python with no ansible-playbook beside it, and a PATH without one.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")  # never read: the check comes first
    monkeypatch.setattr(sys, "argv", ["nodeboot", "join", "--engine", "ansible", "10.0.0.1",
                                      "--log-dir", str(tmp_path / "logs")])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == 2
    assert err.getvalue().strip().splitlines() == [
        "nodeboot: --engine ansible: ansible-playbook is not on PATH (pip install 'nodeboot[ansible]')"]
    assert not (tmp_path / "logs").exists()


def test_join_config_create_checks_discovery_timeout():
    result = CliRunner().invoke(join_config, ["create", "--kubeadm-version", "v1.37.2",
                                              "--discovery-timeout", "soon"], input="{}")
    # main() turns a UsageError into exit 2; here the error itself is what the command raised.
    assert isinstance(result.exception, UsageError)
    assert str(result.exception).startswith("--discovery-timeout: 'soon' is not a duration")
