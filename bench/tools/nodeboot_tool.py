"""nodeboot on the bench workload: its real code path, with bench phases.

The run goes through nodeboot's Fleet (runner.py: thread per host, events,
summary), run_workflow and the Phase interface (steps/base.py), the inventory's
Host, make_transport and SSHTransport (transport/ssh.py: TCP_NODELAY, host key
check, `bash --noprofile --norc -s` with inputs on stdin, put_file with its
sha256 skip), parse_result (nodeboot's one-JSON-line protocol) and Output in
its plain (non-terminal) mode. Only the phases are the bench's: facts, node-files,
artifact, join, each one script, each skipped from the gathered facts, so a
no-change run is one round trip.

The Fleet's Node watch and token ledger need an API server, which this
workload has none of: the watch is replaced by an idle one, and no phase asks
for a token.

With --batched, node-files and join are one phase (one script, one round
trip): what batching consecutive phases' scripts would buy (see docs/benchmarks.md).

usage: nodeboot_tool.py HOSTS_JSON PARALLEL [--stats FILE] [--batched]
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from common import BENCH, load, script_vars
from workload import ARTIFACT_PATH, MODULES, SYSCTL, artifact_sha256

from nodeboot.errors import ScriptError
from nodeboot.inventory import Host
from nodeboot.output import Output
from nodeboot.redact import Redactor
from nodeboot.runner import Fleet, summarise
from nodeboot.scripts import ScriptResult, parse_result
from nodeboot.steps.base import HostContext, Phase, RunOptions
from nodeboot.transport.factory import ConnectionDefaults

SCRIPTS = BENCH / "scripts"


def bench_script(ctx: HostContext, name: str, variables: dict[str, str]) -> ScriptResult:
    """HostContext.script, for a script that lives in bench/scripts."""
    text = (SCRIPTS / name).read_text()
    result = ctx.transport.run_script(text, variables, None, ctx.options.step_timeout)
    ctx.emit("transcript", script=name, stdout=result.stdout, stderr=result.stderr, exit=result.exit_status)
    parsed = parse_result(name, result.exit_status, result.stdout, result.stderr)
    if not parsed.ok:
        raise ScriptError(name, parsed.error or f"{name} failed", result.exit_status, result.stderr[-500:])
    return parsed


def root(ctx: HostContext) -> str:
    return ctx.host.vars["nb_root"]


class Facts(Phase):
    name, title, reads_only = "facts", "read facts and current state", True

    def run(self, ctx: HostContext) -> bool:
        ctx.facts.update(bench_script(ctx, "nb-facts.sh", {"NB_ROOT": root(ctx)}).facts)
        return False


class NodeFiles(Phase):
    name, title = "node-files", "directories, modules-load and sysctl files"
    modules_sha = hashlib.sha256(MODULES.encode()).hexdigest()
    sysctl_sha = hashlib.sha256(SYSCTL.encode()).hexdigest()

    def satisfied(self, ctx: HostContext) -> str | None:
        f = ctx.facts
        if f.get("dirs") and f.get("modules_sha") == self.modules_sha and f.get("sysctl_sha") == self.sysctl_sha:
            return "up to date"
        return None

    def run(self, ctx: HostContext) -> bool:
        variables = script_vars(root(ctx))
        return bench_script(ctx, "nb-files.sh", {k: variables[k] for k in ("NB_ROOT", "NB_MODULES", "NB_SYSCTL")}
                            ).changed


class Artifact(Phase):
    name, title = "artifact", "upload the 1 MiB artifact (sha256)"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def satisfied(self, ctx: HostContext) -> str | None:
        return "sha256 matches" if ctx.facts.get("artifact_sha") == artifact_sha256() else None

    def run(self, ctx: HostContext) -> bool:
        return ctx.transport.put_file(self.data, f"{root(ctx)}/{ARTIFACT_PATH}", 0o644,
                                      remote_sha256=ctx.facts.get("artifact_sha") or None)


class Join(Phase):
    name, title = "join", "the command standing in for kubeadm join"

    def satisfied(self, ctx: HostContext) -> str | None:
        return "already joined" if ctx.facts.get("joined") else None

    def run(self, ctx: HostContext) -> bool:
        f = ctx.facts
        variables = {"NB_ROOT": root(ctx), "NB_JOIN_FORMAT": script_vars("")["NB_JOIN_FORMAT"],
                     "NB_HOSTNAME": f["hostname"], "NB_KERNEL": f["kernel"], "NB_ARCH": f["arch"],
                     "NB_SWAP": str(f["swap"])}
        return bench_script(ctx, "nb-join.sh", variables).changed


class Prepare(Phase):
    """node-files and join as one script: the --batched variant (one round trip fewer on a cold host)."""

    name, title = "prepare", "node-files and join in one script"

    def satisfied(self, ctx: HostContext) -> str | None:
        files = NodeFiles().satisfied(ctx)
        return "up to date, already joined" if files and ctx.facts.get("joined") else None

    def run(self, ctx: HostContext) -> bool:
        f = ctx.facts
        variables = {**script_vars(root(ctx)), "NB_HOSTNAME": f["hostname"], "NB_KERNEL": f["kernel"],
                     "NB_ARCH": f["arch"], "NB_SWAP": str(f["swap"])}
        text = (SCRIPTS / "nb-files.sh").read_text() + (SCRIPTS / "nb-join.sh").read_text()
        result = ctx.transport.run_script(text, variables, None, ctx.options.step_timeout)
        ctx.emit("transcript", script=self.name, stdout=result.stdout, stderr=result.stderr,
                 exit=result.exit_status)
        lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
        if result.exit_status != 0 or len(lines) != 2 or not all(x.get("ok") for x in lines):
            raise ScriptError(self.name, f"prepare failed (exit {result.exit_status})", result.exit_status,
                              result.stderr[-500:])
        return any(x.get("changed") for x in lines)


class IdleWatcher:
    """Stands in for NodeWatcher: no phase here waits for a Node."""

    def start(self):
        return self

    def stop(self) -> None:
        pass


def main() -> int:
    spec = load(sys.argv[1])
    parallel = int(sys.argv[2])
    stats_file = sys.argv[sys.argv.index("--stats") + 1] if "--stats" in sys.argv else None
    batched = "--batched" in sys.argv
    data = Path(spec["artifact"]).read_bytes()
    hosts = [Host(name=h["name"], address=h["address"], port=h["port"], user="root", key_file=spec["key"],
                  known_hosts=spec["known_hosts"], vars={"nb_root": h["root"]}) for h in spec["hosts"]]
    redactor = Redactor()
    output = Output(redactor, mode="human", stream=sys.stdout)
    fleet = Fleet(cluster=None, options=RunOptions(), output=output, redactor=redactor,  # type: ignore[arg-type]
                  connection=ConnectionDefaults(known_hosts=spec["known_hosts"]), parallel=parallel)
    fleet.watcher = IdleWatcher()  # type: ignore[assignment]
    phases = [Facts(), Prepare(), Artifact(data)] if batched else [Facts(), NodeFiles(), Artifact(data), Join()]
    t0 = time.process_time(), time.monotonic()
    report = fleet.run(hosts, lambda _h: phases, "bench node-prep")
    t1 = time.process_time(), time.monotonic()
    summarise(output, report)
    t2 = time.process_time(), time.monotonic()
    if stats_file:
        Path(stats_file).write_text(json.dumps({
            "execs": sum(h.execs for h in report.hosts) / len(hosts),
            "connects": sum(h.connects for h in report.hosts) / len(hosts),
            "first_failure_at": (output.first_failure_at - output.started) if output.first_failure_at else None,
            # Where the time went: before the fleet (imports, setup), the fleet, the summary table.
            "cpu_before_fleet": t0[0], "cpu_fleet": t1[0] - t0[0], "cpu_summary": t2[0] - t1[0],
            "wall_fleet": t1[1] - t0[1], "wall_summary": t2[1] - t1[1],
        }))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
