"""The host scripts: where they live and the one-JSON-line protocol they speak.

Every script in scripts/linux and scripts/windows reads its inputs from NB_*
variables and ends by printing exactly one JSON object on the last line of
standard output: {"ok": bool, "changed": bool, "facts": {...}, "error": str}.
Anything else a script prints goes to standard error.

How a script's inputs go ahead of its text (bash and PowerShell) and how its
result is read live here once: nodeboot's transports and the playbooks' filters
(nb_result, nb_ps_vars, nb_ps_secret_vars) both call these.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from nodeboot.errors import ScriptError, TransportError

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"


# Shared functions every script of that OS may use; sent ahead of the script body.
COMMON = {"linux": "common.sh", "windows": "common.ps1"}
COMMON_MARKER = "nb_"


@cache
def script_text(os_name: str, name: str) -> str:
    """The text sent for scripts/<os>/<name>: common functions first, if the script uses them."""
    path = SCRIPTS_DIR / os_name / name
    try:
        body = path.read_text()
    except FileNotFoundError:
        raise ScriptError(name, f"host script {os_name}/{name} is missing from this install") from None
    common = COMMON.get(os_name)
    if common and name != common and os_name == "windows":
        # After the script's `# nodeboot-script: NAME` line, which must stay its first.
        first, _, rest = body.partition("\n")
        return first + "\n" + (SCRIPTS_DIR / os_name / common).read_text() + "\n" + rest
    if common and name != common and f"{COMMON_MARKER}ok" in body:
        return (SCRIPTS_DIR / os_name / common).read_text() + "\n" + body
    return body


@dataclass
class ScriptResult:
    ok: bool
    changed: bool
    facts: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class UnreadableResult(ValueError):
    """A script's output holds no result to read: what is wrong, e.g. 'printed no result (exit 1): ...'."""


def read_result(exit_status: int, stdout: str, stderr_tail: str) -> ScriptResult:
    """The last non-empty stdout line is the JSON result; a non-zero exit is a failure even if
    the line says ok. No line, a broken line or one that is not an object raises UnreadableResult."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise UnreadableResult(f"printed no result (exit {exit_status}): {stderr_tail}")
    try:
        data = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise UnreadableResult(f"ended without its JSON result (exit {exit_status}): {lines[-1][:200]}") from None
    if not isinstance(data, dict):
        raise UnreadableResult("printed a result that is not an object")
    result = ScriptResult(
        ok=bool(data.get("ok", exit_status == 0)),
        changed=bool(data.get("changed", False)),
        facts=data.get("facts") or {},
        error=str(data.get("error") or ""),
    )
    if exit_status != 0 and result.ok:
        result.ok = False
        result.error = result.error or f"exit status {exit_status}"
    return result


def parse_result(name: str, exit_status: int, stdout: str, stderr: str) -> ScriptResult:
    """Read the last JSON line of a script's output; a missing line is an error."""
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    try:
        return read_result(exit_status, stdout, tail)
    except UnreadableResult as exc:
        raise ScriptError(name, f"{name} {exc}", exit_status, tail) from None


def shell_preamble(variables: dict[str, str], secret_variables: dict[str, str] | None = None) -> str:
    """Variables ahead of a bash script. Plain inputs are exported; secrets stay
    shell variables (not in any child's environment) and never touch argv."""
    out = []
    for key, value in variables.items():
        out.append(f"export {key}={sh_quote(value)}")
    for key, value in (secret_variables or {}).items():
        out.append(f"{key}={sh_quote(value)}")
    return "\n".join(out) + "\n"


def sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


PS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# PowerShell ends a single-quoted string at any of these, and doubling one escapes it.
PS_SINGLE_QUOTES = re.compile("(['\u2018\u2019\u201a\u201b])")
# A secret is data, never script text: this statement reads the next stdin line (base64 of
# the value) into the variable, so script-block logging (event 4104) records only the statement.
PS_SECRET_READER = "${name} = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String([Console]::In.ReadLine()))"


def ps_quote(value: str) -> str:
    return "'" + PS_SINGLE_QUOTES.sub(r"\1\1", value) + "'"


def powershell_preamble(variables: dict[str, str], secret_variables: dict[str, str] | None = None) -> str:
    """Inputs ahead of a script, never environment or argv: `$NAME = '...'` lines for plain
    values; for each secret, a statement that reads it from the next stdin line, then that line."""
    lines = []
    for key in [*variables, *(secret_variables or {})]:
        if not PS_NAME.match(key):
            raise TransportError(f"invalid PowerShell variable name {key!r}", retryable=False)
    for key, value in variables.items():
        lines.append(f"${key} = {ps_quote(value)}")
    for key, value in (secret_variables or {}).items():
        lines.append(PS_SECRET_READER.format(name=key))
        lines.append(base64.b64encode(value.encode()).decode())
    return "".join(line + "\n" for line in lines)
