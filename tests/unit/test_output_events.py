"""The JSON event stream is a contract: every event of a run, on stdout with --output json and
in run.log, validates against the schema shipped in the package; the first event says which run,
which nodeboot, which command and where its log is; every host gets a `host` event, one that
could not be reached too; messages are events, not stderr text."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

import nodeboot
from nodeboot import output as output_mod
from nodeboot import runner
from nodeboot.errors import TransportError, UsageError
from nodeboot.inventory import Host
from nodeboot.output import Output
from nodeboot.redact import Redactor
from nodeboot.steps.base import HostContext, Phase, RunOptions
from nodeboot.transport import TransportStats
from nodeboot.transport.factory import ConnectionDefaults

SCHEMA = json.loads(output_mod.SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class StandIn:
    """A transport that reaches nothing: these tests are about what the run reports."""

    def __init__(self, refuse: bool) -> None:
        self.stats = TransportStats()
        self.refuse = refuse

    def connect(self) -> None:
        if self.refuse:
            raise TransportError("ssh 10.0.0.9:22: connection refused")

    def close(self) -> None:
        pass


class Quick(Phase):
    name, title = "facts", "gather facts"

    def run(self, ctx: HostContext) -> bool:
        ctx.emit("warning", detail="clock is 3s off")
        return True


def make_transport(host: Host, defaults: ConnectionDefaults, redactor: Redactor) -> StandIn:
    if host.name == "no-password":
        raise UsageError("host no-password: no way to log in")
    return StandIn(refuse=host.name == "refuses")


def run_fleet(monkeypatch, tmp_path: Path, mode: str = "json") -> tuple[Output, str, io.StringIO]:
    monkeypatch.setattr(runner, "make_transport", make_transport)
    stream, err = io.StringIO(), io.StringIO()
    log_dir = tmp_path / "20261202-070000-abcdef"
    redactor = Redactor()
    out = Output(redactor, mode=mode, log_dir=log_dir, stream=stream, err=err, command="nodeboot join -i inv.yml")
    out.message("IPVS is deprecated in 1.37", "yellow")
    fleet = runner.Fleet(None, RunOptions(), out, redactor, ConnectionDefaults(), parallel=3)
    hosts = [Host(name=n, address="127.0.0.1") for n in ("works", "refuses", "no-password")]
    report = fleet.run(hosts, lambda host: [Quick()], "nodeboot join")
    runner.summarise(out, report)
    return out, stream.getvalue(), err


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_every_event_on_stdout_and_in_the_run_log_follows_the_schema(monkeypatch, tmp_path) -> None:
    out, stdout, err = run_fleet(monkeypatch, tmp_path)
    log_lines = (out.log_dir / "run.log").read_text()
    for text in (stdout, log_lines):
        for event in events(text):  # run.log is JSON lines, every one of them
            VALIDATOR.validate(event)
    assert err.getvalue() == ""  # messages are events, not stderr text
    assert {e["event"] for e in events(stdout)} >= {"start", "begin", "phase", "warning", "host", "message",
                                                    "summary"}


def test_the_first_event_names_the_run_the_version_the_command_and_the_log(monkeypatch, tmp_path) -> None:
    out, stdout, _ = run_fleet(monkeypatch, tmp_path)
    first = events(stdout)[0]
    assert first["event"] == "start" and first["schema_version"] == output_mod.EVENTS_SCHEMA_VERSION
    assert first["run_id"] == "20261202-070000-abcdef" and first["version"] == nodeboot.__version__
    assert first["command"] == "nodeboot join -i inv.yml" and first["log_dir"] == str(out.log_dir)
    assert [e["event"] for e in events(stdout)].count("start") == 1


def test_every_host_gets_a_host_event_one_that_never_connected_too(monkeypatch, tmp_path) -> None:
    _, stdout, _ = run_fleet(monkeypatch, tmp_path)
    results = {e["host"]: (e["status"], e["phase"]) for e in events(stdout) if e["event"] == "host"}
    assert results == {"works": ("changed", ""), "refuses": ("failed", "connect"),
                       "no-password": ("failed", "connect")}
    message = next(e for e in events(stdout) if e["event"] == "message")
    assert message == {**message, "level": "warning", "message": "IPVS is deprecated in 1.37"}


def test_the_schema_refuses_what_breaks_the_contract() -> None:
    start = {"ts": 1.0, "event": "start", "schema_version": 1, "run_id": "r", "version": "1", "command": "c",
             "log_dir": None}
    VALIDATOR.validate(start)
    for broken in ({**start, "schema_version": 2}, {"ts": 1.0, "event": "host", "host": "h", "phase": "",
                                                    "detail": ""},
                   {"ts": 1.0, "event": "phase", "host": "h", "phase": "facts", "status": "finished"},
                   {"ts": 1.0, "event": "message", "level": "loud", "message": "x"}):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(broken)


def test_the_schema_ships_in_the_package() -> None:
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"schemas/*.json"' in text
    assert output_mod.SCHEMA_PATH.is_relative_to(Path(nodeboot.__file__).parent)


def test_plain_output_says_a_hosts_last_line_is_its_result(monkeypatch, tmp_path) -> None:
    _, stdout, _ = run_fleet(monkeypatch, tmp_path, mode="human")
    lines = stdout.splitlines()
    assert f"{'works':<20} {'result':<14} changed" in lines
    assert any(line.startswith(f"{'refuses':<20} {'result':<14} failed  ") for line in lines)
    assert f"{'works':<20} {'warning':<14} warning  clock is 3s off" not in lines  # says what it is
    assert any("clock is 3s off" in line for line in lines)


def test_a_fleet_taller_than_the_terminal_gets_totals_instead_of_rows() -> None:
    out = Output(Redactor(), mode="human", stream=io.StringIO())
    out.console = Console(file=io.StringIO(), width=100, height=10, force_terminal=False)
    names = [f"host-{i}" for i in range(30)]
    out.begin(names, "join")
    out.event("phase", "host-0", phase="facts", status="start")
    out.event("phase", "host-1", phase="facts", status="failed", detail="x")
    out.event("host", "host-1", status="failed", phase="facts", detail="x")
    out.event("host", "host-2", status="changed", phase="", detail="")
    assert out.totals() == {"hosts": 30, "done": 1, "failed": 1, "running": 1, "waiting": 27}
    out.console.print(out._view())
    shown = out.console.file.getvalue()
    assert "2/30 hosts finished: 1 done, 1 failed, 1 running, 27 waiting" in shown and "host-1" in shown
    assert "host-5" not in shown
    out.console = Console(file=io.StringIO(), width=100, height=60)
    out.console.print(out._view())  # room for every row: the table
    assert "host-29" in out.console.file.getvalue()


def test_a_flags_warning_is_an_event_with_json_output_not_stderr_text(tmp_path, capsys) -> None:
    from nodeboot import app
    from nodeboot.request import HostArgs, RunArgs, run_settings

    run = run_settings(HostArgs(insecure_skip_tls_verify=True), RunArgs(output="json", log_dir=str(tmp_path)))
    app.make_output(run, Redactor()).end()
    app.make_output(run, Redactor()).end()  # a later stage of the same run: said once
    captured = capsys.readouterr()
    said = [e for e in events(captured.out) if e["event"] == "message"]
    assert captured.err == "" and len(said) == 1 and "--insecure-skip-tls-verify" in said[0]["message"]
    assert said[0]["level"] == "warning"


def test_the_ansible_engine_gives_every_host_a_host_event_too(tmp_path) -> None:
    from nodeboot.ansible_engine import HostTrack, finish

    stream = io.StringIO()
    out = Output(Redactor(), mode="json", log_dir=tmp_path / "run", stream=stream, command="nodeboot join")
    tracks = {"a": HostTrack("a", "a", started=1.0, finished=2.0, changed=True, tasks=3),
              "b": HostTrack("b", "b", started=1.0, finished=1.5, unreachable=True, phase="connect",
                             detail="ssh: unreachable", tasks=0),
              "c": HostTrack("c", "c")}
    out.begin(list(tracks), "nodeboot join (ansible)")
    finish(out, tracks, {}, 2, 3.0)
    out.end()
    for event in events(stream.getvalue()):
        VALIDATOR.validate(event)
    results = {e["host"]: e["status"] for e in events(stream.getvalue()) if e["event"] == "host"}
    assert results == {"a": "changed", "b": "failed", "c": "not-started"}
