"""Preflight catches what would break a join later (issue 14, item 4): the checks themselves,
judged from the facts facts.sh reports. The lab tests run facts.sh on real hosts."""

from __future__ import annotations

from nodeboot.steps import preflight

GOOD = {"ip_forward": "1", "bridge_nf_call_iptables": "1", "cri_socket": True, "cri_check": "ctr",
        "cri_answered": True, "cri_version": "containerd 2.2.0", "kubeadm_version": "v1.37.2",
        "kubelet_version": "v1.37.2", "ipv6_forward": "0"}


def problems(**changed) -> list[str]:
    return preflight.linux_problems({**GOOD, **changed}, (1, 37))


def test_good_host_passes():
    assert problems() == []


def test_missing_bridge_sysctl_fails_naming_br_netfilter():
    (problem,) = problems(bridge_nf_call_iptables="missing")
    assert "bridge-nf-call-iptables is missing" in problem and "modprobe br_netfilter" in problem


def test_bridge_sysctl_off_fails_naming_the_sysctl():
    (problem,) = problems(bridge_nf_call_iptables="0")
    assert "sysctl -w net.bridge.bridge-nf-call-iptables=1" in problem


def test_runtime_that_does_not_answer_fails():
    (problem,) = problems(cri_answered=False, cri_version="ctr: connection refused")
    assert "does not answer" in problem and "ctr version: ctr: connection refused" in problem


def test_socket_only_check_passes_with_a_warning():
    facts = {**GOOD, "cri_check": "socket", "cri_answered": False, "cri_version": ""}
    assert preflight.linux_problems(facts, (1, 37)) == []
    assert "only the runtime's socket was checked" in (preflight.cri_warning(facts) or "")
    assert preflight.cri_warning(GOOD) is None


def test_ipv6_node_ip_needs_ipv6_forwarding():
    assert preflight.ipv6_forwarding_problem(GOOD, ["10.0.0.5"]) is None
    problem = preflight.ipv6_forwarding_problem(GOOD, ["10.0.0.5", "fd00::5"])
    assert problem and "node IP fd00::5 is IPv6" in problem and "net.ipv6.conf.all.forwarding is '0'" in problem
    assert preflight.ipv6_forwarding_problem({**GOOD, "ipv6_forward": "1"}, ["fd00::5"]) is None
    # Windows facts carry no ipv6_forward: not judged by this check.
    assert preflight.ipv6_forwarding_problem({}, ["fd00::5"]) is None
