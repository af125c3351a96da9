"""ztunnel's Prometheus metrics with Istio's names and labels, registered in an injected
registry (never the global one).

TCP: ``istio_tcp_connections_opened_total``, ``istio_tcp_connections_closed_total``,
``istio_tcp_sent_bytes_total``, ``istio_tcp_received_bytes_total`` (bytes from the point of
view of the destination workload, as Istio reports them).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

TCP_LABELS = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal",
    "destination_workload", "destination_workload_namespace", "destination_principal",
    "destination_service", "request_protocol", "response_flags", "connection_security_policy",
)


@dataclass(frozen=True, slots=True)
class ConnectionLabels:
    reporter: str = "source"
    source_workload: str = "unknown"
    source_workload_namespace: str = "unknown"
    source_principal: str = "unknown"
    destination_workload: str = "unknown"
    destination_workload_namespace: str = "unknown"
    destination_principal: str = "unknown"
    destination_service: str = "unknown"
    request_protocol: str = "tcp"
    response_flags: str = "-"
    connection_security_policy: str = "unknown"

    def values(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in TCP_LABELS)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.opened = Counter("istio_tcp_connections_opened", "TCP connections opened",
                              TCP_LABELS, registry=registry)
        self.closed = Counter("istio_tcp_connections_closed", "TCP connections closed",
                              TCP_LABELS, registry=registry)
        self.sent = Counter("istio_tcp_sent_bytes", "Bytes sent to the client during the connection",
                            TCP_LABELS, registry=registry)
        self.received = Counter("istio_tcp_received_bytes", "Bytes received from the client",
                                TCP_LABELS, registry=registry)

    def connection_opened(self, labels: ConnectionLabels) -> None:
        self.opened.labels(*labels.values()).inc()

    def connection_closed(self, labels: ConnectionLabels, *, received: int, sent: int) -> None:
        values = labels.values()
        self.closed.labels(*values).inc()
        self.received.labels(*values).inc(received)
        self.sent.labels(*values).inc(sent)
