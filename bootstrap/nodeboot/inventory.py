"""Hosts, groups and vars, read from an Ansible inventory (YAML or INI) or the command line.

One inventory file serves nodeboot and ansible-playbook: it is read as Ansible
reads it (inventory_read: host_vars/, group_vars/, ranges, children,
precedence), then nodeboot takes the
ansible_* connection vars and its own nodeboot_* vars. Secrets are never
required inline: `nodeboot_password_env: VAR` (or Ansible's
`{{ lookup('env', 'VAR') }}`) names the environment variable that holds them.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import functools
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeboot import inventory_vars, node_install, validate
from nodeboot.errors import InventoryError, UsageError
from nodeboot.inventory_read import read_inventory
from nodeboot.transport.ssh_args import SSHArgs, ignored_option_warnings, join_args

_ENV_LOOKUP = re.compile(r"""^\{\{\s*lookup\(\s*['"]env['"]\s*,\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\)\s*\}\}$""")
_HOST_ARG = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:@\s\[\]]+)(?::(?P<port>\d+))?$")


@dataclass
class Host:
    name: str
    address: str
    os: str = "linux"
    connection: str = "ssh"
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    ssh_args: SSHArgs = field(default_factory=SSHArgs)  # ansible_ssh_common_args + _extra_args
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)
    become: bool = False
    winrm_transport: str = "ntlm"
    winrm_scheme: str = "https"
    winrm_ca: str | None = None
    winrm_insecure: bool = False
    node_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[validate.Taint] = field(default_factory=list)
    node_ips: list[str] = field(default_factory=list)
    kubelet_extra_args: dict[str, str] = field(default_factory=dict)
    proxy_mode: str | None = None
    ignore_preflight_errors: list[str] = field(default_factory=list)
    install: node_install.InstallSettings = field(default_factory=node_install.InstallSettings)
    kubelet_config: dict[str, Any] = field(default_factory=dict)  # a KubeletConfiguration patch
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.node_name:
            self.node_name = self.name.lower()

    def secret(self) -> str | None:
        """The host's password, read from the environment at the moment it is needed."""
        if self.password is not None:
            return self.password
        if self.password_env:
            return os.environ.get(self.password_env)
        return None


# -- inventory files --------------------------------------------------------
Warn = Callable[[str], None]


def _stderr_warning(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


def load_inventory(path: str, warn: Warn | None = None) -> list[Host]:
    """The inventory's hosts with their vars resolved as Ansible resolves them (YAML or INI,
    host_vars/ and group_vars/ beside the file, ranges, children, precedence)."""
    warn = warn or _stderr_warning
    read = read_inventory(path)
    for text in read.warnings:
        warn(text)
    if not read.hostvars:
        raise InventoryError(read.source, None, None, "no hosts found")
    for text in unknown_var_warnings(read.source, read.hostvars):
        warn(text)
    hosts = [host_from_vars(read.source, name, hvars, read.groups_of(name)) for name, hvars in read.hostvars.items()]
    for text in ignored_option_warnings(read.source, [(h.name, h.ssh_args) for h in hosts]):
        warn(text)
    return hosts


@functools.cache
def known_nodeboot_vars() -> frozenset[str]:
    """Every nodeboot_* var nodeboot (inventory_vars.VARS) or its playbooks read."""
    playbook_vars: set[str] = set()  # what the playbooks define or read (`nodeboot_cli | default(...)`)
    playbooks = Path(__file__).resolve().parent / "playbooks"
    for path in playbooks.rglob("*.y*ml") if playbooks.is_dir() else ():
        playbook_vars.update(re.findall(r"\bnodeboot_\w+", path.read_text(errors="replace")))
    return frozenset({v.name for v in inventory_vars.VARS if v.name.startswith("nodeboot_")} | playbook_vars)


def unknown_var_warnings(source: str, hostvars: dict[str, dict[str, Any]]) -> list[str]:
    """One warning per unknown nodeboot_* var: the hosts that have it and the closest known name."""
    known = known_nodeboot_vars()
    hosts_by_var: dict[str, list[str]] = {}
    for host, hvars in hostvars.items():
        for key in hvars:
            if isinstance(key, str) and key.startswith("nodeboot_") and key not in known:
                hosts_by_var.setdefault(key, []).append(host)
    warnings = []
    for key, hosts in hosts_by_var.items():
        shown = ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5 else "")
        # Compared without the shared prefix, which would make every name look close.
        suffixes = {name.removeprefix("nodeboot_"): name for name in known}
        close = difflib.get_close_matches(key.removeprefix("nodeboot_"), sorted(suffixes), n=1, cutoff=0.6)
        hint = f"; did you mean {suffixes[close[0]]}?" if close else ""
        warnings.append(f"{source}: host {shown}: unknown var {key}, nodeboot ignores it{hint}")
    return warnings


def env_lookup_name(text: str) -> str | None:
    """VAR when the text is exactly {{ lookup('env', 'VAR') }}, else None."""
    match = _ENV_LOOKUP.match(text.strip())
    return match.group(1) if match else None


def _password_source(source: str, name: str, hvars: dict[str, Any]) -> tuple[str | None, str | None]:
    """(env var name, inline value) for the host's password."""
    env_name = hvars.get("nodeboot_password_env")
    raw = hvars.get("ansible_password", hvars.get("ansible_ssh_pass"))
    if env_name is not None:
        if not isinstance(env_name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", env_name):
            raise InventoryError(source, name, "nodeboot_password_env", "must name an environment variable")
        return env_name, None
    if isinstance(raw, str):
        match = _ENV_LOOKUP.match(raw.strip())
        if match:
            return match.group(1), None
        if "{{" in raw:
            raise InventoryError(source, name, "ansible_password",
                                 "only {{ lookup('env', 'VAR') }} templates are understood; use nodeboot_password_env")
        return None, raw
    return None, None


_UNSET: Any = object()
VarReader = Callable[..., Any]


def host_from_vars(source: str, name: str, hvars: dict[str, Any], groups: list[str]) -> Host:
    def read(key: str, default: Any = _UNSET, check: Callable[[Any], Any] | None = None) -> Any:
        """The host's value of a var of the table (inventory_vars.VARS), checked; unset or null: its default."""
        var = inventory_vars.BY_NAME[key]
        if key not in hvars or hvars[key] is None:
            return copy.copy(var.default) if default is _UNSET else default  # a fresh {} or [] per host
        check = check or var.check
        try:
            return check(hvars[key]) if check else hvars[key]
        except ValueError as exc:
            raise InventoryError(source, name, key, str(exc)) from None

    connection = read("ansible_connection")
    os_name = read("nodeboot_os")
    if os_name is None:
        os_name = "windows" if connection == "winrm" or "windows" in groups else "linux"
    if connection is None:
        connection = "winrm" if os_name == "windows" else "ssh"
    if os_name == "windows" and connection == "ssh":
        raise InventoryError(source, name, "ansible_connection", "Windows hosts are reached over winrm")
    password_env, password = _password_source(source, name, hvars)
    address = read("ansible_host", default=name)
    return Host(
        name=name,
        address=address,
        os=os_name,
        connection=connection,
        port=read("ansible_port"),
        user=read("ansible_user"),
        key_file=read("ansible_ssh_private_key_file"),
        known_hosts=read("nodeboot_known_hosts"),
        ssh_args=join_args(read("ansible_ssh_common_args"), read("ansible_ssh_extra_args")),
        password_env=password_env,
        password=password,
        become=read("ansible_become"),
        winrm_transport=read("ansible_winrm_transport"),
        winrm_scheme=read("ansible_winrm_scheme"),
        winrm_ca=read("ansible_winrm_ca_trust_path"),
        winrm_insecure=read("ansible_winrm_server_cert_validation") == "ignore",
        node_name=read("nodeboot_node_name") or _default_node_name(source, name),
        labels=read("nodeboot_labels"),
        taints=read("nodeboot_taints"),
        node_ips=read("nodeboot_node_ip"),
        kubelet_extra_args=read("nodeboot_kubelet_extra_args"),
        proxy_mode=read("nodeboot_proxy_mode"),
        ignore_preflight_errors=read("nodeboot_ignore_preflight_errors"),
        install=_install_settings(read),
        kubelet_config=read("nodeboot_kubelet_config", check=lambda value: _kubelet_config(os_name, value)),
        groups=groups,
        vars=hvars,
    )


def _kubelet_config(os_name: str, value: Any) -> dict[str, Any]:
    if os_name == "windows" and value:
        raise ValueError("is for Linux hosts (kubeadm patches are written by join.sh)")
    return node_install.kubelet_config(value)


def _install_settings(read: VarReader) -> node_install.InstallSettings:
    """nodeboot_install and what goes with it (the command line's flags arrive as these vars too)."""
    return node_install.InstallSettings(
        enabled=read("nodeboot_install"),
        artifacts_url=read("nodeboot_artifacts_url"),
        artifacts_ca=read("nodeboot_artifacts_ca"),
        kubernetes_version=read("nodeboot_kubernetes_version"),
        containerd_version=read("nodeboot_containerd_version"),
        cni_version=read("nodeboot_cni_version"),
        runc_version=read("nodeboot_runc_version"),
        install_kubectl=read("nodeboot_install_kubectl"),
        registry_mirrors=read("nodeboot_registry_mirror"),
        registry_ca=read("nodeboot_registry_ca"),
        disable_swap=read("nodeboot_disable_swap"),
    )


def _default_node_name(source: str, name: str) -> str:
    candidate = name.lower()
    try:
        return validate.node_name(candidate)
    except ValueError as exc:
        raise InventoryError(source, name, "nodeboot_node_name",
                             f"the host name is not a valid node name, so set one: {exc}") from None


# -- the command line over the inventory ---------------------------------------
# --labels and --taints add to a host's own; the Ansible engine passes them under
# these names so the inventory's values stay visible beside them.
ADDED_BY_COMMAND_LINE = {"nodeboot_labels": "nodeboot_added_labels", "nodeboot_taints": "nodeboot_added_taints"}


def with_command_line(source: str, name: str, hvars: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A host's vars with the command line's nodeboot_* values applied: labels and taints are
    added to the host's (a label key, or a taint's key and effect, given in both: the command
    line's wins); any other value replaces the host's."""
    merged = dict(hvars)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "nodeboot_labels":
            own = _checked(source, name, key, validate.labels, hvars.get(key))
            merged[key] = {**own, **_checked("command line", name, "--labels", validate.labels, value)}
        elif key == "nodeboot_taints":
            own_taints = _checked(source, name, key, validate.taints, hvars.get(key))
            added = _checked("command line", name, "--taints", validate.taints, value)
            replaced = {(t.key, t.effect) for t in added}
            merged[key] = [str(t) for t in own_taints if (t.key, t.effect) not in replaced] + [str(t) for t in added]
        else:
            merged[key] = value
    return merged


def _checked(source: str, name: str, key: str, check, value: Any):
    try:
        return check(value)
    except ValueError as exc:
        raise InventoryError(source, name, key, str(exc)) from None


# -- command-line hosts -----------------------------------------------------
def host_from_arg(arg: str, os_name: str, defaults: dict[str, Any]) -> Host:
    """'[user@]HOST[:PORT]' with the command line's connection options as vars."""
    match = _HOST_ARG.match(arg)
    if not match:
        raise UsageError(f"host {arg!r}: expected [user@]HOST[:PORT]")
    hvars = {k: v for k, v in defaults.items() if v is not None}
    hvars["nodeboot_os"] = os_name
    hvars["ansible_host"] = match.group("host").strip("[]")
    if match.group("user"):
        hvars["ansible_user"] = match.group("user")
    if match.group("port"):
        hvars["ansible_port"] = match.group("port")
    return host_from_vars("command line", match.group("host").strip("[]"), hvars, [os_name])


# -- --limit ----------------------------------------------------------------
def apply_limit(hosts: list[Host], pattern: str | None) -> list[Host]:
    """Ansible-style: names or groups, comma- or colon-separated, globs, '!' to exclude, '&' to intersect."""
    if not pattern:
        return hosts
    selected: list[Host] = []
    chosen: set[str] = set()
    terms = [t for t in re.split(r"[,:]", pattern) if t]
    positive = [t for t in terms if not t.startswith(("!", "&"))]
    for host in hosts:
        if not positive or any(_matches(host, t) for t in positive):
            chosen.add(host.name)
    for term in terms:
        if term.startswith("!"):
            chosen -= {h.name for h in hosts if _matches(h, term[1:])}
        elif term.startswith("&"):
            chosen &= {h.name for h in hosts if _matches(h, term[1:])}
    selected = [h for h in hosts if h.name in chosen]
    if not selected:
        raise UsageError(f"--limit {pattern!r} matches no host")
    return selected


def _matches(host: Host, term: str) -> bool:
    names = [host.name, host.address, *host.groups]
    return any(fnmatch.fnmatchcase(n, term) for n in names)
