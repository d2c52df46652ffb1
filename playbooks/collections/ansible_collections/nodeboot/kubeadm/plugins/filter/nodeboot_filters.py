"""Filters for nodeboot's playbooks: read a host script's one-line JSON result,
and build the `$NB_X = '...'` lines PowerShell scripts take their inputs from."""

from __future__ import annotations

import base64
import json

from ansible.errors import AnsibleFilterError


def nb_result(registered):
    """{ok, changed, facts, error} from a registered command result, by the rule
    nodeboot's scripts.parse_result applies: the last non-empty stdout line is the
    JSON result; a missing or broken line, or a non-zero exit, is a failure."""
    if not isinstance(registered, dict):
        raise AnsibleFilterError("nb_result: expected a registered task result")
    if registered.get("skipped"):
        return {"ok": True, "changed": False, "facts": {}, "error": "", "skipped": True}
    rc = registered.get("rc", 0)
    lines = [line for line in (registered.get("stdout") or "").splitlines() if line.strip()]
    tail = " ".join((registered.get("stderr") or "").strip().splitlines()[-4:])
    if not lines:
        return {"ok": False, "changed": False, "facts": {}, "error": f"printed no result (exit {rc}): {tail}"}
    try:
        data = json.loads(lines[-1])
    except ValueError:
        return {"ok": False, "changed": False, "facts": {},
                "error": f"ended without its JSON result (exit {rc}): {lines[-1][:200]}"}
    if not isinstance(data, dict):
        return {"ok": False, "changed": False, "facts": {}, "error": "printed a result that is not an object"}
    result = {"ok": bool(data.get("ok", rc == 0)), "changed": bool(data.get("changed", False)),
              "facts": data.get("facts") or {}, "error": str(data.get("error") or "")}
    if rc != 0 and result["ok"]:
        result["ok"] = False
        result["error"] = result["error"] or f"exit status {rc}"
    return result


def nb_ps_vars(variables):
    """PowerShell input lines, as nodeboot sends them: $NB_X = '...' ('' is a quote)."""
    if not isinstance(variables, dict):
        raise AnsibleFilterError("nb_ps_vars: expected a mapping of NB_* names to values")
    lines = []
    for key, value in variables.items():
        if not str(key).replace("_", "").isalnum():
            raise AnsibleFilterError(f"nb_ps_vars: {key!r} is not a variable name")
        text = "" if value is None else str(value)
        lines.append(f"${key} = '" + text.replace("'", "''") + "'")
    return "\n".join(lines) + ("\n" if lines else "")


def nb_ps_secret_vars(variables):
    """Secret inputs as nodeboot sends them: data PowerShell reads, never script text. For each,
    a statement that reads the next stdin line, then that line (base64 of the UTF-8 value)."""
    if not isinstance(variables, dict):
        raise AnsibleFilterError("nb_ps_secret_vars: expected a mapping of NB_* names to values")
    lines = []
    for key, value in variables.items():
        if not str(key).replace("_", "").isalnum():
            raise AnsibleFilterError(f"nb_ps_secret_vars: {key!r} is not a variable name")
        lines.append(f"${key} = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String([Console]::In.ReadLine()))")
        lines.append(base64.b64encode(("" if value is None else str(value)).encode()).decode())
    return "\n".join(lines) + ("\n" if lines else "")


class FilterModule:
    def filters(self):
        return {"nb_result": nb_result, "nb_ps_vars": nb_ps_vars, "nb_ps_secret_vars": nb_ps_secret_vars}
