"""--parallel against the open-file limit: raised when the hard limit allows, else
fewer hosts at once with a message (each case in a child process with its own limits)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

CHILD = """
import json, resource
from nodeboot.runner import fit_parallel_to_fds
fit, warning = fit_parallel_to_fds(500)
print(json.dumps([fit, warning, resource.getrlimit(resource.RLIMIT_NOFILE)[0]]))
"""


def fit_under(soft: int, hard: int) -> tuple[int, str | None, int]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                         preexec_fn=limit).stdout
    fit, warning, new_soft = json.loads(out)
    return fit, warning, new_soft


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4096, reason="hard limit below 4096 here")
def test_soft_limit_raised_when_the_hard_limit_allows() -> None:
    assert fit_under(1024, 4096) == (500, None, 64 + 4 * 500)


def test_fewer_hosts_at_once_when_the_hard_limit_is_low() -> None:
    fit, warning, new_soft = fit_under(512, 1024)
    assert fit == (1024 - 64) // 4 and new_soft == 1024
    assert warning is not None and "--parallel 500" in warning and f"running {fit} hosts at a time" in warning
