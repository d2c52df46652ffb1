"""Filters for nodeboot's playbooks: read a host script's one-line JSON result,
and build the `$NB_X = '...'` lines PowerShell scripts take their inputs from.

Each calls nodeboot's own rule (nodeboot.scripts), as the nodeboot_script lookup
does, so the playbooks and nodeboot cannot disagree: from the checkout this file
is in (bootstrap/ above playbooks/), else from the installed nodeboot package.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError


def _scripts():
    """nodeboot.scripts, from this checkout's bootstrap/ if this file is in one."""
    root = next((p / "bootstrap" for p in Path(__file__).resolve().parents
                 if (p / "bootstrap" / "nodeboot" / "scripts.py").is_file()), None)
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from nodeboot import scripts
    except ImportError as exc:
        raise AnsibleFilterError(f"nodeboot's filters need the nodeboot package on the controller ({exc})") from None
    return scripts


def nb_result(registered):
    """{ok, changed, facts, error} from a registered command result, by nodeboot's rule
    (scripts.read_result): the last non-empty stdout line is the JSON result; a missing or
    broken line, or a non-zero exit, is a failure."""
    if not isinstance(registered, dict):
        raise AnsibleFilterError("nb_result: expected a registered task result")
    if registered.get("skipped"):
        return {"ok": True, "changed": False, "facts": {}, "error": "", "skipped": True}
    scripts = _scripts()
    rc = registered.get("rc", 0)
    tail = " ".join((registered.get("stderr") or "").strip().splitlines()[-4:])  # one line in Ansible's output
    try:
        result = scripts.read_result(rc, registered.get("stdout") or "", tail)
    except scripts.UnreadableResult as exc:
        return {"ok": False, "changed": False, "facts": {}, "error": str(exc)}
    return {"ok": result.ok, "changed": result.changed, "facts": result.facts, "error": result.error}


def _preamble(filter_name, variables, secret):
    if not isinstance(variables, dict):
        raise AnsibleFilterError(f"{filter_name}: expected a mapping of NB_* names to values")
    scripts = _scripts()
    values = {str(k): "" if v is None else str(v) for k, v in variables.items()}
    try:
        return scripts.powershell_preamble({}, values) if secret else scripts.powershell_preamble(values)
    except Exception as exc:  # nodeboot's TransportError: a name PowerShell would not take
        raise AnsibleFilterError(f"{filter_name}: {exc}") from None


def nb_ps_vars(variables):
    """PowerShell input lines, as nodeboot sends them: $NB_X = '...' (any single quote doubled)."""
    return _preamble("nb_ps_vars", variables, secret=False)


def nb_ps_secret_vars(variables):
    """Secret inputs as nodeboot sends them: data PowerShell reads, never script text. For each,
    a statement that reads the next stdin line, then that line (base64 of the UTF-8 value)."""
    return _preamble("nb_ps_secret_vars", variables, secret=True)


class FilterModule:
    def filters(self):
        return {"nb_result": nb_result, "nb_ps_vars": nb_ps_vars, "nb_ps_secret_vars": nb_ps_secret_vars}
