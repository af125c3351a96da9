"""The destination side: HBONE on 15008, plaintext on 15006, and same-node delivery.

HBONE (:meth:`Inbound.handle_hbone`): the capture hands ztunnel connections addressed to a local
enrolled pod's ``:15008``. ztunnel presents *that pod's* identity (the one the client pinned),
requires the client's certificate to chain to the trust bundle and to name a SPIFFE identity
of this trust domain, and requires ALPN ``h2``. Each CONNECT is then answered as Istio does:

- ``400`` the target is not ``ip:port`` of a local workload with the identity presented;
- ``401`` PeerAuthentication or AuthorizationPolicy denied it (:mod:`ztunnel.policy`);
- ``503`` the pod did not accept the connection;
- ``200`` only once policy allowed and the pod accepted.

The pod is reached with the client's own IP as source (``IP_TRANSPARENT``): the ``forwarded``
header's address when the workload holding it has the identity the client proved, else the
address the tunnel came from.

Plaintext (:meth:`Inbound.handle_plaintext`): connections from outside the mesh to a local
enrolled pod; admitted under PERMISSIVE (and policy), refused under STRICT.

Open connections are registered with their policy inputs; :meth:`Inbound.recheck` closes the
ones a new config no longer allows.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

import trio

from ztunnel.flows import Flow, Recorder
from ztunnel.identity import Identity, IdentityError, IdentityManager, peer_identity
from ztunnel.policy import Connection, check, recheck
from ztunnel.sockets import connect_upstream, failure_reason, original_destination, peer
from ztunnel.splice import splice
from ztunnel.state import ProxyState, Workload
from ztunnel.tls import TlsStream, handshake
from ztunnel.tunnel import H2Link, Request

log = logging.getLogger("ztunnel.inbound")

HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _Open:
    conn: Connection
    scope: trio.CancelScope
    flow: Flow


class Inbound:
    def __init__(self, node: str, state: Callable[[], ProxyState], recorder: Recorder,
                 identities: IdentityManager | None) -> None:
        self.node = node
        self._state = state
        self.recorder = recorder
        self.identities = identities
        self._open: dict[int, _Open] = {}
        self._ids = count()
        self._links: set[H2Link] = set()

    # -- HBONE ---------------------------------------------------------------------------------

    async def handle_hbone(self, tcp: trio.SocketStream) -> None:
        src, dst = peer(tcp), original_destination(tcp)
        state = self._state()
        w = state.by_ip.get(dst[0])
        if w is None or w.node != self.node or not w.enrolled or self.identities is None:
            await self._refuse_connection(tcp, src, dst, w, "no enrolled workload of this node has this address")
            return
        try:
            ctx = await self.identities.tls_context(Identity.parse(w.identity), server=True)
        except IdentityError as exc:
            await self._refuse_connection(tcp, src, dst, w, f"no certificate to present: {exc}")
            return
        try:
            tls, client_id = await hbone_server_handshake(tcp, ctx, self.identities.trust_domain)
        except HBONE_HANDSHAKE_ERRORS as exc:
            await self._refuse_connection(tcp, src, dst, w, tls_error(exc))
            return
        link = H2Link(tls, client=False, label=f"HBONE from {src[0]}:{src[1]} ({client_id})")
        self._links.add(link)
        try:
            await link.run(lambda req: self._connect(req, str(client_id), src, w))
        finally:
            self._links.discard(link)
        if link.failure and link.failure.startswith("HTTP/2 protocol error"):
            flow = Flow("inbound", src, dst, destination=w, source_principal=str(client_id), mtls=True, via="hbone")
            flow.fail("DPE", link.failure)
            self.recorder.closed(flow)

    async def _refuse_connection(self, stream: trio.abc.Stream, src: tuple[str, int], dst: tuple[str, int],
                                 w: Workload | None, why: str) -> None:
        flow = Flow("inbound", src, dst, destination=w, via="hbone", mtls=False)
        flow.fail("DPE", why)
        log.warning("inbound HBONE connection from %s:%d to %s:%d refused: %s", *src, *dst, why)
        self.recorder.closed(flow)
        await trio.aclose_forcefully(stream)

    async def _connect(self, req: Request, principal: str, tunnel_src: tuple[str, int], presented: Workload) -> None:
        state = self._state()
        target = (req.host, req.port)
        source_ip = trusted_client_ip(req.headers.get("forwarded", ""), principal, state) or tunnel_src[0]
        src = (source_ip, tunnel_src[1])
        w = state.by_ip.get(req.host)
        source = state.by_ip.get(source_ip)
        flow = Flow("inbound", src, target, source=source if source and source.identity == principal else None,
                    source_principal=principal, destination=w, endpoint=target, via="hbone", mtls=True)
        if w is None or w.node != self.node or w.identity != presented.identity:
            flow.fail("DPE", f"CONNECT {req.host}:{req.port}: not a workload of this node with identity "
                             f"{presented.identity}")
            log.warning("inbound %s", flow.error)
            await req.reject(400)
            self.recorder.closed(flow)
            return
        conn = Connection(principal, source_ip, w, req.host, req.port)
        verdict = check(state, conn)
        if not verdict.allowed:
            flow.deny(verdict)
            await req.reject(401)
            self.recorder.closed(flow)
            return
        opened = self.recorder.opened(flow)
        try:
            try:
                upstream = await connect_upstream(source_ip, target)
            except (OSError, trio.TooSlowError) as exc:
                flow.fail("UF", failure_reason(exc))
                await req.reject(503)
                return
            async with upstream:
                tunnel = await req.accept()
                async with tunnel:
                    await self._splice_registered(conn, flow, tunnel, upstream)
        finally:
            self.recorder.closed(flow, opened)

    # -- same node and plaintext ---------------------------------------------------------------

    async def deliver(self, client: trio.SocketStream, outbound: Flow, principal: str, source_ip: str,
                      w: Workload, target: tuple[str, int]) -> None:
        """Same-node mesh traffic: the destination's checks, then straight to the pod. Records
        both sides' flows, as the two ztunnels would."""
        flow = Flow("inbound", outbound.src, target, source=outbound.source, source_principal=principal,
                    destination=w, endpoint=target, via="local", mtls=True, service=outbound.service)
        await self._admit_and_splice(client, flow, Connection(principal, source_ip, w, *target), outbound)

    async def handle_plaintext(self, client: trio.SocketStream) -> None:
        """15006: a client outside the mesh to a local enrolled pod."""
        src, dst = peer(client), original_destination(client)
        state = self._state()
        w = state.by_ip.get(dst[0])
        flow = Flow("inbound", src, dst, source=state.by_ip.get(src[0]), destination=w, endpoint=dst,
                    via="plaintext")
        async with client:
            if w is None or w.node != self.node:
                flow.fail("UH", f"{dst[0]} is not a workload of this node")
                self.recorder.closed(flow)
                return
            await self._admit_and_splice(client, flow, Connection(None, src[0], w, *dst), None)

    async def _admit_and_splice(self, client: trio.SocketStream, flow: Flow, conn: Connection,
                                outbound: Flow | None) -> None:
        verdict = check(self._state(), conn)
        out_opened = self.recorder.opened(outbound) if outbound is not None else None
        try:
            if not verdict.allowed:
                flow.deny(verdict)
                if outbound is not None:
                    outbound.fail("RBAC", verdict.reason)
                log.info("inbound %s:%d -> %s:%d denied: %s", *flow.src, *flow.dst, verdict.reason)
                self.recorder.closed(flow)
                return
            opened = self.recorder.opened(flow)
            try:
                try:
                    upstream = await connect_upstream(conn.source_ip, (conn.destination_ip, conn.destination_port))
                except (OSError, trio.TooSlowError) as exc:
                    flow.fail("UF", failure_reason(exc))
                    if outbound is not None:
                        outbound.fail("UF", flow.error)
                    return
                async with upstream:
                    await self._splice_registered(conn, flow, client, upstream)
                if outbound is not None:
                    outbound.sent, outbound.received = flow.sent, flow.received
                    outbound.flags, outbound.error = flow.flags, flow.error
            finally:
                self.recorder.closed(flow, opened)
        finally:
            if outbound is not None:
                self.recorder.closed(outbound, out_opened)

    async def _splice_registered(self, conn: Connection, flow: Flow, a: trio.abc.HalfCloseableStream,
                                 b: trio.abc.HalfCloseableStream) -> None:
        key = next(self._ids)
        with trio.CancelScope() as scope:
            self._open[key] = _Open(conn, scope, flow)
            try:
                totals = await splice(a, b)
                flow.received, flow.sent = totals.a_to_b, totals.b_to_a
                if totals.broken:
                    flow.fail("UC", totals.broken)
            finally:
                del self._open[key]

    def open_connections(self) -> list[_Open]:
        """The connections being served now (for config dumps)."""
        return list(self._open.values())

    # -- config changes ------------------------------------------------------------------------

    def recheck(self, state: ProxyState) -> int:
        """Close the open connections ``state``'s policies no longer allow; returns how many."""
        entries = list(self._open.values())
        by_conn = {id(e.conn): e for e in entries}
        denied = recheck(state, [e.conn for e in entries])
        for conn, verdict in denied:
            entry = by_conn[id(conn)]
            entry.flow.deny(verdict, "closed after a policy change: ")
            entry.scope.cancel()
        if denied:
            log.info("policy change closed %d open connection(s)", len(denied))
        return len(denied)

    async def drain(self, timeout_s: float) -> None:
        async with trio.open_nursery() as nursery:
            for link in list(self._links):
                nursery.start_soon(link.drain, timeout_s)


def trusted_client_ip(forwarded: str, principal: str, state: ProxyState) -> str | None:
    """The ``for=`` address of a ``forwarded`` header, when the workload holding it has the
    identity the client proved (a client cannot claim another workload's address)."""
    for part in forwarded.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() != "for":
            continue
        value = value.strip().strip('"')
        if value.startswith("["):
            value = value[1:].partition("]")[0]
        elif value.count(":") == 1:
            value = value.partition(":")[0]
        try:
            ip = str(ipaddress.ip_address(value))
        except ValueError:
            return None
        w = state.by_ip.get(ip)
        return ip if w is not None and w.identity == principal else None
    return None


HBONE_HANDSHAKE_ERRORS = (trio.BrokenResourceError, trio.TooSlowError, IdentityError, ssl.SSLError)


async def hbone_server_handshake(tcp: trio.SocketStream, ctx: ssl.SSLContext,
                                 trust_domain: str) -> tuple[TlsStream, Identity]:
    """The server side of an HBONE connection's TLS (ztunnel's 15008 and the waypoint's): the
    handshake within :data:`HANDSHAKE_TIMEOUT_S`, ALPN ``h2``, and a client identity of
    ``trust_domain``. Raises one of :data:`HBONE_HANDSHAKE_ERRORS` (the TLS stream closed)."""
    with trio.fail_after(HANDSHAKE_TIMEOUT_S):
        tls = await handshake(tcp, ctx, server=True)
    try:
        if tls.selected_alpn_protocol() != "h2":
            raise IdentityError("the client did not negotiate ALPN h2")
        client_id = peer_identity(tls)
        if client_id.trust_domain != trust_domain:
            raise IdentityError(f"client identity {client_id} is not of trust domain {trust_domain!r}")
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls, client_id


def tls_error(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return f"TLS handshake did not finish in {HANDSHAKE_TIMEOUT_S:g} s"
    cause = exc.__cause__ or exc
    if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message:
        return f"TLS handshake failed: {cause.reason}: the client's certificate: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed: {cause.reason or cause}"
    return f"TLS handshake failed: {cause}"
