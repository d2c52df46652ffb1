"""The lab's model of nodeboot's Windows node scripts (scripts/windows/*.ps1).

Each handler checks the script's NB_* inputs, applies the script's effect to the
modelled host (features, services, files, firewall, HNS, pending reboot) and
answers what the real script prints: log lines on stderr and one JSON line
{"ok","changed","facts","error"} on stdout, exit 0 or 1.

Real work where it can be real: join does kubeadm's token discovery against the
lab's API server (windows_join) and starts the kubelet stand-in inside this
host's sandbox, so a Node registers through the real TLS bootstrap with
kubernetes.io/os=windows. C:\\etc\\kubernetes and C:\\var\\lib\\kubelet are the
sandbox's private /etc/kubernetes and /var/lib/kubelet; outside a lab sandbox
(unit tests) they live under the model's state directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeboot.node_layout import WINDOWS_CONTAINERD_DIR, WINDOWS_KUBE_DIR
from nodeboot_lab import windows_join

if TYPE_CHECKING:
    from nodeboot_lab.windows_model import Outcome, PowerShellInvocation, WindowsHostModel

LAB_ENV = Path("/var/lib/nodeboot-lab/env")
KUBE_DIR = WINDOWS_KUBE_DIR
CONTAINERD_DIR = WINDOWS_CONTAINERD_DIR
CSI_GROUPS = ("disk", "volume", "filesystem", "smb")
SERVICE_NAMES = ("containerd", "kubelet", "csiproxy", "kube-proxy")
DEFAULT_K8S = "v1.37.2"
CONTAINERD_VERSION = "v2.1.4"
# What Win32_OperatingSystem.Caption says for the builds the model can be (per host).
CAPTIONS = {
    17763: "Microsoft Windows Server 2019 Datacenter",
    20348: "Microsoft Windows Server 2022 Datacenter",
    25398: "Microsoft Windows Server Datacenter (23H2)",
    26100: "Microsoft Windows Server 2025 Datacenter",
}


def lab_env() -> dict[str, str]:
    """The sandbox's /var/lib/nodeboot-lab/env (export K=V lines); empty outside a lab host."""
    try:
        text = LAB_ENV.read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        if key and value:
            out[key.strip()] = value.strip()
    return out


class Result:
    """The JSON line common.ps1's Invoke-NbMain prints (ConvertTo-Json -Compress)."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.changed = False
        self.facts: dict[str, Any] = {"actions": []}
        self.log: list[str] = []

    def change(self, what: str) -> None:
        self.changed = True
        self.facts["actions"].append(what)
        self.log.append(f"nodeboot: {what}")

    def outcome(self, error: str = "") -> Outcome:
        from nodeboot_lab.windows_model import Outcome

        if error:
            self.log.append(f"nodeboot: error: {error}")
        body = {"ok": not error, "changed": self.changed, "facts": self.facts, "error": error}
        stderr = "".join(line + "\r\n" for line in self.log)
        return Outcome(json.dumps(body, separators=(",", ":")) + "\r\n", stderr, 1 if error else 0)


class NodeScripts:
    """Handlers for the node scripts, bound to one host model."""

    def __init__(self, model: WindowsHostModel) -> None:
        self.model = model
        self.env = lab_env()
        self.in_lab = self.env.get("NB_LAB_OS") == "windows"
        self.root = Path("/") if self.in_lab else model.state_dir / "fs"
        self.reboot_hook: Callable[[float], None] | None = None
        self._kubelet: subprocess.Popen[bytes] | None = None
        version = self.env.get("NB_LAB_K8S_VERSION", DEFAULT_K8S)
        w = model.state.setdefault("windows", {})
        build = model.os_build or int(os.environ.get("NB_LAB_WINDOWS_BUILD") or 0)
        if build:  # the host's setting (the lab inventory's, or the test's) over what the state had
            w["os_build"], w["caption"] = build, CAPTIONS.get(build, f"Microsoft Windows (build {build})")
        w.setdefault("os_build", 20348)
        w.setdefault("caption", CAPTIONS[20348])
        w.setdefault("features", {"Containers": "Available"})
        w.setdefault("binaries", {
            f"{KUBE_DIR}\\kubelet.exe": version, f"{KUBE_DIR}\\kubeadm.exe": version,
            f"{KUBE_DIR}\\csi-proxy.exe": "v1.1.3", f"{CONTAINERD_DIR}\\containerd.exe": CONTAINERD_VERSION,
            f"{CONTAINERD_DIR}\\containerd-shim-runhcs-v1.exe": "v0.13.0",
            f"{CONTAINERD_DIR}\\ctr.exe": CONTAINERD_VERSION,
        })
        w.setdefault("services", {})
        w.setdefault("firewall", [])
        w.setdefault("dirs", [])
        w.setdefault("texts", {})
        w.setdefault("hns", {"networks": ["nat"], "policy_lists": 0})
        w.setdefault("domain", "lab.nodeboot.test")
        self.w = w

    def table(self) -> dict[str, Callable[[PowerShellInvocation], Outcome]]:
        return {
            "facts": self.facts, "prepare": self.prepare, "reboot": self.reboot,
            "containerd": self.containerd, "kubelet": self.kubelet, "csi-proxy": self.csi_proxy,
            "join": self.join, "reset": self.reset, "gmsa-credspec": self.gmsa_credspec,
        }

    # -- helpers ---------------------------------------------------------------------
    def _save(self) -> None:
        self.model._save()

    def _path(self, windows_path: str) -> Path:
        """Where a C:\\etc\\kubernetes or C:\\var\\lib\\kubelet path lives on the modelled host."""
        rel = windows_path.replace("\\", "/").split(":", 1)[-1].lstrip("/")
        return self.root / rel

    def _service(self, name: str) -> dict[str, Any] | None:
        return self.w["services"].get(name)

    def _ensure_running_service(self, r: Any, name: str, created: str) -> bool:
        """An auto-start service with restart on failure, running: what the scripts make sure of.
        Returns whether it was already running."""
        svc = self._service(name)
        if svc is None:
            svc = self.w["services"][name] = {"status": "Stopped", "start": "Automatic", "recovery": True}
            r.change(created)
        if svc["start"] != "Automatic":
            svc["start"] = "Automatic"
            r.change(f"{name} starts automatically")
        was_running = svc["status"] == "Running"
        if not was_running:
            svc["status"] = "Running"
            r.change(f"started {name}")
        return was_running

    def _running(self, name: str) -> bool:
        svc = self._service(name)
        return bool(svc) and svc["status"] == "Running"

    def pipes(self) -> list[str]:
        pipes = []
        if self._running("containerd"):
            pipes.append("containerd-containerd")
        if self._running("csiproxy"):
            pipes += [f"csi-proxy-{g}-v1" for g in CSI_GROUPS]
        return pipes

    @staticmethod
    def _pin(inv: PowerShellInvocation, name: str) -> str:
        """Get-NbPinnedSha256: NAME=HEX pairs in NB_SHA256_PINS."""
        for pair in filter(None, inv.variables.get("NB_SHA256_PINS", "").split(";")):
            key, _, value = pair.partition("=")
            if key.strip() == name and value:
                return value.strip().lower()
        return ""

    @staticmethod
    def _download(url: str, pinned: str) -> tuple[str | None, str]:
        """Get-NbArtifact for real: fetch url, check its sha256 against the pin or url.sha256.
        Returns (error, sha256)."""
        source = "the pinned sha256"
        try:
            if not pinned:
                with urllib.request.urlopen(f"{url}.sha256", timeout=30) as resp:
                    pinned = (resp.read().decode(errors="replace").split() or [""])[0].lower()
                source = f"{url}.sha256"
            if not re.fullmatch(r"[0-9a-f]{64}", pinned):
                return f"{source} is not a sha256 for {url}", ""
            with urllib.request.urlopen(url, timeout=300) as resp:
                data = resp.read()
        except OSError as exc:
            return f"download of {url} failed: {exc}", ""
        got = hashlib.sha256(data).hexdigest()
        if got != pinned:
            return f"{url} has sha256 {got}, {source} says {pinned}; not installed", ""
        return None, got

    def _ensure_binary(self, r: Result, inv: PowerShellInvocation, path: str) -> str | None:
        """Get-NbMissingArtifact: present, or fetched from NB_ARTIFACTS_URL/NAME and checked."""
        if path in self.w["binaries"]:
            return None
        base = inv.variables.get("NB_ARTIFACTS_URL", "").rstrip("/")
        if not base:
            return f"{path} is missing and no artifacts URL was given (--artifacts-url)"
        name = path.rsplit("\\", 1)[-1]
        error, got = self._download(f"{base}/{name}", self._pin(inv, name))
        if error:
            return error
        self.w["binaries"][path] = "downloaded:" + got[:12]
        r.change(f"downloaded {name}")
        return None

    def _replace_binary(self, path: str, version: str, sha: str) -> str | None:
        """Windows keeps a running program's file locked: a kubelet.exe in use cannot be replaced."""
        if path.lower().endswith("\\kubelet.exe") and self._running("kubelet"):
            return (f"Move-Item: The process cannot access the file '{path}' because it is being used by "
                    "another process.")
        self.w["binaries"][path] = version
        self.w.setdefault("binary_sha256", {})[path] = sha
        return None

    # -- facts -----------------------------------------------------------------------
    def facts(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("facts")
        f, w = r.facts, self.w
        bins = w["binaries"]
        f["os_caption"] = w["caption"]
        f["os_build"] = w["os_build"]
        f["hostname"] = self.model.computer_name.upper()
        f["time"] = f"{time.time():.3f}"
        f["containers_feature"] = w["features"].get("Containers", "Unknown")
        f["reboot_pending"] = any(v == "InstallPending" for v in w["features"].values())
        f["kubelet_version"] = bins.get(f"{KUBE_DIR}\\kubelet.exe", "")
        f["kubeadm_version"] = bins.get(f"{KUBE_DIR}\\kubeadm.exe", "")
        f["containerd_version"] = bins.get(f"{CONTAINERD_DIR}\\containerd.exe", "")
        f["csi_proxy_installed"] = f"{KUBE_DIR}\\csi-proxy.exe" in bins
        f["services"] = {n: {"status": s["status"], "start": s["start"]}
                         for n, s in w["services"].items() if n in SERVICE_NAMES}
        f["containerd_configured"] = "nodeboot" in w["texts"].get(f"{CONTAINERD_DIR}\\config.toml", "")
        wrapper = w["texts"].get(f"{KUBE_DIR}\\StartKubelet.ps1")
        f["kubelet_start_script"] = hashlib.sha256(wrapper.encode()).hexdigest() if wrapper is not None else ""
        f["kubelet_service_wrapper"] = "StartKubelet.ps1" in (self._service("kubelet") or {}).get("command", "")
        f["firewall_kubelet"] = "nodeboot-kubelet-10250" in w["firewall"]
        pipes = self.pipes()
        f["cri_pipe"] = "containerd-containerd" in pipes
        f["csi_proxy_pipes"] = sorted(p for p in pipes if p.startswith("csi-proxy-"))
        f["joined"] = self._path("C:\\etc\\kubernetes\\kubelet.conf").exists()
        f["kubelet_configured"] = self._path("C:\\var\\lib\\kubelet\\config.yaml").exists()
        f["cni_conf_dir"] = "C:\\etc\\cni\\net.d" in w["dirs"]
        return r.outcome()

    # -- prepare and reboot ----------------------------------------------------------
    def prepare(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("prepare")
        names = [n.strip() for n in (inv.variables.get("NB_FEATURES") or "Containers").split(",") if n.strip()]
        reboot = False
        for name in names:
            state = self.w["features"].get(name)
            if state is None:
                return r.outcome(f"Windows feature {name} does not exist on this edition")
            if state == "Available":
                self.w["features"][name] = state = "InstallPending"
                r.change(f"installed Windows feature {name}")
            reboot = reboot or state == "InstallPending"
        r.facts["features"] = {n: self.w["features"][n] for n in names}
        r.facts["reboot_required"] = reboot
        self._save()
        return r.outcome()

    def reboot(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("reboot")
        try:
            delay = int(inv.variables.get("NB_REBOOT_DELAY") or "5")
        except ValueError:
            return r.outcome(f"Cannot convert value \"{inv.variables['NB_REBOOT_DELAY']}\" to type \"System.Int32\"")
        reason = inv.variables.get("NB_REASON") or "nodeboot"
        r.change(f"restart in {delay} s: {reason}")
        r.facts["reboot_in"] = delay
        # shutdown.exe /r /t N returns at once; the host goes down N seconds later (the lab caps the wait).
        timer = threading.Timer(min(max(delay, 0), 5) * 0.4, self._reboot_now)
        timer.daemon = True
        timer.start()
        return r.outcome()

    def _reboot_now(self) -> None:
        """The host restarts: pending features finish, services come back by their start type."""
        with self.model._lock:
            for name, state in self.w["features"].items():
                if state == "InstallPending":
                    self.w["features"][name] = "Installed"
            self.model.state["boot_id"] = str(uuid.uuid4())
            self._stop_kubelet()
            for name, svc in self.w["services"].items():
                svc["status"] = "Running" if svc["start"] == "Automatic" and name != "kubelet" else "Stopped"
            if self.w["services"].get("kubelet", {}).get("start") == "Automatic":
                self.start_kubelet_service()
            self._save()
        if self.reboot_hook is not None:
            self.reboot_hook(1.0)
        elif callable(signal.getsignal(signal.SIGUSR2)):  # the lab's winrm_server: SIGUSR2 is its reboot
            os.kill(os.getpid(), signal.SIGUSR2)

    # -- containerd ------------------------------------------------------------------
    def containerd(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("containerd")
        v = inv.variables
        cdir = v.get("NB_CONTAINERD_DIR") or CONTAINERD_DIR
        cni_bin = v.get("NB_CNI_BIN_DIR") or "C:\\opt\\cni\\bin"
        cni_conf = v.get("NB_CNI_CONF_DIR") or "C:\\etc\\cni\\net.d"
        pause = v.get("NB_PAUSE_IMAGE") or "registry.k8s.io/pause:3.10"
        if self.w["features"].get("Containers") != "Installed":
            return r.outcome("containerd needs the Containers feature installed and the host restarted (prepare)")
        for exe in ("containerd.exe", "containerd-shim-runhcs-v1.exe", "ctr.exe"):
            error = self._ensure_binary(r, inv, f"{cdir}\\{exe}")
            if error:
                return r.outcome(error)
        for d in (cni_bin, cni_conf):
            if d not in self.w["dirs"]:
                self.w["dirs"].append(d)
                r.change(f"created {d}")
        version = self.w["binaries"][f"{cdir}\\containerd.exe"]
        major = int(version.lstrip("v").split(".")[0]) if version[1:2].isdigit() else 2
        r.facts["containerd_version"] = version
        config = self._containerd_config(major, pause, cni_bin, cni_conf)
        path = f"{cdir}\\config.toml"
        changed = self.w["texts"].get(path) != config
        if changed:
            self.w["texts"][path] = config
            r.change(f"wrote {path} (config version {3 if major >= 2 else 2})")
        was_running = self._ensure_running_service(r, "containerd", "registered the containerd service")
        if was_running and changed:
            r.change("restarted containerd for its new config")
        r.facts["cri_pipe"] = True
        self._save()
        return r.outcome()

    @staticmethod
    def _containerd_config(major: int, pause: str, cni_bin: str, cni_conf: str) -> str:
        b, c = cni_bin.replace("\\", "\\\\"), cni_conf.replace("\\", "\\\\")
        if major >= 2:
            lines = ["# written by nodeboot (containerd 2.x)", "version = 3", "",
                     '[plugins."io.containerd.cri.v1.images".pinned_images]', f'  sandbox = "{pause}"', "",
                     '[plugins."io.containerd.cri.v1.runtime".cni]', f'  bin_dirs = ["{b}"]', f'  conf_dir = "{c}"']
        else:
            lines = ["# written by nodeboot (containerd 1.7)", "version = 2", "",
                     '[plugins."io.containerd.grpc.v1.cri"]', f'  sandbox_image = "{pause}"', "",
                     '[plugins."io.containerd.grpc.v1.cri".cni]', f'  bin_dir = "{b}"', f'  conf_dir = "{c}"']
        return "\r\n".join(lines) + "\r\n"

    # -- kubelet ---------------------------------------------------------------------
    def kubelet(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("kubelet")
        v = inv.variables
        kube = v.get("NB_KUBE_DIR") or KUBE_DIR
        manager = v.get("NB_SERVICE_MANAGER") or "auto"
        if manager == "auto":
            manager = "nssm" if f"{kube}\\nssm.exe" in self.w["binaries"] else "sc"
        if manager not in ("nssm", "sc"):
            return r.outcome(f"NB_SERVICE_MANAGER must be auto, nssm or sc, not '{manager}'")
        wrapper = v.get("NB_START_KUBELET", "")
        if not wrapper:
            return r.outcome("no kubelet start wrapper given (NB_START_KUBELET)")
        dirs = (kube, "C:\\var\\lib\\kubelet\\etc\\kubernetes\\pki", "C:\\etc\\kubernetes\\pki",
                "C:\\var\\log\\kubelet")
        for d in dirs:
            if d not in self.w["dirs"]:
                self.w["dirs"].append(d)
                r.change(f"created {d}")
        want = v.get("NB_KUBERNETES_VERSION", "")
        base = v.get("NB_ARTIFACTS_URL", "").rstrip("/")
        for exe in ("kubelet.exe", "kubeadm.exe"):
            path = f"{kube}\\{exe}"
            have = self.w["binaries"].get(path, "")
            key = exe.replace(".exe", "_version")
            r.facts[key] = have
            if have and (not want or have == want):
                continue
            if not base:
                if have:
                    continue
                return r.outcome(f"{path} is missing and no artifacts URL was given (--artifacts-url)")
            was_running = self._running("kubelet")
            if was_running:  # the script stops it first: its file is locked while it runs
                self._stop_kubelet()
                self.w["services"]["kubelet"]["status"] = "Stopped"
                r.change(f"stopped the kubelet to replace {exe}")
            error, sha = self._download(f"{base}/release/{want}/bin/windows/amd64/{exe}", self._pin(inv, exe))
            error = error or self._replace_binary(path, want, sha)
            if error:
                self._save()
                return r.outcome(error)
            r.change(f"replaced {exe} {have} with {want}" if have else f"installed {exe} {want}")
            r.facts[key] = want
            if was_running:
                failure = self.start_kubelet_service()
                if failure:
                    return r.outcome(failure)
                r.change("started the kubelet again")
        if not wrapper.startswith("# nodeboot-kubelet-wrapper"):
            return r.outcome("NB_START_KUBELET is not nodeboot's StartKubelet.ps1")
        if self.w["texts"].get(f"{kube}\\StartKubelet.ps1") != wrapper:
            self.w["texts"][f"{kube}\\StartKubelet.ps1"] = wrapper
            r.change(f"wrote {kube}\\StartKubelet.ps1")
        joined = self._path("C:\\etc\\kubernetes\\kubelet.conf").exists()
        svc = self._service("kubelet")
        if svc is not None and "StartKubelet.ps1" not in svc.get("command", ""):
            self._stop_kubelet()
            del self.w["services"]["kubelet"]
            r.change("removed a kubelet service that did not start through StartKubelet.ps1 "
                     f"({svc.get('command', '')})")
            svc = None
        if manager == "sc" and f"{kube}\\nodeboot-service-host.exe" not in self.w["binaries"]:
            if not v.get("NB_SERVICE_HOST_CS", "").lstrip().startswith("// nodeboot's service host"):
                return r.outcome("Add-Type: NB_SERVICE_HOST_CS is not nodeboot's service host source")
            self.w["binaries"][f"{kube}\\nodeboot-service-host.exe"] = "built"
            r.change(f"built {kube}\\nodeboot-service-host.exe")
        if svc is None:
            ps = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
            command = (f'"{kube}\\nssm.exe" (AppParameters: {ps} -File {kube}\\StartKubelet.ps1)' if manager == "nssm"
                       else f'"{kube}\\nodeboot-service-host.exe" kubelet "{kube}\\StartKubelet.ps1"')
            start = "Automatic" if joined else "Manual"
            self.w["services"]["kubelet"] = {"status": "Stopped", "start": start, "recovery": True,
                                             "manager": manager, "depends": ["containerd"], "command": command}
            r.change(f"created the kubelet service ({manager}, through StartKubelet.ps1, start "
                     f"{'auto' if joined else 'demand'}, restart on failure)")
        r.facts["service_manager"] = manager
        r.facts["kubelet_service_wrapper"] = True
        if "nodeboot-kubelet-10250" not in self.w["firewall"]:
            self.w["firewall"].append("nodeboot-kubelet-10250")
            r.change("opened TCP 10250 in the firewall")
        self._save()
        return r.outcome()

    def start_kubelet_service(self) -> str | None:
        """The Service Control Manager starts the kubelet service; None, or why it did not start.
        As Windows would: a script is no service program (error 1053), and StartKubelet.ps1 exits
        3 while kubeadm-flags.env or config.yaml is missing, so the service stops again."""
        svc = self._service("kubelet")
        if svc is None:
            return "Start-Service: Cannot find any service with service name 'kubelet'."
        command = svc.get("command", "")
        program = command.strip('"').split('"')[0].split(" ")[0].lower()
        failure = None
        if program.endswith("powershell.exe") and svc.get("manager") != "nssm":
            failure = ("Start-Service: Service 'kubelet' cannot be started: error 1053: the service did not respond "
                       "to the start or control request in a timely fashion")
        elif "StartKubelet.ps1" not in command:
            failure = (f"the kubelet service runs {command!r}, not StartKubelet.ps1: it would start without "
                       "kubeadm-flags.env")
        else:
            for name in ("kubeadm-flags.env", "config.yaml"):
                if not self._path(f"C:\\var\\lib\\kubelet\\{name}").exists():
                    failure = (f"StartKubelet: C:\\var\\lib\\kubelet\\{name} is missing: the kubelet starts only "
                               "after kubeadm join has written it")
                    break
        if failure:
            svc["status"] = "Stopped"
            self.w.setdefault("service_failures", []).append({"service": "kubelet", "error": failure})
            return failure
        svc["status"] = "Running"
        if self.in_lab:  # the stand-in runs only inside a lab host's sandbox
            self._start_kubelet()
        return None

    @staticmethod
    def start_script(kube: str, minor: int) -> str:
        """What StartKubelet.ps1 drops for a kubelet of this minor (the wrapper's version gates)."""
        gone = [flag for flag, since in (("--pod-infra-container-image", 34), ("--network-plugin", 24),
                                         ("--container-runtime", 27)) if minor >= since]
        return f"# kubelet 1.{minor} from {kube}\\kubelet.exe; drops {' '.join(gone) or 'nothing'}\r\n"

    # -- csi-proxy -------------------------------------------------------------------
    def csi_proxy(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("csi-proxy")
        kube = inv.variables.get("NB_KUBE_DIR") or KUBE_DIR
        groups = [g.strip() for g in (inv.variables.get("NB_CSI_PIPES") or ",".join(CSI_GROUPS)).split(",")]
        wanted = [f"csi-proxy-{g}-v1" for g in groups]
        error = self._ensure_binary(r, inv, f"{kube}\\csi-proxy.exe")
        if error:
            return r.outcome(error)
        self._ensure_running_service(r, "csiproxy", "created the csiproxy service (auto start, restart on failure)")
        self._save()
        missing = [p for p in wanted if p not in self.pipes()]
        r.facts["csi_proxy_pipes"] = [p for p in wanted if p not in missing]
        if missing:
            return r.outcome("csiproxy runs but these pipes are missing: "
                             + ", ".join("\\\\.\\pipe\\" + p for p in missing))
        return r.outcome()

    # -- join ------------------------------------------------------------------------
    def join(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("join")
        kube = inv.variables.get("NB_KUBE_DIR") or KUBE_DIR
        if self._path("C:\\etc\\kubernetes\\kubelet.conf").exists():
            r.facts["joined"] = True
            return r.outcome()
        config = inv.variables.get("NB_JOIN_CONFIG", "")
        if not config:
            return r.outcome("no join configuration given (NB_JOIN_CONFIG)")
        if f"{kube}\\kubeadm.exe" not in self.w["binaries"]:
            return r.outcome(f"{kube}\\kubeadm.exe is missing: run the kubelet step first")
        try:
            self._kubeadm_join(r, config)
        except windows_join.JoinFailure as exc:
            r.log.append(f"error execution phase preflight/discovery: {exc}")
            self._kubeadm_reset()
            r.facts["restored"] = True
            tail = f"error execution phase kubelet-start: {exc}"
            return r.outcome(f"kubeadm join failed (exit 1); the host was reset with 'kubeadm reset -f'. "
                             f"kubeadm said: {tail}")
        if self.w["services"]["kubelet"]["start"] != "Automatic":
            self.w["services"]["kubelet"]["start"] = "Automatic"
        r.change("kubeadm join")
        r.facts["joined"] = True
        self._save()
        return r.outcome()

    def _kubeadm_join(self, r: Result, config: str) -> None:
        req = windows_join.parse_join_config(config, self.model.computer_name)
        if req.cri_socket != windows_join.WINDOWS_CRI:
            raise windows_join.JoinFailure(f"criSocket {req.cri_socket!r}: this Windows host serves "
                                           f"{windows_join.WINDOWS_CRI}")
        if not self._running("containerd"):
            raise windows_join.JoinFailure("[preflight] container runtime is not running: containerd service stopped")
        if self._service("kubelet") is None:
            raise windows_join.JoinFailure("[preflight] the kubelet service does not exist")
        r.log.append("[preflight] Running pre-flight checks")
        server, ca_pem = windows_join.discover(req)
        r.log.append(f"[discovery] cluster-info from {req.endpoint}: JWS verified for token {req.token_id}, CA pinned")
        config_yaml = windows_join.kubelet_config(server, ca_pem, req.token)
        windows_join.write_node_files(self.root, req, server, ca_pem, config_yaml)
        r.log.append("[kubelet-start] Writing kubelet configuration to file \"C:\\var\\lib\\kubelet\\config.yaml\"")
        if not self.in_lab:
            raise windows_join.JoinFailure("the kubelet stand-in runs only inside a lab host's sandbox")
        failure = self.start_kubelet_service()  # kubeadm's kubelet-start: the service, as the host has it
        if failure:
            raise windows_join.JoinFailure(f"[kubelet-start] the kubelet service did not start: {failure}")
        self._wait(lambda: self._healthz(), 40, "the kubelet did not become healthy on 127.0.0.1:10248 within 40s")
        self._wait(lambda: self._path("C:\\etc\\kubernetes\\kubelet.conf").exists(), 120,
                   "the TLS bootstrap did not finish within 120s")
        r.log.append("This node has joined the cluster")

    @staticmethod
    def _wait(check: Callable[[], bool], seconds: float, message: str) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                raise windows_join.JoinFailure(message)
            time.sleep(0.2)

    @staticmethod
    def _healthz() -> bool:
        try:
            with urllib.request.urlopen("http://127.0.0.1:10248/healthz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _start_kubelet(self) -> None:
        """The kubelet service starts: the stand-in, in this sandbox, as the Linux systemctl stand-in does."""
        if self._kubelet is not None and self._kubelet.poll() is None:
            return
        log_dir = self.root / "var" / "lib" / "nodeboot-lab"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": self.env.get("PYTHONPATH", ""),
               "NB_LAB_K8S_VERSION": self.env.get("NB_LAB_K8S_VERSION", DEFAULT_K8S), "NB_LAB_OS": "windows"}
        python = self.env.get("NB_LAB_PYTHON", "python3")
        with open(log_dir / "kubelet.log", "ab") as log:
            self._kubelet = subprocess.Popen([python, "-m", "nodeboot_lab.kubelet_standin"], stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        run = self.root / "run" / "nodeboot-lab"
        run.mkdir(parents=True, exist_ok=True)
        (run / "kubelet.pid").write_text(f"{self._kubelet.pid}\n")

    def _stop_kubelet(self) -> None:
        proc, self._kubelet = self._kubelet, None
        pidfile = self.root / "run" / "nodeboot-lab" / "kubelet.pid"
        if proc is None:  # started by an earlier run of this endpoint: by its pid file
            if self.in_lab and pidfile.exists():
                from nodeboot_lab.netns import kill_pids

                kill_pids([int(pidfile.read_text().split()[0])])
            pidfile.unlink(missing_ok=True)
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        (self.root / "run" / "nodeboot-lab" / "kubelet.pid").unlink(missing_ok=True)

    def _kubeadm_reset(self) -> None:
        self._stop_kubelet()
        if "kubelet" in self.w["services"]:
            self.w["services"]["kubelet"]["status"] = "Stopped"
        etc = self._path("C:\\etc\\kubernetes")
        for name in ("kubelet.conf", "bootstrap-kubelet.conf", "pki/ca.crt"):
            (etc / name).unlink(missing_ok=True)
        kubelet = self._path("C:\\var\\lib\\kubelet")
        for name in ("config.yaml", "kubeadm-flags.env"):
            (kubelet / name).unlink(missing_ok=True)

    # -- reset -----------------------------------------------------------------------
    def reset(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("reset")
        cri = inv.variables.get("NB_CRI_SOCKET") or windows_join.WINDOWS_CRI
        if cri != windows_join.WINDOWS_CRI:
            return r.outcome("kubeadm reset -f failed (exit 1)")
        kubelet_dir = self._path("C:\\var\\lib\\kubelet")
        if self._path("C:\\etc\\kubernetes\\kubelet.conf").exists() or (kubelet_dir / "config.yaml").exists():
            self._kubeadm_reset()
            r.change("kubeadm reset -f")
        for name in ("kubelet", "kube-proxy", "csiproxy"):
            if self.w["services"].pop(name, None) is not None:
                if name == "kubelet":
                    self._stop_kubelet()
                r.change(f"stopped and removed the {name} service")
        hns = self.w["hns"]
        names = self._cni_networks(inv)
        removed = [n for n in hns["networks"] if n in names]
        endpoints = hns.setdefault("endpoints", {})
        if removed and hns["policy_lists"]:  # the model's policy lists are kube-proxy's, on the CNI's endpoints
            r.change(f"removed {hns['policy_lists']} HNS policy lists of the CNI's endpoints")
            hns["policy_lists"] = 0
        count = sum(endpoints.pop(n, 0) for n in removed)
        if count:
            r.change(f"removed {count} HNS endpoints of {', '.join(removed)}")
        if removed:
            r.change(f"removed HNS networks {', '.join(removed)}")
            hns["networks"] = [n for n in hns["networks"] if n not in removed]
            hns.setdefault("removed", []).extend(removed)  # what Remove-HnsNetwork was given, for tests
        r.facts["hns_removed"] = removed
        r.facts["hns_kept"] = list(hns["networks"])
        r.facts["hns"] = "cleaned"
        cni = self._path("C:\\etc\\cni\\net.d")
        if (cni.exists() and any(cni.iterdir())) or self.w.get("cni_files"):
            for child in cni.glob("*") if cni.exists() else []:
                child.unlink()
            self.w["cni_files"] = []
            r.change("emptied C:\\etc\\cni\\net.d")
        if kubelet_dir.exists() and any(kubelet_dir.iterdir()):
            for child in sorted(kubelet_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                child.rmdir() if child.is_dir() and not child.is_symlink() else child.unlink()
            r.change("emptied C:\\var\\lib\\kubelet")
        r.facts["joined"] = False
        self._save()
        return r.outcome()

    @staticmethod
    def _cni_networks(inv: PowerShellInvocation) -> list[str]:
        """The network names reset.ps1 removes: its own $cniNetworks list, read from the script
        it was sent, plus NB_HNS_NETWORKS."""
        match = re.search(r"\$cniNetworks = @\(([^)]*)\)", inv.body)
        names = re.findall(r"'([^']*)'", match.group(1)) if match else []
        return names + [n.strip() for n in inv.variables.get("NB_HNS_NETWORKS", "").split(",") if n.strip()]

    # -- gMSA credential spec --------------------------------------------------------
    def gmsa_credspec(self, inv: PowerShellInvocation) -> Outcome:
        r = Result("gmsa-credspec")
        account = inv.variables.get("NB_ACCOUNT", "")
        if not account:
            return r.outcome("no account given (NB_ACCOUNT)")
        domain = inv.variables.get("NB_DOMAIN") or self.w["domain"]
        netbios = domain.split(".")[0].upper()[:15]
        seed = hashlib.sha256(domain.encode()).digest()
        sub = [int.from_bytes(seed[i:i + 4], "little") for i in (0, 4, 8)]
        r.facts["credspec"] = {
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {
                "Sid": f"S-1-5-21-{sub[0]}-{sub[1]}-{sub[2]}", "MachineAccountName": account,
                "Guid": str(uuid.UUID(bytes=seed[:16])), "DnsTreeName": domain, "DnsName": domain,
                "NetBiosName": netbios,
            },
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [
                {"Name": account, "Scope": domain}, {"Name": account, "Scope": netbios}]},
        }
        return r.outcome()
