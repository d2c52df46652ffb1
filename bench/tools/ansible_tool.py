"""Tuned Ansible on the bench workload: forks=N, pipelining, ControlPersist,
no fact gathering, the same key exchange, strict host key checking.

Writes an inventory, ansible.cfg and playbook next to HOSTS_JSON, then runs
ansible-playbook in place of this process. The ControlMaster sockets live in a
directory of their own, which the bench closes (ssh -O exit) after the run.

usage: ansible_tool.py HOSTS_JSON PARALLEL
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from common import load

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hosts import CIPHER, HOSTKEY_ALG, KEX  # noqa: E402
from workload import (  # noqa: E402
    ARTIFACT_PATH,
    DIRS,
    JOIN_FORMAT,
    JOIN_PATH,
    MODULES,
    MODULES_PATH,
    SYSCTL,
    SYSCTL_PATH,
)

PLAY = [{
    "name": "node prep",
    "hosts": "all",
    "gather_facts": False,
    "tasks": [
        {"name": "facts", "shell": "echo \"$(hostname) $(uname -r) $(uname -m) $(awk 'NR>1' /proc/swaps | wc -l)\"",
         "register": "f", "changed_when": False},
        {"name": "directories", "file": {"path": "{{ nb_root }}/{{ item }}", "state": "directory"},
         "loop": [*DIRS, "etc/modules-load.d", "etc/sysctl.d"]},
        {"name": "modules-load", "copy": {"content": MODULES, "dest": f"{{{{ nb_root }}}}/{MODULES_PATH}"}},
        {"name": "sysctl", "copy": {"content": SYSCTL, "dest": f"{{{{ nb_root }}}}/{SYSCTL_PATH}"}},
        {"name": "artifact", "copy": {"src": "{{ nb_artifact }}", "dest": f"{{{{ nb_root }}}}/{ARTIFACT_PATH}"}},
        {"name": "join", "shell": f"printf '{JOIN_FORMAT}' {{{{ f.stdout.split() | join(' ') }}}} > "
                                  f"{{{{ nb_root }}}}/{JOIN_PATH}",
         "args": {"creates": f"{{{{ nb_root }}}}/{JOIN_PATH}"}},
    ],
}]


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = load(str(spec_path))
    parallel = int(sys.argv[2])
    work = spec_path.parent / "ansible"
    cp_dir = work / "cp"
    cp_dir.mkdir(parents=True, exist_ok=True)
    inventory = {"all": {"vars": {"ansible_user": "root", "ansible_ssh_private_key_file": spec["key"],
                                  "ansible_python_interpreter": "/usr/bin/python3", "nb_artifact": spec["artifact"]},
                         "hosts": {h["name"]: {"ansible_host": h["address"], "ansible_port": h["port"],
                                               "nb_root": h["root"]} for h in spec["hosts"]}}}
    (work / "inventory.json").write_text(json.dumps(inventory))
    (work / "play.json").write_text(json.dumps(PLAY))  # JSON is YAML
    ssh_args = (f"-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={spec['known_hosts']} "
                f"-o StrictHostKeyChecking=yes -o KexAlgorithms={KEX} -o Ciphers={CIPHER} "
                f"-o HostKeyAlgorithms={HOSTKEY_ALG} -o BatchMode=yes")
    (work / "ansible.cfg").write_text(
        "[defaults]\n"
        f"forks = {parallel}\nhost_key_checking = True\ngathering = explicit\nretry_files_enabled = False\n"
        f"local_tmp = {work / 'tmp'}\ninterpreter_python = /usr/bin/python3\n"
        "[ssh_connection]\npipelining = True\n"
        f"ssh_args = {ssh_args}\ncontrol_path_dir = {cp_dir}\ncontrol_path = %(directory)s/%%C\n"
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(work / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    exe = Path(sys.executable).parent / "ansible-playbook"
    os.execve(str(exe), [str(exe), "-i", str(work / "inventory.json"), str(work / "play.json")], env)


if __name__ == "__main__":
    main()
