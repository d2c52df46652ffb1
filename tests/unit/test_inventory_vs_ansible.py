"""Differential test: generated inventories read by nodeboot and by `ansible-inventory --list` give the same
hosts, groups (hosts and children, in order) and vars (issue 18.1).

Each of the 10 examples writes three inventories (YAML or INI; vars on all, groups and hosts; children; host ranges and
:port; host_vars/ and group_vars/ as files with every extension and as directories) and runs the three
`ansible-inventory` processes at once: ansible-core takes about a second of CPU to start, so the run costs
about 20 s of CPU (a minute or so of wall time on a busy 2-core machine). Only plain data vars are generated:
templating is Ansible's, not nodeboot's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeboot import inventory_cmd
from nodeboot.errors import UsageError

ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
INVENTORIES_PER_EXAMPLE = 3

GROUPS = ["web", "db", "linux", "windows", "edge", "zeta", "g_1", "alpha", "ungrouped"]
YAML_ONLY_GROUPS = ["my-group"]  # INI makes section names valid variable names; YAML keeps them
# pattern -> the host names it stands for (the test's own expectation, used to name host_vars files)
PATTERNS = {
    "h1": ["h1"],
    "h2.example.com": ["h2.example.com"],
    "web-[1:3]": ["web-1", "web-2", "web-3"],
    "node[01:03]": ["node01", "node02", "node03"],
    "db[a:c]": ["dba", "dbb", "dbc"],
    "n[1:7:3]": ["n1", "n4", "n7"],
    "10.0.0.[1:2]": ["10.0.0.1", "10.0.0.2"],
    "h3:2222": ["h3"],
    "web-[2:4]:2200": ["web-2", "web-3", "web-4"],
    "[fd00::5]:2022": ["fd00::5"],
}
VAR_NAMES = ["v1", "v2", "v3", "ansible_user", "ansible_port", "nodeboot_proxy_mode", "nodeboot_labels",
             "ansible_group_priority"]
# INI values are written as text; both readers turn them into Python literals or keep the text.
INI_VALUES = ["1", "-3", "0x10", "1.5", "True", "false", "yes", "None", "root", "'quoted'", "[1,2]",
              "{'a':1}", "\"a b\"", "x#y", "1_000", "''", "ipvs", "a=b", "(1,2)"]
yaml_scalars = st.one_of(st.integers(-5, 70000), st.booleans(), st.none(), st.sampled_from(
    ["root", "yes", "no", "1.0", "ipvs", "", "a b", "10.0.0.1", "0x10", "~", "on", "2024-01-01"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32))
yaml_values = st.one_of(yaml_scalars, st.lists(yaml_scalars, max_size=3),
                        st.dictionaries(st.sampled_from(["tier", "zone", "a"]), yaml_scalars, max_size=2))


@dataclass
class GenGroup:
    name: str
    vars: dict[str, Any]
    hosts: list[tuple[str, dict[str, Any]]]
    children: list[str]
    odd_key: bool = False  # YAML: a key that is not hosts/vars/children (both readers skip it)


@dataclass
class GenInventory:
    form: str  # "yaml" | "ini"
    all_vars: dict[str, Any]
    loose_hosts: list[tuple[str, dict[str, Any]]]
    groups: list[GenGroup]
    vars_files: list[tuple[str, str, str, list[dict[str, Any]]]] = field(default_factory=list)
    # (kind, name, layout, contents): layout "", ".yml", ".yaml", ".json" or "dir"
    ini_order: list[int] = field(default_factory=list)


@st.composite
def inventories(draw: st.DrawFn) -> GenInventory:
    form = draw(st.sampled_from(["yaml", "ini"]))
    values = st.sampled_from(INI_VALUES) if form == "ini" else yaml_values
    var_maps = st.dictionaries(st.sampled_from(VAR_NAMES[:-1]), values, max_size=3)
    group_var_maps = st.dictionaries(st.sampled_from(VAR_NAMES), values, max_size=3)
    if form == "ini":  # a priority must be a whole number for both readers
        group_var_maps = group_var_maps.map(lambda m: {k: ("2" if k == "ansible_group_priority" else v)
                                                       for k, v in m.items()})
    else:
        group_var_maps = group_var_maps.map(lambda m: {k: (3 if k == "ansible_group_priority" else v)
                                                       for k, v in m.items()})
    pool = GROUPS + YAML_ONLY_GROUPS if form == "yaml" else GROUPS
    names = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=True))
    host_entries = st.lists(st.tuples(st.sampled_from(list(PATTERNS)), var_maps), max_size=3)
    groups = []
    for index, name in enumerate(names):
        later = names[index + 1:]  # children only among later groups: no cycles
        children = draw(st.lists(st.sampled_from(later), unique=True, max_size=2)) if later else []
        groups.append(GenGroup(name, draw(group_var_maps), draw(host_entries), children, draw(st.booleans())))
    inv = GenInventory(form, draw(var_maps), draw(host_entries), groups)
    inv.ini_order = draw(st.permutations(list(range(len(groups)))))
    all_hosts = sorted({h for pattern, _ in [*inv.loose_hosts, *(e for g in groups for e in g.hosts)]
                        for h in PATTERNS[pattern]})
    file_vars = st.dictionaries(st.sampled_from(VAR_NAMES), yaml_values, min_size=1, max_size=3)
    layouts = st.sampled_from(["", ".yml", ".yaml", ".json", "dir", "two", "empty"])
    for kind, pool in (("group", ["all", *names]), ("host", all_hosts)):
        if not pool:
            continue
        for name in draw(st.lists(st.sampled_from(pool), unique=True, max_size=3)):
            layout = draw(layouts)
            contents = draw(st.lists(file_vars, min_size=1, max_size=3 if layout in ("dir", "two") else 1))
            inv.vars_files.append((kind, name, layout, contents))
    return inv


# -- writing ------------------------------------------------------------------------------------
def write_inventory(inv: GenInventory, folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / ("hosts.yml" if inv.form == "yaml" else "hosts.ini")
    path.write_text(yaml_text(inv) if inv.form == "yaml" else ini_text(inv))
    for kind, name, layout, contents in inv.vars_files:
        base = folder / f"{kind}_vars"
        base.mkdir(exist_ok=True)
        if layout == "dir":
            write_vars_dir(base / name, contents)
        elif layout == "two":  # NAME and NAME.yml both there: only the first in Ansible's order counts
            (base / name).write_text(yaml.safe_dump(contents[0]))
            (base / f"{name}.yml").write_text(yaml.safe_dump(contents[-1] | {"v3": "from NAME.yml"}))
        elif layout == "empty":
            (base / f"{name}.yml").write_text("# nothing yet\n")
        else:
            data = contents[0]
            text = json.dumps(data) if layout == ".json" else yaml.safe_dump(data)
            (base / f"{name}{layout}").write_text(text)
    return path


def write_vars_dir(folder: Path, contents: list[dict[str, Any]]) -> None:
    """Files Ansible reads in name order (one in a subdirectory), and files it skips."""
    (folder / "sub").mkdir(parents=True)
    readable = [folder / "10-main.yml", folder / "sub" / "20.yaml", folder / "30"]
    for path, data in zip(readable, contents, strict=False):
        path.write_text(yaml.safe_dump(data))
    for skipped in (".hidden.yml", "40.yml~", "50.txt"):
        (folder / skipped).write_text("v1: from-a-skipped-file\n")


def yaml_text(inv: GenInventory) -> str:
    by_name = {g.name: g for g in inv.groups}
    parents: dict[str, list[str]] = {g.name: [] for g in inv.groups}
    for group in inv.groups:
        for child in group.children:
            parents[child].append(group.name)

    def body(group: GenGroup, defined: set[str]) -> dict[str, Any]:
        defined.add(group.name)
        out: dict[str, Any] = {}
        if group.vars:
            out["vars"] = group.vars
        if group.hosts:
            out["hosts"] = {pattern: (hvars or None) for pattern, hvars in group.hosts}
            if len(group.hosts) == 1 and not group.hosts[0][1]:
                out["hosts"] = group.hosts[0][0]  # `hosts: NAME`, Ansible's short form for one host
        if group.odd_key:
            out["host"] = {"typo": {"v1": 1}}
        if group.children:
            # A child is spelled out under its first parent; other parents only name it.
            out["children"] = {c: (body(by_name[c], defined) if c not in defined and parents[c][0] == group.name
                                   else None) for c in group.children}
        return out

    defined: set[str] = set()
    top: dict[str, Any] = {}
    all_group: dict[str, Any] = {}
    if inv.all_vars:
        all_group["vars"] = inv.all_vars
    if inv.loose_hosts:
        all_group["hosts"] = {pattern: (hvars or None) for pattern, hvars in inv.loose_hosts}
    roots = [g for g in inv.groups if not parents[g.name]]
    under_all = {g.name: body(g, defined) for g in roots[::2]}  # some groups under all, some beside it
    if under_all:
        all_group["children"] = under_all
    top["all"] = all_group
    for group in roots[1::2]:
        top[group.name] = body(group, defined)
    return yaml.safe_dump(top, sort_keys=False)


def ini_text(inv: GenInventory) -> str:
    def host_line(pattern: str, hvars: dict[str, Any]) -> str:
        return " ".join([pattern, *(f"{k}={v}" for k, v in hvars.items())])

    lines = [host_line(p, v) for p, v in inv.loose_hosts]
    if inv.all_vars:
        lines += ["[all:vars]", *(f"{k}={v}" for k, v in inv.all_vars.items())]
    for index in inv.ini_order:  # sections in any order: a child may be named before it is defined
        group = inv.groups[index]
        lines += [f"[{group.name}:vars]", *(f"{k}={v}" for k, v in group.vars.items())] if group.vars else []
        lines += [f"[{group.name}]", *(host_line(p, v) for p, v in group.hosts)]
        lines += [f"[{group.name}:children]", *group.children] if group.children else []
    return "\n".join(lines) + "\n"


# -- reading ------------------------------------------------------------------------------------
def ansible_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=str(home), ANSIBLE_NOCOLOR="1", ANSIBLE_INVENTORY_UNPARSED_FAILED="1",
               ANSIBLE_LOCAL_TEMP=str(home / "tmp"), ANSIBLE_DEPRECATION_WARNINGS="0")
    return env


def read_with_ansible(paths: list[Path], home: Path) -> list[dict[str, Any] | str]:
    runs = [subprocess.Popen([str(ANSIBLE_INVENTORY), "-i", str(p), "--list"], cwd=home, env=ansible_env(home),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in paths]
    documents = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        if run.returncode != 0:
            documents.append(f"refused: {err.strip()}")
            continue
        document = json.loads(out)
        document["_meta"].pop("profile", None)
        documents.append(document)
    return documents


def read_with_nodeboot(path: Path) -> dict[str, Any] | str:
    """The --list document, or the one-line refusal."""
    try:
        document, _warnings = inventory_cmd.listing(str(path))
    except UsageError as exc:
        return f"refused: {exc}"
    return json.loads(json.dumps(document))


def features(inv: GenInventory) -> set[str]:
    """What an inventory exercises, to show the generated set covers every rule under test."""
    entries = [*inv.loose_hosts, *(e for g in inv.groups for e in g.hosts)]
    found = {inv.form}
    found |= {"range" for p, _ in entries if "[" in p.lstrip("[")} | {"port" for p, _ in entries if ":" in p}
    found |= {"children" for g in inv.groups if g.children} | {"all vars" for _ in [1] if inv.all_vars}
    found |= {"group priority" for g in inv.groups if "ansible_group_priority" in g.vars}
    found |= {"host in two groups" for _ in [1] if len({p for p, _ in entries}) < len(entries)}
    found |= {f"{kind}_vars {layout if layout in ('dir', 'two', 'empty') else 'file' + layout}"
              for kind, _, layout, _ in inv.vars_files}
    found |= {"ungrouped named" for g in inv.groups if g.name == "ungrouped"}
    found |= {"odd key" for g in inv.groups if g.odd_key and inv.form == "yaml"}
    return found


REQUIRED_FEATURES = {"yaml", "ini", "range", "port", "children", "all vars", "group priority", "host in two groups",
                     "group_vars dir", "host_vars dir", "group_vars file", "group_vars file.yml",
                     "host_vars file.yaml", "group_vars file.json", "host_vars file", "ungrouped named", "odd key",
                     "group_vars two", "host_vars empty"}


@pytest.mark.skipif(not ANSIBLE_INVENTORY.exists(), reason="ansible-core (the test extra) is not installed")
def test_nodeboot_reads_inventories_as_ansible_does(tmp_path_factory):
    seen: set[str] = set()
    compared = {"inventories": 0, "refused by both": 0}

    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batch=st.lists(inventories(), min_size=INVENTORIES_PER_EXAMPLE, max_size=INVENTORIES_PER_EXAMPLE))
    def check(batch: list[GenInventory]) -> None:
        home = tmp_path_factory.mktemp("diff")
        (home / "tmp").mkdir()
        paths = [write_inventory(inv, home / f"inv{n}") for n, inv in enumerate(batch)]
        for inv, path, expected in zip(batch, paths, read_with_ansible(paths, home), strict=True):
            got = read_with_nodeboot(path)
            if isinstance(expected, str):  # Ansible refused the file: so must nodeboot
                assert isinstance(got, str), f"ansible refused, nodeboot read {path}:\n{path.read_text()}\n{expected}"
                compared["refused by both"] += 1
            else:
                assert got == expected, f"{path}:\n{path.read_text()}"
            compared["inventories"] += 1
            seen.update(features(inv))

    check()
    assert not REQUIRED_FEATURES - seen, f"the generated inventories never had {REQUIRED_FEATURES - seen}"
    assert compared["refused by both"] < compared["inventories"] / 4, compared  # mostly real comparisons
