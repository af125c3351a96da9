"""Where ztunnel sends a captured outbound connection: a table over every path."""

from __future__ import annotations

import pytest

from ztunnel.proxy import Decision, decide
from ztunnel.state import ProxyState, Service, Waypoint, Workload

KEY = "default/web.default.svc.cluster.local"
WP_KEY = "default/waypoint.default.svc.cluster.local"


def wl(uid: str, node: str, ip: str, enrolled: bool = True, healthy: bool = True, sa: str = "sa",
       services: dict[str, dict[int, int]] | None = None, waypoint: Waypoint | None = None) -> Workload:
    return Workload(uid=uid, name=f"{uid}-pod", namespace="default", node=node, service_account=sa,
                    trust_domain="cluster.local", addresses=(ip,), enrolled=enrolled, healthy=healthy,
                    services=services or {}, waypoint=waypoint)


CLIENT = wl("client", "n1", "10.244.1.2", sa="sleep")
OUTSIDER = wl("outsider", "n1", "10.244.1.3", enrolled=False)
REMOTE = wl("web1", "n2", "10.244.2.5", services={KEY: {80: 8080}})
SICK = wl("web2", "n2", "10.244.2.6", healthy=False, services={KEY: {80: 8080}})
LOCAL = wl("local", "n1", "10.244.1.9", sa="local")
PLAIN = wl("plain", "n2", "10.244.2.7", enrolled=False)
WAYPOINT = wl("wp", "n2", "10.244.2.20", sa="waypoint", services={WP_KEY: {15008: 15008}})
BEHIND = wl("behind", "n2", "10.244.2.30", waypoint=Waypoint("10.96.0.99"))
SVC = Service(namespace="default", hostname="web.default.svc.cluster.local", vips=("10.96.0.50",))
WP_SVC = Service(namespace="default", hostname="waypoint.default.svc.cluster.local", vips=("10.96.0.99",))
WAYPOINTED_SVC = Service(namespace="default", hostname="api.default.svc.cluster.local", vips=("10.96.0.60",),
                         waypoint=Waypoint("10.96.0.99"))
STATE = ProxyState.build(1, {w.uid: w for w in (CLIENT, OUTSIDER, REMOTE, SICK, LOCAL, PLAIN, WAYPOINT, BEHIND)}, (),
                         {"10.96.0.50": SVC, "10.96.0.99": WP_SVC, "10.96.0.60": WAYPOINTED_SVC})

SLEEP = "spiffe://cluster.local/ns/default/sa/sa"


@pytest.mark.parametrize(("client", "original", "want"), [
    # a VIP balanced to its one healthy endpoint on another node: HBONE to podIP:15008
    ("10.244.1.2", ("10.96.0.50", 80),
     Decision("hbone", ("10.244.2.5", 8080), CLIENT, REMOTE, KEY, ("10.244.2.5", 15008), "10.244.2.5:8080", SLEEP)),
    # a pod IP directly
    ("10.244.1.2", ("10.244.2.5", 8080),
     Decision("hbone", ("10.244.2.5", 8080), CLIENT, REMOTE, "", ("10.244.2.5", 15008), "10.244.2.5:8080", SLEEP)),
    # same node: served locally, no network
    ("10.244.1.2", ("10.244.1.9", 80), Decision("local", ("10.244.1.9", 80), CLIENT, LOCAL)),
    # destination outside the mesh: plain passthrough
    ("10.244.1.2", ("10.244.2.7", 80), Decision("passthrough", ("10.244.2.7", 80), CLIENT, PLAIN)),
    # unknown destination (outside the cluster): passthrough
    ("10.244.1.2", ("192.0.2.1", 443), Decision("passthrough", ("192.0.2.1", 443), CLIENT, None)),
    # a source outside the mesh never gets HBONE
    ("10.244.1.3", ("10.244.2.5", 8080), Decision("passthrough", ("10.244.2.5", 8080), OUTSIDER, REMOTE)),
    # a Service with a waypoint: HBONE to the waypoint, authority the original VIP:port
    ("10.244.1.2", ("10.96.0.60", 80),
     Decision("waypoint", ("10.96.0.60", 80), CLIENT, WAYPOINT, "default/api.default.svc.cluster.local",
              ("10.244.2.20", 15008), "10.96.0.60:80", "spiffe://cluster.local/ns/default/sa/waypoint")),
    # a workload with a waypoint, addressed directly
    ("10.244.1.2", ("10.244.2.30", 80),
     Decision("waypoint", ("10.244.2.30", 80), CLIENT, WAYPOINT, "", ("10.244.2.20", 15008), "10.244.2.30:80",
              "spiffe://cluster.local/ns/default/sa/waypoint")),
    # the waypoint's own traffic to a workload behind it goes direct (no loop)
    ("10.244.2.20", ("10.244.2.30", 80),
     Decision("local", ("10.244.2.30", 80), WAYPOINT, BEHIND)),
])
def test_decide(client: str, original: tuple[str, int], want: Decision) -> None:
    node = "n2" if client == "10.244.2.20" else "n1"
    assert decide(STATE, node, (client, 40000), original, choose=lambda n: 0) == want


def test_no_healthy_endpoint_or_port_mapping_is_no_endpoint_with_a_reason() -> None:
    only_sick = ProxyState.build(1, {w.uid: w for w in (CLIENT, SICK)}, (), {"10.96.0.50": SVC})
    d = decide(only_sick, "n1", ("10.244.1.2", 1), ("10.96.0.50", 80))
    assert d.via == "no_endpoint" and "no healthy endpoint for port 80" in d.reason
    d = decide(STATE, "n1", ("10.244.1.2", 1), ("10.96.0.50", 443))
    assert d.via == "no_endpoint" and d.destination is None


def test_vips_are_balanced_over_healthy_endpoints_only() -> None:
    other = wl("web3", "n2", "10.244.2.8", services={KEY: {80: 8080}})
    state = ProxyState.build(1, {w.uid: w for w in (CLIENT, REMOTE, SICK, other)}, (), {"10.96.0.50": SVC})
    picks = iter(range(10))
    seen = {decide(state, "n1", ("10.244.1.2", 1), ("10.96.0.50", 80), choose=lambda n: next(picks) % n).destination
            for _ in range(10)}
    assert seen == {("10.244.2.5", 8080), ("10.244.2.8", 8080)}
