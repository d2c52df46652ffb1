"""The core API group as nodeboot calls it: the reads every run makes made directly.

The kubernetes client's generated CoreV1Api lives in a module that imports every core
model class and wraps every method in pydantic's validate_call: 0.4-0.6 s of CPU on
its first use here, more than the rest of a fleet re-run's cluster side. The reads on
every run's path (a Node, a ConfigMap, the Node list and watch) need three model
classes; they are made here with the client's own ApiClient (its configuration,
credentials, TLS, retries and deserializer) exactly as the generated methods make
them. Any other call goes to the generated class, created on first use.
"""

from __future__ import annotations

import threading
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client import rest

JSON = {"Accept": "application/json"}
AUTH = ["BearerToken"]  # the generated methods' auth setting: the kubeconfig's token, if it has one
# A Node list or watch's query: the Python names the generated list_node takes, as the API spells them.
NODE_QUERY = {"watch": "watch", "resource_version": "resourceVersion", "timeout_seconds": "timeoutSeconds",
              "allow_watch_bookmarks": "allowWatchBookmarks", "label_selector": "labelSelector"}


class CoreV1:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._generated: client.CoreV1Api | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        """Every call not defined here: the generated CoreV1Api's."""
        if name.startswith("_"):
            raise AttributeError(name)
        with self._lock:
            if self._generated is None:
                self._generated = client.CoreV1Api(self.api)
        return getattr(self._generated, name)

    def _get(self, path: str, path_params: dict[str, str], query: list[tuple[str, Any]],
             timeout: Any) -> rest.RESTResponse:
        request = self.api.param_serialize("GET", path, path_params=path_params, query_params=query,
                                           header_params=dict(JSON), auth_settings=AUTH)
        return self.api.call_api(*request, _request_timeout=timeout)

    def _read(self, path: str, path_params: dict[str, str], model: str, timeout: Any) -> Any:
        """GET one object as `model`; a non-2xx answer raises ApiException, as the generated methods do."""
        response = self._get(path, path_params, [], timeout)
        response.read()
        return self.api.response_deserialize(response, {"200": model}).data

    def read_node(self, name: str, _request_timeout: Any = None) -> client.V1Node:
        return self._read("/api/v1/nodes/{name}", {"name": name}, "V1Node", _request_timeout)

    def read_namespaced_config_map(self, name: str, namespace: str, _request_timeout: Any = None) -> client.V1ConfigMap:
        return self._read("/api/v1/namespaces/{namespace}/configmaps/{name}", {"name": name, "namespace": namespace},
                          "V1ConfigMap", _request_timeout)

    def node_list_response(self, timeout: Any = None, **query: Any) -> urllib3.BaseHTTPResponse:
        """GET /api/v1/nodes (a list; with watch=True, a watch) with the body left unread, for
        the caller to stream; a non-2xx answer raises ApiException with the server's message."""
        response = self._get("/api/v1/nodes", {}, [(NODE_QUERY[k], v) for k, v in query.items()], timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise client.ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response
