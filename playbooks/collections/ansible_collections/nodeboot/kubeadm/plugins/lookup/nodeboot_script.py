"""lookup('nodeboot_script', 'linux/join.sh'): the exact text nodeboot sends for a host script.

The host work lives in scripts/ only, and so does the rule for what is sent:
this lookup calls nodeboot's own scripts.script_text (the OS's common functions
joined to the script where it uses them), taken from the bootstrap/ beside
playbooks/ or, failing that, from the installed nodeboot package.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: nodeboot_script
short_description: the text of one of nodeboot's host scripts, as nodeboot sends it
description:
  - Returns scripts/OS/NAME with the OS's common functions joined where the script uses them.
options:
  _terms:
    description: OS/NAME, for example linux/join.sh or windows/join.ps1.
    required: true
"""

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "bootstrap"


def _script_text():
    if (SOURCE_ROOT / "nodeboot" / "scripts.py").is_file() and str(SOURCE_ROOT) not in sys.path:
        sys.path.insert(0, str(SOURCE_ROOT))
    try:
        from nodeboot.scripts import script_text
    except ImportError as exc:
        raise AnsibleError(f"nodeboot_script: the nodeboot package is needed on the controller ({exc})") from None
    return script_text


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        script_text = _script_text()
        out = []
        for term in terms:
            os_name, _, name = str(term).partition("/")
            if os_name not in ("linux", "windows") or not name or "/" in name:
                raise AnsibleError(f"nodeboot_script: {term!r}: expected linux/NAME or windows/NAME")
            try:
                out.append(script_text(os_name, name))
            except Exception as exc:  # nodeboot's ScriptError: the script is missing
                raise AnsibleError(f"nodeboot_script: {exc}") from None
        return out
