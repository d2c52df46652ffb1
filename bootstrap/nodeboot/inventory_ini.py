"""Ansible's INI inventory format (its default), read into an InventoryTree.

    host-1 ansible_host=10.0.0.1          # before any section: the host is in `ungrouped`
    [web]
    web-[1:3] nodeboot_proxy_mode=ipvs    # a host pattern, then key=value vars (shell-style quoting)
    [web:vars]
    ansible_user=root
    [linux:children]
    web

Values are Python literals where they parse as one (`2222`, `True`, `[1, 2]`, `{'a': 1}`), text otherwise,
as Ansible reads them. A group named in `[x:children]` before its own section is fine; one never defined
is an error, as is `[x:vars]` for a group that never gets hosts or children.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from typing import Any

from nodeboot import inventory_hostpatterns as patterns
from nodeboot.inventory_tree import InventoryTree, TreeError

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_NOT_A_VAR_CHAR = re.compile(r"^[\d\W]|[^\w]")  # section names are made valid variable names, as Ansible does
_COMMENT = ("#", ";")


class IniProblem(Exception):
    """An INI inventory Ansible would refuse; the text names the line."""


@dataclass
class _Pending:
    """A group used before it is defined: in [parent:children], or by [name:vars]."""

    line: int
    state: str
    parents: list[str] = field(default_factory=list)


def read_ini_inventory(text: str, tree: InventoryTree) -> None:
    pending: dict[str, _Pending] = {}
    group, state = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in _COMMENT:
            continue
        try:
            section = _SECTION.match(line)
            if section:
                group, state = _NOT_A_VAR_CHAR.sub("_", section.group(1)), section.group(2) or "hosts"
                if state not in ("hosts", "children", "vars"):
                    raise IniProblem(f"section [{line.strip('[]')}] has unknown type {state!r}")
                if group not in tree.groups:
                    if state == "vars" and group not in pending:
                        pending[group] = _Pending(number, state)
                    tree.add_group(group)
                if group in pending and state != "vars":
                    if pending[group].state == "children":
                        _resolve_pending(tree, group, pending)
                    else:
                        del pending[group]
            elif line.startswith("[") and line.endswith("]"):
                raise IniProblem(f"{line!r} is not a valid section: no spaces or ':' other than [group:type]")
            elif state == "hosts":
                _host_line(tree, group, line)
            elif state == "vars":
                if "=" not in line:
                    raise IniProblem(f"expected key=value, got {line!r}")
                key, value = (part.strip() for part in line.split("=", 1))
                tree.set_group_var(group, key, parse_value(value))
            else:
                match = _GROUP_NAME.match(line)
                if not match:
                    raise IniProblem(f"expected a group name, got {line!r}")
                child = match.group(1)
                if child in tree.groups:
                    tree.add_child(group, child)
                elif child in pending:
                    pending[child].parents.append(group)
                else:
                    pending[child] = _Pending(number, "children", [group])
        except (IniProblem, TreeError, patterns.HostPatternError) as exc:
            raise IniProblem(f"line {number}: {exc}") from None
    for name, declared in pending.items():
        if declared.state == "vars":
            raise IniProblem(f"line {declared.line}: [{name}:vars] is for a group that is never defined")
        raise IniProblem(f"line {declared.line}: [{declared.parents[-1]}:children] names {name!r}, "
                         "a group that is never defined")


def _resolve_pending(tree: InventoryTree, group: str, pending: dict[str, _Pending]) -> None:
    for parent in pending[group].parents:
        tree.add_child(parent, group)
        if parent in pending and pending[parent].state == "children":
            _resolve_pending(tree, parent, pending)
    del pending[group]


def _host_line(tree: InventoryTree, group: str, line: str) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise IniProblem(f"cannot split {line!r}: {exc}") from None
    pattern = tokens[0]
    names, port = patterns.hosts_of(pattern)
    if pattern.strip().endswith(":") and port is None:
        raise IniProblem(f"host {pattern!r} ends in ':' (that character introduces a port)")
    if "---" in (n.strip() for n in names):
        raise IniProblem("'---' starts a YAML document, not an INI host")
    host_vars: dict[str, Any] = {}
    for token in tokens[1:]:
        if "=" not in token:
            raise IniProblem(f"expected key=value after the host, got {token!r}")
        key, value = token.split("=", 1)
        host_vars[key] = parse_value(value)
    for name in names:
        tree.add_host(name, group, port)
        for key, value in host_vars.items():
            tree.set_host_var(name, key, value)


def parse_value(text: str) -> Any:
    """A Python literal when the text is one, else the text itself (what Ansible's INI reader does)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    except (TypeError, MemoryError, RecursionError) as exc:
        raise IniProblem(f"value {text!r} cannot be read: {exc}") from None
    return _coerce(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}  # keys as written
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise IniProblem(f"value {value!r} is not UTF-8 text") from None
    return value
