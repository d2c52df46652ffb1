"""`nodeboot inventory --list`."""

from __future__ import annotations

import click

from nodeboot.cli import options as o


@click.command("inventory")
@click.option("--list", "as_list", is_flag=True, help="Print every group and host with its resolved vars (JSON).")
@o.inventory("YAML or INI inventory (default: $ANSIBLE_INVENTORY, then /etc/ansible/hosts).", dest="inventory_file")
def inventory_command(as_list: bool, inventory_file: str | None) -> None:
    """The inventory as nodeboot reads it, in the JSON shape of `ansible-inventory --list`."""
    from nodeboot import inventory_cmd

    if not as_list:
        raise click.UsageError("say what to show: --list")
    document, warnings = inventory_cmd.listing(inventory_file)
    for text in warnings:
        click.echo(f"warning: {text}", err=True)
    click.echo(inventory_cmd.render(document))
