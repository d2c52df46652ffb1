"""`nodeboot join|reset --engine ansible`: the same work, as playbooks/*.yml run by ansible-runner.

The playbooks run nodeboot's own host scripts and call nodeboot on the controller
for the cluster side; this module only starts them and turns ansible-runner's
events into nodeboot's progress display, log, summary and exit codes:
0 every host ok, 1 some host failed or was unreachable, 2 bad input.

Task names start with nodeboot's phase names ("kubeadm-join: ..."), so the
progress table shows the same phases as the native engine, and --skip-phases
becomes --skip-tags of the same names.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodeboot import app, inventory
from nodeboot.errors import EXIT_HOST_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from nodeboot.inventory import Host
from nodeboot.output import Output
from nodeboot.redact import Redactor
from nodeboot.runner import summary_row, summary_totals

PLAYBOOK_DIR = Path(__file__).resolve().parent / "playbooks"  # a link to the top-level playbooks/ in a checkout
SOURCE_ROOT = Path(__file__).resolve().parents[1]
ACTIONS = ("join", "reset")
# Bookkeeping tasks: not worth a progress line when they merely succeed.
QUIET_ACTIONS = {"set_fact", "ansible.builtin.set_fact", "include_role", "ansible.builtin.include_role",
                 "include_tasks", "ansible.builtin.include_tasks", "import_tasks", "ansible.builtin.import_tasks"}
# ansible-playbook's own exit codes that mean "the run itself was wrong", not a host failing.
ANSIBLE_USAGE_RCS = {5}


@dataclass
class HostTrack:
    name: str
    node: str
    started: float | None = None
    finished: float | None = None
    changed: bool = False
    failed: bool = False
    unreachable: bool = False
    phase: str = ""
    detail: str = ""
    tasks: int = 0


@dataclass
class EventSink:
    """ansible-runner's event_handler: one event at a time, from the runner's thread."""

    output: Output
    hosts: dict[str, HostTrack]
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "playbook_on_stats":
            self.stats = {k: data.get(k) or {} for k in ("ok", "changed", "failures", "dark", "skipped", "rescued")}
            return True
        if not host or host not in self.hosts or not kind.startswith("runner_on_"):
            return True
        track = self.hosts[host]
        now = time.monotonic()
        track.started = track.started or now
        task = str(data.get("task") or "")
        phase = phase_of(task)
        action = str(data.get("task_action") or data.get("resolved_action") or "")
        res = data.get("res") or {}
        if kind == "runner_on_start":
            self.output.event("phase", host, phase=phase, status="start", detail=task)
            return True
        track.finished = now
        if kind == "runner_on_skipped":
            return True
        if kind == "runner_on_ok":
            track.tasks += 1
            changed = bool(res.get("changed"))
            track.changed = track.changed or changed
            self._transcript(host, task, res)
            if changed or action not in QUIET_ACTIONS:
                self.output.event("phase", host, phase=phase, status="changed" if changed else "ok", detail=task)
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                return True
            track.failed, track.phase, track.detail = True, phase, failure_text(task, res)
            self._transcript(host, task, res)
            self.output.event("phase", host, phase=phase, status="failed", detail=track.detail)
        elif kind == "runner_on_unreachable":
            track.unreachable, track.phase = True, "connect"
            track.detail = one_line(str(res.get("msg") or "unreachable"))
            self.output.event("phase", host, phase="connect", status="failed", detail=track.detail)
        return True

    def _transcript(self, host: str, task: str, res: dict[str, Any]) -> None:
        if "stdout" in res or "stderr" in res:
            self.output.event("transcript", host, script=task, exit=res.get("rc"),
                              stdout=str(res.get("stdout") or ""), stderr=str(res.get("stderr") or ""))


def phase_of(task: str) -> str:
    head, sep, _ = task.partition(":")
    return head.strip() if sep and head and " " not in head.strip() else task


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_text(task: str, res: dict[str, Any]) -> str:
    """The most useful line of a failed task: a script's JSON error, then stderr, then Ansible's message."""
    if res.get("censored"):
        return f"{task}: failed (output hidden: the task carries a secret)"
    lines = [line for line in str(res.get("stdout") or "").splitlines() if line.strip()]
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = None
        if isinstance(result, dict):
            if result.get("error"):
                return one_line(str(result["error"]))
            if result.get("problems"):
                return one_line("; ".join(map(str, result["problems"])))
    stderr = [line for line in str(res.get("stderr") or "").splitlines() if line.strip()]
    if stderr:
        return one_line(stderr[-1])
    return one_line(str(res.get("msg") or "failed"))


# -- inventory and variables ---------------------------------------------------
def host_args_inventory(hosts: list[Host], settings: app.RunSettings) -> dict[str, Any]:
    """An Ansible inventory for hosts given on the command line (an inventory file is passed as it is)."""
    groups: dict[str, dict[str, Any]] = {"linux": {"hosts": {}}, "windows": {"hosts": {}}}
    for h in hosts:
        hv: dict[str, Any] = {"ansible_host": h.address, "nodeboot_node_name": h.node_name}
        for key, value in (("ansible_port", h.port), ("ansible_user", h.user),
                           ("ansible_ssh_private_key_file", h.key_file)):
            if value is not None:
                hv[key] = value
        if h.os == "windows":
            hv.update(ansible_connection="winrm", ansible_winrm_transport=h.winrm_transport,
                      ansible_winrm_scheme=h.winrm_scheme)
            if h.password_env:
                hv["ansible_password"] = "{{ lookup('env', '" + h.password_env + "') }}"
        else:
            ssh_args = []
            known = h.known_hosts or settings.connection.known_hosts
            if known:
                ssh_args.append(f"-o UserKnownHostsFile={known}")
            if settings.connection.accept_new_host_keys:
                ssh_args.append("-o StrictHostKeyChecking=accept-new")
            if ssh_args:
                hv["ansible_ssh_common_args"] = " ".join(ssh_args)
        groups[h.os]["hosts"][h.name] = hv
    return {"all": {"children": {k: v for k, v in groups.items() if v["hosts"]}}}


def extra_vars(action: str, sel: app.HostSelection, settings: app.RunSettings, run_id: str) -> dict[str, Any]:
    opts = settings.options
    ev: dict[str, Any] = {
        "nodeboot_cli": f"{sys.executable} -m nodeboot",
        "nodeboot_run_id": run_id,
    }
    if settings.kubeconfig:
        ev["nodeboot_kubeconfig"] = os.path.abspath(settings.kubeconfig)
    # --labels and --taints add to each host's own (nodeboot merges them on the controller); extra vars
    # would replace the inventory's, so they travel under their own names.
    for key, extra in inventory.ADDED_BY_COMMAND_LINE.items():
        if sel.cli_vars.get(key) is not None:
            ev[extra] = sel.cli_vars[key]
    # Other nodeboot_* values from the command line (--install and its flags too) apply over the
    # inventory's, as in nodeboot; hosts given as arguments get them the same way.
    ev.update({k: v for k, v in sel.cli_vars.items() if v is not None and k.startswith("nodeboot_")
               and k not in ("nodeboot_known_hosts", "nodeboot_password_env", *inventory.ADDED_BY_COMMAND_LINE)})
    # CA files are read on the controller by `nodeboot node plan-join`, whose working directory is not ours.
    for key in ("nodeboot_artifacts_ca", "nodeboot_registry_ca"):
        if isinstance(ev.get(key), str):
            ev[key] = os.path.abspath(os.path.expanduser(ev[key]))
    if action == "join":
        optional = {
            "nodeboot_default_proxy_mode": opts.proxy_mode,
            "nodeboot_api_server_endpoint": opts.api_server_endpoint,
            "nodeboot_ca_cert_hashes": list(opts.ca_cert_hashes),
            "nodeboot_artifacts_url": opts.artifacts_url,
            "nodeboot_cni": opts.cni,
        }
        ev.update({k: v for k, v in optional.items() if v})
        ev["nodeboot_install_packages"] = bool(opts.install_packages)
        ev["nodeboot_ready_timeout"] = int(opts.ready_timeout)
        ev["nodeboot_discovery_timeout"] = opts.discovery_timeout
    else:
        ev["nodeboot_force_drain"] = bool(opts.force)
        ev["nodeboot_drain_timeout"] = int(opts.drain_timeout)
        ev["nodeboot_delete_emptydir_data"] = opts.delete_emptydir_data
        if opts.grace_period is not None:
            ev["nodeboot_grace_period"] = opts.grace_period
        ev["nodeboot_remove_modules_file"] = opts.remove_modules_file
    ev.update(connection_vars(sel, settings))
    return ev


def connection_vars(sel: app.HostSelection, settings: app.RunSettings) -> dict[str, Any]:
    """The connection flags, as the Ansible variables that mean the same (extra vars: they win, like flags)."""
    conn = settings.connection
    ev: dict[str, Any] = {}
    if conn.winrm_ca:
        ev["ansible_winrm_ca_trust_path"] = os.path.abspath(conn.winrm_ca)
    if conn.insecure_skip_tls_verify:
        ev["ansible_winrm_server_cert_validation"] = "ignore"
    if sel.inventory_file:
        # Hosts from arguments get these in their generated inventory (host_args_inventory).
        ssh_args = []
        if conn.known_hosts:
            ssh_args.append(f"-o UserKnownHostsFile={os.path.abspath(conn.known_hosts)}")
        if conn.accept_new_host_keys:
            ssh_args.append("-o StrictHostKeyChecking=accept-new")
        if ssh_args:
            ev["ansible_ssh_extra_args"] = " ".join(ssh_args)
    return ev


def runner_env(settings: app.RunSettings) -> dict[str, str]:
    paths = [str(SOURCE_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {
        # nodeboot on the controller must be the one running now, and ansible-playbook the one beside it.
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "1",
    }
    if settings.kubeconfig:
        env["KUBECONFIG"] = os.path.abspath(settings.kubeconfig)
    # --connect-timeout, --step-timeout and --fail-fast as Ansible's own settings (whole seconds).
    env["ANSIBLE_TIMEOUT"] = str(max(1, math.ceil(settings.connection.connect_timeout)))
    env["ANSIBLE_TASK_TIMEOUT"] = str(max(1, math.ceil(settings.options.step_timeout)))
    if settings.fail_fast:
        env["ANSIBLE_ANY_ERRORS_FATAL"] = "1"
    return env


def find_ansible_playbook(env: dict[str, str]) -> str | None:
    """ansible-playbook as the run will find it: beside this Python first, then on PATH."""
    return shutil.which("ansible-playbook", path=env["PATH"])


# -- the run -------------------------------------------------------------------
def run(action: str, sel: app.HostSelection, settings: app.RunSettings) -> int:
    if action not in ACTIONS:
        raise UsageError(f"--engine ansible: no playbook for {action}")
    try:
        import ansible_runner
    except ImportError:
        raise UsageError("--engine ansible needs ansible-runner and ansible: pip install 'nodeboot[ansible]'") from None
    playbook = PLAYBOOK_DIR / f"{action}.yml"
    if not playbook.is_file():
        raise UsageError(f"--engine ansible: {playbook} is missing from this install")
    if find_ansible_playbook(runner_env(settings)) is None:
        raise UsageError("--engine ansible: ansible-playbook is not on PATH (pip install 'nodeboot[ansible]')")
    redactor = Redactor()
    hosts = app.select_hosts(sel)  # the inventory is checked by nodeboot's rules first: bad input exits 2
    app.check_skip_phases(action, hosts, settings.options.skip_phases)  # the roles tag tasks by phase name
    output = app.make_output(settings, redactor)
    run_id = output.run_id  # the run's one id: its events, its log directory, the hosts' scripts
    tracks = {h.name: HostTrack(h.name, h.node_name) for h in hosts}
    sink = EventSink(output, tracks)
    title = f"nodeboot {action} (ansible)" + (" (check mode)" if settings.options.dry_run else "")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nodeboot-ansible-") as private:
        if sel.inventory_file:
            inventory = os.path.abspath(sel.inventory_file)
        else:
            inventory = str(Path(private) / "inventory.yml")
            Path(inventory).write_text(yaml.safe_dump(host_args_inventory(hosts, settings), sort_keys=False))
        cmdline = ["--forks", str(settings.parallel)]
        if settings.options.dry_run:
            cmdline.append("--check")
        if settings.options.skip_phases:
            cmdline += ["--skip-tags", ",".join(sorted(settings.options.skip_phases))]
        limit = ",".join(h.name for h in hosts)
        output.begin(list(tracks), title)
        try:
            result = ansible_runner.run(
                private_data_dir=private,
                playbook=str(playbook),
                inventory=inventory,
                limit=limit,
                extravars=extra_vars(action, sel, settings, run_id),
                cmdline=" ".join(cmdline),
                envvars=runner_env(settings),
                event_handler=sink,
                quiet=True,
                settings={"suppress_ansible_output": True},
            )
        finally:
            output.end()
        rc = result.rc
        stderr_tail = _stderr_tail(result) if rc not in (0, 2, 4) else ""
    return finish(output, tracks, sink.stats, rc, time.monotonic() - started, stderr_tail)


def _stderr_tail(result) -> str:
    try:
        text = result.stdout.read()
    except Exception:  # noqa: BLE001 - only for a message
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return one_line(" ".join(lines[-3:])) if lines else ""


def finish(output: Output, tracks: dict[str, HostTrack], stats: dict[str, dict[str, int]], rc: int,
           seconds: float, stderr_tail: str = "") -> int:
    rows = []
    for t in tracks.values():
        failed = t.failed or t.unreachable or bool(stats.get("failures", {}).get(t.name)) or bool(
            stats.get("dark", {}).get(t.name))
        changed = t.changed or bool(stats.get("changed", {}).get(t.name))
        ran = t.tasks > 0 or failed
        result = "failed" if failed else ("changed" if changed else "ok") if ran else "not-started"
        rows.append(summary_row(t.name, t.node, result, changed, t.phase if failed else "",
                                t.detail if failed else "", t.tasks,
                                (t.finished or 0) - (t.started or 0) if t.started else 0.0))
    for row in rows:  # the event contract: a host event for every host, whichever engine ran it
        output.event("host", row["host"], status=row["result"], phase=row["phase"], detail=row["detail"],
                     seconds=row["seconds"])
    totals = {**summary_totals(rows, seconds), "engine": "ansible", "ansible_rc": rc}
    output.summary(rows, totals)
    if rc != 0 and not totals["failed"]:
        output.message(f"ansible-playbook ended with exit {rc}" + (f": {stderr_tail}" if stderr_tail else ""),
                       "bold red")
        return EXIT_USAGE if rc in ANSIBLE_USAGE_RCS else EXIT_HOST_FAILED
    if totals["failed"] or totals["interrupted"]:
        return EXIT_HOST_FAILED
    return EXIT_OK
