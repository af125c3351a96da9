"""The waypoint process: follows the control plane (as a WAYPOINT subscriber for its own
Gateway), keeps a certificate for its own identity, and serves

- ``:15008`` HBONE from ztunnels (:mod:`waypoint.server`);
- ``127.0.0.1:15000`` admin: ``/config_dump`` (routes, destination policies, clusters with
  their ejected endpoints, certificate; never keys) and ``/healthz/ready``;
- ``:15020`` ``/metrics`` (Istio's request metrics, Prometheus text format);
- ``:15021`` ``/healthz/ready`` (Istio's status port; ready once it has config and a certificate).

Upstream connections to enrolled endpoints are HBONE tunnels presenting the waypoint's identity
and pinning the endpoint's (one pooled HTTP/2 connection per endpoint address); endpoints
outside the mesh are dialled over plain TCP.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import ConfigRejected, Subscription, Update
from waypoint import telemetry, tracing
from waypoint.dump import config_dump
from waypoint.server import Waypoint
from waypoint.state import EMPTY_STATE, WaypointState, WaypointStateError, from_update
from waypoint.upstream import Upstreams
from ztunnel import admin
from ztunnel.config import Config as ZtunnelConfig
from ztunnel.identity import (
    CertificateSource,
    Identity,
    IdentityError,
    IdentityManager,
    peer_identity,
)
from ztunnel.sockets import connect_as
from ztunnel.state import HBONE_PORT, Workload
from ztunnel.tls import handshake
from ztunnel.tunnel import Pool, TunnelRefused

log = logging.getLogger("waypoint")

ADMIN_ADDRESS = ("127.0.0.1", 15000)
METRICS_ADDRESS = ("0.0.0.0", 15020)
STATUS_ADDRESS = ("0.0.0.0", 15021)
DEFAULT_ZIPKIN = "zipkin.istio-system.svc.cluster.local"


@dataclass(frozen=True, slots=True)
class WaypointConfig:
    name: str                  # the Gateway's name
    namespace: str
    node: str
    pod: str
    service_account: str
    controlplane: str
    credential_file: Path
    trust_domain: str = "cluster.local"
    hbone_address: tuple[str, int] = ("0.0.0.0", HBONE_PORT)
    admin_address: tuple[str, int] = ADMIN_ADDRESS
    metrics_address: tuple[str, int] = METRICS_ADDRESS
    status_address: tuple[str, int] = STATUS_ADDRESS
    zipkin_url: str = ""       # "" : Istio's zipkin.istio-system:9411 when that Service exists
    upstream_hbone_port: int = HBONE_PORT

    @property
    def identity(self) -> Identity:
        return Identity(self.trust_domain, self.namespace, self.service_account)

    def ztunnel_config(self) -> ZtunnelConfig:
        return ZtunnelConfig(node=self.node, controlplane=self.controlplane, credential_file=self.credential_file,
                             trust_domain=self.trust_domain)


class Agent:
    def __init__(self, cfg: WaypointConfig, source: CertificateSource | None = None) -> None:
        if source is None:
            from ztunnel.ca_client import GrpcCertificateSource

            source = GrpcCertificateSource(cfg.ztunnel_config())
        self.cfg = cfg
        self.state: WaypointState = EMPTY_STATE
        self.identities = IdentityManager(source, trust_domain=cfg.trust_domain)
        self.identities.want([cfg.identity])
        self.registry = CollectorRegistry()
        self.metrics = telemetry.L7Metrics(self.registry)
        self.pool = Pool(self._dial)
        self.upstreams = Upstreams(self._connect)
        url = cfg.zipkin_url or f"http://{DEFAULT_ZIPKIN}:9411/api/v2/spans"
        self.exporter = tracing.ZipkinExporter(url)
        self.waypoint = Waypoint(cfg.name, cfg.namespace, cfg.identity, lambda: self.state, self.identities,
                                 self.upstreams, self.metrics, self.exporter,
                                 tracing_enabled=self._tracing_enabled)

    def _tracing_enabled(self) -> bool:
        return bool(self.cfg.zipkin_url) or self.state.service_named(DEFAULT_ZIPKIN) is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        hbone = _listener(self.cfg.hbone_address)
        admin_l = _listener(self.cfg.admin_address)
        metrics_l = _listener(self.cfg.metrics_address)
        status_l = _listener(self.cfg.status_address)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.identities.run)
            await nursery.start(self.pool.run)
            await nursery.start(self.upstreams.run)
            await nursery.start(self.waypoint.run)
            await nursery.start(self.exporter.run)
            ready = admin.ready_route(self.ready)
            await nursery.start(admin.serve, admin_l, {"/config_dump": admin.json_route(self.dump),
                                                       "/healthz/ready": ready})
            await nursery.start(admin.serve, metrics_l, {
                "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(self.registry)),
                "/healthz/ready": ready})
            await nursery.start(admin.serve, status_l, {"/healthz/ready": ready})
            nursery.start_soon(trio.serve_listeners, self.waypoint.handle_hbone, [hbone])
            nursery.start_soon(self._follow)
            log.info("waypoint %s/%s (%s) on %s: HBONE on %s:%d", self.cfg.namespace, self.cfg.name,
                     self.cfg.identity, self.cfg.node, *self.cfg.hbone_address)
            task_status.started()

    def ready(self) -> bool:
        if self.state.version == 0:
            return False
        return any(c.identity == str(self.cfg.identity) and c.state == "valid" for c in self.identities.snapshot())

    async def drain(self, timeout_s: float) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.waypoint.drain, timeout_s)
            nursery.start_soon(self.pool.drain, timeout_s)

    # --- config -----------------------------------------------------------------------------------

    async def _follow(self) -> None:
        token = trio.lowlevel.current_trio_token()

        def apply(update: Update) -> None:
            trio.from_thread.run_sync(self.apply, update, trio_token=token)

        cfg = self.cfg
        sub = Subscription(cfg.controlplane, pb.Hello(
            subscriber_id=f"waypoint~{cfg.namespace}/{cfg.name}~{cfg.pod}~{os.getpid()}", type=pb.WAYPOINT,
            node=cfg.node, namespace=cfg.namespace, name=cfg.name), apply)
        try:
            await trio.to_thread.run_sync(sub.run, abandon_on_cancel=True)
        finally:
            sub.stop()

    def apply(self, update: Update) -> None:
        try:
            state = from_update(update.version, update.resources)
        except WaypointStateError as exc:
            log.error("config version %d refused (keeping version %d): %s", update.version, self.state.version, exc)
            raise ConfigRejected(str(exc)) from None
        self.state = state
        if state.mesh.trust_roots:
            self.identities.set_trust_bundle(b"".join(state.mesh.trust_roots))

    def dump(self) -> dict[str, Any]:
        return config_dump(self.cfg, self.state, self.upstreams, self.identities.snapshot(), now=time.monotonic())

    # --- upstream connections ---------------------------------------------------------------------

    async def _connect(self, w: Workload, port: int) -> trio.abc.Stream:
        ip = w.addresses[0]
        if not w.enrolled:
            return await trio.open_tcp_stream(ip, port)
        key = (w.identity, (ip, self.cfg.upstream_hbone_port))
        try:
            return await self.pool.open(key, f"{ip}:{port}")
        except TunnelRefused as exc:
            raise OSError(f"{ip}:{self.cfg.upstream_hbone_port} refused CONNECT {ip}:{port} with {exc.status}") from None

    async def _dial(self, key: Hashable) -> trio.abc.Stream:
        assert isinstance(key, tuple)
        expected: str = key[0]
        next_hop: tuple[str, int] = key[1]
        ctx = await self.identities.tls_context(self.cfg.identity, server=False)
        tcp = await connect_as(None, next_hop)
        tls = await handshake(tcp, ctx, server=False)
        try:
            if tls.selected_alpn_protocol() != "h2":
                raise IdentityError(f"{next_hop[0]}:{next_hop[1]} did not negotiate ALPN h2")
            presented = str(peer_identity(tls))
            if presented != expected:
                raise IdentityError(f"{next_hop[0]}:{next_hop[1]} presented {presented}, expected {expected}")
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        return tls


def _listener(address: tuple[str, int]) -> trio.SocketListener:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    raw.bind(address)
    raw.listen(512)
    return trio.SocketListener(trio.socket.from_stdlib_socket(raw))
