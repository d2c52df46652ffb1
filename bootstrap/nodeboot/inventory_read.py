"""One inventory file read the way `ansible-inventory -i FILE` reads it: format, hosts, groups, resolved vars.

Format, as Ansible picks it: a file ending in .yml/.yaml/.json or with no extension is tried as YAML
first and as INI when it is not a YAML mapping; any other file is INI. Then host_vars/ and group_vars/
beside the file, and each host's vars by Ansible's precedence (inventory_tree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeboot.errors import UsageError
from nodeboot.inventory_ini import IniProblem, read_ini_inventory
from nodeboot.inventory_tree import InventoryTree, TreeError
from nodeboot.inventory_vars_dirs import VarsDirs, VarsFileProblem
from nodeboot.inventory_yaml import YamlProblem, load_yaml, read_yaml_inventory

YAML_SUFFIXES = ("", ".yml", ".yaml", ".json")


@dataclass
class ReadInventory:
    source: str
    tree: InventoryTree
    hostvars: dict[str, dict[str, Any]]  # resolved, per host, in the inventory's order
    warnings: list[str] = field(default_factory=list)
    host_groups: dict[str, list[str]] = field(default_factory=dict)

    def groups_of(self, host: str) -> list[str]:
        """`all` first, then the host's other groups from lowest to highest precedence."""
        return self.host_groups[host]

    def as_ansible_list(self) -> dict[str, Any]:
        return self.tree.as_ansible_list(self.hostvars)


def read_inventory(path: str) -> ReadInventory:
    source = str(path)
    if os.path.isdir(source):
        raise UsageError(f"{source}: an inventory directory is not supported yet: give the inventory file")
    try:
        text = Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: cannot read inventory: {getattr(exc, 'strerror', None) or exc}") from None
    suffix = os.path.splitext(source)[1]
    if suffix == ".toml":
        raise UsageError(f"{source}: TOML inventories are not supported: use YAML or INI")
    tree = _parse(source, text, suffix)
    try:
        tree.finish()
        vars_dirs = VarsDirs(source)
        hostvars = tree.resolve(vars_dirs)
    except VarsFileProblem as exc:
        raise UsageError(str(exc)) from None
    except TreeError as exc:
        raise UsageError(f"{source}: {exc}") from None
    depths = tree.depths()
    host_groups = {name: ["all", *tree.ordered_groups(name, depths)] for name in hostvars}
    return ReadInventory(source, tree, hostvars, [f"{source}: {w}" for w in tree.warnings], host_groups)


def _parse(source: str, text: str, suffix: str) -> InventoryTree:
    yaml_problem: str | None = None
    if suffix in YAML_SUFFIXES:
        try:
            data = load_yaml(text)
        except YamlProblem as exc:
            data, yaml_problem = None, f"not valid YAML: {exc}"
        if isinstance(data, dict) and data:
            tree = InventoryTree()
            try:
                read_yaml_inventory(data, tree)
            except YamlProblem as exc:
                raise UsageError(f"{source}: {exc}") from None
            return tree
        yaml_problem = yaml_problem or "expected a YAML mapping with an 'all' group (Ansible YAML inventory)"
    tree = InventoryTree()  # Ansible's next reader: INI
    try:
        read_ini_inventory(text, tree)
    except IniProblem as exc:
        if yaml_problem and suffix:
            raise UsageError(f"{source}: {yaml_problem}") from None
        if yaml_problem:
            raise UsageError(f"{source}: neither YAML ({yaml_problem}) nor INI ({exc})") from None
        raise UsageError(f"{source}: not a valid INI inventory: {exc}") from None
    return tree
