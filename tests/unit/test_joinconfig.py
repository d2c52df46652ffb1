from __future__ import annotations

import yaml

from nodeboot.cluster.joinconfig import JoinSpec, render
from nodeboot.validate import Taint


def spec(**kw) -> JoinSpec:
    base = dict(
        endpoint="10.0.0.1:6443",
        token="abcdef.0123456789abcdef",
        ca_hashes=["sha256:" + "a" * 64],
        node_name="web-1",
        taints=[Taint("dedicated", "web", "NoSchedule")],
        node_ips=["10.0.0.11", "fd00::11"],
        kubelet_extra_args={"max-pods": "60"},
        ignore_preflight_errors=["SystemVerification"],
    )
    base.update(kw)
    return JoinSpec(**base)


def test_v1beta4_for_new_kubeadm():
    doc = yaml.safe_load(render(spec(), 37))
    assert doc["apiVersion"] == "kubeadm.k8s.io/v1beta4" and doc["kind"] == "JoinConfiguration"
    reg = doc["nodeRegistration"]
    assert reg["criSocket"] == "unix:///var/run/containerd/containerd.sock"
    assert reg["kubeletExtraArgs"] == [
        {"name": "max-pods", "value": "60"},
        {"name": "node-ip", "value": "10.0.0.11,fd00::11"},
    ]
    assert reg["taints"] == [{"key": "dedicated", "effect": "NoSchedule", "value": "web"}]
    assert reg["ignorePreflightErrors"] == ["SystemVerification"]
    assert set(doc["timeouts"]) == {"discovery", "tlsBootstrap", "kubeletHealthCheck"}
    assert doc["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "10.0.0.1:6443",
        "token": "abcdef.0123456789abcdef",
        "caCertHashes": ["sha256:" + "a" * 64],
    }


def test_v1beta3_for_kubeadm_before_1_31():
    doc = yaml.safe_load(render(spec(), 30))
    assert doc["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert doc["nodeRegistration"]["kubeletExtraArgs"] == {"max-pods": "60", "node-ip": "10.0.0.11,fd00::11"}
    assert doc["discovery"]["timeout"] == "5m0s" and "timeouts" not in doc


def test_windows_cri_socket():
    doc = yaml.safe_load(render(spec(os="windows", node_ips=[], kubelet_extra_args={}), 37))
    assert doc["nodeRegistration"]["criSocket"] == "npipe:////./pipe/containerd-containerd"
    assert "kubeletExtraArgs" not in doc["nodeRegistration"]


def test_token_not_in_repr():
    assert "0123456789abcdef" not in repr(spec())
