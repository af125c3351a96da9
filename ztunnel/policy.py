"""Inbound L4 authorization: PeerAuthentication and AuthorizationPolicy, as Istio's ztunnel
enforces them at the destination. Pure: :func:`check` decides, the proxy carries it out.

Order (https://istio.io/latest/docs/reference/config/security/authorization-policy/, and
istio/ztunnel src/state.rs ``assert_rbac``):

1. STRICT PeerAuthentication mode for the destination port and a plaintext source: deny.
2. Any DENY policy that matches: deny.
3. No ALLOW policy applies: allow. Otherwise allow only if an ALLOW policy matches.

Policies that apply to a workload: GLOBAL ones (root namespace, no selector), NAMESPACE ones of
its namespace, and the WORKLOAD_SELECTOR ones it lists. Dry-run policies are never enforced;
AUDIT policies do not take part in the decision.

Matching (istio/ztunnel src/rbac.rs ``Authorization::matches``): a policy matches when any rule
does; a policy without rules matches nothing. A rule matches when all its clauses do (no clauses:
always); a clause when any of its entries does (no entries: always). An entry matches when every
non-empty field matches and no ``not_`` field does; an entry constraining nothing ztunnel can see
never matches. Principals are compared without ``spiffe://`` (AuthorizationPolicy writes
``td/ns/x/sa/y``), the source namespace comes from the principal. A plaintext source has no
principal: ``principals``/``namespaces`` never match it, ``notPrincipals``/``notNamespaces``
always do (rbac.rs tests ``not_principals``/``not_namespaces``: plaintext => true), so "deny
whatever is not from namespace x" also denies plaintext.

HTTP-only attributes (methods, paths, hosts, requestPrincipals, remoteIpBlocks, ``when`` keys
other than source.ip/namespace/principal and destination.ip/port) cannot be seen at L4. As in
istiod's ambient translation (pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go
``handleRule``): in an ALLOW policy a rule using any of them never matches ("rules matching HTTP
attributes are omitted", more restrictive than requested; a policy left with no usable rule still
counts as an ALLOW policy, so it denies everything else, as istio.io docs/ambient/usage/l4-policy
warns). In a DENY policy they are dropped and the rule is enforced on its L4 attributes alone
(more restrictive); an entry that had only HTTP attributes is left empty and, as in ztunnel,
never matches, so a DENY rule using only HTTP attributes has no effect at L4 (istio/istio#61126,
whose fix #61166 changed only istiod's status message). Use a waypoint for those.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from ztunnel.state import STRICT, Match, Policy, ProxyState, Rule, StringMatch, Workload

_SPIFFE = "spiffe://"
T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Connection:
    """An inbound connection to a workload ztunnel serves."""

    source_principal: str | None  # "spiffe://td/ns/x/sa/y" from the peer certificate; None: plaintext
    source_ip: str
    destination: Workload
    destination_ip: str
    destination_port: int  # the workload (target) port

    def __str__(self) -> str:
        who = self.source_principal or "plaintext"
        dest = self.destination
        return f"{self.source_ip}({who}) -> {dest.namespace}/{dest.name} {self.destination_ip}:{self.destination_port}"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str  # for the access log, e.g. "denied by DENY policy default/deny-ratings"
    policy: str = ""  # "namespace/name" of the deciding policy (several, comma-separated), or ""


def check(state: ProxyState, conn: Connection) -> Verdict:
    """Whether ``conn`` may reach its destination under ``state``."""
    dest = conn.destination
    if conn.source_principal is None and state.mtls_mode(dest, conn.destination_port) == STRICT:
        return Verdict(False, f"STRICT mTLS on port {conn.destination_port}: plaintext refused")
    peer = _Peer.of(conn)
    allow: list[Policy] = []
    for pol in state.policies_for(dest):
        if pol.dry_run or pol.action == "AUDIT":
            continue
        if pol.action == "DENY":
            if _policy_matches(pol, peer):
                return Verdict(False, f"denied by DENY policy {pol.key}", pol.key)
        else:
            allow.append(pol)
    if not allow:
        return Verdict(True, "no ALLOW policy applies")
    for pol in allow:
        if _policy_matches(pol, peer):
            return Verdict(True, f"allowed by ALLOW policy {pol.key}", pol.key)
    count = f"{len(allow)} ALLOW {'policy applies' if len(allow) == 1 else 'policies apply'}"
    return Verdict(False, f"no ALLOW policy matched ({count})", ",".join(p.key for p in allow))


def recheck(state: ProxyState, connections: Iterable[Connection]) -> list[tuple[Connection, Verdict]]:
    """After a config change: the open ``connections`` the new ``state`` no longer allows, with
    why. Each is checked against its destination workload as ``state`` has it now (its selecting
    policies and mTLS mode may have changed), or as it was if it is gone."""
    out = []
    for conn in connections:
        current = state.workloads.get(conn.destination.uid, conn.destination)
        verdict = check(state, replace(conn, destination=current))
        if not verdict.allowed:
            out.append((conn, verdict))
    return out


@dataclass(frozen=True, slots=True)
class _Peer:
    principal: str  # without "spiffe://"; "" when not authenticated
    namespace: str  # "" when not authenticated
    source: Address
    destination: Address
    port: int

    @classmethod
    def of(cls, conn: Connection) -> _Peer:
        principal = namespace = ""
        if conn.source_principal is not None and conn.source_principal.startswith(_SPIFFE):
            principal = conn.source_principal[len(_SPIFFE):]
            parts = principal.split("/")
            if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa":
                namespace = parts[2]
        return cls(principal, namespace, _address(conn.source_ip), _address(conn.destination_ip),
                   conn.destination_port)


def _address(text: str) -> Address:
    """An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as IPv4."""
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _policy_matches(pol: Policy, peer: _Peer) -> bool:
    return any(_rule_matches(rule, pol.action, peer) for rule in pol.rules)


def _rule_matches(rule: Rule, action: str, peer: _Peer) -> bool:
    if action == "ALLOW" and any(m.http for c in rule.clauses for m in c.matches):
        return False  # ztunnel cannot see HTTP: such an ALLOW rule never matches
    return all(not clause.matches or any(_entry_matches(m, peer) for m in clause.matches)
               for clause in rule.clauses)


def _entry_matches(m: Match, peer: _Peer) -> bool:
    if not m.has_l4:
        return False  # e.g. a DENY entry with only HTTP attributes: ztunnel skips it
    return (
        _field(m.principals, m.not_principals, lambda s: peer.principal != "" and _string(s, peer.principal))
        and _field(m.namespaces, m.not_namespaces, lambda s: peer.namespace != "" and _string(s, peer.namespace))
        and _field(m.source_ips, m.not_source_ips, lambda n: peer.source in n)
        and _field(m.destination_ips, m.not_destination_ips, lambda n: peer.destination in n)
        and _field(m.destination_ports, m.not_destination_ports, lambda p: p == peer.port)
    )


def _field(positive: tuple[T, ...], negative: tuple[T, ...], hit: Callable[[T], bool]) -> bool:
    return (not positive or any(hit(v) for v in positive)) and not any(hit(v) for v in negative)


def _string(sm: StringMatch, value: str) -> bool:
    if sm.kind == "exact":
        return value == sm.value
    if sm.kind == "prefix":
        return value.startswith(sm.value)
    if sm.kind == "suffix":
        return value.endswith(sm.value)
    return value != ""  # presence
