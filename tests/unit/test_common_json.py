"""common.sh's JSON encoding (nb_json_into, through nb_fact_str and nb_emit), run by a local
bash: every value comes back as the same string after json.loads, except the control characters
the encoder drops (carriage return and the C0 range other than newline and tab). Plain values
take a shortcut past the substitutions; these cases cover both ways."""

from __future__ import annotations

import json

import pytest

from localshell import host_script_facts, run_host_script
from nodeboot.scripts import script_text, shell_preamble

DROPPED = {chr(c) for c in range(1, 32)} - {"\n", "\t"}

VALUES = [
    "",
    "plain",
    "Debian GNU/Linux 12 (bookworm)",
    "with space and = sign",
    'a "quoted" word',
    "back\\slash",
    "\\",
    '"',
    "two\nlines",
    "tab\there",
    "carriage\rreturn",
    "bell\x07 and escape\x1b[0m",
    "\x01\x1f",
    "del\x7fchar",
    "unicode é ✓",
    "ends with backslash\\",
]


def with_common(body: str, variables: dict[str, str]) -> str:
    """common.sh, then body, as a host script's text."""
    return shell_preamble(variables) + script_text("linux", "common.sh") + body


def encoded_by_bash(value: str) -> str:
    facts = host_script_facts("json", with_common('nb_fact_str value "$NB_VALUE"\nnb_ok\n', {"NB_VALUE": value}))
    return str(facts["value"])


@pytest.mark.parametrize("value", VALUES, ids=[repr(v) for v in VALUES])
def test_a_value_survives_the_encoding(value: str) -> None:
    assert encoded_by_bash(value) == "".join(c for c in value if c not in DROPPED)


def test_the_result_line_is_one_line_of_json_whatever_the_values() -> None:
    body = 'nb_fact_str a "$NB_A"\nnb_fact_list b "$NB_A" "$NB_B"\nnb_ok\n'
    _, proc = run_host_script("json", with_common(body, {"NB_A": "x\ny", "NB_B": 'q"\\'}))
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["facts"] == {"a": "x\ny", "b": ["x\ny", 'q"\\'], "actions": []}
