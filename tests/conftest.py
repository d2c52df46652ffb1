"""Shared fixtures: one lab per test session (real control plane, sandboxed hosts).

Tests reserve the hosts they use, so modules never step on each other's nodes:
`lab.reserve(3)` hands out three Linux hosts nobody else has had.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bootstrap"))
sys.path.insert(0, str(ROOT / "lab"))
sys.path.insert(0, str(ROOT / "tests"))

from labkit import LabHandle  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests under tests/integration need the lab; mark them so `-m "not lab"` runs the rest alone.
    for item in items:
        needs_lab = "integration" in item.path.parts and item.path.name != "test_winrm_lab.py"
        if needs_lab and "lab" not in item.keywords:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session", autouse=True)
def version_cache_of_local_scripts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """facts.sh keeps the versions it read in /run/nodeboot; scripts that tests run in a local bash
    inherit this variable and keep them in the session's temporary directory instead, so this
    machine's /run is not written. (Lab hosts have their own /run.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NB_VERSION_CACHE", str(tmp_path_factory.mktemp("run") / "nodeboot" / "versions"))
        yield


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network and mount namespaces); run the suite as root")
    state = Path(os.environ.get("NODEBOOT_TEST_LAB_STATE", "/tmp/nodeboot-test-lab"))
    handle = LabHandle.start(
        state,
        linux=int(os.environ.get("NODEBOOT_TEST_LINUX", "56")),
        windows=int(os.environ.get("NODEBOOT_TEST_WINDOWS", "6")),
        work=tmp_path_factory.mktemp("lab-work"),
    )
    try:
        yield handle
    finally:
        handle.stop()
