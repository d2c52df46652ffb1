"""Windows workflows: prepare (with its reboot), containerd, kubelet service,
csi-proxy, the cluster-side Windows pieces, kubeadm join; and reset.

Every phase is satisfied from the facts gathered in one round trip, so a second
run on a joined host runs facts.ps1 and nothing else on the host.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from nodeboot import node_install
from nodeboot.cluster import windows as cluster_windows
from nodeboot.errors import UsageError
from nodeboot.node_layout import WINDOWS_CONTAINERD_DIR, WINDOWS_CRI_SOCKET, WINDOWS_KUBE_DIR
from nodeboot.scripts import SCRIPTS_DIR, ScriptResult
from nodeboot.steps import cluster_phases, preflight
from nodeboot.steps.base import HostContext, Phase, RunOptions, WindowsClusterOnce
from nodeboot.transport import Rebootable
from nodeboot.windows import builds

if TYPE_CHECKING:
    from nodeboot.cluster.client import Cluster

KUBE_DIR = WINDOWS_KUBE_DIR
CONTAINERD_DIR = WINDOWS_CONTAINERD_DIR
CSI_PIPES = tuple(f"csi-proxy-{g}-v1" for g in ("disk", "volume", "filesystem", "smb"))
REBOOT_TIMEOUT = 900.0
SHA256 = re.compile(r"^[0-9a-f]{64}$")
CNI_HNS_NETWORKS = ("vxlan0", "cbr0", "flannel.4096", "Calico")  # what reset.ps1 removes, besides the inventory's
# Files the node keeps as they are sent (not scripts run over WinRM).
START_KUBELET = "StartKubelet.ps1"
SERVICE_HOST = "ServiceHost.cs"


@cache
def host_file(name: str) -> str:
    """scripts/windows/files/NAME: what a script writes on the node (the kubelet wrapper, the service host)."""
    return (SCRIPTS_DIR / "windows" / "files" / name).read_text()


def _paths() -> dict[str, str]:
    return {"NB_KUBE_DIR": KUBE_DIR, "NB_CONTAINERD_DIR": CONTAINERD_DIR}


def artifacts_url(ctx: HostContext) -> str:
    return ctx.options.artifacts_url or ctx.host.install.artifacts_url or ""


def wanted_version(ctx: HostContext) -> str:
    """kubelet.exe and kubeadm.exe: the operator's --kubernetes-version, else the API server's."""
    try:
        return node_install.wanted_kubernetes_version(ctx.host.install, ctx.run.server_version)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def sha256_pins(ctx: HostContext) -> dict[str, str]:
    """Checksums that do not come from the download host: nodeboot_windows_checksums_file (a
    file on this machine, `HEX  NAME` lines as sha256sum writes them, NAME a file name or a
    path ending in it), then nodeboot_windows_sha256 ({NAME: HEX}) over it."""
    pins: dict[str, str] = {}
    source = ctx.host.vars.get("nodeboot_windows_checksums_file")
    if source:
        try:
            lines = Path(str(source)).read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"{ctx.host.name}: nodeboot_windows_checksums_file {source}: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            parts = line.split()
            if not parts or line.lstrip().startswith("#"):
                continue
            if len(parts) != 2 or not SHA256.match(parts[0].lower()):
                raise UsageError(f"{source}:{number}: expected 'SHA256  NAME', got {line.strip()[:80]!r}")
            pins[parts[1].lstrip("*").replace("\\", "/").rsplit("/", 1)[-1]] = parts[0].lower()
    inline = ctx.host.vars.get("nodeboot_windows_sha256") or {}
    if not isinstance(inline, dict):
        raise UsageError(f"{ctx.host.name}: nodeboot_windows_sha256 must map file names to sha256 values")
    for name, value in inline.items():
        if not SHA256.match(str(value).lower()):
            raise UsageError(f"{ctx.host.name}: nodeboot_windows_sha256.{name}: {value!r} is not a sha256")
        pins[str(name)] = str(value).lower()
    return pins


def _artifacts(ctx: HostContext) -> dict[str, str]:
    pins = ";".join(f"{name}={value}" for name, value in sorted(sha256_pins(ctx).items()))
    return {"NB_ARTIFACTS_URL": artifacts_url(ctx), "NB_KUBE_DIR": KUBE_DIR, "NB_SHA256_PINS": pins}


def gather(ctx: HostContext) -> None:
    cluster_phases.gather_facts(ctx, "facts.ps1", _paths())


def _status(ctx: HostContext, name: str) -> str:
    """A service's status from the facts ('' when the service does not exist)."""
    service = ctx.windows_facts().service(name)
    return service.status if service else ""


class Facts(Phase):
    name = "facts"
    title = "gather facts"
    reads_only = True
    uses_cluster_facts = False

    def run(self, ctx: HostContext) -> bool:
        gather(ctx)
        return False


def windows_problems(ctx: HostContext) -> list[str]:
    facts = ctx.windows_facts()
    problems = []
    problem = builds.build_problem(facts.os_build, facts.os_caption, ctx.run.server_minor)
    if problem:
        problems.append(problem)
    if not artifacts_url(ctx):
        if not facts.kubelet_version:
            problems.append(f"{KUBE_DIR}\\kubelet.exe is missing: install it or give --artifacts-url")
        else:  # kept as it is: it must suit the API server
            skew = preflight.version_skew_problem(facts.kubelet_version, ctx.run.server_minor)
            if skew:
                problems.append(skew)
    return problems


def hostname_note(ctx: HostContext) -> str | None:
    """The node name may differ from the Windows hostname: kubeadm then writes --hostname-override
    into kubeadm-flags.env, and the kubelet only ever starts from that file (StartKubelet.ps1)."""
    hostname = ctx.windows_facts().hostname
    if hostname and hostname.lower() != ctx.host.node_name:
        return (f"node name {ctx.host.node_name} differs from the Windows hostname {hostname}: the kubelet "
                "registers as the node name through --hostname-override in kubeadm-flags.env")
    return None


class Preflight(cluster_phases.JoinPreflight):
    kubelet_conf = "C:\\etc\\kubernetes\\kubelet.conf"

    def problems(self, ctx: HostContext) -> list[str]:
        note = hostname_note(ctx)
        if note:
            ctx.emit("progress", phase=self.name, detail=note)
        return windows_problems(ctx)


class Prepare(Phase):
    name = "prepare"
    title = "Containers feature (and the reboot it needs)"

    def satisfied(self, ctx: HostContext) -> str | None:
        facts = ctx.windows_facts()
        if facts.containers_feature == "Installed" and not facts.reboot_pending:
            return "Containers feature installed"
        return None

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        state = ctx.windows_facts().containers_feature
        if state == "Installed":
            return "would restart the host (a restart is pending)"
        return f"would install the Windows feature Containers (now {state}) and restart the host for it"

    def run(self, ctx: HostContext) -> bool:
        result = ctx.script("prepare.ps1", {"NB_FEATURES": "Containers"})
        if result.facts.get("reboot_required"):
            ctx.emit("progress", phase=self.name, detail="restarting the host for the Containers feature")
            ctx.script("reboot.ps1", {"NB_REBOOT_DELAY": "5", "NB_REASON": "nodeboot: Containers feature"})
            if not isinstance(ctx.transport, Rebootable):
                raise cluster_phases.PreflightError(f"{ctx.host.name}: its connection cannot wait for a restart")
            ctx.transport.wait_for_reboot(REBOOT_TIMEOUT)
            gather(ctx)  # resume from what the host is after the restart
            feature = ctx.windows_facts().containers_feature
            if feature != "Installed":
                raise cluster_phases.PreflightError(
                    f"the Containers feature is {feature} after the restart, not Installed")
        return True


class Containerd(Phase):
    name = "containerd"
    title = "containerd config and service"

    def satisfied(self, ctx: HostContext) -> str | None:
        facts = ctx.windows_facts()
        if facts.containerd_configured and _status(ctx, "containerd") == "Running" and facts.cri_pipe:
            return "containerd configured and running"
        return None

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        facts, status = ctx.windows_facts(), _status(ctx, "containerd")
        lines = []
        if not facts.containerd_version:
            lines.append(f"would download containerd.exe, containerd-shim-runhcs-v1.exe and ctr.exe "
                         f"from {artifacts_url(ctx) or '(no --artifacts-url: the run would fail)'}")
        if not facts.containerd_configured:
            lines.append(f"would write {CONTAINERD_DIR}\\config.toml")
        if not status:
            lines.append("would register the containerd service (automatic start, restart on failure) and start it")
        elif status != "Running":
            lines.append("would start containerd")
        elif not facts.containerd_configured:
            lines.append("would restart containerd for its new config")
        return "; ".join(lines) or "would wait for containerd's pipe"

    def run(self, ctx: HostContext) -> bool:
        variables = {**_artifacts(ctx), "NB_CONTAINERD_DIR": CONTAINERD_DIR}
        return ctx.script("containerd.ps1", variables).changed


class Kubelet(Phase):
    name = "kubelet-service"
    title = "kubelet binaries of the cluster's version, start wrapper, service and firewall"

    def satisfied(self, ctx: HostContext) -> str | None:
        facts = ctx.windows_facts()
        wrapper = hashlib.sha256(host_file(START_KUBELET).encode()).hexdigest()
        want = wanted_version(ctx)
        versions_ok = facts.kubelet_version == want and facts.kubeadm_version == want
        if not artifacts_url(ctx):
            versions_ok = bool(facts.kubelet_version and facts.kubeadm_version)
        if (facts.service("kubelet") and facts.kubelet_service_wrapper and versions_ok
                and facts.kubelet_start_script == wrapper and facts.firewall_kubelet):
            return "kubelet service in place, starting through StartKubelet.ps1"
        return None

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        facts, url, lines = ctx.windows_facts(), artifacts_url(ctx), []
        for exe, have in (("kubelet", facts.kubelet_version), ("kubeadm", facts.kubeadm_version)):
            want = wanted_version(ctx) if url else have
            if have != want:
                lines.append(f"would {'replace' if have else 'install'} {exe}.exe {have + ' with ' if have else ''}"
                             f"{want} from {url.rstrip('/')}/release/{want}/bin/windows/amd64/{exe}.exe")
        if facts.kubelet_start_script != hashlib.sha256(host_file(START_KUBELET).encode()).hexdigest():
            lines.append(f"would write {KUBE_DIR}\\{START_KUBELET}")
        if not (facts.service("kubelet") and facts.kubelet_service_wrapper):
            lines.append("would create the kubelet service, starting through StartKubelet.ps1")
        if not facts.firewall_kubelet:
            lines.append("would allow TCP 10250 in the firewall (rule nodeboot-kubelet-10250)")
        return "; ".join(lines) or self.title

    def run(self, ctx: HostContext) -> bool:
        manager = str(ctx.host.vars.get("nodeboot_windows_service_manager", "auto"))
        variables = {**_artifacts(ctx), "NB_SERVICE_MANAGER": manager, "NB_KUBERNETES_VERSION": wanted_version(ctx),
                     "NB_START_KUBELET": host_file(START_KUBELET), "NB_SERVICE_HOST_CS": host_file(SERVICE_HOST)}
        result = ctx.script("kubelet.ps1", variables)
        facts = ctx.windows_facts()
        facts.kubelet_version = str(result.facts.get("kubelet_version", facts.kubelet_version))
        facts.kubeadm_version = str(result.facts.get("kubeadm_version", facts.kubeadm_version))
        return result.changed


class CsiProxy(Phase):
    name = "csi-proxy"
    title = "csi-proxy service and pipes"

    def satisfied(self, ctx: HostContext) -> str | None:
        if _status(ctx, "csiproxy") == "Running" and set(CSI_PIPES) <= set(ctx.windows_facts().csi_proxy_pipes):
            return "csiproxy running, pipes up"
        return None

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        lines = []
        if not ctx.windows_facts().csi_proxy_installed:
            lines.append(f"would download csi-proxy.exe from {artifacts_url(ctx) or '(no --artifacts-url)'}")
        status = _status(ctx, "csiproxy")
        if not status:
            lines.append("would create the csiproxy service (automatic start, restart on failure)")
        if status != "Running":
            lines.append("would start csiproxy")
        return "; ".join(lines) or "would wait for csiproxy's pipes"

    def run(self, ctx: HostContext) -> bool:
        return ctx.script("csi-proxy.ps1", _artifacts(ctx)).changed


def cluster_side_once(cluster: Cluster, options: RunOptions,
                      report: Callable[[str], None]) -> WindowsClusterOnce | None:
    """The cluster side of Windows nodes, reconciled once per run before the hosts fan out (N hosts
    would otherwise write the same objects and race): what it changed or why it failed, for every
    host's run facts; `report` gets each change. None when each host answers for itself."""
    if "windows-cluster" in options.skip_phases or options.dry_run:
        return None  # skipped by each host, or answered from the plan by each host (a dry run writes nothing)
    cni = options.cni
    try:
        changes = cluster_windows.apply(cluster, cni)
    except Exception as exc:  # noqa: BLE001 - every Windows host fails its windows-cluster phase with it
        from nodeboot.cluster.retry import describe

        return WindowsClusterOnce(error=str(describe(exc) or exc))
    for change in changes:
        report(change)
    if cni is None:
        report("no --cni: Linux DaemonSets pinned to Linux only; kube-proxy and the CNI for Windows "
               "are not deployed (name the cluster's CNI with --cni flannel|calico)")
    return WindowsClusterOnce(changes=tuple(changes))


def plan_lines(plan: cluster_windows.Plan) -> list[str]:
    """What apply() would do with this plan, for a dry run (apply says the same once done)."""
    ref = cluster_windows._ref  # noqa: SLF001 - the object names apply() reports
    return ([f"would create {doc['kind']} {ref(doc)}" for doc in plan.create]
            + [f"would update DaemonSet {ref(doc)}" for doc in plan.update]
            + ([f"would set flannel's VXLAN backend to VNI {cluster_windows.FLANNEL_VNI}, port "
                f"{cluster_windows.FLANNEL_PORT}"] if plan.flannel_backend else [])
            + [f"would pin DaemonSet {ns}/{name} to {cluster_windows.OS_LABEL}=linux" for ns, name in plan.pin_linux]
            + (["would set the Calico Installation's windowsDataplane to HNS"] if plan.calico_patch else []))


class ClusterSide(Phase):
    name = "windows-cluster"
    title = "kube-proxy for Windows, the CNI's Windows side, Linux DaemonSets pinned to Linux"

    def satisfied(self, ctx: HostContext) -> str | None:
        once = ctx.run.windows_cluster
        if once is not None:
            if once.error is not None:
                return None
            return f"reconciled once for this run ({len(once.changes)} changes)"
        plan = ctx.state.windows_plan = cluster_windows.plan(ctx.kube(), ctx.options.cni)
        return None if plan.pending() else "in place"

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        plan = ctx.state.windows_plan or cluster_windows.plan(ctx.kube(), ctx.options.cni)
        return "; ".join(plan_lines(plan))

    def run(self, ctx: HostContext) -> bool:
        once = ctx.run.windows_cluster
        if once is not None and once.error is not None:
            raise cluster_phases.PreflightError(once.error)
        changes = cluster_windows.apply(ctx.kube(), ctx.options.cni)
        for change in changes:
            ctx.emit("progress", phase=self.name, detail=change)
        return bool(changes)


class KubeadmJoin(Phase):
    name = "kubeadm-join"
    title = "kubeadm join"

    def satisfied(self, ctx: HostContext) -> str | None:
        return "already joined" if cluster_phases.is_joined(ctx) else None

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        kubeadm = ctx.windows_facts().kubeadm_version or (wanted_version(ctx) if artifacts_url(ctx) else "")
        return (cluster_phases.join_config_plan(ctx, kubeadm) + f"; would run kubeadm join {kubeadm} with it in a "
                f"file under {KUBE_DIR} only SYSTEM and Administrators read (removed afterwards; a failed join is "
                "undone with kubeadm reset -f)")

    def run(self, ctx: HostContext) -> bool:
        config = cluster_phases.make_join_config(ctx, ctx.windows_facts().kubeadm_version)
        result = ctx.script("join.ps1", {"NB_KUBE_DIR": KUBE_DIR}, secret_variables={"NB_JOIN_CONFIG": config})
        ctx.windows_facts().joined = True
        return result.changed


def join_phases() -> list[Phase]:
    return [
        Facts(),
        Preflight(),
        Prepare(),
        Containerd(),
        Kubelet(),
        CsiProxy(),
        ClusterSide(),
        KubeadmJoin(),
        *cluster_phases.after_join(),
    ]


class WindowsReset(Phase):
    name = "windows-reset"
    title = "kubeadm reset, services, HNS networks, CNI config"

    def satisfied(self, ctx: HostContext) -> str | None:
        facts = ctx.windows_facts()
        if (facts.joined or facts.kubelet_configured
                or any(name in facts.services for name in ("kubelet", "kube-proxy", "csiproxy"))):
            return None
        return "not joined"

    def _extra_networks(self, ctx: HostContext) -> list[str]:
        extra = ctx.host.vars.get("nodeboot_windows_hns_networks") or []
        return [extra] if isinstance(extra, str) else [str(e) for e in extra]

    def dry_run_detail(self, ctx: HostContext, result: ScriptResult | None = None) -> str:
        facts = ctx.windows_facts()
        lines = ["would run kubeadm reset -f"] if facts.joined or facts.kubelet_configured else []
        lines += [f"would stop and remove the {name} service" for name in ("kubelet", "kube-proxy", "csiproxy")
                  if name in facts.services]
        networks = ", ".join([*CNI_HNS_NETWORKS, *self._extra_networks(ctx)])
        lines.append(f"would remove the HNS networks among {networks}, with their endpoints and policy lists")
        lines.append("would empty C:\\etc\\cni\\net.d and C:\\var\\lib\\kubelet")
        return "; ".join(lines)

    def run(self, ctx: HostContext) -> bool:
        extra = self._extra_networks(ctx)
        result = ctx.script("reset.ps1", {"NB_KUBE_DIR": KUBE_DIR, "NB_HNS_NETWORKS": ",".join(extra),
                                          "NB_CRI_SOCKET": WINDOWS_CRI_SOCKET})
        if result.facts.get("hns_removed") or result.facts.get("hns_kept"):
            ctx.emit("progress", phase=self.name,
                     detail=f"HNS networks removed: {', '.join(result.facts.get('hns_removed') or []) or 'none'}; "
                            f"kept: {', '.join(result.facts.get('hns_kept') or []) or 'none'}")
        return result.changed


def reset_phases() -> list[Phase]:
    return [
        Facts(),
        cluster_phases.Drain(),
        WindowsReset(),
        cluster_phases.DeleteNode(),
    ]
