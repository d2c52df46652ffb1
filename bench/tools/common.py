"""What every tool driver reads: the hosts file the orchestrator writes.

hosts.json: {"key": path, "known_hosts": path, "artifact": path,
             "hosts": [{"name", "address", "port", "root"}, ...]}
"""

from __future__ import annotations

import json
import shlex
import sys
from functools import cache
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from workload import (  # noqa: E402
    ARTIFACT_SIZE,
    JOIN_FORMAT,
    MODULES,
    SYSCTL,
    artifact_sha256,
)


@cache
def host_script(name: str) -> str:
    """bench/scripts/NAME as sent to a host: lib.sh first when the script uses it (read
    once per process: the nodeboot driver asks for it per host and phase)."""
    text = (BENCH / "scripts" / name).read_text()
    return (BENCH / "scripts" / "lib.sh").read_text() + text if "nb_read_facts" in text or "nb_put" in text else text


def load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def script_vars(root: str) -> dict[str, str]:
    """The inputs of the host scripts (prep.sh, upload.sh, nb-*.sh), one host's."""
    return {
        "NB_ROOT": root,
        "NB_MODULES": MODULES,
        "NB_SYSCTL": SYSCTL,
        "NB_ARTIFACT_SHA": artifact_sha256(),
        "NB_ARTIFACT_SIZE": str(ARTIFACT_SIZE),
        "NB_JOIN_FORMAT": JOIN_FORMAT,
    }


def preamble(variables: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in variables.items())
