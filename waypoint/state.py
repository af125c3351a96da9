"""One config version as the waypoint sees it: the mesh's workloads and services (the ztunnel
view, parsed by :func:`ztunnel.state.from_resources`), plus what its own view carries: the routes
(:mod:`waypoint.routes`) and destination policies (:mod:`waypoint.destinations`) of the
services bound to it, and its L7 authorization (:mod:`waypoint.authz`).

Everything is converted once per push; a resource that cannot be used raises
:class:`WaypointStateError` naming it, and the waypoint NACKs the push (keeping its last good
config).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controlplane.api import mesh_pb2 as pb
from waypoint import authz
from waypoint.destinations import DestinationError, DestinationPolicy
from waypoint.destinations import convert as convert_destination
from waypoint.routes import RouteConfig, RouteError
from waypoint.routes import convert as convert_route
from ztunnel.state import EMPTY, ProxyState, Service, ServicePort, StateError, from_resources

HTTP_PROTOCOLS = frozenset({"http", "http2", "grpc", "grpc-web"})
H2_PROTOCOLS = frozenset({"http2", "grpc"})
OPAQUE_PROTOCOLS = frozenset({"tcp", "tls", "https", "mongo", "mysql", "redis"})


class WaypointStateError(ValueError):
    """A pushed resource the waypoint cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class WaypointState:
    mesh: ProxyState
    routes: Mapping[str, RouteConfig] = field(default_factory=dict)             # by service FQDN
    destinations: Mapping[str, DestinationPolicy] = field(default_factory=dict)  # by service FQDN
    policies: authz.L7Policies = field(default_factory=authz.L7Policies)
    by_hostname: Mapping[str, Service] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return self.mesh.version

    def service_for(self, address: str) -> Service | None:
        return self.mesh.services.get(address)

    def service_named(self, hostname: str) -> Service | None:
        return self.by_hostname.get(hostname)


EMPTY_STATE = WaypointState(EMPTY)


def port_protocol(service: Service, port: int) -> str:
    """The declared protocol of ``port`` (appProtocol, else from the port name as Istio does);
    "" when undeclared (the waypoint then sniffs)."""
    sp = service_port(service, port)
    return sp.app_protocol.lower() if sp is not None else ""


def service_port(service: Service, port: int) -> ServicePort | None:
    return next((p for p in service.ports if p.port == port), None)


def from_update(version: int, resources: Mapping[str, pb.Resource]) -> WaypointState:
    try:
        mesh = from_resources(version, resources)
    except StateError as exc:
        raise WaypointStateError(str(exc)) from None
    routes: dict[str, RouteConfig] = {}
    destinations: dict[str, DestinationPolicy] = {}
    for name, res in resources.items():
        kind = res.WhichOneof("kind")
        try:
            if kind == "route":
                routes[res.route.host] = convert_route(res.route)
            elif kind == "destination":
                destinations[res.destination.host] = convert_destination(res.destination)
        except (RouteError, DestinationError, ValueError) as exc:
            raise WaypointStateError(f"{name}: {exc}") from None
    try:
        policies = authz.L7Policies.from_resources(resources)
    except ValueError as exc:
        raise WaypointStateError(str(exc)) from None
    by_hostname = {svc.hostname: svc for svc in mesh.services.values()}
    return WaypointState(mesh, routes, destinations, policies, by_hostname)
