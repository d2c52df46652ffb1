"""Every Linux host script passes shellcheck, read as bash (they run under bash -s)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "scripts" / "linux").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (Debian package shellcheck; .ci/setup installs it)")
    proc = subprocess.run(["shellcheck", "-s", "bash", script.name], cwd=script.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_every_script_that_uses_the_protocol_gets_common_sh() -> None:
    from nodeboot.scripts import script_text

    for script in SCRIPTS:
        if script.name != "common.sh":
            text = script_text("linux", script.name)
            assert text.startswith("# common.sh"), script.name
            assert text.count("exec 3>&1 1>&2") == 1, script.name  # stdout is redirected exactly once
