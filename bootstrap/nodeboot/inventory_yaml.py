"""Ansible's YAML inventory format: groups with `hosts`, `vars` and `children`, read into an InventoryTree.

Where Ansible skips a malformed part with a warning, so does nodeboot (the hosts both tools see must be
the same); where Ansible refuses the file, nodeboot says why in one line.
"""

from __future__ import annotations

from typing import Any

import yaml

from nodeboot import inventory_hostpatterns as patterns
from nodeboot.inventory_tree import InventoryTree, TreeError, UnsafeText

SECTIONS = ("vars", "children", "hosts")


class YamlProblem(Exception):
    """Not YAML, or YAML that is not an inventory; the text says where."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader plus the tags Ansible files carry."""


def _unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return UnsafeText(loader.construct_scalar(node))
    raise yaml.constructor.ConstructorError(None, None, "!unsafe applies to text only", node.start_mark)


def _vault(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, "vault-encrypted values are not supported: use nodeboot_password_env", node.start_mark
    )


_Loader.add_constructor("!unsafe", _unsafe)
_Loader.add_constructor("!vault", _vault)


def load_yaml(text: str) -> Any:
    """The document, or YamlProblem naming the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # YAML errors span lines
        raise YamlProblem(f"{where}{problem}") from None


def read_yaml_inventory(data: dict[Any, Any], tree: InventoryTree) -> None:
    """Fill the tree from a parsed YAML inventory (a mapping of top-level groups)."""
    if data.get("plugin"):
        raise YamlProblem(f"an inventory plugin's configuration (plugin: {data['plugin']}), not an inventory: "
                          "nodeboot reads static inventories only")
    try:
        for name, group in data.items():
            _group(tree, name, group)
    except TreeError as exc:
        raise YamlProblem(str(exc)) from None


def _group(tree: InventoryTree, name: Any, data: Any) -> Any:
    if not isinstance(data, (dict, type(None))):
        tree.warnings.append(f"skipped {name!r}: a group is a mapping of hosts, vars and children")
        return name
    if not isinstance(name, str) or not name:
        raise YamlProblem(f"group name {name!r}: must be text")
    tree.add_group(name)
    if data is None:
        return name
    for section in SECTIONS:
        if isinstance(data.get(section), str):
            data[section] = {data[section]: None}  # `hosts: web-1` means one host
        if not isinstance(data.get(section), (dict, type(None))):
            raise YamlProblem(f"group {name}: {section} must be a mapping, not a {type(data[section]).__name__}")
    for key, value in data.items():
        if value is None:
            continue
        if not isinstance(value, dict):
            tree.warnings.append(f"group {name}: skipped {key!r} (not a mapping)")
        elif key == "vars":
            for var, var_value in value.items():
                tree.set_group_var(name, var, var_value)
        elif key == "children":
            for child, child_data in value.items():
                child_name = _group(tree, child, child_data)
                tree.add_child(name, child_name)
        elif key == "hosts":
            for pattern, host_vars in value.items():
                _hosts(tree, name, pattern, host_vars)
        else:
            tree.warnings.append(f"group {name}: skipped {key!r} (a group has only hosts, vars and children)")
    return name


def _hosts(tree: InventoryTree, group: str, pattern: Any, host_vars: Any) -> None:
    if not isinstance(pattern, str):
        raise YamlProblem(f"group {group}: host {pattern!r} must be text (quote numbers)")
    try:
        names, port = patterns.hosts_of(pattern)
    except patterns.HostPatternError as exc:
        raise YamlProblem(f"group {group}: {exc}") from None
    host_vars = host_vars or {}
    if not isinstance(host_vars, dict):
        raise YamlProblem(f"group {group}: host {pattern}: its vars must be a mapping")
    for name in names:
        tree.add_host(name, group, port)
        for key, value in host_vars.items():
            tree.set_host_var(name, key, value)

