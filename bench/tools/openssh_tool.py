"""OpenSSH ControlMaster + xargs -P N: one openssh_host.sh per host.

usage: openssh_tool.py HOSTS_JSON PARALLEL
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from common import load, script_vars

HERE = Path(__file__).resolve().parent


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = load(str(spec_path))
    parallel = int(sys.argv[2])
    work = spec_path.parent / "openssh"
    cp_dir = work / "cp"
    cp_dir.mkdir(parents=True, exist_ok=True)
    variables = {k: v for k, v in script_vars("").items() if k != "NB_ROOT"}
    (work / "vars.sh").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in variables.items()))
    (work / "hosts.txt").write_text("".join(f"{h['name']} {h['address']} {h['port']} {h['root']}\n"
                                            for h in spec["hosts"]))
    env = dict(os.environ, NB_KEY=spec["key"], NB_KNOWN_HOSTS=spec["known_hosts"], NB_CP_DIR=str(cp_dir),
               NB_VARS=str(work / "vars.sh"), NB_ARTIFACT=spec["artifact"])
    fd = os.open(work / "hosts.txt", os.O_RDONLY)
    os.dup2(fd, 0)
    os.execvpe("xargs", ["xargs", "-P", str(parallel), "-L", "1", str(HERE / "openssh_host.sh")], env)


if __name__ == "__main__":
    main()
