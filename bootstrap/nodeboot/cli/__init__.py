"""nodeboot's command line: parse the flags, call the command's work, print what it returns.

The commands live in this package's modules, grouped by what they act on; their options are
declared once, in options.py. The work itself is in modules that know nothing of click
(app, proxy_cmd, cluster_cmd, tokens_cmd, status, verify, inventory_cmd).
"""

from __future__ import annotations

import os
import sys

import click

from nodeboot import __version__
from nodeboot.cli.fleet import COMMANDS as FLEET_COMMANDS
from nodeboot.cli.inventory import inventory_command
from nodeboot.cli.plumbing import COMMANDS as PLUMBING_COMMANDS
from nodeboot.cli.proxy import proxy
from nodeboot.cli.tokens import token
from nodeboot.cli.windows import COMMANDS as WINDOWS_COMMANDS
from nodeboot.errors import EXIT_HOST_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, NodebootError
from nodeboot.redact import Redactor

DEBUG_ENV = "NODEBOOT_DEBUG"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nodeboot")
def cli() -> None:
    """Join Linux and Windows machines to an existing kubeadm cluster, and take them out again."""


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


for _command in (*FLEET_COMMANDS, inventory_command, token, proxy, *PLUMBING_COMMANDS, *WINDOWS_COMMANDS):
    cli.add_command(_command)

# The commands nodeboot's Ansible playbooks run: kept out of the top-level help (they still work,
# and `nodeboot join-config --help` still shows them).
PLUMBING = (("join-config",), ("node",), ("proxy", "apply-config"))


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


__all__ = ["PLUMBING", "cli", "main"]
