"""`nodeboot verify` on dual-stack nodes: the Service check covers both IP families.

The `kubernetes` Service has one family only, so the other family's connect goes to
kube-system/kube-dns or a Service labelled nodeboot.io/verify. verify.sh runs for real
against listeners on this machine's loopback (::1 for the IPv6 side); the Service
lookup reads a stand-in of the API client (no cluster here).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from localshell import host_script_facts
from nodeboot import verify
from nodeboot.scripts import script_text, shell_preamble

VIEW = verify.ClusterView("ipvs", "10.96.0.1", 443, api_offset=0.0, api_offset_slack=0.5)
ECHO6 = verify.ServiceTarget("nodeboot-echo/echo", "fd00:10:96::5", 80)
DUAL = verify.ClusterView("ipvs", "10.96.0.1", 443, api_offset=0.0, api_offset_slack=0.5, second=ECHO6)
BOTH_UP = {"service_reachable": True, "service_connect_ms": 3, "service2_reachable": True, "service2_connect_ms": 4}


def node(*addresses: str) -> SimpleNamespace:
    return SimpleNamespace(status=SimpleNamespace(addresses=[SimpleNamespace(type="InternalIP", address=a)
                                                             for a in addresses]))


def test_a_node_is_dual_stack_with_an_internal_ip_of_each_family() -> None:
    assert verify.dual_stack_node(node("198.18.7.201", "fd00:6e62:1:7::201"))
    assert not verify.dual_stack_node(node("198.18.7.201"))
    assert not verify.dual_stack_node(node("fd00::1", "fd00::2"))
    assert not verify.dual_stack_node(None)


def test_single_stack_nodes_are_checked_as_before() -> None:
    check = verify.service_reachable({"service_reachable": True, "service_connect_ms": 3}, DUAL, dual_stack=False)
    assert (check.status, check.detail) == ("pass", "10.96.0.1:443 in 3 ms")


def test_a_dual_stack_node_passes_with_both_families_answering() -> None:
    check = verify.service_reachable(BOTH_UP, DUAL, dual_stack=True)
    assert check.status == "pass"
    assert check.detail == "10.96.0.1:443 in 3 ms; [fd00:10:96::5]:80 (nodeboot-echo/echo) in 4 ms"


def test_a_dual_stack_node_fails_naming_the_family_that_does_not_answer() -> None:
    facts = {**BOTH_UP, "service2_reachable": False, "service2_error": "TCP connect to fd00:10:96::5:80 failed"}
    check = verify.service_reachable(facts, DUAL, dual_stack=True)
    assert check.status == "fail"
    assert check.detail == "IPv6: nodeboot-echo/echo TCP connect to fd00:10:96::5:80 failed"
    first_down = verify.service_reachable({**BOTH_UP, "service_reachable": False, "service_error": "v4 down"}, DUAL,
                                          dual_stack=True)
    assert (first_down.status, first_down.detail) == ("fail", "v4 down")


def test_a_dual_stack_node_without_a_second_family_service_says_so() -> None:
    check = verify.service_reachable(BOTH_UP, VIEW, dual_stack=True)
    assert check.status == "pass" and "IPv6 not checked" in check.detail and verify.VERIFY_SERVICE_LABEL in check.detail


def service(namespace: str, name: str, ips: list[str], port: int = 80, protocol: str = "TCP") -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(namespace=namespace, name=name),
                           spec=SimpleNamespace(cluster_ips=ips, cluster_ip=ips[0] if ips else None,
                                                ports=[SimpleNamespace(port=port, protocol=protocol)]))


class Core:
    """The two reads other_family_service makes, answered from lists (a stand-in for the API client)."""

    def __init__(self, dns: SimpleNamespace | None, labelled: list[SimpleNamespace]) -> None:
        self.dns, self.labelled, self.selectors = dns, labelled, []

    def read_namespaced_service(self, name: str, namespace: str) -> SimpleNamespace:
        if self.dns is None or (namespace, name) != ("kube-system", "kube-dns"):
            raise RuntimeError("404")
        return self.dns

    def list_service_for_all_namespaces(self, label_selector: str) -> SimpleNamespace:
        self.selectors.append(label_selector)
        return SimpleNamespace(items=self.labelled)


def test_the_other_family_comes_from_kube_dns_else_a_labelled_service() -> None:
    echo = service("nodeboot-echo", "echo", ["10.96.40.2", "fd00:10:96::5"])
    dns = service("kube-system", "kube-dns", ["10.96.0.10", "fd00:10:96::a"], port=53)
    cluster = SimpleNamespace(core=Core(dns, [echo]))
    assert verify.other_family_service(cluster, primary_v6=False) == verify.ServiceTarget(
        "kube-system/kube-dns", "fd00:10:96::a", 53)
    single_dns = SimpleNamespace(core=Core(service("kube-system", "kube-dns", ["10.96.0.10"], port=53), [echo]))
    assert verify.other_family_service(single_dns, primary_v6=False) == ECHO6
    assert cluster.core.selectors == [verify.VERIFY_SERVICE_LABEL]
    # An IPv6-primary cluster looks for an IPv4 ClusterIP; a UDP-only Service cannot be connected to.
    assert verify.other_family_service(cluster, primary_v6=True).ip == "10.96.0.10"
    udp = SimpleNamespace(core=Core(None, [service("x", "dns", ["10.96.0.9", "fd00::9"], 53, "UDP")]))
    assert verify.other_family_service(udp, primary_v6=False) is None
    assert verify.other_family_service(SimpleNamespace(core=Core(None, [])), primary_v6=False) is None


@pytest.fixture
def listener6() -> Iterator[int]:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.bind(("::1", 0))
    except OSError as exc:
        pytest.fail(f"this machine has no IPv6 loopback (::1): {exc}")
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_verify_script_connects_to_the_second_family_service(listener6: int) -> None:
    v4 = socket.socket()
    v4.bind(("127.0.0.1", 0))
    v4.listen(8)
    closed = socket.socket(socket.AF_INET6)
    closed.bind(("::1", 0))  # bound, not listening: connections are refused
    try:
        base = {"NB_SERVICE_ADDR": "127.0.0.1", "NB_SERVICE_PORT": str(v4.getsockname()[1]),
                "NB_PROXY_METRICS": "127.0.0.1:1"}
        up = run_verify({**base, "NB_SERVICE2_ADDR": "::1", "NB_SERVICE2_PORT": str(listener6)})
        assert up["service_reachable"] is True and up["service2_reachable"] is True
        assert isinstance(up["service2_connect_ms"], int)
        down = run_verify({**base, "NB_SERVICE2_ADDR": "::1", "NB_SERVICE2_PORT": str(closed.getsockname()[1])})
        assert down["service2_reachable"] is False and "::1" in down["service2_error"]
        assert "service2_reachable" not in run_verify(base)  # single stack: the facts it always gave
    finally:
        v4.close()
        closed.close()


def run_verify(variables: dict[str, str]) -> dict:
    return host_script_facts("verify.sh", shell_preamble(variables) + script_text("linux", "verify.sh"))
