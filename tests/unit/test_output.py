"""Output in its plain and table forms: text from hosts and inventories (error
details, host names) is printed as it is, never read as rich markup, and
secrets are redacted on every path."""

from __future__ import annotations

import io

from rich.console import Console

from nodeboot.output import Output
from nodeboot.redact import Redactor

HOSTILE = "kubeadm said [/] and [bold]x[/bold] and [link=http://x]y"


def make() -> tuple[Output, io.StringIO]:
    redactor = Redactor()
    redactor.add("abcdef.0123456789abcdef")
    stream = io.StringIO()
    return Output(redactor, mode="human", stream=stream), stream


def test_plain_lines_print_host_text_literally_and_redacted() -> None:
    out, stream = make()
    out.begin(["web[1]"], "join")
    out.event("phase", "web[1]", phase="kubeadm-join", status="failed",
              detail=f"{HOSTILE} token abcdef.0123456789abcdef")
    out.message(f"host web[1]: {HOSTILE}", "bold red")
    text = stream.getvalue()
    assert f"web[1]               kubeadm-join   failed  {HOSTILE} token abcdef.******" in text
    assert f"host web[1]: {HOSTILE}" in text and "0123456789abcdef" not in text


def test_summary_and_live_table_take_markup_like_text() -> None:
    out, stream = make()
    out.begin(["[/]"], "join")
    out.event("phase", "[/]", phase="facts", status="failed", detail=HOSTILE)
    rows = [{"host": "[/]", "node": "[b]n", "result": "failed", "changed": False, "phase": "facts",
             "detail": HOSTILE}]
    out.summary(rows, {"ok": 0, "failed": 1, "interrupted": 0, "seconds": 1.0})
    assert "[/]" in stream.getvalue() and "[link=http://x]y" in stream.getvalue()
    wide = Console(file=io.StringIO(), width=300)
    wide.print(out._table())  # what the live view renders on a terminal
    assert HOSTILE in wide.file.getvalue()


def test_quiet_mode_prints_no_events_and_keeps_them_in_the_log(tmp_path) -> None:
    stream, err = io.StringIO(), io.StringIO()
    out = Output(Redactor(), mode="quiet", log_dir=tmp_path, stream=stream, err=err)
    out.begin(["h1"], "proxy status")
    out.event("phase", "h1", phase="facts", status="ok")
    out.message("a warning [/]", "yellow")
    out.summary([{"host": "h1", "result": "ok"}], {"ok": 1, "failed": 0, "interrupted": 0, "seconds": 0.1})
    out.end()
    assert stream.getvalue() == "" and err.getvalue() == "a warning [/]\n"
    log = (tmp_path / "run.log").read_text()
    assert '"phase": "facts"' in log and '"event": "summary"' in log


def test_status_and_proxy_tables_print_names_and_errors_literally() -> None:
    from nodeboot.cli.fleet import print_status_table as print_table
    from nodeboot.cli.proxy import print_status_table

    console = Console(file=io.StringIO(), width=400)
    print_table([{"host": "web[1]", "node": "[b]n", "ready": False, "registered": True, "kubelet": "v1.37.2",
                  "os": "linux", "taints": ["k=[v]:NoSchedule"]}], console)
    print_status_table("ipvs", "lc", [{"host": "web[2]", "node": "n2", "modules": ["ip_vs"],
                                       "virtual_servers": None, "error": HOSTILE}], console)
    text = console.file.getvalue()
    for literal in ("web[1]", "[b]n", "k=[v]:NoSchedule", "NotReady", "web[2]", HOSTILE):
        assert literal in text, literal
