"""proxy-cleanup.sh on a real kernel: it removes what kube-proxy leaves behind
(IPVS virtual servers, kube-ipvs0, KUBE-* ipsets and iptables chains, the
nftables kube-proxy tables) and nothing else; a second run changes nothing.
Per mode transition, it removes only what the old mode owns and the new one does
not, from kube-proxy-shaped dumps loaded into the real kernel, next to foreign
rules that survive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from proxydumps import DUMP_STATE, TRANSITIONS, NodeState, cleanup_vars, parse_sections, start_state, state_of

if TYPE_CHECKING:
    from vmkit import Guest

pytestmark = pytest.mark.e2e

# What kube-proxy's IPVS mode programs for two Services (a TCP and a UDP one):
# the dummy link holding the VIPs, IPVS virtual servers with real servers, the
# ipsets its iptables rules match on, and its KUBE-* chains in nat, filter and
# mangle (IPv4 and IPv6), jumped to from the built-in chains.
IPVS_MODE_STATE = r"""
set -e
ip link add kube-ipvs0 type dummy
ip addr add 10.96.0.10/32 dev kube-ipvs0
ip addr add 10.96.0.20/32 dev kube-ipvs0
ipvsadm -A -t 10.96.0.10:443 -s rr
ipvsadm -a -t 10.96.0.10:443 -r 10.244.1.5:6443 -m
ipvsadm -A -u 10.96.0.20:53 -s rr
ipvsadm -a -u 10.96.0.20:53 -r 10.244.1.6:53 -m
ipset create KUBE-CLUSTER-IP hash:ip,port
ipset add KUBE-CLUSTER-IP 10.96.0.10,tcp:443
ipset add KUBE-CLUSTER-IP 10.96.0.20,udp:53
ipset create KUBE-LOOP-BACK hash:ip,port,ip
ipset create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
iptables-restore --noflush <<'EOF'
*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODE-PORT - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES ! -s 10.244.0.0/16 -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
*mangle
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-PROXY-CANARY - [0:0]
COMMIT
EOF
ip6tables-restore --noflush <<'EOF'
*filter
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
COMMIT
EOF
"""
# iptables-restore above: 4 + 2 + 2 chains (IPv4) + 1 (IPv6).
KUBE_CHAINS = 9
# Jumps and rules inside KUBE-* chains: nat 11, filter 4, IPv6 filter 2.
KUBE_RULES = 17

# What nftables mode programs (a trimmed version of kube-proxy's own tables).
NFTABLES_MODE_STATE = r"""
set -e
for pair in "ip ipv4_addr" "ip6 ipv6_addr"; do
read -r family addr <<<"$pair"
nft -f - <<EOF
table $family kube-proxy {
    comment "rules for kube-proxy"
    map service-ips {
        type $addr . inet_proto . inet_service : verdict
        comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
    }
    chain services {
        ${family} daddr . meta l4proto . th dport vmap @service-ips
    }
    chain nat-prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump services
    }
    chain filter-forward {
        type filter hook forward priority -110; policy accept;
        ct state new jump services
    }
}
EOF
done
"""
# Somebody else's rules, which must survive.
FOREIGN_STATE = r"""
set -e
iptables -A INPUT -s 192.0.2.1/32 -m comment --comment "site rule" -j DROP
nft add table inet site
"""
FOREIGN_REMOVE = r"""
iptables -D INPUT -s 192.0.2.1/32 -m comment --comment "site rule" -j DROP
nft delete table inet site
"""


def kube_proxy_traces(guest: Guest) -> dict[str, int]:
    """Count, straight from the kernel's tools, what kube-proxy left."""
    sh = guest.sh
    return {
        "ipvs_services": sum(line.startswith(("TCP", "UDP")) for line in sh("ipvsadm -Ln").stdout.splitlines()),
        "kube_ipvs0": int(sh("ip link show dev kube-ipvs0", check=False).exit_status == 0),
        "ipsets": sum(name.startswith("KUBE-") for name in sh("ipset list -n").stdout.split()),
        "iptables_kube_lines": sh("iptables-save; ip6tables-save").stdout.count("KUBE-"),
        "nft_kube_tables": sh("nft list tables").stdout.count("kube-proxy"),
    }


TRACES = ("ipvs_services", "kube_ipvs0", "ipsets", "iptables_kube_lines", "nft_kube_tables")
NOTHING_LEFT = dict.fromkeys(TRACES, 0)


@pytest.fixture
def kube_proxy_leftovers(guest: Guest) -> Iterator[None]:
    assert guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs").ok
    guest.sh(IPVS_MODE_STATE)
    guest.sh(NFTABLES_MODE_STATE)
    guest.sh(FOREIGN_STATE)
    traces = kube_proxy_traces(guest)
    assert traces["ipvs_services"] == 2 and traces["kube_ipvs0"] == 1 and traces["ipsets"] == 3
    assert traces["iptables_kube_lines"] > 0 and traces["nft_kube_tables"] == 2
    yield
    guest.sh(FOREIGN_REMOVE, check=False)
    guest.script("proxy-cleanup.sh")  # whatever a failed test left


@pytest.mark.usefixtures("kube_proxy_leftovers")
def test_cleanup_removes_kube_proxy_state_and_keeps_the_rest(guest: Guest) -> None:
    dry = guest.script("proxy-cleanup.sh", NB_CLEAN_MODES="ipvs iptables nftables", NB_DRY_RUN="1")
    assert dry.ok, dry.error
    assert dry.changed
    assert dry.facts["ipvs_virtual_servers_removed"] == 2
    assert kube_proxy_traces(guest)["ipvs_services"] == 2  # a dry run removes nothing

    result = guest.script("proxy-cleanup.sh", NB_CLEAN_MODES="ipvs iptables nftables")
    assert result.ok, result.error
    assert result.changed
    facts = result.facts
    assert facts["ipvs_virtual_servers_removed"] == 2
    assert facts["kube_ipvs0_removed"] is True
    assert facts["ipsets_removed"] == 3
    assert facts["iptables_chains_removed"] == KUBE_CHAINS
    assert facts["iptables_rules_removed"] == KUBE_RULES
    assert facts["nft_tables_removed"] == ["ip kube-proxy", "ip6 kube-proxy"]
    assert {key: facts[key] for key in ("ipvs_virtual_servers_removed", "ipsets_removed")} == {
        key: dry.facts[key] for key in ("ipvs_virtual_servers_removed", "ipsets_removed")
    }

    assert kube_proxy_traces(guest) == NOTHING_LEFT
    site_rule = '-A INPUT -s 192.0.2.1/32 -m comment --comment "site rule" -j DROP'
    assert site_rule in guest.sh("iptables-save").stdout
    assert "table inet site" in guest.sh("nft list tables").stdout

    again = guest.script("proxy-cleanup.sh", NB_CLEAN_MODES="ipvs iptables nftables")
    assert again.ok, again.error
    assert not again.changed, again.facts["actions"]
    assert again.facts["iptables_chains_removed"] == 0 and again.facts["nft_tables_removed"] == []


@pytest.mark.usefixtures("kube_proxy_leftovers")
def test_a_set_a_foreign_rule_still_uses_makes_cleanup_fail_loudly(guest: Guest) -> None:
    rule = "INPUT -m set --match-set KUBE-CLUSTER-IP dst,dst -m comment --comment site -j ACCEPT"
    guest.sh(f"iptables -A {rule}")
    try:
        result = guest.script("proxy-cleanup.sh", NB_CLEAN_MODES="ipvs iptables", NB_PROXY_MODE_NOW="nftables")
        assert not result.ok
        assert "ipset destroy KUBE-CLUSTER-IP failed" in result.error
        assert "not kube-proxy's" in result.error
        assert result.facts["ipvs_virtual_servers_removed"] == 2  # the rest was still done
        assert result.facts["kube_ipvs0_removed"] is True
        assert f"-A {rule}" in guest.sh("iptables-save").stdout
    finally:
        guest.sh(f"iptables -D {rule}", check=False)


# ---- per transition, on kube-proxy-shaped dumps (tests/unit/fixtures/proxy-dumps) -----------

CLEAN_SLATE = r"""
ipvsadm -C 2>/dev/null || true
ip link delete dev kube-ipvs0 2>/dev/null || true
nft flush ruleset
for t in filter nat mangle; do iptables -t $t -F; iptables -t $t -X; ip6tables -t $t -F; ip6tables -t $t -X; done
ipset destroy 2>/dev/null || true
"""


def node_state(guest: Guest, node: NodeState) -> dict[str, list[str]]:
    guest.sh(CLEAN_SLATE)
    guest.sh(node.load_shell(real_ipvs=True))
    return state_of(parse_sections(guest.sh(DUMP_STATE).stdout))


@pytest.fixture
def ipvs_ready(guest: Guest) -> Iterator[None]:
    assert guest.script("proxy-prereqs.sh", NB_PROXY_MODE="ipvs").ok
    yield
    guest.sh(CLEAN_SLATE, check=False)


@pytest.mark.usefixtures("ipvs_ready")
@pytest.mark.parametrize(("old", "new"), TRANSITIONS, ids=[f"{o}-to-{n}" for o, n in TRANSITIONS])
def test_transition_leaves_the_new_mode_and_foreign_rules(guest: Guest, old: str, new: str) -> None:
    want = node_state(guest, NodeState([new, "foreign"]))
    before = node_state(guest, start_state(old, new, kube_proxy_cleaned=False))
    assert before != want
    result = guest.script("proxy-cleanup.sh", **cleanup_vars(old, new))
    assert result.ok, result.error
    assert result.changed
    after = state_of(parse_sections(guest.sh(DUMP_STATE).stdout))
    assert after == want
    if old == "ipvs":
        assert result.facts["ipvs_virtual_servers_removed"] == 4
        assert after["ipvs"] == ["TCP 192.168.56.200:80 wlc"]  # not kube-proxy's
    again = guest.script("proxy-cleanup.sh", **cleanup_vars(old, new))
    assert again.ok and not again.changed, again.facts["actions"]
