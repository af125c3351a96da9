"""The waypoint's L7 telemetry: Istio's standard HTTP metrics and Envoy's text access log, one
:class:`RequestRecord` per request, written when the request ends (answered, refused or failed).

Metrics (https://istio.io/latest/docs/reference/config/metrics/), registered in an injected
registry like ztunnel's L4 ones (:mod:`ztunnel.metrics`), with Istio's labels in the order
Istio's proxy reports them (istio/proxy ``testdata/metric/server_waypoint_proxy_request_total``):

- ``istio_requests_total`` (counter), ``istio_request_duration_milliseconds``,
  ``istio_request_bytes`` and ``istio_response_bytes`` (histograms of the whole request
  duration and of the request/response *body* sizes, as Envoy's BYTES_RECEIVED/BYTES_SENT).
- Buckets: Istio does not configure histogram buckets, so Envoy's defaults apply to every one of
  them, byte sizes included (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
  30000, 60000, 300000, 600000, 1800000, 3600000; Envoy's ``HistogramSettingsImpl`` default,
  changed per pod only by the ``sidecar.istio.io/statsHistogramBuckets`` annotation). A real
  Istio scrape shows ``istio_request_bytes_bucket{...,le="600000"}`` (istio/istio#22007). The
  exponential 1, 10, ..., 10^7 byte buckets some guides mention were Mixer's (Istio <= 1.4).
- ``reporter`` is ``waypoint``. Workload labels come from :class:`ztunnel.state.Workload`:
  ``*_workload`` is ``Workload.name`` and ``*_workload_namespace`` its namespace, exactly as
  ztunnel's L4 labels, so L4 and L7 series of one pair join; ``*_principal`` the SPIFFE identity
  (the peer's proven one; for an enrolled destination its identity, as ztunnel does);
  ``*_app``/``*_version`` the ``app``/``version`` labels (``app.kubernetes.io/name``/``version``
  as fallbacks); canonical service/revision with istiod's precedence
  (``service.istio.io/canonical-name`` > ``app.kubernetes.io/name`` > ``app`` > workload name;
  ``service.istio.io/canonical-revision`` > ``app.kubernetes.io/version`` > ``version`` >
  ``latest``, as ``controlplane/index.py`` pushes them); ``*_cluster`` is ``Kubernetes`` (the
  lab's one cluster id). Anything unknown is ``unknown``, except an unknown canonical revision,
  which Istio reports as ``latest``. (The push carries ``workload_name``, ``canonical_name``,
  ``canonical_revision`` and ``cluster_id`` too, but ``ztunnel.state.Workload`` keeps none of
  them, so they are derived here the way istiod derives them; ``Workload.name`` is the pod's
  name, where Istio reports the owning Deployment's.)
- ``destination_service`` is the service's FQDN (``reviews.default.svc.cluster.local``), with
  ``destination_service_name``/``_namespace`` taken from it when not given.
- ``request_protocol`` is ``http`` or ``grpc`` (``content-type: application/grpc*``);
  ``response_code`` is ``0`` when no response was sent; ``grpc_response_status`` is empty for
  HTTP and, for gRPC, the ``grpc-status`` of the response (trailers, then headers; one or two
  digits, so a bad upstream cannot grow the label set) or else Envoy's HTTP-to-gRPC mapping of
  the response code (``Grpc::Utility::httpToGrpcStatus``); empty when nothing was answered.
- ``response_flags``: Envoy's (``-`` for none; several joined with ``,``):
  ``UH`` no healthy upstream, ``UF`` upstream connection failure, ``UO`` overflow (circuit
  breaker), ``URX`` retry limit exceeded, ``NR`` no route, ``UT`` upstream timeout, ``DI`` delay
  injected, ``FI`` fault injected, ``RL`` rate limited, ``UC`` upstream connection termination,
  ``DC`` downstream connection termination, ``LR`` local reset, ``UR`` upstream reset,
  ``DPE`` downstream protocol error, ``UPE`` upstream protocol error
  (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage).
  An RBAC denial has no flag in Envoy's HTTP log: it shows as 403 with the response code details
  ``rbac_access_denied_matched_policy[none]``.
- ``connection_security_policy``: ``mutual_tls`` (the waypoint is reached through HBONE) unless
  the record says the downstream connection was not mTLS (``none``).

Access log: Istio's default text format
(https://istio.io/latest/docs/tasks/observability/logs/access-log/), Envoy's command operators::

    [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
    %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
    "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER%
    %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
    %REQUESTED_SERVER_NAME% %ROUTE_NAME%

on one line, ``-`` for every empty value, START_TIME as ``2024-01-01T00:00:00.000Z`` (UTC,
milliseconds), DURATION in whole milliseconds. Where this differs from Envoy, it is to keep
secrets and forged lines out of the log: the record holds no request headers at all (so never
``Authorization``), the value of any query parameter whose name ends in ``token`` (JWT's
``access_token``) is replaced by ``REDACTED``, and control characters in client-supplied values
are escaped (``\\n`` -> ``\\x0a``) so one request is always one line. Spaces in the response
code details become ``_``, as Envoy does.

:func:`record` and :func:`access_log_line` run on every request: :func:`record` resolves the
metric children of a label set once and keeps them per (source, destination, outcome), and the
START_TIME prefix is formatted once per second.

Use: :func:`begin` makes the record from the request as received, :func:`set_response` adds the
response, the pipeline fills in the rest (peers, upstream, flags, details, duration), then
:func:`record` and :func:`write_access_log`; :func:`span_tags` gives the request span's tags.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from waypoint.http import Request, Response
from ztunnel.state import Workload

access_log = logging.getLogger("waypoint.access")

REPORTER: Final = "waypoint"
CLUSTER_ID: Final = "Kubernetes"  # the control plane's cluster id (controlplane/index.py)
UNKNOWN: Final = "unknown"

# Envoy's default histogram buckets, used by Istio for every standard histogram.
ENVOY_DEFAULT_BUCKETS: Final[tuple[float, ...]] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000,
)
DURATION_BUCKETS_MS: Final = ENVOY_DEFAULT_BUCKETS
BYTES_BUCKETS: Final = ENVOY_DEFAULT_BUCKETS

HTTP_LABELS: Final[tuple[str, ...]] = (
    "reporter",
    "source_workload", "source_canonical_service", "source_canonical_revision",
    "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_principal",
    "destination_app", "destination_version", "destination_service",
    "destination_canonical_service", "destination_canonical_revision",
    "destination_service_name", "destination_service_namespace", "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags",
    "connection_security_policy",
)

# Envoy's response flags (the ones the waypoint sets).
NO_FLAGS: Final = "-"
NO_HEALTHY_UPSTREAM: Final = "UH"
UPSTREAM_CONNECTION_FAILURE: Final = "UF"
UPSTREAM_OVERFLOW: Final = "UO"
UPSTREAM_RETRY_LIMIT_EXCEEDED: Final = "URX"
NO_ROUTE: Final = "NR"
UPSTREAM_REQUEST_TIMEOUT: Final = "UT"
DELAY_INJECTED: Final = "DI"
FAULT_INJECTED: Final = "FI"
RATE_LIMITED: Final = "RL"
UPSTREAM_CONNECTION_TERMINATION: Final = "UC"
DOWNSTREAM_CONNECTION_TERMINATION: Final = "DC"
DOWNSTREAM_PROTOCOL_ERROR: Final = "DPE"
UPSTREAM_PROTOCOL_ERROR: Final = "UPE"

# Envoy's response code details (the ones the waypoint sets).
VIA_UPSTREAM: Final = "via_upstream"
RBAC_DENIED: Final = "rbac_access_denied_matched_policy[none]"
FAULT_ABORT: Final = "fault_filter_abort"
ROUTE_NOT_FOUND: Final = "route_not_found"
PER_TRY_TIMEOUT: Final = "upstream_per_try_timeout"
RESPONSE_TIMEOUT: Final = "response_timeout"
DIRECT_RESPONSE: Final = "direct_response"
JWT_INVALID: Final = "jwt_authn_access_denied"

_SERIES_CACHE_MAX: Final = 8192


@dataclass(slots=True)
class RequestRecord:
    """Everything one request's metrics, access log line and span tags need. Times are in
    seconds: ``start_time`` on the wall clock (epoch), ``duration_s`` measured on a monotonic
    clock. Empty strings mean "not known" (``-`` in the log, ``unknown`` in labels)."""

    start_time: float = 0.0
    duration_s: float = 0.0
    method: str = ""
    path: str = ""                        # as received, before any rewrite (with the query)
    request_protocol: str = "http"        # "http" | "grpc": the metrics' request_protocol
    protocol: str = "HTTP/1.1"            # "HTTP/1.1" | "HTTP/1.0" | "HTTP/2": %PROTOCOL%
    authority: str = ""
    user_agent: str = ""
    request_id: str = ""
    forwarded_for: str = ""
    response_code: int = 0                # 0: no response was sent
    response_flags: str = NO_FLAGS
    response_code_details: str = ""       # e.g. via_upstream, route_not_found
    connection_termination_details: str = ""
    upstream_transport_failure_reason: str = ""
    bytes_received: int = 0               # request body
    bytes_sent: int = 0                   # response body
    upstream_service_time_ms: int | None = None  # X-Envoy-Upstream-Service-Time
    upstream_host: str = ""               # "ip:port" of the endpoint that answered
    upstream_cluster: str = ""            # "outbound|9080|v1|reviews.default.svc.cluster.local"
    upstream_local_address: str = ""
    route_name: str = ""
    downstream_remote: str = ""           # "ip:port" of the client
    downstream_local: str = ""            # "ip:port" the client connected to
    requested_server_name: str = ""
    source: Workload | None = None
    source_principal: str = ""            # proven by mTLS; "" when not
    destination: Workload | None = None
    destination_principal: str = ""       # "" : the destination's identity when enrolled
    destination_service: str = ""         # FQDN, e.g. reviews.default.svc.cluster.local
    destination_service_name: str = ""    # "" : taken from the FQDN
    destination_service_namespace: str = ""
    grpc_status: str = ""                 # grpc-status of the response ("" : none)
    trace_id: str = ""
    mtls: bool = True                     # the downstream connection was mTLS (HBONE)


# --- building a record from the HTTP messages -------------------------------------------------


def begin(req: Request, *, start_time: float, downstream_remote: str = "",
          downstream_local: str = "") -> RequestRecord:
    """A record for ``req`` as received (call before rewriting it: the log shows the original
    path and authority)."""
    content_type = req.header("content-type") or ""
    return RequestRecord(
        start_time=start_time, method=req.method, path=req.path,
        request_protocol="grpc" if content_type.startswith("application/grpc") else "http",
        protocol=req.version, authority=req.authority,
        user_agent=req.header("user-agent") or "", request_id=req.header("x-request-id") or "",
        forwarded_for=req.header("x-forwarded-for") or "", bytes_received=len(req.body),
        downstream_remote=downstream_remote, downstream_local=downstream_local,
    )


def set_response(rec: RequestRecord, resp: Response) -> None:
    """Fills the response's code, body size and, for gRPC, ``grpc-status``."""
    rec.response_code = resp.status
    rec.bytes_sent = len(resp.body)
    if rec.request_protocol == "grpc":
        rec.grpc_status = (_first(resp.trailers, "grpc-status") or resp.header("grpc-status")
                           or "").strip()


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None


# --- metrics -------------------------------------------------------------------------------------


# Envoy's Grpc::Utility::httpToGrpcStatus, used when a gRPC response carries no grpc-status.
_HTTP_TO_GRPC: Final[Mapping[int, int]] = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14,
                                           503: 14, 504: 14}
_GRPC_UNKNOWN: Final = 2

_Children = tuple[object, object, Counter, Histogram, Histogram, Histogram]


class L7Metrics:
    """Istio's four standard HTTP metrics in ``registry`` (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("istio_requests", "Requests handled by the waypoint",
                                HTTP_LABELS, registry=registry)
        self.duration = Histogram("istio_request_duration_milliseconds", "Request duration (ms)",
                                  HTTP_LABELS, registry=registry, buckets=DURATION_BUCKETS_MS)
        self.request_bytes = Histogram("istio_request_bytes", "Request body size (bytes)",
                                       HTTP_LABELS, registry=registry, buckets=BYTES_BUCKETS)
        self.response_bytes = Histogram("istio_response_bytes", "Response body size (bytes)",
                                        HTTP_LABELS, registry=registry, buckets=BYTES_BUCKETS)
        # (id(source), id(destination), the other label inputs) -> (source, destination, children);
        # the workloads are held so their ids cannot be reused while the entry lives
        self._series: dict[tuple[object, ...], _Children] = {}

    def observe(self, rec: RequestRecord) -> None:
        """Counts the request and observes its duration and body sizes (see :func:`record`)."""
        src, dst = rec.source, rec.destination
        key = (id(src), id(dst), rec.source_principal, rec.destination_principal,
               rec.destination_service, rec.destination_service_name,
               rec.destination_service_namespace, rec.request_protocol, rec.response_code,
               rec.grpc_status, rec.response_flags, rec.mtls)
        entry = self._series.get(key)
        if entry is None or entry[0] is not src or entry[1] is not dst:
            values = tuple(labels(rec).values())
            entry = (src, dst, self.requests.labels(*values), self.duration.labels(*values),
                     self.request_bytes.labels(*values), self.response_bytes.labels(*values))
            if len(self._series) >= _SERIES_CACHE_MAX:
                self._series.clear()
            self._series[key] = entry
        entry[2].inc()
        entry[3].observe(rec.duration_s * 1000.0)
        entry[4].observe(rec.bytes_received)
        entry[5].observe(rec.bytes_sent)


def record(metrics: L7Metrics, rec: RequestRecord) -> None:
    """Counts the request in ``istio_requests_total`` and observes its duration (ms) and body
    sizes (bytes) in the three histograms, under :func:`labels` of ``rec``."""
    metrics.observe(rec)


def labels(rec: RequestRecord) -> dict[str, str]:
    """The label values of ``rec``'s series, in :data:`HTTP_LABELS` order."""
    src, dst = rec.source, rec.destination
    if src is not None:
        s_name, s_ns, s_cluster = src.name or UNKNOWN, src.namespace or UNKNOWN, CLUSTER_ID
        s_app, s_version, s_canonical, s_revision = _app_labels(src)
    else:
        s_name = s_ns = s_cluster = s_app = s_version = s_canonical = UNKNOWN
        s_revision = "latest"
    if dst is not None:
        d_name, d_ns, d_cluster = dst.name or UNKNOWN, dst.namespace or UNKNOWN, CLUSTER_ID
        d_app, d_version, d_canonical, d_revision = _app_labels(dst)
        d_principal = rec.destination_principal or (dst.identity if dst.enrolled else UNKNOWN)
    else:
        d_name = d_ns = d_cluster = d_app = d_version = d_canonical = UNKNOWN
        d_revision = "latest"
        d_principal = rec.destination_principal or UNKNOWN
    svc_name, svc_ns = rec.destination_service_name, rec.destination_service_namespace
    if rec.destination_service and not (svc_name and svc_ns):
        parts = rec.destination_service.split(".")
        if len(parts) >= 3 and parts[2] == "svc":
            svc_name, svc_ns = svc_name or parts[0], svc_ns or parts[1]
        else:
            svc_name = svc_name or rec.destination_service
    return {
        "reporter": REPORTER,
        "source_workload": s_name,
        "source_canonical_service": s_canonical,
        "source_canonical_revision": s_revision,
        "source_workload_namespace": s_ns,
        "source_principal": rec.source_principal or UNKNOWN,
        "source_app": s_app,
        "source_version": s_version,
        "source_cluster": s_cluster,
        "destination_workload": d_name,
        "destination_workload_namespace": d_ns,
        "destination_principal": d_principal,
        "destination_app": d_app,
        "destination_version": d_version,
        "destination_service": rec.destination_service or UNKNOWN,
        "destination_canonical_service": d_canonical,
        "destination_canonical_revision": d_revision,
        "destination_service_name": svc_name or UNKNOWN,
        "destination_service_namespace": svc_ns or UNKNOWN,
        "destination_cluster": d_cluster,
        "request_protocol": rec.request_protocol or "http",
        "response_code": str(rec.response_code),
        "grpc_response_status": _grpc_status(rec),
        "response_flags": rec.response_flags or NO_FLAGS,
        "connection_security_policy": "mutual_tls" if rec.mtls else "none",
    }


def _app_labels(w: Workload) -> tuple[str, str, str, str]:
    """(app, version, canonical service, canonical revision) of a workload."""
    lb = w.labels
    app = lb.get("app") or lb.get("app.kubernetes.io/name") or UNKNOWN
    version = lb.get("version") or lb.get("app.kubernetes.io/version") or UNKNOWN
    canonical = (lb.get("service.istio.io/canonical-name") or lb.get("app.kubernetes.io/name")
                 or lb.get("app") or w.name or UNKNOWN)
    revision = (lb.get("service.istio.io/canonical-revision") or lb.get("app.kubernetes.io/version")
                or lb.get("version") or "latest")
    return app, version, canonical, revision


def _grpc_status(rec: RequestRecord) -> str:
    if rec.request_protocol != "grpc":
        return ""
    status = rec.grpc_status
    if status and status.isdigit() and len(status) <= 2:  # 0-16 (a bounded label)
        return status
    if rec.response_code == 0:
        return ""
    return str(_HTTP_TO_GRPC.get(rec.response_code, _GRPC_UNKNOWN))


# --- access log ------------------------------------------------------------------------------------


_time_prefix: tuple[int, str] = (-1, "")


def format_start_time(epoch: float) -> str:
    """Envoy's default START_TIME: ``2024-01-01T00:00:00.000Z``."""
    global _time_prefix
    micros = round(epoch * 1_000_000)
    second, ms = divmod(micros // 1000, 1000)
    cached_second, prefix = _time_prefix
    if cached_second != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _time_prefix = (second, prefix)
    return f"{prefix}.{ms:03d}Z"


_ESCAPES: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def _clean(value: str) -> str:
    """A client-supplied value on one line: ``-`` when empty, control characters escaped."""
    if not value:
        return "-"
    if value.isprintable():
        return value
    return value.translate(_ESCAPES)


def _details(value: str) -> str:
    if not value:
        return "-"
    return _clean(value.replace(" ", "_")) if " " in value else _clean(value)


def redact_path(path: str) -> str:
    """``path`` with the values of query parameters named ``*token`` replaced by ``REDACTED``."""
    if "token" not in path.lower():
        return path
    base, sep, query = path.partition("?")
    if not sep:
        return path
    params = []
    for param in query.split("&"):
        name, eq, _ = param.partition("=")
        params.append(f"{name}=REDACTED" if eq and name.lower().endswith("token") else param)
    return f"{base}?{'&'.join(params)}"


def access_log_line(rec: RequestRecord) -> str:
    """Istio's default access log line for ``rec`` (see the module docstring)."""
    return (
        f'[{format_start_time(rec.start_time)}] '
        f'"{_clean(rec.method)} {_clean(redact_path(rec.path))} {rec.protocol or "-"}" '
        f'{rec.response_code} {rec.response_flags or "-"} {_details(rec.response_code_details)} '
        f'{_details(rec.connection_termination_details)} '
        f'"{_clean(rec.upstream_transport_failure_reason)}" '
        f'{rec.bytes_received} {rec.bytes_sent} {int(rec.duration_s * 1000)} '
        f'{"-" if rec.upstream_service_time_ms is None else rec.upstream_service_time_ms} '
        f'"{_clean(rec.forwarded_for)}" "{_clean(rec.user_agent)}" "{_clean(rec.request_id)}" '
        f'"{_clean(rec.authority)}" "{rec.upstream_host or "-"}" {rec.upstream_cluster or "-"} '
        f'{rec.upstream_local_address or "-"} {rec.downstream_local or "-"} '
        f'{rec.downstream_remote or "-"} {_clean(rec.requested_server_name)} '
        f'{_clean(rec.route_name)}'
    )


def write_access_log(rec: RequestRecord) -> None:
    """Logs ``rec``'s line at INFO on ``waypoint.access`` (formatted only when enabled)."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("%s", access_log_line(rec))


# --- span tags -------------------------------------------------------------------------------------


def span_tags(rec: RequestRecord, *, node_id: str = "", canonical_service: str = "",
              canonical_revision: str = "", namespace: str = "") -> dict[str, str]:
    """The tags Envoy puts on a request's span (``HttpTracerUtility``, plus Istio's ``istio.*``
    ones naming the proxy's own workload): method, URL, protocol, status code, sizes, upstream
    cluster, response flags, request id, and ``error: true`` for a 5xx or no response."""
    tags = {
        "component": "proxy",
        "http.method": rec.method,
        "http.url": f"http://{rec.authority}{redact_path(rec.path)}",
        "http.protocol": rec.protocol,
        "http.status_code": str(rec.response_code),
        "request_size": str(rec.bytes_received),
        "response_size": str(rec.bytes_sent),
        "response_flags": rec.response_flags or NO_FLAGS,
        "upstream_cluster": rec.upstream_cluster or "-",
        "upstream_cluster.name": rec.upstream_cluster or "-",
        "downstream_cluster": "-",
        "user_agent": rec.user_agent or "-",
        "peer.address": rec.downstream_remote.rsplit(":", 1)[0] or "-",
    }
    if rec.request_id:
        tags["guid:x-request-id"] = rec.request_id
    if node_id:
        tags["node_id"] = node_id
    if canonical_service:
        tags["istio.canonical_service"] = canonical_service
    if canonical_revision:
        tags["istio.canonical_revision"] = canonical_revision
    if namespace:
        tags["istio.namespace"] = namespace
    if rec.request_protocol == "grpc":
        status = _grpc_status(rec)
        if status:
            tags["grpc.status_code"] = status
    if rec.response_code == 0 or rec.response_code >= 500:
        tags["error"] = "true"
    return tags
