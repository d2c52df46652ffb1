"""The pod network on lab VM nodes: a stand-in for a CNI DaemonSet.

A real cluster's CNI (Flannel, Calico, ...) runs as a DaemonSet that writes
its conflist into /etc/cni/net.d once the node joins. The lab has one real
node and no overlay to build, so it drops a plain bridge conflist instead: the
real CNI plugins nodeboot installed (bridge, host-local, portmap, loopback)
then wire every pod to cni0 on the node. Pods on one node reach each other and
the node reaches them; there is no cross-node pod traffic to carry.
"""

from __future__ import annotations

import json

CONFLIST_PATH = "/etc/cni/net.d/10-nodeboot-lab-bridge.conflist"
# Inside the cluster's podSubnet (10.244.0.0/16, controlplane.POD_SUBNET), away
# from the /24s the controller manager hands out first.
VM_POD_SUBNET = "10.244.200.0/24"
# A dual-stack lab's IPv6 pod range on the node: a /64 of controlplane.POD_SUBNET6.
VM_POD_SUBNET6 = "fd00:10:244:c8::/64"


def conflist(subnet: str = VM_POD_SUBNET, dual_stack: bool = False) -> str:
    ranges = [[{"subnet": subnet}]]
    routes = [{"dst": "0.0.0.0/0"}]
    if dual_stack:  # every pod gets an address of each family
        ranges.append([{"subnet": VM_POD_SUBNET6}])
        routes.append({"dst": "::/0"})
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "nodeboot-lab",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {"type": "host-local", "ranges": ranges, "routes": routes},
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def install_command(subnet: str = VM_POD_SUBNET, dual_stack: bool = False) -> str:
    """Shell that writes the conflist on a node (what the CNI DaemonSet's init container would do)."""
    return f"mkdir -p /etc/cni/net.d && cat > {CONFLIST_PATH} <<'NB_EOF'\n{conflist(subnet, dual_stack)}\nNB_EOF\n"
