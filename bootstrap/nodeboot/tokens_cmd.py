"""`nodeboot token create|delete`: what kubeadm join needs, for scripts and Ansible."""

from __future__ import annotations

from dataclasses import dataclass

from nodeboot import validate
from nodeboot.cluster import tokens
from nodeboot.cluster.client import Cluster
from nodeboot.errors import UsageError


@dataclass(frozen=True)
class Grant:
    """What a node needs to join: the endpoint, a fresh token and the CA pins."""

    node: str
    endpoint: str
    token: tokens.BootstrapToken
    ca_cert_hashes: list[str]

    def document(self) -> dict:
        return {"endpoint": self.endpoint, "token": self.token.value, "token_id": self.token.token_id,
                "ca_cert_hashes": self.ca_cert_hashes,
                "expires": self.token.expires.strftime("%Y-%m-%dT%H:%M:%SZ"), "node": self.node}

    def join_line(self) -> str:
        return (f"kubeadm join {self.endpoint} --token {self.token.value} "
                + " ".join(f"--discovery-token-ca-cert-hash {h}" for h in self.ca_cert_hashes))


def create(node_name: str, kubeconfig: str | None, endpoint_override: str | None) -> Grant:
    """One short-lived token for one node, signed into cluster-info."""
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
    return Grant(node_name, endpoint, token, hashes)


def delete(token_id: str, kubeconfig: str | None) -> None:
    if not token_id.isalnum() or len(token_id) != 6 or token_id.lower() != token_id:
        raise UsageError(f"token id {token_id!r}: expected the 6 characters before the dot")
    cluster = Cluster.from_kubeconfig(kubeconfig)
    ledger = tokens.TokenLedger(cluster)
    ledger.delete(tokens.BootstrapToken(token_id, "", "", tokens.dt.datetime.now(tokens.dt.UTC)))
