"""OCI images without Docker: a layer from a directory, the image config and
manifest, an OCI image layout on disk, and a small client for the OCI
distribution API (push and pull by digest).

Layers are uncompressed tars (application/vnd.oci.image.layer.v1.tar): the
lab's VM nodes run under software emulation, where gunzip of a 60 MB layer
costs more than moving the extra bytes over the lab bridge. An uncompressed
layer's digest is also its diff_id.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from nodeboot.errors import NodebootError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = "1970-01-01T00:00:00Z"
CHUNK = 1 << 20
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class OCIError(NodebootError):
    pass


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


def parse_reference(ref: str) -> Reference:
    """registry.k8s.io/kube-proxy:v1.37.2 -> (registry.k8s.io, kube-proxy, v1.37.2)."""
    registry, _, rest = ref.partition("/")
    repository, _, tag = rest.rpartition(":")
    if not registry or not repository or not tag or "/" in tag:
        raise OCIError(f"image reference {ref!r}: expected REGISTRY/REPOSITORY:TAG")
    return Reference(registry, repository, tag)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Same tree, same bytes: owner root, no build-time mtimes.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def write_layer(rootfs: Path, out: Path) -> None:
    """An uncompressed tar of rootfs (paths relative to it, sorted, owner root)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(_walk(rootfs)):
            tar.add(rootfs / entry, arcname=entry, recursive=False, filter=_reset)


def _walk(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            yield os.path.normpath(os.path.join(rel, name))


def image_config(diff_ids: list[str], entrypoint: list[str], env: list[str] | None = None,
                 user: str = "", cmd: list[str] | None = None) -> dict:
    config: dict = {"Entrypoint": entrypoint, "Env": env or [DEFAULT_PATH], "WorkingDir": "/"}
    if user:
        config["User"] = user
    if cmd:
        config["Cmd"] = cmd
    return {
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": EPOCH, "created_by": "nodeboot-lab"}],
    }


def image_manifest(config: Descriptor, layers: list[Descriptor]) -> dict:
    return {"schemaVersion": 2, "mediaType": MANIFEST, "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers]}


def canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """An OCI image layout directory: oci-layout, index.json, blobs/sha256/."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def _ensure(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def add_bytes(self, data: bytes, media_type: str) -> Descriptor:
        self._ensure()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob_path(digest).write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def add_file(self, path: Path, media_type: str) -> Descriptor:
        """Move a finished file into the blob store under its digest."""
        self._ensure()
        digest = "sha256:" + sha256_file(path)
        size = path.stat().st_size
        os.replace(path, self.blob_path(digest))
        return Descriptor(media_type, digest, size)

    def add_image(self, ref: str, rootfs: Path, entrypoint: list[str], env: list[str] | None = None,
                  user: str = "", cmd: list[str] | None = None) -> Descriptor:
        """Layer, config and manifest for rootfs, named ref in index.json; returns the manifest."""
        self._ensure()
        with tempfile.NamedTemporaryFile(dir=self.root, suffix=".tar", delete=False) as tmp:
            layer_tmp = Path(tmp.name)
        try:
            write_layer(rootfs, layer_tmp)
            layer = self.add_file(layer_tmp, LAYER_TAR)
        finally:
            layer_tmp.unlink(missing_ok=True)
        config = self.add_bytes(canonical(image_config([layer.digest], entrypoint, env, user, cmd)), CONFIG)
        manifest = self.add_bytes(canonical(image_manifest(config, [layer])), MANIFEST)
        self._name(ref, manifest)
        return manifest

    def _name(self, ref: str, manifest: Descriptor) -> None:
        index = self.index()
        entries = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != ref]
        entries.append({**manifest.to_json(), "annotations": {REF_NAME: ref}})
        index["manifests"] = sorted(entries, key=lambda m: m["annotations"][REF_NAME])
        (self.root / "index.json").write_text(json.dumps(index, indent=2))

    def index(self) -> dict:
        path = self.root / "index.json"
        if path.exists():
            return json.loads(path.read_text())
        return {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}

    def images(self) -> dict[str, Descriptor]:
        """ref name -> manifest descriptor."""
        return {m["annotations"][REF_NAME]: Descriptor(m["mediaType"], m["digest"], m["size"])
                for m in self.index()["manifests"]}

    def manifest(self, descriptor: Descriptor) -> dict:
        return json.loads(self.blob_path(descriptor.digest).read_bytes())


class RegistryClient:
    """The OCI distribution API over HTTPS, verified against one CA file."""

    def __init__(self, base_url: str, cafile: Path, timeout: float = 60) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise OCIError(f"registry URL {base_url!r}: expected https://HOST:PORT")
        self.base = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 443
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.timeout = timeout

    def _request(self, method: str, path: str, body=None, headers: dict | None = None,
                 ok: tuple[int, ...] = (200,)) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
        except OSError as exc:
            conn.close()
            raise OCIError(f"registry {self.base}: {method} {path}: {exc}") from exc
        if resp.status not in ok:
            text = resp.read(500).decode(errors="replace").strip()
            conn.close()
            raise OCIError(f"registry {self.base}: {method} {path}: HTTP {resp.status} {text}")
        return resp, conn

    def _call(self, method: str, path: str, body=None, headers: dict | None = None,
              ok: tuple[int, ...] = (200,)) -> tuple[int, dict[str, str], bytes]:
        resp, conn = self._request(method, path, body, headers, ok)
        try:
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def ping(self) -> dict[str, str]:
        """GET /v2/: the API version check every client does first."""
        return self._call("GET", "/v2/")[1]

    def has_blob(self, repo: str, digest: str) -> bool:
        status, _, _ = self._call("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404))
        return status == 200

    def push_blob(self, repo: str, path: Path, digest: str) -> None:
        """Monolithic upload: POST for an upload URL, then PUT the bytes with their digest."""
        if self.has_blob(repo, digest):
            return
        _, headers, _ = self._call("POST", f"/v2/{repo}/blobs/uploads/", ok=(202,),
                                   headers={"Content-Length": "0"})
        location = urlsplit(urljoin(self.base + "/", headers["location"]))
        target = location.path + "?" + (location.query + "&" if location.query else "") + f"digest={digest}"
        size = path.stat().st_size
        with open(path, "rb") as body:
            self._call("PUT", target, body=body, ok=(201,),
                       headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})

    def push_manifest(self, repo: str, tag: str, data: bytes, media_type: str = MANIFEST) -> str:
        _, headers, _ = self._call("PUT", f"/v2/{repo}/manifests/{tag}", body=data, ok=(201,),
                                   headers={"Content-Type": media_type})
        return headers.get("docker-content-digest", "")

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """The manifest's bytes and its Content-Type."""
        _, headers, data = self._call("GET", f"/v2/{repo}/manifests/{reference}",
                                      headers={"Accept": f"{MANIFEST}, {INDEX}"})
        return data, headers.get("content-type", "")

    def fetch_blob(self, repo: str, digest: str, out: Path) -> str:
        """Download a blob to out; return the sha256 digest of what arrived."""
        resp, conn = self._request("GET", f"/v2/{repo}/blobs/{digest}")
        hasher = hashlib.sha256()
        try:
            with open(out, "wb") as fh:
                while chunk := resp.read(CHUNK):
                    hasher.update(chunk)
                    fh.write(chunk)
        finally:
            conn.close()
        return "sha256:" + hasher.hexdigest()


def push_image(layout: Layout, ref: str, client: RegistryClient) -> str:
    """Push one image of the layout under its repository path (the registry host
    of ref is dropped: the registry stands in for it as a mirror)."""
    images = layout.images()
    if ref not in images:
        raise OCIError(f"image {ref}: not in the layout {layout.root}")
    target = parse_reference(ref)
    manifest = images[ref]
    document = layout.manifest(manifest)
    for blob in [document["config"], *document["layers"]]:
        client.push_blob(target.repository, layout.blob_path(blob["digest"]), blob["digest"])
    client.push_manifest(target.repository, target.tag, layout.blob_path(manifest.digest).read_bytes())
    return manifest.digest
