"""`nodeboot inventory --list`: the inventory as nodeboot resolved it, in `ansible-inventory --list`'s JSON shape.

Run both on one file and compare: the hosts, the groups (with their hosts and children) and every host's
vars should be the same. Passwords written inline are masked (an env lookup is shown: it is no secret).
"""

from __future__ import annotations

import json
import os
from typing import Any

from nodeboot import inventory
from nodeboot.inventory_read import read_inventory
from nodeboot.redact import MASK

# Ansible's own default when neither -i nor ANSIBLE_INVENTORY names one.
ANSIBLE_DEFAULT_INVENTORY = "/etc/ansible/hosts"
SECRET_VARS = frozenset({"ansible_password", "ansible_ssh_pass", "ansible_become_password", "ansible_become_pass",
                         "ansible_sudo_pass", "ansible_winrm_pass", "ansible_winrm_password"})


def default_source() -> str:
    """The file ansible-inventory would read without -i."""
    configured = os.environ.get("ANSIBLE_INVENTORY", "").split(",")[0].strip()
    return os.path.expanduser(configured) if configured else ANSIBLE_DEFAULT_INVENTORY


def listing(path: str | None) -> tuple[dict[str, Any], list[str]]:
    """(the --list document, warnings)."""
    read = read_inventory(path or default_source())
    warnings = [*read.warnings, *inventory.unknown_var_warnings(read.source, read.hostvars)]
    document = read.as_ansible_list()
    for hvars in document["_meta"]["hostvars"].values():
        for key in SECRET_VARS & set(hvars):
            if not _is_env_lookup(hvars[key]):
                hvars[key] = MASK
    return document, warnings


def _is_env_lookup(value: Any) -> bool:
    return isinstance(value, str) and inventory.env_lookup_name(value) is not None


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=4, sort_keys=True)
