"""Error paths an operator hits first (issue 14): one line naming the file, host or URL,
the right exit code, never a traceback."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from loopback import closed_port, kubeconfig_for
from nodeboot.cli import main


def run_cli(argv: list[str], monkeypatch, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["nodeboot", *argv])
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as ended:
        main()
    return int(ended.value.code or 0), out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


# -- 7: malformed kubeconfig, unwritable --log-dir ------------------------------------------
@pytest.mark.parametrize("text", [
    "apiVersion: v1\nclusters: [\n  - a: b\n",  # not YAML
    "apiVersion: v1\nclusters: 5\n",  # YAML, not a kubeconfig
    "- a\n- b\n",
    "\tkind: Config\n",
])
def test_malformed_kubeconfig_is_a_usage_error_naming_the_file(monkeypatch, tmp_path, text):
    path = tmp_path / "admin.conf"
    path.write_text(text)
    code, _, err = run_cli(["join", "h1", "--kubeconfig", str(path), "--log-dir", str(tmp_path / "logs")],
                           monkeypatch)
    line = one_line(err)
    assert code == 2, err
    assert f"kubeconfig {path}" in line


def test_unwritable_log_dir_is_a_usage_error_naming_it(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    log_dir = blocker / "logs"  # below a regular file: no directory can be made there
    code, _, err = run_cli(["join", "h1", "--kubeconfig", str(kubeconfig_for(tmp_path, "https://127.0.0.1:1")),
                            "--log-dir", str(log_dir)], monkeypatch)
    line = one_line(err)
    assert code == 2, err
    assert str(log_dir) in line


# -- 13: one private directory per run, and only the newest runs kept -----------------------
def settings_for(log_dir: Path, keep_runs: int | None = None):
    from nodeboot import app

    return app.RunSettings(log_dir=str(log_dir), output="quiet", keep_runs=keep_runs)


def test_runs_in_the_same_second_get_their_own_private_directories(monkeypatch, tmp_path):
    from nodeboot import app, runlog
    from nodeboot.redact import Redactor

    monkeypatch.setattr(runlog.time, "strftime", lambda fmt: "20260101-120000")  # both runs: the same second
    first_run = settings_for(tmp_path)
    first = app.make_output(first_run, Redactor())
    second = app.make_output(settings_for(tmp_path), Redactor())
    assert first.log_dir != second.log_dir
    # A run's later stages (proxy set-mode: prerequisites, rollout, cleanup) keep to its directory.
    assert app.make_output(first_run, Redactor()).log_dir == first.log_dir
    for output in (first, second):
        output.begin(["h1"], "test")
        output.event("transcript", "h1", script="facts.sh", stdout="out", stderr="", exit=0)
        output.end()
        assert output.log_dir.stat().st_mode & 0o777 == 0o700
        assert (output.log_dir / "hosts").stat().st_mode & 0o777 == 0o700
        for name in ("run.log", "hosts/h1.log"):
            assert (output.log_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert '"title": "test"' in (first.log_dir / "run.log").read_text()


def test_only_the_newest_runs_are_kept(monkeypatch, tmp_path):
    from nodeboot import app, runlog
    from nodeboot.redact import Redactor

    stamps = iter(f"20260101-1200{second:02d}" for second in range(10))
    monkeypatch.setattr(runlog.time, "strftime", lambda fmt: next(stamps))
    (tmp_path / "notes").mkdir()  # not a run directory: never touched
    made = [app.make_output(settings_for(tmp_path, keep_runs=3), Redactor()).log_dir for _ in range(5)]
    assert sorted(p for p in tmp_path.iterdir() if p.name != "notes") == made[-3:]
    monkeypatch.setenv(runlog.KEEP_RUNS_ENV, "1")
    newest = app.make_output(settings_for(tmp_path), Redactor()).log_dir
    assert set(tmp_path.iterdir()) == {tmp_path / "notes", newest}


def test_bad_keep_runs_variable_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NODEBOOT_KEEP_RUNS", "lots")
    code, _, err = run_cli(["join", "h1", "--kubeconfig", str(kubeconfig_for(tmp_path, "https://127.0.0.1:1")),
                            "--log-dir", str(tmp_path / "logs")], monkeypatch)
    assert code == 2 and "NODEBOOT_KEEP_RUNS" in one_line(err)


# -- 9: an API server that refuses connections ----------------------------------------------
def test_refused_api_server_is_one_short_line(monkeypatch, tmp_path):
    server = f"https://127.0.0.1:{closed_port()}"
    # The host is asked while the cluster is read: a closed loopback port, so nothing leaves the machine.
    code, _, err = run_cli(["join", f"127.0.0.1:{closed_port()}", "--kubeconfig", str(kubeconfig_for(tmp_path, server)),
                            "--log-dir", str(tmp_path / "logs")], monkeypatch)
    line = one_line(err)
    assert code == 1, err
    assert line == f"nodeboot: API server {server}: unreachable: connection refused"


def test_describe_gives_urllib3_failures_in_a_few_words():
    import urllib3

    from nodeboot.cluster.retry import describe

    pool = urllib3.HTTPSConnectionPool("127.0.0.1", closed_port(), retries=urllib3.Retry(0))
    with pytest.raises(urllib3.exceptions.MaxRetryError) as refused:
        pool.request("GET", "/version")
    assert describe(refused.value) == f"API server 127.0.0.1:{pool.port} unreachable: connection refused"


# -- 12: exit codes: a bug is 3, a missing password is a usage error everywhere --------------
def test_internal_error_has_its_own_exit_code(monkeypatch, tmp_path):
    from nodeboot import app

    def bug(*args, **kwargs):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(app, "select_hosts", bug)
    monkeypatch.delenv("NODEBOOT_DEBUG", raising=False)
    code, _, err = run_cli(["reset", "h1", "--yes", "--kubeconfig", str(tmp_path / "none")], monkeypatch)
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1 and "internal error: RuntimeError: a bug over two lines" in err


@pytest.mark.parametrize("argv", [
    ["join", "--os", "windows", "--password-env", "D1_UNSET_PASSWORD", "w1.example"],
    ["reset", "--yes", "--os", "windows", "--password-env", "D1_UNSET_PASSWORD", "w1.example"],
    ["gmsa", "generate", "--host", "w1.example", "--account", "WebApp", "--password-env", "D1_UNSET_PASSWORD"],
])
def test_missing_password_variable_is_a_usage_error_in_every_command(monkeypatch, tmp_path, argv):
    monkeypatch.delenv("D1_UNSET_PASSWORD", raising=False)
    # A cluster that refuses connections: asking it first would end in exit 1, not 2.
    kubeconfig = kubeconfig_for(tmp_path, f"https://127.0.0.1:{closed_port()}")
    code, _, err = run_cli(argv, monkeypatch, {"KUBECONFIG": str(kubeconfig)})
    line = one_line(err)
    assert code == 2, err
    assert "host w1.example: environment variable D1_UNSET_PASSWORD (its password) is not set" in line


@pytest.mark.parametrize("argv", [
    ["join", "--os", "windows", "w1.example"],
    ["gmsa", "generate", "--host", "w1.example", "--account", "WebApp"],
])
def test_windows_host_without_any_password_is_a_usage_error(monkeypatch, tmp_path, argv):
    monkeypatch.delenv("NODEBOOT_WINRM_PASSWORD", raising=False)
    kubeconfig = kubeconfig_for(tmp_path, f"https://127.0.0.1:{closed_port()}")
    code, _, err = run_cli(argv, monkeypatch, {"KUBECONFIG": str(kubeconfig)})
    assert code == 2, err
    assert "host w1.example: no WinRM password: set NODEBOOT_WINRM_PASSWORD" in one_line(err)


# -- 10: --skip-phases names phases that exist ----------------------------------------------
@pytest.mark.parametrize("engine", ["nodeboot", "ansible"])
def test_unknown_skip_phase_is_refused_listing_the_workflow(monkeypatch, tmp_path, engine):
    kubeconfig = kubeconfig_for(tmp_path, f"https://127.0.0.1:{closed_port()}")
    code, _, err = run_cli(["join", "h1", "--skip-phases", "preflight,preflite", "--engine", engine,
                            "--kubeconfig", str(kubeconfig)], monkeypatch)
    line = one_line(err)
    assert code == 2, err
    assert "no phase preflite in join" in line
    for phase in ("facts", "preflight", "kubeadm-join", "wait-ready", "delete-token"):
        assert phase in line.split("its phases are:")[1]


def test_skip_phases_of_the_other_os_are_known_when_its_hosts_are_there(monkeypatch, tmp_path):
    kubeconfig = kubeconfig_for(tmp_path, f"https://127.0.0.1:{closed_port()}")
    code, _, err = run_cli(["reset", "--yes", "h1", "--skip-phases", "windows-reset", "--kubeconfig", str(kubeconfig)],
                           monkeypatch)
    assert code == 2 and "no phase windows-reset in reset" in one_line(err)
    monkeypatch.setenv("D1_PASSWORD", "x")
    code, _, err = run_cli(["reset", "--yes", "--os", "windows", "--password-env", "D1_PASSWORD", "w1",
                            "--skip-phases", "windows-reset", "--kubeconfig", str(kubeconfig)], monkeypatch)
    assert code == 1 and "unreachable: connection refused" in one_line(err)  # accepted: it got to the cluster


def test_server_that_is_not_kubernetes_is_one_line(monkeypatch, tmp_path):
    """Something answers on the API server's port, but its /version is no Kubernetes version."""
    import http.server
    import threading

    class NotKubernetes(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b'{"major": "1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotKubernetes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run_cli(["join", f"127.0.0.1:{closed_port()}", "--kubeconfig",
                                str(kubeconfig_for(tmp_path, url)), "--log-dir", str(tmp_path / "logs")], monkeypatch)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert code == 1, err
    assert one_line(err) == f"nodeboot: API server {url}: /version is not a Kubernetes version (ValidationError)"


def test_ctrl_c_that_stops_a_run_exits_130(monkeypatch, tmp_path):
    """A second Ctrl-C raises KeyboardInterrupt in the run; click turns it into Abort."""
    from nodeboot import app

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(app, "select_hosts", pressed)
    code, _, err = run_cli(["reset", "h1", "--yes", "--kubeconfig", str(tmp_path / "none")], monkeypatch)
    assert (code, err.strip()) == (130, "nodeboot: interrupted")
