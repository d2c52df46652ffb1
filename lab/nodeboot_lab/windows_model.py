"""A model of a Windows host, answering the commands the lab's WinRM endpoint receives.

There is no Windows here, so the effect of a PowerShell script is modelled: the
model reads what PowerShell would have been given (the command line, and the
script text on stdin or in -EncodedCommand), recognises the script and applies
its effect to a host state kept as JSON in the state directory.

How a script is recognised:
- nodeboot's own scripts start with a line `# nodeboot-script: NAME`, preceded by
  their inputs as `$NB_X = '...'` lines; NAME selects a method in _script_table().
  To model another script, add a method there that takes a PowerShellInvocation
  and returns an Outcome, and keep any state it changes in self.state.
- anything else runs through a deliberately tiny interpreter (Write-Output of a
  literal, $env:COMPUTERNAME, exit N); what it does not know fails loudly with
  exit 1 and "lab windows model: unknown script ..." on stderr.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "windows-host.json"
SCRIPT_BLOCK_LOG = "script-blocks.log"
MARKER = re.compile(r"^#\s*nodeboot-script:\s*(\S+)\s*$", re.MULTILINE)
# One `$NB_X = '...'` input line; '' is a quote inside the value, which may span lines.
PREAMBLE_LINE = re.compile(
    r"\A[ \t]*\$([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*'((?:[^']|'')*)'[ \t]*(?:\r?\n|\Z)"
)
# A secret input: a statement that reads the next stdin line (base64) into the variable, then
# that line. PowerShell parses (and script-block logging records) the statement, never the line.
SECRET_LINE = re.compile(
    r"\A[ \t]*\$([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*\[Text\.Encoding\]::UTF8\.GetString\("
    r"\[Convert\]::FromBase64String\(\[Console\]::In\.ReadLine\(\)\)\)[ \t]*\r?\n([A-Za-z0-9+/=]*)(?:\r?\n|\Z)"
)
POWERSHELL_NAMES = ("powershell", "pwsh")


@dataclass
class PowerShellInvocation:
    """What PowerShell was asked to run, already split into inputs and body."""

    script: str
    variables: dict[str, str] = field(default_factory=dict)
    body: str = ""
    name: str | None = None
    shell_id: str = ""
    # The text PowerShell parses as script: all of stdin but the data lines secrets came on.
    # This is what script-block logging (event 4104) would record.
    script_text: str = ""
    secret_names: tuple[str, ...] = ()


@dataclass
class Outcome:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0

    def encoded(self) -> tuple[bytes, bytes, int]:
        return self.stdout.encode(), self.stderr.encode(), self.exit_code


def unknown(what: str) -> Outcome:
    return Outcome(stderr=f"lab windows model: unknown script {what}\r\n", exit_code=1)


def split_inputs(script: str) -> tuple[dict[str, str], dict[str, str], str, str]:
    """Take the leading inputs off a script: (plain variables, secrets, body, script text).
    The script text is stdin without the lines secrets arrived on: what PowerShell parses."""
    variables: dict[str, str] = {}
    secrets: dict[str, str] = {}
    parsed: list[str] = []
    rest = script.lstrip("\ufeff")
    while True:
        match = PREAMBLE_LINE.match(rest)
        if match is not None:
            variables[match.group(1)] = match.group(2).replace("''", "'")
            parsed.append(match.group(0))
            rest = rest[match.end() :]
            continue
        secret = SECRET_LINE.match(rest)
        if secret is None:
            return variables, secrets, rest, "".join(parsed) + rest
        try:
            secrets[secret.group(1)] = base64.b64decode(secret.group(2), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            secrets[secret.group(1)] = ""  # FromBase64String would throw; the script sees no value
        parsed.append(secret.group(0)[: secret.start(2)])
        rest = rest[secret.end() :]


def split_preamble(script: str) -> tuple[dict[str, str], str]:
    """Take the leading inputs off a script: (variables, secrets included; body)."""
    variables, secrets, body, _ = split_inputs(script)
    return {**variables, **secrets}, body


def parse_invocation(script: str, shell_id: str = "") -> PowerShellInvocation:
    variables, secrets, body, text = split_inputs(script)
    first = next((line for line in body.splitlines() if line.strip()), "")
    marker = MARKER.match(first.strip())
    return PowerShellInvocation(script, {**variables, **secrets}, body, marker.group(1) if marker else None,
                                shell_id, text, tuple(secrets))


def split_command_line(line: str) -> list[str]:
    """Windows-style tokens: whitespace separates, double quotes group (no escapes needed here)."""
    return [
        m.group(1) if m.group(1) is not None else m.group(2) for m in re.finditer(r'"([^"]*)"|(\S+)', line)
    ]


def _program(token: str) -> str:
    name = re.split(r"[\\/]", token)[-1].lower()
    return name[:-4] if name.endswith(".exe") else name


VALUE_PARAMETERS = ("ExecutionPolicy", "InputFormat", "OutputFormat", "WindowStyle", "Version")
PARAMETERS = ("Command", "EncodedCommand", "NoLogo", "NoProfile", "NonInteractive", *VALUE_PARAMETERS)


def _parameter(arg: str) -> str | None:
    """powershell.exe's parameter named by `arg`: -e/-ec are EncodedCommand, else any unique prefix."""
    if not arg.startswith(("-", "/")):
        return None
    opt = arg[1:].lower()
    if opt in ("e", "ec"):
        return "EncodedCommand"
    if opt == "c":
        return "Command"
    hits = [name for name in PARAMETERS if opt and name.lower().startswith(opt)]
    return hits[0] if len(hits) == 1 else None


class WindowsHostModel:
    """The default handler of the lab's WinRM endpoint: one instance per modelled host."""

    def __init__(self, state_dir: str | os.PathLike[str], computer_name: str | None = None,
                 os_build: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.os_build = os_build  # the Windows build this host reports (else NB_LAB_WINDOWS_BUILD, else 2022)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.script_block_log: list[str] = []
        self.state: dict[str, Any] = self._load()
        computer_name = computer_name or os.environ.get("NB_LAB_COMPUTER_NAME")
        if computer_name:
            self.state["computer_name"] = computer_name
        self.state.setdefault("computer_name", "WIN-LAB1")
        self.state.setdefault("boot_id", str(uuid.uuid4()))
        self.state.setdefault("files", {})
        from nodeboot_lab.windows_node import NodeScripts

        self.node = NodeScripts(self)  # nodeboot's Windows node scripts (scripts/windows/*.ps1)
        self._save()

    # -- the handler entry point ----------------------------------------------------
    def __call__(
        self, shell_id: str, command: str, arguments: list[str], stdin: bytes
    ) -> tuple[bytes, bytes, int]:
        tokens = split_command_line(" ".join([command, *arguments]))
        if not tokens:
            return unknown("(empty command line)").encoded()
        program = _program(tokens[0])
        with self._lock:
            if program == "hostname" and len(tokens) == 1:
                return Outcome(stdout=self.computer_name + "\r\n").encoded()
            if program in POWERSHELL_NAMES:
                return self._powershell(shell_id, tokens[1:], stdin).encoded()
            return unknown(f"command {tokens[0]!r}").encoded()

    @property
    def computer_name(self) -> str:
        return str(self.state["computer_name"])

    def _powershell(self, shell_id: str, args: list[str], stdin: bytes) -> Outcome:
        script = self._script_from_arguments(args, stdin)
        if script is None:
            return unknown(f"(powershell arguments {' '.join(args)[:120]!r})")
        return self.run_powershell(parse_invocation(script, shell_id))

    def _script_from_arguments(self, args: list[str], stdin: bytes) -> str | None:
        """The script text PowerShell would run, from -Command - (stdin), -Command TEXT or -EncodedCommand."""
        i = 0
        while i < len(args):
            param = _parameter(args[i])
            if param == "EncodedCommand":
                try:
                    return base64.b64decode(args[i + 1]).decode("utf-16-le")
                except (IndexError, binascii.Error, UnicodeDecodeError):
                    return None
            if param == "Command":
                rest = args[i + 1 :]
                if rest == ["-"]:
                    return stdin.decode("utf-8-sig", errors="replace")
                return " ".join(rest) if rest else None
            i += 2 if param in VALUE_PARAMETERS else 1
        return None

    # -- scripts ----------------------------------------------------------------------
    def run_powershell(self, inv: PowerShellInvocation) -> Outcome:
        self._log_script_block(inv.script_text)
        if inv.name is None:
            return self._interpret(inv)
        script = self._script_table().get(inv.name)
        if script is None:
            return unknown(f"{inv.name!r} (no model for this nodeboot script)")
        return script(inv)

    def _script_table(self) -> dict[str, Callable[[PowerShellInvocation], Outcome]]:
        """nodeboot scripts this model knows, by the NAME of their `# nodeboot-script:` line."""
        return dict(self.node.table())

    def file_content(self, path: str) -> bytes | None:
        """What the modelled host holds at `path` (case-insensitive, as NTFS), for tests."""
        entry = self.state["files"].get(path.lower())
        return (self.state_dir / "files" / entry["sha256"]).read_bytes() if entry else None

    # The tiny interpreter: one statement per line, only literals and the computer name.
    def _interpret(self, inv: PowerShellInvocation) -> Outcome:
        out: list[str] = []
        for number, raw in enumerate(inv.body.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exit_match = re.fullmatch(r"exit\s+(-?\d+)", line, re.IGNORECASE)
            if exit_match:
                return Outcome(stdout="".join(out), exit_code=int(exit_match.group(1)))
            value = self._value_of(line, inv.variables)
            if value is None:
                return Outcome(
                    "".join(out), f"lab windows model: unknown script line {number}: {line[:100]}\r\n", 1
                )
            out.append(value + "\r\n")
        return Outcome(stdout="".join(out))

    def _value_of(self, statement: str, variables: dict[str, str]) -> str | None:
        """The output of `Write-Output X` or a bare X, for the few X this model understands."""
        expr = re.sub(r"^(Write-Output|echo)\s+", "", statement, flags=re.IGNORECASE)
        if expr.lower() == "$env:computername" or expr.lower() == "hostname":
            return self.computer_name
        literal = re.fullmatch(r"'((?:[^']|'')*)'", expr)
        if literal:
            return literal.group(1).replace("''", "'")
        plain = re.fullmatch(r'"([^"$`]*)"', expr)  # double quotes without expansion
        if plain:
            return plain.group(1)
        variable = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", expr)
        if variable and variable.group(1) in variables:
            return variables[variable.group(1)]
        return None

    def _log_script_block(self, text: str) -> None:
        """What event 4104 (script-block logging) would hold: every script text PowerShell parsed.
        Kept in memory and appended to script-blocks.log, so tests can look for secrets in it."""
        self.script_block_log.append(text)
        with open(self.state_dir / SCRIPT_BLOCK_LOG, "a", encoding="utf-8") as log:
            log.write(text + "\n\0\n")

    # -- state ------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        """Write the whole state atomically, so a killed lab never leaves half a file."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)
