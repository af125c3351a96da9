"""The waypoint's data path: HBONE in, HTTP (or opaque TCP) through, HBONE out.

Downstream (:meth:`Waypoint.handle_hbone`): a ztunnel connects to the waypoint's ``:15008``
presenting the *client workload's* identity; the waypoint presents its own
(``spiffe://<td>/ns/<ns>/sa/<waypoint>``), requires a client certificate of its trust domain and
ALPN ``h2``. Each CONNECT names the original destination, a Service ``VIP:port`` (400 when it
is not a service this waypoint serves). The tunnel is then served according to the port's
protocol, as Istio selects it: ``http``/``http2``/``grpc``/``grpc-web`` (appProtocol, else the
port name) are HTTP (HTTP/2 when the client opens with the HTTP/2 preface, HTTP/1.1 otherwise);
``tcp``/``tls``/``https``/``mongo``/``mysql``/``redis`` are opaque TCP; an undeclared port is
sniffed (an HTTP/1 request line or the HTTP/2 preface within :data:`SNIFF_TIMEOUT_S`, else TCP).

Each HTTP request goes through Envoy's filter order in a waypoint:

1. RequestAuthentication (JWT; a bad token answers 401), then AuthorizationPolicy (403
   ``RBAC: access denied``), :mod:`waypoint.authz`;
2. routing (:mod:`waypoint.routes`): the service's VirtualService/HTTPRoute rules, or the
   default route to the service itself; no matching rule answers 404 (flag NR); redirects and
   direct responses are answered here;
3. fault injection (delay, then abort; flags DI/FI);
4. the chosen weighted destination: rewrite, header operations, mirrors (fire and forget, with
   ``-shadow`` appended to the authority), then up to ``1 + retries.attempts`` attempts, each on
   an endpoint picked by the DestinationRule's load balancer among non-ejected endpoints
   (another host than the ones already tried, when there is one), within ``perTryTimeout`` and
   the route's ``timeout``; circuit breaking and outlier detection per :mod:`waypoint.upstream`;
5. response header operations; telemetry (Istio's request metrics, a span, an access-log line).

Local replies use Envoy's bodies and response flags (UH no healthy upstream, UF connect
failure, UC reset, UO overflow, URX retries exhausted, UT timeout, NR no route, DI/FI faults).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from waypoint import authz, telemetry, tracing
from waypoint.destinations import Endpoint, Overflow, PickContext
from waypoint.http import HttpError, Request, Response, UpstreamError, local_response
from waypoint.http1 import serve_http1
from waypoint.http2 import is_http2_preface, serve_http2
from waypoint.jwt import Authenticated
from waypoint.routes import (
    Destination,
    HeaderOps,
    RetryPolicy,
    Route,
    RouteDestination,
    Selection,
    apply_rewrite,
    query_params,
    redirect_location,
    select,
)
from waypoint.routes import Request as RouteRequest
from waypoint.state import (
    H2_PROTOCOLS,
    HTTP_PROTOCOLS,
    OPAQUE_PROTOCOLS,
    WaypointState,
    port_protocol,
)
from waypoint.upstream import Cluster, Target, Upstreams
from ztunnel.identity import Identity, IdentityManager
from ztunnel.inbound import (
    HBONE_HANDSHAKE_ERRORS,
    hbone_server_handshake,
    tls_error,
    trusted_client_ip,
)
from ztunnel.sockets import peer
from ztunnel.splice import splice
from ztunnel.state import Service, Workload
from ztunnel.tunnel import H2Link
from ztunnel.tunnel import Request as ConnectRequest

log = logging.getLogger("waypoint")

SNIFF_TIMEOUT_S = 0.1
SNIFF_BYTES = 64 * 1024
RETRY_BASE_S = 0.025      # Envoy's default retry back-off: 25 ms base, 250 ms max, jittered
RETRY_MAX_S = 0.250
_HTTP1_REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/1\.[01]\r?\n|^[A-Z]{3,10} \S+ HTTP/1\.?[01]?\r?$")
_HTTP1_PREFIX = re.compile(rb"^[A-Z]{1,10}( \S*)?$")
_GRPC_RETRY = {"cancelled": 1, "deadline-exceeded": 4, "resource-exhausted": 8, "internal": 13, "unavailable": 14}


@dataclass(slots=True)
class Downstream:
    """What is known about the client of one tunnel."""

    principal: str                 # the SPIFFE identity the client's ztunnel proved
    address: tuple[str, int]       # the client's address (from ``forwarded`` when trustworthy)
    workload: Workload | None
    service: Service
    port: int                      # the service port the client dialled
    vip: str
    local: tuple[str, int] = ("", 0)


@dataclass(slots=True)
class Outcome:
    """Telemetry facts gathered while handling one request."""

    flags: list[str] = field(default_factory=list)
    details: str = "via_upstream"
    target: Target | None = None
    cluster: str = ""
    route: str = ""
    destination_service: Service | None = None

    def flag(self, f: str) -> None:
        if f not in self.flags:
            self.flags.append(f)


class Waypoint:
    def __init__(self, name: str, namespace: str, identity: Identity, state: Callable[[], WaypointState],
                 identities: IdentityManager, upstreams: Upstreams, metrics: telemetry.L7Metrics,
                 exporter: tracing.ZipkinExporter | None = None, *, rng: random.Random | None = None,
                 tracing_enabled: Callable[[], bool] = lambda: True) -> None:
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self._state = state
        self.identities = identities
        self.upstreams = upstreams
        self.metrics = metrics
        self.exporter = exporter
        self.tracing_enabled = tracing_enabled
        self.rng = rng or random.Random()
        self._links: set[H2Link] = set()
        self._nursery: trio.Nursery | None = None
        self.bad_requests = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Home of mirrored requests; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # --- HBONE ------------------------------------------------------------------------------------

    async def handle_hbone(self, tcp: trio.SocketStream) -> None:
        src = peer(tcp)
        try:
            ctx = await self.identities.tls_context(self.identity, server=True)
            tls, client_id = await hbone_server_handshake(tcp, ctx, self.identity.trust_domain)
        except (*HBONE_HANDSHAKE_ERRORS, OSError) as exc:
            log.warning("HBONE connection from %s:%d refused: %s", *src, tls_error(exc))
            await trio.aclose_forcefully(tcp)
            return
        link = H2Link(tls, client=False, label=f"HBONE from {src[0]}:{src[1]} ({client_id})")
        self._links.add(link)
        try:
            await link.run(lambda req: self._connect(req, str(client_id), src))
        finally:
            self._links.discard(link)

    async def _connect(self, req: ConnectRequest, principal: str, tunnel_src: tuple[str, int]) -> None:
        state = self._state()
        svc = state.service_for(req.host)
        if svc is None or svc.waypoint is None or svc.waypoint.hostname.split(".")[:2] != [self.name, self.namespace]:
            log.warning("CONNECT %s:%d from %s refused: not a service bound to waypoint %s/%s",
                        req.host, req.port, principal, self.namespace, self.name)
            await req.reject(400)
            return
        client_ip = trusted_client_ip(req.headers.get("forwarded", ""), principal, state.mesh) or tunnel_src[0]
        client_port = _client_port(req.headers.get("forwarded", "")) or tunnel_src[1]
        down = Downstream(principal, (client_ip, client_port), state.mesh.by_ip.get(client_ip), svc, req.port,
                          req.host, (req.host, req.port))
        tunnel = await req.accept()
        async with tunnel:
            protocol = port_protocol(svc, req.port)
            first = b""
            if protocol not in HTTP_PROTOCOLS:
                if protocol in OPAQUE_PROTOCOLS:
                    await self._tcp(tunnel, down, b"")
                    return
                first = await self._sniff(tunnel)
                if not _looks_http(first):
                    await self._tcp(tunnel, down, first)
                    return
            else:
                first = bytes(await tunnel.receive_some(SNIFF_BYTES))
                if not first:
                    await tunnel.send_eof()
                    return

            def on_error(err: HttpError) -> None:
                self.bad_requests += 1
                log.warning("bad request from %s (%s) to %s:%d: %s", client_ip, principal, req.host, req.port, err)

            async def handle(r: Request) -> Response:
                return await self.handle_request(r, down)

            try:
                if is_http2_preface(first):
                    await serve_http2(tunnel, handle, first_bytes=first, on_error=on_error)
                else:
                    await serve_http1(tunnel, handle, first_bytes=first, on_error=on_error)
                # end our direction cleanly (END_STREAM), so the tunnel finishes without a reset
                await tunnel.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _sniff(self, tunnel: trio.abc.Stream) -> bytes:
        with trio.move_on_after(SNIFF_TIMEOUT_S):
            return bytes(await tunnel.receive_some(SNIFF_BYTES))
        return b""

    # --- opaque TCP -------------------------------------------------------------------------------

    async def _tcp(self, tunnel: trio.abc.HalfCloseableStream, down: Downstream, first: bytes) -> None:
        state = self._state()
        verdict = state.policies.check(self._l7_request(down, None, None))
        if not verdict.allowed:
            log.info("TCP %s:%d -> %s:%d denied: %s", *down.address, down.vip, down.port, verdict.reason)
            return
        host = down.service.hostname
        cluster = self.upstreams.cluster(host, "", down.port, state.destinations.get(host), False)
        target = self.upstreams.pick(cluster, state.mesh.endpoints(down.service, down.port),
                                     PickContext(source_ip=down.address[0]), set())
        if target is None:
            log.warning("TCP %s:%d -> %s: no healthy upstream", *down.address, host)
            return
        try:
            upstream = await self.upstreams.open_stream(cluster, target)
        except UpstreamError as exc:
            log.warning("TCP %s:%d -> %s: %s", *down.address, host, exc)
            return
        async with upstream:
            if first:
                await upstream.send_all(first)
            assert isinstance(upstream, trio.abc.HalfCloseableStream)
            await splice(tunnel, upstream)

    # --- HTTP -------------------------------------------------------------------------------------

    async def handle_request(self, req: Request, down: Downstream) -> Response:
        state = self._state()
        started_wall, started = time.time(), time.monotonic()
        out = Outcome(destination_service=down.service)
        request_id = tracing.ensure_request_id(req.headers)
        if req.header("x-request-id") is None:
            req.headers.append(("x-request-id", request_id))
        hmap = req.header_map()
        span = tracing.start_span(hmap, name=f"{down.service.hostname}:{down.port}/*", now=started_wall)
        original_path, original_authority = req.path, req.authority
        try:
            resp = await self._pipeline(state, req, hmap, down, out, span)
        except Overflow:
            out.flag("UO")
            out.details = "overflow"
            resp = local_response(503, "upstream connect error or disconnect/reset before headers. reset reason: overflow")
        _server_header(resp)
        duration = time.monotonic() - started
        rec = telemetry.RequestRecord(
            start_time=started_wall, duration_s=duration, method=req.method, path=original_path,
            protocol=req.version, request_protocol="grpc" if hmap.get("content-type", "").startswith("application/grpc") else "http",
            authority=original_authority, user_agent=hmap.get("user-agent", ""), request_id=request_id,
            forwarded_for=hmap.get("x-forwarded-for", ""), response_code=resp.status,
            response_flags=",".join(out.flags) or "-", response_code_details=out.details,
            bytes_received=len(req.body), bytes_sent=len(resp.body),
            upstream_host=out.target.address if out.target else "", upstream_cluster=out.cluster,
            route_name=out.route, downstream_remote=f"{down.address[0]}:{down.address[1]}",
            downstream_local=f"{down.local[0]}:{down.local[1]}",
            source=down.workload, source_principal=down.principal,
            destination=out.target.workload if out.target else None,
            destination_principal=out.target.workload.identity if out.target else "",
            destination_service=out.destination_service.hostname if out.destination_service else "",
            destination_service_name=out.destination_service.hostname.split(".")[0] if out.destination_service else "",
            destination_service_namespace=out.destination_service.namespace if out.destination_service else "",
            grpc_status=resp.header("grpc-status") or _trailer(resp, "grpc-status") or "",
            trace_id=span.trace_id,
        )
        telemetry.record(self.metrics, rec)
        telemetry.write_access_log(rec)
        if self.exporter is not None and span.sampled and self.tracing_enabled():
            span.finish(resp.status, rec, now=time.time())
            self.exporter.export(span)
        return resp

    async def _pipeline(self, state: WaypointState, req: Request, hmap: dict[str, str], down: Downstream,
                        out: Outcome, span: tracing.Span) -> Response:
        """``hmap``: ``req.header_map()``, made once per request."""
        host = down.service.hostname
        query = query_params(req.path.split("?", 1)[1]) if "?" in req.path else {}
        # 1. authentication and authorization
        authn = state.policies.authenticate(host, hmap, query, method=req.method)
        if isinstance(authn, authz.JwtFailure):
            out.details = authn.details
            path = req.path.split("?", 1)[0]
            return local_response(authn.status, authn.body,
                                  [("www-authenticate", authn.www_authenticate(req.scheme, req.authority, path))])
        verdict = state.policies.check(self._l7_request(down, req, authn))
        if not verdict.allowed:
            out.details = verdict.details
            return local_response(verdict.status, verdict.body)
        if isinstance(authn, Authenticated):
            changes = state.policies.header_changes(host, hmap, query, authn)
            if changes.remove or changes.set:
                drop = set(changes.remove) | {k for k, _ in changes.set}
                req.headers = [(k, v) for k, v in req.headers if k not in drop] + list(changes.set)
                hmap = req.header_map()
        # 2. routing
        rreq = RouteRequest(req.method, req.scheme, req.authority, req.path, hmap, down.port,
                            down.workload.labels if down.workload else {}, down.workload.namespace if down.workload else "")
        config = state.routes.get(host)
        sel: Selection
        if config is None:
            sel = Selection(_default_route(host, down.port))
        else:
            sel = select(config, rreq)
        if sel.no_route or sel.route is None:
            out.flag("NR")
            out.details = "route_not_found"
            return Response(404, [("content-length", "0")])
        route = sel.route
        out.route = route.name
        if route.redirect is not None:
            out.details = "direct_response"
            location = redirect_location(rreq, route.redirect)
            resp = Response(route.redirect.code, [("location", location), ("content-length", "0")])
            return _apply_headers(resp, route.response_headers)
        if route.direct_response is not None:
            out.details = "direct_response"
            dr = route.direct_response
            body = dr.body.encode()
            resp = Response(dr.status, [("content-type", "text/plain"), ("content-length", str(len(body)))], body)
            return _apply_headers(resp, route.response_headers)
        # 3. faults
        fault = sel.fault(self.rng.random)
        if fault.delay is not None:
            out.flag("DI")
            await trio.sleep(fault.delay)
        if fault.abort is not None:
            out.flag("FI")
            out.details = "fault_filter_abort"
            return local_response(fault.abort, "fault filter abort")
        # 4. destination
        chosen = sel.choose(self.rng.random())
        if chosen is None:
            out.flag("NR")
            out.details = "route_not_found"
            return Response(404, [("content-length", "0")])
        dest = chosen.destination
        dsvc = state.service_named(dest.host) if dest.host != host else down.service
        out.destination_service = dsvc
        port = dest.port or down.port
        upstream_req = self._upstream_request(req, sel, route, chosen, span)
        for mirror in sel.mirrors(self.rng.random):
            self._mirror(state, upstream_req, mirror, port)
        if dsvc is None:
            out.flag("UH")
            out.details = "no_healthy_upstream"
            out.cluster = f"outbound|{port}|{dest.subset}|{dest.host}"
            return local_response(503, "no healthy upstream")
        resp = await self._forward(state, dsvc, dest, port, upstream_req, route, down, out)
        return _apply_headers(resp, chosen.response_headers)

    def _upstream_request(self, req: Request, sel: Selection, route: Route, chosen: RouteDestination,
                          span: tracing.Span) -> Request:
        path = req.path
        authority = req.authority
        if route.rewrite is not None:
            path = apply_rewrite(path, sel.matched_prefix, route.rewrite)
            if route.rewrite.authority:
                authority = route.rewrite.authority
        headers = [(k, v) for k, v in req.headers if k != "host"]
        headers = tracing.with_trace_headers(_ops_on_list(headers, chosen.request_headers), span)
        if not any(k == "x-forwarded-proto" for k, _ in headers):
            headers.append(("x-forwarded-proto", req.scheme))
        if route.rewrite is not None and route.rewrite.uri and path != req.path:
            headers.append(("x-envoy-original-path", req.path))
        return Request(req.method, req.scheme, authority, path, headers, req.body, req.version, req.trailers)

    def _mirror(self, state: WaypointState, req: Request, dest: Destination, port: int) -> None:
        svc = state.service_named(dest.host)
        if svc is None or self._nursery is None:
            return
        host, _, p = req.authority.rpartition(":")
        authority = f"{host}-shadow:{p}" if host and p.isdigit() else f"{req.authority}-shadow"
        copy = Request(req.method, req.scheme, authority, req.path, list(req.headers), req.body, req.version)

        async def send() -> None:
            out = Outcome()
            with trio.move_on_after(30):
                try:
                    await self._forward(state, svc, dest, dest.port or port, copy, None, None, out)
                except Overflow:
                    pass

        self._nursery.start_soon(send)

    async def _forward(self, state: WaypointState, svc: Service, dest: Destination, port: int, req: Request,
                       route: Route | None, down: Downstream | None, out: Outcome) -> Response:
        policy = state.destinations.get(svc.hostname)
        h2 = port_protocol(svc, port) in H2_PROTOCOLS
        try:
            cluster = self.upstreams.cluster(svc.hostname, dest.subset, port, policy, h2)
        except ValueError as exc:  # a subset the DestinationRule does not define
            out.flag("UH")
            out.details = "no_healthy_upstream"
            log.warning("request for %s: %s", svc.hostname, exc)
            return local_response(503, "no healthy upstream")
        out.cluster = cluster.name
        candidates = state.mesh.endpoints(svc, port)
        if dest.subset and policy is not None:
            try:
                keep = {e.id for e in policy.endpoints([_ep(w) for w, _ in candidates], dest.subset)}
            except ValueError:
                keep = set()
            candidates = [(w, p) for w, p in candidates if w.uid in keep]
        elif dest.subset:
            candidates = []
        retry = route.retry if route is not None else RetryPolicy(0)
        hmap = req.header_map()
        ctx = PickContext(hmap, _cookies(hmap.get("cookie", "")), down.address[0] if down else "",
                          query_params(req.path.split("?", 1)[1]) if "?" in req.path else {})
        deadline = trio.current_time() + route.timeout if route is not None and route.timeout else float("inf")
        tried: set[str] = set()
        attempt = 0
        retrying = False
        try:
            while True:
                target = self.upstreams.pick(cluster, candidates, ctx, tried)
                if target is None:
                    out.flag("UH")
                    out.details = "no_healthy_upstream"
                    return local_response(503, "no healthy upstream")
                out.target = target
                tried.add(target.workload.uid)
                attempt += 1
                resp, why = await self._attempt(cluster, target, req, retry, deadline, attempt, out)
                if why == "timeout":
                    out.flag("UT")
                    out.details = "response_timeout"
                    return local_response(504, "upstream request timeout")
                if not _should_retry(retry, resp, why):
                    break
                if attempt > retry.attempts or trio.current_time() >= deadline:
                    if attempt > 1:
                        out.flag("URX")
                    break
                if not retrying:
                    if not cluster.limits.admit_retry():
                        break
                    retrying = True
                backoff = min(RETRY_MAX_S, RETRY_BASE_S * (2 ** (attempt - 1)))
                await trio.sleep(self.rng.uniform(0, backoff))
        finally:
            if retrying:
                cluster.limits.release_retry()
        if resp is None:
            return _failure_response(why, out)
        return resp

    async def _attempt(self, cluster: Cluster, target: Target, req: Request, retry: RetryPolicy, deadline: float,
                       attempt: int, out: Outcome) -> tuple[Response | None, str]:
        """One try: (response, "") or (None, why) with why one of connect/reset/protocol/
        too_large/per_try_timeout/timeout."""
        headers = [(k, v) for k, v in req.headers if k != "x-envoy-attempt-count"]
        headers.append(("x-envoy-attempt-count", str(attempt)))
        attempt_req = Request(req.method, req.scheme, req.authority, req.path, headers, req.body, req.version, req.trailers)
        per_try = retry.per_try_timeout
        try_deadline = min(deadline, trio.current_time() + per_try) if per_try else deadline
        with trio.move_on_at(try_deadline) as scope:
            try:
                resp = await self.upstreams.request(cluster, target, attempt_req)
            except UpstreamError as exc:
                log.info("upstream %s (%s) attempt %d: %s", target.address, cluster.name, attempt, exc)
                self.upstreams.record(cluster, target, 503)
                return None, exc.reason
            self.upstreams.record(cluster, target, resp.status)
            return resp, ""
        assert scope.cancelled_caught
        self.upstreams.record(cluster, target, 504)
        if try_deadline < deadline:
            out.details = "upstream_per_try_timeout"
            return None, "per_try_timeout"
        return None, "timeout"

    def _l7_request(self, down: Downstream, req: Request | None, authn: object) -> authz.L7Request:
        return authz.l7_request(
            source_principal=down.principal, source_ip=down.address[0],
            source_namespace=down.workload.namespace if down.workload else _namespace_of(down.principal),
            destination_ip=down.vip, destination_port=down.port, host=down.service.hostname,
            request=req, authn=authn,
        )

    # --- lifecycle --------------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        async with trio.open_nursery() as nursery:
            for link in list(self._links):
                nursery.start_soon(link.drain, timeout_s)


# --- helpers ---------------------------------------------------------------------------------------


def _default_route(host: str, port: int) -> Route:
    """No VirtualService/HTTPRoute: everything to the service itself, with Istio's default retries."""
    return Route(name="default", destinations=(RouteDestination(Destination(host, "", port), 100),))


def _should_retry(retry: RetryPolicy, resp: Response | None, why: str) -> bool:
    on = retry.retry_on
    if retry.attempts <= 0:
        return False
    if resp is None:
        if why == "connect":
            return bool(on & {"connect-failure", "5xx", "gateway-error", "reset"})
        if why in ("reset", "protocol"):
            return bool(on & {"reset", "5xx"})
        if why == "per_try_timeout":
            return bool(on & {"5xx", "gateway-error", "reset"})
        return False
    status = resp.status
    if "5xx" in on and status >= 500:
        return True
    if "gateway-error" in on and status in (502, 503, 504):
        return True
    if "retriable-4xx" in on and status == 409:
        return True
    if "retriable-status-codes" in on and status in retry.retriable_status_codes:
        return True
    grpc = resp.header("grpc-status") or _trailer(resp, "grpc-status")
    if grpc is not None:
        for cond, code in _GRPC_RETRY.items():
            if cond in on and grpc == str(code):
                return True
    return False


def _failure_response(why: str, out: Outcome) -> Response:
    if why == "connect":
        out.flag("UF")
        out.details = "upstream_reset_before_response_started{connection_failure}"
        return local_response(503, "upstream connect error or disconnect/reset before headers. "
                                   "reset reason: connection failure")
    if why == "per_try_timeout":
        out.flag("UT")
        return local_response(504, "upstream request timeout")
    if why == "too_large":
        out.details = "response_payload_too_large"
        return local_response(502, "upstream response too large")
    out.flag("UC")
    out.details = "upstream_reset_before_response_started{connection_termination}"
    return local_response(503, "upstream connect error or disconnect/reset before headers. "
                               "reset reason: connection termination")


def _apply_headers(resp: Response, ops: HeaderOps) -> Response:
    if ops.set or ops.add or ops.remove:
        resp.headers = _ops_on_list(resp.headers, ops)
    return resp


def _ops_on_list(headers: list[tuple[str, str]], ops: HeaderOps) -> list[tuple[str, str]]:
    if not (ops.set or ops.add or ops.remove):
        return list(headers)
    drop = set(ops.remove) | {k for k, _ in ops.set}
    out = [(k, v) for k, v in headers if k not in drop]
    out += list(ops.set)
    out += list(ops.add)
    return out


def _server_header(resp: Response) -> None:
    """Envoy overwrites ``server`` with ``istio-envoy``."""
    resp.headers = [(k, v) for k, v in resp.headers if k != "server"]
    resp.headers.append(("server", "istio-envoy"))


def _trailer(resp: Response, name: str) -> str | None:
    return next((v for k, v in resp.trailers if k == name), None)


def _cookies(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k not in out:
            out[k] = v
    return out


def _ep(w: Workload) -> Endpoint:
    return Endpoint(w.uid, w.labels)


def _namespace_of(principal: str) -> str:
    parts = principal.split("/")
    return parts[parts.index("ns") + 1] if "ns" in parts[:-1] else ""


def _looks_http(data: bytes) -> bool:
    if not data:
        return False
    if is_http2_preface(data):
        return True
    line = data.split(b"\n", 1)[0]
    if b"\n" in data:
        return bool(_HTTP1_REQUEST_LINE.match(line + b"\n"))
    return bool(_HTTP1_PREFIX.match(line))


def _client_port(forwarded: str) -> int | None:
    for part in forwarded.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "for":
            value = value.strip().strip('"')
            port = value.rpartition(":")[2] if value.count(":") == 1 or "]" in value else ""
            return int(port) if port.isdigit() else None
    return None
