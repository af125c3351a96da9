"""The ztunnel process: follows the control plane (as a ZTUNNEL subscriber), keeps one
certificate per service account with enrolled pods on its node, loads the capture, and serves
the data path — outbound 15001 (:mod:`ztunnel.proxy`), HBONE 15008 and plaintext 15006
(:mod:`ztunnel.inbound`) — plus admin (``/config_dump`` on 127.0.0.1:15000) and metrics (15020).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import ConfigRejected, Subscription, Update
from ztunnel import admin
from ztunnel.capture import RedirectManager
from ztunnel.config import Config
from ztunnel.dump import config_dump
from ztunnel.flows import Recorder
from ztunnel.identity import CertificateSource, Identity, IdentityManager
from ztunnel.inbound import Inbound
from ztunnel.metrics import Metrics
from ztunnel.proxy import Proxy
from ztunnel.sockets import transparent_listener
from ztunnel.state import EMPTY, ProxyState, StateError, from_resources

log = logging.getLogger("ztunnel")

OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
HBONE_PORT = 15008


class Agent:
    def __init__(self, cfg: Config, source: CertificateSource | None = None) -> None:
        if source is None:
            from ztunnel.ca_client import GrpcCertificateSource

            source = GrpcCertificateSource(cfg)
        self.cfg = cfg
        self.state: ProxyState = EMPTY
        self.identities = IdentityManager(source, trust_domain=cfg.trust_domain, ttl_s=cfg.cert_ttl_s)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.inbound = Inbound(cfg.node, lambda: self.state, Recorder(self.metrics), self.identities)
        self.proxy = Proxy(cfg.node, lambda: self.state, self.metrics, self.identities, self.inbound)
        self.redirect = RedirectManager(cfg.node, cfg.bpf_prefix or f"mesh-{cfg.node}", cfg.uplink)
        self._subscription: Subscription | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        admin_listener = _listener(self.cfg.admin_address)
        metrics_listener = _listener(self.cfg.metrics_address)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.identities.run)
            await nursery.start(admin.serve, admin_listener, {
                "/config_dump": admin.json_route(self.dump), "/healthz/ready": admin.ready_route(self.ready),
            })
            await nursery.start(admin.serve, metrics_listener, {
                "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(self.registry)),
                "/healthz/ready": admin.ready_route(self.ready),
            })
            await nursery.start(self.proxy.run)
            if self.cfg.capture:
                await trio.to_thread.run_sync(self.redirect.start)
                if self.cfg.cleanup:
                    nursery.start_soon(self._cleanup_on_exit)
                listeners = {"outbound": (OUTBOUND_PORT, self.proxy.handle),
                             "inbound": (INBOUND_PORT, self.inbound.handle_plaintext),
                             "hbone": (HBONE_PORT, self.inbound.handle_hbone)}
                sockets = {which: transparent_listener(port) for which, (port, _) in listeners.items()}
                await trio.to_thread.run_sync(self.redirect.set_listeners,
                                              {which: sock.fileno() for which, sock in sockets.items()})
                for which, (_, handler) in listeners.items():
                    nursery.start_soon(trio.serve_listeners, handler, [trio.SocketListener(sockets[which])])
            nursery.start_soon(self._follow)
            log.info("ztunnel on %s: admin on %s:%d, metrics on %s:%d", self.cfg.node,
                     *self.cfg.admin_address, *self.cfg.metrics_address)
            task_status.started()

    async def drain(self, timeout_s: float) -> None:
        """Graceful shutdown: GOAWAY on every HBONE connection, then wait (up to ``timeout_s``)
        for the tunnels on them to finish."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.proxy.drain, timeout_s)
            nursery.start_soon(self.inbound.drain, timeout_s)

    async def _cleanup_on_exit(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.redirect.cleanup)

    def ready(self) -> bool:
        return self.state.version > 0

    async def _follow(self) -> None:
        token = trio.lowlevel.current_trio_token()

        def apply(update: Update) -> None:
            trio.from_thread.run_sync(self._apply, update, trio_token=token)

        sub = Subscription(
            self.cfg.controlplane,
            pb.Hello(subscriber_id=f"ztunnel~{self.cfg.node}~{os.getpid()}", type=pb.ZTUNNEL, node=self.cfg.node),
            apply,
        )
        self._subscription = sub
        try:
            await trio.to_thread.run_sync(sub.run, abandon_on_cancel=True)
        finally:
            sub.stop()

    def _apply(self, update: Update) -> None:
        try:
            state = from_resources(update.version, update.resources)
        except StateError as exc:
            raise ConfigRejected(str(exc)) from None
        self.state = state
        if state.trust_roots:
            self.identities.set_trust_bundle(b"".join(state.trust_roots))
        self.identities.want(Identity.parse(i) for i in sorted(state.local_identities(self.cfg.node)))
        if self.cfg.capture:
            self.redirect.update(state)
        self.inbound.recheck(state)

    def dump(self) -> dict[str, Any]:
        return config_dump(self.cfg.node, self.state, self.identities.snapshot(), self.proxy.pool.connections(),
                           self.inbound.open_connections(), now=time.monotonic())


def _listener(address: tuple[str, int]) -> trio.SocketListener:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    raw.bind(address)
    raw.listen(64)
    return trio.SocketListener(trio.socket.from_stdlib_socket(raw))
