"""The waypoint's ``/config_dump`` (admin endpoint): what it serves and how it routes, built
from the immutable state and the live clusters. Certificates appear without keys."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from waypoint.routes import HeaderOps, Route, RouteConfig
from waypoint.state import WaypointState, port_protocol
from ztunnel.dump import certificates_section
from ztunnel.identity import CertificateInfo

if TYPE_CHECKING:
    from waypoint.agent import WaypointConfig
    from waypoint.upstream import Upstreams

JsonDict = dict[str, Any]


def config_dump(cfg: WaypointConfig, state: WaypointState, upstreams: Upstreams,
                certificates: Iterable[CertificateInfo], *, now: float) -> JsonDict:
    mine = sorted((svc for svc in {s.key: s for s in state.mesh.services.values()}.values()
                   if svc.waypoint is not None and svc.waypoint.hostname.split(".")[:2] == [cfg.name, cfg.namespace]),
                  key=lambda s: s.hostname)
    return {
        "waypoint": f"{cfg.namespace}/{cfg.name}",
        "identity": str(cfg.identity),
        "node": cfg.node,
        "config_version": state.version,
        "services": [{"hostname": s.hostname, "vips": list(s.vips),
                      "ports": [{"port": p.port, "protocol": port_protocol(s, p.port) or "auto"} for p in s.ports]}
                     for s in mine],
        "routes": [route_config(rc) for _, rc in sorted(state.routes.items())],
        "destination_policies": [{"host": h, "source": dp.source, "subsets": sorted(dp.subsets),
                                  "policy": repr(dp.policy)} for h, dp in sorted(state.destinations.items())],
        "clusters": [cluster(name, c) for name, c in sorted(upstreams.clusters().items())],
        "certificates": certificates_section(certificates),
    }


def route_config(rc: RouteConfig) -> JsonDict:
    return {"host": rc.host, "sources": list(rc.sources), "routes": [route(r) for r in rc.routes]}


def route(r: Route) -> JsonDict:
    out: JsonDict = {"name": r.name, "match": [repr(m) for m in r.match] or ["*"]}
    if r.destinations:
        out["destinations"] = [{"host": d.destination.host, "subset": d.destination.subset,
                                "port": d.destination.port, "weight": d.weight} for d in r.destinations]
    if r.redirect is not None:
        out["redirect"] = repr(r.redirect)
    if r.direct_response is not None:
        out["direct_response"] = {"status": r.direct_response.status}
    if r.rewrite is not None:
        out["rewrite"] = {"uri": r.rewrite.uri, "authority": r.rewrite.authority}
    if r.timeout:
        out["timeout_s"] = r.timeout
    out["retries"] = {"attempts": r.retry.attempts, "per_try_timeout_s": r.retry.per_try_timeout,
                      "retry_on": sorted(r.retry.retry_on)}
    if r.fault is not None:
        out["fault"] = repr(r.fault)
    if r.mirrors:
        out["mirrors"] = [{"host": m.destination.host, "subset": m.destination.subset, "percent": m.percent}
                          for m in r.mirrors]
    for which, ops in (("request_headers", r.request_headers), ("response_headers", r.response_headers)):
        if ops != HeaderOps():
            out[which] = {"set": dict(ops.set), "add": dict(ops.add), "remove": list(ops.remove)}
    return out


def cluster(name: str, c: Any) -> JsonDict:
    return {
        "name": name, "http2": c.http2, "load_balancer": c.policy.load_balancer.kind.name,
        "ejected": sorted(c.detector.ejected) if c.detector is not None else [],
        "active_requests": {k: v for k, v in sorted(c.active.items()) if v},
        "idle_connections": sum(len(v) for v in c.idle.values()),
        "overflows": c.limits.overflows,
    }
