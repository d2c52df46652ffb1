"""WinRM transport and Windows model pieces that need no endpoint: quoting, options, parsing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from nodeboot.errors import TransportError
from nodeboot.scripts import powershell_preamble, ps_quote
from nodeboot.transport.winrm import (
    WinRMOptions,
    WinRMTransport,
    clixml_to_text,
)
from nodeboot_lab.windows_model import WindowsHostModel, parse_invocation, split_command_line, split_preamble


def test_ps_quote_doubles_every_kind_of_single_quote() -> None:
    assert ps_quote("plain") == "'plain'"
    assert ps_quote("it's") == "'it''s'"
    # PowerShell also closes a single-quoted string at typographic quotes.
    assert ps_quote("a\u2019b\u2018c") == "'a\u2019\u2019b\u2018\u2018c'"
    assert ps_quote("$env:X `n") == "'$env:X `n'"  # no expansion inside single quotes


def test_preamble_round_trips_through_the_model() -> None:
    values = {"NB_A": "it's", "NB_B": "two\nlines", "NB_C": ""}
    text = powershell_preamble(values, {"NB_SECRET": "x'y"}) + "# nodeboot-script: demo\nWrite-Output 1\n"
    variables, body = split_preamble(text)
    assert variables == {**values, "NB_SECRET": "x'y"}
    assert body.startswith("# nodeboot-script: demo")
    assert parse_invocation(text).name == "demo"


def test_preamble_rejects_names_that_are_not_identifiers() -> None:
    with pytest.raises(TransportError, match="invalid PowerShell variable name"):
        powershell_preamble({"NB_X; rm": "1"})


def test_clixml_errors_become_text() -> None:
    clixml = (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        '<S S="Error">boom_x000D__x000A_</S><S S="Error">again</S></Objs>'
    )
    assert clixml_to_text(clixml) == "boom\nagain"
    assert clixml_to_text("plain error\n") == "plain error\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (WinRMOptions(password="pw123456", scheme="http", transport="basic"), "refusing Basic"),
        (WinRMOptions(password="pw123456", scheme="ftp"), "scheme must be https or http"),
        (WinRMOptions(password="pw123456", transport="digest"), "transport must be"),
        (WinRMOptions(password=None, password_env="NB_TEST_UNSET_PW"), r"set \$NB_TEST_UNSET_PW"),
    ],
)
def test_bad_options_fail_before_any_connection(options: WinRMOptions, message: str) -> None:
    t = WinRMTransport("192.0.2.1", options)  # TEST-NET: would never answer, and is never tried
    with pytest.raises(TransportError, match=message) as err:
        t.connect()
    assert not err.value.retryable and t.stats.extra["http_requests"] == 0


def test_endpoint_and_default_ports() -> None:
    assert WinRMTransport("win-1", WinRMOptions()).endpoint == "https://win-1:5986/wsman"
    assert WinRMTransport("win-1", WinRMOptions(scheme="http")).endpoint == "http://win-1:5985/wsman"
    assert WinRMTransport("fd00::5", WinRMOptions(port=15986)).endpoint == "https://[fd00::5]:15986/wsman"


def test_password_stays_out_of_the_options_repr() -> None:
    assert "s3cret-value" not in repr(WinRMOptions(password="s3cret-value"))


# -- the Windows model -------------------------------------------------------------------------
@pytest.fixture
def host(tmp_path: Path) -> WindowsHostModel:
    return WindowsHostModel(tmp_path, computer_name="WIN-UNIT")


def test_model_answers_hostname_and_simple_powershell(host: WindowsHostModel) -> None:
    assert host("s", "hostname", [], b"") == (b"WIN-UNIT\r\n", b"", 0)
    args = ["-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command -"]
    lines = [
        "$NB_X = 'v'",
        "Write-Output 'a'",
        "Write-Output $NB_X",
        "$env:COMPUTERNAME",
        "exit 4",
        "Write-Output 'no'",
    ]
    script = "\n".join(lines).encode()
    assert host("s", "powershell.exe", args, script) == (b"a\r\nv\r\nWIN-UNIT\r\n", b"", 4)


def test_model_decodes_encoded_commands(host: WindowsHostModel) -> None:
    encoded = base64.b64encode("Write-Output 'enc'".encode("utf-16-le")).decode()
    assert host("s", f"powershell -encodedcommand {encoded}", [], b"")[0] == b"enc\r\n"
    assert host("s", "powershell", ["-e", encoded], b"")[0] == b"enc\r\n"
    assert host("s", "powershell", ["-Command", "Write-Output 'inline'"], b"")[0] == b"inline\r\n"


def test_model_fails_loudly_on_what_it_does_not_know(host: WindowsHostModel) -> None:
    out, err, code = host("s", "powershell", ["-Command", "-"], b"Restart-Computer -Force\n")
    assert code == 1 and b"lab windows model: unknown script line 1: Restart-Computer" in err
    out, err, code = host("s", "cmd.exe", ["/c", "dir"], b"")
    assert code == 1 and b"unknown script command 'cmd.exe'" in err
    out, err, code = host("s", "powershell", ["-Command", "-"], b"# nodeboot-script: join-node\n")
    assert code == 1 and b"'join-node'" in err


def test_model_state_persists(tmp_path: Path) -> None:
    first = WindowsHostModel(tmp_path, computer_name="WIN-KEEP")
    boot = first.state["boot_id"]
    again = WindowsHostModel(tmp_path)
    assert again.computer_name == "WIN-KEEP" and again.state["boot_id"] == boot


def test_command_line_split_keeps_quoted_arguments() -> None:
    assert split_command_line('powershell -Command "Write-Output x" -') == [
        "powershell",
        "-Command",
        "Write-Output x",
        "-",
    ]
