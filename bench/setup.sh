#!/bin/sh
# The bench's own environment (the peers are not nodeboot dependencies):
# bench/.venv with Ansible, pyinfra v3, matplotlib and py-spy, versions as measured.
# Needs: python3.11, openssh-server, openssh-client, iproute2 (Debian packages).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python3.11 -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q "ansible-core==2.19.14" "pyinfra==3.10.0" "matplotlib==3.11.2" "py-spy==0.4.3"
"$here/.venv/bin/pip" list 2>/dev/null | grep -iE "^(ansible-core|pyinfra|paramiko|matplotlib|py-spy) "
