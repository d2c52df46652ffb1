"""Every inventory var nodeboot reads, once: name, type, default, help, check.

inventory.host_from_vars reads a host's vars only through this table (a name
missing here is a KeyError there), the unknown-var warning knows names from it,
and docs/reference.md is generated from it (`nodeboot.reference`), so the
reference says what the code reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nodeboot import node_install, validate
from nodeboot.transport.ssh_args import parse_ssh_args

ANY_OS, LINUX, WINDOWS = "any", "linux", "windows"
CONNECTIONS = ("ssh", "winrm", "local")
WINRM_TRANSPORTS = ("ntlm", "kerberos", "credssp", "basic")


# -- checks: each returns the clean value or raises ValueError ---------------
def text(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise ValueError(f"{value!r} must be a non-empty string")
    return str(value)


def address(value: Any) -> str:
    checked = text(value)
    if any(c.isspace() for c in checked) or "/" in checked:
        raise ValueError(f"{checked!r} is not a host name or address")
    return checked.strip("[]")


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("yes", "true", "1", "on"):
        return True
    if str(value).lower() in ("no", "false", "0", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("must be a list of strings")


def winrm_transport(value: Any) -> str:
    lowered = str(value).lower()
    if lowered == "certificate":
        raise ValueError("'certificate' (client-certificate authentication) is not supported by nodeboot; "
                         "use ntlm (or kerberos, credssp: optional extras, untested)")
    return validate.one_of(lowered, WINRM_TRANSPORTS)


def choice(*choices: str) -> Callable[[Any], str]:
    return lambda value: validate.one_of(value, choices)


@dataclass(frozen=True)
class InventoryVar:
    name: str
    type: str  # as the reference shows it
    help: str  # one line
    check: Callable[[Any], Any] | None = None  # None: checked where it is read (passwords; the Windows steps)
    default: Any = None  # what an unset (or null) var reads as
    default_text: str = ""  # the reference's default when `default` alone does not tell it
    os: str = ANY_OS  # the hosts it applies to
    secret: bool = False
    flag: str = ""  # the command-line flag that sets it too (over the inventory's value)

    def shown_default(self) -> str:
        if self.default_text:
            return self.default_text
        if self.default is None or self.default in ({}, [], ()):
            return "-"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


_ADD = "--{0} adds to them (the same {1} in both: the flag's wins)"
VARS: tuple[InventoryVar, ...] = (
    # How nodeboot reaches the host (Ansible's connection vars).
    InventoryVar("ansible_connection", " | ".join(CONNECTIONS), "How the host is reached.",
                 choice(*CONNECTIONS), default_text="winrm for Windows hosts, else ssh"),
    InventoryVar("nodeboot_os", " | ".join(validate.OS_NAMES), "The host's OS.", choice(*validate.OS_NAMES),
                 default_text="windows when ansible_connection is winrm or the host is in group `windows`, "
                              "else linux", flag="--os"),
    InventoryVar("nodeboot_password_env", "env var name",
                 "The environment variable that holds the host's password (SSH, sudo or WinRM).",
                 default_text="NODEBOOT_WINRM_PASSWORD for WinRM hosts", flag="--password-env"),
    InventoryVar("ansible_password", "string", "The password inline, or {{ lookup('env', 'VAR') }} "
                 "(read as nodeboot_password_env: VAR); ignored when nodeboot_password_env is set.", secret=True),
    InventoryVar("ansible_ssh_pass", "string", "Ansible's older name for ansible_password (that one wins).",
                 secret=True),
    InventoryVar("ansible_host", "host name or address", "Where to connect.", address,
                 default_text="the inventory host name"),
    InventoryVar("ansible_port", "port 1-65535", "SSH or WinRM port.", validate.port,
                 default_text="ssh: the ssh args' -p, then ~/.ssh/config, else 22; "
                              "winrm: 5986 (https), 5985 (http)"),
    InventoryVar("ansible_user", "string", "Login user.", text,
                 default_text="ssh: the ssh args' -l, then ~/.ssh/config, else root; winrm: Administrator",
                 flag="--user"),
    InventoryVar("ansible_ssh_private_key_file", "path", "SSH private key file.", text, os=LINUX,
                 default_text="the ssh args' -i and ~/.ssh/config's IdentityFile, then the SSH agent's keys "
                              "and ~/.ssh/id_*", flag="--ssh-key"),
    InventoryVar("nodeboot_known_hosts", "path", "known_hosts file to check and record host keys in.", text,
                 os=LINUX, default_text="UserKnownHostsFile from the ssh args or ~/.ssh/config, "
                                        "else ~/.ssh/known_hosts", flag="--known-hosts"),
    InventoryVar("ansible_ssh_common_args", "ssh options",
                 "ssh(1) options nodeboot takes: -J / ProxyJump, ProxyCommand, -F (instead of ~/.ssh/config), "
                 "UserKnownHostsFile, -l/-p/-i (User, Port, IdentityFile); others are ignored with a warning.",
                 parse_ssh_args, os=LINUX),
    InventoryVar("ansible_ssh_extra_args", "ssh options", "More of the same, after ansible_ssh_common_args.",
                 parse_ssh_args, os=LINUX),
    InventoryVar("ansible_become", "bool", "Run as root through sudo (password from nodeboot_password_env).",
                 boolean, False, os=LINUX, flag="--become"),
    InventoryVar("ansible_winrm_transport", " | ".join(WINRM_TRANSPORTS),
                 "WinRM authentication (kerberos and credssp need the optional extras; only ntlm is tested).",
                 winrm_transport, "ntlm", os=WINDOWS),
    InventoryVar("ansible_winrm_scheme", "https | http", "WinRM over HTTPS, or HTTP with message encryption.",
                 choice("http", "https"), "https", os=WINDOWS),
    InventoryVar("ansible_winrm_ca_trust_path", "path", "CA bundle the WinRM certificate is checked against.", text,
                 os=WINDOWS, default_text="the system's CAs", flag="--winrm-ca"),
    InventoryVar("ansible_winrm_server_cert_validation", "validate | ignore",
                 "ignore: do not check the WinRM certificate.", choice("validate", "ignore"), "validate", os=WINDOWS,
                 flag="--insecure-skip-tls-verify"),
    # The node.
    InventoryVar("nodeboot_node_name", "RFC 1123 name", "The Node's name.", validate.node_name,
                 default_text="the inventory host name, lower-cased", flag="--node-name"),
    InventoryVar("nodeboot_labels", "map, or k=v,...", "Node labels; " + _ADD.format("labels", "key") + ".",
                 validate.labels, {}, flag="--labels"),
    InventoryVar("nodeboot_taints", "list, or k[=v]:Effect,...",
                 "Node taints (key[=value]:Effect); " + _ADD.format("taints", "key and effect") + ".",
                 validate.taints, [], flag="--taints"),
    InventoryVar("nodeboot_node_ip", "IP, or a dual-stack pair", "The kubelet's --node-ip (one IPv4, one IPv6).",
                 validate.ip_list, [], flag="--node-ip"),
    InventoryVar("nodeboot_kubelet_extra_args", "map flag: value", "More kubelet flags (names without --).",
                 validate.kubelet_args, {}),
    InventoryVar("nodeboot_proxy_mode", " | ".join(validate.PROXY_MODES),
                 "Prepare the host for this kube-proxy mode.", choice(*validate.PROXY_MODES), os=LINUX,
                 default_text="--proxy-mode's", flag="--proxy-mode"),
    InventoryVar("nodeboot_ignore_preflight_errors", "list, or a,b,...", "kubeadm preflight checks to ignore.",
                 string_list, []),
    # A bare Linux host (--install) and the kubelet's config.
    InventoryVar("nodeboot_install", "bool", "Install containerd, runc, the CNI plugins, kubelet and kubeadm "
                 "where they are missing.", boolean, False, os=LINUX, flag="--install"),
    InventoryVar("nodeboot_artifacts_url", "http(s) URL", "Where hosts download binaries (upstream's layout).",
                 node_install.url, flag="--artifacts-url"),
    InventoryVar("nodeboot_artifacts_ca", "PEM file", "CA bundle for nodeboot_artifacts_url's certificate.",
                 node_install.pem_file, os=LINUX, flag="--artifacts-ca"),
    InventoryVar("nodeboot_kubernetes_version", "vX.Y.Z", "kubelet and kubeadm version to install.",
                 node_install.kubernetes_version, default_text="the API server's", flag="--kubernetes-version"),
    InventoryVar("nodeboot_containerd_version", "X.Y.Z", "containerd version, with nodeboot_install.",
                 node_install.version, node_install.DEFAULT_CONTAINERD_VERSION, os=LINUX, flag="--containerd-version"),
    InventoryVar("nodeboot_cni_version", "X.Y.Z", "CNI plugins version, with nodeboot_install.", node_install.version,
                 node_install.DEFAULT_CNI_VERSION, os=LINUX, flag="--cni-version"),
    InventoryVar("nodeboot_runc_version", "X.Y.Z", "runc version, with nodeboot_install.", node_install.version,
                 node_install.DEFAULT_RUNC_VERSION, os=LINUX, flag="--runc-version"),
    InventoryVar("nodeboot_install_kubectl", "bool", "With nodeboot_install: kubectl too.", boolean, False,
                 os=LINUX, flag="--install-kubectl"),
    InventoryVar("nodeboot_registry_mirror", "map, or REGISTRY=URL list",
                 "With nodeboot_install: containerd pulls REGISTRY's images through URL.",
                 node_install.registry_mirrors, (), os=LINUX, flag="--registry-mirror"),
    InventoryVar("nodeboot_registry_ca", "PEM file", "With nodeboot_install: the registry mirrors' CA.",
                 node_install.pem_file, os=LINUX, flag="--registry-ca"),
    InventoryVar("nodeboot_disable_swap", "bool", "With nodeboot_install: turn swap off now and across reboots.",
                 boolean, False, os=LINUX, flag="--disable-swap"),
    InventoryVar("nodeboot_kubelet_config", "map", "KubeletConfiguration fields, applied through kubeadm patches.",
                 node_install.kubelet_config, {}, os=LINUX, flag="--kubelet-config"),
    # Read by the Windows phases from the host's vars, when they run.
    InventoryVar("nodeboot_windows_service_manager", "auto | nssm | sc", "What runs kubelet as a service.",
                 default="auto", os=WINDOWS),
    InventoryVar("nodeboot_windows_sha256", "map file name: sha256",
                 "Checksums pinned here for the downloads (over nodeboot_windows_checksums_file's).", os=WINDOWS),
    InventoryVar("nodeboot_windows_checksums_file", "path", "A local sha256sum-style file of pinned checksums.",
                 os=WINDOWS),
    InventoryVar("nodeboot_windows_hns_networks", "list of names",
                 "HNS networks reset removes, besides vxlan0, cbr0, flannel.4096 and Calico.", os=WINDOWS),
)
BY_NAME: dict[str, InventoryVar] = {var.name: var for var in VARS}
# Vars host_from_vars leaves in Host.vars for a step to read when it runs.
READ_BY_STEPS = ("nodeboot_windows_service_manager", "nodeboot_windows_sha256", "nodeboot_windows_checksums_file",
                 "nodeboot_windows_hns_networks")
