"""ztunnel's ``/config_dump`` (``ztunnel.dump``): every section built from hand-made state,
JSON-ready, and served as is by the admin endpoint."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from ztunnel.dump import config_dump, connections, policies, rule_text, services, workloads
from ztunnel.flows import Flow
from ztunnel.identity_core import CertificateInfo, CertState
from ztunnel.policy import Connection
from ztunnel.state import (
    STRICT,
    Clause,
    Match,
    Policy,
    ProxyState,
    Rule,
    Service,
    ServicePort,
    StringMatch,
    Waypoint,
    Workload,
)

KEY = "default/reviews.default.svc.cluster.local"
WP = Waypoint("10.96.0.99", hostname="waypoint.default.svc.cluster.local", namespace="default")
REVIEWS_1 = Workload(uid="u1", name="reviews-v1-abc", namespace="default", node="node1", service_account="reviews",
                     trust_domain="cluster.local", addresses=("10.244.1.5",), enrolled=True, healthy=True,
                     services={KEY: {9080: 9080}}, authorization_policies=("default/only-curl",),
                     mtls_mode=STRICT, port_mtls={9090: "PERMISSIVE"}, waypoint=WP)
REVIEWS_2 = Workload(uid="u2", name="reviews-v2-def", namespace="default", node="node2", service_account="reviews",
                     trust_domain="cluster.local", addresses=("10.244.2.5",), enrolled=True, healthy=False,
                     services={KEY: {9080: 9080}})
CURL = Workload(uid="u3", name="curl-xyz", namespace="apps", node="node1", service_account="curl",
                trust_domain="cluster.local", addresses=("10.244.1.9",), enrolled=False, healthy=True)
REVIEWS = Service(namespace="default", hostname="reviews.default.svc.cluster.local", vips=("10.96.0.20", "fd00::20"),
                  ports=(ServicePort(9080, 9080, name="http"),), waypoint=WP)
EXTERNAL = Service(namespace="default", hostname="api.example.com", vips=("240.240.0.1",))


def exact(v: str) -> StringMatch:
    return StringMatch("exact", v)


ONLY_CURL = Policy(name="only-curl", namespace="default", scope="WORKLOAD_SELECTOR", action="ALLOW", rules=(
    Rule((Clause((Match(principals=(exact("cluster.local/ns/apps/sa/curl"), StringMatch("suffix", "/sa/bob"))),)),
          Clause((Match(destination_ports=(9080,)),)))),
))
DENY_GET = Policy(name="deny-get", namespace="default", scope="NAMESPACE", action="DENY", dry_run=True, rules=(
    Rule((Clause((Match(not_namespaces=(StringMatch("prefix", "prod"),), http=("methods",)),)),)),
))
STATE = ProxyState.build(7, {w.uid: w for w in (REVIEWS_1, REVIEWS_2, CURL)}, (),
                         {"10.96.0.20": REVIEWS, "fd00::20": REVIEWS, "240.240.0.1": EXTERNAL},
                         {ONLY_CURL.key: ONLY_CURL, DENY_GET.key: DENY_GET})
AT = datetime(2025, 1, 1, tzinfo=UTC)
CERT = CertificateInfo(identity="spiffe://cluster.local/ns/default/sa/reviews", state=CertState.VALID,
                       serial="1f", not_before=AT, not_after=AT.replace(day=2), chain_pem=("LEAF", "ROOT"))


@dataclass
class Open:
    conn: Connection
    flow: Flow


def test_every_workload_of_the_mesh_with_its_identity_protocol_and_policy_inputs() -> None:
    out = workloads(STATE)
    assert [w["name"] for w in out] == ["curl-xyz", "reviews-v1-abc", "reviews-v2-def"]  # by namespace, name
    assert out[1] == {
        "uid": "u1", "name": "reviews-v1-abc", "namespace": "default", "node": "node1",
        "addresses": ["10.244.1.5"], "service_account": "reviews",
        "identity": "spiffe://cluster.local/ns/default/sa/reviews", "enrolled": True, "protocol": "HBONE",
        "healthy": True, "waypoint": {"address": "10.96.0.99", "port": 15008,
                                      "hostname": "waypoint.default.svc.cluster.local", "namespace": "default"},
        "mtls_mode": "STRICT", "port_mtls": {"9090": "PERMISSIVE"},
        "authorization_policies": ["default/only-curl"], "services": {KEY: {"9080": 9080}},
    }
    assert (out[0]["protocol"], out[0]["waypoint"]) == ("TCP", None)


def test_each_service_once_with_healthy_and_total_endpoints() -> None:
    out = services(STATE)
    assert [(s["name"], s["hostname"]) for s in out] == [
        ("api.example.com", "api.example.com"), ("reviews", "reviews.default.svc.cluster.local")]
    reviews = out[1]
    assert reviews["vips"] == ["10.96.0.20", "fd00::20"]
    assert (reviews["endpoints"], reviews["healthy_endpoints"]) == (2, 1)
    assert reviews["ports"] == [{"port": 9080, "target_port": 9080, "target_port_name": "", "name": "http",
                                 "app_protocol": ""}]
    assert reviews["waypoint"]["hostname"] == "waypoint.default.svc.cluster.local"
    assert (out[0]["endpoints"], out[0]["waypoint"]) == (0, None)


def test_policies_with_scope_action_dry_run_and_rules_in_words() -> None:
    out = policies(STATE)
    assert [(p["namespace"], p["name"], p["scope"], p["action"], p["dry_run"]) for p in out] == [
        ("default", "deny-get", "NAMESPACE", "DENY", True),
        ("default", "only-curl", "WORKLOAD_SELECTOR", "ALLOW", False),
    ]
    assert out[1]["rules"] == [
        "principals in [cluster.local/ns/apps/sa/curl, */sa/bob] and destinationPorts in [9080]"]
    assert out[0]["rules"] == [
        "namespaces not in [prod*] [HTTP-only methods ignored in ztunnel: enforced on the L4 attributes]"]


@pytest.mark.parametrize(("rule", "action", "want"), [
    (Rule(), "ALLOW", "any connection"),
    (Rule((Clause(),)), "ALLOW", "any connection"),
    (Rule((Clause((Match(principals=(StringMatch("presence"),)),
                   Match(source_ips=(ipaddress.ip_network("10.0.0.0/8"),), not_destination_ports=(22,)))),
           Clause((Match(namespaces=(exact("a"),)),)))), "DENY",
     "(principals in [*] or (sourceIps in [10.0.0.0/8] and destinationPorts not in [22])) and namespaces in [a]"),
    (Rule((Clause((Match(http=("paths",)),)),)), "ALLOW",
     "no L4 attribute (never matches) [never matches in ztunnel: HTTP-only paths; needs a waypoint]"),
    (Rule((Clause((Match(destination_ips=(ipaddress.ip_network("fd00::/64"),)),)),)), "AUDIT",
     "destinationIps in [fd00::/64]"),
])
def test_rule_text(rule: Rule, action: str, want: str) -> None:
    assert rule_text(rule, action) == want


def test_connections_pool_per_key_and_open_inbound_with_age() -> None:
    pool: dict[Hashable, int] = {("spiffe://cluster.local/ns/apps/sa/curl", "spiffe://cluster.local/ns/default/sa/reviews",
             ("10.244.2.5", 15008)): 2, "odd-key": 1}
    flow = Flow("inbound", ("10.244.2.9", 40000), ("10.244.1.5", 9080), via="hbone", mtls=True, started=100.0,
                service=KEY)
    mtls = Open(Connection("spiffe://cluster.local/ns/apps/sa/curl", "10.244.2.9", REVIEWS_1, "10.244.1.5", 9080),
                flow)
    plain = Open(Connection(None, "172.18.0.1", REVIEWS_1, "10.244.1.5", 9090),
                 Flow("inbound", ("172.18.0.1", 1), ("10.244.1.5", 9090), via="plaintext", started=110.0))
    out = connections(pool, [mtls, plain], now=112.34)
    assert out["hbone_pool"] == [
        {"source": "", "destination": "", "next_hop": "odd-key", "connections": 1},
        {"source": "spiffe://cluster.local/ns/apps/sa/curl", "destination": "spiffe://cluster.local/ns/default/sa/reviews",
         "next_hop": "10.244.2.5:15008", "connections": 2},
    ]
    assert out["inbound"] == [  # by destination, then source address
        {"source_principal": "spiffe://cluster.local/ns/apps/sa/curl", "source_ip": "10.244.2.9",
         "destination": "default/reviews-v1-abc", "destination_identity": REVIEWS_1.identity,
         "destination_address": "10.244.1.5:9080", "via": "hbone", "service": KEY, "age_s": 12.3},
        {"source_principal": None, "source_ip": "172.18.0.1", "destination": "default/reviews-v1-abc",
         "destination_identity": REVIEWS_1.identity, "destination_address": "10.244.1.5:9090", "via": "plaintext",
         "service": "", "age_s": 2.3},
    ]
    assert connections({}, [mtls])["inbound"][0]["age_s"] is None


def test_the_whole_dump_is_plain_json_and_certificates_keep_their_shape() -> None:
    dump = config_dump("node1", STATE, [CERT], {}, [], now=0.0)
    assert set(dump) == {"node", "config_version", "workloads", "services", "policies", "certificates", "connections"}
    assert (dump["node"], dump["config_version"]) == ("node1", 7)
    assert json.loads(json.dumps(dump, sort_keys=True)) == dump  # no default= needed
    assert dump["certificates"] == [{
        "identity": "spiffe://cluster.local/ns/default/sa/reviews", "state": "valid", "serial": "1f",
        "not_before": "2025-01-01 00:00:00+00:00", "not_after": "2025-01-02 00:00:00+00:00", "next_attempt": None,
        "failed_attempts": 0, "last_error": None, "chain_pem": ["LEAF", "ROOT"],
    }]
    assert dump["connections"] == {"hbone_pool": [], "inbound": []}


def test_an_empty_ztunnel_dumps_empty_sections() -> None:
    dump = config_dump("node9", ProxyState(0, {}, ()), [])
    assert dump == {"node": "node9", "config_version": 0, "workloads": [], "services": [], "policies": [],
                    "certificates": [], "connections": {"hbone_pool": [], "inbound": []}}
