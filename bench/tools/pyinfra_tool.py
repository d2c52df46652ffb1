"""pyinfra v3 on the bench workload: --parallel N, the same known_hosts
(strict), key and key exchange (pyinfra uses paramiko).

Writes inventory.py and deploy.py next to HOSTS_JSON and runs pyinfra in
place of this process.

usage: pyinfra_tool.py HOSTS_JSON PARALLEL
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from common import load

BENCH = Path(__file__).resolve().parents[1]

DEPLOY = '''
import sys
sys.path.insert(0, {bench!r})
from io import StringIO

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

from workload import ARTIFACT_PATH, DIRS, JOIN_FORMAT, JOIN_PATH, MODULES, MODULES_PATH, SYSCTL, SYSCTL_PATH

R = host.data.nb_root
facts = host.get_fact(Command, "echo \\"$(hostname) $(uname -r) $(uname -m) $(awk 'NR>1' /proc/swaps | wc -l)\\"")
for d in (*DIRS, "etc/modules-load.d", "etc/sysctl.d"):
    files.directory(name=f"dir {{d}}", path=f"{{R}}/{{d}}")
files.put(name="modules-load", src=StringIO(MODULES), dest=f"{{R}}/{{MODULES_PATH}}")
files.put(name="sysctl", src=StringIO(SYSCTL), dest=f"{{R}}/{{SYSCTL_PATH}}")
files.put(name="artifact", src=host.data.nb_artifact, dest=f"{{R}}/{{ARTIFACT_PATH}}")
if not host.get_fact(File, path=f"{{R}}/{{JOIN_PATH}}"):
    server.shell(name="join", commands=[f"printf '{{JOIN_FORMAT}}' {{facts}} > {{R}}/{{JOIN_PATH}}"])
'''


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = load(str(spec_path))
    parallel = int(sys.argv[2])
    work = spec_path.parent / "pyinfra"
    work.mkdir(parents=True, exist_ok=True)
    common = {"ssh_user": "root", "ssh_key": spec["key"], "ssh_known_hosts_file": spec["known_hosts"],
              "ssh_strict_host_key_checking": "yes", "ssh_port": None, "nb_artifact": spec["artifact"]}
    lines = ["hosts = ["]
    for h in spec["hosts"]:
        data = dict(common, ssh_port=h["port"], nb_root=h["root"], ssh_hostname=h["address"])
        lines.append(f"    ({h['name']!r}, {data!r}),")
    lines.append("]")
    (work / "inventory.py").write_text("\n".join(lines) + "\n")
    (work / "deploy.py").write_text(DEPLOY.format(bench=str(BENCH)))
    exe = Path(sys.executable).parent / "pyinfra"
    os.chdir(work)
    os.execv(str(exe), [str(exe), "inventory.py", "deploy.py", "-y", "--parallel", str(parallel)])


if __name__ == "__main__":
    main()
