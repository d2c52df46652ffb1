"""docs/reference.md is what `python -m nodeboot.reference` prints now; the inventory var table holds
every var host_from_vars reads; docs/troubleshooting.md quotes only messages the code still prints
(issue 18.6)."""

from __future__ import annotations

import ast
import difflib
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest

from nodeboot import inventory, inventory_vars, reference

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
PREREQUISITES = ROOT / "docs" / "host-prerequisites.md"
PACKAGE = ROOT / "bootstrap" / "nodeboot"


def test_reference_doc_is_generated_from_the_code():
    want = reference.render()
    have = REFERENCE.read_text() if REFERENCE.exists() else ""
    if have != want:
        diff = "".join(difflib.unified_diff(have.splitlines(keepends=True), want.splitlines(keepends=True),
                                            "docs/reference.md", "generated now", n=1))
        pytest.fail(f"docs/reference.md is out of date; regenerate it with\n"
                    f"    .venv/bin/{reference.REGENERATE}\nand review the diff:\n{diff[:6000]}")


class _Recorder(dict):
    """Empty host vars that note every name asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False

    def get(self, key: Any, default: Any = None) -> Any:
        self.asked.add(str(key))
        return default

    def __getitem__(self, key: Any) -> Any:
        self.asked.add(str(key))
        raise KeyError(key)


@pytest.mark.parametrize("os_name", ["linux", "windows"])
def test_the_var_table_holds_every_var_host_parsing_reads(os_name):
    recorder = _Recorder()
    inventory.host_from_vars("probe", "probe", recorder, [os_name])
    assert recorder.asked, "the probe saw no reads"
    assert recorder.asked <= set(inventory_vars.BY_NAME), recorder.asked - set(inventory_vars.BY_NAME)


def test_every_table_var_is_read_somewhere():
    recorder = _Recorder()
    inventory.host_from_vars("probe", "probe", recorder, [])
    steps = {name for name in inventory_vars.READ_BY_STEPS
             if any(name in p.read_text() for p in (PACKAGE / "steps").glob("*.py"))}
    assert set(inventory_vars.BY_NAME) == recorder.asked | steps


def test_known_vars_come_from_the_table():
    table = {v.name for v in inventory_vars.VARS if v.name.startswith("nodeboot_")}
    assert table <= inventory.known_nodeboot_vars()


def _options_of(command: click.Command) -> set[str]:
    found = {opt for p in command.params for opt in [*p.opts, *getattr(p, "secondary_opts", [])]}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found |= _options_of(sub)
    return found


def test_every_flag_the_table_names_exists():
    options = _options_of(reference.root_command())
    named = {v.flag for v in inventory_vars.VARS if v.flag}
    assert named and named <= options, named - options


def test_the_root_command_is_the_console_scripts():
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["nodeboot"]
    module, _, attr = script.partition(":")
    assert reference.entry_point() is getattr(importlib.import_module(module), attr)
    root = reference.root_command()
    assert {"join", "reset", "verify", "proxy"} <= set(root.commands)  # type: ignore[attr-defined]


# -- docs/troubleshooting.md and docs/host-prerequisites.md: the messages they quote ------------------
HOLE = "\x00"  # where a message's varying part goes


def _source_strings() -> list[str]:
    """Every string literal in nodeboot's Python (f-strings with HOLE for each value, implicit
    concatenation joined as the parser joins it) and every line of its host scripts ($VAR as HOLE)."""
    found: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                found.append("".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values))
    scripts = (PACKAGE / "scripts").resolve()  # a link to the repository's scripts/: rglob would not follow it
    for path in [*scripts.rglob("*.sh"), *scripts.rglob("*.ps1")]:
        found += path.read_text().splitlines()
    return found


def _quoted_shapes() -> list[str]:
    """The doc's `> \\`...\\`` lines: each a message shape, <...> where the message varies."""
    return re.findall(r"^\s*> `([^`]+)`\s*$", TROUBLESHOOTING.read_text(), flags=re.M)


def _pattern(shape: str, hole: str = r"<[^<>]*>") -> re.Pattern[str]:
    fragments = [f for f in re.split(hole, shape) if f.strip()]
    return re.compile(".*?".join(re.escape(f) for f in fragments), re.S)


def test_troubleshooting_quotes_messages_the_code_prints():
    shapes = _quoted_shapes()
    assert len(shapes) > 30, "the doc's quoted messages were not found"
    sources = _source_strings()
    missing = [s for s in shapes if not any(_pattern(s).search(text) for text in sources)]
    assert not missing, ("docs/troubleshooting.md quotes messages no longer in the code; update it:\n"
                         + "\n".join(missing))


def test_a_changed_message_is_caught():
    sources = _source_strings()
    assert any(_pattern("host key for <host> CHANGED: known_hosts <path> has <fp>").search(t) for t in sources)
    assert not any(_pattern("host key for <host> CHANGED: known-hosts <path> holds <fp>").search(t)
                   for t in sources)


def test_host_prerequisites_quotes_messages_the_code_prints():
    """Its messages are in italics, with … for the parts that vary."""
    spans = re.findall(r"(?<![\w*`])\*(?!\s)([^*]+?)(?<!\s)\*(?![\w*])", PREREQUISITES.read_text())
    shapes = [" ".join(span.split()) for span in spans]
    assert len(shapes) > 25, "the doc's quoted messages were not found"
    sources = _source_strings()
    missing = [s for s in shapes if not any(_pattern(s, "…").search(text) for text in sources)]
    assert not missing, ("docs/host-prerequisites.md quotes messages no longer in the code; update it:\n"
                         + "\n".join(missing))
