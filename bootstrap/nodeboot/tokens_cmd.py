"""`nodeboot token create|delete`: what kubeadm join needs, for scripts and Ansible."""

from __future__ import annotations

import json

import click

from nodeboot import validate
from nodeboot.cluster import tokens
from nodeboot.cluster.client import Cluster
from nodeboot.errors import UsageError


def create(node_name: str, kubeconfig: str | None, endpoint_override: str | None, output: str = "text") -> None:
    """One token for one node; output: text (the kubeadm join line), json or yaml (one document)."""
    try:
        validate.node_name(node_name)
    except ValueError as exc:
        raise UsageError(f"--node: {exc}") from None
    cluster = Cluster.from_kubeconfig(kubeconfig)
    endpoint = tokens.join_endpoint(cluster, endpoint_override)
    hashes = tokens.ca_cert_hashes(cluster)
    ledger = tokens.TokenLedger(cluster)
    token = ledger.create(node_name)
    tokens.wait_signed(cluster, token)
    if output in ("json", "yaml"):
        document = {
            "endpoint": endpoint,
            "token": token.value,
            "token_id": token.token_id,
            "ca_cert_hashes": hashes,
            "expires": token.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "node": node_name,
        }
        if output == "yaml":
            import yaml

            click.echo(yaml.safe_dump(document, sort_keys=False), nl=False)
        else:
            click.echo(json.dumps(document))
        return
    click.echo(f"kubeadm join {endpoint} --token {token.value} "
               + " ".join(f"--discovery-token-ca-cert-hash {h}" for h in hashes))
    click.echo(f"(token {token.token_id} expires {token.expires:%H:%M:%S} UTC; delete it once the node is Ready: "
               f"nodeboot token delete {token.token_id})", err=True)


def delete(token_id: str, kubeconfig: str | None) -> None:
    if not token_id.isalnum() or len(token_id) != 6 or token_id.lower() != token_id:
        raise UsageError(f"token id {token_id!r}: expected the 6 characters before the dot")
    cluster = Cluster.from_kubeconfig(kubeconfig)
    ledger = tokens.TokenLedger(cluster)
    ledger.delete(tokens.BootstrapToken(token_id, "", "", tokens.dt.datetime.now(tokens.dt.UTC)))
    click.echo(f"token {token_id} deleted", err=True)
