"""The host scripts: where they live and the one-JSON-line protocol they speak.

Every script in scripts/linux and scripts/windows reads its inputs from NB_*
variables and ends by printing exactly one JSON object on the last line of
standard output: {"ok": bool, "changed": bool, "facts": {...}, "error": str}.
Anything else a script prints goes to standard error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from nodeboot.errors import ScriptError

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


def parse_result(name: str, exit_status: int, stdout: str, stderr: str) -> ScriptResult:
    """Read the last JSON line of a script's output; a missing line is an error."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    if not lines:
        raise ScriptError(name, f"{name} printed no result (exit {exit_status}): {tail}", exit_status, tail)
    try:
        data = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise ScriptError(
            name, f"{name} ended without its JSON result (exit {exit_status}): {lines[-1][:200]}", exit_status, tail
        ) from None
    if not isinstance(data, dict):
        raise ScriptError(name, f"{name} printed a result that is not an object", exit_status, tail)
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
