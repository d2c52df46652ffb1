"""Windows workflows: prepare (with its reboot), containerd, kubelet service,
csi-proxy, the cluster-side Windows pieces, kubeadm join; and reset.

Every phase is satisfied from the facts gathered in one round trip, so a second
run on a joined host runs facts.ps1 and nothing else on the host.
"""

from __future__ import annotations

from nodeboot.cluster import windows as cluster_windows
from nodeboot.steps import cluster_phases, preflight
from nodeboot.steps.base import HostContext, Phase

KUBE_DIR = "C:\\k"
CONTAINERD_DIR = "C:\\Program Files\\containerd"
CSI_PIPES = tuple(f"csi-proxy-{g}-v1" for g in ("disk", "volume", "filesystem", "smb"))
MIN_BUILD = 17763  # Windows Server 2019
REBOOT_TIMEOUT = 900.0


def _paths() -> dict[str, str]:
    return {"NB_KUBE_DIR": KUBE_DIR, "NB_CONTAINERD_DIR": CONTAINERD_DIR}


def _artifacts(ctx: HostContext) -> dict[str, str]:
    url = ctx.options.extra.get("artifacts_url") or ""
    return {"NB_ARTIFACTS_URL": url, "NB_KUBE_DIR": KUBE_DIR}


def gather(ctx: HostContext) -> None:
    cluster_phases.gather_facts(ctx, "facts.ps1", _paths())


def _service(ctx: HostContext, name: str) -> dict:
    return (ctx.facts.get("services") or {}).get(name) or {}


class Facts(Phase):
    name = "facts"
    title = "gather facts"
    reads_only = True

    def run(self, ctx: HostContext) -> bool:
        gather(ctx)
        return False


def windows_problems(ctx: HostContext) -> list[str]:
    facts = ctx.facts
    problems = []
    build = int(facts.get("os_build") or 0)
    if build < MIN_BUILD:
        problems.append(f"Windows build {build} is older than Windows Server 2019 ({MIN_BUILD})")
    if not facts.get("kubelet_version") and not ctx.options.extra.get("artifacts_url"):
        problems.append(f"{KUBE_DIR}\\kubelet.exe is missing: install it or give --artifacts-url")
    elif facts.get("kubelet_version"):
        skew = preflight.version_skew_problem(facts["kubelet_version"], ctx.state["server_minor"])
        if skew:
            problems.append(skew)
    return problems


class Preflight(cluster_phases.JoinPreflight):
    kubelet_conf = "C:\\etc\\kubernetes\\kubelet.conf"

    def problems(self, ctx: HostContext) -> list[str]:
        return windows_problems(ctx)


class Prepare(Phase):
    name = "prepare"
    title = "Containers feature (and the reboot it needs)"

    def satisfied(self, ctx: HostContext) -> str | None:
        if ctx.facts.get("containers_feature") == "Installed" and not ctx.facts.get("reboot_pending"):
            return "Containers feature installed"
        return None

    def run(self, ctx: HostContext) -> bool:
        result = ctx.script("prepare.ps1", {"NB_FEATURES": "Containers"})
        if result.facts.get("reboot_required"):
            ctx.emit("progress", phase=self.name, detail="restarting the host for the Containers feature")
            ctx.script("reboot.ps1", {"NB_REBOOT_DELAY": "5", "NB_REASON": "nodeboot: Containers feature"})
            ctx.transport.wait_for_reboot(REBOOT_TIMEOUT)  # type: ignore[attr-defined]
            gather(ctx)  # resume from what the host is after the restart
            if ctx.facts.get("containers_feature") != "Installed":
                feature = ctx.facts.get("containers_feature")
                raise cluster_phases.PreflightError(
                    f"the Containers feature is {feature} after the restart, not Installed")
        return True


class Containerd(Phase):
    name = "containerd"
    title = "containerd config and service"

    def satisfied(self, ctx: HostContext) -> str | None:
        if (ctx.facts.get("containerd_configured") and _service(ctx, "containerd").get("status") == "Running"
                and ctx.facts.get("cri_pipe")):
            return "containerd configured and running"
        return None

    def run(self, ctx: HostContext) -> bool:
        variables = {**_artifacts(ctx), "NB_CONTAINERD_DIR": CONTAINERD_DIR}
        return ctx.script("containerd.ps1", variables).changed


class Kubelet(Phase):
    name = "kubelet-service"
    title = "kubelet binaries, start script, service and firewall"

    def satisfied(self, ctx: HostContext) -> str | None:
        if _service(ctx, "kubelet") and ctx.facts.get("kubelet_start_script") and ctx.facts.get("firewall_kubelet"):
            return "kubelet service in place"
        return None

    def run(self, ctx: HostContext) -> bool:
        manager = str(ctx.host.vars.get("nodeboot_windows_service_manager", "auto"))
        return ctx.script("kubelet.ps1", {**_artifacts(ctx), "NB_SERVICE_MANAGER": manager}).changed


class CsiProxy(Phase):
    name = "csi-proxy"
    title = "csi-proxy service and pipes"

    def satisfied(self, ctx: HostContext) -> str | None:
        pipes = set(ctx.facts.get("csi_proxy_pipes") or [])
        if _service(ctx, "csiproxy").get("status") == "Running" and set(CSI_PIPES) <= pipes:
            return "csiproxy running, pipes up"
        return None

    def run(self, ctx: HostContext) -> bool:
        return ctx.script("csi-proxy.ps1", _artifacts(ctx)).changed


class ClusterSide(Phase):
    name = "windows-cluster"
    title = "kube-proxy for Windows, the CNI's Windows side, Linux DaemonSets pinned to Linux"

    def satisfied(self, ctx: HostContext) -> str | None:
        plan = cluster_windows.plan(ctx.cluster, ctx.options.extra.get("cni"))
        return None if plan.pending() else "in place"

    def run(self, ctx: HostContext) -> bool:
        changes = cluster_windows.apply(ctx.cluster, ctx.options.extra.get("cni"))
        for change in changes:
            ctx.emit("progress", phase=self.name, detail=change)
        return bool(changes)


class KubeadmJoin(Phase):
    name = "kubeadm-join"
    title = "kubeadm join"

    def satisfied(self, ctx: HostContext) -> str | None:
        return "already joined" if cluster_phases.is_joined(ctx) else None

    def run(self, ctx: HostContext) -> bool:
        kubeadm_minor = (preflight.minor_of(ctx.facts.get("kubeadm_version", "")) or (1, 31))[1]
        config = cluster_phases.make_join_config(ctx, kubeadm_minor)
        result = ctx.script("join.ps1", {"NB_KUBE_DIR": KUBE_DIR}, secret_variables={"NB_JOIN_CONFIG": config})
        ctx.facts["joined"] = True
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
        services = ctx.facts.get("services") or {}
        if (ctx.facts.get("joined") or ctx.facts.get("kubelet_configured")
                or any(name in services for name in ("kubelet", "kube-proxy", "csiproxy"))):
            return None
        return "not joined"

    def run(self, ctx: HostContext) -> bool:
        return ctx.script("reset.ps1", {"NB_KUBE_DIR": KUBE_DIR,
                                        "NB_CRI_SOCKET": "npipe:////./pipe/containerd-containerd"}).changed


def reset_phases() -> list[Phase]:
    return [
        Facts(),
        cluster_phases.Drain(),
        WindowsReset(),
        cluster_phases.DeleteNode(),
    ]
