"""--skip-tags PHASE skips that phase's tasks and no other's, as --skip-phases does in nodeboot's own
engine (issue 14, item 18: --skip-tags kubeadm-join also skipped wait-ready, label-taint and
delete-token, whose tasks sat in a block tagged kubeadm-join)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "playbooks" / "roles"
TASK_FILES = sorted(ROLES.glob("*/tasks/*.yml"))


def tasks_with_tags(tasks: list[dict], inherited: frozenset[str] = frozenset()):
    """(name, effective tags) of every task, through blocks, rescue and always."""
    for task in tasks or []:
        tags = inherited | frozenset(task.get("tags") or [])
        yield task.get("name", ""), tags
        for section in ("block", "rescue", "always"):
            yield from tasks_with_tags(task.get(section) or [], tags)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_a_phase_task_carries_only_its_own_phase_tag(path: Path):
    wrong = []
    for name, tags in tasks_with_tags(yaml.safe_load(path.read_text())):
        phase, sep, _ = name.partition(":")
        if sep and " " not in phase and tags and tags != {phase}:
            wrong.append(f"{name!r} has tags {sorted(tags)}")
    assert not wrong, wrong


def test_after_join_and_token_tasks_are_tagged_by_their_phases():
    after = yaml.safe_load((ROLES / "nodeboot_cluster" / "tasks" / "after_join.yml").read_text())
    assert [t["tags"] for t in after] == [["wait-ready"], ["label-taint"]]
    token = yaml.safe_load((ROLES / "nodeboot_cluster" / "tasks" / "delete_token.yml").read_text())
    assert [t["tags"] for t in token] == [["delete-token"]]
