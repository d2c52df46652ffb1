"""The live kube-proxy migration on the real node: IPVS (deprecated upstream) to nftables and back, with
the real kube-proxy restarted by nodeboot and each mode's rules checked on the node's real kernel.
Runs after test_2, which leaves the node joined in IPVS mode."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from labkit import LabHandle
from nodekit import TIMINGS, inventory, node_out, wait_proxy_mode

# Chains the kubelet owns (not kube-proxy): they stay whatever the mode.
KUBELET_CHAINS = {"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"}


@pytest.fixture(scope="module")
def node(node_lab: LabHandle) -> Iterator[tuple[LabHandle, str]]:
    inv = inventory(node_lab, "migration")
    # test_2 ends with a fresh re-join: its kube-proxy pod may still be starting.
    wait_proxy_mode(node_lab, "ipvs", 600)
    proc = node_lab.nodeboot("verify", "-i", inv, "--kubeconfig", node_lab.kubeconfig, timeout=300)
    assert proc.returncode == 0, f"the node must start healthy: {proc.stdout[-2000:]} {proc.stderr[-1000:]}"
    yield node_lab, inv


def switch(h: LabHandle, inv: str, mode: str) -> str:
    # Under software emulation a kube-proxy pod takes tens of seconds to come back: a generous verify window.
    proc = h.nodeboot("proxy", "set-mode", mode, "-i", inv, "--kubeconfig", h.kubeconfig, "--yes",
                      "--verify-timeout", "240", timeout=1800)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-2000:])
    line = next(ln for ln in proc.stdout.splitlines() if "traffic gap" in ln)
    gap = re.search(r"traffic gap (\d+) ms", line)
    assert gap, line
    TIMINGS[f"switch_to_{mode}_gap_ms"] = int(gap.group(1))
    return line


def proxy_state(h: LabHandle) -> dict[str, object]:
    chains = set(re.findall(r"^:(KUBE-\S+)", node_out(h, "iptables-save; ip6tables-save"), re.M))
    return {
        "mode": node_out(h, "curl -s --max-time 5 http://127.0.0.1:10249/proxyMode").strip(),
        "nft_tables": sorted(t for t in node_out(h, "nft list tables").split("\n") if "kube-proxy" in t),
        "ipvs_services": len(re.findall(r"^(TCP|UDP|SCTP) ", node_out(h, "ipvsadm -Ln"), re.M)),
        "kube_ipvs0": on_link(h, "kube-ipvs0"),
        "ipsets": sorted(s for s in node_out(h, "ipset list -n").split() if s.startswith("KUBE-")),
        "proxy_chains": sorted(chains - KUBELET_CHAINS),
    }


def on_link(h: LabHandle, name: str) -> bool:
    return bool(node_out(h, f"ip -o link show {name} 2>/dev/null || true").strip())


def verify_passes(h: LabHandle, inv: str) -> None:
    proc = h.nodeboot("verify", "-i", inv, "--kubeconfig", h.kubeconfig, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_ipvs_to_nftables_leaves_only_nftables_rules_and_the_service_answers(node: tuple[LabHandle, str]) -> None:
    h, inv = node
    switch(h, inv, "nftables")
    state = proxy_state(h)
    assert state["mode"] == "nftables"
    assert state["nft_tables"] == ["table ip kube-proxy", "table ip6 kube-proxy"]
    # IPVS mode's leftovers are gone: virtual servers, the dummy link, the ipsets, its iptables chains.
    assert (state["ipvs_services"], state["kube_ipvs0"], state["ipsets"], state["proxy_chains"]) == (0, False, [], [])
    kubernetes_ip = h.cluster().core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    assert node_out(h, f"curl -sk --max-time 5 https://{kubernetes_ip}/healthz").strip() == "ok"
    verify_passes(h, inv)


def test_nftables_back_to_ipvs_removes_the_nftables_tables(node: tuple[LabHandle, str]) -> None:
    h, inv = node
    switch(h, inv, "ipvs")
    state = proxy_state(h)
    assert state["mode"] == "ipvs" and state["nft_tables"] == []
    assert state["ipvs_services"] >= 1 and state["kube_ipvs0"]
    assert "KUBE-SERVICES" in state["proxy_chains"]  # IPVS mode's own chains, present again
    verify_passes(h, inv)
