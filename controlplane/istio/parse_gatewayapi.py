"""Gateway API kinds (``gateway.networking.k8s.io``): Gateway, HTTPRoute and GatewayClass, read
with the rules of the Gateway API's CRD schemas and CEL validations (limits, name and hostname
patterns, filter type/configuration agreement, Service backends with ports, durations).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from controlplane.istio.checks import check_header_name, check_regex, is_ip
from controlplane.istio.durations import Duration, parse_gateway_api_duration
from controlplane.istio.frozendict import freeze_json
from controlplane.istio.gatewayapi import (
    GATEWAY_API_GROUP,
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
    RouteGroupKind,
)
from controlplane.istio.parse_common import read_meta, read_port
from controlplane.istio.reader import IstioReader, item, sub
from controlplane.k8s.names import check_dns1123_label, check_dns1123_subdomain
from controlplane.k8s.objects import ObjectMeta
from controlplane.k8s.parse_meta import read_label_selector, read_metadata

__all__ = ["FILTER_TYPES", "read_gateway_class", "read_http_route", "read_kubernetes_gateway"]

FILTER_TYPES: Final = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
    "ExternalAuth": "externalAuth",
}
"""Filter types and the configuration field each one requires."""

METHODS: Final = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_HOSTNAME: Final = re.compile(
    r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_SECTION_NAME: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_PROTOCOL: Final = re.compile(
    r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?|[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]+"
)
_CONTROLLER: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
)
_MAX_LISTENERS: Final = 64
_MAX_PARENT_REFS: Final = 32
_MAX_HOSTNAMES: Final = 16
_MAX_RULES: Final = 16
_MAX_MATCHES: Final = 64
_MAX_FILTERS: Final = 16
_MAX_HEADERS: Final = 16
_MAX_WEIGHT: Final = 1_000_000


def _hostname_rule(value: str) -> str | None:
    if len(value) > 253:
        return "must be at most 253 characters"
    if is_ip(value):
        return "must be a hostname, not an IP address"
    if not _HOSTNAME.fullmatch(value):
        return (
            "must be a lowercase DNS hostname, optionally starting with '*.' "
            "(e.g. 'example.com' or '*.example.com')"
        )
    return None


def _section_name_rule(value: str) -> str | None:
    if len(value) > 253 or not _SECTION_NAME.fullmatch(value):
        return "must be a lowercase DNS subdomain (e.g. 'http' or 'http.example')"
    return None


def _count(r: IstioReader, entries: object, path: str, maximum: int) -> list[object]:
    values = list(r.sequence(entries, path))
    if len(values) > maximum:
        r.fail(path, f"must have at most {maximum} entries", f"{len(values)} entries")
    return values


# --- GatewayClass ---------------------------------------------------------------------------
def read_gateway_class(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> GatewayClass:
    meta = read_metadata(
        r, doc, check_name=check_dns1123_subdomain, namespaced=False, default_namespace=""
    )
    spec = r.mapping(doc.get("spec"), "spec", "GatewayClassSpec")
    controller = r.required_string(spec, "controllerName", "spec")
    if len(controller) > 253 or not _CONTROLLER.fullmatch(controller):
        r.fail(
            "spec.controllerName",
            "must be a domain-prefixed path (e.g. 'istio.io/gateway-controller')",
            controller,
        )
    return GatewayClass(
        meta=meta,
        api_version=api_version,
        controller_name=controller,
        description=r.opt_str(spec, "description", "spec"),
    )


# --- Gateway --------------------------------------------------------------------------------
def read_kubernetes_gateway(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> KubernetesGateway:
    meta: ObjectMeta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "GatewaySpec")
    class_name = r.required_string(spec, "gatewayClassName", "spec")
    r.check("spec.gatewayClassName", class_name, check_dns1123_subdomain)
    listeners_path = "spec.listeners"
    entries = _count(r, spec.get("listeners"), listeners_path, _MAX_LISTENERS)
    if not entries:
        r.fail(listeners_path, "a Gateway must have at least one listener")
    listeners: list[Listener] = []
    for index, entry in enumerate(entries):
        where = item(listeners_path, index)
        listener = _listener(r, entry, where)
        for other in listeners:
            if other.name == listener.name:
                r.fail(sub(where, "name"), "listener names must be unique", listener.name)
            if (other.port, other.protocol, other.hostname) == (
                listener.port,
                listener.protocol,
                listener.hostname,
            ):
                r.fail(
                    where,
                    "the combination of port, protocol and hostname must be unique "
                    f"(listener {other.name} has the same)",
                )
        listeners.append(listener)
    addresses_path = "spec.addresses"
    addresses: list[GatewayAddress] = []
    for index, entry in enumerate(_count(r, spec.get("addresses"), addresses_path, 16)):
        where = item(addresses_path, index)
        a = r.mapping(entry, where, "GatewayAddress")
        kind = r.opt_str(a, "type", where) or "IPAddress"
        value = r.required_string(a, "value", where)
        if kind == "IPAddress" and not is_ip(value):
            r.fail(sub(where, "value"), "must be an IP address when type is IPAddress", value)
        if kind == "Hostname":
            r.check(sub(where, "value"), value, _hostname_rule)
        addresses.append(GatewayAddress(value=value, type=kind))
    return KubernetesGateway(
        meta=meta,
        api_version=api_version,
        gateway_class_name=class_name,
        listeners=tuple(listeners),
        addresses=tuple(addresses),
    )


def _listener(r: IstioReader, value: object, path: str) -> Listener:
    if value is None:
        r.fail(path, "must be a mapping with name, port and protocol")
    f = r.mapping(value, path, "Listener")
    name = r.check(sub(path, "name"), r.required_string(f, "name", path), _section_name_rule)
    port = read_port(r, r.required(f, "port", path), sub(path, "port"))
    protocol = r.required_string(f, "protocol", path)
    if len(protocol) > 255 or not _PROTOCOL.fullmatch(protocol):
        r.fail(
            sub(path, "protocol"),
            "must be a protocol name such as HTTP, HTTPS, TLS, TCP, "
            "UDP or HBONE (or a domain-prefixed name)",
            protocol,
        )
    hostname = r.opt_str(f, "hostname", path)
    if hostname is not None:
        r.check(sub(path, "hostname"), hostname, _hostname_rule)
        if protocol in ("TCP", "UDP"):
            r.fail(sub(path, "hostname"), f"must not be set for protocol {protocol}", hostname)
    tls = f.get("tls")
    if tls is not None and protocol in ("HTTP", "TCP", "UDP"):
        r.fail(sub(path, "tls"), f"must not be set for protocol {protocol}")
    if tls is None and protocol == "HTTPS":
        r.fail(sub(path, "tls"), "is required for protocol HTTPS")
    if tls is not None and not isinstance(tls, Mapping):
        r.fail(sub(path, "tls"), "must be a mapping", tls)
    allowed = AllowedRoutes()
    if f.get("allowedRoutes") is not None:
        allowed = _allowed_routes(r, f["allowedRoutes"], sub(path, "allowedRoutes"))
    return Listener(
        name=name,
        port=port,
        protocol=protocol,
        hostname=hostname,
        allowed_routes=allowed,
        tls=freeze_json(tls),
    )


def _allowed_routes(r: IstioReader, value: object, path: str) -> AllowedRoutes:
    f = r.mapping(value, path, "AllowedRoutes")
    origin, selector = "Same", None
    if f.get("namespaces") is not None:
        ns_path = sub(path, "namespaces")
        n = r.mapping(f["namespaces"], ns_path, "RouteNamespaces")
        origin = r.choice(n, "from", ns_path, ("All", "Same", "Selector"), "Same")
        if n.get("selector") is not None:
            selector = read_label_selector(r, n["selector"], sub(ns_path, "selector"))
        if origin == "Selector" and selector is None:
            r.fail(sub(ns_path, "selector"), "is required when from is Selector")
    kinds_path = sub(path, "kinds")
    kinds: list[RouteGroupKind] = []
    for index, entry in enumerate(_count(r, f.get("kinds"), kinds_path, 8)):
        where = item(kinds_path, index)
        k = r.mapping(entry, where, "RouteGroupKind")
        group = k.get("group")
        kinds.append(
            RouteGroupKind(
                kind=r.required_string(k, "kind", where),
                group=GATEWAY_API_GROUP if group is None else r.string(group, sub(where, "group")),
            )
        )
    return AllowedRoutes(namespaces_from=origin, selector=selector, kinds=tuple(kinds))


# --- HTTPRoute ------------------------------------------------------------------------------
def read_http_route(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> HTTPRoute:
    meta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "HTTPRouteSpec")
    parents_path = "spec.parentRefs"
    parents = tuple(
        _parent_ref(r, entry, item(parents_path, i))
        for i, entry in enumerate(_count(r, spec.get("parentRefs"), parents_path, _MAX_PARENT_REFS))
    )
    hostnames_path = "spec.hostnames"
    hostnames = r.strings(spec.get("hostnames"), hostnames_path)
    if len(hostnames) > _MAX_HOSTNAMES:
        r.fail(
            hostnames_path,
            f"must have at most {_MAX_HOSTNAMES} entries",
            f"{len(hostnames)} entries",
        )
    for index, hostname in enumerate(hostnames):
        r.check(item(hostnames_path, index), hostname, _hostname_rule)
    rules_path = "spec.rules"
    rules = tuple(
        _rule(r, entry, item(rules_path, i))
        for i, entry in enumerate(_count(r, spec.get("rules"), rules_path, _MAX_RULES))
    )
    if not rules:
        rules = (HTTPRouteRule(),)  # the API's default: one rule matching every request
    return HTTPRoute(
        meta=meta, api_version=api_version, parent_refs=parents, hostnames=hostnames, rules=rules
    )


def _group(r: IstioReader, f: Mapping[str, object], path: str, default: str) -> str:
    value = f.get("group")
    if value is None:
        return default
    group = r.string(value, sub(path, "group"))
    if group:
        r.check(sub(path, "group"), group, check_dns1123_subdomain)
    return group


def _namespace(r: IstioReader, f: Mapping[str, object], path: str) -> str | None:
    namespace = r.opt_str(f, "namespace", path)
    if namespace is not None:
        r.check(sub(path, "namespace"), namespace, check_dns1123_label)
    return namespace


def _parent_ref(r: IstioReader, value: object, path: str) -> ParentReference:
    if value is None:
        r.fail(path, "must be a mapping with a name")
    f = r.mapping(value, path, "ParentReference")
    section = r.opt_str(f, "sectionName", path)
    if section is not None:
        r.check(sub(path, "sectionName"), section, _section_name_rule)
    return ParentReference(
        name=r.check(
            sub(path, "name"), r.required_string(f, "name", path), check_dns1123_subdomain
        ),
        group=_group(r, f, path, GATEWAY_API_GROUP),
        kind=r.opt_str(f, "kind", path) or "Gateway",
        namespace=_namespace(r, f, path),
        section_name=section,
        port=None if f.get("port") is None else read_port(r, f["port"], sub(path, "port")),
    )


def _rule(r: IstioReader, value: object, path: str) -> HTTPRouteRule:
    if value is None:
        return HTTPRouteRule()
    f = r.mapping(value, path, "HTTPRouteRule")
    matches_path = sub(path, "matches")
    matches = tuple(
        _match(r, entry, item(matches_path, i))
        for i, entry in enumerate(_count(r, f.get("matches"), matches_path, _MAX_MATCHES))
    ) or (HTTPRouteMatch(path=HTTPPathMatch()),)
    filters = _filters(r, f.get("filters"), sub(path, "filters"))
    for index, flt in enumerate(filters):
        rewrite = flt.url_rewrite or flt.request_redirect
        if (
            rewrite is not None
            and rewrite.path is not None
            and (rewrite.path.type == "ReplacePrefixMatch")
        ):
            if len(matches) != 1 or matches[0].path is None or matches[0].path.type != "PathPrefix":
                r.fail(
                    item(sub(path, "filters"), index),
                    "ReplacePrefixMatch needs exactly one match, with a PathPrefix path",
                )
    backends_path = sub(path, "backendRefs")
    backends = tuple(
        _backend_ref(r, entry, item(backends_path, i), weighted=True)
        for i, entry in enumerate(r.sequence(f.get("backendRefs"), backends_path))
    )
    timeouts = None
    if f.get("timeouts") is not None:
        timeouts_path = sub(path, "timeouts")
        t = r.mapping(f["timeouts"], timeouts_path, "HTTPRouteTimeouts")
        request = _gateway_duration(r, t, "request", timeouts_path)
        backend = _gateway_duration(r, t, "backendRequest", timeouts_path)
        if request and backend and request.seconds and backend.seconds > request.seconds:
            r.fail(
                sub(timeouts_path, "backendRequest"),
                f"must not be longer than timeouts.request ({request.text})",
                backend.text,
            )
        timeouts = HTTPRouteTimeouts(request=request, backend_request=backend)
    name = r.opt_str(f, "name", path)
    if name is not None:
        r.check(sub(path, "name"), name, _section_name_rule)
    return HTTPRouteRule(
        name=name, matches=matches, filters=filters, backend_refs=backends, timeouts=timeouts
    )


def _gateway_duration(
    r: IstioReader, f: Mapping[str, object], key: str, path: str
) -> Duration | None:
    value = f.get(key)
    if value is None:
        return None
    text = r.string(value, sub(path, key))
    parsed = parse_gateway_api_duration(text)
    if parsed is None:
        r.fail(
            sub(path, key),
            "must be a Gateway API duration such as 10s, 500ms or 1h30m "
            "(1 to 4 parts of up to 5 digits with unit h, m, s or ms)",
            text,
        )
    return parsed


def _match(r: IstioReader, value: object, path: str) -> HTTPRouteMatch:
    f = r.mapping(value, path, "HTTPRouteMatch")
    path_match = None
    if f.get("path") is not None:
        path_path = sub(path, "path")
        p = r.mapping(f["path"], path_path, "HTTPPathMatch")
        kind = r.choice(
            p, "type", path_path, ("Exact", "PathPrefix", "RegularExpression"), "PathPrefix"
        )
        text = r.opt_str(p, "value", path_path) or "/"
        if len(text) > 1024:
            r.fail(sub(path_path, "value"), "must be at most 1024 characters")
        if kind == "RegularExpression":
            r.check(sub(path_path, "value"), text, check_regex)
        else:
            if not text.startswith("/"):
                r.fail(sub(path_path, "value"), "must be an absolute path (start with '/')", text)
            for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
                if bad in text:
                    r.fail(sub(path_path, "value"), f"must not contain {bad!r}", text)
            if text.endswith(("/..", "/.")):
                r.fail(sub(path_path, "value"), "must not end with '/..' or '/.'", text)
        path_match = HTTPPathMatch(type=kind, value=text)
    method = r.choice(f, "method", path, METHODS, "") or None
    return HTTPRouteMatch(
        path=path_match,
        headers=_name_matches(r, f.get("headers"), sub(path, "headers"), header=True),
        query_params=_name_matches(r, f.get("queryParams"), sub(path, "queryParams"), header=False),
        method=method,
    )


def _name_matches(
    r: IstioReader, value: object, path: str, *, header: bool
) -> tuple[HTTPHeaderMatch, ...]:
    result: list[HTTPHeaderMatch] = []
    for index, entry in enumerate(_count(r, value, path, _MAX_HEADERS)):
        where = item(path, index)
        f = r.mapping(entry, where, "HTTPHeaderMatch")
        kind = r.choice(f, "type", where, ("Exact", "RegularExpression"), "Exact")
        name = r.required_string(f, "name", where)
        rule = check_header_name(name)
        if rule is not None or name.startswith(":"):
            r.fail(sub(where, "name"), rule or "must be a valid HTTP header name", name)
        text = r.string(r.required(f, "value", where), sub(where, "value"))
        if kind == "RegularExpression":
            r.check(sub(where, "value"), text, check_regex)
        folded = name.lower() if header else name
        if any((m.name.lower() if header else m.name) == folded for m in result):
            r.fail(sub(where, "name"), "must be unique within a match", name)
        result.append(HTTPHeaderMatch(name=name, value=text, type=kind))
    return tuple(result)


def _filters(r: IstioReader, value: object, path: str) -> tuple[HTTPRouteFilter, ...]:
    result: list[HTTPRouteFilter] = []
    for index, entry in enumerate(_count(r, value, path, _MAX_FILTERS)):
        result.append(_filter(r, entry, item(path, index)))
    types = [flt.type for flt in result]
    if "RequestRedirect" in types and "URLRewrite" in types:
        r.fail(path, "RequestRedirect and URLRewrite filters cannot be used together")
    for once in (
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
    ):
        if types.count(once) > 1:
            r.fail(path, f"{once} may appear at most once")
    return tuple(result)


def _filter(r: IstioReader, value: object, path: str) -> HTTPRouteFilter:
    f = r.mapping(value, path, "HTTPRouteFilter")
    kind = r.required_string(f, "type", path)
    if kind not in FILTER_TYPES:
        r.fail(sub(path, "type"), f"must be one of {', '.join(FILTER_TYPES)}", kind)
    expected = FILTER_TYPES[kind]
    for other in FILTER_TYPES.values():
        if other != expected and f.get(other) is not None:
            r.fail(sub(path, other), f"must not be set for filter type {kind}")
    if f.get(expected) is None:
        r.fail(sub(path, expected), f"is required for filter type {kind}")
    config = f[expected]
    where = sub(path, expected)
    if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
        headers = _header_filter(r, config, where)
        if kind == "RequestHeaderModifier":
            return HTTPRouteFilter(type=kind, request_header_modifier=headers)
        return HTTPRouteFilter(type=kind, response_header_modifier=headers)
    if kind == "RequestRedirect":
        g = r.mapping(config, where, "HTTPRequestRedirectFilter")
        scheme = r.choice(g, "scheme", where, ("http", "https"), "") or None
        hostname = r.opt_str(g, "hostname", where)
        if hostname is not None:
            r.check(sub(where, "hostname"), hostname, _hostname_rule)
        code = r.optional_integer(g, "statusCode", where, 300, 399, 302)
        if code not in (301, 302, 303, 307, 308):
            r.fail(sub(where, "statusCode"), "must be one of 301, 302, 303, 307, 308", code)
        return HTTPRouteFilter(
            type=kind,
            request_redirect=HTTPRequestRedirectFilter(
                scheme=scheme,
                hostname=hostname,
                path=_path_modifier(r, g.get("path"), sub(where, "path")),
                port=None if g.get("port") is None else read_port(r, g["port"], sub(where, "port")),
                status_code=code,
            ),
        )
    if kind == "URLRewrite":
        g = r.mapping(config, where, "HTTPURLRewriteFilter")
        hostname = r.opt_str(g, "hostname", where)
        if hostname is not None:
            r.check(sub(where, "hostname"), hostname, _hostname_rule)
        return HTTPRouteFilter(
            type=kind,
            url_rewrite=HTTPURLRewriteFilter(
                hostname=hostname, path=_path_modifier(r, g.get("path"), sub(where, "path"))
            ),
        )
    if kind == "RequestMirror":
        g = r.mapping(config, where, "HTTPRequestMirrorFilter")
        if g.get("percent") is not None and g.get("fraction") is not None:
            r.fail(sub(where, "fraction"), "only one of percent and fraction may be set")
        percent: float | None = None
        if g.get("percent") is not None:
            percent = float(r.integer(g["percent"], sub(where, "percent"), 0, 100))
        if g.get("fraction") is not None:
            fraction_path = sub(where, "fraction")
            fr = r.mapping(g["fraction"], fraction_path, "Fraction")
            numerator = r.integer(
                r.required(fr, "numerator", fraction_path),
                sub(fraction_path, "numerator"),
                0,
                2**31 - 1,
            )
            denominator = r.optional_integer(fr, "denominator", fraction_path, 1, 2**31 - 1, 100)
            if numerator > denominator:
                r.fail(
                    sub(fraction_path, "numerator"), "must not exceed the denominator", numerator
                )
            percent = 100.0 * numerator / denominator
        backend = _backend_ref(r, g.get("backendRef"), sub(where, "backendRef"), weighted=False)
        return HTTPRouteFilter(
            type=kind, request_mirror=HTTPRequestMirrorFilter(backend_ref=backend, percent=percent)
        )
    if not isinstance(config, Mapping):
        r.fail(where, "must be a mapping", config)
    return HTTPRouteFilter(type=kind, extension_ref=freeze_json(config))


def _header_filter(r: IstioReader, value: object, path: str) -> HTTPHeaderFilter:
    f = r.mapping(value, path, "HTTPHeaderFilter")
    pairs: dict[str, tuple[tuple[str, str], ...]] = {}
    seen: set[str] = set()
    for key in ("set", "add"):
        entries: list[tuple[str, str]] = []
        key_path = sub(path, key)
        for index, entry in enumerate(_count(r, f.get(key), key_path, _MAX_HEADERS)):
            where = item(key_path, index)
            h = r.mapping(entry, where, "HTTPHeader")
            name = r.required_string(h, "name", where)
            rule = check_header_name(name)
            if rule is not None or name.startswith(":"):
                r.fail(sub(where, "name"), rule or "must be a valid HTTP header name", name)
            if name.lower() in seen:
                r.fail(sub(where, "name"), "must not repeat a header name", name)
            seen.add(name.lower())
            entries.append((name, r.string(r.required(h, "value", where), sub(where, "value"))))
        pairs[key] = tuple(entries)
    remove = r.string_list(f, "remove", path, non_empty=True)
    return HTTPHeaderFilter(set=pairs["set"], add=pairs["add"], remove=remove)


def _path_modifier(r: IstioReader, value: object, path: str) -> HTTPPathModifier | None:
    if value is None:
        return None
    f = r.mapping(value, path, "HTTPPathModifier")
    kind = r.choice(f, "type", path, ("ReplaceFullPath", "ReplacePrefixMatch"), "")
    if not kind:
        r.fail(sub(path, "type"), "is required (ReplaceFullPath or ReplacePrefixMatch)")
    field = "replaceFullPath" if kind == "ReplaceFullPath" else "replacePrefixMatch"
    other = "replacePrefixMatch" if kind == "ReplaceFullPath" else "replaceFullPath"
    if f.get(other) is not None:
        r.fail(sub(path, other), f"must not be set when type is {kind}")
    text = r.opt_str(f, field, path)
    if text is None:
        r.fail(sub(path, field), f"is required when type is {kind}")
    return HTTPPathModifier(type=kind, value=text)


def _backend_ref(r: IstioReader, value: object, path: str, *, weighted: bool) -> BackendRef:
    if value is None:
        r.fail(path, "must be a mapping with a name")
    f = r.mapping(value, path, "HTTPBackendRef" if weighted else "BackendObjectReference")
    group = _group(r, f, path, "")
    kind = r.opt_str(f, "kind", path) or "Service"
    port = None if f.get("port") is None else read_port(r, f["port"], sub(path, "port"))
    if port is None and group == "" and kind == "Service":
        r.fail(sub(path, "port"), "is required for a Service backend")
    filters: tuple[HTTPRouteFilter, ...] = ()
    if weighted:
        filters = _filters(r, f.get("filters"), sub(path, "filters"))
    return BackendRef(
        name=r.check(
            sub(path, "name"), r.required_string(f, "name", path), check_dns1123_subdomain
        ),
        group=group,
        kind=kind,
        namespace=_namespace(r, f, path),
        port=port,
        weight=r.optional_integer(f, "weight", path, 0, _MAX_WEIGHT, 1) if weighted else 1,
        filters=filters,
    )
