from __future__ import annotations

import pytest
import yaml

from nodeboot.cluster import kubeproxy
from nodeboot.steps import linux, preflight


@pytest.mark.parametrize(
    ("kubelet", "server", "problem"),
    [
        ("v1.37.2", (1, 37), None),
        ("v1.34.0", (1, 37), None),
        ("v1.33.9", (1, 37), "more than 3 minors older"),
        ("v1.38.0", (1, 37), "newer than the API server"),
        ("", (1, 37), "cannot read"),
    ],
)
def test_version_skew(kubelet, server, problem):
    found = preflight.version_skew_problem(kubelet, server)
    assert (found is None) if problem is None else (problem in found)


def test_clock_skew_allows_for_the_round_trip():
    assert preflight.clock_skew("100.05", 100.0, 100.2) == 0.0
    assert preflight.clock_skew("130.0", 100.0, 100.2) == pytest.approx(29.9)


def test_linux_problems_are_each_named():
    facts = {"swap_on": True, "ip_forward": "0", "bridge_nf_call_iptables": "0", "cri_socket": False,
             "kubeadm_version": "", "kubelet_version": "v1.37.0", "time": "0", "_sent_at": 1000.0,
             "_received_at": 1000.1}
    problems = " | ".join(preflight.linux_problems(facts, (1, 37)) + preflight.common_problems(facts, "Bad_Name"))
    for words in ("swap is on", "ip_forward", "bridge-nf-call-iptables", "no container runtime",
                  "kubeadm is not installed", "clock is", "not a valid node name"):
        assert words in problems


def test_proxy_prereqs_from_facts():
    facts = {"modules_loaded": ["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"], "modules_file": True,
             "tools": ["ipset", "ipvsadm", "nft"], "kernel": "6.1.0-13-amd64"}
    assert linux.proxy_prereqs_met(facts, "ipvs") and linux.proxy_prereqs_met(facts, "nftables")
    assert not linux.proxy_prereqs_met({**facts, "modules_file": False}, "ipvs")
    assert not linux.proxy_prereqs_met({**facts, "kernel": "5.10.0"}, "nftables")


def test_kube_proxy_config_change_keeps_other_fields():
    config = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "iptables",
              "clusterCIDR": "10.244.0.0/16", "ipvs": {"syncPeriod": "30s", "tcpTimeout": "0s"},
              "iptables": {"masqueradeAll": True}}
    change = kubeproxy.ModeChange(mode="ipvs", scheduler="lc", strict_arp=True)
    new = kubeproxy.apply_change(config, change)
    assert new["mode"] == "ipvs" and new["ipvs"]["scheduler"] == "lc" and new["ipvs"]["strictARP"] is True
    assert new["ipvs"]["syncPeriod"] == "30s" and new["clusterCIDR"] == "10.244.0.0/16"
    assert new["iptables"] == {"masqueradeAll": True}
    assert config["mode"] == "iptables"  # the input is not modified
    # What is written to the ConfigMap reads back as the same configuration.
    assert yaml.safe_load(yaml.safe_dump(new, sort_keys=False)) == new


@pytest.mark.parametrize(("minor", "needle", "gate"), [(34, None, False), (37, "deprecated", False),
                                                       (40, "feature", True), (43, "no IPVS", False)])
def test_ipvs_notice_and_gate_by_server_version(minor, needle, gate):
    notice = kubeproxy.ipvs_notice((1, minor))
    assert (notice is None) if needle is None else (needle in notice)
    assert kubeproxy.ipvs_gate_needed((1, minor)) is gate
