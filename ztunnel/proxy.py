"""Captured connections: the outbound (15001) and inbound plaintext (15006) listeners.

Decide, then do: :func:`decide` returns the whole routing decision for a captured connection
from the config snapshot (pure, table-tested); :class:`Proxy` carries it out — until HBONE
exists (issue 6) every decision is a plain TCP forward to the original destination with the
client's own source address, so capture can be proven on its own. One structured log line and
Istio's TCP metrics per connection.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import trio

from ztunnel.metrics import ConnectionLabels, Metrics
from ztunnel.sockets import connect_as, original_destination, peer
from ztunnel.splice import splice
from ztunnel.state import ProxyState, Workload

log = logging.getLogger("ztunnel.proxy")
access_log = logging.getLogger("ztunnel.access")

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Decision:
    destination: tuple[str, int] | None  # None: a Service without a healthy endpoint
    source_ip: str | None            # bind to this (the client's) address, transparently
    source: Workload | None
    destination_workload: Workload | None
    direction: str                   # "outbound" | "inbound"
    service: str = ""                # "namespace/hostname" when the original destination was a VIP


def decide(
    state: ProxyState, direction: str, client: tuple[str, int], original: tuple[str, int],
    choose: Callable[[int], int] = lambda n: random.randrange(n),
) -> Decision:
    """Where a captured connection goes. A Service VIP is balanced by ztunnel itself over the
    service's healthy endpoints (random, as Istio's ztunnel), to the endpoint's target port."""
    source = state.by_ip.get(client[0])
    service = state.services.get(original[0])
    if service is not None:
        endpoints = state.endpoints(service, original[1])
        if not endpoints:
            return Decision(None, client[0], source, None, direction, service.key)
        w, port = endpoints[choose(len(endpoints))]
        return Decision((w.addresses[0], port), client[0], source, w, direction, service.key)
    return Decision(original, client[0], source, state.by_ip.get(original[0]), direction)


class Proxy:
    def __init__(self, node: str, state: Callable[[], ProxyState], metrics: Metrics) -> None:
        self.node = node
        self._state = state
        self.metrics = metrics
        self.active = 0

    async def serve(self, listener: trio.SocketListener, direction: str) -> None:
        async def handle(stream: trio.SocketStream) -> None:
            await self.handle(stream, direction)

        await trio.serve_listeners(handle, [listener])

    async def handle(self, client: trio.SocketStream, direction: str) -> None:
        started = time.monotonic()
        src, dst = peer(client), original_destination(client)
        decision = decide(self._state(), direction, src, dst)
        labels = _labels(decision)
        self.metrics.connection_opened(labels)
        self.active += 1
        totals = None
        flags = "-"
        try:
            async with client:
                if decision.destination is None:
                    flags = "UH"  # no healthy upstream, as Envoy/Istio flag it
                    log.warning("%s %s:%d -> %s:%d: service %s has no healthy endpoint", direction, *src, *dst,
                                decision.service)
                    return
                try:
                    with trio.fail_after(CONNECT_TIMEOUT_S):
                        upstream = await connect_as(decision.source_ip, decision.destination)
                except (OSError, trio.TooSlowError) as exc:
                    flags = "UF"  # upstream connection failure, as Envoy/Istio flag it
                    log.warning("%s %s:%d -> %s:%d: cannot connect upstream: %s", direction, *src, *dst,
                                getattr(exc, "strerror", None) or exc.__class__.__name__)
                    return
                async with upstream:
                    totals = await splice(client, upstream)
        finally:
            self.active -= 1
            received, sent = (totals.a_to_b, totals.b_to_a) if totals else (0, 0)
            final = ConnectionLabels(**{**_as_dict(labels), "response_flags": flags})
            self.metrics.connection_closed(final, received=received, sent=sent)
            access_log.info(
                "%s src=%s:%d src_workload=%s dst=%s:%d dst_service=%s endpoint=%s dst_workload=%s "
                "bytes_sent=%d bytes_received=%d duration_ms=%.1f flags=%s",
                direction, *src, _name(decision.source), *dst, decision.service or "-",
                f"{decision.destination[0]}:{decision.destination[1]}" if decision.destination else "-",
                _name(decision.destination_workload), sent, received, (time.monotonic() - started) * 1000, flags,
            )


def _name(w: Workload | None) -> str:
    return f"{w.namespace}/{w.name}" if w is not None else "-"


def _labels(d: Decision) -> ConnectionLabels:
    src, dst = d.source, d.destination_workload
    return ConnectionLabels(
        reporter="source" if d.direction == "outbound" else "destination",
        source_workload=src.name if src else "unknown",
        source_workload_namespace=src.namespace if src else "unknown",
        source_principal=src.identity if src else "unknown",
        destination_workload=dst.name if dst else "unknown",
        destination_workload_namespace=dst.namespace if dst else "unknown",
        destination_principal=dst.identity if dst else "unknown",
        destination_service=d.service.split("/", 1)[1] if d.service else "unknown",
        connection_security_policy="none",
    )


def _as_dict(labels: ConnectionLabels) -> dict[str, str]:
    return asdict(labels)
