"""What the modelled `kubeadm join` on a lab Windows host does for real.

Token discovery as kubeadm does it: fetch kube-public/cluster-info without
trusting the server yet, check the CA against the pinned SPKI hashes, check the
cluster-info kubeconfig's detached JWS signature (HS256, keyed by the token
secret), then fetch it again over TLS verified with that CA. Then the files
kubeadm writes on a Windows node (C:\\etc\\kubernetes is the sandbox's private
/etc/kubernetes, C:\\var\\lib\\kubelet its /var/lib/kubelet): the bootstrap
kubeconfig with the token, the CA, the kubelet's config from the cluster's
kubelet-config ConfigMap and kubeadm-flags.env.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shlex
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodeboot.node_layout import WINDOWS_CRI_SOCKET

WINDOWS_CRI = WINDOWS_CRI_SOCKET  # what a join must name, as nodeboot does
CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
KUBELET_CONFIG = "/api/v1/namespaces/kube-system/configmaps/kubelet-config"


class JoinFailure(Exception):
    """What kubeadm would print before exiting 1."""


@dataclass
class JoinRequest:
    endpoint: str
    token: str = field(repr=False)
    ca_hashes: list[str]
    node_name: str
    cri_socket: str
    taints: list[dict[str, str]]
    extra_args: dict[str, str]

    @property
    def token_id(self) -> str:
        return self.token.split(".", 1)[0]

    @property
    def token_secret(self) -> str:
        return self.token.split(".", 1)[1]


def parse_join_config(text: str, hostname: str) -> JoinRequest:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise JoinFailure(f"unable to read config: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "JoinConfiguration":
        raise JoinFailure("no JoinConfiguration found in the config file")
    version = doc.get("apiVersion", "")
    if version not in ("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"):
        raise JoinFailure(f"unsupported apiVersion {version!r}")
    bootstrap = (doc.get("discovery") or {}).get("bootstrapToken") or {}
    token = str(bootstrap.get("token") or "")
    if not _token_shape(token):
        raise JoinFailure("the bootstrap token is not of the form [a-z0-9]{6}.[a-z0-9]{16}")
    hashes = list(bootstrap.get("caCertHashes") or [])
    if not hashes:
        raise JoinFailure("using token-based discovery without caCertHashes can be unsafe; pin the CA")
    reg = doc.get("nodeRegistration") or {}
    raw_args = reg.get("kubeletExtraArgs") or {}
    if isinstance(raw_args, list):  # v1beta4: [{name, value}]
        extra = {str(a["name"]): str(a["value"]) for a in raw_args}
    else:
        extra = {str(k): str(v) for k, v in raw_args.items()}
    return JoinRequest(
        endpoint=str(bootstrap.get("apiServerEndpoint") or ""),
        token=token,
        ca_hashes=[str(h) for h in hashes],
        node_name=str(reg.get("name") or hostname).lower(),
        cri_socket=str(reg.get("criSocket") or WINDOWS_CRI),
        taints=list(reg.get("taints") or []),
        extra_args=extra,
    )


def _token_shape(token: str) -> bool:
    parts = token.split(".")
    return (len(parts) == 2 and len(parts[0]) == 6 and len(parts[1]) == 16
            and all(c.isdigit() or "a" <= c <= "z" for c in parts[0] + parts[1]))


def _get(url: str, ctx: ssl.SSLContext, token: str | None = None) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise JoinFailure(f"GET {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise JoinFailure(f"failed to request the cluster-info ConfigMap: {getattr(exc, 'reason', exc)}") from None


def spki_hash(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def verify_jws(detached: str, payload: str, token_id: str, token_secret: str) -> None:
    """kubeadm's check: header..signature, HS256 over header.payload with the token secret."""
    parts = detached.split(".")
    if len(parts) != 3 or parts[1]:
        raise JoinFailure("the JWS signature of cluster-info is not a detached JWS")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        raise JoinFailure("the JWS header of cluster-info cannot be read") from None
    if header.get("alg") != "HS256" or header.get("kid") != token_id:
        raise JoinFailure(f"the JWS of cluster-info names {header}, not HS256 with key {token_id}")
    signing_input = f"{parts[0]}.{_b64url(payload.encode())}".encode()
    expected = _b64url(hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, parts[2]):
        raise JoinFailure("failed to verify JWS signature of received cluster info object, can't trust this API Server")


def discover(req: JoinRequest) -> tuple[str, bytes]:
    """(server URL, CA PEM) of the cluster, trusted through the pin and the token's signature."""
    if not req.endpoint:
        raise JoinFailure("discovery.bootstrapToken.apiServerEndpoint is empty")
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    url = f"https://{req.endpoint}{CLUSTER_INFO}"
    data = _get(url, insecure).get("data") or {}
    kubeconfig = data.get("kubeconfig")
    if not kubeconfig:
        raise JoinFailure("there is no kubeconfig in the cluster-info ConfigMap")
    jws = data.get(f"jws-kubeconfig-{req.token_id}")
    if not jws:
        raise JoinFailure(f"token id {req.token_id!r} is invalid for this cluster or it has expired")
    verify_jws(jws, kubeconfig, req.token_id, req.token_secret)
    cluster = yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]
    ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    hashes = [spki_hash(c) for c in x509.load_pem_x509_certificates(ca_pem)]
    if not set(hashes) & {h.lower() for h in req.ca_hashes}:
        raise JoinFailure(f"cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "
                          f"{', '.join(hashes)} are pinned")
    trusted = ssl.create_default_context(cadata=ca_pem.decode())
    trusted.check_hostname = False  # kubeadm connects by address; the chain is what is pinned
    again = _get(url, trusted).get("data") or {}
    if again.get("kubeconfig") != kubeconfig:
        raise JoinFailure("cluster-info changed between the insecure and the secure fetch")
    return cluster["server"], ca_pem


def kubelet_config(server: str, ca_pem: bytes, token: str) -> str:
    """The cluster's KubeletConfiguration, read with the bootstrap token as kubeadm does."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.check_hostname = False
    cm = _get(server.rstrip("/") + KUBELET_CONFIG, ctx, token)
    text = (cm.get("data") or {}).get("kubelet")
    if not text:
        raise JoinFailure("the kubelet-config ConfigMap has no 'kubelet' key")
    return text


def write_node_files(root: Path, req: JoinRequest, server: str, ca_pem: bytes, config_yaml: str) -> None:
    """bootstrap-kubelet.conf, pki/ca.crt, config.yaml and kubeadm-flags.env under a host's root."""
    etc = root / "etc" / "kubernetes"
    (etc / "pki").mkdir(parents=True, exist_ok=True)
    (etc / "pki" / "ca.crt").write_bytes(ca_pem)
    bootstrap = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kubernetes", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "contexts": [{"name": "tls-bootstrap-token-user@kubernetes",
                      "context": {"cluster": "kubernetes", "user": "tls-bootstrap-token-user"}}],
        "current-context": "tls-bootstrap-token-user@kubernetes",
        "users": [{"name": "tls-bootstrap-token-user", "user": {"token": req.token}}],
    }
    conf = etc / "bootstrap-kubelet.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    kubelet = root / "var" / "lib" / "kubelet"
    kubelet.mkdir(parents=True, exist_ok=True)
    (kubelet / "config.yaml").write_text(config_yaml)
    flags = {"container-runtime-endpoint": req.cri_socket, "hostname-override": req.node_name}
    if req.taints:
        flags["register-with-taints"] = ",".join(
            f"{t['key']}={t['value']}:{t['effect']}" if t.get("value") else f"{t['key']}:{t['effect']}"
            for t in req.taints)
    flags.update(req.extra_args)
    args = " ".join(shlex.quote(f"--{k}={v}") for k, v in flags.items())
    (kubelet / "kubeadm-flags.env").write_text(f'KUBELET_KUBEADM_ARGS="{args}"\n')
