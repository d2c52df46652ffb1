"""proxy-cleanup.sh per mode transition, on kube-proxy's own rule dumps.

Each test builds, in a private network namespace, the state a node is in after
kube-proxy switched from OLD to NEW mode: the real iptables, ipset and nft
tools hold the rules (loaded from tests/unit/fixtures/proxy-dumps), and only IPVS
and the kube-ipvs0 link are stand-ins (this kernel has neither). Then the
cleanup runs as `nodeboot proxy set-mode` runs it, and what is left must be
exactly what the NEW mode's own dump holds plus the foreign rules.

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
from nodeboot.scripts import parse_result, script_text, shell_preamble

DUMPS = Path(__file__).resolve().parent / "fixtures" / "proxy-dumps"
MODES = ("iptables", "ipvs", "nftables")
TRANSITIONS = [(old, new) for old in MODES for new in MODES if old != new]
BUILTIN = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}

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


def read(layer: str, name: str) -> str:
    """A dump file of a layer: a mode directory under DUMPS, or a directory a test made."""
    path = (Path(layer) if os.path.isabs(layer) else DUMPS / layer) / name
    return path.read_text() if path.exists() else ""


def rules_only(dump: str) -> str:
    return "\n".join(line for line in dump.splitlines() if not line.startswith("#")) + "\n"


def as_new_mode_writes_it(old: str, new: str) -> str:
    """NEW's iptables dump as restored over OLD's: kube-proxy rewrites the chains it
    declares, and adds a built-in chain's jump only if it is not there already."""
    present = {line for line in old.splitlines() if line.startswith("-A ")}
    out = []
    for line in rules_only(new).splitlines():
        if line.startswith(":") and line[1:].split()[0] in BUILTIN:
            continue
        if line.startswith("-A ") and line.split()[1] in BUILTIN and line in present:
            continue
        out.append(line)
    return "\n".join(out) + "\n"


@dataclass
class NodeState:
    layers: list[str]  # mode directories, oldest first; "foreign" last

    def load_script(self, state: Path) -> str:
        """The shell that puts these layers into the namespace's kernel and the stand-ins' files."""
        lines = ["set -e"]
        previous_ipt = ""
        for index, layer in enumerate(self.layers):
            if read(layer, "ipset-save"):  # first: iptables rules match on the sets
                (state / f"{index}-ipset").write_text(read(layer, "ipset-save"))
                lines.append(f"ipset restore -exist < {state / f'{index}-ipset'}")
            for family in ("iptables", "ip6tables"):
                dump = read(layer, f"{family}-save")
                if not dump:
                    continue
                if family == "iptables" and previous_ipt:
                    dump = as_new_mode_writes_it(previous_ipt, dump)
                if family == "iptables":
                    previous_ipt += dump
                path = state / f"{index}-{family}"
                path.write_text(rules_only(dump))
                lines.append(f"{family}-restore --noflush < {path}")
            if read(layer, "nft-ruleset"):
                (state / f"{index}-nft").write_text(read(layer, "nft-ruleset"))
                lines.append(f"nft -f {state / f'{index}-nft'}")
            ipvs = read(layer, "ipvsadm")
            if ipvs:
                with open(state / "ipvs", "a") as f:
                    f.write("\n".join(x for x in ipvs.splitlines() if x.startswith(("TCP", "UDP", "  ->"))) + "\n")
            if read(layer, "kube-ipvs0"):
                with open(state / "kube-ipvs0", "a") as f:
                    f.write(read(layer, "kube-ipvs0"))
        return "\n".join(lines) + "\n"


@dataclass
class Outcome:
    result: object
    stderr: str
    state: dict[str, list[str]]


DUMP_STATE = r"""
echo '@@iptables'; iptables-save | grep -v '^#'
echo '@@ip6tables'; ip6tables-save | grep -v '^#'
echo '@@ipsets'; ipset list -n | sort
echo '@@nft'; nft list tables | sort
echo '@@ipvs'; grep -E '^(TCP|UDP)' "$NB_TEST_STATE/ipvs" 2>/dev/null | sort || true
echo '@@kube-ipvs0'; cat "$NB_TEST_STATE/kube-ipvs0" 2>/dev/null || true
"""


def run_on(tmp: Path, node: NodeState, runs: list[dict[str, str]]) -> tuple[list[Outcome], dict[str, list[str]]]:
    """Load the node, run the cleanup once per `runs` entry, and read the state after each."""
    needs_netns()
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STANDINS.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    driver = [node.load_script(state) + "set +e\n", DUMP_STATE.replace("@@", "@@0-")]
    for index, variables in enumerate(runs, 1):
        script = tmp / f"run{index}.sh"
        script.write_text(shell_preamble(variables) + script_text("linux", "proxy-cleanup.sh"))
        driver.append(f"echo '@@{index}-result'; bash --noprofile --norc -s < {script} 2>{tmp}/stderr{index}; true")
        driver.append(DUMP_STATE.replace("@@", f"@@{index}-"))
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "NB_TEST_STATE": str(state), "LC_ALL": "C"}
    proc = subprocess.run(["unshare", "-n", "bash", "-c", "\n".join(driver)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    sections: dict[str, list[str]] = {}
    current = ""
    for line in proc.stdout.splitlines():
        if line.startswith("@@"):
            current = line[2:]
            sections[current] = []
        elif line.strip():
            sections[current].append(line)
    outcomes = []
    for index in range(1, len(runs) + 1):
        lines = sections[f"{index}-result"]
        result = parse_result("proxy-cleanup.sh", 0 if lines and json.loads(lines[-1])["ok"] else 1,
                              "\n".join(lines), "")
        outcomes.append(Outcome(result, (tmp / f"stderr{index}").read_text(), state_of(sections, str(index))))
    return outcomes, state_of(sections, "0")


def state_of(sections: dict[str, list[str]], index: str) -> dict[str, list[str]]:
    out = {}
    for key in ("iptables", "ip6tables", "ipsets", "nft", "ipvs", "kube-ipvs0"):
        lines = sections.get(f"{index}-{key}", [])
        if key.endswith("tables") and key != "nft":
            # Chains and rules per table; order across chains does not matter, counters do not exist here.
            lines = sorted(table_lines(lines))
        out[key] = lines
    return out


def table_lines(lines: list[str]) -> list[str]:
    table = ""
    for line in lines:
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith((":", "-A")):
            yield f"{table} {line.split(' [')[0] if line.startswith(':') else line}"


def expected_state(tmp: Path, new: str) -> dict[str, list[str]]:
    _, state = run_on(tmp / "expected", NodeState([new, "foreign"]), [])
    return state


def start_state(old: str, new: str, kube_proxy_cleaned: bool) -> NodeState:
    if (DUMPS / f"{old}-to-{new}").is_dir():
        return NodeState([f"{old}-to-{new}", "foreign"])
    return NodeState([new, "foreign"] if kube_proxy_cleaned else [old, new, "foreign"])


def cleanup_vars(old: str, new: str, dry_run: bool = False) -> dict[str, str]:
    return {"NB_CLEAN_MODES": old, "NB_PROXY_MODE_NOW": new, "NB_DRY_RUN": "1" if dry_run else "0"}


@pytest.mark.parametrize(("old", "new"), TRANSITIONS, ids=[f"{o}-to-{n}" for o, n in TRANSITIONS])
def test_cleanup_leaves_exactly_the_new_mode_and_foreign_rules(tmp_path: Path, old: str, new: str) -> None:
    (tmp_path / "expected").mkdir()
    want = expected_state(tmp_path, new)
    runs = [cleanup_vars(old, new, dry_run=True), cleanup_vars(old, new), cleanup_vars(old, new)]
    (tmp_path / "run").mkdir()
    (dry, first, second), before = run_on(tmp_path / "run", start_state(old, new, False), runs)
    assert before != want, "the starting state should hold the old mode's leftovers"
    assert dry.result.ok and dry.result.changed, dry.stderr
    assert dry.state == before, "a dry run changes nothing"
    assert first.result.ok, first.result.error + first.stderr
    assert first.result.changed
    assert first.state == want, first.stderr
    assert second.result.ok and not second.result.changed, second.result.facts["actions"]
    assert second.state == want


@pytest.mark.parametrize(("old", "new"), [t for t in TRANSITIONS if kube_proxy_cleans_itself(*t)],
                         ids=lambda v: str(v))
def test_nothing_to_do_where_kube_proxy_cleaned_itself(tmp_path: Path, old: str, new: str) -> None:
    (tmp_path / "expected").mkdir()
    want = expected_state(tmp_path, new)
    (tmp_path / "run").mkdir()
    (outcome,), before = run_on(tmp_path / "run", start_state(old, new, True), [cleanup_vars(old, new)])
    assert before == want
    assert outcome.result.ok and not outcome.result.changed, outcome.result.facts["actions"]
    assert outcome.state == want


def test_iptables_to_ipvs_keeps_the_chains_ipvs_mode_uses(tmp_path: Path) -> None:
    (outcome,), _ = run_on(tmp_path, start_state("iptables", "ipvs", False), [cleanup_vars("iptables", "ipvs")])
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
    assert outcome.state["ipvs"] == ["TCP  192.168.56.200:80 wlc"]
    assert outcome.state["ipsets"] == ["site-blocklist"]


def test_reset_sweeps_every_kube_chain_and_keeps_foreign(tmp_path: Path) -> None:
    everything = NodeState(["ipvs", "iptables", "nftables", "foreign"])
    (outcome,), _ = run_on(tmp_path, everything, [{"NB_CLEAN_MODES": "ipvs iptables nftables"}])
    assert outcome.result.ok, outcome.result.error
    state = outcome.state
    assert not any("KUBE-" in r for r in state["iptables"]), [r for r in state["iptables"] if "KUBE-" in r]
    assert 'filter -A INPUT -s 192.0.2.1/32 -m comment --comment "site rule" -j DROP' in state["iptables"]
    assert state["ipsets"] == ["site-blocklist"]
    # (iptables-nft keeps its own "ip filter"/"ip nat"/"ip mangle" tables.)
    assert "table inet site" in state["nft"] and not any("kube-proxy" in t for t in state["nft"])
    assert state["ipvs"] == ["TCP  192.168.56.200:80 wlc"]
    assert state["kube-ipvs0"] == []


def test_a_foreign_chain_jumping_into_an_old_chain_keeps_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "iptables-save").write_text("*nat\n:SITE-NODEPORTS - [0:0]\n-A SITE-NODEPORTS -j KUBE-NODEPORTS\nCOMMIT\n")
    node = NodeState(["iptables", "ipvs", "foreign", str(site)])
    (tmp_path / "run").mkdir()
    (outcome,), _ = run_on(tmp_path / "run", node, [cleanup_vars("iptables", "ipvs")])
    assert outcome.result.ok, outcome.result.error
    rules = outcome.state["iptables"]
    assert "nat -A SITE-NODEPORTS -j KUBE-NODEPORTS" in rules
    assert "nat :KUBE-NODEPORTS -" in rules
    assert "iptables nat/KUBE-NODEPORTS a rule in the foreign chain SITE-NODEPORTS jumps to it" in (
        outcome.result.facts["iptables_chains_kept"])
    assert not any(r.startswith("nat :KUBE-SVC-") for r in rules)  # the rest still went
