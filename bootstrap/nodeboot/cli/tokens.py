"""`nodeboot token create|delete`."""

from __future__ import annotations

import json

import click

from nodeboot.cli import options as o


@click.group()
def token() -> None:
    """Bootstrap tokens, for scripts and the Ansible playbooks."""


@token.command("create")
@click.option("--node", "node_name", required=True, help="The node this token is for (named in its description).")
@o.kubeconfig
@o.api_server_endpoint
@o.output(("text", "json", "yaml"), "text", show_default=True,
          help="text: the kubeadm join line; json or yaml: endpoint, token and CA hashes.")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="The same as -o json (kept for scripts).")
def token_create(node_name: str, kubeconfig: str | None, api_server_endpoint: str | None, output: str,
                 as_json: bool) -> None:
    """Create one short-lived (15 min) token for one node and print what kubeadm join needs."""
    from nodeboot import tokens_cmd

    grant = tokens_cmd.create(node_name, kubeconfig, api_server_endpoint)
    output = "json" if as_json else output
    if output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(grant.document(), sort_keys=False), nl=False)
    elif output == "json":
        click.echo(json.dumps(grant.document()))
    else:
        click.echo(grant.join_line())
        click.echo(f"(token {grant.token.token_id} expires {grant.token.expires:%H:%M:%S} UTC; delete it once the "
                   f"node is Ready: nodeboot token delete {grant.token.token_id})", err=True)


@token.command("delete")
@click.argument("token_id")
@o.kubeconfig
def token_delete(token_id: str, kubeconfig: str | None) -> None:
    """Delete a bootstrap token by its id (the part before the dot)."""
    from nodeboot import tokens_cmd

    tokens_cmd.delete(token_id, kubeconfig)
    click.echo(f"token {token_id} deleted", err=True)
