"""The waypoint's request pipeline in one process: Istio YAML goes through the control plane's
store, index and translation into the waypoint's view, the waypoint's state is built from it,
and requests go through :meth:`Waypoint.handle_request` to in-memory HTTP/1.1 apps standing in
for the pods (the connector hands out memory streams served by :func:`serve_http1`).

Covers each route feature (weights, subsets, header matches, redirect, rewrite, header
operations, mirror, timeout, retries, fault delay/abort), DestinationRule load balancing,
connection-pool overflow and outlier detection, L7 authorization and JWT, and telemetry.
"""

from __future__ import annotations

import base64
import json
import random
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from prometheus_client import CollectorRegistry

from controlplane.api import mesh_pb2 as pb
from controlplane.index import Index
from controlplane.store import ConfigStore, ReportedPod
from controlplane.translate import convert
from waypoint import telemetry
from waypoint.http import Request, Response
from waypoint.http1 import serve_http1
from waypoint.server import Downstream, Waypoint
from waypoint.state import WaypointState, from_update
from waypoint.upstream import Upstreams
from ztunnel.identity import Identity, IdentityManager
from ztunnel.identity_fake import FakeCertificateSource
from ztunnel.state import Workload

BASE = textwrap.dedent("""\
    apiVersion: v1
    kind: Namespace
    metadata: {name: default, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: waypoint, namespace: default}
    spec:
      gatewayClassName: istio-waypoint
      listeners: [{name: mesh, port: 15008, protocol: HBONE}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: reviews}
    spec:
      selector: {app: reviews}
      ports: [{name: http, port: 9080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: ratings}
    spec:
      selector: {app: ratings}
      ports: [{name: http, port: 9080}]
    """)

PODS = [("reviews-v1", "reviews", "v1", "10.244.1.11"), ("reviews-v2", "reviews", "v2", "10.244.1.12"),
        ("reviews-v3", "reviews", "v3", "10.244.2.13"), ("ratings-v1", "ratings", "v1", "10.244.2.14")]
CLIENT_IP = "10.244.1.50"

App = Callable[[Workload, Request], Awaitable[Response]]


async def echo_app(w: Workload, req: Request) -> Response:
    body = json.dumps({"pod": w.name, "method": req.method, "path": req.path, "authority": req.authority,
                       "headers": dict(req.headers)}).encode()
    return Response(200, [("content-type", "application/json"), ("x-app", w.name)], body)


@dataclass
class Rig:
    store: ConfigStore
    waypoint: Waypoint
    state: WaypointState
    apps: dict[str, App] = field(default_factory=dict)   # pod name -> app (default echo)
    calls: Counter[str] = field(default_factory=Counter)
    connects: Counter[str] = field(default_factory=Counter)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    down_for: set[str] = field(default_factory=set)     # pods refusing connections

    def apply(self, text: str) -> None:
        results = self.store.apply_text(text, "test")
        assert [r.error for r in results if r.error] == []
        self.rebuild()

    def delete(self, text: str) -> None:
        self.store.apply_text(text, "test", delete=True)
        self.rebuild()

    def rebuild(self) -> None:
        snap = Index(converters=[convert]).build(self.store.snapshot())
        resources = {}
        for view in ("ztunnel", "waypoint/default/waypoint"):
            for name, data in snap.views.get(view, {}).items():
                resources[name] = pb.Resource.FromString(data)
        self.state = from_update(snap.version or 1, resources)

    def downstream(self, service: str = "reviews", principal: str = "spiffe://cluster.local/ns/default/sa/curl") -> Downstream:
        svc = self.state.service_named(f"{service}.default.svc.cluster.local")
        assert svc is not None
        return Downstream(principal, (CLIENT_IP, 40000), self.state.mesh.by_ip.get(CLIENT_IP), svc, 9080, svc.vips[0])

    async def get(self, path: str = "/reviews/0", headers: dict[str, str] | None = None, *, service: str = "reviews",
                  method: str = "GET", body: bytes = b"", principal: str = "spiffe://cluster.local/ns/default/sa/curl") -> Response:
        req = Request(method, "http", f"{service}:9080", path, list((headers or {}).items()), body)
        return await self.waypoint.handle_request(req, self.downstream(service, principal))


def _pods() -> list[ReportedPod]:
    out = [ReportedPod(uid=name, namespace="default", name=name, node="n1", ip=ip,
                       labels={"app": app, "version": version}, annotations={}, service_account=f"bookinfo-{app}",
                       owner=name, ready=True, phase="Running", ports=(("http", 9080),), reporter="test")
           for name, app, version, ip in PODS]
    out.append(ReportedPod(uid="curl", namespace="default", name="curl", node="n1", ip=CLIENT_IP, labels={"app": "curl"},
                           annotations={}, service_account="curl", owner="curl", ready=True, phase="Running", ports=(),
                           reporter="test"))
    return out


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    store = ConfigStore()
    store.apply_text(BASE, "base")
    store.report_pods("test", _pods(), [], full=True)
    holder: dict[str, Rig] = {}

    async def connect(w: Workload, port: int) -> trio.abc.Stream:
        r = holder["rig"]
        r.connects[w.name] += 1
        if w.name in r.down_for:
            raise OSError(f"connection refused by {w.name}")
        client, server = trio.testing.memory_stream_pair()

        async def handle(req: Request) -> Response:
            r.calls[w.name] += 1
            return await r.apps.get(w.name, echo_app)(w, req)

        nursery.start_soon(serve_http1, server, handle)
        return client

    identity = Identity("cluster.local", "default", "waypoint")
    identities = IdentityManager(FakeCertificateSource())
    registry = CollectorRegistry()
    upstreams = Upstreams(connect)
    wp = Waypoint("waypoint", "default", identity, lambda: holder["rig"].state, identities, upstreams,
                  telemetry.L7Metrics(registry), None, rng=random.Random(7))
    async with trio.open_nursery() as nursery:
        await nursery.start(upstreams.run)
        await nursery.start(wp.run)
        r = Rig(store, wp, None, registry=registry)  # type: ignore[arg-type]
        holder["rig"] = r
        r.rebuild()
        yield r
        nursery.cancel_scope.cancel()


def pod_of(resp: Response) -> str:
    return str(json.loads(resp.body)["pod"])


# --- routing ---------------------------------------------------------------------------------------


async def test_without_routes_requests_reach_every_endpoint(rig: Rig) -> None:
    seen = Counter([pod_of(await rig.get()) for _ in range(60)])
    assert set(seen) == {"reviews-v1", "reviews-v2", "reviews-v3"}, seen


def vs(text: str) -> str:
    return textwrap.dedent(text)


DR = vs("""\
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews}
    spec:
      host: reviews
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v2, labels: {version: v2}}
      - {name: v3, labels: {version: v3}}
    """)


async def test_weighted_subsets_split_and_header_match_wins(rig: Rig) -> None:
    rig.apply(DR)
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews}
        spec:
          hosts: [reviews]
          http:
          - match: [{headers: {end-user: {exact: jason}}}]
            route: [{destination: {host: reviews, subset: v2}}]
          - route:
            - {destination: {host: reviews, subset: v1}, weight: 50}
            - {destination: {host: reviews, subset: v3}, weight: 50}
        """))
    seen = Counter([pod_of(await rig.get()) for _ in range(400)])
    assert set(seen) == {"reviews-v1", "reviews-v3"}
    assert abs(seen["reviews-v3"] - 200) <= 40, seen
    jason = Counter([pod_of(await rig.get(headers={"end-user": "jason"})) for _ in range(20)])
    assert jason == Counter({"reviews-v2": 20})


async def test_no_matching_route_is_404_nr(rig: Rig) -> None:
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews}
        spec:
          hosts: [reviews]
          http:
          - match: [{uri: {prefix: /only}}]
            route: [{destination: {host: reviews}}]
        """))
    resp = await rig.get("/reviews/0")
    assert resp.status == 404
    assert (await rig.get("/only/x")).status == 200


async def test_redirect_rewrite_and_header_operations(rig: Rig) -> None:
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews}
        spec:
          hosts: [reviews]
          http:
          - match: [{uri: {exact: /old}}]
            redirect: {uri: /new, authority: elsewhere}
          - match: [{uri: {prefix: /v2/}}]
            rewrite: {uri: /reviews/, authority: reviews.internal}
            headers:
              request: {set: {x-set: one}, add: {x-added: two}, remove: [x-drop]}
              response: {set: {x-resp: three}, remove: [x-app]}
            route: [{destination: {host: reviews}}]
        """))
    red = await rig.get("/old?q=1")
    assert red.status == 301 and red.header("location") == "http://elsewhere:9080/new?q=1"
    resp = await rig.get("/v2/7", {"x-drop": "gone", "x-keep": "kept"})
    data = json.loads(resp.body)
    assert data["path"] == "/reviews/7" and data["authority"] == "reviews.internal"
    assert data["headers"]["x-set"] == "one" and data["headers"]["x-added"] == "two"
    assert "x-drop" not in data["headers"] and data["headers"]["x-keep"] == "kept"
    assert resp.header("x-resp") == "three" and resp.header("x-app") is None


async def test_mirror_copies_requests_with_shadow_authority(rig: Rig) -> None:
    rig.apply(DR)
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews}
        spec:
          hosts: [reviews]
          http:
          - route: [{destination: {host: reviews, subset: v1}}]
            mirror: {host: reviews, subset: v3}
            mirrorPercentage: {value: 100.0}
        """))
    seen: list[str] = []

    async def record(w: Workload, req: Request) -> Response:
        seen.append(req.authority)
        return Response(200, [], b"{}")

    rig.apps["reviews-v3"] = record
    for _ in range(5):
        assert pod_of(await rig.get()) == "reviews-v1"
    with trio.fail_after(5):
        while len(seen) < 5:
            await trio.sleep(0.01)
    assert seen == ["reviews-shadow:9080"] * 5


async def test_fault_abort_and_delay(rig: Rig) -> None:
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: ratings}
        spec:
          hosts: [ratings]
          http:
          - match: [{headers: {end-user: {exact: jason}}}]
            fault: {abort: {percentage: {value: 100}, httpStatus: 500}}
            route: [{destination: {host: ratings}}]
          - fault: {delay: {percentage: {value: 100}, fixedDelay: 0.3s}}
            route: [{destination: {host: ratings}}]
        """))
    resp = await rig.get("/ratings/0", {"end-user": "jason"}, service="ratings")
    assert resp.status == 500 and resp.body == b"fault filter abort"
    assert rig.calls["ratings-v1"] == 0
    t = trio.current_time()
    resp = await rig.get("/ratings/0", service="ratings")
    assert resp.status == 200 and trio.current_time() - t >= 0.3


async def test_timeout_answers_504(rig: Rig) -> None:
    async def slow(w: Workload, req: Request) -> Response:
        await trio.sleep(2)
        return Response(200, [], b"late")

    for name in ("reviews-v1", "reviews-v2", "reviews-v3"):
        rig.apps[name] = slow
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews}
        spec:
          hosts: [reviews]
          http:
          - route: [{destination: {host: reviews}}]
            timeout: 0.2s
        """))
    t = trio.current_time()
    resp = await rig.get()
    assert resp.status == 504 and resp.body == b"upstream request timeout"
    assert trio.current_time() - t < 1.0


async def failing(w: Workload, req: Request) -> Response:
    return Response(503, [], b"down")


RETRY_VS = vs("""\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews}
    spec:
      hosts: [reviews]
      http:
      - route: [{destination: {host: reviews}}]
        retries: {attempts: ATTEMPTS, retryOn: 5xx}
    """)


async def test_retries_hide_a_failing_endpoint_and_attempts_zero_does_not(rig: Rig) -> None:
    rig.apps["reviews-v2"] = failing
    rig.apply(RETRY_VS.replace("ATTEMPTS", "0"))
    statuses = Counter([(await rig.get()).status for _ in range(60)])
    assert statuses[503] > 5, statuses
    rig.apply(RETRY_VS.replace("ATTEMPTS", "3"))
    statuses = Counter([(await rig.get()).status for _ in range(60)])
    assert statuses == Counter({200: 60}), statuses


async def test_connect_failures_are_retried_by_default_then_503_uf(rig: Rig) -> None:
    rig.down_for = {"reviews-v1", "reviews-v2", "reviews-v3"}
    resp = await rig.get()
    assert resp.status == 503 and b"connection failure" in resp.body
    assert sum(rig.connects.values()) == 3  # Istio's default: 2 retries
    rig.down_for = {"reviews-v1"}
    assert all([(await rig.get()).status == 200 for _ in range(20)])


# --- destination policy ----------------------------------------------------------------------------


async def test_round_robin_and_consistent_hash(rig: Rig) -> None:
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews}
        spec:
          host: reviews
          trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
        """))
    order = [pod_of(await rig.get()) for _ in range(6)]
    assert order[:3] != order[3:] or len(set(order[:3])) == 3
    assert Counter(order) == Counter({"reviews-v1": 2, "reviews-v2": 2, "reviews-v3": 2})
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews}
        spec:
          host: reviews
          trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
        """))
    for user in ("a", "b", "c", "d"):
        pods = {pod_of(await rig.get(headers={"x-user": user})) for _ in range(10)}
        assert len(pods) == 1, (user, pods)


async def test_connection_pool_overflow_answers_503_uo(rig: Rig) -> None:
    gate = trio.Event()

    async def held(w: Workload, req: Request) -> Response:
        await gate.wait()
        return Response(200, [], b"{}")

    for name in ("reviews-v1", "reviews-v2", "reviews-v3"):
        rig.apps[name] = held
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews}
        spec:
          host: reviews
          trafficPolicy:
            connectionPool:
              tcp: {maxConnections: 1}
              http: {http1MaxPendingRequests: 1, maxRetries: 0}
        """))
    rig.apply(RETRY_VS.replace("ATTEMPTS", "0"))
    results: list[int] = []

    async def one() -> None:
        results.append((await rig.get()).status)

    async with trio.open_nursery() as n:
        for _ in range(4):
            n.start_soon(one)
        with trio.fail_after(5):
            while len(results) < 2:
                await trio.sleep(0.01)
        assert results == [503, 503]  # one in flight, one pending, two overflow
        gate.set()
    assert sorted(results) == [200, 200, 503, 503]
    overflows = sum(s.value for m in rig.registry.collect() for s in m.samples
                    if s.name == "istio_requests_total" and s.labels["response_flags"] == "UO")
    assert overflows == 2


def _any_labels(rig: Rig, code: str) -> dict[str, str]:
    for metric in rig.registry.collect():
        for s in metric.samples:
            if s.name == "istio_requests_total" and s.labels.get("response_code") == code:
                return dict(s.labels)
    raise AssertionError(f"no istio_requests_total sample with response_code {code}")


async def test_outlier_detection_ejects_and_returns(rig: Rig) -> None:
    rig.apps["reviews-v2"] = failing
    rig.apply(vs("""\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews}
        spec:
          host: reviews
          trafficPolicy:
            loadBalancer: {simple: ROUND_ROBIN}
            outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 100}
        """))
    rig.apply(RETRY_VS.replace("ATTEMPTS", "0"))
    statuses = Counter([(await rig.get()).status for _ in range(30)])
    assert statuses == Counter({200: 28, 503: 2}), statuses
    cluster = rig.waypoint.upstreams.clusters()["outbound|9080||reviews.default.svc.cluster.local"]
    assert cluster.detector is not None and cluster.detector.ejected == {"reviews-v2"}
    del rig.apps["reviews-v2"]
    await trio.sleep(3.5)  # ejection time, then the next sweep
    seen = Counter([pod_of(await rig.get()) for _ in range(9)])
    assert seen["reviews-v2"] == 3, seen


# --- security --------------------------------------------------------------------------------------


async def test_l7_authorization_denies_with_rbac_access_denied(rig: Rig) -> None:
    rig.apply(vs("""\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: get-only}
        spec:
          targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
          action: ALLOW
          rules:
          - from: [{source: {principals: [cluster.local/ns/default/sa/curl]}}]
            to: [{operation: {methods: [GET], paths: [/reviews/*]}}]
        """))
    assert (await rig.get("/reviews/1")).status == 200
    denied = await rig.get("/reviews/1", method="DELETE")
    assert denied.status == 403 and denied.body == b"RBAC: access denied"
    other = await rig.get("/reviews/1", principal="spiffe://cluster.local/ns/default/sa/other")
    assert other.status == 403
    assert rig.calls["reviews-v1"] + rig.calls["reviews-v2"] + rig.calls["reviews-v3"] == 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_jwt_request_authentication_and_claims_policy(rig: Rig) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nums = key.public_key().public_numbers()
    jwks = json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256",
                                 "n": _b64(nums.n.to_bytes(256, "big")), "e": _b64(nums.e.to_bytes(3, "big"))}]})

    def token(claims: dict[str, object]) -> str:
        head = _b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims).encode())
        sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{_b64(sig)}"

    rig.apply(textwrap.dedent(f"""\
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata: {{name: jwt}}
        spec:
          targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]
          jwtRules:
          - issuer: testing@secure.istio.io
            jwks: '{jwks}'
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {{name: require-group}}
        spec:
          targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]
          action: ALLOW
          rules:
          - when: [{{key: "request.auth.claims[groups]", values: [group1]}}]
        """))
    now = int(time.time())
    good = token({"iss": "testing@secure.istio.io", "sub": "u", "exp": now + 600, "groups": ["group1", "g2"]})
    other = token({"iss": "testing@secure.istio.io", "sub": "u", "exp": now + 600, "groups": ["g2"]})
    expired = token({"iss": "testing@secure.istio.io", "sub": "u", "exp": now - 3600, "groups": ["group1"]})
    assert (await rig.get(headers={"authorization": f"Bearer {good}"})).status == 200
    assert (await rig.get(headers={"authorization": f"Bearer {other}"})).status == 403
    bad = await rig.get(headers={"authorization": f"Bearer {expired}"})
    assert bad.status == 401 and expired not in bad.body.decode()
    assert (await rig.get()).status == 403  # no token: no claims


# --- telemetry -------------------------------------------------------------------------------------


async def test_metrics_and_trace_propagation(rig: Rig) -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    resp = await rig.get(headers={"traceparent": tp, "x-request-id": "rid-1"})
    sent = json.loads(resp.body)["headers"]
    assert sent["x-request-id"] == "rid-1"
    assert sent["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert sent["traceparent"].split("-")[2] != "b7ad6b7169203331"
    assert sent["x-b3-traceid"] == "0af7651916cd43dd8448eb211c80319c"
    assert sent["x-b3-parentspanid"] == "b7ad6b7169203331"
    labels = _any_labels(rig, "200")
    assert labels["reporter"] == "waypoint"
    assert labels["destination_service"] == "reviews.default.svc.cluster.local"
    assert labels["source_principal"] == "spiffe://cluster.local/ns/default/sa/curl"
    assert labels["destination_principal"].startswith("spiffe://cluster.local/ns/default/sa/bookinfo-reviews")
    assert rig.registry.get_sample_value("istio_request_duration_milliseconds_count", labels) == 1
