"""An RBAC denial is one line naming what to grant (issue 14, item 14). The messages are the API
server's own wording (kube-apiserver's RBAC authorizer), as the lab test sees them."""

from __future__ import annotations

import json

from kubernetes import client

from nodeboot.cluster.client import short_api_error


def denial(message: str) -> client.ApiException:
    exc = client.ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                           "message": message})
    return exc


def test_named_namespaced_resource():
    line = short_api_error(denial('configmaps "cluster-info" is forbidden: User "system:serviceaccount:t:nb" '
                                  'cannot get resource "configmaps" in API group "" in the namespace "kube-public"'))
    assert line.startswith('forbidden: needs get on configmaps "cluster-info" in namespace kube-public '
                           "for system:serviceaccount:t:nb")


def test_cluster_scope_and_api_group():
    line = short_api_error(denial('daemonsets.apps is forbidden: User "u" cannot list resource "daemonsets" in API '
                                  'group "apps" at the cluster scope'))
    assert line.startswith("forbidden: needs list on daemonsets.apps for u")
    assert "\n" not in line


def test_other_errors_keep_their_status():
    exc = client.ApiException(status=409, reason="Conflict")
    exc.body = json.dumps({"message": "already exists"})
    assert short_api_error(exc) == "409 Conflict: already exists"
