"""Pick and configure the transport for a host from its inventory entry."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from nodeboot.errors import UsageError
from nodeboot.inventory import Host
from nodeboot.redact import Redactor
from nodeboot.transport import Transport, ssh_config
from nodeboot.transport.ssh import SSHOptions, SSHTransport


@dataclass
class ConnectionDefaults:
    """Command-line connection options; inventory vars win where both are set."""

    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    winrm_ca: str | None = None
    insecure_skip_tls_verify: bool = False


# Where a Windows host's password comes from when its inventory names none.
WINRM_PASSWORD_ENV = "NODEBOOT_WINRM_PASSWORD"


def host_password(host: Host) -> str | None:
    """The host's password (from its variable, read now), None if it needs none.

    One rule for every command: a password the host needs and cannot have is a
    usage error (exit 2), found before anything runs."""
    password = host.secret()
    if host.password_env and password is None:
        raise UsageError(f"host {host.name}: environment variable {host.password_env} (its password) is not set")
    if host.connection == "winrm" and password is None:
        password = os.environ.get(WINRM_PASSWORD_ENV)
        if password is None:
            raise UsageError(f"host {host.name}: no WinRM password: set {WINRM_PASSWORD_ENV} "
                             "(or name another variable with --password-env / nodeboot_password_env)")
    return password


def check_passwords(hosts: list[Host]) -> None:
    """Every host's password is there, or one usage error naming the hosts that lack one."""
    problems = []
    for host in hosts:
        try:
            host_password(host)
        except UsageError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 3} more hosts)" if len(problems) > 3 else ""
        raise UsageError("; ".join(problems[:3]) + more)


def make_transport(host: Host, defaults: ConnectionDefaults, redactor: Redactor) -> Transport:
    password = host_password(host)
    redactor.add(password)
    if host.connection == "winrm":
        from nodeboot.transport.winrm import WinRMOptions, WinRMTransport

        options = WinRMOptions(
            user=host.user or "Administrator",
            password=password,
            scheme=host.winrm_scheme,
            port=host.port,
            transport=host.winrm_transport,
            ca_file=host.winrm_ca or defaults.winrm_ca,
            insecure_skip_tls_verify=host.winrm_insecure or defaults.insecure_skip_tls_verify,
            connect_timeout=defaults.connect_timeout,
        )
        return WinRMTransport(host.address, options, name=host.name)
    if host.connection != "ssh":
        raise UsageError(f"host {host.name}: connection {host.connection!r} is not supported for a join")
    # Inventory, then ssh args and ssh_config, then defaults: ssh_config.py says why.
    route = ssh_config.resolve(host.name, host.address, host.user, host.port, host.key_file, host.ssh_args)
    target = route.target
    ssh_options = SSHOptions(
        user=target.user,
        port=target.port,
        key_file=host.key_file,
        key_files=target.key_files[1:] if target.explicit_key else target.key_files,
        identities_only=target.identities_only,
        password=password,
        known_hosts=host.known_hosts or defaults.known_hosts or target.known_hosts,
        accept_new_host_keys=defaults.accept_new_host_keys,
        become=host.become,
        become_password=password if host.become else None,
        connect_timeout=defaults.connect_timeout,
        command_timeout=defaults.command_timeout,
        proxy_command=route.proxy_command,
    )
    # A jump host gets the same host key policy and timeouts, its own user, port and keys, no password.
    ssh_options.jumps = tuple(
        (hop.address, replace(ssh_options, user=hop.user, port=hop.port, key_file=None, key_files=hop.key_files,
                              identities_only=hop.identities_only, password=None, become=False,
                              become_password=None, proxy_command=None, jumps=(),
                              known_hosts=host.known_hosts or defaults.known_hosts or hop.known_hosts
                              or target.known_hosts))
        for hop in route.jumps)
    return SSHTransport(target.address, ssh_options, name=host.name)
