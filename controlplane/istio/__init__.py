"""Istio and Gateway API configuration for the mesh: typed, immutable models of the kinds users
apply (the same YAML they give Istio) and their validation with Istio's rules.

Kinds and served versions:

- ``networking.istio.io`` ``v1``, ``v1beta1``, ``v1alpha3``: VirtualService, DestinationRule,
  Gateway, ServiceEntry.
- ``security.istio.io`` ``v1``, ``v1beta1``: PeerAuthentication, AuthorizationPolicy,
  RequestAuthentication.
- ``gateway.networking.k8s.io`` ``v1``, ``v1beta1`` (``v1alpha2`` accepted with a warning,
  as Istio's older samples use it): Gateway (``KubernetesGateway``), HTTPRoute, GatewayClass
  (cluster-scoped, minimal). A Gateway of class ``istio-waypoint`` declares a waypoint.

Any other apiVersion of these kinds is an ``InvalidObject`` naming ``apiVersion`` and the
served versions. Each object has ``meta`` (``controlplane.k8s.ObjectMeta``), the class
attributes ``kind`` (the plain Kubernetes kind) and ``group``, the instance field
``api_version`` (``group/version`` as applied) and the property ``key``.

Key scheme: ``key`` is ``(kind, namespace, name)`` as for the Kubernetes objects, where the
kind of the Gateway API kinds is qualified by their group:
``("gateway.networking.k8s.io/Gateway", ns, name)`` and
``("gateway.networking.k8s.io/HTTPRoute", ns, name)``, while Istio's kinds keep the plain
kind (``("Gateway", ns, name)``, ``("VirtualService", ns, name)``). So Istio's Gateway and the
Gateway API's Gateway never collide, and keys do not change with the version applied. Error
messages name objects by the same key kind.

Loading: ``controlplane.k8s.load_documents(text, source, kinds="all")`` returns these objects
with the Kubernetes ones (``LoadResult.items`` pairs each with its document); kinds neither
package models (Sidecar, EnvoyFilter, Telemetry, cert-manager's Certificate...) stay
``UnsupportedKind``. ``parse_mesh_object``/``parse_any`` parse one decoded document.

Sans-I/O: nothing here touches files, sockets or the network.
"""

from __future__ import annotations

from controlplane.istio.durations import Duration, parse_duration, parse_gateway_api_duration
from controlplane.istio.frozendict import FrozenDict, JsonValue
from controlplane.istio.gatewayapi import (
    GATEWAY_API_GROUP,
    WAYPOINT_CLASS,
    AllowedRoutes,
    BackendRef,
    GatewayAddress,
    GatewayClass,
    HTTPHeaderFilter,
    HTTPHeaderMatch,
    HTTPPathMatch,
    HTTPPathModifier,
    HTTPRequestMirrorFilter,
    HTTPRequestRedirectFilter,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRule,
    HTTPRouteTimeouts,
    HTTPURLRewriteFilter,
    KubernetesGateway,
    Listener,
    ParentReference,
)
from controlplane.istio.networking import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    ConsistentHashLB,
    CorsPolicy,
    Delegate,
    Destination,
    DestinationRule,
    Gateway,
    HeaderOperations,
    Headers,
    HTTPCookie,
    HTTPDirectResponse,
    HTTPFaultAbort,
    HTTPFaultDelay,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPMirrorPolicy,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRouteDestination,
    HTTPSettings,
    IstioHTTPRoute,
    L4MatchAttributes,
    LoadBalancerSettings,
    OutlierDetection,
    Port,
    PortTrafficPolicy,
    RegexRewrite,
    RouteDestination,
    Server,
    ServerTLSSettings,
    ServiceEntry,
    StringMatch,
    Subset,
    TCPKeepalive,
    TCPRoute,
    TCPSettings,
    TLSMatchAttributes,
    TLSRoute,
    TrafficPolicy,
    VirtualService,
    WorkloadEntry,
)
from controlplane.istio.objects import AnyObject, GatewayAPIObject, IstioObject, MeshObject
from controlplane.istio.parse import (
    KINDS,
    SERVED_VERSIONS,
    is_mesh_kind,
    key_kind,
    parse_any,
    parse_mesh_object,
)
from controlplane.istio.security import (
    AuthorizationPolicy,
    ClaimToHeader,
    Condition,
    JWTHeader,
    JWTRule,
    Operation,
    PeerAuthentication,
    PolicyTargetReference,
    RequestAuthentication,
    Rule,
    Source,
)

__all__ = [
    "GATEWAY_API_GROUP",
    "KINDS",
    "SERVED_VERSIONS",
    "WAYPOINT_CLASS",
    "AllowedRoutes",
    "AnyObject",
    "AuthorizationPolicy",
    "BackendRef",
    "ClaimToHeader",
    "ClientTLSSettings",
    "Condition",
    "ConnectionPoolSettings",
    "ConsistentHashLB",
    "CorsPolicy",
    "Delegate",
    "Destination",
    "DestinationRule",
    "Duration",
    "FrozenDict",
    "Gateway",
    "GatewayAPIObject",
    "GatewayAddress",
    "GatewayClass",
    "HTTPCookie",
    "HTTPDirectResponse",
    "HTTPFaultAbort",
    "HTTPFaultDelay",
    "HTTPFaultInjection",
    "HTTPHeaderFilter",
    "HTTPHeaderMatch",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPPathMatch",
    "HTTPPathModifier",
    "HTTPRedirect",
    "HTTPRequestMirrorFilter",
    "HTTPRequestRedirectFilter",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRoute",
    "HTTPRouteDestination",
    "HTTPRouteFilter",
    "HTTPRouteMatch",
    "HTTPRouteRule",
    "HTTPRouteTimeouts",
    "HTTPSettings",
    "HTTPURLRewriteFilter",
    "HeaderOperations",
    "Headers",
    "IstioHTTPRoute",
    "IstioObject",
    "JWTHeader",
    "JWTRule",
    "JsonValue",
    "KubernetesGateway",
    "L4MatchAttributes",
    "Listener",
    "LoadBalancerSettings",
    "MeshObject",
    "Operation",
    "OutlierDetection",
    "ParentReference",
    "PeerAuthentication",
    "PolicyTargetReference",
    "Port",
    "PortTrafficPolicy",
    "RegexRewrite",
    "RequestAuthentication",
    "RouteDestination",
    "Rule",
    "Server",
    "ServerTLSSettings",
    "ServiceEntry",
    "Source",
    "StringMatch",
    "Subset",
    "TCPKeepalive",
    "TCPRoute",
    "TCPSettings",
    "TLSMatchAttributes",
    "TLSRoute",
    "TrafficPolicy",
    "VirtualService",
    "WorkloadEntry",
    "is_mesh_kind",
    "key_kind",
    "parse_any",
    "parse_duration",
    "parse_gateway_api_duration",
    "parse_mesh_object",
]
