"""nodeboot's command line: parse, call, print. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import click

from nodeboot import __version__, app, validate
from nodeboot.cli_install import install_options, install_vars
from nodeboot.cli_options import Seconds, finish_options, ipvs_options
from nodeboot.errors import EXIT_HOST_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, NodebootError
from nodeboot.redact import Redactor

DEBUG_ENV = "NODEBOOT_DEBUG"


def host_options(f: Callable) -> Callable:
    """Which hosts, and how to reach them."""
    decorators = [
        click.argument("hosts", nargs=-1, metavar="[USER@]HOST[:PORT]..."),
        click.option("-i", "--inventory", "inventory_file", metavar="FILE", help="Ansible YAML inventory."),
        click.option("--limit", metavar="PATTERN", help="Only hosts or groups matching (Ansible syntax)."),
        click.option(
            "--os", "os_name", type=click.Choice(validate.OS_NAMES), default="linux", show_default=True,
            help="OS of HOST arguments."
        ),
        click.option("--user", help="Login user for HOST arguments."),
        click.option("--ssh-key", type=click.Path(dir_okay=False), help="SSH private key file."),
        click.option("--password-env", metavar="VAR", help="Environment variable holding the password."),
        click.option("--known-hosts", type=click.Path(dir_okay=False), help="known_hosts file (default ~/.ssh)."),
        click.option("--accept-new-host-keys", is_flag=True, help="Trust and record keys of hosts not yet known."),
        click.option("--become", is_flag=True, help="Use sudo on the host (password from --password-env)."),
        click.option("--winrm-ca", type=click.Path(dir_okay=False), help="CA that signed the WinRM certificates."),
        click.option("--insecure-skip-tls-verify", is_flag=True, help="Do not verify WinRM TLS certificates."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def run_options(f: Callable) -> Callable:
    decorators = [
        click.option("--kubeconfig", metavar="FILE"),  # its help: cli_options.COMMON_HELP
        click.option("--parallel", default=20, show_default=True, type=click.IntRange(1, 2000)),
        click.option("--fail-fast", is_flag=True, help="Stop all hosts when one fails."),
        click.option("--dry-run", is_flag=True, help="Show each host's phases and whether they would run."),
        click.option("--skip-phases", metavar="LIST", help="Comma-separated phase names to skip."),
        click.option(
            "-o", "--output", "output_mode", type=click.Choice(["human", "json"]), default="human", show_default=True
        ),
        click.option("--log-dir", metavar="DIR",
                     help="Each run's log and host transcripts go to a new directory under DIR "
                          "(default ~/.local/state/nodeboot/runs)."),
        click.option("--keep-runs", type=click.IntRange(0), metavar="N",
                     help="Keep the newest N run directories there, delete older ones "
                          "(default $NODEBOOT_KEEP_RUNS, else 50; 0 keeps all)."),
        click.option("--connect-timeout", default="10s", show_default=True, type=Seconds(0.1, 600)),
        click.option("--step-timeout", default="10m", show_default=True, type=Seconds(1, 86400)),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def selection(kw: dict, extra_vars: dict | None = None) -> app.HostSelection:
    os_name = app.check_choice("--os", kw["os_name"], validate.OS_NAMES) or "linux"
    cli_vars = {
        "ansible_user": kw.get("user"),
        "ansible_ssh_private_key_file": kw.get("ssh_key"),
        "nodeboot_password_env": kw.get("password_env"),
        "nodeboot_known_hosts": kw.get("known_hosts"),
        "ansible_become": True if kw.get("become") else None,
        **(extra_vars or {}),
    }
    return app.HostSelection(kw.get("inventory_file"), kw.get("limit"), tuple(kw.get("hosts") or ()), os_name, cli_vars)


def settings(kw: dict, **option_fields) -> app.RunSettings:
    s = app.RunSettings(
        kubeconfig=kw.get("kubeconfig"),
        output=kw.get("output_mode", "human"),
        log_dir=kw.get("log_dir"),
        keep_runs=kw.get("keep_runs"),
        parallel=kw.get("parallel", 20),
        fail_fast=kw.get("fail_fast", False),
    )
    s.connection.known_hosts = kw.get("known_hosts")
    s.connection.accept_new_host_keys = kw.get("accept_new_host_keys", False)
    s.connection.connect_timeout = kw.get("connect_timeout", 10.0)
    s.connection.command_timeout = kw.get("step_timeout", 600.0)
    s.connection.winrm_ca = kw.get("winrm_ca")
    s.connection.insecure_skip_tls_verify = kw.get("insecure_skip_tls_verify", False)
    if s.connection.insecure_skip_tls_verify:
        s.notices.append("warning: --insecure-skip-tls-verify: WinRM certificates will not be checked")
    s.options.dry_run = kw.get("dry_run", False)
    s.options.skip_phases = app.parse_skip_phases(kw.get("skip_phases"))
    s.options.step_timeout = kw.get("step_timeout", 600.0)
    for key, value in option_fields.items():
        setattr(s.options, key, value)
    return s


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nodeboot")
def cli() -> None:
    """Join Linux and Windows machines to an existing kubeadm cluster, and take them out again."""


@cli.command()
@host_options
@run_options
@click.option("--api-server-endpoint", metavar="HOST:PORT", help="Endpoint nodes join (default: from cluster-info).")
@click.option(
    "--ca-cert-hash",
    "ca_cert_hashes",
    multiple=True,
    metavar="sha256:HEX",
    help="Pin the CA by hash instead of reading it from the kubeconfig.",
)
@click.option("--proxy-mode", type=click.Choice(validate.PROXY_MODES), help="Prepare hosts for this kube-proxy mode.")
@click.option("--install-packages", is_flag=True, help="Install ipset/ipvsadm with the host's package manager.")
@click.option("--node-name", help="Node name for a single HOST argument.")
@click.option("--labels", metavar="K=V,...", help="Labels added to every host's own (a key in both: this one wins).")
@click.option("--taints", metavar="K[=V]:EFFECT,...",
              help="Taints added to every host's own (same key and effect: this wins).")
@click.option("--ready-timeout", default="5m", show_default=True, type=Seconds(1, 3600),
              help="How long each new node may take to become Ready.")
@click.option("--discovery-timeout", default="5m0s", show_default=True, metavar="DURATION",
              help="How long kubeadm join may take to reach and verify the API server.")
@click.option("--cni", type=click.Choice(["flannel", "calico"]), default=None, help="Windows: the cluster's CNI.")
@click.option("--artifacts-url", metavar="URL",
              help="Where nodes download their binaries (Windows; Linux with --install), upstream's layout.")
@install_options
@click.option("--engine", type=click.Choice(["nodeboot", "ansible"]), default="nodeboot", show_default=True,
              help="Who does the work: nodeboot itself, or ansible-playbook with nodeboot's playbooks.")
def join(**kw) -> None:
    """Make hosts workers of the cluster (idempotent: joined hosts are left as they are)."""
    proxy_mode = app.check_choice("--proxy-mode", kw["proxy_mode"], validate.PROXY_MODES)
    extra_vars = {"nodeboot_labels": kw["labels"], "nodeboot_taints": kw["taints"], **install_vars(kw)}
    if kw["node_name"]:
        if len(kw["hosts"]) != 1 or kw["inventory_file"]:
            raise click.UsageError("--node-name goes with exactly one HOST argument")
        extra_vars["nodeboot_node_name"] = kw["node_name"]
    for hash_value in kw["ca_cert_hashes"]:
        if not hash_value.startswith("sha256:") or len(hash_value) != 71:
            raise click.UsageError(f"--ca-cert-hash {hash_value!r}: expected sha256:<64 hex digits>")
    discovery_timeout = app.check_flag("--discovery-timeout", validate.duration, kw["discovery_timeout"])
    s = settings(
        kw,
        api_server_endpoint=kw["api_server_endpoint"],
        proxy_mode=proxy_mode,
        install_packages=kw["install_packages"],
        ready_timeout=kw["ready_timeout"],
        discovery_timeout=discovery_timeout,
        ca_cert_hashes=tuple(kw["ca_cert_hashes"]),
        cni=kw["cni"],
        artifacts_url=kw["artifacts_url"],
    )
    sel = selection(kw, extra_vars)
    if kw["engine"] == "ansible":
        from nodeboot import ansible_engine

        sys.exit(ansible_engine.run("join", sel, s))
    code, _ = app.run_fleet("join", sel, s)
    sys.exit(code)


@cli.command()
@host_options
@run_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Drain even pods that no controller manages.")
@click.option("--delete-emptydir-data", is_flag=True, help="Drain even pods with emptyDir volumes (their data goes).")
@click.option("--grace-period", type=click.IntRange(0, 86400), default=None,
              help="Seconds each drained pod gets to stop (default: the pod's own).")
@click.option("--drain-timeout", default="5m", show_default=True, type=Seconds(1, 86400),
              help="How long the drain of each node may take.")
@click.option("--keep-modules-file", is_flag=True, help="Leave nodeboot's modules-load.d file in place.")
@click.option("--engine", type=click.Choice(["nodeboot", "ansible"]), default="nodeboot", show_default=True,
              help="Who does the work: nodeboot itself, or ansible-playbook with nodeboot's playbooks.")
def reset(**kw) -> None:
    """Drain, kubeadm reset, clean what kubeadm leaves, and delete the Node."""
    sel = selection(kw)
    hosts = app.select_hosts(sel)
    if not kw["yes"] and not kw["dry_run"]:
        if not sys.stdin.isatty():
            raise click.UsageError("reset needs --yes when there is no terminal to confirm on")
        names = ", ".join(h.name for h in hosts)
        if not click.confirm(f"Reset and remove {len(hosts)} node(s): {names}?", default=False):
            click.echo("nothing done", err=True)
            sys.exit(EXIT_USAGE)
    s = settings(kw, force=kw["force"], drain_timeout=kw["drain_timeout"],
                 remove_modules_file=not kw["keep_modules_file"],
                 delete_emptydir_data=kw["delete_emptydir_data"], grace_period=kw["grace_period"])
    if kw["engine"] == "ansible":
        from nodeboot import ansible_engine

        sys.exit(ansible_engine.run("reset", sel, s))
    code, _ = app.run_fleet("reset", sel, s, hosts=hosts)
    sys.exit(code)


@cli.command()
@host_options
@click.option("--kubeconfig", metavar="FILE")
@click.option("-o", "--output", "output_mode", type=click.Choice(["human", "json", "yaml"]), default="human",
              help="human: a table; json or yaml: the same rows as one document.")
def status(**kw) -> None:
    """Each host's Node in the cluster: registered, Ready, labels, taints."""
    from nodeboot import status as status_mod

    rows = status_mod.node_status(app.select_hosts(selection(kw)), kw["kubeconfig"])
    if kw["output_mode"] == "json":
        click.echo(json.dumps(rows, indent=2))
    elif kw["output_mode"] == "yaml":
        import yaml

        click.echo(yaml.safe_dump(rows, sort_keys=False), nl=False)
    else:
        status_mod.print_table(rows)
    sys.exit(0 if all(r["ready"] for r in rows) else EXIT_HOST_FAILED)


@cli.command()
@host_options
@click.option("--kubeconfig", metavar="FILE")
@click.option("-o", "--output", "output_mode", type=click.Choice(["human", "json"]), default="human",
              help="human: a table; json: every node's checks as one document.")
@click.option("--cert-warn-days", default=30, show_default=True, type=click.IntRange(0, 3650),
              help="Fail when the kubelet client certificate expires within this many days.")
@click.option("--parallel", default=20, type=click.IntRange(1, 2000))
@click.option("--connect-timeout", default="10s", type=Seconds(0.1, 600))
@click.option("--log-dir", metavar="DIR")
def verify(**kw) -> None:
    """Post-join checks per node: Ready, kube-proxy pod and mode, Service reachable, CNI, cgroups, cert, clock."""
    from nodeboot import verify as verify_mod

    sys.exit(verify_mod.run(selection(kw), settings(kw), kw["output_mode"], kw["cert_warn_days"]))


@cli.command("inventory")
@click.option("--list", "as_list", is_flag=True, help="Print every group and host with its resolved vars (JSON).")
@click.option("-i", "--inventory", "inventory_file", metavar="FILE",
              help="YAML or INI inventory (default: $ANSIBLE_INVENTORY, then /etc/ansible/hosts).")
def inventory_command(as_list: bool, inventory_file: str | None) -> None:
    """The inventory as nodeboot reads it, in the JSON shape of `ansible-inventory --list`."""
    from nodeboot import inventory_cmd

    if not as_list:
        raise click.UsageError("say what to show: --list")
    document, warnings = inventory_cmd.listing(inventory_file)
    for text in warnings:
        click.echo(f"warning: {text}", err=True)
    click.echo(inventory_cmd.render(document))


@cli.group()
def token() -> None:
    """Bootstrap tokens, for scripts and the Ansible playbooks."""


@token.command("create")
@click.option("--node", "node_name", required=True, help="The node this token is for (named in its description).")
@click.option("--kubeconfig", metavar="FILE")
@click.option("--api-server-endpoint", metavar="HOST:PORT")
@click.option("-o", "--output", "output_mode", type=click.Choice(["text", "json", "yaml"]), default="text",
              show_default=True, help="text: the kubeadm join line; json or yaml: endpoint, token and CA hashes.")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="The same as -o json (kept for scripts).")
def token_create(node_name: str, kubeconfig: str | None, api_server_endpoint: str | None, output_mode: str,
                 as_json: bool) -> None:
    """Create one short-lived (15 min) token for one node and print what kubeadm join needs."""
    from nodeboot import tokens_cmd

    tokens_cmd.create(node_name, kubeconfig, api_server_endpoint, "json" if as_json else output_mode)


@token.command("delete")
@click.argument("token_id")
@click.option("--kubeconfig", metavar="FILE")
def token_delete(token_id: str, kubeconfig: str | None) -> None:
    """Delete a bootstrap token by its id (the part before the dot)."""
    from nodeboot import tokens_cmd

    tokens_cmd.delete(token_id, kubeconfig)


@cli.group()
def proxy() -> None:
    """kube-proxy's mode across the cluster: IPVS, nftables or iptables."""


@proxy.command("set-mode")
@click.argument("mode", type=click.Choice(validate.PROXY_MODES), metavar="MODE")
@host_options
@click.option("--kubeconfig", metavar="FILE")
@ipvs_options
@click.option("--install-packages", is_flag=True, help="Install ipset/ipvsadm with the host's package manager.")
@click.option("--parallel", default=20, type=click.IntRange(1, 2000))
@click.option("-o", "--output", "output_mode", type=click.Choice(["human", "json"]), default="human")
@click.option("--log-dir", metavar="DIR")
@click.option("--connect-timeout", default="10s", type=Seconds(0.1, 600))
@click.option("--step-timeout", default="10m", type=Seconds(1, 86400))
@click.option("--dry-run", is_flag=True, help="Print the plan (nodes, missing prerequisites, cleanup); change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--max-unavailable", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Nodes switched at the same time.")
@click.option("--no-rollback", is_flag=True, help="On a failed node, stop without restoring the old mode.")
@click.option("--probe-interval-ms", default=100, show_default=True, type=click.IntRange(20, 5000),
              help="How often each node probes a ClusterIP during its switch (the traffic gap).")
@click.option("--verify-timeout", default="30s", show_default=True, type=Seconds(1, 600),
              help="How long a node's new kube-proxy may take to report its mode and serve the Service.")
def proxy_set_mode(mode: str, **kw) -> None:
    """Prepare every Linux node for MODE, then switch kube-proxy node by node, verifying and cleaning each.

    MODE is iptables, ipvs or nftables.
    """
    from nodeboot import proxy_cmd

    sys.exit(proxy_cmd.set_mode(mode, selection(kw), settings(kw, install_packages=kw["install_packages"]), kw))


@proxy.command("status")
@host_options
@click.option("--kubeconfig", metavar="FILE")
@click.option("-o", "--output", "output_mode", type=click.Choice(["human", "json"]), default="human",
              help="human: a table; json: every node's state as one document.")
@click.option("--connect-timeout", default="10s", type=Seconds(0.1, 600))
@click.option("--step-timeout", default="10m", type=Seconds(1, 86400))
def proxy_status(**kw) -> None:
    """Per node: kube-proxy's configured mode, the IPVS modules, the virtual-server count."""
    from nodeboot import proxy_cmd

    sys.exit(proxy_cmd.status(selection(kw), settings(kw), kw["output_mode"]))


def _register_optional_groups() -> None:
    """Command groups that live in their own modules (Windows: gmsa, windows)."""
    from nodeboot import cluster_cmd  # join-config, node, proxy apply-config (for the playbooks)

    cluster_cmd.register(cli)
    try:
        from nodeboot import cli_windows
    except ImportError:
        return
    cli_windows.register(cli)


_register_optional_groups()
# The commands nodeboot's Ansible playbooks run: kept out of the top-level help (they still work,
# and `nodeboot join-config --help` still shows them).
PLUMBING = (("join-config",), ("node",), ("proxy", "apply-config"))


def hide_plumbing(group: click.Group) -> None:
    for path in PLUMBING:
        owner: click.Command | None = group
        for name in path[:-1]:
            owner = owner.commands.get(name) if isinstance(owner, click.Group) else None
        command = owner.commands.get(path[-1]) if isinstance(owner, click.Group) else None
        if command is not None:
            command.hidden = True


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
    bash:  source <(nodeboot completion bash)     (or save it in ~/.local/share/bash-completion/completions/nodeboot)
    zsh:   source <(nodeboot completion zsh)
    fish:  nodeboot completion fish > ~/.config/fish/completions/nodeboot.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # click has all three
    click.echo(completer(cli, {}, "nodeboot", "_NODEBOOT_COMPLETE").source())


hide_plumbing(cli)
finish_options(cli)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:  # click's form of Ctrl-C (a second one during a run, or at a prompt)
        click.echo("nodeboot: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as exc:
        ctx_info = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        click.echo(f"nodeboot: {exc.format_message()}{ctx_info}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(f"nodeboot: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except NodebootError as exc:
        click.echo(f"nodeboot: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("nodeboot: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - a bug: one line unless asked for the traceback
        unreachable = cluster_failure(exc)
        if unreachable:  # the cluster failed a call nobody caught: a failure, not a bug
            click.echo(f"nodeboot: {Redactor().redact(unreachable)}", err=True)
            sys.exit(EXIT_HOST_FAILED)
        if os.environ.get(DEBUG_ENV):
            raise
        text = " ".join(Redactor().redact(f"{type(exc).__name__}: {exc}").split())
        click.echo(f"nodeboot: internal error: {text} (set {DEBUG_ENV}=1 for a traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)


def cluster_failure(exc: Exception) -> str:
    """retry.describe's one line for an API failure (unreachable server, refused call), else ''."""
    if "kubernetes" not in sys.modules:  # no API call was made: nothing to describe
        return ""
    from nodeboot.cluster.retry import describe

    return describe(exc)
