"""The config ztunnel follows, converted once from the control plane's protobuf resources into
ztunnel's own immutable types (generated classes never go further than this module): workloads
(with their effective PeerAuthentication mode), services, waypoints and authorization policies.

Raises :class:`StateError` for a resource ztunnel cannot use (the push is then NACKed and the
last good state kept).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from controlplane.api import mesh_pb2 as pb

HBONE_PORT: Final = 15008
STRICT: Final = "STRICT"
PERMISSIVE: Final = "PERMISSIVE"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class StateError(ValueError):
    """A pushed resource is unusable; the message names it and why."""


@dataclass(frozen=True, slots=True)
class Waypoint:
    """The waypoint a workload's or a service's traffic goes through."""

    address: str  # the waypoint's VIP; "" while its Service has none
    port: int = HBONE_PORT
    hostname: str = ""  # e.g. waypoint.default.svc.cluster.local
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class Workload:
    uid: str
    name: str
    namespace: str
    node: str
    service_account: str
    trust_domain: str
    addresses: tuple[str, ...]
    enrolled: bool  # HBONE: in the mesh
    healthy: bool
    # "namespace/hostname" of each service selecting it -> {service port: target port}
    services: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # "namespace/name" of the WORKLOAD_SELECTOR authorization policies selecting it
    authorization_policies: tuple[str, ...] = ()
    waypoint: Waypoint | None = None
    mtls_mode: str = PERMISSIVE  # effective PeerAuthentication mode: STRICT or PERMISSIVE
    port_mtls: Mapping[int, str] = field(default_factory=dict)  # workload port -> mode, where it differs

    @property
    def identity(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    target_port: int  # 0 when the target port is named
    target_port_name: str = ""
    name: str = ""
    app_protocol: str = ""


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    hostname: str
    vips: tuple[str, ...]
    ports: tuple[ServicePort, ...] = ()
    waypoint: Waypoint | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.hostname}"


# --- authorization policies ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringMatch:
    kind: str  # "exact" | "prefix" | "suffix" | "presence"
    value: str = ""

    def __str__(self) -> str:
        """In AuthorizationPolicy syntax: ``x``, ``x*``, ``*x`` or ``*``."""
        return {"exact": self.value, "prefix": f"{self.value}*", "suffix": f"*{self.value}"}.get(self.kind, "*")


@dataclass(frozen=True, slots=True)
class Match:
    """Every non-empty field must match, every non-empty ``not_`` field must not. ``http``
    names the HTTP-only attributes of the entry, which ztunnel cannot evaluate."""

    namespaces: tuple[StringMatch, ...] = ()
    not_namespaces: tuple[StringMatch, ...] = ()
    principals: tuple[StringMatch, ...] = ()
    not_principals: tuple[StringMatch, ...] = ()
    source_ips: tuple[Network, ...] = ()
    not_source_ips: tuple[Network, ...] = ()
    destination_ips: tuple[Network, ...] = ()
    not_destination_ips: tuple[Network, ...] = ()
    destination_ports: tuple[int, ...] = ()
    not_destination_ports: tuple[int, ...] = ()
    http: tuple[str, ...] = ()

    @property
    def has_l4(self) -> bool:
        """Whether it constrains anything ztunnel can see."""
        return any((self.namespaces, self.not_namespaces, self.principals, self.not_principals,
                    self.source_ips, self.not_source_ips, self.destination_ips, self.not_destination_ips,
                    self.destination_ports, self.not_destination_ports))


@dataclass(frozen=True, slots=True)
class Clause:
    matches: tuple[Match, ...] = ()  # any; none: matches everything


@dataclass(frozen=True, slots=True)
class Rule:
    clauses: tuple[Clause, ...] = ()  # all; none: matches everything

    @property
    def http(self) -> tuple[str, ...]:
        """The HTTP-only attributes used anywhere in the rule."""
        return tuple(dict.fromkeys(a for c in self.clauses for m in c.matches for a in m.http))


@dataclass(frozen=True, slots=True)
class Policy:
    """An AuthorizationPolicy as ztunnel sees it. ``scope``: GLOBAL (root namespace, every
    workload), NAMESPACE or WORKLOAD_SELECTOR; ``action``: ALLOW, DENY or AUDIT."""

    name: str
    namespace: str
    scope: str
    action: str
    rules: tuple[Rule, ...] = ()  # any; none: matches nothing
    dry_run: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# --- the snapshot ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProxyState:
    """One config version. The address and policy indexes are built once on construction (the
    data path looks up per connection)."""

    version: int
    workloads: Mapping[str, Workload]
    trust_roots: tuple[bytes, ...]
    services: Mapping[str, Service] = field(default_factory=dict)  # by VIP
    by_ip: Mapping[str, Workload] = field(default_factory=dict)  # every workload address
    authorizations: Mapping[str, Policy] = field(default_factory=dict)  # by "namespace/name"
    # GLOBAL policy keys under "", NAMESPACE policy keys under their namespace
    policies_by_namespace: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # service key -> the workloads selecting it, by uid (endpoint lookups are per connection)
    members: Mapping[str, tuple[Workload, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.by_ip and self.workloads:
            object.__setattr__(self, "by_ip", {ip: w for w in self.workloads.values() for ip in w.addresses})
        if not self.members and self.workloads:
            members: dict[str, list[Workload]] = {}
            for w in sorted(self.workloads.values(), key=lambda w: w.uid):
                for key in w.services:
                    members.setdefault(key, []).append(w)
            object.__setattr__(self, "members", {key: tuple(ws) for key, ws in members.items()})
        if not self.policies_by_namespace and self.authorizations:
            index: dict[str, list[str]] = {}
            for key in sorted(self.authorizations):
                pol = self.authorizations[key]
                if pol.scope == "GLOBAL":
                    index.setdefault("", []).append(key)
                elif pol.scope == "NAMESPACE":
                    index.setdefault(pol.namespace, []).append(key)
            object.__setattr__(self, "policies_by_namespace", {ns: tuple(keys) for ns, keys in index.items()})

    @classmethod
    def build(cls, version: int, workloads: Mapping[str, Workload], trust_roots: tuple[bytes, ...],
              services: Mapping[str, Service], authorizations: Mapping[str, Policy] | None = None) -> ProxyState:
        """A snapshot with its indexes built."""
        return cls(version, workloads, trust_roots, services, authorizations=authorizations or {})

    def endpoints(self, service: Service, port: int) -> list[tuple[Workload, int]]:
        """Healthy workloads behind ``service`` with the target port for ``port``."""
        out = []
        for w in self.members.get(service.key, ()):
            target = w.services[service.key].get(port)
            if target is not None and w.healthy and w.addresses:
                out.append((w, target))
        return out

    def local_identities(self, node: str) -> set[str]:
        """Identities of the enrolled workloads running on ``node``."""
        return {w.identity for w in self.workloads.values() if w.node == node and w.enrolled}

    def mtls_mode(self, workload: Workload, port: int) -> str:
        """STRICT or PERMISSIVE for connections to ``port`` (a workload port) of ``workload``."""
        return workload.port_mtls.get(port, workload.mtls_mode)

    def policies_for(self, workload: Workload) -> tuple[Policy, ...]:
        """The authorization policies that apply to ``workload``: GLOBAL ones, NAMESPACE ones of
        its namespace and the WORKLOAD_SELECTOR ones it lists. A listed policy not in this
        snapshot is skipped (as ztunnel does while the control plane catches up)."""
        keys = (*self.policies_by_namespace.get("", ()), *self.policies_by_namespace.get(workload.namespace, ()),
                *workload.authorization_policies)
        out = []
        for key in dict.fromkeys(keys):
            pol = self.authorizations.get(key)
            if pol is not None:
                out.append(pol)
        return tuple(out)


EMPTY = ProxyState(0, {}, ())


# --- conversion --------------------------------------------------------------------------------


def from_resources(version: int, resources: Mapping[str, pb.Resource]) -> ProxyState:
    """Raises :class:`StateError` naming the first unusable resource."""
    workloads: dict[str, Workload] = {}
    services: dict[str, Service] = {}
    authorizations: dict[str, Policy] = {}
    roots: tuple[bytes, ...] = ()
    for name, res in resources.items():
        kind = res.WhichOneof("kind")
        if kind == "address" and res.address.WhichOneof("type") == "workload":
            w = _workload(name, res.address.workload)
            workloads[w.uid] = w
        elif kind == "address" and res.address.WhichOneof("type") == "service":
            entry = _service(name, res.address.service)
            for vip in entry.vips:
                services[vip] = entry
        elif kind == "authorization":
            pol = _policy(name, res.authorization)
            authorizations[pol.key] = pol
        elif kind == "trust_bundle":
            roots = tuple(p.encode() for p in res.trust_bundle.roots_pem)
    return ProxyState.build(version, workloads, roots, services, authorizations)


_MTLS_MODES: Final[Mapping[int, str]] = {pb.MTLS_PERMISSIVE: PERMISSIVE, pb.MTLS_STRICT: STRICT}
_SCOPES: Final[Mapping[int, str]] = {pb.GLOBAL: "GLOBAL", pb.NAMESPACE: "NAMESPACE",
                                     pb.WORKLOAD_SELECTOR: "WORKLOAD_SELECTOR"}
_ACTIONS: Final[Mapping[int, str]] = {pb.ALLOW: "ALLOW", pb.DENY: "DENY", pb.AUDIT: "AUDIT"}


def _workload(name: str, w: pb.Workload) -> Workload:
    if not w.uid or not w.namespace:
        raise StateError(f"{name}: a workload needs uid and namespace")
    addresses = tuple(_ip(name, "address", a) for a in w.addresses)
    mode = _mtls(name, "mtls_mode", w.mtls_mode)
    port_mtls = {_port(name, "port_mtls", p): _mtls(name, f"port_mtls[{p}]", m) for p, m in w.port_mtls.items()}
    return Workload(
        uid=w.uid, name=w.name, namespace=w.namespace, node=w.node,
        service_account=w.service_account or "default", trust_domain=w.trust_domain or "cluster.local",
        addresses=addresses, enrolled=w.tunnel_protocol == pb.HBONE, healthy=w.status == pb.HEALTHY,
        services={key: {m.service_port: m.target_port for m in pl.ports} for key, pl in w.services.items()},
        labels=dict(w.labels), authorization_policies=tuple(w.authorization_policies),
        waypoint=_waypoint(name, w.waypoint) if w.HasField("waypoint") else None,
        mtls_mode=mode, port_mtls=port_mtls,
    )


def _service(name: str, svc: pb.Service) -> Service:
    vips = tuple(_ip(name, "VIP", a) for a in svc.addresses)
    ports = tuple(
        ServicePort(port=_port(name, "service_port", p.service_port),
                    target_port=_port(name, "target_port", p.target_port, zero=True),
                    target_port_name=p.target_port_name, name=p.name, app_protocol=p.app_protocol)
        for p in svc.ports
    )
    return Service(namespace=svc.namespace, hostname=svc.hostname, vips=vips, ports=ports,
                   waypoint=_waypoint(name, svc.waypoint) if svc.HasField("waypoint") else None)


def _waypoint(name: str, gw: pb.GatewayAddress) -> Waypoint:
    address = _ip(name, "waypoint address", gw.address) if gw.address else ""
    port = _port(name, "waypoint hbone_port", gw.hbone_port) if gw.hbone_port else HBONE_PORT
    return Waypoint(address=address, port=port, hostname=gw.hostname, namespace=gw.namespace)


def _policy(name: str, a: pb.Authorization) -> Policy:
    if not a.name or not a.namespace:
        raise StateError(f"{name}: an authorization policy needs name and namespace")
    scope = _SCOPES.get(a.scope)
    if scope is None:
        raise StateError(f"{name}: unknown scope {a.scope}")
    action = _ACTIONS.get(a.action)
    if action is None:
        raise StateError(f"{name}: unknown action {a.action}")
    rules = tuple(
        Rule(tuple(Clause(tuple(_match(f"{name}: rules[{r}].clauses[{c}].matches[{m}]", match)
                                for m, match in enumerate(clause.matches)))
                   for c, clause in enumerate(rule.clauses)))
        for r, rule in enumerate(a.rules)
    )
    return Policy(name=a.name, namespace=a.namespace, scope=scope, action=action, rules=rules, dry_run=a.dry_run)


_HTTP_FIELDS: Final = (
    ("request_principals", "requestPrincipals"), ("not_request_principals", "notRequestPrincipals"),
    ("hosts", "hosts"), ("not_hosts", "notHosts"), ("methods", "methods"), ("not_methods", "notMethods"),
    ("paths", "paths"), ("not_paths", "notPaths"), ("remote_ips", "remoteIpBlocks"),
    ("not_remote_ips", "notRemoteIpBlocks"),
)


def _match(where: str, m: pb.Match) -> Match:
    http = [istio for attr, istio in _HTTP_FIELDS if len(getattr(m, attr))]
    http += [f"when {c.key}" for c in m.conditions]
    return Match(
        namespaces=_strings(where, "namespaces", m.namespaces),
        not_namespaces=_strings(where, "not_namespaces", m.not_namespaces),
        principals=_strings(where, "principals", m.principals),
        not_principals=_strings(where, "not_principals", m.not_principals),
        source_ips=_cidrs(where, "source_ips", m.source_ips),
        not_source_ips=_cidrs(where, "not_source_ips", m.not_source_ips),
        destination_ips=_cidrs(where, "destination_ips", m.destination_ips),
        not_destination_ips=_cidrs(where, "not_destination_ips", m.not_destination_ips),
        destination_ports=tuple(_port(f"{where}.destination_ports[{i}]", "", p, zero=True)
                                for i, p in enumerate(m.destination_ports)),
        not_destination_ports=tuple(_port(f"{where}.not_destination_ports[{i}]", "", p, zero=True)
                                    for i, p in enumerate(m.not_destination_ports)),
        http=tuple(http),
    )


def _strings(where: str, what: str, values: Iterable[pb.StringMatch]) -> tuple[StringMatch, ...]:
    out = []
    for i, sm in enumerate(values):
        kind = sm.WhichOneof("match_type")
        if kind is None:
            # ztunnel drops such an entry, which can widen a match; refuse it instead
            raise StateError(f"{where}.{what}[{i}]: no exact, prefix, suffix or presence")
        out.append(StringMatch(kind, "" if kind == "presence" else str(getattr(sm, kind))))
    return tuple(out)


def _cidrs(where: str, what: str, values: Iterable[pb.Cidr]) -> tuple[Network, ...]:
    out = []
    for i, cidr in enumerate(values):
        raw = bytes(cidr.address)
        if len(raw) not in (4, 16):
            raise StateError(f"{where}.{what}[{i}]: bad CIDR: address has {len(raw)} bytes, want 4 or 16")
        ip = ipaddress.ip_address(raw)
        if cidr.length > ip.max_prefixlen:
            raise StateError(f"{where}.{what}[{i}]: bad CIDR: {ip}/{cidr.length} "
                             f"(prefix length at most {ip.max_prefixlen})")
        out.append(ipaddress.ip_network((ip, cidr.length), strict=False))
    return tuple(out)


def _ip(name: str, what: str, raw: bytes) -> str:
    try:
        return str(ipaddress.ip_address(bytes(raw)))
    except ValueError as exc:
        raise StateError(f"{name}: bad {what}: {exc}") from None


def _port(name: str, what: str, value: int, *, zero: bool = False) -> int:
    low = 0 if zero else 1
    if not low <= value <= 65535:
        where = f"{name}: {what}" if what else name
        raise StateError(f"{where}: {value} is not a port ({low}-65535)")
    return value


def _mtls(name: str, what: str, value: int) -> str:
    mode = _MTLS_MODES.get(value)
    if mode is None:
        raise StateError(f"{name}: {what}: unknown mTLS mode {value}")
    return mode
