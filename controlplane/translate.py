"""Istio and Gateway API objects → the data plane's resources (pure), plugged into the index:

- ``AuthorizationPolicy`` without ``targetRef(s)`` → ``Authorization`` in the ``ztunnel`` view
  (policies with a ``selector`` are WORKLOAD_SELECTOR scoped, those in the root namespace without
  one GLOBAL, others NAMESPACE). CUSTOM ones are left out there (a ztunnel would otherwise allow
  what an external authorizer might deny). HTTP-only attributes are kept; ztunnel decides what
  they mean at L4 (``ztunnel/policy.py``). As in Istio's ambient mode, ``remoteIpBlocks``,
  ``remote.ip`` and ``when`` keys other than source.ip/namespace/principal and
  destination.ip/port are HTTP-only.
- ``AuthorizationPolicy`` with ``targetRef(s)`` → ``waypoint_authorization`` ``authz/<ns>/<name>``
  in the views of the waypoints it attaches to (never in the ``ztunnel`` view), and
  ``RequestAuthentication`` with ``targetRef(s)`` → ``request_authn`` ``authn/<ns>/<name>``
  likewise. Attachment follows istiod's ``WorkloadPolicyMatcher.ShouldAttachPolicy``
  (pilot/pkg/model/policyattachment.go; istio.io docs/ambient/usage/l7-features "attach to the
  entire waypoint" / "attach to a specific service"):

  * a ``gateway.networking.k8s.io`` ``Gateway`` of class istio-waypoint in the policy's own
    namespace: everything that waypoint serves (``target_hosts`` empty);
  * a core ``Service`` in the policy's own namespace: only requests for that service, at the
    waypoint the service is bound to (``target_hosts`` = its FQDN; several Services of one
    waypoint are merged; a Service bound to no waypoint attaches nowhere);
  * the ``GatewayClass`` istio-waypoint, from the root namespace only: every waypoint.

  A targetRef naming another namespace never matches (Istio: "cross namespace referencing is not
  supported"); ``ServiceEntry`` targets are not supported (no ServiceEntry here). Waypoints
  never use selector-based or selector-less policies: istiod's ShouldAttachPolicy returns false
  for a waypoint without targetRefs, for RequestAuthentication too (getConfigsForWorkload), so
  those stay ztunnel-only (AuthorizationPolicy) or unused (RequestAuthentication). CUSTOM
  policies are sent (with their provider): no extension provider exists here, and Istio turns a
  CUSTOM policy whose provider is unknown into a DENY of the requests it matches.
  ``jwksUri`` is passed on unresolved (the waypoint fetches it); an inline ``jwks`` as is.
- ``VirtualService`` (``gateways`` empty or containing ``mesh``) and Gateway API ``HTTPRoute``
  (parent: the Service, or the waypoint) → a ``RouteConfig`` per service host bound to a
  waypoint, in the waypoint's view; ``DestinationRule`` → ``DestinationPolicy`` there too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controlplane.api import mesh_pb2 as pb
from controlplane.index import (
    CLUSTER_DOMAIN,
    ROOT_NAMESPACE,
    WAYPOINT_CLASS,
    Index,
    _waypoint_for,
    _waypoints,
)
from controlplane.store import StoredObject, StoreSnapshot

GATEWAY_API = "gateway.networking.k8s.io"
# The `when` keys ztunnel evaluates (Istio's l4WhenAttributes, pilot/pkg/serviceregistry/kube/
# controller/ambient/authorization.go); every other key needs a waypoint.
L4_CONDITION_KEYS = ("source.ip", "source.namespace", "source.principal", "destination.ip",
                     "destination.port")


# --- names ------------------------------------------------------------------------------


def fqdn(host: str, namespace: str) -> str:
    """Istio's host resolution: a short name is relative to the object's namespace."""
    if "." not in host and host != "*":
        return f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}"
    if host.count(".") == 1 and not host.endswith("." + CLUSTER_DOMAIN):
        name, ns = host.split(".")
        return f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"
    return host


def host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


# --- authorization -------------------------------------------------------------------------


def _string_match(value: str) -> pb.StringMatch:
    """Istio's order: ``*`` presence, ``*x`` suffix, ``x*`` prefix, else exact."""
    if value == "*":
        return pb.StringMatch(presence=pb.Empty())
    if value.startswith("*"):
        return pb.StringMatch(suffix=value[1:])
    if value.endswith("*"):
        return pb.StringMatch(prefix=value[:-1])
    return pb.StringMatch(exact=value)


def _path_match(value: str) -> pb.StringMatch:
    """``paths``: Istio path templates (``{*}``, ``{**}``, pkg/config/security
    ``ContainsPathTemplate``) go to Envoy's uri_template matcher; anything else as
    :func:`_string_match`."""
    if "{*}" in value or "{**}" in value:
        return pb.StringMatch(template=value)
    return _string_match(value)


def _cidr(text: str) -> pb.Cidr:
    net = ipaddress.ip_network(text, strict=False)
    return pb.Cidr(address=net.network_address.packed, length=net.prefixlen)


def _ports(values: Iterable[str]) -> list[int]:
    return [int(v) for v in values if str(v).isdigit()]


def _service_account(value: str, namespace: str) -> pb.StringMatch:
    """``serviceAccounts`` entry ``sa`` (the policy's namespace) or ``ns/sa``, any trust domain:
    a principal suffix, as principals are ``<trust domain>/ns/<ns>/sa/<sa>``."""
    ns, _, sa = value.rpartition("/")
    return pb.StringMatch(suffix=f"/ns/{ns or namespace}/sa/{sa}")


def authorization(pol: Any) -> pb.Authorization:
    ns = pol.meta.namespace
    if pol.selector:
        scope = pb.WORKLOAD_SELECTOR
    elif ns == ROOT_NAMESPACE:
        scope = pb.GLOBAL
    else:
        scope = pb.NAMESPACE
    action = {"ALLOW": pb.ALLOW, "DENY": pb.DENY, "AUDIT": pb.AUDIT, "CUSTOM": pb.CUSTOM}[pol.action]
    rules = []
    has_l7 = False
    for rule in pol.rules:
        clauses = []
        if rule.from_:
            matches = []
            for src in rule.from_:
                # serviceAccounts cannot be combined with principals (validation), so one
                # principals list holds either kind
                m = pb.Match(
                    principals=[*(_string_match(p) for p in src.principals),
                                *(_service_account(sa, ns) for sa in src.service_accounts)],
                    not_principals=[*(_string_match(p) for p in src.not_principals),
                                    *(_service_account(sa, ns) for sa in src.not_service_accounts)],
                    namespaces=[_string_match(n) for n in src.namespaces],
                    not_namespaces=[_string_match(n) for n in src.not_namespaces],
                    source_ips=[_cidr(c) for c in src.ip_blocks],
                    not_source_ips=[_cidr(c) for c in src.not_ip_blocks],
                    remote_ips=[_cidr(c) for c in src.remote_ip_blocks],
                    not_remote_ips=[_cidr(c) for c in src.not_remote_ip_blocks],
                    request_principals=[_string_match(p) for p in src.request_principals],
                    not_request_principals=[_string_match(p) for p in src.not_request_principals],
                )
                has_l7 |= bool(src.request_principals or src.not_request_principals
                               or src.remote_ip_blocks or src.not_remote_ip_blocks)
                matches.append(m)
            clauses.append(pb.Clause(matches=matches))
        if rule.to:
            matches = []
            for op in rule.to:
                matches.append(pb.Match(
                    destination_ports=_ports(op.ports), not_destination_ports=_ports(op.not_ports),
                    hosts=[_string_match(h) for h in op.hosts], not_hosts=[_string_match(h) for h in op.not_hosts],
                    methods=[_string_match(m) for m in op.methods], not_methods=[_string_match(m) for m in op.not_methods],
                    paths=[_path_match(p) for p in op.paths], not_paths=[_path_match(p) for p in op.not_paths],
                ))
                has_l7 |= bool(op.hosts or op.not_hosts or op.methods or op.not_methods or op.paths or op.not_paths)
            clauses.append(pb.Clause(matches=matches))
        for cond in rule.when:
            clauses.append(pb.Clause(matches=[_condition(cond)]))
            has_l7 |= cond.key not in L4_CONDITION_KEYS
        rules.append(pb.Rule(clauses=clauses))
    return pb.Authorization(
        name=pol.meta.name, namespace=ns, scope=scope, action=action, rules=rules, has_l7=has_l7,
        dry_run=pol.meta.annotations.get("istio.io/dry-run") == "true", provider=pol.provider or "",
    )


def request_authn(ra: Any, target_hosts: Iterable[str] = ()) -> pb.RequestAuthn:
    """A RequestAuthentication's JWT rules, as written (header names lower-cased)."""
    return pb.RequestAuthn(
        name=ra.meta.name, namespace=ra.meta.namespace, target_hosts=list(target_hosts),
        rules=[pb.JwtRule(
            issuer=r.issuer or "", audiences=list(r.audiences), jwks=r.jwks or "", jwks_uri=r.jwks_uri or "",
            from_headers=[pb.JwtHeader(name=h.name.lower(), prefix=h.prefix or "") for h in r.from_headers],
            from_params=list(r.from_params), from_cookies=list(r.from_cookies),
            forward_original_token=r.forward_original_token,
            output_payload_to_header=r.output_payload_to_header or "",
            output_claim_to_headers=[pb.ClaimToHeader(header=c.header, claim=c.claim)
                                     for c in r.output_claim_to_headers],
            timeout_seconds=r.timeout.seconds if r.timeout is not None else 0.0,
        ) for r in ra.jwt_rules],
    )


WaypointKey = tuple[str, str]  # (namespace, name) of a waypoint Gateway


def attachments(pol: Any, waypoints: Iterable[WaypointKey],
                service_waypoints: Mapping[tuple[str, str], WaypointKey]) -> dict[WaypointKey, tuple[str, ...]]:
    """The waypoints a targetRef policy (AuthorizationPolicy or RequestAuthentication) attaches
    to, each with the service FQDNs it is limited to (empty: everything the waypoint serves).
    ``service_waypoints``: (namespace, name) of each Service bound to a waypoint -> that waypoint.
    Istio's rules: see the module docstring."""
    ns = pol.meta.namespace
    known = set(waypoints)
    out: dict[WaypointKey, set[str] | None] = {}  # None: everything

    def attach(wp: WaypointKey, host: str | None) -> None:
        if host is None or (wp in out and out[wp] is None):
            out[wp] = None
        else:
            hosts = out.setdefault(wp, set())
            assert hosts is not None
            hosts.add(host)

    for ref in pol.target_refs:
        if ref.group == GATEWAY_API and ref.kind == "GatewayClass":
            if ns == ROOT_NAMESPACE and ref.name == WAYPOINT_CLASS:
                for wp in known:
                    attach(wp, None)
            continue
        if ref.namespace not in (None, "", ns):
            continue  # cross-namespace references never match
        if ref.group == GATEWAY_API and ref.kind == "Gateway":
            if (ns, ref.name) in known:
                attach((ns, ref.name), None)
        elif ref.group == "" and ref.kind == "Service":
            bound_to = service_waypoints.get((ns, ref.name))
            if bound_to is not None:
                attach(bound_to, f"{ref.name}.{ns}.svc.{CLUSTER_DOMAIN}")
    return {wp: () if hosts is None else tuple(sorted(hosts)) for wp, hosts in out.items()}


def _condition(cond: Any) -> pb.Match:
    key, values, not_values = cond.key, list(cond.values), list(cond.not_values)
    if key == "source.ip":
        return pb.Match(source_ips=[_cidr(v) for v in values], not_source_ips=[_cidr(v) for v in not_values])
    if key == "remote.ip":
        return pb.Match(remote_ips=[_cidr(v) for v in values], not_remote_ips=[_cidr(v) for v in not_values])
    if key == "destination.ip":
        return pb.Match(destination_ips=[_cidr(v) for v in values], not_destination_ips=[_cidr(v) for v in not_values])
    if key == "destination.port":
        return pb.Match(destination_ports=_ports(values), not_destination_ports=_ports(not_values))
    if key == "source.namespace":
        return pb.Match(namespaces=[_string_match(v) for v in values], not_namespaces=[_string_match(v) for v in not_values])
    if key == "source.principal":
        return pb.Match(principals=[_string_match(v) for v in values], not_principals=[_string_match(v) for v in not_values])
    return pb.Match(conditions=[pb.Condition(key=key, values=values, not_values=not_values)])


# --- routes -------------------------------------------------------------------------------------


def _sm_opt(m: Any) -> pb.StringMatchRegex | None:
    return None if m is None else _sm(m)


def _sm(m: Any) -> pb.StringMatchRegex:
    if m.type == "exact":
        return pb.StringMatchRegex(exact=m.value)
    if m.type == "prefix":
        return pb.StringMatchRegex(prefix=m.value)
    if m.type == "regex":
        return pb.StringMatchRegex(regex=m.value)
    return pb.StringMatchRegex(regex=".*")  # presence ({}): any value


def _headers(h: Any) -> pb.Headers | None:
    if h is None:
        return None
    return pb.Headers(
        request=pb.HeaderOperations(set=dict(h.request.set), add=dict(h.request.add), remove=list(h.request.remove)),
        response=pb.HeaderOperations(set=dict(h.response.set), add=dict(h.response.add), remove=list(h.response.remove)),
    )


def _dest(d: Any, ns: str) -> pb.Destination:
    return pb.Destination(host=fqdn(d.host, ns), subset=d.subset or "", port=d.port or 0)


def _pct(value: float | None) -> float:
    return 100.0 if value is None else float(value)


def istio_http_route(r: Any, ns: str) -> pb.HTTPRoute:
    out = pb.HTTPRoute(name=r.name or "")
    for m in r.match:
        out.match.append(pb.HTTPMatchRequest(
            name=m.name or "", uri=_sm_opt(m.uri), scheme=_sm_opt(m.scheme), method=_sm_opt(m.method),
            authority=_sm_opt(m.authority), headers={k: _sm(v) for k, v in m.headers.items()},
            without_headers={k: _sm(v) for k, v in m.without_headers.items()},
            query_params={k: _sm(v) for k, v in m.query_params.items()},
            ignore_uri_case=m.ignore_uri_case, source_labels=dict(m.source_labels), port=m.port or 0,
            source_namespace=m.source_namespace or "",
        ))
    for d in r.route:
        out.route.append(pb.HTTPRouteDestination(destination=_dest(d.destination, ns), weight=d.weight,
                                                 headers=_headers(d.headers)))
    if len(out.route) == 1 and out.route[0].weight == 0:
        out.route[0].weight = 100
    if r.redirect is not None:
        rd = r.redirect
        out.redirect.CopyFrom(pb.HTTPRedirect(uri=rd.uri or "", authority=rd.authority or "", port=rd.port or 0,
                                              scheme=rd.scheme or "", redirect_code=rd.redirect_code))
    if r.direct_response is not None:
        out.direct_response.CopyFrom(pb.HTTPDirectResponse(status=r.direct_response.status,
                                                           body=r.direct_response.body_string or ""))
    if r.rewrite is not None:
        rw = r.rewrite
        regex = rw.uri_regex_rewrite
        out.rewrite.CopyFrom(pb.HTTPRewrite(uri=rw.uri or "", authority=rw.authority or "",
                                            uri_regex=regex.match if regex else "",
                                            uri_regex_substitution=regex.rewrite if regex else ""))
    if r.timeout is not None:
        out.timeout_seconds = r.timeout.seconds
    if r.retries is not None:
        rt = r.retries
        out.retries.CopyFrom(pb.HTTPRetry(
            attempts=rt.attempts, per_try_timeout_seconds=rt.per_try_timeout.seconds if rt.per_try_timeout else 0.0,
            retry_on=",".join(rt.retry_on)))
    if r.fault is not None:
        f = pb.HTTPFaultInjection()
        if r.fault.delay is not None:
            f.has_delay, f.delay_seconds = True, r.fault.delay.fixed_delay.seconds
            f.delay_percent = _pct(r.fault.delay.percentage)
        if r.fault.abort is not None and r.fault.abort.http_status:
            f.has_abort, f.abort_http_status = True, r.fault.abort.http_status
            f.abort_percent = _pct(r.fault.abort.percentage)
        out.fault.CopyFrom(f)
    if r.mirror is not None:
        out.mirrors.append(pb.Mirror(destination=_dest(r.mirror, ns), percent=_pct(r.mirror_percentage)))
    for mp in r.mirrors:
        out.mirrors.append(pb.Mirror(destination=_dest(mp.destination, ns), percent=_pct(mp.percentage)))
    h = _headers(r.headers)
    if h is not None:
        out.headers.CopyFrom(h)
    return out


def gateway_http_route(rule: Any, ns: str) -> pb.HTTPRoute:
    """A Gateway API HTTPRoute rule in the same shape (Gateway API semantics: backendRef
    weights are relative, defaulting to 1)."""
    out = pb.HTTPRoute(name=rule.name or "")
    for m in rule.matches:
        req = pb.HTTPMatchRequest()
        if m.path is not None:
            kind = {"Exact": "exact", "PathPrefix": "prefix", "RegularExpression": "regex"}[m.path.type]
            req.uri.CopyFrom(pb.StringMatchRegex(**{kind: m.path.value}))
        for h in m.headers:
            req.headers[h.name.lower()].CopyFrom(
                pb.StringMatchRegex(regex=h.value) if h.type == "RegularExpression" else pb.StringMatchRegex(exact=h.value))
        for q in m.query_params:
            req.query_params[q.name].CopyFrom(
                pb.StringMatchRegex(regex=q.value) if q.type == "RegularExpression" else pb.StringMatchRegex(exact=q.value))
        if m.method:
            req.method.CopyFrom(pb.StringMatchRegex(exact=m.method))
        out.match.append(req)
    total = sum(b.weight for b in rule.backend_refs) or 1
    for b in rule.backend_refs:
        out.route.append(pb.HTTPRouteDestination(
            destination=pb.Destination(host=fqdn(b.name, b.namespace or ns), port=b.port or 0),
            weight=round(100 * b.weight / total)))
    for f in rule.filters:
        if f.request_header_modifier is not None:
            hm = f.request_header_modifier
            out.headers.request.set.update(dict(hm.set))
            out.headers.request.add.update(dict(hm.add))
            out.headers.request.remove.extend(hm.remove)
        elif f.response_header_modifier is not None:
            hm = f.response_header_modifier
            out.headers.response.set.update(dict(hm.set))
            out.headers.response.add.update(dict(hm.add))
            out.headers.response.remove.extend(hm.remove)
        elif f.request_redirect is not None:
            rd = f.request_redirect
            out.redirect.CopyFrom(pb.HTTPRedirect(
                scheme=rd.scheme or "", authority=rd.hostname or "", port=rd.port or 0,
                uri=rd.path.value if rd.path is not None else "", redirect_code=rd.status_code))
        elif f.url_rewrite is not None:
            rw = f.url_rewrite
            out.rewrite.CopyFrom(pb.HTTPRewrite(authority=rw.hostname or "",
                                                uri=rw.path.value if rw.path is not None else ""))
        elif f.request_mirror is not None:
            b = f.request_mirror.backend_ref
            out.mirrors.append(pb.Mirror(destination=pb.Destination(host=fqdn(b.name, b.namespace or ns), port=b.port or 0),
                                         percent=_pct(f.request_mirror.percent)))
    if rule.timeouts is not None and rule.timeouts.request is not None:
        out.timeout_seconds = rule.timeouts.request.seconds
    return out


def _traffic_policy(tp: Any) -> pb.TrafficPolicy | None:
    if tp is None:
        return None
    out = pb.TrafficPolicy()
    lb = tp.load_balancer
    if lb is not None:
        simple = getattr(pb.LoadBalancer, lb.simple, pb.LoadBalancer.UNSPECIFIED) if lb.simple else pb.LoadBalancer.UNSPECIFIED
        out.load_balancer.simple = simple
        ch = lb.consistent_hash
        if ch is not None:
            out.load_balancer.hash_header = ch.http_header_name or ""
            out.load_balancer.hash_source_ip = ch.use_source_ip
            out.load_balancer.hash_query_parameter = ch.http_query_parameter_name or ""
            if ch.http_cookie is not None:
                out.load_balancer.hash_cookie = ch.http_cookie.name
                out.load_balancer.hash_cookie_ttl_seconds = ch.http_cookie.ttl.seconds if ch.http_cookie.ttl else 0.0
    cp = tp.connection_pool
    if cp is not None:
        if cp.tcp is not None:
            out.connection_pool.max_connections = cp.tcp.max_connections or 0
            out.connection_pool.connect_timeout_seconds = cp.tcp.connect_timeout.seconds if cp.tcp.connect_timeout else 0.0
        if cp.http is not None:
            h = cp.http
            out.connection_pool.http1_max_pending_requests = h.http1_max_pending_requests or 0
            out.connection_pool.http2_max_requests = h.http2_max_requests or 0
            out.connection_pool.max_requests_per_connection = h.max_requests_per_connection or 0
            out.connection_pool.max_retries = h.max_retries or 0
            out.connection_pool.idle_timeout_seconds = h.idle_timeout.seconds if h.idle_timeout else 0.0
    od = tp.outlier_detection
    if od is not None:
        out.outlier_detection.CopyFrom(pb.OutlierDetection(
            enabled=True, consecutive_5xx_errors=od.consecutive_5xx_errors or 0,
            consecutive_gateway_errors=od.consecutive_gateway_errors or 0,
            interval_seconds=od.interval.seconds if od.interval else 10.0,
            base_ejection_time_seconds=od.base_ejection_time.seconds if od.base_ejection_time else 30.0,
            max_ejection_percent=od.max_ejection_percent if od.max_ejection_percent is not None else 10,
            min_health_percent=od.min_health_percent or 0,
        ))
    return out


def destination_policy(dr: Any, host: str) -> pb.DestinationPolicy:
    return pb.DestinationPolicy(
        host=host, namespace=dr.meta.namespace, source=f"DestinationRule {dr.meta.namespace}/{dr.meta.name}",
        traffic_policy=_traffic_policy(dr.traffic_policy),
        subsets=[pb.Subset(name=s.name, labels=dict(s.labels), traffic_policy=_traffic_policy(s.traffic_policy))
                 for s in dr.subsets],
    )


# --- plugging into the index ----------------------------------------------------------------------


def _maker(name: str, **kind: Any) -> Callable[[], pb.Resource]:
    return lambda: pb.Resource(name=name, **kind)


def convert(store: StoreSnapshot, views: dict[str, dict[str, bytes]], index: Index) -> None:
    by_kind: dict[str, list[StoredObject]] = {}
    for key, stored in store.objects.items():
        by_kind.setdefault(key[0], []).append(stored)
    waypoints = _waypoints(store)
    ztunnel = views["ztunnel"]
    # services bound to each waypoint
    namespaces = {k[2]: s.obj for k, s in store.objects.items() if k[0] == "Namespace"}
    bound: dict[WaypointKey, list[str]] = {}
    service_waypoints: dict[tuple[str, str], WaypointKey] = {}
    for key, stored in store.objects.items():
        if key[0] != "Service":
            continue
        svc = stored.obj
        ns_obj = namespaces.get(svc.meta.namespace)
        wp = _waypoint_for(svc.meta.labels, ns_obj.meta.labels if ns_obj else {}, svc.meta.namespace,
                           waypoints, store, "service")
        if wp is not None:
            wkey = (wp.namespace, wp.hostname.split(".")[0])
            service_waypoints[(svc.meta.namespace, svc.meta.name)] = wkey
            bound.setdefault(wkey, []).append(f"{svc.meta.name}.{svc.meta.namespace}.svc.{CLUSTER_DOMAIN}")
    for stored in by_kind.get("AuthorizationPolicy", []):
        pol = stored.obj
        name = f"authz/{pol.meta.namespace}/{pol.meta.name}"
        if not pol.target_refs:
            if pol.action != "CUSTOM":
                ztunnel[name] = index.cached(name, stored.revision, _maker(name, authorization=authorization(pol)))
            continue
        for (wns, wname), targets in attachments(pol, waypoints, service_waypoints).items():
            view_name = f"waypoint/{wns}/{wname}"

            def make_authz(pol: Any = pol, name: str = name, targets: tuple[str, ...] = targets) -> pb.Resource:
                out = authorization(pol)
                out.target_hosts.extend(targets)
                return pb.Resource(name=name, waypoint_authorization=out)

            # cached per view: the same policy may reach several waypoints with other targets
            views.setdefault(view_name, {})[name] = index.cached(
                f"{view_name}:{name}", (stored.revision, targets), make_authz)
    for stored in by_kind.get("RequestAuthentication", []):
        ra = stored.obj
        name = f"authn/{ra.meta.namespace}/{ra.meta.name}"
        for (wns, wname), targets in attachments(ra, waypoints, service_waypoints).items():
            view_name = f"waypoint/{wns}/{wname}"

            def make_authn(ra: Any = ra, name: str = name, targets: tuple[str, ...] = targets) -> pb.Resource:
                return pb.Resource(name=name, request_authn=request_authn(ra, targets))

            views.setdefault(view_name, {})[name] = index.cached(
                f"{view_name}:{name}", (stored.revision, targets), make_authn)
    for (wns, wname), hosts in bound.items():
        view = views.setdefault(f"waypoint/{wns}/{wname}", {})
        for host in sorted(hosts):
            _routes_for_host(host, by_kind, view, index, wname, wns)
            _destinations_for_host(host, by_kind, view, index)


def _routes_for_host(host: str, by_kind: Mapping[str, list[StoredObject]], view: dict[str, bytes],
                     index: Index, waypoint: str, waypoint_ns: str) -> None:
    http: list[pb.HTTPRoute] = []
    sources: list[str] = []
    revisions: list[int] = []
    for stored in sorted(by_kind.get("VirtualService", []), key=lambda s: (s.revision, s.obj.meta.name)):
        vs = stored.obj
        if vs.gateways and "mesh" not in vs.gateways:
            continue
        if not any(host_matches(fqdn(h, vs.meta.namespace), host) for h in vs.hosts):
            continue
        http += [istio_http_route(r, vs.meta.namespace) for r in vs.http]
        sources.append(f"VirtualService {vs.meta.namespace}/{vs.meta.name}")
        revisions.append(stored.revision)
    for stored in sorted(by_kind.get(f"{GATEWAY_API}/HTTPRoute", []), key=lambda s: (s.revision, s.obj.meta.name)):
        route = stored.obj
        ns = route.meta.namespace
        parents = [fqdn(p.name, p.namespace or ns) if p.kind == "Service" else None for p in route.parent_refs]
        to_waypoint = any(p.kind == "Gateway" and p.name == waypoint and (p.namespace or ns) == waypoint_ns
                          for p in route.parent_refs)
        if host not in parents and not to_waypoint:
            continue
        http += [gateway_http_route(rule, ns) for rule in route.rules]
        sources.append(f"HTTPRoute {ns}/{route.meta.name}")
        revisions.append(stored.revision)
    if not http:
        return
    name = f"route/{host}"
    view[name] = index.cached(name, tuple(revisions), _maker(
        name, route=pb.RouteConfig(host=host, namespace=host.split(".")[1], http=http, sources=sources)))


def _destinations_for_host(host: str, by_kind: Mapping[str, list[StoredObject]], view: dict[str, bytes],
                           index: Index) -> None:
    for stored in by_kind.get("DestinationRule", []):
        dr = stored.obj
        if host_matches(fqdn(dr.host, dr.meta.namespace), host):
            name = f"destination/{host}"
            view[name] = index.cached(name, (stored.revision, host), _maker(
                name, destination=destination_policy(dr, host)))
            return
