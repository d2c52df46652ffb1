"""docs/reference.md, generated: every inventory var (inventory_vars.VARS) and every command's flags,
read from the click command tree the `nodeboot` console script runs.

    python -m nodeboot.reference docs/reference.md      (no argument: print it)

tests/unit/test_reference_doc.py fails when the file differs from what this prints.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import click

from nodeboot import inventory_vars

REGENERATE = "python -m nodeboot.reference docs/reference.md"


class _Found(BaseException):
    """Carries the command out of the entry point (a BaseException: main's `except Exception` lets it by)."""

    def __init__(self, command: click.Command) -> None:
        super().__init__()
        self.command = command


def entry_point() -> Callable[[], Any]:
    """What the `nodeboot` console script calls (the installed entry point; nodeboot.cli:main without one)."""
    for found in importlib.metadata.entry_points(group="console_scripts", name="nodeboot"):
        if found.module.split(".")[0] == "nodeboot":
            return found.load()
    from nodeboot.cli import main

    return main


def root_command() -> click.Command:
    """The click command `nodeboot` runs: the console script's entry point is called with click's
    Command.main replaced by a catch, so wherever the CLI defines its group, this is it."""
    main = entry_point()
    if isinstance(main, click.Command):
        return main

    def catch(self: click.Command, *args: Any, **kwargs: Any) -> None:
        raise _Found(self)

    with mock.patch.object(click.Command, "main", catch):
        try:
            main()
        except _Found as found:
            return found.command
    raise RuntimeError("nodeboot.cli:main did not call a click command's main()")


# -- the command line --------------------------------------------------------------------------
def commands(command: click.Command, ctx: click.Context) -> Iterator[tuple[click.Command, click.Context]]:
    """Every visible command under `command`, depth first, with a context naming its path."""
    yield command, ctx
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, click.Context(sub, info_name=name, parent=ctx))


def _cell(value: str) -> str:
    return " ".join(value.split()).replace("|", "\\|")


def _option_names(param: click.Option, ctx: click.Context) -> str:
    names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
    if param.is_flag or param.count:
        return names
    if param.metavar:
        return f"{names} {param.metavar}"
    if isinstance(param.type, (click.Choice, click.IntRange)):  # the type column says it
        return names
    return f"{names} {param.type.get_metavar(param, ctx) or param.type.name.upper()}"


def _option_type(param: click.Option) -> str:
    kind = param.type
    if param.is_flag:
        shown = "flag"
    elif isinstance(kind, click.Choice):
        shown = " \\| ".join(f"`{c}`" for c in kind.choices)
    elif isinstance(kind, click.IntRange):
        low = "" if kind.min is None else str(kind.min)
        high = "" if kind.max is None else str(kind.max)
        shown = f"integer {low}..{high}" if high else f"integer >= {low}"
    else:
        shown = kind.name
    return shown + (", repeatable" if param.multiple else "")


def _option_default(param: click.Option) -> str:
    if param.required:
        return "required"
    default = param.default
    if not isinstance(default, (str, int, float, tuple, list)) or param.is_flag and default is False:
        return "-"  # None, or click's own marker for "not given"
    if isinstance(default, (tuple, list)):
        return ", ".join(f"`{d}`" for d in default) or "-"
    return f"`{default}`"


def _help_text(command: click.Command) -> str:
    """The command's help as markdown: click's \\b blocks become code blocks."""
    paragraphs = inspect.cleandoc(command.help or "").split("\n\n")
    out = []
    for paragraph in paragraphs:
        if paragraph.startswith("\b\n"):
            out.append("```\n" + paragraph.removeprefix("\b\n") + "\n```")
        elif paragraph:
            out.append(" ".join(paragraph.split()))
    return "\n\n".join(out)


def command_section(command: click.Command, ctx: click.Context) -> str:
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = [f"### {ctx.command_path}", "", _help_text(command), "", f"    {usage}", ""]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    for argument in arguments:
        if isinstance(argument.type, click.Choice):
            lines.append(f"`{argument.make_metavar(ctx)}`: one of {', '.join(argument.type.choices)}.")
            lines.append("")
    if options:
        lines += ["| option | type | default | what it does |", "|---|---|---|---|"]
        for param in options:
            help_text = param.help or ""
            if param.envvar:
                help_text += f" (env: `{param.envvar}`)"
            lines.append(f"| {_cell(_option_names(param, ctx))} | {_option_type(param)} "
                         f"| {_cell(_option_default(param))} | {_cell(help_text)} |")
        lines.append("")
    return "\n".join(lines)


# -- the inventory -------------------------------------------------------------------------------
FLAG_RULES = (
    "With `-i`, a flag that sets a `nodeboot_*` var replaces each host's value (`--labels` and `--taints` add "
    "to it; `--node-name` goes with one HOST argument only); `--proxy-mode` is used where a host sets no "
    "`nodeboot_proxy_mode`; `--user`, `--ssh-key`, `--become` and `--os` are for HOST arguments; "
    "`--winrm-ca` applies to hosts without `ansible_winrm_ca_trust_path`, `--insecure-skip-tls-verify` to every "
    "WinRM host."
)


def vars_section() -> str:
    from nodeboot.inventory import known_nodeboot_vars

    lines = [
        "## Inventory vars",
        "",
        "Per host, from an Ansible inventory (host_vars/, group_vars/ and Ansible's precedence apply). An unset "
        "or null var takes the default. A bad value stops the run before any host is touched: one line naming "
        "the file, host and field, exit code 2. Secrets are best named by `nodeboot_password_env` (or "
        "`{{ lookup('env', 'VAR') }}`) rather than written inline.",
        "",
        "The flag column names the command-line flag for the same setting. " + FLAG_RULES,
        "",
        "| var | type | default | hosts | flag | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for var in inventory_vars.VARS:
        help_text = var.help + (" Secret: masked by `nodeboot inventory --list`." if var.secret else "")
        flag = f"`{var.flag}`" if var.flag else "-"
        default = var.shown_default()
        default = default if default == "-" or " " in default else f"`{default}`"
        lines.append(f"| `{var.name}` | {_cell(var.type)} | {_cell(default)} | {var.os} | {flag} "
                     f"| {_cell(help_text)} |")
    playbook_only = sorted(known_nodeboot_vars() - set(inventory_vars.BY_NAME))
    lines += [
        "",
        "The Ansible playbooks (`--engine ansible`, or `ansible-playbook` with nodeboot's playbooks) take the "
        "vars above and these, which carry a run's flags and the roles' own settings; nodeboot itself does "
        "not read them, and knows their names so that it does not warn about them:",
        "",
        ", ".join(f"`{name}`" for name in playbook_only) + ".",
        "",
    ]
    return "\n".join(lines)


def render() -> str:
    root = root_command()
    ctx = click.Context(root, info_name="nodeboot", **root.context_settings)  # as the console script makes it
    parts = [
        "# nodeboot reference",
        "",
        f"Generated from the code by `{REGENERATE}`; do not edit by hand "
        "(tests/unit/test_reference_doc.py fails when this file and the code disagree).",
        "",
        vars_section(),
        "## Commands",
        "",
        f"Every command also takes {', '.join(f'`{n}`' for n in ctx.help_option_names)}. "
        "Durations are written as kubectl writes them "
        "(`10s`, `5m`, `1h30m`, `500ms`); a bare number is seconds. Commands the playbooks run "
        "(hidden from `nodeboot --help`) are left out.",
        "",
    ]
    parts += [command_section(command, sub_ctx) for command, sub_ctx in commands(root, ctx)]
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if not argv:
        sys.stdout.write(text)
        return 0
    Path(argv[0]).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
