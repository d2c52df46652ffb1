"""`nodeboot verify`: post-join checks per node, from the cluster and from the node itself.

The same checks are the per-node verification of `nodeboot proxy set-mode`: a
node passes when every check that ran passed. Each check has a name (the table
column and the JSON key), a status (pass | fail | warn | not-run) and a detail.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nodeboot.cluster import kubeproxy, nodes
from nodeboot.cluster.client import Cluster, short_api_error
from nodeboot.cluster.retry import with_retry
from nodeboot.errors import ClusterError
from nodeboot.steps import preflight
from nodeboot.steps.base import HostContext, Phase

CERT_WARN_DAYS = 30
KUBE_PROXY_SELECTOR = "k8s-app=kube-proxy"
# On a dual-stack cluster the `kubernetes` Service has one family only: the other family's
# connect goes to kube-system/kube-dns, else to a Service carrying this label.
VERIFY_SERVICE_LABEL = "nodeboot.io/verify"

LINUX_CHECKS = ("node-ready", "kube-proxy-pod", "kube-proxy-mode", "service-reachable", "cni-config",
                "cgroup-driver", "kubelet-cert", "clock-skew")
# What a Windows node would be checked for; the lab cannot show these, so they are reported not-run.
WINDOWS_NOT_RUN = ("hns-network", "csi-proxy-pipes", "gmsa-webhook")


@dataclass
class Check:
    name: str
    status: str  # pass | fail | warn | not-run
    detail: str = ""


@dataclass
class NodeReport:
    host: str
    node: str
    os: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class ServiceTarget:
    """A Service a node connects to by its ClusterIP."""

    name: str  # namespace/name
    ip: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass
class ClusterView:
    """What every node's checks compare against, read once per run."""

    proxy_mode: str  # from the kube-proxy ConfigMap ("iptables" when it names none; "" when there is none)
    service_ip: str  # the `kubernetes` Service's ClusterIP
    service_port: int
    api_offset: float  # API server's clock minus ours, in seconds (its Date header: 1 s resolution)
    api_offset_slack: float
    # The other IP family's Service, for dual-stack nodes (None: the cluster shows none).
    second: ServiceTarget | None = None

    @classmethod
    def read(cls, cluster: Cluster) -> ClusterView:
        try:
            _, config = kubeproxy.read_config(cluster)
            mode = config.get("mode") or "iptables"
        except ClusterError:
            mode = ""  # no kube-proxy ConfigMap: a cluster without kube-proxy (e.g. a CNI replacing it)
        try:
            svc = with_retry(lambda: cluster.core.read_namespaced_service("kubernetes", "default"))
        except Exception as exc:  # noqa: BLE001 - any API failure is the same one-line error
            raise ClusterError(f"cannot read Service default/kubernetes: {short_api_error(exc)}") from None
        port = next((p.port for p in svc.spec.ports or [] if p.name == "https"), 443)
        offset, slack = api_clock_offset(cluster)
        ip = svc.spec.cluster_ip or ""
        return cls(mode, ip, port, offset, slack, other_family_service(cluster, is_ipv6(ip)))


def is_ipv6(ip: str) -> bool:
    return ":" in ip


def other_family_service(cluster: Cluster, primary_v6: bool) -> ServiceTarget | None:
    """A Service with a ClusterIP of the family the `kubernetes` Service lacks, if the cluster has one:
    kube-system/kube-dns, else the first labelled VERIFY_SERVICE_LABEL. Best effort: reading fails
    (no such Service, no rights) mean none; single-stack nodes never use it."""
    candidates = []
    with contextlib.suppress(Exception):  # a cluster without kube-dns
        candidates.append(cluster.core.read_namespaced_service("kube-dns", "kube-system"))
    with contextlib.suppress(Exception):
        candidates += cluster.core.list_service_for_all_namespaces(label_selector=VERIFY_SERVICE_LABEL).items
    for svc in candidates:
        ips = [ip for ip in (svc.spec.cluster_ips or [svc.spec.cluster_ip or ""]) if ip and ip != "None"]
        other = next((ip for ip in ips if is_ipv6(ip) != primary_v6), None)
        tcp = [p for p in svc.spec.ports or [] if (p.protocol or "TCP") == "TCP"]
        if other and tcp:
            return ServiceTarget(f"{svc.metadata.namespace}/{svc.metadata.name}", other, tcp[0].port)
    return None


def api_clock_offset(cluster: Cluster) -> tuple[float, float]:
    """The API server's clock against ours, from its Date header, and how exact that is."""
    from kubernetes import client

    sent = time.time()
    try:
        _, _, headers = with_retry(lambda: client.VersionApi(cluster.api).get_code_with_http_info())
    except Exception as exc:  # noqa: BLE001
        raise ClusterError(f"API server {cluster.server}: cannot read its clock: {short_api_error(exc)}") from None
    received = time.time()
    date = email.utils.parsedate_to_datetime(headers.get("Date", "")) if headers.get("Date") else None
    if date is None:
        return 0.0, float("inf")
    midpoint = (sent + received) / 2
    # The header drops the fraction of a second: the server's clock is in [date, date + 1).
    return date.timestamp() + 0.5 - midpoint, 0.5 + (received - sent) / 2


# ---- the checks -------------------------------------------------------------

def node_ready(node) -> Check:
    if node is None:
        return Check("node-ready", "fail", "no Node object with this name")
    if nodes.is_ready(node):
        return Check("node-ready", "pass", "Ready")
    reason = next((f"{c.reason}: {c.message}" for c in node.status.conditions or [] if c.type == "Ready"), "")
    return Check("node-ready", "fail", f"not Ready ({reason or 'no Ready condition'})")


def kube_proxy_pod(pods: list) -> Check:
    running = [p for p in pods if p.status and p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    if running:
        return Check("kube-proxy-pod", "pass", f"{running[0].metadata.name} Running")
    if pods:
        states = ", ".join(f"{p.metadata.name} {p.status.phase if p.status else '?'}" for p in pods)
        return Check("kube-proxy-pod", "fail", f"no kube-proxy pod Running on the node ({states})")
    return Check("kube-proxy-pod", "fail", "no kube-proxy pod on the node")


def kube_proxy_mode(facts: dict, wanted: str) -> Check:
    got = facts.get("proxy_mode") or ""
    if not wanted:
        return Check("kube-proxy-mode", "not-run", "the cluster has no kube-system/kube-proxy ConfigMap")
    if not got:
        return Check("kube-proxy-mode", "fail", facts.get("proxy_mode_error") or "kube-proxy did not say its mode")
    if got != wanted:
        return Check("kube-proxy-mode", "fail", f"kube-proxy runs {got}; its ConfigMap says {wanted}")
    return Check("kube-proxy-mode", "pass", got)


def service_reachable(facts: dict, view: ClusterView, dual_stack: bool = False) -> Check:
    """The `kubernetes` Service's ClusterIP from the node; on a dual-stack node also the other
    family's Service (view.second), when the cluster has one."""
    target = ServiceTarget("default/kubernetes", view.service_ip, view.service_port).address
    if facts.get("service_reachable") is not True:
        return Check("service-reachable", "fail", facts.get("service_error") or f"{target} not reachable")
    detail = f"{target} in {facts.get('service_connect_ms')} ms"
    if not dual_stack:
        return Check("service-reachable", "pass", detail)
    family = "IPv4" if is_ipv6(view.service_ip) else "IPv6"
    second = view.second
    if second is None:
        return Check("service-reachable", "pass", f"{detail}; {family} not checked: no Service with an {family} "
                     f"ClusterIP (kube-system/kube-dns, or one labelled {VERIFY_SERVICE_LABEL})")
    if facts.get("service2_reachable") is not True:
        return Check("service-reachable", "fail", f"{family}: {second.name} " + (
            facts.get("service2_error") or f"{second.address} not reachable"))
    return Check("service-reachable", "pass",
                 f"{detail}; {second.address} ({second.name}) in {facts.get('service2_connect_ms')} ms")


def dual_stack_node(node) -> bool:
    """Whether the node has an InternalIP of each family (the kubelet's --node-ip v4,v6)."""
    internal = [a.address for a in (node.status.addresses or []) if a.type == "InternalIP"] if node else []
    return len({is_ipv6(a) for a in internal}) == 2


def cni_config(facts: dict) -> Check:
    found = facts.get("cni_configs") or []
    if found:
        return Check("cni-config", "pass", ", ".join(found))
    return Check("cni-config", "fail", "/etc/cni/net.d has no CNI config (.conf, .conflist, .json)")


def cgroup_driver(facts: dict) -> Check:
    kubelet = facts.get("kubelet_cgroup_driver") or ""
    containerd = facts.get("containerd_systemd_cgroup") or ""
    if not kubelet:
        return Check("cgroup-driver", "fail", "/var/lib/kubelet/config.yaml is missing")
    if not containerd:
        return Check("cgroup-driver", "fail", "cannot read containerd's config (containerd config dump or "
                     "/etc/containerd/config.toml)")
    runtime = "systemd" if containerd == "true" else "cgroupfs"
    if runtime != kubelet:
        return Check("cgroup-driver", "fail", f"kubelet uses {kubelet}, containerd's runc uses {runtime} "
                     f"(SystemdCgroup = {containerd}, from {facts.get('containerd_config_source')})")
    return Check("cgroup-driver", "pass", f"{kubelet} (kubelet and containerd)")


def kubelet_cert(facts: dict, now: float, warn_days: int) -> Check:
    not_after = facts.get("kubelet_cert_not_after") or ""
    if not not_after:
        return Check("kubelet-cert", "fail", facts.get("kubelet_cert_error") or "no kubelet client certificate")
    days = (float(not_after) - now) / 86400
    when = dt.datetime.fromtimestamp(float(not_after), dt.UTC).strftime("%Y-%m-%d")
    if days < 0:
        return Check("kubelet-cert", "fail", f"expired on {when}")
    if days < warn_days:
        return Check("kubelet-cert", "fail", f"expires in {days:.1f} days ({when}), within {warn_days}")
    return Check("kubelet-cert", "pass", f"valid until {when} ({days:.0f} days)")


def clock_skew(facts: dict, sent: float, received: float, view: ClusterView) -> Check:
    node_vs_us = preflight.clock_skew(facts.get("time", ""), sent, received)
    if facts.get("time") is None:
        return Check("clock-skew", "not-run", "the node did not report its time")
    skew = node_vs_us - view.api_offset
    slack = view.api_offset_slack
    if abs(skew) > preflight.MAX_CLOCK_SKEW + slack:
        return Check("clock-skew", "fail", f"node clock is {skew:+.1f}s off the API server's "
                     f"(allowed {preflight.MAX_CLOCK_SKEW:.0f}s)")
    return Check("clock-skew", "pass", f"{skew:+.1f}s against the API server (±{slack:.1f}s)")


# ---- per node -----------------------------------------------------------------

def cluster_checks(cluster: Cluster, node_name: str, node_os: str) -> list[Check]:
    return node_and_cluster_checks(cluster, node_name, node_os)[1]


def node_and_cluster_checks(cluster: Cluster, node_name: str, node_os: str) -> tuple[object, list[Check]]:
    """The Node (None when it cannot be read) and the checks made from the cluster's side."""
    try:
        node = with_retry(lambda: cluster.core.read_node(node_name))
    except Exception as exc:  # noqa: BLE001
        if getattr(exc, "status", None) != 404:
            return None, [Check("node-ready", "fail", short_api_error(exc))]
        node = None
    on_node = f"spec.nodeName={node_name}"
    if node_os == "windows":
        # The Windows kube-proxy runs as a HostProcess DaemonSet with its own labels.
        pods = [p for p in with_retry(lambda: cluster.core.list_namespaced_pod(
            "kube-system", field_selector=on_node)).items if "kube-proxy" in p.metadata.name]
    else:
        pods = with_retry(lambda: cluster.core.list_namespaced_pod(
            "kube-system", label_selector=KUBE_PROXY_SELECTOR, field_selector=on_node)).items
    return node, [node_ready(node), kube_proxy_pod(pods)]


def linux_node_checks(ctx: HostContext, view: ClusterView, warn_days: int = CERT_WARN_DAYS,
                      expected_mode: str | None = None) -> list[Check]:
    """Every check for one Linux node: the cluster's view of it, then verify.sh on it."""
    node, checks = node_and_cluster_checks(ctx.kube(), ctx.host.node_name, "linux")
    dual_stack = dual_stack_node(node)
    if not view.proxy_mode:
        checks = [c if c.name != "kube-proxy-pod" else Check(c.name, "not-run", "the cluster has no kube-proxy "
                                                                                 "ConfigMap") for c in checks]
    sent = time.time()
    inputs = {"NB_SERVICE_ADDR": view.service_ip, "NB_SERVICE_PORT": str(view.service_port)}
    if dual_stack and view.second:
        inputs |= {"NB_SERVICE2_ADDR": view.second.ip, "NB_SERVICE2_PORT": str(view.second.port)}
    facts = ctx.script("verify.sh", inputs, timeout=60).facts
    received = time.time()
    checks += [
        kube_proxy_mode(facts, expected_mode or view.proxy_mode),
        service_reachable(facts, view, dual_stack),
        cni_config(facts),
        cgroup_driver(facts),
        kubelet_cert(facts, received, warn_days),
        clock_skew(facts, sent, received, view),
    ]
    return checks


def windows_node_checks(ctx: HostContext) -> list[Check]:
    checks = cluster_checks(ctx.kube(), ctx.host.node_name, "windows")
    checks += [Check(name, "not-run", "not checked on Windows yet") for name in WINDOWS_NOT_RUN]
    return checks


class VerifyNode(Phase):
    """Reads only: runs the checks and leaves them in `collected`."""

    name = "verify"
    title = "post-join checks"
    reads_only = True

    def __init__(self, view: ClusterView, collected: dict[str, list[Check]], warn_days: int) -> None:
        self.view, self.collected, self.warn_days = view, collected, warn_days

    def run(self, ctx: HostContext) -> bool:
        if ctx.host.os == "windows":
            checks = windows_node_checks(ctx)
        else:
            checks = linux_node_checks(ctx, self.view, self.warn_days)
        self.collected[ctx.host.name] = checks
        failed = [c for c in checks if c.status == "fail"]
        if failed:
            ctx.emit("warning", detail="; ".join(f"{c.name}: {c.detail}" for c in failed))
        return False


# ---- output -------------------------------------------------------------------

def as_json(reports: Iterable[NodeReport]) -> str:
    out = []
    for r in reports:
        out.append({"host": r.host, "node": r.node, "os": r.os, "ok": r.ok,
                    "checks": {c.name: {"status": c.status, "detail": c.detail} for c in r.checks}})
    return json.dumps({"nodes": out, "ok": all(n["ok"] for n in out)}, indent=2)


STATUS_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "not-run": "dim"}


def print_table(reports: list[NodeReport], console: Console | None = None) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("host", "node", "check", "status", "detail"):
        table.add_column(col)
    for r in reports:
        for i, c in enumerate(r.checks):
            style = STATUS_STYLE.get(c.status, "")
            # Names and details come from hosts and the cluster: text, never markup.
            table.add_row(escape(r.host) if i == 0 else "", escape(r.node) if i == 0 else "", c.name,
                          f"[{style}]{c.status}[/]", escape(c.detail))
    (console or Console()).print(table)


def report_dicts(reports: list[NodeReport]) -> list[dict]:
    return [asdict(r) for r in reports]


# ---- the command ----------------------------------------------------------------

def run(sel, settings, output_mode: str, warn_days: int = CERT_WARN_DAYS) -> int:
    """`nodeboot verify`: every selected host's checks; exit 1 if any check failed."""
    from nodeboot import app
    from nodeboot.errors import EXIT_HOST_FAILED
    from nodeboot.redact import Redactor

    hosts = app.select_hosts(sel)
    cluster = Cluster.from_kubeconfig(settings.kubeconfig)
    view = ClusterView.read(cluster)
    settings.output = "quiet"  # the table or the JSON is the output; events stay in the run's log
    redactor = Redactor()
    output = app.make_output(settings, redactor)
    collected: dict[str, list[Check]] = {}
    fleet_report = app.run_hosts(cluster, hosts, settings, output, redactor,
                                 lambda _h: [VerifyNode(view, collected, warn_days)], "nodeboot verify")
    reports = []
    for h in fleet_report.hosts:
        checks = collected.get(h.host.name)
        if checks is None:
            checks = [Check(h.phase or "connect", "fail", h.detail or h.result)]
        reports.append(NodeReport(h.host.name, h.host.node_name, h.host.os, checks))
    if output_mode == "json":
        print(as_json(reports))
    else:
        print_table(reports)
    return 0 if all(r.ok for r in reports) else EXIT_HOST_FAILED
