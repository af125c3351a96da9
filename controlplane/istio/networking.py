"""Typed, immutable models of ``networking.istio.io``: VirtualService, DestinationRule, Gateway
and ServiceEntry, with their specs modelled completely enough to implement Istio's routing,
load balancing, connection pool, outlier detection and TLS semantics.

Values are validated and defaulted by ``parse_*``; constructing these directly performs no
validation (pass tuples and ``FrozenDict``s). Unset optional settings are ``None``: the data
plane applies Istio's defaults. Durations are ``Duration`` (seconds plus the text written),
percentages floats between 0 and 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from controlplane.istio.durations import Duration
from controlplane.istio.frozendict import FrozenDict, JsonValue
from controlplane.k8s.frozenmap import FrozenMap
from controlplane.k8s.objects import ObjectKey, ObjectMeta

__all__ = [
    "ClientTLSSettings",
    "ConnectionPoolSettings",
    "ConsistentHashLB",
    "CorsPolicy",
    "Delegate",
    "Destination",
    "DestinationRule",
    "Gateway",
    "HTTPCookie",
    "HTTPDirectResponse",
    "HTTPFaultAbort",
    "HTTPFaultDelay",
    "HTTPFaultInjection",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPRedirect",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRouteDestination",
    "HTTPSettings",
    "HeaderOperations",
    "Headers",
    "IstioHTTPRoute",
    "L4MatchAttributes",
    "LoadBalancerSettings",
    "OutlierDetection",
    "Port",
    "PortTrafficPolicy",
    "RegexRewrite",
    "RouteDestination",
    "Server",
    "ServerTLSSettings",
    "ServiceEntry",
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
]

_EMPTY_LABELS: Mapping[str, str] = FrozenMap()


# --- shared pieces --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StringMatch:
    """``exact``, ``prefix`` or ``regex``; ``type == "any"`` for ``{}`` (presence match)."""

    type: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    subset: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class HeaderOperations:
    set: FrozenDict[str, str] = field(default_factory=FrozenDict)
    add: FrozenDict[str, str] = field(default_factory=FrozenDict)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Headers:
    request: HeaderOperations = field(default_factory=HeaderOperations)
    response: HeaderOperations = field(default_factory=HeaderOperations)


# --- VirtualService -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HTTPMatchRequest:
    """One ``match`` entry: all its conditions must hold."""

    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: FrozenDict[str, StringMatch] = field(default_factory=FrozenDict)
    without_headers: FrozenDict[str, StringMatch] = field(default_factory=FrozenDict)
    query_params: FrozenDict[str, StringMatch] = field(default_factory=FrozenDict)
    ignore_uri_case: bool = False
    port: int | None = None
    source_labels: Mapping[str, str] = _EMPTY_LABELS
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPRouteDestination:
    """A weighted destination; ``weight`` is 0 when not written (a single destination)."""

    destination: Destination
    weight: int = 0
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class HTTPRedirect:
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: str | None = None
    scheme: str | None = None
    redirect_code: int = 301


@dataclass(frozen=True, slots=True)
class HTTPDirectResponse:
    status: int
    body_string: str | None = None
    body_bytes: str | None = None  # base64, as written


@dataclass(frozen=True, slots=True)
class Delegate:
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class RegexRewrite:
    match: str
    rewrite: str


@dataclass(frozen=True, slots=True)
class HTTPRewrite:
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


@dataclass(frozen=True, slots=True)
class HTTPRetry:
    attempts: int
    per_try_timeout: Duration | None = None
    retry_on: tuple[str, ...] = ()
    retry_remote_localities: bool | None = None


@dataclass(frozen=True, slots=True)
class HTTPFaultDelay:
    """``percentage`` folds in the deprecated integer ``percent``; ``None`` when unset."""

    fixed_delay: Duration
    percentage: float | None = None


@dataclass(frozen=True, slots=True)
class HTTPFaultAbort:
    """Exactly one of ``http_status`` and ``grpc_status`` is set."""

    http_status: int | None = None
    grpc_status: str | None = None
    percentage: float | None = None


@dataclass(frozen=True, slots=True)
class HTTPFaultInjection:
    delay: HTTPFaultDelay | None = None
    abort: HTTPFaultAbort | None = None


@dataclass(frozen=True, slots=True)
class HTTPMirrorPolicy:
    destination: Destination
    percentage: float | None = None


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: str | None = None


@dataclass(frozen=True, slots=True)
class IstioHTTPRoute:
    """One ``spec.http`` rule. Exactly one of ``route`` (non-empty), ``redirect``,
    ``direct_response`` and ``delegate`` decides where a matching request goes.

    ``mirror``/``mirror_percentage`` (the single-mirror form) and ``mirrors`` are kept as
    written; at most one form is set.
    """

    name: str | None = None
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirror_percentage: float | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    headers: Headers | None = None
    cors_policy: CorsPolicy | None = None


@dataclass(frozen=True, slots=True)
class L4MatchAttributes:
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: Mapping[str, str] = _EMPTY_LABELS
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None


@dataclass(frozen=True, slots=True)
class TLSMatchAttributes:
    sni_hosts: tuple[str, ...]
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: Mapping[str, str] = _EMPTY_LABELS
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None


@dataclass(frozen=True, slots=True)
class RouteDestination:
    destination: Destination
    weight: int = 0


@dataclass(frozen=True, slots=True)
class TCPRoute:
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class TLSRoute:
    match: tuple[TLSMatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class VirtualService:
    """A VirtualService; ``hosts`` is empty only for a delegate VirtualService."""

    meta: ObjectMeta
    api_version: str = "networking.istio.io/v1"
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[IstioHTTPRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    export_to: tuple[str, ...] = ()

    kind: ClassVar[str] = "VirtualService"
    group: ClassVar[str] = "networking.istio.io"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)


# --- DestinationRule ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HTTPCookie:
    name: str
    path: str | None = None
    ttl: Duration | None = None


@dataclass(frozen=True, slots=True)
class ConsistentHashLB:
    """Hash key: exactly one of header, cookie, source IP, query parameter.
    ``ring_hash_minimum_ring_size`` (or the deprecated top-level ``minimumRingSize``) selects
    ring hash; ``maglev_table_size`` selects Maglev."""

    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool = False
    http_query_parameter_name: str | None = None
    ring_hash_minimum_ring_size: int | None = None
    maglev_table_size: int | None = None
    maglev: bool = False


@dataclass(frozen=True, slots=True)
class LoadBalancerSettings:
    """``simple`` (``ROUND_ROBIN``, ``LEAST_REQUEST``...) or ``consistent_hash``, never both;
    ``locality_lb_setting`` is kept as raw data."""

    simple: str | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: JsonValue = None
    warmup_duration: Duration | None = None


@dataclass(frozen=True, slots=True)
class TCPKeepalive:
    probes: int | None = None
    time: Duration | None = None
    interval: Duration | None = None


@dataclass(frozen=True, slots=True)
class TCPSettings:
    max_connections: int | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TCPKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: str | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionPoolSettings:
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


@dataclass(frozen=True, slots=True)
class ClientTLSSettings:
    """Upstream TLS: ``mode`` is DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL."""

    mode: str = "DISABLE"
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    sni: str | None = None
    insecure_skip_verify: bool | None = None


@dataclass(frozen=True, slots=True)
class PortTrafficPolicy:
    port: int
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: Mapping[str, str] = _EMPTY_LABELS
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True)
class DestinationRule:
    meta: ObjectMeta
    api_version: str = "networking.istio.io/v1"
    host: str = ""
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Mapping[str, str] | None = None

    kind: ClassVar[str] = "DestinationRule"
    group: ClassVar[str] = "networking.istio.io"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


# --- Gateway --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Port:
    """A Gateway server or ServiceEntry port; ``protocol`` upper-cased (HTTP, HTTPS, TCP...)."""

    number: int
    protocol: str
    name: str | None = None
    target_port: int | None = None


@dataclass(frozen=True, slots=True)
class ServerTLSSettings:
    https_redirect: bool = False
    mode: str = "PASSTHROUGH"
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    credential_names: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()
    min_protocol_version: str | None = None
    max_protocol_version: str | None = None
    cipher_suites: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Server:
    port: Port
    hosts: tuple[str, ...]
    tls: ServerTLSSettings | None = None
    name: str | None = None
    bind: str | None = None


@dataclass(frozen=True, slots=True)
class Gateway:
    """Istio's ``networking.istio.io`` Gateway (key kind ``"Gateway"``)."""

    meta: ObjectMeta
    api_version: str = "networking.istio.io/v1"
    selector: Mapping[str, str] = _EMPTY_LABELS
    servers: tuple[Server, ...] = ()

    kind: ClassVar[str] = "Gateway"
    group: ClassVar[str] = "networking.istio.io"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)


# --- ServiceEntry ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    """A ServiceEntry endpoint; ``ports`` maps port names to endpoint ports."""

    address: str | None = None
    ports: FrozenDict[str, int] = field(default_factory=FrozenDict)
    labels: Mapping[str, str] = _EMPTY_LABELS
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    meta: ObjectMeta
    api_version: str = "networking.istio.io/v1"
    hosts: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    location: str = "MESH_EXTERNAL"
    resolution: str = "NONE"
    endpoints: tuple[WorkloadEntry, ...] = ()
    workload_selector: Mapping[str, str] | None = None
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()

    kind: ClassVar[str] = "ServiceEntry"
    group: ClassVar[str] = "networking.istio.io"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)
