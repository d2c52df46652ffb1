"""lookup('nodeboot.kubeadm.nodeboot_script', 'linux/join.sh'): the exact text nodeboot sends for a host script.

The host work lives in scripts/ only, and so does the rule for what is sent:
this lookup calls nodeboot's own scripts.script_text (the OS's common functions
joined to the script where it uses them), taken from the checkout this file is
in (bootstrap/ above playbooks/) or, failing that, from the installed nodeboot
package (pip install nodeboot, beside ansible-core).
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
EXAMPLES = r"""
- name: Gather facts as nodeboot does
  ansible.builtin.command:
    cmd: bash --noprofile --norc -s
    stdin: "{{ lookup('nodeboot.kubeadm.nodeboot_script', 'linux/facts.sh') }}"
"""
RETURN = r"""
_raw:
  description: The script text, one string per term.
  type: list
  elements: str
"""

def _checkout_source_root() -> Path | None:
    """bootstrap/ of the nodeboot checkout holding this collection, if it is one."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "bootstrap" / "nodeboot" / "scripts.py").is_file():
            return parent / "bootstrap"
    return None


def _script_text():
    source_root = _checkout_source_root()
    if source_root is not None and str(source_root) not in sys.path:
        sys.path.insert(0, str(source_root))
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
