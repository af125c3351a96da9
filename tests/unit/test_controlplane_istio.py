"""Istio's own samples through the control plane: every file under samples/bookinfo/networking
and samples/bookinfo/gateway-api applies and deletes; invalid variants are refused with the
field path and the running config is untouched; routes and policies reach the right views."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import Stub
from controlplane.index import Index
from controlplane.store import ConfigStore
from controlplane.translate import convert
from tests.unit.test_controlplane_push import Running, start_server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "istio"
SAMPLES = sorted((FIXTURES / "networking").glob("*.yaml")) + sorted((FIXTURES / "gateway-api").glob("*.yaml"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    running = start_server(tmp_path)
    yield running
    running.shutdown()


def apply_file(stub: Stub, path: Path, *, delete: bool = False) -> list[pb.ObjectResult]:
    req = pb.ApplyRequest(documents=[pb.Document(text=path.read_text(), source=path.name)])
    return list((stub.delete if delete else stub.apply)(req, timeout=30).results)


def config(stub: Stub) -> dict[str, object]:
    data: dict[str, object] = json.loads(stub.debug(pb.DebugRequest(what="config"), timeout=10).json)
    return data


def test_there_are_samples() -> None:
    names = {p.name for p in SAMPLES}
    assert {"virtual-service-all-v1.yaml", "destination-rule-all.yaml", "virtual-service-reviews-50-v3.yaml",
            "virtual-service-ratings-test-delay.yaml", "virtual-service-ratings-test-abort.yaml",
            "route-reviews-50-v3.yaml"} <= names, names


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_sample_applies_and_deletes(server: Running, sample: Path) -> None:
    stub = Stub(server.target)
    apply_file(stub, FIXTURES / "bookinfo.yaml")
    applied = apply_file(stub, sample)
    errors = [r.error for r in applied if r.error]
    assert errors == [], errors
    created = [r.object for r in applied if r.result in ("created", "configured")]
    skipped = [r.skipped for r in applied if r.skipped]
    assert created or skipped, applied  # something happened
    assert all(r.result == "unchanged" for r in apply_file(stub, sample) if r.result)
    deleted = apply_file(stub, sample, delete=True)
    assert [r.error for r in deleted if r.error] == []
    assert sorted(r.object for r in deleted if r.result == "deleted") == sorted(created)


INVALID = [
    ("virtual-service-reviews-50-v3.yaml", "weight: 50", "weight: 60", "weight"),
    ("virtual-service-ratings-test-delay.yaml", "fixedDelay: 7s", "fixedDelay: 7 seconds", "fixedDelay"),
    ("virtual-service-ratings-test-abort.yaml", "httpStatus: 500", "httpStatus: 700", "httpStatus"),
    ("destination-rule-all.yaml", "name: v1", "name: V_1", "subsets[0].name"),
    ("virtual-service-all-v1.yaml", "host: productpage", "host: ''", "host"),
]


@pytest.mark.parametrize(("sample", "old", "new", "field"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_variants_are_refused_with_the_field_and_config_is_untouched(
    server: Running, sample: str, old: str, new: str, field: str
) -> None:
    stub = Stub(server.target)
    path = FIXTURES / "networking" / sample
    apply_file(stub, FIXTURES / "bookinfo.yaml")
    apply_file(stub, path)
    before = config(stub)
    text = path.read_text().replace(old, new, 1)
    assert text != path.read_text()
    resp = stub.apply(pb.ApplyRequest(documents=[pb.Document(text=text, source="bad.yaml")]), timeout=10)
    errors = [r.error for r in resp.results if r.error]
    assert errors and any(field in e and "spec." in e for e in errors), errors
    assert config(stub) == before


WAYPOINTED = textwrap.dedent("""\
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: waypoint, labels: {istio.io/waypoint-for: service}}
    spec:
      gatewayClassName: istio-waypoint
      listeners: [{name: mesh, port: 15008, protocol: HBONE}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: waypoint}
    spec:
      selector: {gateway.networking.k8s.io/gateway-name: waypoint}
      ports: [{name: mesh, port: 15008}]
    ---
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: deny-curl}
    spec:
      selector: {matchLabels: {app: ratings}}
      action: DENY
      rules:
      - from: [{source: {principals: ["cluster.local/ns/default/sa/curl"]}}]
        to: [{operation: {ports: ["9080"]}}]
    """)


def test_routes_and_policies_reach_the_waypoint_and_ztunnel_views() -> None:
    store = ConfigStore()
    for path in (FIXTURES / "bookinfo.yaml", FIXTURES / "networking" / "virtual-service-reviews-50-v3.yaml",
                 FIXTURES / "networking" / "destination-rule-all.yaml"):
        assert not [r for r in store.apply_text(path.read_text(), path.name) if r.error]
    results = store.apply_text(WAYPOINTED, "waypoint.yaml")
    assert not [r for r in results if r.error], results
    reviews = store.objects[("Service", "default", "reviews")].document
    labelled = json.loads(json.dumps(reviews))
    labelled["metadata"].setdefault("labels", {})["istio.io/use-waypoint"] = "waypoint"
    assert store.apply_text(json.dumps(labelled), "label.yaml")[0].result == "configured"
    snap = Index(converters=[convert]).build(store.snapshot())
    view = snap.views["waypoint/default/waypoint"]
    route = pb.Resource.FromString(view["route/reviews.default.svc.cluster.local"]).route
    assert [(d.destination.subset, d.weight) for d in route.http[0].route] == [("v1", 50), ("v3", 50)]
    assert route.sources == ["VirtualService default/reviews"]
    dest = pb.Resource.FromString(view["destination/reviews.default.svc.cluster.local"]).destination
    assert {s.name: dict(s.labels) for s in dest.subsets}["v3"] == {"version": "v3"}
    assert not any(n.startswith("route/ratings") for n in view)  # ratings is not bound to it
    svc = pb.Resource.FromString(snap.views["ztunnel"]["service/default/reviews.default.svc.cluster.local"])
    assert svc.address.service.waypoint.hostname == "waypoint.default.svc.cluster.local"
    assert len(svc.address.service.waypoint.address) == 4
    authz = pb.Resource.FromString(snap.views["ztunnel"]["authz/default/deny-curl"]).authorization
    assert (authz.scope, authz.action, authz.has_l7) == (pb.WORKLOAD_SELECTOR, pb.DENY, False)
    src, dst = authz.rules[0].clauses
    assert src.matches[0].principals[0].exact == "cluster.local/ns/default/sa/curl"
    assert list(dst.matches[0].destination_ports) == [9080]
