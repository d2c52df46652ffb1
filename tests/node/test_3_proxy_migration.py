"""The live kube-proxy migration on the real node, every transition between the three modes:
IPVS -> nftables -> IPVS -> iptables -> IPVS, with the real kube-proxy restarted by nodeboot.

After each switch: the mode kube-proxy reports, that mode's rules on the node's real kernel,
the old mode's gone (and the new mode's own chains intact, where iptables and IPVS share
some), the kubernetes Service and the echo Service (ClusterIP and NodePort) answering, and
`nodeboot verify` passing; the traffic gap of each switch goes into the timings. A switch to
IPVS whose verification fails (the IPVS modules made unloadable on the node after nodeboot
prepared them) stops and rolls back. The rules of each mode are kept as fixture files
(tests/unit/fixtures/proxy-dumps/kube-proxy-<version>) under the run's work directory.

Runs after test_2, which leaves the node joined in IPVS mode with the echo Service."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import nodekit
from labkit import LabHandle, wait_for
from nodekit import (
    ECHO_NAMESPACE,
    ECHO_NODE_PORT,
    KUBERNETES_VERSION,
    TIMINGS,
    capture_proxy_dumps,
    inventory,
    node_out,
    on_node,
    vm,
    wait_proxy_mode,
)

# Chains the kubelet owns (not kube-proxy): they stay whatever the mode.
KUBELET_CHAINS = {"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"}
# The chains each iptables-based mode always creates (pkg/proxy/{iptables,ipvs}/proxier.go).
IPTABLES_CHAINS = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-FORWARD",
                   "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL", "KUBE-PROXY-CANARY"}
IPVS_CHAINS = {"KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER",
               "KUBE-FORWARD", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-IPVS-FILTER",
               "KUBE-IPVS-OUT-FILTER"}
# Per-Service chains only iptables mode makes.
IPTABLES_SERVICE_CHAINS = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")
# Where fixture-shaped dumps of each mode go; NODEBOOT_TEST_PROXY_DUMPS names another place.
DUMPS_ENV = "NODEBOOT_TEST_PROXY_DUMPS"
# The IPVS modules' directory on the node, moved aside to make them unloadable.
IPVS_MODULES = "/lib/modules/$(uname -r)/kernel/net/netfilter/ipvs"


@dataclass
class Node:
    h: LabHandle
    inv: str
    mode: str
    kubernetes_ip: str
    echo_ip: str
    echo_ip6: str  # "" on a single-stack lab
    address: str
    dumps: Path


def cluster_mode(h: LabHandle) -> str:
    cm = h.cluster().core.read_namespaced_config_map("kube-proxy", "kube-system")
    return yaml.safe_load(cm.data["config.conf"]).get("mode") or "iptables"


def set_mode(h: LabHandle, inv: str, mode: str, *extra: str) -> tuple[int, list[dict], str]:
    # Under software emulation a kube-proxy pod takes tens of seconds to come back: a generous verify window.
    proc, events = h.nodeboot_json("proxy", "set-mode", mode, "-i", inv, "--kubeconfig", h.kubeconfig, "--yes",
                                   *(extra or ("--verify-timeout", "240")), timeout=1800)
    return proc.returncode, events, f"{proc.stdout[-3000:]} {proc.stderr[-2000:]}"


def switch(node: Node, mode: str) -> dict:
    """One switch that must work; its node outcome (gap, cleanup, restart time) is returned."""
    started = time.monotonic()
    code, events, text = set_mode(node.h, node.inv, mode)
    assert code == 0, text
    (outcome,) = next(e for e in events if e.get("event") == "proxy-switch")["nodes"]
    assert outcome["ok"], outcome
    step = f"{node.mode}_to_{mode}"
    TIMINGS[f"{step}_gap_ms"] = outcome["gap"]["longest_gap_ms"]
    TIMINGS[f"{step}_s"] = round(time.monotonic() - started, 1)
    # What nodeboot still had to remove after kube-proxy started in the new mode (none where it cleans itself).
    TIMINGS[f"{step}_cleanup_actions"] = len(outcome["cleanup"].get("actions", []))
    print(f"{step}: gap {outcome['gap']['longest_gap_ms']} ms, cleanup {outcome['cleanup'].get('actions')}")
    node.mode = mode
    return outcome


def proxy_state(h: LabHandle) -> dict:
    chains = set(re.findall(r"^:(KUBE-\S+)", node_out(h, "iptables-save; ip6tables-save"), re.M))
    return {
        "mode": node_out(h, "curl -s --max-time 5 http://127.0.0.1:10249/proxyMode").strip(),
        "nft_tables": sorted(t for t in node_out(h, "nft list tables").split("\n") if "kube-proxy" in t),
        "ipvs_services": len(re.findall(r"^(TCP|UDP|SCTP) ", node_out(h, "ipvsadm -Ln"), re.M)),
        "kube_ipvs0": bool(node_out(h, "ip -o link show kube-ipvs0 2>/dev/null || true").strip()),
        "ipsets": sorted(s for s in node_out(h, "ipset list -n").split() if s.startswith("KUBE-")),
        "proxy_chains": sorted(chains - KUBELET_CHAINS),
    }


def check_rules(h: LabHandle, mode: str, echo_ip6: str) -> dict:
    """That mode's rules are there and the other modes' are gone; on a dual-stack lab, for both families."""
    state = proxy_state(h)
    if echo_ip6:  # the echo Service's IPv6 ClusterIP in that mode's IPv6 rules
        where = {"ipvs": ("ipvsadm -Ln", f"[{echo_ip6}]:80"), "nftables": ("nft list table ip6 kube-proxy", echo_ip6),
                 "iptables": ("ip6tables-save -t nat", f"-d {echo_ip6}/128")}[mode]
        assert where[1] in node_out(h, where[0]), f"{where[0]} lacks {where[1]}"
    chains = set(state["proxy_chains"])
    service_chains = sorted(c for c in chains if c.startswith(IPTABLES_SERVICE_CHAINS))
    assert state["mode"] == mode, state
    if mode == "nftables":
        assert state["nft_tables"] == ["table ip kube-proxy", "table ip6 kube-proxy"], state
        # The iptables-based modes' leftovers are gone: virtual servers, the dummy link, ipsets, chains.
        assert (state["ipvs_services"], state["kube_ipvs0"], state["ipsets"], state["proxy_chains"]) == (
            0, False, [], []), state
    elif mode == "ipvs":
        assert state["nft_tables"] == [], state
        assert state["ipvs_services"] >= 3 and state["kube_ipvs0"], state  # two ClusterIPs and the NodePort
        assert "KUBE-CLUSTER-IP" in state["ipsets"], state
        assert chains >= IPVS_CHAINS, sorted(IPVS_CHAINS - chains)  # its own, including those shared with iptables
        assert not (IPTABLES_CHAINS - IPVS_CHAINS) & chains and not service_chains, (
            sorted((IPTABLES_CHAINS - IPVS_CHAINS) & chains), service_chains)
    else:
        assert state["nft_tables"] == [], state
        assert (state["ipvs_services"], state["kube_ipvs0"], state["ipsets"]) == (0, False, []), state
        assert chains >= IPTABLES_CHAINS, sorted(IPTABLES_CHAINS - chains)
        assert any(c.startswith("KUBE-SVC-") for c in chains) and any(c.startswith("KUBE-SEP-") for c in chains)
        assert not (IPVS_CHAINS - IPTABLES_CHAINS) & chains, sorted((IPVS_CHAINS - IPTABLES_CHAINS) & chains)
    return state


def services_answer(node: Node, timeout: float = 60) -> None:
    """The kubernetes Service, and the echo Service by its ClusterIP and its NodePort, from the node."""
    h = node.h

    def echo(url: str) -> str | None:
        proc = on_node(h, f"curl -s --max-time 5 {url}")
        return proc.stdout if proc.returncode == 0 and "pod=" in proc.stdout else None

    def healthz() -> bool:
        return node_out(h, f"curl -sk --max-time 5 https://{node.kubernetes_ip}/healthz || true").strip() == "ok"

    wait_for(f"the kubernetes Service {node.kubernetes_ip}:443 in {node.mode} mode", healthz, timeout)
    wait_for(f"the echo Service {node.echo_ip}:80 in {node.mode} mode", lambda: echo(f"http://{node.echo_ip}/"),
             timeout)
    wait_for(f"the echo NodePort {node.address}:{ECHO_NODE_PORT} in {node.mode} mode",
             lambda: echo(f"http://{node.address}:{ECHO_NODE_PORT}/"), timeout)
    if node.echo_ip6:
        wait_for(f"the echo Service [{node.echo_ip6}]:80 in {node.mode} mode",
                 lambda: echo(f"-g http://[{node.echo_ip6}]/"), timeout)


def verify_passes(node: Node) -> None:
    nodekit.verify_passes(node.h, node.inv)


def keep_dumps(node: Node) -> None:
    label = f"taken from kube-proxy {KUBERNETES_VERSION} in {node.mode} mode on the lab VM node (nodeboot tests/node)"
    capture_proxy_dumps(node.h, node.dumps / node.mode, label)


@pytest.fixture(scope="module")
def node(node_lab: LabHandle) -> Iterator[Node]:
    h = node_lab
    inv = inventory(h, "migration")
    core = h.cluster().core
    mode = cluster_mode(h)
    # test_2 ends with a fresh re-join: its kube-proxy pod may still be starting.
    wait_proxy_mode(h, mode, 600)
    dumps = Path(os.environ.get(DUMPS_ENV) or h.work / "proxy-dumps")
    echo = core.read_namespaced_service("echo", ECHO_NAMESPACE).spec
    echo_ip6 = next((ip for ip in echo.cluster_ips if ":" in ip), "")
    node = Node(h, inv, mode, core.read_namespaced_service("kubernetes", "default").spec.cluster_ip,
                echo.cluster_ip, echo_ip6, vm(h)["address"], dumps)
    if mode != "ipvs":  # a kept lab reused for this module alone, left in another mode
        switch(node, "ipvs")
    # The echo pod came back after test_2's re-join: wait for it through the Service.
    services_answer(node, 600)
    verify_passes(node)
    keep_dumps(node)
    yield node
    print(f"kube-proxy's rules in each mode, as fixture files: {dumps}")


def test_ipvs_to_nftables_leaves_only_nftables_rules_and_the_services_answer(node: Node) -> None:
    switch(node, "nftables")
    check_rules(node.h, "nftables", node.echo_ip6)
    services_answer(node)
    verify_passes(node)
    keep_dumps(node)


def test_nftables_back_to_ipvs_removes_the_nftables_tables(node: Node) -> None:
    switch(node, "ipvs")
    check_rules(node.h, "ipvs", node.echo_ip6)
    services_answer(node)
    verify_passes(node)


def test_ipvs_to_iptables_removes_ipvs_state_and_keeps_the_shared_chains(node: Node) -> None:
    switch(node, "iptables")
    check_rules(node.h, "iptables", node.echo_ip6)
    services_answer(node)
    verify_passes(node)
    keep_dumps(node)


# Started on the node before the switch: waits for nodeboot's traffic probe, which starts once the
# prerequisites are in place and right before kube-proxy is restarted, then makes the IPVS modules
# unloadable (their directory moved aside, as on a kernel built without them) and unloads them.
BLOCK_IPVS = f"""set -u
for _ in $(seq 3000); do [ -f /run/nodeboot-probe/pid ] && break; sleep 0.1; done
mv {IPVS_MODULES} {IPVS_MODULES}.nb-hidden
for m in $(lsmod | awk '$1 ~ /^ip_vs_/ {{ print $1 }}') ip_vs; do rmmod "$m"; done
if lsmod | grep -q '^ip_vs '; then echo still-loaded; else echo blocked; fi
"""
UNBLOCK_IPVS = f"if [ -d {IPVS_MODULES}.nb-hidden ]; then mv {IPVS_MODULES}.nb-hidden {IPVS_MODULES}; fi"


def test_a_switch_whose_verification_fails_rolls_back_and_the_services_answer(node: Node) -> None:
    h = node.h
    assert node.mode == "iptables"
    node_out(h, f"cat > /run/nb-block-ipvs.sh <<'EOF'\n{BLOCK_IPVS}EOF\n"
                "setsid bash /run/nb-block-ipvs.sh >/run/nb-block-ipvs.out 2>&1 </dev/null &")
    started = time.monotonic()
    try:
        # kube-proxy in IPVS mode cannot start without IPVS: half a minute shows it.
        code, events, text = set_mode(h, node.inv, "ipvs", "--verify-timeout", "30")
        blocked = node_out(h, "cat /run/nb-block-ipvs.out")
    finally:
        node_out(h, UNBLOCK_IPVS)
    TIMINGS["failed_switch_with_rollback_s"] = round(time.monotonic() - started, 1)
    assert blocked.strip().endswith("blocked"), blocked
    assert code != 0, text
    (outcome,) = next(e for e in events if e.get("event") == "proxy-switch")["nodes"]
    assert not outcome["ok"] and "kube-proxy-mode" in outcome["error"], outcome
    messages = [e.get("message", "") for e in events if e.get("event") == "message"]
    assert any(m.startswith("rolled back: 1 node(s) run iptables again") for m in messages), messages
    TIMINGS["failed_switch_gap_ms"] = outcome["gap"].get("longest_gap_ms", "?")
    # The ConfigMap says iptables again, kube-proxy runs it, its rules are whole, the Services answer.
    assert cluster_mode(h) == "iptables"
    wait_proxy_mode(h, "iptables", 300)
    check_rules(h, "iptables", node.echo_ip6)
    services_answer(node)
    verify_passes(node)


def test_iptables_to_ipvs_keeps_the_chains_ipvs_mode_shares(node: Node) -> None:
    switch(node, "ipvs")
    check_rules(node.h, "ipvs", node.echo_ip6)
    services_answer(node)
    verify_passes(node)
