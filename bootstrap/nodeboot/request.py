"""What a command line asked for, typed: the hosts, the run's settings and the install flags.

The cli/ package fills these from the flags; the functions here check the values (a bad one is a
one-line usage error naming the flag) and turn them into the HostSelection and RunSettings the
workflows take. Nothing here knows click.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nodeboot import node_install, validate

if TYPE_CHECKING:  # app (and the transports it loads) is imported when a request is turned into a run
    from nodeboot.app import HostSelection, RunSettings


@dataclass(frozen=True)
class HostArgs:
    """Which hosts, and how to reach them."""

    hosts: tuple[str, ...] = ()
    inventory: str | None = None
    limit: str | None = None
    os_name: str = "linux"
    user: str | None = None
    ssh_key: str | None = None
    password_env: str | None = None
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    become: bool = False
    winrm_ca: str | None = None
    insecure_skip_tls_verify: bool = False


@dataclass(frozen=True)
class RunArgs:
    """How a run goes: the cluster, the output, parallelism and time limits."""

    kubeconfig: str | None = None
    output: str = "human"
    log_dir: str | None = None
    keep_runs: int | None = None
    parallel: int = 20
    fail_fast: bool = False
    dry_run: bool = False
    skip_phases: str | None = None
    connect_timeout: float = 10.0
    step_timeout: float = 600.0


@dataclass(frozen=True)
class InstallArgs:
    """`join`'s flags for installing a bare Linux host and for the kubelet's config; each is also an
    inventory var (nodeboot_<name>) and reaches the hosts as one, over the inventory's."""

    install: bool = False
    artifacts_url: str | None = None
    artifacts_ca: str | None = None
    kubernetes_version: str | None = None
    containerd_version: str | None = None
    cni_version: str | None = None
    runc_version: str | None = None
    install_kubectl: bool = False
    registry_mirrors: tuple[str, ...] = ()
    registry_ca: str | None = None
    disable_swap: bool = False
    kubelet_config: str | None = None


def selection(args: HostArgs, extra_vars: dict | None = None) -> HostSelection:
    from nodeboot import app

    os_name = app.check_choice("--os", args.os_name, validate.OS_NAMES) or "linux"
    cli_vars = {
        "ansible_user": args.user,
        "ansible_ssh_private_key_file": args.ssh_key,
        "nodeboot_password_env": args.password_env,
        "nodeboot_known_hosts": args.known_hosts,
        "ansible_become": True if args.become else None,
        **(extra_vars or {}),
    }
    return app.HostSelection(args.inventory, args.limit, tuple(args.hosts), os_name, cli_vars)


def run_settings(hosts: HostArgs, run: RunArgs, **option_fields: Any) -> RunSettings:
    """The run's settings; option_fields are the command's own RunOptions fields."""
    from nodeboot import app

    s = app.RunSettings(kubeconfig=run.kubeconfig, output=run.output, log_dir=run.log_dir, keep_runs=run.keep_runs,
                        parallel=run.parallel, fail_fast=run.fail_fast)
    s.connection.known_hosts = hosts.known_hosts
    s.connection.accept_new_host_keys = hosts.accept_new_host_keys
    s.connection.connect_timeout = run.connect_timeout
    s.connection.command_timeout = run.step_timeout
    s.connection.winrm_ca = hosts.winrm_ca
    s.connection.insecure_skip_tls_verify = hosts.insecure_skip_tls_verify
    if hosts.insecure_skip_tls_verify:
        s.notices.append("warning: --insecure-skip-tls-verify: WinRM certificates will not be checked")
    s.options.dry_run = run.dry_run
    s.options.skip_phases = app.parse_skip_phases(run.skip_phases)
    s.options.step_timeout = run.step_timeout
    for key, value in option_fields.items():
        setattr(s.options, key, value)
    return s


def install_vars(args: InstallArgs) -> dict[str, Any]:
    """The flags, checked, as the inventory vars they stand for (None: not given, the inventory's applies)."""
    from nodeboot import app

    check = app.check_flag
    mirrors = [check("--registry-mirror", node_install.registry_mirror, m) for m in args.registry_mirrors]
    given = {
        "nodeboot_install": True if args.install else None,
        "nodeboot_artifacts_url": check("--artifacts-url", node_install.url, args.artifacts_url),
        # Files are read here to check them, and again (with the inventory's) when the hosts are built.
        "nodeboot_artifacts_ca": args.artifacts_ca if check("--artifacts-ca", node_install.pem_file,
                                                            args.artifacts_ca) else None,
        "nodeboot_kubernetes_version": check("--kubernetes-version", node_install.kubernetes_version,
                                             args.kubernetes_version),
        "nodeboot_containerd_version": check("--containerd-version", node_install.version,
                                             args.containerd_version),
        "nodeboot_cni_version": check("--cni-version", node_install.version, args.cni_version),
        "nodeboot_runc_version": check("--runc-version", node_install.version, args.runc_version),
        "nodeboot_install_kubectl": True if args.install_kubectl else None,
        "nodeboot_registry_mirror": [f"{r}={u}" for r, u in mirrors] or None,
        "nodeboot_registry_ca": args.registry_ca if check("--registry-ca", node_install.pem_file,
                                                          args.registry_ca) else None,
        "nodeboot_disable_swap": True if args.disable_swap else None,
        "nodeboot_kubelet_config": check("--kubelet-config", node_install.kubelet_config_file, args.kubelet_config),
    }
    return {k: v for k, v in given.items() if v is not None}


@dataclass(frozen=True)
class IpvsArgs:
    """The KubeProxyConfiguration fields `proxy set-mode` and `proxy apply-config` can set."""

    scheduler: str | None = None
    strict_arp: bool | None = None
    sync_period: str | None = None
    min_sync_period: str | None = None
    exclude_cidrs: str | None = None
    tcp_timeout: str | None = None
    tcp_fin_timeout: str | None = None
    udp_timeout: str | None = None
    rollout_timeout: float = 300.0


@dataclass(frozen=True)
class JoinRequest:
    hosts: HostArgs
    run: RunArgs
    install: InstallArgs
    api_server_endpoint: str | None = None
    ca_cert_hashes: tuple[str, ...] = ()
    proxy_mode: str | None = None
    install_packages: bool = False
    node_name: str | None = None
    node_ip: str | None = None
    labels: str | None = None
    taints: str | None = None
    ready_timeout: float = 300.0
    discovery_timeout: str = "5m0s"
    cni: str | None = None
    engine: str = "nodeboot"


@dataclass(frozen=True)
class ResetRequest:
    hosts: HostArgs
    run: RunArgs
    yes: bool = False
    force: bool = False
    delete_emptydir_data: bool = False
    grace_period: int | None = None
    drain_timeout: float = 300.0
    keep_modules_file: bool = False
    engine: str = "nodeboot"
