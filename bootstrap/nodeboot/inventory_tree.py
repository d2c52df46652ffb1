"""The inventory as a graph of groups and hosts, and each host's vars resolved as Ansible resolves them.

Precedence, lowest first (Ansible's documented default order):
  group `all` in the inventory < every other group of the host in the inventory
  < group_vars/all < group_vars/<group> for every other group < the host's own inventory vars
  < host_vars/<host>.
"Every other group" is ordered by depth (parents before children), then `ansible_group_priority`
(default 1), then name; later wins. A var set twice at one level: the later setting wins.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GROUP_PRIORITY_VAR = "ansible_group_priority"
FileVars = Callable[[str, str], dict[str, Any]]  # (kind 'group'|'host', name) -> vars from group_vars/host_vars


class TreeError(Exception):
    """A relation the inventory cannot hold (a group inside itself, an unknown group)."""


class UnsafeText(str):
    """A YAML `!unsafe` string: plain text Ansible will not template (kept as text by nodeboot too)."""


@dataclass
class Group:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)  # direct members, in order of appearance
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    priority: int = 1


@dataclass
class InventoryHost:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # direct groups
    # The groups whose vars apply: the direct ones and their ancestors, less what leaving `ungrouped` took
    # away (set by finish()).
    member_of: set[str] | None = None


class InventoryTree:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.hosts: dict[str, InventoryHost] = {}
        self.warnings: list[str] = []
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    # -- building ---------------------------------------------------------------
    def add_group(self, name: str) -> str:
        self.groups.setdefault(name, Group(name))
        return name

    def add_host(self, name: str, group: str | None = None, port: int | None = None) -> None:
        if group is not None and group not in self.groups:
            raise TreeError(f"group {group} is not defined")
        if name not in self.hosts:
            self.hosts[name] = InventoryHost(name)
            if port:  # a port in the pattern counts only where the host first appears
                self.hosts[name].vars["ansible_port"] = port
        if group is not None and name not in self.groups[group].hosts:
            self.groups[group].hosts.append(name)
            self.hosts[name].groups.append(group)

    def add_child(self, parent: str, child: str) -> None:
        if parent not in self.groups:
            raise TreeError(f"group {parent} is not defined")
        if child not in self.groups:
            raise TreeError(f"{child} is not a defined group")
        if parent == child or child in self.ancestors(parent):
            raise TreeError(f"making {child} a child of {parent} would put a group inside itself")
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
        if parent not in self.groups[child].parents:
            self.groups[child].parents.append(parent)

    def set_group_var(self, group: str, key: str, value: Any) -> None:
        if key == GROUP_PRIORITY_VAR:
            try:
                self.groups[group].priority = int(value)
            except (TypeError, ValueError):
                raise TreeError(f"group {group}: {GROUP_PRIORITY_VAR} must be a whole number, not {value!r}") from None
            return
        self.groups[group].vars[key] = value

    def set_host_var(self, host: str, key: str, value: Any) -> None:
        self.hosts[host].vars[key] = value

    def finish(self) -> None:
        """What Ansible does once every source is read: top-level groups under `all`, lone hosts in `ungrouped`."""
        for name, group in self.groups.items():
            if name != "all" and not group.parents:
                self.add_child("all", name)
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts.values():
            member_of = self._direct_and_ancestors(host.groups)
            if "ungrouped" in member_of:
                if member_of - {"all", "ungrouped"} and "ungrouped" in host.groups:
                    ungrouped.hosts.remove(host.name)
                    host.groups.remove("ungrouped")
                    self._leave(member_of, "ungrouped")
            elif not member_of - {"all"}:
                self.add_host(host.name, "ungrouped")
                member_of |= {"ungrouped"} | self.ancestors("ungrouped")
            host.member_of = member_of
        for name in set(self.groups) & set(self.hosts):
            self.warnings.append(f"{name} is the name of both a group and a host")

    # -- reading ----------------------------------------------------------------
    def ancestors(self, group: str) -> set[str]:
        found: set[str] = set()
        todo = list(self.groups[group].parents)
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo.extend(self.groups[name].parents)
        return found

    def depths(self) -> dict[str, int]:
        """Each group's longest distance from a top group (`all` is 0)."""
        memo: dict[str, int] = {}

        def depth(name: str) -> int:
            if name not in memo:
                parents = self.groups[name].parents
                memo[name] = max((depth(p) + 1 for p in parents), default=0)
            return memo[name]

        return {name: depth(name) for name in self.groups}

    def _direct_and_ancestors(self, groups: list[str]) -> set[str]:
        return set(groups).union(*(self.ancestors(g) for g in groups))

    def _leave(self, member_of: set[str], group: str) -> None:
        """Ansible's rule for a host leaving a group: the group's ancestors go too, unless another of the host's
        groups still descends from them (`all` always stays). It applies even to a group the host is directly
        in, when that group is an ancestor of `ungrouped` — Ansible's behaviour, kept so both read alike."""
        member_of.discard(group)
        for ancestor in self.ancestors(group) - {"all"}:
            if ancestor in member_of and not any(ancestor in self.ancestors(g) for g in member_of):
                self._leave(member_of, ancestor)

    def groups_of(self, host: str) -> set[str]:
        entry = self.hosts[host]
        return entry.member_of if entry.member_of is not None else self._direct_and_ancestors(entry.groups)

    def listed_hosts(self) -> list[str]:
        """The hosts Ansible's `all` pattern gives: members of some group under `all`, in inventory order."""
        reachable = {"all"} | {g for g in self.groups if "all" in self.ancestors(g)}
        listed = {h for g in reachable for h in self.groups[g].hosts}
        return [name for name in self.hosts if name in listed]

    def ordered_groups(self, host: str, depths: dict[str, int]) -> list[str]:
        """The host's groups other than `all`, lowest precedence first."""
        names = self.groups_of(host) - {"all"}
        return sorted(names, key=lambda g: (depths[g], self.groups[g].priority, g))

    def resolve(self, file_vars: FileVars) -> dict[str, dict[str, Any]]:
        """Every host's vars after precedence, host_vars/ and group_vars/ included."""
        depths = self.depths()
        resolved: dict[str, dict[str, Any]] = {}
        for name in self.listed_hosts():
            host = self.hosts[name]
            groups = self.ordered_groups(name, depths)
            merged: dict[str, Any] = dict(self.groups["all"].vars)
            for group in groups:
                merged.update(self.groups[group].vars)
            merged.update(file_vars("group", "all"))
            for group in groups:
                merged.update(file_vars("group", group))
            merged.update(host.vars)
            merged.update(file_vars("host", name))
            resolved[name] = merged
        return resolved

    def as_ansible_list(self, hostvars: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The shape `ansible-inventory --list` prints: groups with hosts/children, then _meta.hostvars."""
        out: dict[str, Any] = {}
        seen: set[str] = set()

        def visit(name: str) -> None:
            group = self.groups[name]
            entry: dict[str, Any] = {}
            if name != "all" and group.hosts:
                entry["hosts"] = list(group.hosts)
            if group.children:
                entry["children"] = list(group.children)
            if entry:
                out[name] = entry
            for child in group.children:
                if child not in seen:
                    seen.add(child)
                    visit(child)

        visit("all")
        out["_meta"] = {"hostvars": {name: plain(v) for name, v in hostvars.items() if v}}
        return out


def plain(value: Any) -> Any:
    """Vars as JSON shows them (dates as ISO text, `!unsafe` text marked the way Ansible marks it)."""
    if isinstance(value, UnsafeText):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
