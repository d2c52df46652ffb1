"""Starts a lab Windows host: the WinRM endpoint (real WS-Management, NTLM,
message encryption, HTTP 5985 and HTTPS 5986) inside the host's sandbox, with
the Windows host model behind it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from nodeboot_lab import pki, python_path
from nodeboot_lab.netns import Sandbox, start_in

if TYPE_CHECKING:
    from nodeboot_lab.lab import HostRecord, Lab

HANDLER = "nodeboot_lab.windows_model:WindowsHostModel"


def start(lab: Lab, box: Sandbox, host: HostRecord) -> int:
    from nodeboot_lab.lab import WINDOWS_USER

    win = lab.state / "winrm"
    ca_crt, ca_key = pki.make_ca(win)
    crt, key = pki.make_server_cert(ca_crt, ca_key, box.root / "winrm", host.name, [host.address])
    users = box.root / "winrm" / "users"
    password = (win / "password").read_text().strip()
    # Local accounts: NTLM clients send the computer name or nothing as the domain.
    users.write_text(f"{host.name.upper()}:{WINDOWS_USER}:{password}\n:{WINDOWS_USER}:{password}\n")
    users.chmod(0o600)
    state = box.root / "model"
    state.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "nodeboot_lab.winrm_server",
        "--listen", host.address, "--http-port", "5985", "--https-port", "5986",
        "--cert", str(crt), "--key", str(key), "--users", str(users),
        "--state-dir", str(state), "--handler", HANDLER,
    ]
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "PYTHONPATH": python_path(), "NB_LAB_COMPUTER_NAME": host.name}
    return start_in(box, argv, box.root / "winrm.log", env=env)

