"""Hosts, groups and vars, read from an Ansible YAML inventory or the command line.

One inventory file serves nodeboot and ansible-playbook: nodeboot reads the
ansible_* connection vars and its own nodeboot_* vars. Secrets are never
required inline: `nodeboot_password_env: VAR` (or Ansible's
`{{ lookup('env', 'VAR') }}`) names the environment variable that holds them.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodeboot import validate
from nodeboot.errors import InventoryError, UsageError

_ENV_LOOKUP = re.compile(r"""^\{\{\s*lookup\(\s*['"]env['"]\s*,\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\)\s*\}\}$""")
_HOST_ARG = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:@\s\[\]]+)(?::(?P<port>\d+))?$")
CONNECTIONS = ("ssh", "winrm", "local")


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
def load_inventory(path: str) -> list[Host]:
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"{source}: cannot read inventory: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # YAML errors span lines
        raise UsageError(f"{source}:{where} not valid YAML: {problem}") from None
    if not isinstance(data, dict) or not data:
        raise InventoryError(source, None, None, "expected a YAML mapping with an 'all' group (Ansible YAML inventory)")
    collected: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for group_name, group in data.items():
        _walk_group(source, str(group_name), group, {}, [], collected)
    if not collected:
        raise InventoryError(source, None, None, "no hosts found")
    return [host_from_vars(source, name, hvars, groups) for name, (hvars, groups) in collected.items()]


def _walk_group(source: str, name: str, group: Any, inherited: dict[str, Any], parents: list[str],
                collected: dict[str, tuple[dict[str, Any], list[str]]]) -> None:
    if group is None:
        return
    if not isinstance(group, dict):
        raise InventoryError(source, None, f"group {name}", "a group must be a mapping (hosts, vars, children)")
    unknown = set(group) - {"hosts", "vars", "children"}
    if unknown:
        raise InventoryError(source, None, f"group {name}", f"unknown keys {', '.join(sorted(map(str, unknown)))}")
    group_vars = group.get("vars") or {}
    if not isinstance(group_vars, dict):
        raise InventoryError(source, None, f"group {name}.vars", "must be a mapping")
    merged = {**inherited, **group_vars}
    lineage = [*parents, name]
    hosts = group.get("hosts") or {}
    if not isinstance(hosts, dict):
        raise InventoryError(source, None, f"group {name}.hosts", "must be a mapping of host names")
    for host_name, host_vars in hosts.items():
        if host_vars is not None and not isinstance(host_vars, dict):
            raise InventoryError(source, str(host_name), None, "host vars must be a mapping")
        previous, groups = collected.get(str(host_name), ({}, []))
        # A host in several groups: later groups' vars apply over earlier ones, host vars over all.
        collected[str(host_name)] = ({**previous, **merged, **(host_vars or {})}, groups + [g for g in lineage
                                                                                          if g not in groups])
    children = group.get("children") or {}
    if not isinstance(children, dict):
        raise InventoryError(source, None, f"group {name}.children", "must be a mapping of groups")
    for child_name, child in children.items():
        _walk_group(source, str(child_name), child, merged, lineage, collected)


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


def host_from_vars(source: str, name: str, hvars: dict[str, Any], groups: list[str]) -> Host:
    def field_value(key: str, check, default=None):
        if key not in hvars or hvars[key] is None:
            return default
        try:
            return check(hvars[key])
        except ValueError as exc:
            raise InventoryError(source, name, key, str(exc)) from None

    connection = field_value("ansible_connection", lambda v: validate.one_of(v, CONNECTIONS), None)
    os_name = field_value("nodeboot_os", lambda v: validate.one_of(v, validate.OS_NAMES), None)
    if os_name is None:
        os_name = "windows" if connection == "winrm" or "windows" in groups else "linux"
    if connection is None:
        connection = "winrm" if os_name == "windows" else "ssh"
    if os_name == "windows" and connection == "ssh":
        raise InventoryError(source, name, "ansible_connection", "Windows hosts are reached over winrm")
    password_env, password = _password_source(source, name, hvars)
    address = field_value("ansible_host", _address, name)
    return Host(
        name=name,
        address=address,
        os=os_name,
        connection=connection,
        port=field_value("ansible_port", validate.port),
        user=field_value("ansible_user", _text),
        key_file=field_value("ansible_ssh_private_key_file", _text),
        known_hosts=field_value("nodeboot_known_hosts", _text),
        password_env=password_env,
        password=password,
        become=field_value("ansible_become", _boolean, False),
        winrm_transport=field_value(
            "ansible_winrm_transport",
            lambda v: validate.one_of(str(v).lower(), ("ntlm", "kerberos", "credssp", "basic", "certificate")),
            "ntlm",
        ),
        winrm_scheme=field_value("ansible_winrm_scheme", lambda v: validate.one_of(v, ("http", "https")), "https"),
        winrm_ca=field_value("ansible_winrm_ca_trust_path", _text),
        winrm_insecure=field_value("ansible_winrm_server_cert_validation",
                                   lambda v: validate.one_of(v, ("validate", "ignore")), "validate") == "ignore",
        node_name=field_value("nodeboot_node_name", validate.node_name, "") or _default_node_name(source, name),
        labels=field_value("nodeboot_labels", validate.labels, {}),
        taints=field_value("nodeboot_taints", validate.taints, []),
        node_ips=field_value("nodeboot_node_ip", validate.ip_list, []),
        kubelet_extra_args=field_value("nodeboot_kubelet_extra_args", validate.kubelet_args, {}),
        proxy_mode=field_value("nodeboot_proxy_mode", lambda v: validate.one_of(v, validate.PROXY_MODES)),
        ignore_preflight_errors=field_value("nodeboot_ignore_preflight_errors", _string_list, []),
        groups=groups,
        vars=hvars,
    )


def _default_node_name(source: str, name: str) -> str:
    candidate = name.lower()
    try:
        return validate.node_name(candidate)
    except ValueError as exc:
        raise InventoryError(source, name, "nodeboot_node_name",
                             f"the host name is not a valid node name, so set one: {exc}") from None


def _text(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise ValueError(f"{value!r} must be a non-empty string")
    return str(value)


def _address(value: Any) -> str:
    text = _text(value)
    if any(c.isspace() for c in text) or "/" in text:
        raise ValueError(f"{text!r} is not a host name or address")
    return text.strip("[]")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("yes", "true", "1", "on"):
        return True
    if str(value).lower() in ("no", "false", "0", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("must be a list of strings")


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
