"""Where AuthorizationPolicy and RequestAuthentication go (controlplane/translate.py): targetRefs
to a waypoint Gateway, to a Service bound to a waypoint, to the istio-waypoint GatewayClass from
the root namespace; other namespaces and selector-based policies never reach a waypoint. Applied
through the ConfigStore and built by the Index, as the control plane does."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from controlplane.api import mesh_pb2 as pb
from controlplane.index import Index, Snapshot
from controlplane.store import ConfigStore
from controlplane.translate import convert
from tests.unit.test_waypoint_jwt import GOOD, ISS, NOW, jwks, sign
from waypoint.authz import L7Policies, L7Request
from waypoint.jwt import Authenticated
from ztunnel.state import from_resources

REVIEWS = "reviews.default.svc.cluster.local"
DETAILS = "details.default.svc.cluster.local"
PRODUCTPAGE = "productpage.default.svc.cluster.local"
WP = "waypoint/default/waypoint"
WP2 = "waypoint/default/waypoint2"
OTHER_WP = "waypoint/other/other-wp"


def gateway(name: str, namespace: str) -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
"""


def service(name: str, namespace: str = "default", waypoint: str | None = None) -> str:
    labels = f", labels: {{istio.io/use-waypoint: {waypoint}}}" if waypoint else ""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}{labels}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9080}}]
"""


MESH = "---".join([
    "\napiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n",
    gateway("waypoint", "default"), gateway("waypoint2", "default"), gateway("other-wp", "other"),
    service("reviews", waypoint="waypoint"), service("details", waypoint="waypoint"),
    service("productpage", waypoint="waypoint2"), service("ratings"), service("svc", "other", "other-wp"),
])


def policy(name: str, spec: dict[str, Any], *, namespace: str = "default", kind: str = "AuthorizationPolicy",
           annotations: dict[str, str] | None = None) -> str:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, **({"annotations": annotations} if annotations else {})}
    return json.dumps({"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec})


def gw_ref(name: str, namespace: str | None = None) -> dict[str, str]:
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name}
    return ref | ({"namespace": namespace} if namespace else {})


def svc_ref(name: str) -> dict[str, str]:
    return {"group": "", "kind": "Service", "name": name}


CLASS_REF = {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}
GET = [{"to": [{"operation": {"methods": ["GET"]}}]}]


def apply(store: ConfigStore, *docs: str, delete: bool = False) -> None:
    results = store.apply_text("\n---\n".join(docs), "test.yaml", delete=delete)
    assert not [r for r in results if r.error], results


def build(*docs: str) -> tuple[ConfigStore, Index, Snapshot]:
    store = ConfigStore()
    apply(store, MESH, *docs)
    index = Index(converters=[convert])
    return store, index, index.build(store.snapshot())


def view(snap: Snapshot, name: str) -> dict[str, pb.Resource]:
    return {k: pb.Resource.FromString(v) for k, v in snap.views.get(name, {}).items()}


def authz(snap: Snapshot, view_name: str) -> dict[str, pb.Authorization]:
    return {k: r.waypoint_authorization for k, r in view(snap, view_name).items()
            if r.WhichOneof("kind") == "waypoint_authorization"}


def authn(snap: Snapshot, view_name: str) -> dict[str, pb.RequestAuthn]:
    return {k: r.request_authn for k, r in view(snap, view_name).items() if r.WhichOneof("kind") == "request_authn"}


def test_a_gateway_target_applies_to_everything_its_waypoint_serves() -> None:
    _, _, snap = build(policy("viewer", {"targetRefs": [gw_ref("waypoint")], "rules": GET}))
    got = authz(snap, WP)
    assert list(got) == ["authz/default/viewer"]
    a = got["authz/default/viewer"]
    assert (a.name, a.namespace, a.action, list(a.target_hosts), a.has_l7) == ("viewer", "default", pb.ALLOW, [], True)
    assert a.rules[0].clauses[0].matches[0].methods[0].exact == "GET"
    assert "authz/default/viewer" not in snap.views["ztunnel"]
    assert authz(snap, WP2) == {} and authz(snap, OTHER_WP) == {}


def test_a_legacy_target_ref_works_too() -> None:
    _, _, snap = build(policy("legacy", {"targetRef": gw_ref("waypoint2"), "rules": GET}))
    assert list(authz(snap, WP2)) == ["authz/default/legacy"] and authz(snap, WP) == {}


def test_a_service_target_applies_to_that_service_at_its_waypoint() -> None:
    _, _, snap = build(
        policy("reviews-only", {"targetRefs": [svc_ref("reviews")], "rules": GET}),
        policy("two", {"targetRefs": [svc_ref("reviews"), svc_ref("details")], "rules": GET}),
        policy("split", {"targetRefs": [svc_ref("reviews"), svc_ref("productpage")], "rules": GET}),
        policy("svc-and-gw", {"targetRefs": [svc_ref("reviews"), gw_ref("waypoint")], "rules": GET}),
    )
    wp = authz(snap, WP)
    assert list(wp["authz/default/reviews-only"].target_hosts) == [REVIEWS]
    assert list(wp["authz/default/two"].target_hosts) == [DETAILS, REVIEWS]
    assert list(wp["authz/default/split"].target_hosts) == [REVIEWS]
    assert list(wp["authz/default/svc-and-gw"].target_hosts) == []  # the Gateway covers everything
    wp2 = authz(snap, WP2)
    assert list(wp2) == ["authz/default/split"] and list(wp2["authz/default/split"].target_hosts) == [PRODUCTPAGE]


def test_targets_elsewhere_attach_nowhere() -> None:
    _, _, snap = build(
        policy("unbound", {"targetRefs": [svc_ref("ratings")], "rules": GET}),
        policy("missing", {"targetRefs": [svc_ref("nope"), gw_ref("nope")], "rules": GET}),
        # a policy must be in its target's namespace
        policy("cross-gw", {"targetRefs": [gw_ref("waypoint", "default")], "rules": GET}, namespace="other"),
        policy("cross-svc", {"targetRefs": [svc_ref("reviews")], "rules": GET}, namespace="other"),
        policy("points-away", {"targetRefs": [gw_ref("other-wp", "other")], "rules": GET}),
        # the GatewayClass only from the root namespace
        policy("class-not-root", {"targetRefs": [CLASS_REF], "rules": GET}),
    )
    for name in (WP, WP2, OTHER_WP, "ztunnel"):
        assert not [k for k in view(snap, name) if k.startswith("authz/")], name


def test_the_waypoint_gateway_class_from_the_root_namespace_reaches_every_waypoint() -> None:
    _, _, snap = build(policy("mesh-wide", {"targetRefs": [CLASS_REF], "action": "DENY",
                                            "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]},
                              namespace="istio-system"))
    for name in (WP, WP2, OTHER_WP):
        a = authz(snap, name)["authz/istio-system/mesh-wide"]
        assert (a.action, list(a.target_hosts)) == (pb.DENY, [])
    assert "authz/istio-system/mesh-wide" not in snap.views["ztunnel"]


def test_selector_and_namespace_policies_stay_ztunnel_only() -> None:
    _, _, snap = build(
        policy("by-selector", {"selector": {"matchLabels": {"app": "reviews"}}, "rules": GET}),
        policy("namespace-wide", {"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["x"]}}]}]}),
        policy("mesh", {"action": "AUDIT", "rules": [{}]}, namespace="istio-system"),
    )
    ztunnel = {k: pb.Resource.FromString(v) for k, v in snap.views["ztunnel"].items() if k.startswith("authz/")}
    assert {k: r.authorization.scope for k, r in ztunnel.items()} == {
        "authz/default/by-selector": pb.WORKLOAD_SELECTOR, "authz/default/namespace-wide": pb.NAMESPACE,
        "authz/istio-system/mesh": pb.GLOBAL}
    assert all(r.WhichOneof("kind") == "authorization" for r in ztunnel.values())
    for name in (WP, WP2, OTHER_WP):
        assert authz(snap, name) == {}


def test_custom_policies_reach_waypoints_only() -> None:
    custom = {"action": "CUSTOM", "provider": {"name": "opa"}, "rules": GET}
    _, _, snap = build(policy("ext", {"targetRefs": [gw_ref("waypoint")], **custom}),
                       policy("ext-selector", {"selector": {"matchLabels": {"app": "x"}}, **custom}))
    a = authz(snap, WP)["authz/default/ext"]
    assert (a.action, a.provider) == (pb.CUSTOM, "opa")
    assert not [k for k in snap.views["ztunnel"] if k.startswith("authz/")]


def test_paths_templates_and_dry_run_are_carried() -> None:
    _, _, snap = build(policy("p", {"targetRefs": [gw_ref("waypoint")], "rules": [
        {"to": [{"operation": {"paths": ["/api/{*}/items", "/static/*"], "notPaths": ["/api/{**}"]}}]}]},
        annotations={"istio.io/dry-run": "true"}))
    a = authz(snap, WP)["authz/default/p"]
    m = a.rules[0].clauses[0].matches[0]
    assert [p.WhichOneof("match_type") for p in m.paths] == ["template", "prefix"]
    assert m.paths[0].template == "/api/{*}/items" and m.not_paths[0].template == "/api/{**}"
    assert a.dry_run


RA_RULE = {
    "issuer": ISS, "audiences": ["bookinfo"], "jwks": jwks(),
    "fromHeaders": [{"name": "X-Jwt-Assertion", "prefix": "Bearer "}], "fromParams": ["token"],
    "fromCookies": ["session"], "forwardOriginalToken": True, "outputPayloadToHeader": "x-jwt-payload",
    "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}], "timeout": "5s",
}


def test_request_authentication_placement_and_fields() -> None:
    remote = {"issuer": "https://issuer.example.com", "jwksUri": "https://issuer.example.com/jwks.json"}
    _, _, snap = build(
        policy("gw", {"targetRefs": [gw_ref("waypoint")], "jwtRules": [RA_RULE]}, kind="RequestAuthentication"),
        policy("svc", {"targetRefs": [svc_ref("productpage")], "jwtRules": [remote]}, kind="RequestAuthentication"),
        policy("mesh", {"targetRefs": [CLASS_REF], "jwtRules": [remote]}, kind="RequestAuthentication",
               namespace="istio-system"),
        # never at a waypoint: selector-based, selector-less (namespace and root), cross-namespace
        policy("sel", {"selector": {"matchLabels": {"app": "reviews"}}, "jwtRules": [remote]},
               kind="RequestAuthentication"),
        policy("ns-wide", {"jwtRules": [remote]}, kind="RequestAuthentication"),
        policy("root", {"jwtRules": [remote]}, kind="RequestAuthentication", namespace="istio-system"),
        policy("cross", {"targetRefs": [gw_ref("waypoint", "default")], "jwtRules": [remote]},
               kind="RequestAuthentication", namespace="other"),
    )
    assert sorted(authn(snap, WP)) == ["authn/default/gw", "authn/istio-system/mesh"]
    assert sorted(authn(snap, WP2)) == ["authn/default/svc", "authn/istio-system/mesh"]
    assert sorted(authn(snap, OTHER_WP)) == ["authn/istio-system/mesh"]
    assert not [k for k in snap.views["ztunnel"] if k.startswith("authn/")]
    assert list(authn(snap, WP2)["authn/default/svc"].target_hosts) == [PRODUCTPAGE]
    svc_rule = authn(snap, WP2)["authn/default/svc"].rules[0]
    assert (svc_rule.jwks, svc_rule.jwks_uri) == ("", "https://issuer.example.com/jwks.json")
    ra = authn(snap, WP)["authn/default/gw"]
    assert (ra.name, ra.namespace, list(ra.target_hosts)) == ("gw", "default", [])
    r = ra.rules[0]
    assert (r.issuer, list(r.audiences), r.jwks, r.jwks_uri) == (ISS, ["bookinfo"], jwks(), "")
    assert [(h.name, h.prefix) for h in r.from_headers] == [("x-jwt-assertion", "Bearer ")]
    assert (list(r.from_params), list(r.from_cookies)) == (["token"], ["session"])
    assert (r.forward_original_token, r.output_payload_to_header, r.timeout_seconds) == (True, "x-jwt-payload", 5.0)
    assert [(c.header, c.claim) for c in r.output_claim_to_headers] == [("x-sub", "sub")]


def test_rebinding_a_service_moves_its_policies_and_deleting_removes_them() -> None:
    pol = policy("reviews-only", {"targetRefs": [svc_ref("reviews")], "rules": GET})
    store, index, snap = build(pol)
    assert "authz/default/reviews-only" in snap.views[WP]
    apply(store, service("reviews", waypoint="waypoint2"))
    snap = index.build(store.snapshot())
    assert "authz/default/reviews-only" not in snap.views[WP]
    assert list(authz(snap, WP2)["authz/default/reviews-only"].target_hosts) == [REVIEWS]
    apply(store, pol, delete=True)
    snap = index.build(store.snapshot())
    assert not [k for v in snap.views.values() for k in v if k == "authz/default/reviews-only"]


def test_unchanged_resources_keep_their_bytes_across_builds() -> None:
    store, index, first = build(
        policy("split", {"targetRefs": [svc_ref("reviews"), svc_ref("productpage")], "rules": GET}),
        policy("gw", {"targetRefs": [gw_ref("waypoint")], "jwtRules": [RA_RULE]}, kind="RequestAuthentication"))
    apply(store, service("ratings", waypoint="none"))  # an unrelated change
    second = index.build(store.snapshot())
    for name in (WP, WP2):
        for key, data in first.views[name].items():
            if key.startswith(("authz/", "authn/")):
                assert second.views[name][key] is data, (name, key)


def test_a_waypoint_uses_its_view_and_ignores_ztunnels_policies() -> None:
    _, _, snap = build(
        policy("deny-all-ns", {"action": "DENY", "rules": [{}]}),  # ztunnel's, not the waypoint's
        policy("reviews-get", {"targetRefs": [svc_ref("reviews")], "rules": GET}),
        policy("require-jwt", {"targetRefs": [gw_ref("waypoint")], "action": "DENY",
                               "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}]}),
        policy("gw", {"targetRefs": [gw_ref("waypoint")], "jwtRules": [{"issuer": ISS, "jwks": jwks()}]},
               kind="RequestAuthentication"),
    )
    resources = {**view(snap, "ztunnel"), **view(snap, WP)}  # what the waypoint subscribes to
    mesh = from_resources(snap.version, resources)  # ztunnel's parser copes with the new kinds
    assert set(mesh.authorizations) == {"default/deny-all-ns"}
    pols = L7Policies.from_resources(resources)
    assert sorted(p.key for p in pols.policies) == ["default/require-jwt", "default/reviews-get"]
    headers = {"authorization": f"Bearer {sign(GOOD)}"}
    who = pols.authenticate(REVIEWS, headers, {}, now=NOW)
    assert isinstance(who, Authenticated)
    req = L7Request(source_principal="spiffe://cluster.local/ns/default/sa/curl", source_ip="10.244.1.5",
                    destination_port=9080, host="reviews:9080", method="GET", path="/", target_host=REVIEWS,
                    request_principal=who.principal, claims=who.claims)
    assert pols.check(req).allowed
    assert not pols.check(L7Request(method="GET", path="/", target_host=REVIEWS)).allowed  # no JWT
    post = pols.check(L7Request(method="POST", target_host=REVIEWS, request_principal=who.principal,
                                claims=who.claims))
    assert post.details == "rbac_access_denied_matched_policy[none]"


def test_the_existing_fixture_still_translates() -> None:
    text = textwrap.dedent("""\
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
    _, _, snap = build(text)
    a = pb.Resource.FromString(snap.views["ztunnel"]["authz/default/deny-curl"]).authorization
    assert (a.scope, a.action, a.has_l7, list(a.target_hosts)) == (pb.WORKLOAD_SELECTOR, pb.DENY, False, [])
