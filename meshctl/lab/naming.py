"""Names and addresses of the lab's network objects, derived from the config (pure).

Everything the lab creates on the host is named here, so that ``lab down`` can find it again
after a crash: network namespaces ``<lab>-underlay``, ``<lab>-node<i>`` and ``<lab>-pod-<uid>``,
and per-namespace files under ``/etc/netns/<netns>``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from meshctl.lab.config import LabConfig

UNDERLAY_BRIDGE = "br0"
NODE_UPLINK = "eth0"
POD_IFACE = "eth0"
KUBEPROXY_MASQ_MARK = 0x4000  # kube-proxy's masquerade bit
ZTUNNEL_MARK = 0x539  # set by ztunnel's tc capture on the packets it takes (ztunnel.sockets)


@dataclass(frozen=True, slots=True)
class NodeAddressing:
    """One node's names and addresses."""

    index: int  # 1-based
    name: str  # Kubernetes node name, e.g. "node1"
    netns: str
    underlay_ip: str
    underlay_prefixlen: int
    pod_cidr: ipaddress.IPv4Network
    gateway_ip: str  # the node's address towards its pods, first address of the pod range

    def pod_ip(self, slot: int) -> str:
        """The pod address for ``slot`` (2 .. 254) of this node's range."""
        if not 2 <= slot < self.pod_cidr.num_addresses - 1:
            raise ValueError(f"pod slot {slot} outside {self.pod_cidr}")
        return str(self.pod_cidr.network_address + slot)


def node_name(index: int) -> str:
    return f"node{index}"


def node_addressing(cfg: LabConfig, index: int) -> NodeAddressing:
    pods = ipaddress.IPv4Network(cfg.pod_cidr)
    per_node = list(pods.subnets(new_prefix=24))
    under = ipaddress.IPv4Network(cfg.underlay_cidr)
    cidr = per_node[index]
    return NodeAddressing(
        index=index,
        name=node_name(index),
        netns=f"{cfg.name}-{node_name(index)}",
        underlay_ip=str(under.network_address + 10 + index),
        underlay_prefixlen=under.prefixlen,
        pod_cidr=cidr,
        gateway_ip=str(cidr.network_address + 1),
    )


def nodes(cfg: LabConfig) -> list[NodeAddressing]:
    return [node_addressing(cfg, i) for i in range(1, cfg.nodes + 1)]


def underlay_netns(cfg: LabConfig) -> str:
    return f"{cfg.name}-underlay"


def pod_netns(cfg: LabConfig, uid: str) -> str:
    return f"{cfg.name}-pod-{uid}"


def pod_host_veth(uid: str) -> str:
    """The node-side veth of a pod: 'vp' + 10 hex digits (interface names max 15 chars)."""
    return "vp" + hashlib.sha256(uid.encode()).hexdigest()[:10]


def node_underlay_port(index: int) -> str:
    """The underlay-side end of a node's uplink, attached to the bridge."""
    return f"{node_name(index)}"


def is_lab_netns(cfg: LabConfig, netns: str) -> bool:
    """True for the network namespaces this lab names (used to sweep leftovers)."""
    pattern = rf"^{re.escape(cfg.name)}-(underlay|node\d+|pod-[a-z0-9-]+)$"
    return re.match(pattern, netns) is not None
