"""The waypoint's L7 security (waypoint/authz.py): AuthorizationPolicy fields one by one, the
DENY > ALLOW order, AUDIT, dry-run, CUSTOM, per-service targets, and RequestAuthentication with
tokens signed here (tests/unit/test_waypoint_jwt.py mints them). Policies go through the same
path as in production: YAML -> controlplane loader -> controlplane.translate -> protobuf ->
L7Policies."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from controlplane.api import mesh_pb2 as pb
from controlplane.k8s.loader import ALL_KINDS, load_documents
from controlplane.translate import authorization, request_authn
from tests.unit.test_waypoint_jwt import GOOD, ISS, NOW, jwks, sign
from waypoint.authz import (
    DENIED_BODY,
    DENIED_STATUS,
    JwtFailure,
    L7Policies,
    L7Request,
    Verdict,
    l7_request,
    namespace_of,
    remote_ip,
    url_path,
)
from waypoint.jwt import Authenticated

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
WAYPOINT_REF = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}]
CURL = "spiffe://cluster.local/ns/default/sa/curl"
PRINCIPAL = f"{ISS}/testing@secure.istio.io"
CLAIMS: dict[str, Any] = {
    "iss": ISS, "sub": "testing@secure.istio.io", "aud": ["bookinfo", "other"], "azp": "frontend",
    "groups": ["group1", "group2"], "nested": {"level": "deep", "list": ["a", "b"]}, "age": 30, "role": "admin",
}

BASE = L7Request(
    source_principal=CURL, source_ip="10.244.1.5", destination_ip="10.96.0.20", destination_port=9080,
    host="reviews:9080", method="GET", path="/reviews/1", headers={"User-Agent": "curl/8", "X-Token": "abc-123"},
    target_host=REVIEWS,
)
JWT = replace(BASE, request_principal=PRINCIPAL, claims=CLAIMS)
PLAINTEXT = replace(BASE, source_principal=None)


def doc(name: str, spec: Mapping[str, Any], *, kind: str = "AuthorizationPolicy", namespace: str = "default",
        annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta,
            "spec": {"targetRefs": WAYPOINT_REF, **spec}}


def compile_docs(*docs: Mapping[str, Any], targets: Mapping[str, Sequence[str]] | None = None,
                 jwks_docs: Mapping[str, str] | None = None) -> L7Policies:
    """``targets``: policy name -> target hosts (what a Service targetRef translates to)."""
    text = "\n---\n".join(json.dumps(d) for d in docs)
    loaded = load_documents(text, "test.yaml", kinds=ALL_KINDS)
    assert loaded.ok, [str(e) for e in loaded.errors]
    resources = []
    for obj in loaded.mesh_objects:
        hosts = list((targets or {}).get(obj.meta.name, ()))
        if obj.kind == "AuthorizationPolicy":
            a = authorization(obj)
            a.target_hosts.extend(hosts)
            resources.append(pb.Resource(name=f"authz/{obj.meta.namespace}/{obj.meta.name}", waypoint_authorization=a))
        else:
            resources.append(pb.Resource(name=f"authn/{obj.meta.namespace}/{obj.meta.name}",
                                         request_authn=request_authn(obj, hosts)))
    return L7Policies.from_resources(resources, jwks_docs)


def allow(rule: Mapping[str, Any]) -> L7Policies:
    return compile_docs(doc("p", {"action": "ALLOW", "rules": [rule]}))


# --- every field, one ALLOW rule at a time: (rule, request, allowed) --------------------------------

def src(**fields: Any) -> dict[str, Any]:
    return {"from": [{"source": fields}]}


def op(**fields: Any) -> dict[str, Any]:
    return {"to": [{"operation": fields}]}


def when(key: str, values: Sequence[str] = (), not_values: Sequence[str] = ()) -> dict[str, Any]:
    cond: dict[str, Any] = {"key": key}
    if values:
        cond["values"] = list(values)
    if not_values:
        cond["notValues"] = list(not_values)
    return {"when": [cond]}


XFF = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}  # remote.ip: the rightmost entry

CASES: list[tuple[str, dict[str, Any], L7Request, bool]] = [
    # principals (without spiffe://), service accounts, plaintext peers
    ("principals-exact", src(principals=["cluster.local/ns/default/sa/curl"]), BASE, True),
    ("principals-other", src(principals=["cluster.local/ns/default/sa/other"]), BASE, False),
    ("principals-prefix", src(principals=["cluster.local/ns/default/*"]), BASE, True),
    ("principals-suffix", src(principals=["*/sa/curl"]), BASE, True),
    ("principals-presence", src(principals=["*"]), BASE, True),
    ("principals-presence-plaintext", src(principals=["*"]), PLAINTEXT, False),
    ("notPrincipals-hit", src(notPrincipals=["cluster.local/ns/default/sa/curl"]), BASE, False),
    ("notPrincipals-miss", src(notPrincipals=["*/sa/other"]), BASE, True),
    ("notPrincipals-plaintext", src(notPrincipals=["*"]), PLAINTEXT, True),
    ("serviceAccounts", src(serviceAccounts=["curl"]), BASE, True),
    ("serviceAccounts-other-ns", src(serviceAccounts=["prod/curl"]), BASE, False),
    ("notServiceAccounts", src(notServiceAccounts=["default/curl"]), BASE, False),
    # namespaces come from the peer principal
    ("namespaces", src(namespaces=["default"]), BASE, True),
    ("namespaces-prefix", src(namespaces=["def*"]), BASE, True),
    ("namespaces-other", src(namespaces=["prod"]), BASE, False),
    ("namespaces-plaintext", src(namespaces=["*"]), PLAINTEXT, False),
    ("notNamespaces", src(notNamespaces=["default"]), BASE, False),
    ("notNamespaces-plaintext", src(notNamespaces=["default"]), PLAINTEXT, True),
    # ipBlocks: the source; remoteIpBlocks: the client per X-Forwarded-For
    ("ipBlocks", src(ipBlocks=["10.244.0.0/16"]), BASE, True),
    ("ipBlocks-single", src(ipBlocks=["10.244.1.5"]), BASE, True),
    ("ipBlocks-miss", src(ipBlocks=["192.168.0.0/16"]), BASE, False),
    ("notIpBlocks", src(notIpBlocks=["10.244.1.0/24"]), BASE, False),
    ("remoteIpBlocks-no-xff-is-source", src(remoteIpBlocks=["10.244.1.5/32"]), BASE, True),
    ("remoteIpBlocks-xff", src(remoteIpBlocks=["10.0.0.1"]), replace(BASE, remote_ip="10.0.0.1"), True),
    ("remoteIpBlocks-xff-miss", src(remoteIpBlocks=["10.244.0.0/16"]), replace(BASE, remote_ip="10.0.0.1"), False),
    ("notRemoteIpBlocks", src(notRemoteIpBlocks=["10.0.0.0/8"]), replace(BASE, remote_ip="10.0.0.1"), False),
    # requestPrincipals: iss and sub matched apart (Istio's requestPrincipalGenerator)
    ("requestPrincipals-exact", src(requestPrincipals=[PRINCIPAL]), JWT, True),
    ("requestPrincipals-no-jwt", src(requestPrincipals=[PRINCIPAL]), BASE, False),
    ("requestPrincipals-any", src(requestPrincipals=["*"]), JWT, True),
    ("requestPrincipals-any-no-jwt", src(requestPrincipals=["*"]), BASE, False),
    ("requestPrincipals-any-needs-sub", src(requestPrincipals=["*"]),
     replace(JWT, claims={**CLAIMS, "sub": ""}), False),
    ("requestPrincipals-iss-any-sub", src(requestPrincipals=[f"{ISS}/*"]), JWT, True),
    ("requestPrincipals-any-iss-sub", src(requestPrincipals=["*/testing@secure.istio.io"]), JWT, True),
    ("requestPrincipals-iss-suffix", src(requestPrincipals=["*.istio.io/testing@secure.istio.io"]), JWT, True),
    ("requestPrincipals-sub-prefix", src(requestPrincipals=[f"{ISS}/testing*"]), JWT, True),
    ("requestPrincipals-sub-prefix-miss", src(requestPrincipals=[f"{ISS}/other*"]), JWT, False),
    ("requestPrincipals-iss-prefix", src(requestPrincipals=["testing@*"]), JWT, True),
    ("requestPrincipals-sub-suffix", src(requestPrincipals=["*secure.istio.io"]), JWT, True),
    ("requestPrincipals-other-iss", src(requestPrincipals=["other/testing@secure.istio.io"]), JWT, False),
    ("notRequestPrincipals-no-jwt", src(notRequestPrincipals=["*"]), BASE, True),
    ("notRequestPrincipals-jwt", src(notRequestPrincipals=["*"]), JWT, False),
    # hosts: :authority as sent, case-insensitive
    ("hosts-exact", op(hosts=["reviews:9080"]), BASE, True),
    ("hosts-case", op(hosts=["REVIEWS:9080"]), BASE, True),
    ("hosts-no-port", op(hosts=["reviews"]), BASE, False),
    ("hosts-prefix", op(hosts=["reviews*"]), BASE, True),
    ("hosts-suffix", op(hosts=["*.example.com"]), replace(BASE, host="API.Example.com"), True),
    ("hosts-presence", op(hosts=["*"]), BASE, True),
    ("notHosts", op(notHosts=["Reviews:9080"]), BASE, False),
    ("notHosts-miss", op(notHosts=["ratings*"]), BASE, True),
    # ports: the service port dialled
    ("ports", op(ports=["9080"]), BASE, True),
    ("ports-miss", op(ports=["80"]), BASE, False),
    ("notPorts", op(notPorts=["9080"]), BASE, False),
    # methods: case-sensitive
    ("methods", op(methods=["GET", "HEAD"]), BASE, True),
    ("methods-case", op(methods=["get"]), BASE, False),
    ("methods-prefix", op(methods=["G*"]), BASE, True),
    ("notMethods", op(notMethods=["GET"]), BASE, False),
    ("notMethods-miss", op(notMethods=["POST", "DELETE"]), BASE, True),
    # paths: without the query, exact / prefix / suffix / presence / templates
    ("paths-exact", op(paths=["/reviews/1"]), BASE, True),
    ("paths-exact-query", op(paths=["/reviews/1"]), replace(BASE, path=url_path("/reviews/1?x=1")), True),
    ("paths-exact-miss", op(paths=["/reviews"]), BASE, False),
    ("paths-prefix", op(paths=["/reviews/*"]), BASE, True),
    ("paths-suffix", op(paths=["*/1"]), BASE, True),
    ("paths-presence", op(paths=["*"]), BASE, True),
    ("paths-case", op(paths=["/Reviews/1"]), BASE, False),
    ("paths-template-one", op(paths=["/reviews/{*}"]), BASE, True),
    ("paths-template-one-not-two", op(paths=["/reviews/{*}"]), replace(BASE, path="/reviews/1/x"), False),
    ("paths-template-any", op(paths=["/reviews/{**}"]), replace(BASE, path="/reviews/1/x/y"), True),
    ("paths-template-middle", op(paths=["/{*}/1"]), BASE, True),
    ("notPaths", op(notPaths=["/reviews/*"]), BASE, False),
    ("notPaths-miss", op(notPaths=["/admin*"]), BASE, True),
    ("notPaths-dot-segments", op(notPaths=["/admin*"]), replace(BASE, path=url_path("/public/../admin/x")), False),
    # when: request.headers
    ("header-exact", when("request.headers[X-Token]", ["abc-123"]), BASE, True),
    ("header-prefix", when("request.headers[x-token]", ["abc*"]), BASE, True),
    ("header-suffix", when("request.headers[X-TOKEN]", ["*-123"]), BASE, True),
    ("header-presence", when("request.headers[x-token]", ["*"]), BASE, True),
    ("header-presence-empty", when("request.headers[x-empty]", ["*"]),
     replace(BASE, headers={"x-empty": ""}), True),
    ("header-absent", when("request.headers[x-missing]", ["*"]), BASE, False),
    ("header-case-sensitive-value", when("request.headers[x-token]", ["ABC-123"]), BASE, False),
    ("header-notValues", when("request.headers[x-token]", not_values=["abc*"]), BASE, False),
    ("header-notValues-absent", when("request.headers[x-missing]", not_values=["*"]), BASE, True),
    # when: L4 attributes
    ("source.ip", when("source.ip", ["10.244.1.0/24"]), BASE, True),
    ("source.ip-not", when("source.ip", not_values=["10.244.1.5"]), BASE, False),
    ("remote.ip", when("remote.ip", ["10.0.0.1"]), replace(BASE, remote_ip="10.0.0.1"), True),
    ("remote.ip-not", when("remote.ip", not_values=["10.0.0.0/8"]), replace(BASE, remote_ip="10.0.0.1"), False),
    ("source.namespace", when("source.namespace", ["default"]), BASE, True),
    ("source.namespace-not", when("source.namespace", not_values=["default"]), BASE, False),
    ("source.principal", when("source.principal", ["cluster.local/ns/default/sa/curl"]), BASE, True),
    ("source.principal-not", when("source.principal", not_values=["*"]), BASE, False),
    ("destination.ip", when("destination.ip", ["10.96.0.0/16"]), BASE, True),
    ("destination.ip-miss", when("destination.ip", ["10.97.0.0/16"]), BASE, False),
    ("destination.port", when("destination.port", ["9080"]), BASE, True),
    ("destination.port-not", when("destination.port", not_values=["9080"]), BASE, False),
    # when: JWT attributes
    ("request.auth.principal", when("request.auth.principal", [PRINCIPAL]), JWT, True),
    ("request.auth.principal-no-jwt", when("request.auth.principal", ["*"]), BASE, False),
    ("request.auth.principal-not-no-jwt", when("request.auth.principal", not_values=["*"]), BASE, True),
    ("request.auth.audiences-list", when("request.auth.audiences", ["bookinfo"]), JWT, True),
    ("request.auth.audiences-string", when("request.auth.audiences", ["book*"]),
     replace(JWT, claims={**CLAIMS, "aud": "bookinfo"}), True),
    ("request.auth.audiences-miss", when("request.auth.audiences", ["nope"]), JWT, False),
    ("request.auth.presenter", when("request.auth.presenter", ["frontend"]), JWT, True),
    ("request.auth.presenter-not", when("request.auth.presenter", not_values=["front*"]), JWT, False),
    ("claims-string", when("request.auth.claims[role]", ["admin"]), JWT, True),
    ("claims-iss", when("request.auth.claims[iss]", [ISS]), JWT, True),
    ("claims-list-any-element", when("request.auth.claims[groups]", ["group2"]), JWT, True),
    ("claims-list-miss", when("request.auth.claims[groups]", ["group3"]), JWT, False),
    ("claims-nested", when("request.auth.claims[nested][level]", ["deep"]), JWT, True),
    ("claims-nested-list", when("request.auth.claims[nested][list]", ["b"]), JWT, True),
    ("claims-nested-miss", when("request.auth.claims[nested][other]", ["*"]), JWT, False),
    ("claims-number-never", when("request.auth.claims[age]", ["30"]), JWT, False),
    ("claims-no-jwt", when("request.auth.claims[role]", ["admin"]), BASE, False),
    ("claims-not-no-jwt", when("request.auth.claims[role]", not_values=["admin"]), BASE, True),
    ("claims-not-list", when("request.auth.claims[groups]", not_values=["group1"]), JWT, False),
    # when: nothing to see at the waypoint
    ("connection.sni-values", when("connection.sni", ["*"]), BASE, False),
    ("connection.sni-notValues", when("connection.sni", not_values=["*.example.com"]), BASE, True),
    ("experimental-values", when("experimental.envoy.filters.a.b[c]", ["x"]), BASE, False),
    ("experimental-notValues", when("experimental.envoy.filters.a.b[c]", not_values=["x"]), BASE, True),
]


@pytest.mark.parametrize(("rule", "req", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_field(rule: dict[str, Any], req: L7Request, allowed: bool) -> None:
    verdict = allow(rule).check(req)
    assert verdict.allowed is allowed, verdict
    if allowed:
        assert verdict.policy == "default/p" and verdict.details == ""
    else:
        assert (verdict.policy, verdict.details) == ("none", "rbac_access_denied_matched_policy[none]")


def test_the_cases_cover_every_field() -> None:
    text = json.dumps([c[1] for c in CASES])
    for name in ("principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces",
                 "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks", "hosts",
                 "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths",
                 "request.headers[", "source.ip", "remote.ip", "source.namespace", "source.principal",
                 "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
                 "request.auth.claims[", "destination.ip", "destination.port", "connection.sni", "experimental."):
        assert f'"{name}' in text, name


def test_fields_of_one_source_are_anded_sources_ored_and_clauses_anded() -> None:
    pols = allow({"from": [{"source": {"namespaces": ["default"], "ipBlocks": ["192.168.0.0/16"]}},
                           {"source": {"principals": ["*/sa/curl"]}}],
                  "to": [{"operation": {"methods": ["POST"]}}, {"operation": {"paths": ["/reviews/*"]}}],
                  "when": [{"key": "request.headers[x-token]", "values": ["abc*"]},
                           {"key": "destination.port", "values": ["9080"]}]})
    assert pols.check(BASE).allowed  # second source, second operation, both conditions
    assert not pols.check(replace(BASE, headers={})).allowed  # a condition fails
    assert not pols.check(replace(BASE, path="/ratings")).allowed  # no operation matches
    assert not pols.check(replace(BASE, source_principal="spiffe://cluster.local/ns/default/sa/x")).allowed


# --- the decision ---------------------------------------------------------------------------------


def test_deny_wins_over_allow_with_envoys_details() -> None:
    pols = compile_docs(
        doc("allow-all", {"action": "ALLOW", "rules": [{}]}),
        doc("deny-get", {"action": "DENY", "rules": [op(methods=["POST"]), op(methods=["GET"])]}),
    )
    verdict = pols.check(BASE)
    assert verdict == Verdict(False, "default/deny-get", "denied by DENY policy default/deny-get",
                              "rbac_access_denied_matched_policy[ns[default]-policy[deny-get]-rule[1]]")
    assert (verdict.status, verdict.body) == (DENIED_STATUS, DENIED_BODY) == (403, "RBAC: access denied")
    assert pols.check(replace(BASE, method="PUT")).allowed


def test_the_first_deny_in_envoys_policy_order_is_named() -> None:
    pols = compile_docs(doc("b", {"action": "DENY", "rules": [{}]}), doc("a", {"action": "DENY", "rules": [{}]}))
    assert pols.check(BASE).details == "rbac_access_denied_matched_policy[ns[default]-policy[a]-rule[0]]"


def test_allow_none_matched_and_no_allow_policy() -> None:
    assert compile_docs().check(BASE) == Verdict(True, "", "no ALLOW policy applies")
    only_deny = compile_docs(doc("d", {"action": "DENY", "rules": [op(paths=["/admin"])]}))
    assert only_deny.check(BASE).allowed and only_deny.check(BASE).policy == ""
    pols = compile_docs(doc("a", {"action": "ALLOW", "rules": [op(paths=["/x"])]}),
                        doc("b", {"action": "ALLOW", "rules": [op(paths=["/y"])]}))
    verdict = pols.check(BASE)
    assert not verdict.allowed and verdict.policy == "none"
    assert verdict.details == "rbac_access_denied_matched_policy[none]"
    assert "2 ALLOW policies apply" in verdict.reason
    assert pols.check(replace(BASE, path="/y")) == Verdict(True, "default/b", "allowed by ALLOW policy default/b")


def test_allow_without_rules_denies_everything_and_an_empty_rule_allows_everything() -> None:
    assert not compile_docs(doc("nothing", {"action": "ALLOW"})).check(BASE).allowed
    assert compile_docs(doc("everything", {"action": "ALLOW", "rules": [{}]})).check(PLAINTEXT).allowed


def test_target_hosts_limit_a_policy_to_its_services() -> None:
    pols = compile_docs(doc("reviews-get", {"action": "ALLOW", "rules": [op(methods=["GET"])]}),
                        doc("deny-ratings", {"action": "DENY", "rules": [{}]}),
                        targets={"reviews-get": [REVIEWS], "deny-ratings": [RATINGS]})
    assert pols.check(BASE).allowed
    assert not pols.check(replace(BASE, method="POST")).allowed
    # for ratings no ALLOW policy applies, but its DENY does
    ratings = replace(BASE, target_host=RATINGS, method="POST")
    assert pols.check(ratings).policy == "default/deny-ratings"
    other = replace(BASE, target_host="details.default.svc.cluster.local", method="POST")
    assert pols.check(other) == Verdict(True, "", "no ALLOW policy applies")


def test_audit_does_not_decide_but_is_reported() -> None:
    pols = compile_docs(doc("audit-get", {"action": "AUDIT", "rules": [op(methods=["GET"])]}))
    verdict = pols.check(BASE)
    assert verdict.allowed and verdict.audited == ("default/audit-get",)
    assert pols.check(replace(BASE, method="POST")).audited == ()


def test_dry_run_policies_are_not_enforced_but_shadowed() -> None:
    dry = {"istio.io/dry-run": "true"}
    pols = compile_docs(doc("deny-get", {"action": "DENY", "rules": [op(methods=["GET"])]}, annotations=dry))
    verdict = pols.check(BASE)
    assert verdict.allowed and verdict.details == ""
    assert (verdict.shadow_result, verdict.shadow_policy) == ("denied", "ns[default]-policy[deny-get]-rule[0]")
    assert pols.check(replace(BASE, method="POST")).shadow_result == "allowed"
    allow_dry = compile_docs(doc("only-post", {"action": "ALLOW", "rules": [op(methods=["POST"])]}, annotations=dry))
    verdict = allow_dry.check(BASE)
    assert verdict.allowed and verdict.policy == ""
    assert (verdict.shadow_result, verdict.shadow_policy) == ("denied", "none")
    assert compile_docs(doc("x", {"action": "DENY", "rules": [{}]})).check(BASE).shadow_result == ""


def test_custom_without_a_provider_denies_what_it_matches() -> None:
    pols = compile_docs(doc("ext", {"action": "CUSTOM", "provider": {"name": "opa"},
                                    "rules": [op(paths=["/admin/*"])]}))
    assert pols.custom == ("default/ext (opa)",)
    assert pols.check(BASE).allowed
    verdict = pols.check(replace(BASE, path="/admin/x"))
    assert not verdict.allowed and verdict.policy == "default/ext"
    assert verdict.details == ("rbac_access_denied_matched_policy[istio-ext-authz-ns[default]-policy[ext]"
                               "-rule[0]-deny-due-to-bad-CUSTOM-action]")
    assert "'opa' is not supported" in verdict.reason


def test_ztunnel_policies_and_other_resources_are_ignored() -> None:
    ztunnel = pb.Resource(name="authz/default/deny-all", authorization=pb.Authorization(
        name="deny-all", namespace="default", scope=pb.NAMESPACE, action=pb.DENY, rules=[pb.Rule()]))
    route = pb.Resource(name=f"route/{REVIEWS}", route=pb.RouteConfig(host=REVIEWS))
    pols = L7Policies.from_resources({r.name: r for r in (ztunnel, route)})
    assert pols == L7Policies() and pols.check(BASE).allowed


@pytest.mark.parametrize(("match", "error"), [
    (pb.Match(source_ips=[pb.Cidr(address=b"\x0a\x00", length=8)]), "source_ips[0]: bad CIDR"),
    (pb.Match(paths=[pb.StringMatch()]), "paths[0]: no exact"),
])
def test_unusable_resources_are_named(match: pb.Match, error: str) -> None:
    res = pb.Resource(name="authz/default/bad", waypoint_authorization=pb.Authorization(
        name="bad", namespace="default", rules=[pb.Rule(clauses=[pb.Clause(matches=[match])])]))
    with pytest.raises(ValueError, match=re.escape(f"authz/default/bad: rules[0].clauses[0].matches[0].{error}")):
        L7Policies.from_resources([res])


def test_tcp_connections_follow_istios_tcp_filter() -> None:
    tcp = L7Request(source_principal=CURL, source_ip="10.244.1.5", destination_port=9080, target_host=REVIEWS,
                    tcp=True)
    # ALLOW: a rule with an HTTP-only attribute never matches; L4-only rules still do
    pols = compile_docs(doc("a", {"action": "ALLOW", "rules": [
        {"from": [{"source": {"namespaces": ["default"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}))
    assert not pols.check(tcp).allowed and pols.check(BASE).allowed
    assert allow(src(namespaces=["default"])).check(tcp).allowed
    # DENY: HTTP-only attributes are dropped, so the rule gets wider
    deny = compile_docs(doc("d", {"action": "DENY", "rules": [
        {"from": [{"source": {"namespaces": ["default"]}}], "to": [{"operation": {"paths": ["/admin"]}}]}]}))
    assert not deny.check(tcp).allowed and deny.check(BASE).allowed
    only_http = compile_docs(doc("d", {"action": "DENY", "rules": [when("request.headers[x-a]", ["1"])]}))
    assert not only_http.check(tcp).allowed and only_http.check(BASE).allowed
    # attributes TCP has keep working
    assert compile_docs(doc("d", {"action": "DENY", "rules": [src(notPrincipals=["*/sa/curl"])]})).check(tcp).allowed
    conn = l7_request(source_principal=CURL, source_ip="10.244.1.5", destination_ip="10.96.0.20",
                      destination_port=9080, host=REVIEWS, request=None)
    assert conn.tcp and not pols.check(conn).allowed


# --- request attributes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "path"), [
    ("/a/b?x=1#f", "/a/b"), ("/a/./b/../c", "/a/c"), ("/a/%2E%2e/b", "/b"), ("/../a", "/a"),
    ("/a/b/..", "/a/"), ("/a/.", "/a/"), ("/", "/"), ("*", "*"), ("/a//b", "/a//b"),
])
def test_url_path(raw: str, path: str) -> None:
    assert url_path(raw) == path


@pytest.mark.parametrize(("xff", "hops", "expected"), [
    (None, 0, "10.244.1.5"), ("", 0, "10.244.1.5"), ("203.0.113.7", 0, "203.0.113.7"),
    ("203.0.113.7, 10.0.0.1", 0, "10.0.0.1"), ("203.0.113.7, 10.0.0.1", 1, "203.0.113.7"),
    ("203.0.113.7", 1, "10.244.1.5"), ("bogus", 0, "10.244.1.5"), ("2001:db8::1", 0, "2001:db8::1"),
])
def test_remote_ip_follows_envoy(xff: str | None, hops: int, expected: str) -> None:
    assert remote_ip("10.244.1.5", xff, hops) == expected


def test_request_normalises_principal_namespace_and_headers() -> None:
    req = L7Request(source_principal="spiffe://td/ns/prod/sa/app", source_ip="::ffff:10.0.0.9",
                    headers={"X-A": "1"})
    assert req.source_principal == "td/ns/prod/sa/app" and req.headers == {"x-a": "1"}
    assert namespace_of("td/ns/prod/sa/app") == "prod" and namespace_of("weird") == ""
    pols = allow(src(namespaces=["prod"], ipBlocks=["10.0.0.0/8"]))
    assert pols.check(req).allowed  # namespace from the principal; IPv4-mapped source
    assert not pols.check(replace(req, source_principal="td/ns/dev/sa/app")).allowed
    assert L7Request(source_principal="").source_principal is None


@dataclass
class FakeHttp:
    method: str
    authority: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    def header_map(self) -> dict[str, str]:
        return dict(self.headers)


def test_l7_request_from_an_http_request() -> None:
    http = FakeHttp("POST", "reviews:9080", "/reviews/1/../2?debug=1",
                    {"x-forwarded-for": "203.0.113.7", "x-token": "t"})
    authn = Authenticated(PRINCIPAL, CLAIMS)
    req = l7_request(source_principal=CURL, source_ip="10.244.1.5", destination_ip="10.96.0.20",
                     destination_port=9080, host=REVIEWS, request=http, authn=authn)
    assert (req.method, req.host, req.path, req.target_host) == ("POST", "reviews:9080", "/reviews/2", REVIEWS)
    assert (req.remote_ip, req.source_namespace or "default", req.request_principal) == (
        "203.0.113.7", "default", PRINCIPAL)
    assert allow(src(remoteIpBlocks=["203.0.113.0/24"], requestPrincipals=["*"])).check(req).allowed
    failed = l7_request(source_principal=CURL, source_ip="10.244.1.5", destination_ip="10.96.0.20",
                        destination_port=9080, host=REVIEWS, request=None, authn=JwtFailure("Jwt is expired"))
    assert failed.request_principal is None and failed.method == ""


# --- RequestAuthentication -----------------------------------------------------------------------------


def ra(name: str = "jwt", **rule: Any) -> dict[str, Any]:
    return doc(name, {"jwtRules": [{"issuer": ISS, "jwks": jwks(), **rule}]}, kind="RequestAuthentication")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_tokens_are_validated_and_missing_tokens_pass() -> None:
    pols = compile_docs(ra())
    got = pols.authenticate(REVIEWS, bearer(sign(GOOD)), {}, now=NOW)
    assert isinstance(got, Authenticated) and got.principal == PRINCIPAL
    assert pols.authenticate(REVIEWS, {}, {}, now=NOW) is None
    assert compile_docs().authenticate(REVIEWS, bearer("garbage"), {}, now=NOW) is None  # no RequestAuthentication
    assert isinstance(pols.authenticate(REVIEWS, {}, {"access_token": sign(GOOD)}, now=NOW), Authenticated)
    preflight = {**bearer("garbage"), "origin": "https://app.example.com", "access-control-request-method": "POST"}
    assert pols.authenticate(REVIEWS, preflight, {}, now=NOW, method="OPTIONS") is None  # CORS preflight
    assert isinstance(pols.authenticate(REVIEWS, preflight, {}, now=NOW, method="POST"), JwtFailure)


@pytest.mark.parametrize(("claims", "reason", "status"), [
    ({**GOOD, "exp": NOW - 3600}, "Jwt is expired", 401),
    ({**GOOD, "iss": "someone-else"}, "Jwt issuer is not configured", 401),
    ({**GOOD, "aud": "nope"}, "Audiences in Jwt are not allowed", 403),
])
def test_bad_tokens_fail_as_envoy_answers(claims: dict[str, Any], reason: str, status: int) -> None:
    pols = compile_docs(ra(audiences=["bookinfo"]))
    token = sign({**claims, "aud": claims.get("aud", "bookinfo")})
    failure = pols.authenticate(REVIEWS, bearer(token), {}, now=NOW)
    assert isinstance(failure, JwtFailure)
    assert (failure.reason, failure.status, failure.body) == (reason, status, reason)
    assert failure.details == "jwt_authn_access_denied{" + reason.replace(" ", "_") + "}"
    realm = failure.www_authenticate("http", "reviews:9080", "/reviews/1")
    assert realm == 'Bearer realm="http://reviews:9080/reviews/1", error="invalid_token"'
    for text in (repr(failure), failure.details, failure.body, realm):
        assert token not in text and token.split(".")[2] not in text


def test_a_forged_signature_fails() -> None:
    head, _, sig = sign(GOOD).split(".")
    forged = f"{head}.{base64.urlsafe_b64encode(json.dumps({**GOOD, 'sub': 'admin'}).encode()).rstrip(b'=').decode()}.{sig}"
    failure = compile_docs(ra()).authenticate(REVIEWS, bearer(forged), {}, now=NOW)
    assert failure == JwtFailure("Jwt verification fails") and failure.status == 401


def test_token_locations_from_the_rule() -> None:
    pols = compile_docs(ra(fromHeaders=[{"name": "X-Jwt", "prefix": "Token "}], fromParams=["tok"],
                           fromCookies=["session"]))
    token = sign(GOOD)
    for headers, query in (({"x-jwt": f"Token {token}"}, {}), ({}, {"tok": token}),
                           ({"cookie": f"a=b; session={token}"}, {})):
        assert isinstance(pols.authenticate(REVIEWS, headers, query, now=NOW), Authenticated), (headers, query)
    assert pols.authenticate(REVIEWS, bearer(token), {}, now=NOW) is None  # not a location of this rule


def test_request_authentication_targets() -> None:
    pols = compile_docs(ra(), targets={"jwt": [REVIEWS]})
    assert isinstance(pols.authenticate(REVIEWS, bearer("bad"), {}, now=NOW), JwtFailure)
    assert pols.authenticate(RATINGS, bearer("bad"), {}, now=NOW) is None


def test_jwks_uri_is_fetched_by_the_waypoint() -> None:
    uri = "https://issuer.example.com/jwks.json"
    pols = compile_docs(doc("remote", {"jwtRules": [{"issuer": ISS, "jwksUri": uri}]}, kind="RequestAuthentication"))
    assert pols.jwks_uris == {uri} and any("not fetched yet" in p for p in pols.problems)
    failure = pols.authenticate(REVIEWS, bearer(sign(GOOD)), {}, now=NOW)
    assert failure == JwtFailure("Jwks doesn't have key to match kid or alg from Jwt")
    fetched = pols.with_jwks({uri: jwks()})
    assert fetched.problems == ()
    assert isinstance(fetched.authenticate(REVIEWS, bearer(sign(GOOD)), {}, now=NOW), Authenticated)
    assert isinstance(compile_docs(doc("remote", {"jwtRules": [{"issuer": ISS, "jwksUri": uri}]},
                                       kind="RequestAuthentication"), jwks_docs={uri: jwks()})
                      .authenticate(REVIEWS, bearer(sign(GOOD)), {}, now=NOW), Authenticated)
    broken = pols.with_jwks({uri: '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'})
    assert any("not supported" in p for p in broken.problems)


def test_header_changes_after_authentication() -> None:
    token = sign(GOOD)
    plain = compile_docs(ra())
    authn = plain.authenticate(REVIEWS, bearer(token), {}, now=NOW)
    assert isinstance(authn, Authenticated)
    assert plain.header_changes(REVIEWS, bearer(token), {}, authn).remove == ("authorization",)
    keep = compile_docs(ra(forwardOriginalToken=True, outputPayloadToHeader="x-jwt-payload",
                           outputClaimToHeaders=[{"header": "x-sub", "claim": "sub"},
                                                 {"header": "x-groups", "claim": "groups"}]))
    changes = keep.header_changes(REVIEWS, bearer(token), {}, authn)
    assert changes.remove == ()
    payload = dict(changes.set)["x-jwt-payload"]
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == GOOD
    assert dict(changes.set)["x-sub"] == "testing@secure.istio.io" and "x-groups" not in dict(changes.set)
    assert plain.header_changes(REVIEWS, {}, {"access_token": token}, authn).remove == ()  # params stay


def test_authentication_then_authorization_end_to_end() -> None:
    pols = compile_docs(
        ra(),
        doc("require-jwt", {"action": "DENY", "rules": [src(notRequestPrincipals=["*"])]}),
        doc("group1", {"action": "ALLOW", "rules": [when("request.auth.claims[groups]", ["group1"])]}),
    )
    http = FakeHttp("GET", "reviews:9080", "/reviews/1")

    def decide(headers: dict[str, str]) -> Verdict | JwtFailure:
        http.headers = headers
        authn = pols.authenticate(REVIEWS, headers, {}, now=NOW)
        if isinstance(authn, JwtFailure):
            return authn
        return pols.check(l7_request(source_principal=CURL, source_ip="10.244.1.5", destination_ip="10.96.0.20",
                                     destination_port=9080, host=REVIEWS, request=http, authn=authn))

    assert decide(bearer(sign(GOOD))) == Verdict(True, "default/group1", "allowed by ALLOW policy default/group1")
    no_token = decide({})
    assert isinstance(no_token, Verdict) and no_token.policy == "default/require-jwt"
    other_group = decide(bearer(sign({**GOOD, "groups": ["group9"]})))
    assert isinstance(other_group, Verdict) and other_group.details.endswith("[none]")
    assert decide(bearer(sign({**GOOD, "exp": NOW - 3600}))) == JwtFailure("Jwt is expired")
