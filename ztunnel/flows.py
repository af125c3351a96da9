"""One record per proxied connection: Istio's TCP metrics and one structured access-log line,
written when the connection ends (or is refused), whatever path it took.

Response flags follow Envoy's, as Istio reports them: ``UH`` no healthy upstream, ``UF``
upstream connection failure (TCP, TLS, or the peer's identity was not the expected one),
``RBAC`` denied by policy (AuthorizationPolicy or STRICT PeerAuthentication), ``DPE``
downstream protocol error (not TLS, a bad certificate, malformed HTTP/2, a bad CONNECT), ``UC``
the tunnel or upstream ended abnormally.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from ztunnel.metrics import ConnectionLabels, Metrics
from ztunnel.policy import Verdict
from ztunnel.state import Workload

access_log = logging.getLogger("ztunnel.access")


@dataclass(slots=True)
class Flow:
    direction: str                       # outbound | inbound
    src: tuple[str, int]
    dst: tuple[str, int]                 # original destination (VIP or pod) or the HBONE target
    source: Workload | None = None
    source_principal: str = ""
    destination: Workload | None = None
    service: str = ""                    # "namespace/hostname" when reached through a Service
    endpoint: tuple[str, int] | None = None
    mtls: bool = False
    via: str = "-"                       # passthrough | hbone | local | plaintext | waypoint
    flags: str = "-"
    error: str = ""
    policy: str = ""
    sent: int = 0                        # to the client (destination's view: bytes sent)
    received: int = 0                    # from the client
    started: float = field(default_factory=time.monotonic)

    def fail(self, flags: str, error: str) -> None:
        self.flags, self.error = flags, error

    def deny(self, verdict: Verdict, why: str = "") -> None:
        """Refused by policy: flag ``RBAC``, the reason and the deciding policy."""
        self.fail("RBAC", f"{why}{verdict.reason}")
        self.policy = verdict.policy

    def labels(self) -> ConnectionLabels:
        src, dst = self.source, self.destination
        # the source's identity is known when it proved it (mTLS) or when this ztunnel is the
        # source's own (outbound); a plaintext inbound connection never claims one
        if self.source_principal:
            src_principal = self.source_principal
        elif self.direction == "outbound" and src is not None and src.enrolled:
            src_principal = src.identity
        else:
            src_principal = "unknown"
        return ConnectionLabels(
            reporter="source" if self.direction == "outbound" else "destination",
            source_workload=src.name if src else "unknown",
            source_workload_namespace=src.namespace if src else "unknown",
            source_principal=src_principal,
            destination_workload=dst.name if dst else "unknown",
            destination_workload_namespace=dst.namespace if dst else "unknown",
            destination_principal=dst.identity if dst and (dst.enrolled or self.mtls) else "unknown",
            destination_service=self.service.split("/", 1)[1] if self.service else "unknown",
            connection_security_policy="mutual_tls" if self.mtls else ("none" if self.direction == "inbound"
                                                                      else "unknown"),
        )


class Recorder:
    """Writes :class:`Flow` records to the metrics and the access log."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def opened(self, flow: Flow) -> ConnectionLabels:
        labels = flow.labels()
        self.metrics.connection_opened(labels)
        return labels

    def closed(self, flow: Flow, opened: ConnectionLabels | None = None) -> None:
        labels = replace(opened or flow.labels(), response_flags=flow.flags)
        if opened is None:
            self.metrics.connection_opened(labels)
        self.metrics.connection_closed(labels, received=flow.received, sent=flow.sent)
        src, dst = flow.source, flow.destination
        access_log.info(
            "%s via=%s src=%s:%d src_workload=%s src_principal=%s dst=%s:%d dst_service=%s endpoint=%s "
            "dst_workload=%s dst_principal=%s bytes_sent=%d bytes_received=%d duration_ms=%.1f flags=%s%s%s",
            flow.direction, flow.via, *flow.src, _name(src), labels.source_principal, *flow.dst,
            flow.service or "-",
            f"{flow.endpoint[0]}:{flow.endpoint[1]}" if flow.endpoint else "-",
            _name(dst), labels.destination_principal, flow.sent, flow.received,
            (time.monotonic() - flow.started) * 1000, flow.flags,
            f" policy={flow.policy!r}" if flow.policy else "",
            f" error={flow.error!r}" if flow.error else "",
        )


def _name(w: Workload | None) -> str:
    return f"{w.namespace}/{w.name}" if w is not None else "-"
