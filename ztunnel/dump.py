"""What ``/config_dump`` on ztunnel's admin endpoint shows, built from plain values (pure, no
I/O): the config version, every workload, service and authorization policy this ztunnel knows
(as Istio's ztunnel, it knows the whole mesh, not only its node), the certificates it holds
(public material only, never keys) and its connections — the outbound HBONE pool and the
inbound connections open now. ``meshctl ztunnel-config`` reads it (like ``istioctl
ztunnel-config``).

Everything returned is JSON-ready: strings, numbers, booleans, lists and string-keyed dicts,
sorted so two dumps of the same state compare equal.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from ztunnel.identity_core import CertificateInfo
from ztunnel.state import Clause, Match, Policy, ProxyState, Rule, Service, Waypoint, Workload

if TYPE_CHECKING:
    from ztunnel.flows import Flow
    from ztunnel.policy import Connection

JsonDict = dict[str, Any]


class OpenConnection(Protocol):
    """An inbound connection being served: its policy inputs and its flow record."""

    @property
    def conn(self) -> Connection: ...

    @property
    def flow(self) -> Flow: ...


def config_dump(
    node: str, state: ProxyState, certificates: Iterable[CertificateInfo],
    pool: Mapping[Hashable, int] | None = None, inbound: Iterable[OpenConnection] = (),
    *, now: float | None = None,
) -> JsonDict:
    """The whole dump. ``pool``: HBONE connections per pool key (``Pool.connections()``);
    ``inbound``: the connections served now; ``now``: ``time.monotonic()``, for their age."""
    return {
        "node": node,
        "config_version": state.version,
        "workloads": workloads(state),
        "services": services(state),
        "policies": policies(state),
        "certificates": certificates_section(certificates),
        "connections": connections(pool or {}, inbound, now=now),
    }


# --- workloads and services ----------------------------------------------------------------


def workloads(state: ProxyState) -> list[JsonDict]:
    """Every workload, by namespace and name."""
    return [workload(w) for w in sorted(state.workloads.values(), key=lambda w: (w.namespace, w.name, w.uid))]


def workload(w: Workload) -> JsonDict:
    return {
        "uid": w.uid, "name": w.name, "namespace": w.namespace, "node": w.node,
        "addresses": list(w.addresses), "service_account": w.service_account, "identity": w.identity,
        "enrolled": w.enrolled, "protocol": "HBONE" if w.enrolled else "TCP", "healthy": w.healthy,
        "waypoint": waypoint(w.waypoint), "mtls_mode": w.mtls_mode,
        "port_mtls": {str(p): m for p, m in sorted(w.port_mtls.items())},
        "authorization_policies": list(w.authorization_policies),
        "services": {key: {str(p): t for p, t in sorted(ports.items())} for key, ports in sorted(w.services.items())},
    }


def waypoint(wp: Waypoint | None) -> JsonDict | None:
    return None if wp is None else asdict(wp)


def services(state: ProxyState) -> list[JsonDict]:
    """Every service once (``state.services`` has one entry per VIP), with how many workloads
    back it and how many of those are healthy."""
    unique = {s.key: s for s in state.services.values()}
    total: dict[str, int] = dict.fromkeys(unique, 0)
    healthy: dict[str, int] = dict.fromkeys(unique, 0)
    for w in state.workloads.values():
        for key in w.services:
            if key in total:
                total[key] += 1
                healthy[key] += w.healthy and bool(w.addresses)
    return [service(unique[k], total[k], healthy[k]) for k in sorted(unique)]


def service(s: Service, endpoints: int, healthy: int) -> JsonDict:
    return {
        "name": short_name(s), "namespace": s.namespace, "hostname": s.hostname, "vips": list(s.vips),
        "ports": [asdict(p) for p in s.ports], "waypoint": waypoint(s.waypoint),
        "endpoints": endpoints, "healthy_endpoints": healthy,
    }


def short_name(s: Service) -> str:
    """``reviews`` for ``reviews.default.svc.cluster.local``; other hostnames as they are."""
    first, _, rest = s.hostname.partition(".")
    return first if rest.startswith(f"{s.namespace}.svc.") else s.hostname


# --- policies ----------------------------------------------------------------------------------


def policies(state: ProxyState) -> list[JsonDict]:
    """Every authorization policy, each rule as one readable line."""
    return [policy(state.authorizations[k]) for k in sorted(state.authorizations)]


def policy(p: Policy) -> JsonDict:
    return {"name": p.name, "namespace": p.namespace, "scope": p.scope, "action": p.action,
            "dry_run": p.dry_run, "rules": [rule_text(r, p.action) for r in p.rules]}


# (name in the dump, Match attribute); each has a ``not_`` twin
_FIELDS = (("namespaces", "namespaces"), ("principals", "principals"), ("sourceIps", "source_ips"),
           ("destinationIps", "destination_ips"), ("destinationPorts", "destination_ports"))


def rule_text(r: Rule, action: str) -> str:
    """One rule in words: clauses joined by ``and``, a clause's entries by ``or``; AuthorizationPolicy
    value syntax (``x*``, ``*``). Says when ztunnel cannot enforce the rule as written (HTTP-only
    attributes: an ALLOW rule using them never matches, a DENY rule drops them)."""
    clauses = [c for c in r.clauses if c.matches]
    text = " and ".join(_clause_text(c, len(clauses) > 1) for c in clauses) or "any connection"
    http = r.http
    if http and action == "ALLOW":
        return f"{text} [never matches in ztunnel: HTTP-only {', '.join(http)}; needs a waypoint]"
    if http:
        return f"{text} [HTTP-only {', '.join(http)} ignored in ztunnel: enforced on the L4 attributes]"
    return text


def _clause_text(c: Clause, nested: bool) -> str:
    entries = [_match_text(m, len(c.matches) > 1) for m in c.matches]
    joined = " or ".join(entries)
    return f"({joined})" if nested and len(entries) > 1 else joined


def _match_text(m: Match, nested: bool) -> str:
    parts = []
    for name, attr in _FIELDS:
        pos, neg = getattr(m, attr), getattr(m, f"not_{attr}")
        if pos:
            parts.append(f"{name} in [{', '.join(map(str, pos))}]")
        if neg:
            parts.append(f"{name} not in [{', '.join(map(str, neg))}]")
    if not parts:
        return "no L4 attribute (never matches)"
    joined = " and ".join(parts)
    return f"({joined})" if nested and len(parts) > 1 else joined


# --- certificates and connections ---------------------------------------------------------------


def certificates_section(infos: Iterable[CertificateInfo]) -> list[JsonDict]:
    """Per identity: state, serial, validity, last error and the chain (PEM, leaf first, never
    a key). Times as ``2025-01-01 00:00:00+00:00``, as the dump always showed them."""
    out = []
    for info in infos:
        entry = asdict(info)
        for k, v in entry.items():
            if k == "state":
                entry[k] = str(v)
            elif k == "chain_pem":
                entry[k] = list(v)
            elif v is not None and not isinstance(v, str | int):
                entry[k] = str(v)
        out.append(entry)
    return sorted(out, key=lambda e: str(e["identity"]))


def connections(pool: Mapping[Hashable, int], inbound: Iterable[OpenConnection], *,
                now: float | None = None) -> JsonDict:
    """``hbone_pool``: outbound HBONE connections per (source identity, destination identity,
    next hop); ``inbound``: connections served now (HBONE tunnels, same-node and plaintext),
    with the source's principal (``None``: plaintext) and address and the destination."""
    pooled = []
    for key, count in pool.items():
        if isinstance(key, tuple) and len(key) == 3 and isinstance(key[2], tuple) and len(key[2]) == 2:
            src, dst, (host, port) = key
            pooled.append({"source": str(src), "destination": str(dst), "next_hop": f"{host}:{port}",
                           "connections": count})
        else:
            pooled.append({"source": "", "destination": "", "next_hop": str(key), "connections": count})
    opened = []
    for entry in inbound:
        conn, flow = entry.conn, entry.flow
        dest = conn.destination
        opened.append({
            "source_principal": conn.source_principal, "source_ip": conn.source_ip,
            "destination": f"{dest.namespace}/{dest.name}", "destination_identity": dest.identity,
            "destination_address": f"{conn.destination_ip}:{conn.destination_port}", "via": flow.via,
            "service": flow.service, "age_s": None if now is None else round(max(now - flow.started, 0.0), 1),
        })
    return {
        "hbone_pool": sorted(pooled, key=lambda e: (e["source"], e["destination"], e["next_hop"])),
        "inbound": sorted(opened, key=lambda e: (e["destination"], e["source_ip"], e["source_principal"] or "")),
    }
