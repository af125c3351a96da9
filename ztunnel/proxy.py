"""Captured outbound connections (15001): decide, then do.

:func:`decide` returns the whole routing decision for a connection from the config snapshot
(pure, table-tested): the source workload by source IP; a Service VIP balanced over its healthy
endpoints (random, as Istio's ztunnel); then

- the destination (or its Service) has a waypoint → HBONE to the waypoint, ``:authority`` the
  original ``VIP:port``, the waypoint's identity pinned;
- the destination is in the mesh on another node → HBONE to ``podIP:15008``, its identity pinned;
- in the mesh on this node → served here, without the network (:meth:`Inbound.deliver`, with the
  same policy checks as a tunnel would get);
- not in the mesh, or the source is not → plain TCP with the client's own source address.

:class:`Proxy` carries the decision out over pooled HBONE connections (:class:`ztunnel.tunnel.Pool`)
and records one :class:`~ztunnel.flows.Flow` per connection.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ztunnel.flows import Flow, Recorder
from ztunnel.hbone import HboneError, format_authority
from ztunnel.identity import Identity, IdentityError, IdentityManager, peer_identity
from ztunnel.metrics import Metrics
from ztunnel.sockets import (
    CONNECT_TIMEOUT_S,
    connect_as,
    failure_reason,
    original_destination,
    peer,
)
from ztunnel.splice import splice
from ztunnel.state import ProxyState, Workload
from ztunnel.tls import handshake
from ztunnel.tunnel import Pool, TunnelRefused

if TYPE_CHECKING:
    from ztunnel.inbound import Inbound

log = logging.getLogger("ztunnel.proxy")

HBONE_PORT = 15008


@dataclass(frozen=True, slots=True)
class Decision:
    via: str                              # passthrough | hbone | local | waypoint | no_endpoint
    destination: tuple[str, int] | None   # the endpoint, or the passthrough target
    source: Workload | None
    destination_workload: Workload | None
    service: str = ""                     # "namespace/hostname" when the original destination was a VIP
    next_hop: tuple[str, int] | None = None   # hbone/waypoint: where the TLS connection goes
    authority: str = ""                   # hbone/waypoint: the CONNECT target
    peer_identity: str = ""               # hbone/waypoint: the identity the next hop must present
    reason: str = ""                      # no_endpoint: why


def decide(
    state: ProxyState, node: str, client: tuple[str, int], original: tuple[str, int],
    choose: Callable[[int], int] = lambda n: random.randrange(n), hbone_port: int = HBONE_PORT,
) -> Decision:
    """Where a captured outbound connection goes (see the module docstring)."""
    source = state.by_ip.get(client[0])
    in_mesh = source is not None and source.enrolled
    service = state.services.get(original[0])
    target: Workload | None
    if service is not None:
        waypoint = service.waypoint if in_mesh else None
        if waypoint is not None and source is not None and not _is_waypoint_of(source, waypoint.address, state):
            return _to_waypoint(state, waypoint.address, waypoint.port, original, source, service.key, choose)
        endpoints = state.endpoints(service, original[1])
        if not endpoints:
            return Decision("no_endpoint", None, source, None, service.key,
                            reason=f"service {service.key} has no healthy endpoint for port {original[1]}")
        target, port = endpoints[choose(len(endpoints))]
        endpoint = (target.addresses[0], port)
        key = service.key
    else:
        target, endpoint, key = state.by_ip.get(original[0]), original, ""
    if not in_mesh or target is None or not target.enrolled:
        return Decision("passthrough", endpoint, source, target, key)
    if target.waypoint is not None and source is not None and not _is_waypoint_of(source, target.waypoint.address,
                                                                                  state):
        return _to_waypoint(state, target.waypoint.address, target.waypoint.port, original, source, key, choose)
    if target.node == node:
        return Decision("local", endpoint, source, target, key)
    return Decision("hbone", endpoint, source, target, key, next_hop=(endpoint[0], hbone_port),
                    authority=format_authority(*endpoint), peer_identity=target.identity)


def _is_waypoint_of(source: Workload, waypoint_vip: str, state: ProxyState) -> bool:
    """A waypoint's own traffic to its destinations never loops back into the waypoint."""
    svc = state.services.get(waypoint_vip)
    return svc is not None and svc.key in source.services


def _to_waypoint(state: ProxyState, vip: str, port: int, original: tuple[str, int], source: Workload,
                 service: str, choose: Callable[[int], int]) -> Decision:
    wsvc = state.services.get(vip)
    endpoints = state.endpoints(wsvc, port) if wsvc is not None else []
    if not endpoints:
        return Decision("no_endpoint", None, source, None, service,
                        reason=f"waypoint {vip}:{port} has no healthy endpoint")
    w, wport = endpoints[choose(len(endpoints))]
    return Decision("waypoint", original, source, w, service, next_hop=(w.addresses[0], wport),
                    authority=format_authority(*original), peer_identity=w.identity)


class Proxy:
    """The outbound listener's handler (see the module docstring)."""

    def __init__(self, node: str, state: Callable[[], ProxyState], metrics: Metrics,
                 identities: IdentityManager | None = None, inbound: Inbound | None = None,
                 hbone_port: int = HBONE_PORT) -> None:
        self.node = node
        self.hbone_port = hbone_port  # other nodes' HBONE port (15008; tests on loopback differ)
        self._state = state
        self.metrics = metrics
        self.recorder = Recorder(metrics)
        self.identities = identities
        self.inbound = inbound
        self.pool = Pool(self._dial)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The connection pool's home; run before serving HBONE destinations."""
        await self.pool.run(task_status=task_status)

    async def serve(self, listener: trio.SocketListener) -> None:
        await trio.serve_listeners(self.handle, [listener])

    async def handle(self, client: trio.SocketStream) -> None:
        src, dst = peer(client), original_destination(client)
        d = decide(self._state(), self.node, src, dst, hbone_port=self.hbone_port)
        flow = Flow("outbound", src, dst, source=d.source, destination=d.destination_workload, service=d.service,
                    endpoint=d.destination, via=d.via, mtls=d.via in ("hbone", "waypoint", "local"))
        async with client:
            if d.via == "local" and self.inbound is not None:
                assert d.source is not None and d.destination is not None and d.destination_workload is not None
                await self.inbound.deliver(client, flow, d.source.identity, src[0], d.destination_workload,
                                           d.destination)
                return
            opened = self.recorder.opened(flow)
            try:
                await self._forward(client, d, flow)
            finally:
                self.recorder.closed(flow, opened)

    async def _forward(self, client: trio.SocketStream, d: Decision, flow: Flow) -> None:
        src = flow.src
        if d.via == "no_endpoint" or d.destination is None:
            flow.fail("UH", d.reason or "no destination")
            log.warning("outbound %s:%d -> %s:%d: %s", *src, *flow.dst, d.reason)
            return
        upstream: trio.abc.HalfCloseableStream
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                if d.via in ("hbone", "waypoint"):
                    upstream = await self._tunnel(d, src)
                else:
                    upstream = await connect_as(src[0], d.destination)
        except (OSError, trio.TooSlowError, HboneError, IdentityError, trio.BrokenResourceError) as exc:
            why = failure_reason(exc)
            flow.fail("UF", why)
            log.warning("outbound %s:%d -> %s:%d via %s: cannot connect upstream: %s", *src, *flow.dst, d.via, why)
            return
        async with upstream:
            totals = await splice(client, upstream)
            flow.received, flow.sent = totals.a_to_b, totals.b_to_a
            if totals.broken:
                flow.fail("UC", totals.broken)

    async def _tunnel(self, d: Decision, src: tuple[str, int]) -> trio.abc.HalfCloseableStream:
        assert d.source is not None and d.next_hop is not None
        key = (d.source.identity, d.peer_identity, d.next_hop)
        headers = [("forwarded", f'for="{format_authority(*src)}"'), ("baggage", _baggage(d.source)),
                   ("traceparent", f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01")]
        try:
            return await self.pool.open(key, d.authority, headers)
        except TunnelRefused as exc:
            raise HboneError(f"{d.next_hop[0]}:{d.next_hop[1]} refused CONNECT {d.authority}: {exc.status} "
                             f"{_STATUS_MEANING.get(exc.status, '')}".rstrip()) from None

    async def _dial(self, key: Hashable) -> trio.abc.Stream:
        """A TLS connection to the key's next hop presenting the source identity and checking the
        peer's (the pool calls this)."""
        assert isinstance(key, tuple)
        source: str = key[0]
        expected: str = key[1]
        next_hop: tuple[str, int] = key[2]
        if self.identities is None:
            raise HboneError("this ztunnel has no identities: HBONE is not available")
        ctx = await self.identities.tls_context(Identity.parse(source), server=False)
        tcp = await connect_as(None, next_hop)
        tls = await handshake(tcp, ctx, server=False)
        try:
            if tls.selected_alpn_protocol() != "h2":
                raise HboneError(f"{next_hop[0]}:{next_hop[1]} did not negotiate ALPN h2")
            presented = str(peer_identity(tls))
            if presented != expected:
                raise HboneError(f"{next_hop[0]}:{next_hop[1]} presented {presented}, expected {expected}")
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        return tls

    async def drain(self, timeout_s: float) -> None:
        await self.pool.drain(timeout_s)


_STATUS_MEANING = {400: "(bad request)", 401: "(denied by policy)", 503: "(destination unreachable)"}


def _baggage(w: Workload) -> str:
    return (f"k8s.cluster.name=Kubernetes,k8s.namespace.name={w.namespace},k8s.pod.name={w.name},"
            f"service.name={w.name},service.version=latest")
