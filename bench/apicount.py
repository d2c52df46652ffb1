"""API requests counted at the API server: kube-apiserver's /metrics
`apiserver_request_total`, read before and after a run and subtracted.

The counter has no user label, so everything the API server served in between
is in it: the tool's own calls, kubeadm's and the kubelet stand-ins' (TLS
bootstrap, registration, heartbeats), the controllers'. `background()` reads
the idle rate over a few seconds so a report can say how much of a delta is
just time passing; `split()` groups a delta by verb and resource.
"""

from __future__ import annotations

import re
import time
from collections import Counter

from kubernetes import client

from nodeboot.cluster.client import Cluster

_LINE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')
Key = tuple[str, str]  # (verb, resource[/subresource]); "" resource: a non-resource URL (/metrics, /version)


def scrape(api: client.ApiClient) -> Counter[Key]:
    headers: dict[str, str] = {}
    api.update_params_for_auth(headers, [], ["BearerToken"], "/metrics", "GET", None)  # client certs need none
    resp = api.call_api("GET", api.configuration.host + "/metrics", header_params=headers, _request_timeout=30)
    resp.read()
    counts: Counter[Key] = Counter()
    for line in resp.data.decode().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group("labels")))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += int(float(m.group("value")))
    return counts


class ApiCounter:
    def __init__(self, kubeconfig: str) -> None:
        self.api = Cluster.from_kubeconfig(kubeconfig).core.api_client
        self._before: Counter[Key] = Counter()

    def start(self) -> None:
        self._before = scrape(self.api)

    def stop(self) -> Counter[Key]:
        after = scrape(self.api)
        delta = after - self._before
        delta[("GET", "")] -= 1  # the `start` scrape itself is counted by the time of this one
        return +delta

    def background(self, seconds: float = 5.0) -> float:
        """Requests per second the API server serves with nobody running a tool."""
        self.start()
        time.sleep(seconds)
        return sum(self.stop().values()) / seconds


def split(delta: Counter[Key]) -> dict[str, int]:
    """A delta by what asked for it, roughly: the tool's cluster calls (tokens, cluster-info,
    Nodes read/watched/patched), the kubelets' (CSRs, leases, Node status), the rest."""
    groups: Counter[str] = Counter()
    for (verb, resource), n in delta.items():
        base = resource.split("/")[0]
        if base == "secrets":
            groups["secrets (tokens)"] += n
        elif base == "configmaps":
            groups["configmaps (cluster-info, kubeadm-config, kubelet-config)"] += n
        elif resource == "nodes" and verb in ("GET", "LIST", "WATCH", "PATCH", "DELETE"):
            groups["nodes get/list/watch/patch"] += n
        elif resource == "nodes/status" or base in ("leases", "certificatesigningrequests"):
            groups["kubelet: status, leases, CSRs"] += n
        else:
            groups["other"] += n
    return dict(groups)


def describe(delta: Counter[Key], limit: int = 12) -> str:
    return ", ".join(f"{verb} {res or '(non-resource)'}={n}" for (verb, res), n in delta.most_common(limit))
