"""Bootstrap tokens and the CA pin that kubeadm join discovers the cluster with.

One short-lived token per node, described with the node's name, deleted as
soon as the node is Ready (or the run ends); the CA hash comes from the
operator's kubeconfig, which is what makes the pin trustworthy.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import string
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client, watch

from nodeboot.cluster.client import Cluster, short_api_error
from nodeboot.cluster.retry import Outage, with_retry
from nodeboot.errors import ClusterError

TOKEN_TTL = dt.timedelta(minutes=15)
TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class BootstrapToken:
    token_id: str
    secret: str = field(repr=False)
    node: str
    expires: dt.datetime

    @property
    def value(self) -> str:
        return f"{self.token_id}.{self.secret}"


def new_token(node: str) -> BootstrapToken:
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return BootstrapToken(token_id, secret, node, dt.datetime.now(dt.UTC) + TOKEN_TTL)


MANAGED_BY = "app.kubernetes.io/managed-by=nodeboot"
TOKEN_TYPE = "bootstrap.kubernetes.io/token"


def description_for(node: str) -> str:
    """A token's description: it names the node, which is how a later run finds tokens left for it."""
    return f"nodeboot join of node {node}"


def token_secret_body(token: BootstrapToken) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=f"bootstrap-token-{token.token_id}",
            namespace="kube-system",
            labels={"app.kubernetes.io/managed-by": "nodeboot"},
        ),
        type="bootstrap.kubernetes.io/token",
        string_data={
            "token-id": token.token_id,
            "token-secret": token.secret,
            "expiration": token.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "description": description_for(token.node),
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": TOKEN_GROUP,
        },
    )


class TokenLedger:
    """Every token this run created, so an interrupted or failed run can delete them all."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._live: dict[str, BootstrapToken] = {}
        self._lock = threading.Lock()
        self.created = 0
        self.earlier_deleted: list[str] = []  # ids of tokens earlier runs left, deleted by this one

    def create(self, node: str) -> BootstrapToken:
        """A new token for node, after deleting any an earlier run made for it and never
        deleted (that run was killed): a node has at most one valid nodeboot token."""
        self.delete_earlier(node)
        token = new_token(node)
        try:
            with_retry(lambda: self.cluster.core.create_namespaced_secret("kube-system", token_secret_body(token)))
        except client.ApiException as exc:
            raise ClusterError(f"cannot create a bootstrap token for {node}: {short_api_error(exc)}") from None
        with self._lock:
            self._live[token.token_id] = token
            self.created += 1
        return token

    def delete_earlier(self, node: str) -> list[str]:
        """Delete the tokens nodeboot made for node that this run does not hold; their ids."""
        try:
            listing = with_retry(lambda: self.cluster.core.list_namespaced_secret(
                "kube-system", label_selector=MANAGED_BY, field_selector=f"type={TOKEN_TYPE}"))
        except client.ApiException as exc:
            raise ClusterError(f"cannot list the bootstrap tokens left for {node}: {short_api_error(exc)}") from None
        with self._lock:
            ours = set(self._live)
        wanted = description_for(node)
        left = []
        for secret in listing.items:
            data = secret.data or {}
            token_id = _decoded(data, "token-id")
            if token_id and token_id not in ours and _decoded(data, "description") == wanted:
                left.append(token_id)
        for token_id in left:
            self.delete(BootstrapToken(token_id, "", node, dt.datetime.now(dt.UTC)))
        with self._lock:
            self.earlier_deleted += left
        return left

    def delete(self, token: BootstrapToken) -> None:
        with self._lock:
            self._live.pop(token.token_id, None)
        try:
            with_retry(lambda: self.cluster.core.delete_namespaced_secret(f"bootstrap-token-{token.token_id}",
                                                                          "kube-system"))
        except client.ApiException as exc:
            if exc.status != 404:
                raise ClusterError(f"cannot delete bootstrap token {token.token_id}: {short_api_error(exc)}") from None

    def delete_all(self) -> list[str]:
        with self._lock:
            live = list(self._live.values())
        failed = []
        for token in live:
            try:
                self.delete(token)
            except ClusterError:
                failed.append(token.token_id)
        return failed

    def live_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._live)


def _decoded(data: dict[str, str], key: str) -> str:
    try:
        return base64.b64decode(data.get(key) or "").decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def wait_signed(cluster: Cluster, token: BootstrapToken, timeout: float = 90.0) -> None:
    """kubeadm join verifies cluster-info with the token's JWS signature, which the
    bootstrapsigner controller adds a moment after the token exists: wait for it
    (through an API server restart, too)."""
    key = f"jws-kubeconfig-{token.token_id}"
    deadline = time.monotonic() + timeout
    outage = Outage()
    while time.monotonic() < deadline:
        w = watch.Watch()
        try:
            cm = cluster.core.read_namespaced_config_map("cluster-info", "kube-public")
            if key in (cm.data or {}):
                return
            for event in w.stream(
                cluster.core.list_namespaced_config_map,
                "kube-public",
                field_selector="metadata.name=cluster-info",
                resource_version=cm.metadata.resource_version,
                timeout_seconds=max(1, int(deadline - time.monotonic())),
            ):
                if key in (event["object"].data or {}):
                    return
        except Exception as exc:
            watch_expired = isinstance(exc, client.ApiException) and exc.status == 410
            if not (outage.retryable(exc) or watch_expired or isinstance(exc, ValueError)):
                raise
            time.sleep(0.3)  # the API server went away or the watch broke: read again
        finally:
            w.stop()
    raise ClusterError(
        f"cluster-info was not signed for token {token.token_id} within {timeout:.0f}s "
        "(is the bootstrapsigner controller enabled in kube-controller-manager?)"
    )


def ca_cert_hashes(cluster: Cluster) -> list[str]:
    """sha256 over the DER SubjectPublicKeyInfo of the CA in the operator's kubeconfig."""
    cfg = cluster.api.configuration
    pem = b""
    if cfg.ssl_ca_cert:
        with open(cfg.ssl_ca_cert, "rb") as fh:
            pem = fh.read()
    if not pem:
        raise ClusterError(
            f"kubeconfig {cluster.kubeconfig} has no certificate-authority, so the CA cannot be pinned; "
            "give --ca-cert-hash"
        )
    return [spki_hash(cert) for cert in x509.load_pem_x509_certificates(pem)]


def pins_and_source(cluster: Cluster, given: Sequence[str]) -> tuple[list[str], str]:
    """The CA pins a join trusts, and where they came from (for error text): the
    --ca-cert-hash values given, else the hash of the operator's kubeconfig's CA."""
    if given:
        return list(given), "--ca-cert-hash"
    return ca_cert_hashes(cluster), f"the kubeconfig {cluster.kubeconfig}"


def spki_hash(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class ClusterInfo:
    """kube-public/cluster-info's kubeconfig, read once for the join endpoint and the CA
    pin (None when the ConfigMap has none, or not as YAML)."""

    kubeconfig: Any


def read_cluster_info(cluster: Cluster) -> ClusterInfo:
    try:
        cm = cluster.core.read_namespaced_config_map("cluster-info", "kube-public")
    except client.ApiException as exc:
        raise ClusterError(f"cannot read kube-public/cluster-info: {short_api_error(exc)}") from None
    try:
        return ClusterInfo(yaml.safe_load((cm.data or {})["kubeconfig"]))
    except (KeyError, yaml.YAMLError):
        return ClusterInfo(None)


def _info_cluster(info: ClusterInfo, key: str) -> Any:
    """The first cluster's KEY in cluster-info's kubeconfig (KeyError etc. when it is not there)."""
    return info.kubeconfig["clusters"][0]["cluster"][key]


def join_endpoint(cluster: Cluster, override: str | None = None, info: ClusterInfo | None = None) -> str:
    """host:port that nodes use: --api-server-endpoint, else the cluster-info kubeconfig's server."""
    if override:
        return override.removeprefix("https://").rstrip("/")
    try:
        server = _info_cluster(info or read_cluster_info(cluster), "server")
    except (KeyError, IndexError, TypeError):
        raise ClusterError(
            "kube-public/cluster-info has no usable kubeconfig (was the cluster made by kubeadm?)"
        ) from None
    return server.removeprefix("https://").rstrip("/")


def ca_pin_problem(cluster: Cluster, pinned: list[str], source: str, info: ClusterInfo | None = None) -> str | None:
    """kubeadm's discovery trusts cluster-info's CA only if it matches a pin: find a mismatch
    before any host is touched, naming both hashes (source: where the pins came from)."""
    try:
        pem = base64.b64decode(_info_cluster(info or read_cluster_info(cluster), "certificate-authority-data"))
        found = [spki_hash(cert) for cert in x509.load_pem_x509_certificates(pem)]
    except (KeyError, IndexError, TypeError, ValueError):
        return "kube-public/cluster-info has no readable certificate-authority-data (was the cluster made by kubeadm?)"
    if set(found) & set(pinned):
        return None
    return (f"the CA in kube-public/cluster-info ({', '.join(found)}) is not the CA pinned by {source} "
            f"({', '.join(pinned)}): kubeadm join would refuse the cluster; check which cluster {source} is for")
