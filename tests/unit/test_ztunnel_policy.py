"""ztunnel's L4 authorization (``ztunnel.policy``) with Istio's semantics, the conversion of
pushed policies and workloads (``ztunnel.state``), and AuthorizationPolicy YAML through the
control plane into a decision."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

import pytest

from controlplane.api import mesh_pb2 as pb
from controlplane.index import Index
from controlplane.store import ConfigStore, ReportedPod
from controlplane.translate import convert
from ztunnel.policy import Connection, Verdict, check, recheck
from ztunnel.state import (
    Clause,
    Match,
    Policy,
    ProxyState,
    Rule,
    Service,
    ServicePort,
    StateError,
    StringMatch,
    Waypoint,
    Workload,
    from_resources,
)

CURL = "spiffe://cluster.local/ns/default/sa/curl"
FOO = "spiffe://cluster.local/ns/foo/sa/client"
DEST = Workload(uid="w1", name="web-1", namespace="default", node="node1", service_account="web",
                trust_domain="cluster.local", addresses=("10.244.1.5",), enrolled=True, healthy=True,
                authorization_policies=("default/selected",))


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def exact(v: str) -> StringMatch:
    return StringMatch("exact", v)


ANY = StringMatch("presence")


def rule(*clauses: tuple[Match, ...]) -> Rule:
    return Rule(tuple(Clause(c) for c in clauses))


def policy(action: str, *rules: Rule, name: str = "p", namespace: str = "default", scope: str = "NAMESPACE",
           dry_run: bool = False) -> Policy:
    return Policy(name=name, namespace=namespace, scope=scope, action=action, rules=rules, dry_run=dry_run)


def decide(*policies: Policy, principal: str | None = CURL, src: str = "10.244.2.7", port: int = 8080,
           dest: Workload = DEST, dst: str = "10.244.1.5") -> Verdict:
    state = ProxyState.build(1, {dest.uid: dest}, (), {}, {p.key: p for p in policies})
    return check(state, Connection(principal, src, dest, dst, port))


FROM_CURL = rule((Match(principals=(exact("cluster.local/ns/default/sa/curl"),)),))


# --- the order of the decision ------------------------------------------------------------------


def test_no_policy_allows() -> None:
    assert decide() == Verdict(True, "no ALLOW policy applies")
    assert decide(principal=None).allowed


@pytest.mark.parametrize(("mode", "ports", "principal", "port", "allowed"), [
    ("STRICT", {}, None, 8080, False),
    ("STRICT", {}, CURL, 8080, True),
    ("PERMISSIVE", {}, None, 8080, True),
    ("STRICT", {8080: "PERMISSIVE"}, None, 8080, True),   # the port override wins ...
    ("STRICT", {8080: "PERMISSIVE"}, None, 9090, False),  # ... only for its port
    ("PERMISSIVE", {9090: "STRICT"}, None, 9090, False),
    ("PERMISSIVE", {9090: "STRICT"}, None, 8080, True),
])
def test_peer_authentication_refuses_plaintext_under_strict(
    mode: str, ports: dict[int, str], principal: str | None, port: int, allowed: bool,
) -> None:
    dest = replace(DEST, mtls_mode=mode, port_mtls=ports)
    verdict = decide(principal=principal, port=port, dest=dest)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict == Verdict(False, f"STRICT mTLS on port {port}: plaintext refused")


def test_strict_is_checked_before_policies() -> None:
    allow_all = policy("ALLOW", Rule())
    assert not decide(allow_all, principal=None, dest=replace(DEST, mtls_mode="STRICT")).allowed


def test_a_matching_deny_policy_denies_and_names_itself() -> None:
    assert decide(policy("DENY", FROM_CURL, name="deny-curl")) == Verdict(
        False, "denied by DENY policy default/deny-curl", "default/deny-curl")
    assert decide(policy("DENY", FROM_CURL), principal=FOO).allowed


def test_deny_wins_over_a_matching_allow() -> None:
    verdict = decide(policy("ALLOW", FROM_CURL, name="allow"), policy("DENY", FROM_CURL, name="deny"))
    assert verdict.policy == "default/deny" and not verdict.allowed


def test_allow_policies_allow_only_what_one_of_them_matches() -> None:
    allow_curl = policy("ALLOW", FROM_CURL, name="allow-curl")
    allow_foo = policy("ALLOW", rule((Match(namespaces=(exact("foo"),)),)), name="allow-foo")
    assert decide(allow_curl) == Verdict(True, "allowed by ALLOW policy default/allow-curl", "default/allow-curl")
    assert decide(allow_curl, principal=FOO) == Verdict(
        False, "no ALLOW policy matched (1 ALLOW policy applies)", "default/allow-curl")
    assert decide(allow_curl, allow_foo, principal=FOO).policy == "default/allow-foo"
    denied = decide(allow_curl, allow_foo, principal="spiffe://cluster.local/ns/bar/sa/x")
    assert denied == Verdict(False, "no ALLOW policy matched (2 ALLOW policies apply)",
                             "default/allow-curl,default/allow-foo")


def test_an_allow_policy_without_rules_denies_everything() -> None:
    assert not decide(policy("ALLOW")).allowed


def test_an_empty_rule_matches_everything_even_plaintext() -> None:
    assert decide(policy("ALLOW", Rule()), principal=None).allowed
    assert decide(policy("ALLOW", rule(())), principal=None).allowed  # a clause without entries


def test_dry_run_policies_are_not_enforced() -> None:
    assert decide(policy("DENY", FROM_CURL, dry_run=True)).allowed
    # a dry-run ALLOW does not make the workload deny-by-default either
    assert decide(policy("ALLOW", FROM_CURL, dry_run=True), principal=FOO).allowed


def test_audit_policies_take_no_part() -> None:
    assert decide(policy("AUDIT", FROM_CURL)).allowed
    assert decide(policy("AUDIT", FROM_CURL), principal=FOO) == Verdict(True, "no ALLOW policy applies")


# --- which policies apply -------------------------------------------------------------------------


def test_global_namespace_and_selected_policies_apply() -> None:
    mesh = policy("DENY", FROM_CURL, name="mesh", namespace="istio-system", scope="GLOBAL")
    assert decide(mesh).policy == "istio-system/mesh"
    other_ns = policy("DENY", FROM_CURL, name="x", namespace="other", scope="NAMESPACE")
    assert decide(other_ns).allowed
    selected = policy("DENY", FROM_CURL, name="selected", scope="WORKLOAD_SELECTOR")
    assert decide(selected).policy == "default/selected"
    not_selected = policy("DENY", FROM_CURL, name="not-selected", scope="WORKLOAD_SELECTOR")
    assert decide(not_selected).allowed


def test_a_listed_policy_missing_from_the_snapshot_is_skipped() -> None:
    dest = replace(DEST, authorization_policies=("default/gone", "default/selected"))
    selected = policy("ALLOW", FROM_CURL, name="selected", scope="WORKLOAD_SELECTOR")
    assert decide(selected, dest=dest).allowed
    state = ProxyState.build(1, {dest.uid: dest}, (), {}, {selected.key: selected})
    assert state.policies_for(dest) == (selected,)


# --- matching ---------------------------------------------------------------------------------------


def allowed_by(m: Match, principal: str | None = CURL, src: str = "10.244.2.7", port: int = 8080,
               dst: str = "10.244.1.5") -> bool:
    return decide(policy("ALLOW", rule((m,))), principal=principal, src=src, port=port, dst=dst).allowed


@pytest.mark.parametrize(("match", "principal", "expected"), [
    (StringMatch("exact", "cluster.local/ns/default/sa/curl"), CURL, True),
    (StringMatch("exact", "cluster.local/ns/default/sa/curl"), FOO, False),
    (StringMatch("exact", "spiffe://cluster.local/ns/default/sa/curl"), CURL, False),  # Istio's form has no scheme
    (StringMatch("exact", "cluster.local/ns/default/sa/curl"), "spiffe://other.td/ns/default/sa/curl", False),
    (StringMatch("prefix", "cluster.local/ns/foo/"), FOO, True),
    (StringMatch("prefix", "cluster.local/ns/foo/"), CURL, False),
    (StringMatch("suffix", "/sa/curl"), CURL, True),
    (StringMatch("suffix", "/sa/curl"), FOO, False),
    (ANY, CURL, True),
    (ANY, None, False),  # plaintext has no principal
    (StringMatch("exact", ""), None, False),
    (StringMatch("prefix", ""), None, False),
])
def test_principals(match: StringMatch, principal: str | None, expected: bool) -> None:
    assert allowed_by(Match(principals=(match,)), principal=principal) is expected


@pytest.mark.parametrize(("match", "principal", "expected"), [
    (exact("foo"), FOO, True),
    (exact("foo"), CURL, False),
    (StringMatch("prefix", "fo"), FOO, True),
    (StringMatch("suffix", "oo"), FOO, True),
    (ANY, CURL, True),
    (exact("foo"), None, False),  # plaintext has no namespace
    (ANY, None, False),
    (StringMatch("prefix", ""), None, False),
    (exact("foo"), "spiffe://cluster.local/foo", False),  # not a workload identity: no namespace
])
def test_namespaces_come_from_the_principal(match: StringMatch, principal: str | None, expected: bool) -> None:
    assert allowed_by(Match(namespaces=(match,)), principal=principal) is expected


@pytest.mark.parametrize(("m", "principal", "denied"), [
    # notPrincipals/notNamespaces are satisfied by plaintext (ztunnel's rbac.rs tests)
    (Match(not_principals=(ANY,)), None, True),
    (Match(not_principals=(ANY,)), CURL, False),
    (Match(not_principals=(exact("cluster.local/ns/default/sa/curl"),)), FOO, True),
    (Match(not_principals=(exact("cluster.local/ns/default/sa/curl"),)), CURL, False),
    (Match(not_namespaces=(exact("default"),)), None, True),
    (Match(not_namespaces=(exact("default"),)), FOO, True),
    (Match(not_namespaces=(exact("default"),)), CURL, False),
])
def test_negative_identity_matches(m: Match, principal: str | None, denied: bool) -> None:
    assert decide(policy("DENY", rule((m,))), principal=principal).allowed is not denied


@pytest.mark.parametrize(("m", "src", "dst", "port", "expected"), [
    (Match(source_ips=(net("10.244.2.0/24"),)), "10.244.2.7", "10.244.1.5", 8080, True),
    (Match(source_ips=(net("10.244.2.0/24"),)), "10.244.3.7", "10.244.1.5", 8080, False),
    (Match(source_ips=(net("10.244.2.0/24"),)), "::ffff:10.244.2.7", "10.244.1.5", 8080, True),
    (Match(source_ips=(net("fd00::/8"),)), "10.244.2.7", "10.244.1.5", 8080, False),
    (Match(not_source_ips=(net("10.244.2.7/32"),)), "10.244.2.7", "10.244.1.5", 8080, False),
    (Match(not_source_ips=(net("10.244.2.7/32"),)), "10.244.2.8", "10.244.1.5", 8080, True),
    (Match(destination_ips=(net("10.244.1.5/32"),)), "10.244.2.7", "10.244.1.5", 8080, True),
    (Match(destination_ips=(net("10.244.1.5/32"),)), "10.244.2.7", "10.244.1.6", 8080, False),
    (Match(not_destination_ips=(net("10.244.1.0/24"),)), "10.244.2.7", "10.244.1.5", 8080, False),
    (Match(destination_ports=(8080, 9090)), "10.244.2.7", "10.244.1.5", 9090, True),
    (Match(destination_ports=(8080,)), "10.244.2.7", "10.244.1.5", 9090, False),
    (Match(not_destination_ports=(8080,)), "10.244.2.7", "10.244.1.5", 8080, False),
    (Match(not_destination_ports=(8080,)), "10.244.2.7", "10.244.1.5", 9090, True),
    # the fields of one entry are AND-ed, a positive and a negative of one field too
    (Match(principals=(ANY,), source_ips=(net("10.0.0.0/8"),)), "10.244.2.7", "10.244.1.5", 8080, True),
    (Match(principals=(ANY,), source_ips=(net("192.168.0.0/16"),)), "10.244.2.7", "10.244.1.5", 8080, False),
    (Match(source_ips=(net("10.0.0.0/8"),), not_source_ips=(net("10.244.2.0/24"),)),
     "10.244.2.7", "10.244.1.5", 8080, False),
])
def test_addresses_and_ports(m: Match, src: str, dst: str, port: int, expected: bool) -> None:
    assert allowed_by(m, src=src, dst=dst, port=port) is expected


def test_clauses_are_and_ed_entries_or_ed_rules_or_ed() -> None:
    from_curl = Match(principals=(exact("cluster.local/ns/default/sa/curl"),))
    from_foo = Match(namespaces=(exact("foo"),))
    to_8080 = Match(destination_ports=(8080,))
    both = policy("ALLOW", rule((from_curl, from_foo), (to_8080,)))
    assert decide(both).allowed and decide(both, principal=FOO).allowed
    assert not decide(both, port=9090).allowed
    either = policy("ALLOW", rule((from_curl,)), rule((to_8080,)))
    assert decide(either, principal=FOO).allowed          # second rule
    assert decide(either, port=9090).allowed              # first rule
    assert not decide(either, principal=FOO, port=9090).allowed


# --- HTTP-only attributes ---------------------------------------------------------------------------

GET = Match(http=("methods",))


def test_an_allow_rule_using_http_attributes_never_matches() -> None:
    with_method = policy("ALLOW", rule((Match(principals=(ANY,), http=("methods",)),)))
    assert not decide(with_method).allowed
    in_another_clause = policy("ALLOW", rule((Match(principals=(ANY,)),), (GET,)))
    assert not decide(in_another_clause).allowed
    when_header = policy("ALLOW", rule((Match(principals=(ANY,)),), (Match(http=("when request.headers[x]",)),)))
    assert not decide(when_header).allowed
    # the policy's other rules still count
    assert decide(policy("ALLOW", rule((GET,)), FROM_CURL)).allowed


def test_a_deny_rule_is_enforced_on_its_l4_attributes_only() -> None:
    port_and_method = policy("DENY", rule((Match(destination_ports=(8080,), http=("methods",)),)))
    assert not decide(port_and_method).allowed  # any method on 8080: more restrictive than asked
    assert decide(port_and_method, port=9090).allowed


@pytest.mark.parametrize("deny", [
    policy("DENY", rule((GET,))),
    policy("DENY", rule((Match(principals=(ANY,)),), (GET,))),
    policy("DENY", rule((Match(source_ips=(net("0.0.0.0/0"),)),), (Match(http=("when request.headers[x]",)),))),
], ids=["methods only", "principal and methods", "source.ip and a header condition"])
def test_a_deny_entry_with_only_http_attributes_never_matches(deny: Policy) -> None:
    # istiod leaves such an entry empty and ztunnel skips empty entries (istio/istio#61126)
    assert decide(deny).allowed


# --- re-checking open connections -------------------------------------------------------------------


def test_recheck_returns_the_connections_a_new_state_denies() -> None:
    before = ProxyState.build(1, {DEST.uid: DEST}, (), {})
    curl = Connection(CURL, "10.244.2.7", DEST, "10.244.1.5", 8080)
    foo = Connection(FOO, "10.244.2.8", DEST, "10.244.1.5", 8080)
    plain = Connection(None, "10.244.2.9", DEST, "10.244.1.5", 8080)
    assert all(check(before, c).allowed for c in (curl, foo, plain))
    # a new selector policy arrives with the workload now listing it, and STRICT mTLS
    deny = policy("DENY", FROM_CURL, name="new", scope="WORKLOAD_SELECTOR")
    now = replace(DEST, authorization_policies=("default/new",), mtls_mode="STRICT")
    after = ProxyState.build(2, {now.uid: now}, (), {}, {deny.key: deny})
    assert recheck(after, [curl, foo, plain]) == [
        (curl, Verdict(False, "denied by DENY policy default/new", "default/new")),
        (plain, Verdict(False, "STRICT mTLS on port 8080: plaintext refused")),
    ]
    gone = ProxyState.build(3, {}, (), {}, {deny.key: deny})  # the workload left: checked as it was
    assert recheck(gone, [curl, foo]) == []


# --- conversion of pushed resources ---------------------------------------------------------------


def resource(name: str, **kind: object) -> pb.Resource:
    return pb.Resource(name=name, **kind)  # type: ignore[arg-type]


def gateway(address: bytes = bytes([10, 96, 0, 20]), port: int = 15008) -> pb.GatewayAddress:
    return pb.GatewayAddress(hostname="waypoint.default.svc.cluster.local", namespace="default",
                             address=address, hbone_port=port)


def test_workloads_carry_labels_policies_waypoint_and_mtls() -> None:
    w = pb.Workload(uid="u1", name="web-1", namespace="default", addresses=[bytes([10, 244, 1, 5])],
                    labels={"app": "web"}, authorization_policies=["default/a"], waypoint=gateway(),
                    mtls_mode=pb.MTLS_STRICT, port_mtls={8080: pb.MTLS_PERMISSIVE})
    state = from_resources(1, {"workload/u1": resource("workload/u1", address=pb.Address(workload=w))})
    got = state.workloads["u1"]
    assert (got.labels, got.authorization_policies) == ({"app": "web"}, ("default/a",))
    assert got.waypoint == Waypoint("10.96.0.20", 15008, "waypoint.default.svc.cluster.local", "default")
    assert (got.mtls_mode, dict(got.port_mtls)) == ("STRICT", {8080: "PERMISSIVE"})
    assert (state.mtls_mode(got, 8080), state.mtls_mode(got, 9080)) == ("PERMISSIVE", "STRICT")
    plain = pb.Workload(uid="u2", namespace="default")
    state = from_resources(1, {"workload/u2": resource("workload/u2", address=pb.Address(workload=plain))})
    assert (state.workloads["u2"].mtls_mode, state.workloads["u2"].waypoint) == ("PERMISSIVE", None)


def test_services_carry_ports_and_waypoint() -> None:
    svc = pb.Service(name="web", namespace="default", hostname="web.default.svc.cluster.local",
                     addresses=[bytes([10, 96, 0, 9])], waypoint=gateway(address=b"", port=0),
                     ports=[pb.ServicePort(service_port=80, target_port=8080, name="http", app_protocol="http"),
                            pb.ServicePort(service_port=443, target_port_name="https")])
    state = from_resources(1, {"service/x": resource("service/x", address=pb.Address(service=svc))})
    got = state.services["10.96.0.9"]
    assert got.ports == (ServicePort(80, 8080, "", "http", "http"), ServicePort(443, 0, "https"))
    assert got.waypoint == Waypoint("", 15008, "waypoint.default.svc.cluster.local", "default")
    assert isinstance(got, Service)


def test_authorizations_are_converted() -> None:
    a = pb.Authorization(name="p", namespace="default", scope=pb.WORKLOAD_SELECTOR, action=pb.DENY, dry_run=True, rules=[
        pb.Rule(clauses=[pb.Clause(matches=[pb.Match(
            principals=[pb.StringMatch(exact="td/ns/a/sa/b"), pb.StringMatch(presence=pb.Empty())],
            not_namespaces=[pb.StringMatch(prefix="kube-"), pb.StringMatch(suffix="-test")],
            source_ips=[pb.Cidr(address=bytes([10, 1, 2, 3]), length=8)],
            destination_ips=[pb.Cidr(address=bytes(16), length=0)],
            destination_ports=[8080], not_destination_ports=[0],
            methods=[pb.StringMatch(exact="GET")], remote_ips=[pb.Cidr(address=bytes(4), length=0)],
            conditions=[pb.Condition(key="request.headers[x]", values=["1"])],
        )])]),
        pb.Rule(),
    ])
    state = from_resources(1, {"authz/default/p": resource("authz/default/p", authorization=a)})
    pol = state.authorizations["default/p"]
    assert (pol.scope, pol.action, pol.dry_run, len(pol.rules)) == ("WORKLOAD_SELECTOR", "DENY", True, 2)
    m = pol.rules[0].clauses[0].matches[0]
    assert m.principals == (exact("td/ns/a/sa/b"), ANY)
    assert [str(s) for s in m.not_namespaces] == ["kube-*", "*-test"]
    assert (m.source_ips, m.destination_ips) == ((net("10.0.0.0/8"),), (net("::/0"),))
    assert (m.destination_ports, m.not_destination_ports) == ((8080,), (0,))
    assert m.http == ("methods", "remoteIpBlocks", "when request.headers[x]")
    assert pol.rules[0].http == m.http and pol.rules[1] == Rule()


def test_policies_are_indexed_by_scope() -> None:
    mesh = policy("DENY", name="m", namespace="istio-system", scope="GLOBAL")
    ns = policy("DENY", name="n", scope="NAMESPACE")
    other = policy("DENY", name="o", namespace="other", scope="NAMESPACE")
    sel = policy("DENY", name="selected", scope="WORKLOAD_SELECTOR")
    state = ProxyState(1, {DEST.uid: DEST}, (), authorizations={p.key: p for p in (mesh, ns, other, sel)})
    assert state.policies_for(DEST) == (mesh, ns, sel)
    assert state.by_ip["10.244.1.5"] is DEST


def authz(**match: object) -> dict[str, pb.Resource]:
    a = pb.Authorization(name="bad", namespace="default", rules=[
        pb.Rule(clauses=[pb.Clause(matches=[pb.Match(**match)])])])  # type: ignore[arg-type]
    return {"authz/default/bad": resource("authz/default/bad", authorization=a)}


@pytest.mark.parametrize(("resources", "message"), [
    (authz(source_ips=[pb.Cidr(address=bytes(5), length=8)]),
     "authz/default/bad: rules[0].clauses[0].matches[0].source_ips[0]: bad CIDR: address has 5 bytes, want 4 or 16"),
    (authz(not_destination_ips=[pb.Cidr(address=bytes(4), length=33)]),
     "authz/default/bad: rules[0].clauses[0].matches[0].not_destination_ips[0]: bad CIDR: 0.0.0.0/33"),
    (authz(principals=[pb.StringMatch()]),
     "authz/default/bad: rules[0].clauses[0].matches[0].principals[0]: no exact, prefix, suffix or presence"),
    (authz(destination_ports=[70000]),
     "authz/default/bad: rules[0].clauses[0].matches[0].destination_ports[0]: 70000 is not a port (0-65535)"),
    ({"authz/x": resource("authz/x", authorization=pb.Authorization(name="x", namespace="d", scope=7))},  # type: ignore[arg-type]
     "authz/x: unknown scope 7"),
    ({"authz/x": resource("authz/x", authorization=pb.Authorization(name="x", namespace="d", action=9))},  # type: ignore[arg-type]
     "authz/x: unknown action 9"),
    ({"authz/x": resource("authz/x", authorization=pb.Authorization(name="x"))},
     "authz/x: an authorization policy needs name and namespace"),
    ({"workload/u": resource("workload/u", address=pb.Address(workload=pb.Workload(
        uid="u", namespace="d", mtls_mode=5)))}, "workload/u: mtls_mode: unknown mTLS mode 5"),  # type: ignore[arg-type]
    ({"workload/u": resource("workload/u", address=pb.Address(workload=pb.Workload(
        uid="u", namespace="d", port_mtls={0: pb.MTLS_STRICT})))}, "workload/u: port_mtls: 0 is not a port (1-65535)"),
    ({"workload/u": resource("workload/u", address=pb.Address(workload=pb.Workload(
        uid="u", namespace="d", waypoint=gateway(address=bytes(3)))))}, "workload/u: bad waypoint address"),
])
def test_unusable_resources_raise_state_error_naming_them(resources: dict[str, pb.Resource], message: str) -> None:
    with pytest.raises(StateError, match=re.escape(message)):
        from_resources(1, resources)


# --- AuthorizationPolicy YAML through the control plane into a decision -----------------------------

NAMESPACES = """
apiVersion: v1
kind: Namespace
metadata: {name: foo}
"""


def ztunnel_state(*documents: str, labels: dict[str, str] | None = None) -> ProxyState:
    store = ConfigStore()
    for text in (NAMESPACES, *documents):
        results = store.apply_text(text, "test.yaml")
        assert not [r for r in results if r.error], results
    pod = ReportedPod(uid="web-uid", namespace="default", name="web-1", node="node1", ip="10.244.1.5",
                      labels=labels if labels is not None else {"app": "web"}, annotations={},
                      service_account="web", owner="web", ready=True, phase="Running", ports=(), reporter="lab")
    store.report_pods("lab", [pod], [], full=True)
    view = Index(converters=[convert]).build(store.snapshot()).views["ztunnel"]
    return from_resources(1, {name: pb.Resource.FromString(data) for name, data in view.items()})


def yaml_decide(state: ProxyState, principal: str | None = CURL, src: str = "10.244.2.7", port: int = 8080) -> Verdict:
    return check(state, Connection(principal, src, state.workloads["web-uid"], "10.244.1.5", port))


def ap(namespace: str, spec: str, name: str = "p") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def test_service_accounts_match_namespace_and_name_in_any_trust_domain() -> None:
    state = ztunnel_state(ap("default", "{selector: {matchLabels: {app: web}}, rules: [{from: [{source: "
                                        "{serviceAccounts: [curl, foo/client]}}]}]}"))
    assert yaml_decide(state).allowed
    assert yaml_decide(state, principal=FOO).allowed
    assert yaml_decide(state, principal="spiffe://other.td/ns/default/sa/curl").allowed
    assert not yaml_decide(state, principal="spiffe://cluster.local/ns/foo/sa/curl").allowed
    assert not yaml_decide(state, principal="spiffe://cluster.local/ns/default/sa/xcurl").allowed
    assert not yaml_decide(state, principal=None).allowed


def test_not_service_accounts_exclude() -> None:
    state = ztunnel_state(ap("default", "{action: DENY, rules: [{from: [{source: {notServiceAccounts: [curl]}}]}]}"))
    assert yaml_decide(state).allowed
    assert not yaml_decide(state, principal=FOO).allowed


def test_remote_ip_blocks_are_http_only() -> None:
    allow = ztunnel_state(ap("default", "{rules: [{from: [{source: {remoteIpBlocks: [10.0.0.0/8]}}]}]}"))
    assert not yaml_decide(allow).allowed  # the rule is omitted; the ALLOW policy still applies
    when = ztunnel_state(ap("default", "{rules: [{when: [{key: remote.ip, values: [10.0.0.0/8]}]}]}"))
    assert not yaml_decide(when).allowed
    source_ip = ztunnel_state(ap("default", "{rules: [{when: [{key: source.ip, values: [10.0.0.0/8]}]}]}"))
    assert yaml_decide(source_ip).allowed


@pytest.mark.parametrize(("spec", "port", "allowed"), [
    ("{action: DENY, rules: [{to: [{operation: {ports: ['8080'], methods: [GET]}}]}]}", 8080, False),
    ("{action: DENY, rules: [{to: [{operation: {ports: ['8080'], methods: [GET]}}]}]}", 9090, True),
    ("{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}", 8080, True),
    ("{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ['*']}}]}]}", 8080, True),
    ("{rules: [{to: [{operation: {ports: ['8080'], methods: [GET]}}]}]}", 8080, False),
    ("{rules: [{to: [{operation: {ports: ['8080']}}]}]}", 8080, True),
    ("{rules: [{}]}", 8080, True),
    ("{}", 8080, False),
], ids=["deny l4+l7", "deny l4+l7 other port", "deny l7 only", "deny notRequestPrincipals",
        "allow l4+l7", "allow l4", "allow all", "allow nothing"])
def test_yaml_policies_with_http_attributes(spec: str, port: int, allowed: bool) -> None:
    assert yaml_decide(ztunnel_state(ap("default", spec)), port=port).allowed is allowed


def test_mesh_wide_and_selector_policies_from_yaml() -> None:
    mesh = ap("istio-system", "{action: DENY, rules: [{from: [{source: {namespaces: [foo]}}]}]}", name="mesh")
    assert yaml_decide(ztunnel_state(mesh), principal=FOO).policy == "istio-system/mesh"
    other = ap("default", "{selector: {matchLabels: {app: other}}, action: DENY, rules: [{}]}")
    assert yaml_decide(ztunnel_state(other)).allowed
    target_ref = ap("default", "{targetRefs: [{kind: Service, group: '', name: web}], rules: [{}]}")
    state = ztunnel_state(target_ref)
    assert state.workloads["web-uid"].authorization_policies == () and state.authorizations == {}


def test_strict_peer_authentication_from_yaml_refuses_plaintext() -> None:
    state = ztunnel_state("""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
""")
    assert yaml_decide(state, principal=None) == Verdict(False, "STRICT mTLS on port 8080: plaintext refused")
    assert yaml_decide(state).allowed
