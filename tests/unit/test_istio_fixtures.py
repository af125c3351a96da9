"""Every Istio Bookinfo networking and Gateway API sample loads with no failures, into the
expected kinds, names and values."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.istio import (
    DestinationRule,
    Gateway,
    HTTPRoute,
    KubernetesGateway,
    ServiceEntry,
    VirtualService,
)
from controlplane.k8s import ALL_KINDS, LoadResult, Service, load_documents

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "istio"
SAMPLES = sorted(
    [*(FIXTURES / "networking").glob("*.yaml"), *(FIXTURES / "gateway-api").glob("*.yaml")]
)

EXPECTED: dict[str, list[tuple[str, str, str]]] = {
    "networking/bookinfo-gateway.yaml": [
        ("Gateway", "default", "bookinfo-gateway"),
        ("VirtualService", "default", "bookinfo"),
    ],
    "networking/bookinfo-gateway2.yaml": [
        ("Gateway", "default", "bookinfo-gateway2"),
        ("VirtualService", "default", "bookinfo2"),
    ],
    "networking/certmanager-gateway.yaml": [
        ("Gateway", "istio-system", "cert-manager-gateway"),
        ("VirtualService", "istio-system", "cert-manager"),
    ],
    "networking/destination-rule-all-mtls.yaml": [
        ("DestinationRule", "default", name)
        for name in ("productpage", "reviews", "ratings", "details")
    ],
    "networking/destination-rule-all.yaml": [
        ("DestinationRule", "default", name)
        for name in ("productpage", "reviews", "ratings", "details")
    ],
    "networking/destination-rule-reviews.yaml": [("DestinationRule", "default", "reviews")],
    "networking/egress-rule-google-apis.yaml": [
        ("ServiceEntry", "default", "googleapis"),
        ("VirtualService", "default", "rewrite-port-for-googleapis"),
        ("DestinationRule", "default", "originate-tls-for-googleapis"),
    ],
    "networking/fault-injection-details-v1.yaml": [
        ("VirtualService", "default", "details"),
        ("DestinationRule", "default", "details"),
    ],
    "networking/virtual-service-all-v1.yaml": [
        ("VirtualService", "default", name)
        for name in ("productpage", "reviews", "ratings", "details")
    ],
    "networking/virtual-service-details-v2.yaml": [("VirtualService", "default", "details")],
    "networking/virtual-service-ratings-db.yaml": [
        ("VirtualService", "default", "reviews"),
        ("VirtualService", "default", "ratings"),
    ],
    "networking/virtual-service-ratings-mysql-vm.yaml": [
        ("VirtualService", "default", "reviews"),
        ("VirtualService", "default", "ratings"),
    ],
    "networking/virtual-service-ratings-mysql.yaml": [
        ("VirtualService", "default", "reviews"),
        ("VirtualService", "default", "ratings"),
    ],
    "networking/virtual-service-ratings-test-abort.yaml": [
        ("VirtualService", "default", "ratings")
    ],
    "networking/virtual-service-ratings-test-delay.yaml": [
        ("VirtualService", "default", "ratings")
    ],
    "networking/virtual-service-reviews-50-v3.yaml": [("VirtualService", "default", "reviews")],
    "networking/virtual-service-reviews-80-20.yaml": [("VirtualService", "default", "reviews")],
    "networking/virtual-service-reviews-90-10.yaml": [("VirtualService", "default", "reviews")],
    "networking/virtual-service-reviews-jason-v2-v3.yaml": [
        ("VirtualService", "default", "reviews")
    ],
    "networking/virtual-service-reviews-test-v2.yaml": [("VirtualService", "default", "reviews")],
    "networking/virtual-service-reviews-v2-v3.yaml": [("VirtualService", "default", "reviews")],
    "networking/virtual-service-reviews-v3.yaml": [("VirtualService", "default", "reviews")],
    "gateway-api/bookinfo-gateway-demo.yaml": [
        ("gateway.networking.k8s.io/Gateway", "istio-system", "bookinfo-gateway"),
        ("gateway.networking.k8s.io/HTTPRoute", "default", "bookinfo"),
    ],
    "gateway-api/bookinfo-gateway.yaml": [
        ("gateway.networking.k8s.io/Gateway", "default", "bookinfo-gateway"),
        ("gateway.networking.k8s.io/HTTPRoute", "default", "bookinfo"),
    ],
    "gateway-api/bookinfo-httproute.yaml": [
        ("gateway.networking.k8s.io/HTTPRoute", "default", "bookinfo")
    ],
    "gateway-api/route-all-v1.yaml": [
        ("gateway.networking.k8s.io/HTTPRoute", "default", name)
        for name in ("reviews", "productpage", "ratings", "details")
    ],
    "gateway-api/route-reviews-50-v3.yaml": [
        ("gateway.networking.k8s.io/HTTPRoute", "default", "reviews")
    ],
    "gateway-api/route-reviews-90-10.yaml": [
        ("gateway.networking.k8s.io/HTTPRoute", "default", "reviews")
    ],
    "gateway-api/route-reviews-v1.yaml": [
        ("gateway.networking.k8s.io/HTTPRoute", "default", "reviews")
    ],
    "gateway-api/route-reviews-v3.yaml": [
        ("gateway.networking.k8s.io/HTTPRoute", "default", "reviews")
    ],
}


def load(relative: str) -> LoadResult:
    text = (FIXTURES / relative).read_text(encoding="utf-8")
    return load_documents(text, relative, kinds=ALL_KINDS)


def test_every_sample_is_listed() -> None:
    assert sorted(str(p.relative_to(FIXTURES)) for p in SAMPLES) == sorted(EXPECTED)
    assert (FIXTURES / "SOURCE.md").is_file()


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_sample_loads_with_no_failures(relative: str) -> None:
    result = load(relative)
    assert result.failures == []
    assert result.skipped == []  # Istio defines every kind in these samples
    assert [obj.key for obj in result.all_objects] == EXPECTED[relative]
    assert result.objects == []  # no Kubernetes kinds in them
    deprecated = relative == "gateway-api/bookinfo-gateway-demo.yaml"
    assert all("deprecated" in w for w in result.warnings) if deprecated else not result.warnings


def test_bookinfo_versions_are_services() -> None:
    result = load("bookinfo-versions.yaml")
    assert result.ok and not result.warnings
    assert all(isinstance(obj, Service) for obj in result.all_objects)
    assert [obj.meta.name for obj in result.objects] == [
        "reviews-v1", "reviews-v2", "reviews-v3", "productpage-v1", "ratings-v1", "details-v1",
    ]  # fmt: skip


def one(relative: str, index: int = 0) -> object:
    return load(relative).all_objects[index]


def test_weighted_virtual_service() -> None:
    vs = one("networking/virtual-service-reviews-80-20.yaml")
    assert isinstance(vs, VirtualService)
    assert vs.api_version == "networking.istio.io/v1alpha3"
    assert vs.hosts == ("reviews",) and vs.gateways == ()
    (route,) = vs.http
    assert [(d.destination.host, d.destination.subset, d.weight) for d in route.route] == [
        ("reviews", "v1", 80),
        ("reviews", "v2", 20),
    ]


def test_header_match_and_fault_injection() -> None:
    vs = one("networking/virtual-service-ratings-test-delay.yaml")
    assert isinstance(vs, VirtualService)
    first, fallback = vs.http
    (match,) = first.match
    assert match.headers["end-user"].type == "exact"
    assert match.headers["end-user"].value == "jason"
    assert first.fault is not None and first.fault.delay is not None
    assert first.fault.delay.fixed_delay.seconds == 7.0
    assert first.fault.delay.fixed_delay.text == "7s"
    assert first.fault.delay.percentage == 100.0
    assert fallback.match == () and fallback.route[0].destination.subset == "v1"

    abort_vs = one("networking/virtual-service-ratings-test-abort.yaml")
    assert isinstance(abort_vs, VirtualService)
    fault = abort_vs.http[0].fault
    assert fault is not None and fault.abort is not None
    assert (fault.abort.http_status, fault.abort.percentage) == (500, 100.0)


def test_gateway_and_its_virtual_service() -> None:
    gateway = one("networking/bookinfo-gateway.yaml", 0)
    vs = one("networking/bookinfo-gateway.yaml", 1)
    assert isinstance(gateway, Gateway) and isinstance(vs, VirtualService)
    assert gateway.selector == {"istio": "ingressgateway"}
    (server,) = gateway.servers
    assert (server.port.number, server.port.protocol, server.port.name) == (8080, "HTTP", "http")
    assert server.hosts == ("*",) and server.tls is None
    assert vs.hosts == ("*",) and vs.gateways == ("bookinfo-gateway",)
    uris = [(m.uri.type, m.uri.value) for m in vs.http[0].match if m.uri is not None]
    assert ("exact", "/productpage") in uris and ("prefix", "/static") in uris
    assert vs.http[0].route[0].destination.port == 9080


def test_destination_rules() -> None:
    dr = one("networking/destination-rule-all-mtls.yaml", 1)
    assert isinstance(dr, DestinationRule)
    assert dr.host == "reviews"
    assert [s.name for s in dr.subsets] == ["v1", "v2", "v3"]
    assert dr.subset("v2") is not None and dr.subset("v2").labels == {"version": "v2"}  # type: ignore[union-attr]
    assert dr.traffic_policy is not None and dr.traffic_policy.tls is not None
    assert dr.traffic_policy.tls.mode == "ISTIO_MUTUAL"

    random = one("networking/destination-rule-reviews.yaml")
    assert isinstance(random, DestinationRule) and random.traffic_policy is not None
    assert random.traffic_policy.load_balancer is not None
    assert random.traffic_policy.load_balancer.simple == "RANDOM"


def test_service_entry_and_port_level_tls() -> None:
    result = load("networking/egress-rule-google-apis.yaml")
    se, vs, dr = result.all_objects
    assert isinstance(se, ServiceEntry)
    assert se.hosts == ("www.googleapis.com",) and se.resolution == "DNS"
    assert se.location == "MESH_EXTERNAL"
    assert [(p.number, p.protocol, p.name) for p in se.ports] == [
        (80, "HTTP", "http"),
        (443, "HTTPS", "https"),
    ]
    assert isinstance(vs, VirtualService) and vs.http[0].match[0].port == 80
    assert isinstance(dr, DestinationRule) and dr.traffic_policy is not None
    (port_policy,) = dr.traffic_policy.port_level_settings
    assert port_policy.port == 443
    assert port_policy.tls is not None and port_policy.tls.mode == "SIMPLE"


def test_gateway_api_gateway_and_route() -> None:
    gateway = one("gateway-api/bookinfo-gateway.yaml", 0)
    route = one("gateway-api/bookinfo-gateway.yaml", 1)
    assert isinstance(gateway, KubernetesGateway) and isinstance(route, HTTPRoute)
    assert gateway.kind == "Gateway" and gateway.gateway_class_name == "istio"
    assert not gateway.is_waypoint
    (listener,) = gateway.listeners
    assert (listener.name, listener.port, listener.protocol) == ("http", 80, "HTTP")
    assert listener.allowed_routes.namespaces_from == "Same"
    (parent,) = route.parent_refs
    assert (parent.group, parent.kind, parent.name) == (
        "gateway.networking.k8s.io",
        "Gateway",
        "bookinfo-gateway",
    )
    (rule,) = route.rules
    assert [(m.path.type, m.path.value) for m in rule.matches if m.path][:2] == [
        ("Exact", "/productpage"),
        ("PathPrefix", "/static"),
    ]
    (backend,) = rule.backend_refs
    assert (backend.kind, backend.name, backend.port, backend.weight) == (
        "Service",
        "productpage",
        9080,
        1,
    )


def test_gamma_route_with_weights() -> None:
    route = one("gateway-api/route-reviews-90-10.yaml")
    assert isinstance(route, HTTPRoute)
    (parent,) = route.parent_refs
    assert (parent.group, parent.kind, parent.port) == ("", "Service", 9080)
    assert [(b.name, b.weight) for b in route.rules[0].backend_refs] == [
        ("reviews-v1", 90),
        ("reviews-v2", 10),
    ]
