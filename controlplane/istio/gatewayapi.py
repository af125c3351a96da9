"""Typed, immutable models of ``gateway.networking.k8s.io``: Gateway (``KubernetesGateway``
here, as Istio itself calls it, to tell it from Istio's Gateway), HTTPRoute and GatewayClass.

Keys of these kinds carry the group: ``("gateway.networking.k8s.io/Gateway", ns, name)``;
``.kind`` stays the plain Kubernetes kind. A Gateway of class ``istio-waypoint`` declares a
waypoint (``KubernetesGateway.is_waypoint``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from controlplane.istio.durations import Duration
from controlplane.istio.frozendict import JsonValue
from controlplane.k8s.objects import LabelSelector, ObjectKey, ObjectMeta

__all__ = [
    "GATEWAY_API_GROUP",
    "WAYPOINT_CLASS",
    "AllowedRoutes",
    "BackendRef",
    "GatewayAddress",
    "GatewayClass",
    "HTTPHeaderFilter",
    "HTTPHeaderMatch",
    "HTTPPathMatch",
    "HTTPPathModifier",
    "HTTPRequestMirrorFilter",
    "HTTPRequestRedirectFilter",
    "HTTPRoute",
    "HTTPRouteFilter",
    "HTTPRouteMatch",
    "HTTPRouteRule",
    "HTTPRouteTimeouts",
    "HTTPURLRewriteFilter",
    "KubernetesGateway",
    "Listener",
    "ParentReference",
]

GATEWAY_API_GROUP: Final = "gateway.networking.k8s.io"
WAYPOINT_CLASS: Final = "istio-waypoint"


def _key(kind: str, namespace: str, name: str) -> ObjectKey:
    return (f"{GATEWAY_API_GROUP}/{kind}", namespace, name)


@dataclass(frozen=True, slots=True)
class RouteGroupKind:
    kind: str
    group: str = GATEWAY_API_GROUP


@dataclass(frozen=True, slots=True)
class AllowedRoutes:
    """``namespaces_from``: All, Same (the default) or Selector (with ``selector``)."""

    namespaces_from: str = "Same"
    selector: LabelSelector | None = None
    kinds: tuple[RouteGroupKind, ...] = ()


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    port: int
    protocol: str
    hostname: str | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()
    tls: JsonValue = None


@dataclass(frozen=True, slots=True)
class GatewayAddress:
    value: str
    type: str = "IPAddress"


@dataclass(frozen=True, slots=True)
class KubernetesGateway:
    meta: ObjectMeta
    api_version: str = "gateway.networking.k8s.io/v1"
    gateway_class_name: str = ""
    listeners: tuple[Listener, ...] = ()
    addresses: tuple[GatewayAddress, ...] = ()

    kind: ClassVar[str] = "Gateway"
    group: ClassVar[str] = GATEWAY_API_GROUP

    @property
    def key(self) -> ObjectKey:
        return _key(self.kind, self.meta.namespace, self.meta.name)

    @property
    def is_waypoint(self) -> bool:
        return self.gateway_class_name == WAYPOINT_CLASS


@dataclass(frozen=True, slots=True)
class GatewayClass:
    """Cluster-scoped (``meta.namespace == ""``)."""

    meta: ObjectMeta
    api_version: str = "gateway.networking.k8s.io/v1"
    controller_name: str = ""
    description: str | None = None

    kind: ClassVar[str] = "GatewayClass"
    group: ClassVar[str] = GATEWAY_API_GROUP

    @property
    def key(self) -> ObjectKey:
        return _key(self.kind, "", self.meta.name)


@dataclass(frozen=True, slots=True)
class ParentReference:
    """Defaults as the API: group ``gateway.networking.k8s.io``, kind ``Gateway``; a parent
    ``kind: Service`` with ``group: ""`` is a GAMMA (mesh) route."""

    name: str
    group: str = GATEWAY_API_GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    section_name: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class HTTPPathMatch:
    """``type``: Exact, PathPrefix (default, value ``/``) or RegularExpression."""

    type: str = "PathPrefix"
    value: str = "/"


@dataclass(frozen=True, slots=True)
class HTTPHeaderMatch:
    """A header or query parameter match; ``type`` Exact (default) or RegularExpression."""

    name: str
    value: str
    type: str = "Exact"


@dataclass(frozen=True, slots=True)
class HTTPRouteMatch:
    path: HTTPPathMatch | None = None
    headers: tuple[HTTPHeaderMatch, ...] = ()
    query_params: tuple[HTTPHeaderMatch, ...] = ()
    method: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPHeaderFilter:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HTTPPathModifier:
    """``type`` ReplaceFullPath or ReplacePrefixMatch, with its ``value``."""

    type: str
    value: str


@dataclass(frozen=True, slots=True)
class HTTPRequestRedirectFilter:
    scheme: str | None = None
    hostname: str | None = None
    path: HTTPPathModifier | None = None
    port: int | None = None
    status_code: int = 302


@dataclass(frozen=True, slots=True)
class HTTPURLRewriteFilter:
    hostname: str | None = None
    path: HTTPPathModifier | None = None


@dataclass(frozen=True, slots=True)
class BackendRef:
    """A backend; defaults: group ``""``, kind ``Service``, weight 1."""

    name: str
    group: str = ""
    kind: str = "Service"
    namespace: str | None = None
    port: int | None = None
    weight: int = 1
    filters: tuple[HTTPRouteFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class HTTPRequestMirrorFilter:
    backend_ref: BackendRef
    percent: float | None = None


@dataclass(frozen=True, slots=True)
class HTTPRouteFilter:
    """``type`` names the one configuration field that is set."""

    type: str
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: JsonValue = None


@dataclass(frozen=True, slots=True)
class HTTPRouteTimeouts:
    request: Duration | None = None
    backend_request: Duration | None = None


@dataclass(frozen=True, slots=True)
class HTTPRouteRule:
    name: str | None = None
    matches: tuple[HTTPRouteMatch, ...] = (HTTPRouteMatch(path=HTTPPathMatch()),)
    filters: tuple[HTTPRouteFilter, ...] = ()
    backend_refs: tuple[BackendRef, ...] = ()
    timeouts: HTTPRouteTimeouts | None = None


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    meta: ObjectMeta
    api_version: str = "gateway.networking.k8s.io/v1"
    parent_refs: tuple[ParentReference, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[HTTPRouteRule, ...] = ()

    kind: ClassVar[str] = "HTTPRoute"
    group: ClassVar[str] = GATEWAY_API_GROUP

    @property
    def key(self) -> ObjectKey:
        return _key(self.kind, self.meta.namespace, self.meta.name)
