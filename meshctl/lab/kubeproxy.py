"""The lab's kube-proxy stand-in: renders an nftables ruleset from services and endpoints.

Pure: :func:`render` turns :class:`ServiceRule` values into the text of one atomic nft
transaction (``table ip meshlab`` replaced as a whole); ``meshctl.lab.netlab`` loads it into
each node's namespace. Semantics follow kube-proxy's nftables mode: a ClusterIP:port is DNATed
to one ready endpoint chosen at random (``numgen random``), a pod reaching itself through its
own service is masqueraded (hairpin), and a ClusterIP:port without ready endpoints is rejected
with a TCP reset instead of timing out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshctl.lab.naming import KUBEPROXY_MASQ_MARK, ZTUNNEL_MARK

TABLE = "meshlab"


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class ServiceRule:
    """One service port: ClusterIP:port/protocol and its ready endpoints."""

    namespace: str
    name: str
    cluster_ip: str
    port: int
    protocol: str  # "tcp" | "udp" | "sctp"
    endpoints: tuple[Endpoint, ...]

    @property
    def chain(self) -> str:
        return f"svc-{self.namespace}-{self.name}-{self.protocol}-{self.port}"


def render(rules: Iterable[ServiceRule]) -> str:
    """The nft script that replaces the lab's table with exactly these rules."""
    rules = sorted(rules, key=lambda r: (r.namespace, r.name, r.protocol, r.port))
    dispatch: list[str] = []
    chains: list[str] = []
    no_endpoints: list[str] = []
    for rule in rules:
        proto = rule.protocol.lower()
        if not rule.endpoints:
            if proto == "tcp":
                no_endpoints.append(f"{rule.cluster_ip} . {rule.port}")
            continue
        dispatch.append(
            f"    ip daddr {rule.cluster_ip} {proto} dport {rule.port} jump {rule.chain}"
        )
        chains.extend(_service_chains(rule, proto))
    lines = [
        f"table ip {TABLE} {{",
        "}",
        f"delete table ip {TABLE}",
        f"table ip {TABLE} {{",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    jump services",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    jump services",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f"    meta mark & {KUBEPROXY_MASQ_MARK:#x} == {KUBEPROXY_MASQ_MARK:#x} masquerade",
        "  }",
        "  chain services {",
        # ztunnel took this packet (tc capture marked it): keep its Service VIP as the
        # original destination, ztunnel balances it itself.
        f"    meta mark & {ZTUNNEL_MARK:#x} == {ZTUNNEL_MARK:#x} return",
        *dispatch,
        "  }",
        *chains,
    ]
    if no_endpoints:
        lines += [
            "  set no-endpoints {",
            "    type ipv4_addr . inet_service",
            f"    elements = {{ {', '.join(no_endpoints)} }}",
            "  }",
        ]
        for hook in ("forward", "output"):
            lines += [
                f"  chain reject-{hook} {{",
                f"    type filter hook {hook} priority filter; policy accept;",
                "    ct state new ip daddr . tcp dport @no-endpoints reject with tcp reset",
                "  }",
            ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _service_chains(rule: ServiceRule, proto: str) -> Sequence[str]:
    out: list[str] = []
    eps = rule.endpoints
    targets = ", ".join(f"{i} : goto {rule.chain}-{i}" for i in range(len(eps)))
    out += [
        f"  chain {rule.chain} {{",
        f"    numgen random mod {len(eps)} vmap {{ {targets} }}",
        "  }",
    ]
    for i, ep in enumerate(eps):
        out += [
            f"  chain {rule.chain}-{i} {{",
            f"    ip saddr {ep.ip} meta mark set meta mark | {KUBEPROXY_MASQ_MARK:#x}",
            f"    meta l4proto {proto} dnat to {ep.ip}:{ep.port}",
            "  }",
        ]
    return out
