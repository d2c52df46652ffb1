"""nodeboot on the bench workload: its real code path, with bench phases.

The run goes through nodeboot's Fleet (runner.py: thread per host, events,
summary), run_workflow and the Phase interface (steps/base.py), the inventory's
Host, make_transport and SSHTransport (transport/ssh.py: TCP_NODELAY, host key
check, one long-lived shell per host with scripts and their inputs sent as
frames, batches, the upload with its sha256 check), parse_result (nodeboot's
one-JSON-line protocol) and Output in its plain (non-terminal) mode. Only the
phases are the bench's: facts, then node-files, artifact and join, each one
script, each skipped from the gathered facts, and batched: a cold host is two
round trips (facts; the three others together), a no-change host one.

The workload has no API server: the Fleet runs host-only (cluster=None: no
Node watch, no token ledger, and the kubernetes client is never imported).

usage: nodeboot_tool.py HOSTS_JSON PARALLEL [--stats FILE]
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from common import host_script, load, script_vars
from workload import ARTIFACT_PATH, MODULES, SYSCTL, artifact_sha256

from nodeboot.inventory import Host
from nodeboot.output import Output
from nodeboot.redact import Redactor
from nodeboot.runner import Fleet, summarise
from nodeboot.steps.base import HostContext, Phase, RunOptions
from nodeboot.transport import ExecResult, ScriptCall
from nodeboot.transport.factory import ConnectionDefaults
from nodeboot.transport.ssh import upload_call, upload_written


def bench_call(name: str, variables: dict[str, str]) -> ScriptCall:
    """HostContext.call, for a script that lives in bench/scripts."""
    return ScriptCall(host_script(name), variables, name=name)


def root(ctx: HostContext) -> str:
    return ctx.host.vars["nb_root"]


# The bench workload's own facts per host (nb-facts.sh's object; not nodeboot's facts schema).
BENCH_FACTS: dict[str, dict] = {}


def bench_facts(ctx: HostContext) -> dict:
    return BENCH_FACTS.setdefault(ctx.host.name, {})


class Facts(Phase):
    name, title, reads_only = "facts", "read facts and current state", True

    def run(self, ctx: HostContext) -> bool:
        bench_facts(ctx).update(ctx.run_call(bench_call("nb-facts.sh", {"NB_ROOT": root(ctx)})).facts)
        return False


class NodeFiles(Phase):
    name, title, batched = "node-files", "directories, modules-load and sysctl files", True
    modules_sha = hashlib.sha256(MODULES.encode()).hexdigest()
    sysctl_sha = hashlib.sha256(SYSCTL.encode()).hexdigest()

    def satisfied(self, ctx: HostContext) -> str | None:
        f = bench_facts(ctx)
        if f.get("dirs") and f.get("modules_sha") == self.modules_sha and f.get("sysctl_sha") == self.sysctl_sha:
            return "up to date"
        return None

    def host_script(self, ctx: HostContext) -> ScriptCall:
        variables = script_vars(root(ctx))
        return bench_call("nb-files.sh", {k: variables[k] for k in ("NB_ROOT", "NB_MODULES", "NB_SYSCTL")})


class Artifact(Phase):
    name, title, batched = "artifact", "upload the 1 MiB artifact (sha256)", True

    def __init__(self, data: bytes) -> None:
        self.data = data

    def satisfied(self, ctx: HostContext) -> str | None:
        return "sha256 matches" if bench_facts(ctx).get("artifact_sha") == artifact_sha256() else None

    def host_script(self, ctx: HostContext) -> ScriptCall:
        return upload_call(self.data, f"{root(ctx)}/{ARTIFACT_PATH}", 0o644)

    def script_done(self, ctx: HostContext, call: ScriptCall, result: ExecResult) -> bool:
        return upload_written(ctx.host.name, f"{root(ctx)}/{ARTIFACT_PATH}", result)


class Join(Phase):
    name, title, batched = "join", "the command standing in for kubeadm join", True

    def satisfied(self, ctx: HostContext) -> str | None:
        return "already joined" if bench_facts(ctx).get("joined") else None

    def host_script(self, ctx: HostContext) -> ScriptCall:
        f = bench_facts(ctx)
        return bench_call("nb-join.sh", {
            "NB_ROOT": root(ctx), "NB_JOIN_FORMAT": script_vars("")["NB_JOIN_FORMAT"], "NB_HOSTNAME": f["hostname"],
            "NB_KERNEL": f["kernel"], "NB_ARCH": f["arch"], "NB_SWAP": str(f["swap"])})


def main() -> int:
    spec = load(sys.argv[1])
    parallel = int(sys.argv[2])
    stats_file = sys.argv[sys.argv.index("--stats") + 1] if "--stats" in sys.argv else None
    data = Path(spec["artifact"]).read_bytes()
    hosts = [Host(name=h["name"], address=h["address"], port=h["port"], user="root", key_file=spec["key"],
                  known_hosts=spec["known_hosts"], vars={"nb_root": h["root"]}) for h in spec["hosts"]]
    redactor = Redactor()
    output = Output(redactor, mode="human", stream=sys.stdout)
    fleet = Fleet(cluster=None, options=RunOptions(), output=output, redactor=redactor,
                  connection=ConnectionDefaults(known_hosts=spec["known_hosts"]), parallel=parallel)
    phases = [Facts(), NodeFiles(), Artifact(data), Join()]
    t0 = time.process_time(), time.monotonic()
    report = fleet.run(hosts, lambda _h: phases, "bench node-prep")
    t1 = time.process_time(), time.monotonic()
    summarise(output, report)
    t2 = time.process_time(), time.monotonic()
    if stats_file:
        Path(stats_file).write_text(json.dumps({
            "execs": sum(h.execs for h in report.hosts) / len(hosts),  # round trips (a batch counts once)
            "connects": sum(h.connects for h in report.hosts) / len(hosts),
            "first_failure_at": (output.first_failure_at - output.started) if output.first_failure_at else None,
            # Where the time went: before the fleet (imports, setup), the fleet, the summary table.
            "cpu_before_fleet": t0[0], "cpu_fleet": t1[0] - t0[0], "cpu_summary": t2[0] - t1[0],
            "wall_fleet": t1[1] - t0[1], "wall_summary": t2[1] - t1[1],
        }))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
