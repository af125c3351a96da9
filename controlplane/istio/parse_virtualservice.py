"""VirtualService: reading ``spec`` with Istio's validation rules (hosts and gateways, HTTP
routes with matches, weighted destinations, redirects, direct responses, delegation, rewrites,
retries, fault injection, mirroring, header manipulation, CORS; TCP and TLS routes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from controlplane.istio.checks import check_cidr_or_ip, check_fqdn, check_header_name, check_regex
from controlplane.istio.networking import (
    CorsPolicy,
    Delegate,
    HeaderOperations,
    Headers,
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
    IstioHTTPRoute,
    L4MatchAttributes,
    RegexRewrite,
    RouteDestination,
    StringMatch,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
    VirtualService,
)
from controlplane.istio.parse_common import (
    read_destination,
    read_export_to,
    read_header_matches,
    read_hosts,
    read_meta,
    read_port,
    read_string_match,
)
from controlplane.istio.reader import IstioReader, item, sub
from controlplane.k8s.names import check_dns1123_label

__all__ = ["GRPC_STATUSES", "RETRY_ON", "read_virtual_service"]

MESH_GATEWAY: Final = "mesh"

RETRY_ON: Final = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
"""Envoy's retry conditions Istio accepts in ``retryOn`` (besides HTTP status codes)."""

GRPC_STATUSES: Final = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
_CORS_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_WEIGHTS_RULE: Final = "weights of the route's destinations must add up to 100"


def read_virtual_service(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> VirtualService:
    meta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "VirtualService")
    gateways = _gateway_names(r, spec, "spec")
    to_mesh = not gateways or MESH_GATEWAY in gateways
    hosts = read_hosts(r, spec, "hosts", "spec", allow_ip=True)
    for index, host in enumerate(hosts):
        if host == "*" and to_mesh:
            r.fail(
                item("spec.hosts", index),
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                host,
            )
        if host in hosts[:index]:
            r.fail(item("spec.hosts", index), "must not repeat a host", host)

    http_path, tcp_path, tls_path = "spec.http", "spec.tcp", "spec.tls"
    http_entries = r.sequence(spec.get("http"), http_path)
    tcp_entries = r.sequence(spec.get("tcp"), tcp_path)
    tls_entries = r.sequence(spec.get("tls"), tls_path)
    delegate_vs = not hosts
    if delegate_vs:
        if not http_entries:
            r.fail(
                "spec.hosts",
                "must list at least one host (only a delegate VirtualService, "
                "which has http routes, may have none)",
            )
        if gateways:
            r.fail(
                "spec.gateways", "must be empty in a delegate VirtualService (one without hosts)"
            )
        if tcp_entries or tls_entries:
            r.fail(
                tcp_path if tcp_entries else tls_path,
                "delegate VirtualServices (without hosts) may only have http routes",
            )
    if not (http_entries or tcp_entries or tls_entries):
        r.fail("spec", "at least one of http, tcp or tls routes must be provided")

    http = tuple(
        _http_route(r, entry, item(http_path, i), delegate_vs)
        for i, entry in enumerate(http_entries)
    )
    tcp = tuple(_tcp_route(r, entry, item(tcp_path, i)) for i, entry in enumerate(tcp_entries))
    tls = tuple(
        _tls_route(r, entry, item(tls_path, i), hosts) for i, entry in enumerate(tls_entries)
    )
    return VirtualService(
        meta=meta,
        api_version=api_version,
        hosts=hosts,
        gateways=gateways,
        http=http,
        tcp=tcp,
        tls=tls,
        export_to=read_export_to(r, spec, "spec"),
    )


def _gateway_names(r: IstioReader, parent: Mapping[str, object], path: str) -> tuple[str, ...]:
    """``mesh``, ``<name>``, ``<namespace>/<name>`` (or the legacy ``<name>.<namespace>``)."""
    field = sub(path, "gateways")
    names = r.string_list(parent, "gateways", path)
    for index, name in enumerate(names):
        where = item(field, index)
        if name == MESH_GATEWAY:
            continue
        namespace, slash, gateway = name.partition("/")
        if not slash:
            r.check(where, name, check_fqdn)
            continue
        if not namespace or not gateway:
            r.fail(where, "namespace and gateway name must not be empty", name)
        if check_dns1123_label(namespace) is not None:
            r.fail(where, "the namespace before '/' must be a DNS-1123 label", name)
        if check_dns1123_label(gateway) is not None:
            r.fail(where, "the gateway name after '/' must be a DNS-1123 label", name)
    return names


# --- HTTP -----------------------------------------------------------------------------------
def _http_route(r: IstioReader, value: object, path: str, in_delegate: bool) -> IstioHTTPRoute:
    if value is None:
        r.fail(path, "http route must not be null")
    f = r.mapping(value, path, "HTTPRoute")
    name = r.opt_str(f, "name", path)
    route_entries = r.sequence(f.get("route"), sub(path, "route"))
    targets = [
        key
        for key, present in (
            ("route", bool(route_entries)),
            ("redirect", f.get("redirect") is not None),
            ("directResponse", f.get("directResponse") is not None),
            ("delegate", f.get("delegate") is not None),
        )
        if present
    ]
    if not targets:
        r.fail(path, "must have one of route, redirect, directResponse or delegate")
    if len(targets) > 1:
        r.fail(
            sub(path, targets[1]),
            f"only one of route, redirect, directResponse and delegate may be set "
            f"(found {' and '.join(targets)})",
        )
    if f.get("delegate") is not None and in_delegate:
        r.fail(sub(path, "delegate"), "a delegate VirtualService's route cannot delegate again")
    if f.get("redirect") is not None:
        for other in ("fault", "rewrite"):
            if f.get(other) is not None:
                r.fail(sub(path, other), f"an http route with a redirect cannot have {other}")
    match_path = sub(path, "match")
    matches = tuple(
        _match_request(r, entry, item(match_path, i), regex_allowed=not in_delegate)
        for i, entry in enumerate(r.sequence(f.get("match"), match_path))
    )
    route = _http_destinations(r, route_entries, sub(path, "route"))
    headers = _headers(r, f.get("headers"), sub(path, "headers"))
    rewrite = _rewrite(r, f.get("rewrite"), sub(path, "rewrite"))
    if rewrite is not None and rewrite.authority and headers is not None:
        for key in (*headers.request.set, *headers.request.add):
            if key.lower() in (":authority", "host"):
                r.fail(
                    sub(path, "headers.request"),
                    "the authority cannot be set both by rewrite.authority and a header",
                    key,
                )
    mirror_form = r.one_of(f, ("mirror", "mirrors"), path)
    mirror = None
    mirror_percentage: float | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    if mirror_form == "mirror":
        mirror = read_destination(r, f["mirror"], sub(path, "mirror"))
        mirror_percentage = r.percentage(f, "mirrorPercentage", path)
        if mirror_percentage is None and f.get("mirrorPercent") is not None:
            mirror_percentage = float(
                r.integer(f["mirrorPercent"], sub(path, "mirrorPercent"), 0, 100)
            )
    elif mirror_form == "mirrors":
        if f.get("mirrorPercentage") is not None or f.get("mirrorPercent") is not None:
            r.fail(
                sub(path, "mirrorPercentage"),
                "use mirrors[].percentage with mirrors (mirrorPercentage is for mirror)",
            )
        mirrors_path = sub(path, "mirrors")
        mirrors = tuple(
            _mirror_policy(r, entry, item(mirrors_path, i))
            for i, entry in enumerate(r.sequence(f["mirrors"], mirrors_path))
        )
    return IstioHTTPRoute(
        name=name,
        match=matches,
        route=route,
        redirect=_redirect(r, f.get("redirect"), sub(path, "redirect")),
        direct_response=_direct_response(r, f.get("directResponse"), sub(path, "directResponse")),
        delegate=_delegate(r, f.get("delegate"), sub(path, "delegate")),
        rewrite=rewrite,
        timeout=r.duration(f, "timeout", path, allow_zero=True),
        retries=_retries(r, f.get("retries"), sub(path, "retries")),
        fault=_fault(r, f.get("fault"), sub(path, "fault")),
        mirror=mirror,
        mirror_percentage=mirror_percentage,
        mirrors=mirrors,
        headers=headers,
        cors_policy=_cors(r, f.get("corsPolicy"), sub(path, "corsPolicy")),
    )


def _match_request(
    r: IstioReader, value: object, path: str, *, regex_allowed: bool
) -> HTTPMatchRequest:
    if value is None:
        r.fail(path, "match must not be null")
    f = r.mapping(value, path, "HTTPMatchRequest")
    singles: dict[str, StringMatch] = {}
    for key in ("uri", "scheme", "method", "authority"):
        if f.get(key) is not None:
            singles[key] = read_string_match(r, f[key], sub(path, key))
            if singles[key].type == "regex" and not regex_allowed:
                r.fail(
                    sub(path, key),
                    "regex matches are not supported in a delegate VirtualService",
                    singles[key].value,
                )
    port = None if f.get("port") is None else read_port(r, f["port"], sub(path, "port"))
    source_namespace = r.opt_str(f, "sourceNamespace", path)
    if source_namespace is not None:
        r.check(sub(path, "sourceNamespace"), source_namespace, check_dns1123_label)
    headers = read_header_matches(r, f.get("headers"), sub(path, "headers"), header_names=True)
    without = read_header_matches(
        r, f.get("withoutHeaders"), sub(path, "withoutHeaders"), header_names=True
    )
    params = read_header_matches(
        r, f.get("queryParams"), sub(path, "queryParams"), header_names=False
    )
    if not regex_allowed:
        for key, group in (
            ("headers", headers),
            ("withoutHeaders", without),
            ("queryParams", params),
        ):
            for name, match in group.items():
                if match.type == "regex":
                    r.fail(
                        item(sub(path, key), name),
                        "regex matches are not supported in a delegate VirtualService",
                        match.value,
                    )
    return HTTPMatchRequest(
        name=r.opt_str(f, "name", path),
        uri=singles.get("uri"),
        scheme=singles.get("scheme"),
        method=singles.get("method"),
        authority=singles.get("authority"),
        headers=headers,
        without_headers=without,
        query_params=params,
        ignore_uri_case=r.boolean(f, "ignoreUriCase", path) or False,
        port=port,
        source_labels=r.labels(f.get("sourceLabels"), sub(path, "sourceLabels")),
        gateways=_gateway_names(r, f, path),
        source_namespace=source_namespace,
    )


def _check_weights(r: IstioReader, weights: list[int], path: str) -> None:
    if len(weights) > 1 and sum(weights) != 100:
        r.fail(item(path, len(weights) - 1) + ".weight", _WEIGHTS_RULE, sum(weights))


def _http_destinations(
    r: IstioReader, entries: object, path: str
) -> tuple[HTTPRouteDestination, ...]:
    result: list[HTTPRouteDestination] = []
    for index, entry in enumerate(r.sequence(entries, path)):
        where = item(path, index)
        if entry is None:
            r.fail(where, "must be a mapping with a destination")
        f = r.mapping(entry, where, "HTTPRouteDestination")
        result.append(
            HTTPRouteDestination(
                destination=read_destination(r, f.get("destination"), sub(where, "destination")),
                weight=r.optional_integer(f, "weight", where, 0, 100, 0),
                headers=_headers(r, f.get("headers"), sub(where, "headers")),
            )
        )
    _check_weights(r, [d.weight for d in result], path)
    return tuple(result)


def _route_destinations(r: IstioReader, entries: object, path: str) -> tuple[RouteDestination, ...]:
    result: list[RouteDestination] = []
    for index, entry in enumerate(r.sequence(entries, path)):
        where = item(path, index)
        if entry is None:
            r.fail(where, "must be a mapping with a destination")
        f = r.mapping(entry, where, "RouteDestination")
        result.append(
            RouteDestination(
                destination=read_destination(r, f.get("destination"), sub(where, "destination")),
                weight=r.optional_integer(f, "weight", where, 0, 100, 0),
            )
        )
    _check_weights(r, [d.weight for d in result], path)
    return tuple(result)


def _header_operations(
    r: IstioReader, value: object, path: str, *, request: bool
) -> HeaderOperations:
    f = r.mapping(value, path, "HeaderOperations")
    set_ = r.string_map(f.get("set"), sub(path, "set"))
    add = r.string_map(f.get("add"), sub(path, "add"))
    remove = r.string_list(f, "remove", path)
    for key, names in (("set", list(set_)), ("add", list(add)), ("remove", list(remove))):
        for name in names:
            where = item(sub(path, key), name) if key != "remove" else sub(path, key)
            rule = check_header_name(name)
            if rule is not None:
                r.fail(where, rule, name)
            authority = name.lower() in (":authority", "host")
            if name.startswith(":") and not (request and key != "remove" and authority):
                r.fail(where, "pseudo-headers (':' prefix) cannot be changed", name)
    return HeaderOperations(set=set_, add=add, remove=remove)


def _headers(r: IstioReader, value: object, path: str) -> Headers | None:
    if value is None:
        return None
    f = r.mapping(value, path, "Headers")
    return Headers(
        request=_header_operations(r, f.get("request"), sub(path, "request"), request=True),
        response=_header_operations(r, f.get("response"), sub(path, "response"), request=False),
    )


def _redirect(r: IstioReader, value: object, path: str) -> HTTPRedirect | None:
    if value is None:
        return None
    f = r.mapping(value, path, "HTTPRedirect")
    if not any(f.get(k) is not None for k in ("uri", "authority", "port", "derivePort", "scheme")):
        r.fail(path, "redirect must set at least one of uri, authority, scheme, port or derivePort")
    r.one_of(f, ("port", "derivePort"), path)
    scheme = r.opt_str(f, "scheme", path)
    if scheme is not None and scheme not in ("http", "https"):
        r.fail(sub(path, "scheme"), 'must be "http" or "https"', scheme)
    derive = r.choice(f, "derivePort", path, ("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"), "")
    return HTTPRedirect(
        uri=r.opt_str(f, "uri", path),
        authority=r.opt_str(f, "authority", path),
        port=None if f.get("port") is None else read_port(r, f["port"], sub(path, "port")),
        derive_port=derive or None,
        scheme=scheme,
        redirect_code=r.optional_integer(f, "redirectCode", path, 300, 399, 301),
    )


def _direct_response(r: IstioReader, value: object, path: str) -> HTTPDirectResponse | None:
    if value is None:
        return None
    f = r.mapping(value, path, "HTTPDirectResponse")
    status = r.integer(r.required(f, "status", path), sub(path, "status"), 200, 599)
    body_string = body_bytes = None
    if f.get("body") is not None:
        body_path = sub(path, "body")
        body = r.mapping(f["body"], body_path, "HTTPBody")
        r.one_of(body, ("string", "bytes"), body_path)
        body_string = r.opt_str(body, "string", body_path)
        body_bytes = r.opt_str(body, "bytes", body_path)
        size = len(body_string or body_bytes or "")
        if size > 1024 * 1024:
            r.fail(body_path, "must be smaller than 1MB", f"{size} bytes")
    return HTTPDirectResponse(status=status, body_string=body_string, body_bytes=body_bytes)


def _delegate(r: IstioReader, value: object, path: str) -> Delegate | None:
    if value is None:
        return None
    f = r.mapping(value, path, "Delegate")
    name = r.required_string(f, "name", path)
    namespace = r.opt_str(f, "namespace", path)
    if namespace is not None:
        r.check(sub(path, "namespace"), namespace, check_dns1123_label)
    return Delegate(name=name, namespace=namespace)


def _rewrite(r: IstioReader, value: object, path: str) -> HTTPRewrite | None:
    if value is None:
        return None
    f = r.mapping(value, path, "HTTPRewrite")
    uri = r.opt_str(f, "uri", path)
    if uri is not None and f.get("uriRegexRewrite") is not None:
        r.fail(sub(path, "uriRegexRewrite"), "only one of uri and uriRegexRewrite may be set")
    regex = None
    if f.get("uriRegexRewrite") is not None:
        regex_path = sub(path, "uriRegexRewrite")
        rf = r.mapping(f["uriRegexRewrite"], regex_path, "RegexRewrite")
        match = r.required_string(rf, "match", regex_path)
        r.check(sub(regex_path, "match"), match, check_regex)
        regex = RegexRewrite(match=match, rewrite=r.required_string(rf, "rewrite", regex_path))
    authority = r.opt_str(f, "authority", path)
    if uri is None and regex is None and authority is None:
        r.fail(path, "rewrite must set at least one of uri, uriRegexRewrite or authority")
    return HTTPRewrite(uri=uri, authority=authority, uri_regex_rewrite=regex)


def _retries(r: IstioReader, value: object, path: str) -> HTTPRetry | None:
    if value is None:
        return None
    f = r.mapping(value, path, "HTTPRetry")
    attempts_value = f.get("attempts")
    attempts = (
        0
        if attempts_value is None
        else r.integer(attempts_value, sub(path, "attempts"), 0, 2**31 - 1)
    )
    per_try = r.duration(f, "perTryTimeout", path)
    retry_on_text = r.opt_str(f, "retryOn", path)
    retry_on: tuple[str, ...] = ()
    if retry_on_text is not None:
        retry_on = tuple(part.strip() for part in retry_on_text.split(","))
        for policy in retry_on:
            if policy not in RETRY_ON and not (policy.isdigit() and 100 <= int(policy) <= 599):
                r.fail(
                    sub(path, "retryOn"),
                    "is not a valid retryOn policy (Envoy retry "
                    "conditions such as 5xx,connect-failure, or HTTP status codes)",
                    policy,
                )
    remote = r.boolean(f, "retryRemoteLocalities", path)
    if attempts == 0 and (per_try is not None or retry_on or remote is not None):
        # istiod warns and accepts (validation.go validateHTTPRetry: WrapWarning)
        r.warn(f"{sub(path, 'attempts')}: http retry policy configured when attempts are set to 0 (disabled)")
    r.duration(f, "backoff", path)
    return HTTPRetry(
        attempts=attempts,
        per_try_timeout=per_try,
        retry_on=retry_on,
        retry_remote_localities=remote,
    )


def _fault(r: IstioReader, value: object, path: str) -> HTTPFaultInjection | None:
    if value is None:
        return None
    f = r.mapping(value, path, "HTTPFaultInjection")
    if f.get("delay") is None and f.get("abort") is None:
        r.fail(path, "fault injection must have an abort and/or a delay")
    delay = abort = None
    if f.get("delay") is not None:
        delay_path = sub(path, "delay")
        d = r.mapping(f["delay"], delay_path, "Delay")
        which = r.one_of(d, ("fixedDelay", "exponentialDelay"), delay_path)
        if which is None:
            r.fail(delay_path, "must set fixedDelay")
        if which == "exponentialDelay":
            r.fail(sub(delay_path, which), "exponentialDelay is not supported (use fixedDelay)")
        fixed = r.duration(d, "fixedDelay", delay_path)
        assert fixed is not None  # which == "fixedDelay"
        delay = HTTPFaultDelay(fixed_delay=fixed, percentage=_fault_percentage(r, d, delay_path))
    if f.get("abort") is not None:
        abort_path = sub(path, "abort")
        a = r.mapping(f["abort"], abort_path, "Abort")
        which = r.one_of(a, ("httpStatus", "grpcStatus", "http2Error"), abort_path)
        if which is None:
            r.fail(abort_path, "must set httpStatus or grpcStatus")
        if which == "http2Error":
            r.fail(sub(abort_path, which), "HTTP/2 error aborts are not supported")
        http_status = grpc_status = None
        if which == "httpStatus":
            http_status = r.integer(a["httpStatus"], sub(abort_path, which), 200, 599)
        else:
            grpc_status = r.choice(a, "grpcStatus", abort_path, GRPC_STATUSES, "")
        abort = HTTPFaultAbort(
            http_status=http_status,
            grpc_status=grpc_status,
            percentage=r.percentage(a, "percentage", abort_path),
        )
    return HTTPFaultInjection(delay=delay, abort=abort)


def _fault_percentage(r: IstioReader, f: Mapping[str, object], path: str) -> float | None:
    percentage = r.percentage(f, "percentage", path)
    if f.get("percent") is not None:
        percent = r.integer(f["percent"], sub(path, "percent"), 0, 100)
        if percentage is None:
            percentage = float(percent)
    return percentage


def _mirror_policy(r: IstioReader, value: object, path: str) -> HTTPMirrorPolicy:
    if value is None:
        r.fail(path, "must be a mapping with a destination")
    f = r.mapping(value, path, "HTTPMirrorPolicy")
    return HTTPMirrorPolicy(
        destination=read_destination(r, f.get("destination"), sub(path, "destination")),
        percentage=r.percentage(f, "percentage", path),
    )


def _cors(r: IstioReader, value: object, path: str) -> CorsPolicy | None:
    if value is None:
        return None
    f = r.mapping(value, path, "CorsPolicy")
    origins_path = sub(path, "allowOrigins")
    origins = tuple(
        read_string_match(r, entry, item(origins_path, i))
        for i, entry in enumerate(r.sequence(f.get("allowOrigins"), origins_path))
    )
    for index, origin in enumerate(origins):
        if origin.type == "any" or not origin.value:
            r.fail(
                item(origins_path, index), "must set exact, prefix or regex to a non-empty value"
            )
    legacy = r.string_list(f, "allowOrigin", path)
    origins += tuple(StringMatch(type="exact", value=value) for value in legacy)
    methods = r.string_list(f, "allowMethods", path)
    for index, method in enumerate(methods):
        if method not in _CORS_METHODS and method != "*":
            r.fail(item(sub(path, "allowMethods"), index), "is not a supported HTTP method", method)
    headers: dict[str, tuple[str, ...]] = {}
    for key in ("allowHeaders", "exposeHeaders"):
        headers[key] = r.string_list(f, key, path)
        for index, name in enumerate(headers[key]):
            if name != "*" and check_header_name(name) is not None:
                r.fail(item(sub(path, key), index), "must be a valid HTTP header name", name)
    max_age = r.duration(f, "maxAge", path)
    if max_age is not None and max_age.seconds != int(max_age.seconds):
        r.fail(sub(path, "maxAge"), "is accurate only to seconds precision", max_age.text)
    return CorsPolicy(
        allow_origins=origins,
        allow_methods=methods,
        allow_headers=headers["allowHeaders"],
        expose_headers=headers["exposeHeaders"],
        max_age=max_age,
        allow_credentials=r.boolean(f, "allowCredentials", path),
        unmatched_preflights=r.choice(
            f, "unmatchedPreflights", path, ("UNSPECIFIED", "FORWARD", "IGNORE"), ""
        )
        or None,
    )


# --- TCP and TLS ----------------------------------------------------------------------------
def _subnets(r: IstioReader, f: Mapping[str, object], path: str) -> tuple[str, ...]:
    field = sub(path, "destinationSubnets")
    subnets = r.string_list(f, "destinationSubnets", path)
    for index, subnet in enumerate(subnets):
        r.check(item(field, index), subnet, check_cidr_or_ip)
    return subnets


def _tcp_route(r: IstioReader, value: object, path: str) -> TCPRoute:
    if value is None:
        r.fail(path, "tcp route must not be null")
    f = r.mapping(value, path, "TCPRoute")
    match_path = sub(path, "match")
    matches: list[L4MatchAttributes] = []
    for index, entry in enumerate(r.sequence(f.get("match"), match_path)):
        where = item(match_path, index)
        if entry is None:
            r.fail(where, "match must not be null")
        m = r.mapping(entry, where, "L4MatchAttributes")
        namespace = r.opt_str(m, "sourceNamespace", where)
        if namespace is not None:
            r.check(sub(where, "sourceNamespace"), namespace, check_dns1123_label)
        matches.append(
            L4MatchAttributes(
                destination_subnets=_subnets(r, m, where),
                port=None if m.get("port") is None else read_port(r, m["port"], sub(where, "port")),
                source_labels=r.labels(m.get("sourceLabels"), sub(where, "sourceLabels")),
                gateways=_gateway_names(r, m, where),
                source_namespace=namespace,
            )
        )
    if not r.sequence(f.get("route"), sub(path, "route")):
        r.fail(sub(path, "route"), "tcp route must list at least one destination")
    return TCPRoute(
        match=tuple(matches), route=_route_destinations(r, f.get("route"), sub(path, "route"))
    )


def _tls_route(r: IstioReader, value: object, path: str, hosts: tuple[str, ...]) -> TLSRoute:
    if value is None:
        r.fail(path, "tls route must not be null")
    f = r.mapping(value, path, "TLSRoute")
    match_path = sub(path, "match")
    entries = r.sequence(f.get("match"), match_path)
    if not entries:
        r.fail(match_path, "tls route must have at least one match")
    matches: list[TLSMatchAttributes] = []
    for index, entry in enumerate(entries):
        where = item(match_path, index)
        if entry is None:
            r.fail(where, "match must not be null")
        m = r.mapping(entry, where, "TLSMatchAttributes")
        sni_hosts = read_hosts(r, m, "sniHosts", where)
        if not sni_hosts:
            r.fail(sub(where, "sniHosts"), "must list at least one SNI host")
        for sni_index, sni in enumerate(sni_hosts):
            if not any(_host_subset(sni, host) for host in hosts):
                r.fail(
                    item(sub(where, "sniHosts"), sni_index),
                    "must be covered by one of the VirtualService's hosts",
                    sni,
                )
        namespace = r.opt_str(m, "sourceNamespace", where)
        if namespace is not None:
            r.check(sub(where, "sourceNamespace"), namespace, check_dns1123_label)
        matches.append(
            TLSMatchAttributes(
                sni_hosts=sni_hosts,
                destination_subnets=_subnets(r, m, where),
                port=None if m.get("port") is None else read_port(r, m["port"], sub(where, "port")),
                source_labels=r.labels(m.get("sourceLabels"), sub(where, "sourceLabels")),
                gateways=_gateway_names(r, m, where),
                source_namespace=namespace,
            )
        )
    if not r.sequence(f.get("route"), sub(path, "route")):
        r.fail(sub(path, "route"), "tls route must list at least one destination")
    return TLSRoute(
        match=tuple(matches), route=_route_destinations(r, f.get("route"), sub(path, "route"))
    )


def _host_subset(name: str, host: str) -> bool:
    """Istio's ``SubsetOf``: ``name`` is matched by ``host`` (with wildcards)."""
    if host == "*" or name == host:
        return True
    if host.startswith("*."):
        suffix = host[1:]
        if name.startswith("*."):
            return name[1:].endswith(suffix)
        return name.endswith(suffix)
    return False
