"""proxy-cleanup.sh per mode transition, on kube-proxy's own rule dumps.

Each test builds, in a private network namespace, the state a node is in after
kube-proxy switched from OLD to NEW mode: the real iptables, ipset and nft
tools hold the rules (loaded from tests/unit/fixtures/proxy-dumps), and only IPVS
and the kube-ipvs0 link are stand-ins (this kernel has neither). Then the
cleanup runs as `nodeboot proxy set-mode` runs it, and what is left must be
exactly what the NEW mode's own dump holds plus the foreign rules.

Both sets of dumps: the hand-written ones and the ones taken from kube-proxy
v1.37.2 on the real-node tier's VM (proxydumps.REAL).

Two starting states per transition:
- "left": the old mode's rules are all still there (kube-proxy does not clean
  between iptables and IPVS; and its own cleanup can fail, e.g. no modprobe in
  its image);
- "kube-proxy cleaned": for the transitions kube-proxy cleans itself at start
  (to and from nftables, platformCleanup in cmd/kube-proxy/app/server_linux.go),
  only the new mode is there, and the cleanup must find nothing to do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeboot.cluster.kubeproxy import kube_proxy_cleans_itself
from nodeboot.scripts import ScriptResult, parse_result, script_text, shell_preamble
from proxydumps import (
    DUMP_STATE,
    REAL,
    SOURCES,
    TRANSITIONS,
    NodeState,
    cleanup_vars,
    end_state,
    parse_sections,
    start_state,
    state_of,
)

SOURCE_IDS = {"": "hand-written", REAL: REAL}
PER_SOURCE = pytest.mark.parametrize("source", SOURCES, ids=[SOURCE_IDS[s] for s in SOURCES])

STANDINS = {
    # The modules kube-proxy's modes use, as "loaded".
    "lsmod": 'echo "Module Size Used by"; for m in ip_vs ip_set nf_tables ip_tables; do echo "$m 16384 0"; done\n',
    # ipvsadm: its state is `ipvsadm -Ln` text; -D removes a service and its real servers.
    "ipvsadm": r'''state=$NB_TEST_STATE/ipvs
case "$1" in
  -Ln|-L) cat "$state" ;;
  -D) proto=TCP; [ "$2" = -u ] && proto=UDP
      awk -v svc="$proto  $3 " 'index($0, svc) == 1 { skip = 1; next } /^(TCP|UDP|SCTP|FWM) / { skip = 0 } !skip' \
        "$state" > "$state.new" && mv "$state.new" "$state" ;;
  *) echo "ipvsadm stand-in: $*" >&2; exit 1 ;;
esac
''',
    # ip: kube-ipvs0 lives in a file (no dummy links here); anything else is the real ip.
    "ip": r'''link=$NB_TEST_STATE/kube-ipvs0
case "$*" in
  "link show dev kube-ipvs0") [ -f "$link" ] ;;
  "-o addr show dev kube-ipvs0") [ -f "$link" ] && while read -r a; do
      echo "9: kube-ipvs0    inet $a/32 scope global kube-ipvs0"; done < "$link" ;;
  "link delete dev kube-ipvs0") rm "$link" ;;
  *) exec /usr/sbin/ip "$@" ;;
esac
''',
}


def needs_netns() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("these tests need root and unshare (a private network namespace for real iptables)")


@dataclass
class Outcome:
    result: ScriptResult
    stderr: str
    state: dict[str, list[str]]


def run_on(tmp: Path, node: NodeState, runs: list[dict[str, str]]) -> tuple[list[Outcome], dict[str, list[str]]]:
    """Load the node, run the cleanup once per `runs` entry, and read the state before and after each."""
    needs_netns()
    tmp.mkdir(exist_ok=True)
    state = tmp / "state"
    state.mkdir()
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, body in STANDINS.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    (state / "ipvs").write_text("")
    driver = [node.load_shell(real_ipvs=False) + "set +e\n", DUMP_STATE.replace("@@", "@@0-")]
    for index, variables in enumerate(runs, 1):
        script = tmp / f"run{index}.sh"
        script.write_text(shell_preamble(variables) + script_text("linux", "proxy-cleanup.sh"))
        driver.append(f"echo '@@{index}-result'; bash --noprofile --norc -s < {script} 2>{tmp}/stderr{index}")
        driver.append(DUMP_STATE.replace("@@", f"@@{index}-"))
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "NB_TEST_STATE": str(state), "LC_ALL": "C"}
    proc = subprocess.run(["unshare", "-n", "bash", "-c", "\n".join(driver)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    sections = parse_sections(proc.stdout)
    outcomes = []
    for index in range(1, len(runs) + 1):
        lines = sections[f"{index}-result"]
        result = parse_result("proxy-cleanup.sh", 0 if lines and json.loads(lines[-1])["ok"] else 1,
                              "\n".join(lines), "")
        outcomes.append(Outcome(result, (tmp / f"stderr{index}").read_text(), state_of(sections, f"{index}-")))
    return outcomes, state_of(sections, "0-")


def expected_state(tmp: Path, new: str, source: str = "") -> dict[str, list[str]]:
    _, state = run_on(tmp / "expected", end_state(new, source), [])
    return state


@PER_SOURCE
@pytest.mark.parametrize(("old", "new"), TRANSITIONS, ids=[f"{o}-to-{n}" for o, n in TRANSITIONS])
def test_cleanup_leaves_exactly_the_new_mode_and_foreign_rules(tmp_path: Path, old: str, new: str,
                                                                source: str) -> None:
    want = expected_state(tmp_path, new, source)
    runs = [cleanup_vars(old, new, dry_run=True), cleanup_vars(old, new), cleanup_vars(old, new)]
    (dry, first, second), before = run_on(tmp_path / "run", start_state(old, new, False, source), runs)
    assert before != want, "the starting state should hold the old mode's leftovers"
    assert dry.result.ok and dry.result.changed, dry.stderr
    assert dry.state == before, "a dry run changes nothing"
    assert first.result.ok, first.result.error + first.stderr
    assert first.result.changed
    assert first.state == want, first.stderr
    assert second.result.ok and not second.result.changed, second.result.facts["actions"]
    assert second.state == want


@PER_SOURCE
@pytest.mark.parametrize(("old", "new"), [t for t in TRANSITIONS if kube_proxy_cleans_itself(*t)],
                         ids=lambda v: str(v))
def test_nothing_to_do_where_kube_proxy_cleaned_itself(tmp_path: Path, old: str, new: str, source: str) -> None:
    want = expected_state(tmp_path, new, source)
    (outcome,), before = run_on(tmp_path / "run", start_state(old, new, True, source), [cleanup_vars(old, new)])
    assert before == want
    assert outcome.result.ok and not outcome.result.changed, outcome.result.facts["actions"]
    assert outcome.state == want


@PER_SOURCE
def test_iptables_to_ipvs_keeps_the_chains_ipvs_mode_uses(tmp_path: Path, source: str) -> None:
    (outcome,), _ = run_on(tmp_path, start_state("iptables", "ipvs", False, source),
                           [cleanup_vars("iptables", "ipvs")])
    assert outcome.result.ok, outcome.result.error
    rules = outcome.state["iptables"]
    for table, chain in (("nat", "KUBE-SERVICES"), ("nat", "KUBE-POSTROUTING"), ("nat", "KUBE-MARK-MASQ"),
                         ("filter", "KUBE-FORWARD"), ("filter", "KUBE-PROXY-FIREWALL")):
        assert f"{table} :{chain} -" in rules
    assert "nat -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in rules
    # ipvs mode's KUBE-SERVICES still matches its ipset; iptables mode's service chains are gone.
    assert any(r.startswith("nat -A KUBE-SERVICES") and "KUBE-CLUSTER-IP" in r for r in rules)
    assert not any("KUBE-SVC-" in r or "KUBE-SEP-" in r or "KUBE-NODEPORTS" in r for r in rules)
    # The iptables-mode jump into the shared firewall chain (its comment, its OUTPUT hook) is gone.
    assert not any("kubernetes load balancer firewall" in r for r in rules)
    kept = outcome.result.facts["iptables_chains_kept"]
    assert "iptables nat/KUBE-SERVICES the mode running now uses it" in kept
    # kubelet's chains are not kube-proxy's.
    assert "filter :KUBE-FIREWALL -" in rules and "mangle :KUBE-IPTABLES-HINT -" in rules


def test_ipvs_to_iptables_removes_ipvs_state_but_not_foreign_virtual_servers(tmp_path: Path) -> None:
    (outcome,), before = run_on(tmp_path, start_state("ipvs", "iptables", False), [cleanup_vars("ipvs", "iptables")])
    assert outcome.result.ok, outcome.result.error
    facts = outcome.result.facts
    assert facts["ipvs_virtual_servers_removed"] == 4  # two ClusterIPs, the NodePort on two addresses
    assert facts["ipvs_virtual_servers_foreign"] == 1
    assert facts["kube_ipvs0_removed"] is True
    assert facts["ipsets_removed"] == 9
    assert outcome.state["ipvs"] == ["TCP 192.168.56.200:80 wlc"]
    assert outcome.state["ipsets"] == ["site-blocklist"]


def test_reset_sweeps_every_kube_chain_and_keeps_foreign(tmp_path: Path) -> None:
    everything = NodeState(["ipvs", "iptables", "nftables", "foreign"])
    (outcome,), _ = run_on(tmp_path, everything, [{"NB_CLEAN_MODES": "ipvs iptables nftables"}])
    assert outcome.result.ok, outcome.result.error
    state = outcome.state
    assert not any("KUBE-" in r for r in state["iptables"]), [r for r in state["iptables"] if "KUBE-" in r]
    assert 'filter -A INPUT -s 192.0.2.1/32 -m comment --comment "site rule" -j DROP' in state["iptables"]
    assert state["ipsets"] == ["site-blocklist"]
    assert state["nft"] == ["table inet site"]
    assert state["ipvs"] == ["TCP 192.168.56.200:80 wlc"]
    assert state["kube-ipvs0"] == []


def test_a_foreign_chain_jumping_into_an_old_chain_keeps_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "iptables-save").write_text("*nat\n:SITE-NODEPORTS - [0:0]\n-A SITE-NODEPORTS -j KUBE-NODEPORTS\nCOMMIT\n")
    node = NodeState(["iptables", "ipvs", "foreign", str(site)])
    (outcome,), _ = run_on(tmp_path / "run", node, [cleanup_vars("iptables", "ipvs")])
    assert outcome.result.ok, outcome.result.error
    rules = outcome.state["iptables"]
    assert "nat -A SITE-NODEPORTS -j KUBE-NODEPORTS" in rules
    assert "nat :KUBE-NODEPORTS -" in rules
    assert "iptables nat/KUBE-NODEPORTS a rule in the foreign chain SITE-NODEPORTS jumps to it" in (
        outcome.result.facts["iptables_chains_kept"])
    assert not any(r.startswith("nat :KUBE-SVC-") for r in rules)  # the rest still went
