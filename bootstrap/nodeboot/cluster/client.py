"""The connection to the cluster: kubeconfig, API clients, server version."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from nodeboot.cluster.corev1 import CoreV1
from nodeboot.errors import ClusterError, UsageError

_SERVER_VERSION = re.compile(r"^v?(\d+)\.(\d+)")
# The kubeconfig context to use instead of the current one: --context sets it, and it
# reaches nodeboot's own commands that the Ansible playbooks run.
CONTEXT_ENV = "NODEBOOT_CONTEXT"


def kubeconfig_files(explicit: str | None = None) -> list[str]:
    """The kubeconfig files to read, as kubectl picks them: --kubeconfig (one file), else
    every file $KUBECONFIG lists that exists (missing ones are skipped), else ~/.kube/config."""
    if explicit:
        return [explicit]
    listed = [os.path.expanduser(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if not listed:
        return [os.path.expanduser("~/.kube/config")]
    existing = [p for p in dict.fromkeys(listed) if Path(p).exists()]
    if not existing:
        raise UsageError(f"KUBECONFIG={os.environ['KUBECONFIG']}: none of its files exist (use --kubeconfig)")
    return existing


def kubeconfig_path(explicit: str | None = None) -> str:
    """The kubeconfig files to read, joined by os.pathsep (as $KUBECONFIG lists them)."""
    return os.pathsep.join(kubeconfig_files(explicit))


def read_kubeconfig(path: str) -> dict:
    """One kubeconfig file as a mapping; a bad one is a one-line error naming it."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"kubeconfig {path}: not valid YAML{yaml_position(exc)}") from None
    except OSError as exc:
        raise UsageError(f"kubeconfig {path}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(document, dict):
        raise UsageError(f"kubeconfig {path}: not a kubeconfig (a mapping with clusters, contexts and users)")
    return document


def pick_context(files: list[str], documents: list[dict], wanted: str | None) -> str | None:
    """The context to use, by kubectl's merge rules: --context (or $NODEBOOT_CONTEXT), else the
    first file's current-context that sets one; a context no file defines is an error."""
    names = [c.get("name") for d in documents for c in (d.get("contexts") or []) if isinstance(c, dict)]
    if wanted:
        if wanted not in names:
            known = ", ".join(dict.fromkeys(n for n in names if n)) or "none"
            raise UsageError(f"--context {wanted}: no such context in kubeconfig {os.pathsep.join(files)} "
                             f"(contexts: {known})")
        return wanted
    return next((d["current-context"] for d in documents if d.get("current-context")), None)


@dataclass
class Cluster:
    api: client.ApiClient
    kubeconfig: str

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> Cluster:
        files = kubeconfig_files(path)
        resolved = os.pathsep.join(files)
        if not Path(files[0]).exists():
            raise UsageError(f"kubeconfig {resolved}: file not found (use --kubeconfig or KUBECONFIG)")
        context = pick_context(files, [read_kubeconfig(f) for f in files], context or os.environ.get(CONTEXT_ENV))
        cfg = client.Configuration()
        try:
            # The client merges the files as kubectl does (the first to define a name wins) and
            # resolves each file's relative certificate paths against that file's directory.
            config.load_kube_config(config_file=resolved, context=context, client_configuration=cfg)
        except yaml.YAMLError as exc:
            raise UsageError(f"kubeconfig {resolved}: not valid YAML{yaml_position(exc)}") from None
        except (ConfigException, ValueError) as exc:
            raise UsageError(f"kubeconfig {resolved}: {one_line(str(exc)) or type(exc).__name__}") from None
        except (TypeError, KeyError, AttributeError, IndexError) as exc:
            # The YAML parsed but is not shaped like a kubeconfig (a list, a number where a map belongs).
            raise UsageError(f"kubeconfig {resolved}: not a kubeconfig ({type(exc).__name__}: {exc})") from None
        except OSError as exc:
            raise UsageError(f"kubeconfig {resolved}: cannot read: {exc.strerror or exc}") from None
        if not cfg.verify_ssl:
            # The kubeconfig asked for no certificate checks (insecure-skip-tls-verify):
            # that is its owner's choice, not a two-line warning on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        # A failing API call should fail the step, not sit in urllib3's retry loop.
        cfg.retries = urllib3.Retry(total=2, connect=2, read=0, backoff_factor=0.2)
        return cls(client.ApiClient(cfg), resolved)

    @cached_property
    def core(self) -> CoreV1:
        return CoreV1(self.api)

    @cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @cached_property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    @cached_property
    def policy(self) -> client.PolicyV1Api:
        return client.PolicyV1Api(self.api)

    @cached_property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    @property
    def server(self) -> str:
        return self.api.configuration.host

    @cached_property
    def version(self) -> tuple[int, int, str]:
        """(major, minor, gitVersion) of the API server."""
        try:
            info = client.VersionApi(self.api).get_code()
        except client.ApiException as exc:
            raise ClusterError(f"API server {self.server}: cannot read its version: {short_api_error(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(f"API server {self.server}: {short_api_error(exc)}") from None
        except ValueError as exc:  # an answer that is no Kubernetes /version (pydantic's ValidationError)
            raise ClusterError(f"API server {self.server}: /version is not a Kubernetes version "
                               f"({type(exc).__name__})") from None
        match = _SERVER_VERSION.match(info.git_version)
        if not match:
            raise ClusterError(f"API server {self.server}: unexpected version {info.git_version!r}")
        return int(match.group(1)), int(match.group(2)), info.git_version


def yaml_position(exc: yaml.YAMLError) -> str:
    """' (line L, column C: problem)' from a YAML error, whose own text spans several lines."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or ""
    if mark is None:
        return f" ({problem})" if problem else ""
    return f" (line {mark.line + 1}, column {mark.column + 1}" + (f": {problem})" if problem else ")")


def one_line(text: str) -> str:
    return " ".join(text.split())


def short_api_error(exc: BaseException) -> str:
    """One line out of an ApiException (whose str() is a multi-line dump)."""
    if isinstance(exc, client.ApiException):
        import json

        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = ""
        if exc.status == 403:
            return forbidden_line(message)
        return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        from nodeboot.cluster.retry import unreachable_cause

        return f"unreachable: {unreachable_cause(exc)}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


_RBAC_DENIAL = re.compile(r'cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)"'
                          r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<namespace>[^"]+)")?')
_DENIED_NAME = re.compile(r'^\S+ "(?P<name>[^"]+)" is forbidden')
_DENIED_USER = re.compile(r'User "(?P<user>[^"]+)"')


def forbidden_line(message: str) -> str:
    """'forbidden: needs VERB on RESOURCE ...' out of the API server's RBAC denial, naming
    what to grant (docs/rbac.md lists nodeboot's roles)."""
    denial = _RBAC_DENIAL.search(message)
    if not denial:
        return f"forbidden: {message or 'the API server refused the request'} (see docs/rbac.md)"
    resource = denial["resource"] + (f".{denial['group']}" if denial["group"] else "")
    name = _DENIED_NAME.match(message)
    user = _DENIED_USER.search(message)
    return (f"forbidden: needs {denial['verb']} on {resource}" + (f' "{name["name"]}"' if name else "")
            + (f" in namespace {denial['namespace']}" if denial["namespace"] else "")
            + (f" for {user['user']}" if user else "") + " (see docs/rbac.md: nodeboot's roles)")
