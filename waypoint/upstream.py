"""The waypoint's upstream side: Envoy's "clusters". A cluster is one (service host, subset,
port); it owns the load balancer, the outlier detector and the circuit-breaker counters of
its DestinationRule policy (:mod:`waypoint.destinations`), and the HTTP connections to its
endpoints.

Connections to an enrolled endpoint are HBONE tunnels (``endpoint IP:15008``, the endpoint's
SPIFFE identity pinned, the waypoint's own identity presented; one HTTP/2 connection per
(endpoint node identity) carries many tunnels, :class:`ztunnel.tunnel.Pool`); an endpoint
outside the mesh is reached over plain TCP. HTTP/1.1 connections are kept alive and reused;
``http2``/``grpc`` ports use one multiplexed HTTP/2 connection per endpoint.

Circuit breaking as Envoy does it: ``maxConnections`` bounds the cluster's open connections;
a request that finds them all busy waits as *pending* (bounded by ``http1MaxPendingRequests``)
for one to be released; ``http2MaxRequests`` bounds requests in flight; ``maxRetries`` bounds
retries in flight; ``maxRequestsPerConnection`` closes a connection after that many requests.
A request over a limit is refused with :class:`Overflow` (503, flag UO).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from waypoint.destinations import (
    Balancer,
    ConnectionPool,
    DestinationPolicy,
    Endpoint,
    OutlierDetector,
    Overflow,
    PickContext,
    TrafficPolicy,
)
from waypoint.http import Request, Response, UpstreamError
from waypoint.http1 import Http1Client
from waypoint.http2 import Http2Client
from ztunnel.state import Workload

log = logging.getLogger("waypoint.upstream")

# How an endpoint is reached: (workload, target port) -> a byte stream to the pod's port.
Connector = Callable[[Workload, int], Awaitable[trio.abc.HalfCloseableStream | trio.abc.Stream]]


@dataclass(frozen=True, slots=True)
class Target:
    """A picked endpoint: the workload and the port its app listens on."""

    workload: Workload
    port: int

    @property
    def address(self) -> str:
        return f"{self.workload.addresses[0]}:{self.port}"


@dataclass(slots=True)
class _H1Conn:
    client: Http1Client
    requests: int = 0


@dataclass(slots=True)
class _H2Conn:
    client: Http2Client
    scope: trio.CancelScope
    requests: int = 0


@dataclass(slots=True)
class Cluster:
    """One (host, subset, port) and its DestinationRule policy."""

    name: str                  # Envoy style: outbound|<port>|<subset>|<host>
    policy: TrafficPolicy
    http2: bool
    balancer: Balancer
    detector: OutlierDetector | None
    limits: ConnectionPool
    idle: dict[str, list[_H1Conn]] = field(default_factory=dict)
    h2: dict[str, _H2Conn] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)   # endpoint uid -> requests in flight
    released: trio.Event = field(default_factory=trio.Event)

    def signal(self) -> None:
        self.released.set()
        self.released = trio.Event()


def cluster_name(host: str, subset: str, port: int) -> str:
    return f"outbound|{port}|{subset}|{host}"


class Upstreams:
    """Every cluster of this waypoint, created on first use and kept while its policy is
    unchanged (so outlier state and open connections survive unrelated config pushes)."""

    def __init__(self, connect: Connector, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self._clock = clock
        self._clusters: dict[tuple[str, str, int], Cluster] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Home of the HTTP/2 client connections and the outlier sweeps; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._sweep)
            task_status.started()
            await trio.sleep_forever()

    def cluster(self, host: str, subset: str, port: int, policy: DestinationPolicy | None,
                http2: bool) -> Cluster:
        tp = policy.traffic_policy(subset) if policy is not None else TrafficPolicy()
        key = (host, subset, port)
        c = self._clusters.get(key)
        if c is not None and c.policy == tp and c.http2 == http2:
            return c
        if c is not None:
            self._close_cluster(c)
        od = tp.outlier_detection
        c = Cluster(cluster_name(host, subset, port), tp, http2, Balancer(tp.load_balancer),
                    OutlierDetector(od, self._clock()) if od is not None else None, ConnectionPool(tp.connection_pool))
        self._clusters[key] = c
        return c

    def clusters(self) -> dict[str, Cluster]:
        return {c.name: c for c in self._clusters.values()}

    def pick(self, c: Cluster, candidates: list[tuple[Workload, int]], ctx: PickContext,
             avoid: set[str]) -> Target | None:
        """An endpoint among ``candidates`` (already filtered to the subset): not ejected, and
        not one of ``avoid`` (hosts already tried by this request) when another is available."""
        by_uid = {w.uid: (w, port) for w, port in candidates}
        eps = [Endpoint(w.uid, w.labels) for w, _ in candidates]
        if c.detector is not None:
            c.detector.set_endpoints([e.id for e in eps])
            eps = c.detector.available(eps)
        fresh = [e for e in eps if e.id not in avoid]
        ep = c.balancer.pick(fresh or eps, PickContext(ctx.headers, ctx.cookies, ctx.source_ip, ctx.query,
                                                        c.active, ctx.original_destination))
        if ep is None:
            return None
        w, port = by_uid[ep.id]
        return Target(w, port)

    def record(self, c: Cluster, target: Target, status: int) -> None:
        """Feed the outlier detector (a connect failure or reset counts as a 503, as Envoy
        counts locally originated errors by default)."""
        if c.detector is not None:
            c.detector.record(target.workload.uid, status, self._clock())

    async def request(self, c: Cluster, target: Target, req: Request) -> Response:
        """One attempt on one endpoint. Raises :class:`Overflow` or :class:`UpstreamError`."""
        if not c.limits.admit_request():
            raise Overflow()
        uid = target.workload.uid
        c.active[uid] = c.active.get(uid, 0) + 1
        try:
            if c.http2:
                return await self._request_h2(c, target, req)
            return await self._request_h1(c, target, req)
        finally:
            c.limits.release_request()
            c.active[uid] -= 1

    # --- HTTP/1.1 --------------------------------------------------------------------------------

    async def _request_h1(self, c: Cluster, target: Target, req: Request) -> Response:
        conn = await self._h1_conn(c, target)
        keep = False
        try:
            resp = await conn.client.request(req)
            conn.requests += 1
            keep = conn.client.reusable and not c.limits.connection_exhausted(conn.requests)
            return resp
        finally:
            if keep:
                c.idle.setdefault(target.workload.uid, []).append(conn)
            else:
                with trio.CancelScope(shield=True):
                    await conn.client.aclose()
                c.limits.release_connection()
            c.signal()

    async def _h1_conn(self, c: Cluster, target: Target) -> _H1Conn:
        pending = False
        try:
            while True:
                idle = c.idle.get(target.workload.uid)
                while idle:
                    conn = idle.pop()
                    if conn.client.reusable:
                        return conn
                    await conn.client.aclose()
                    c.limits.release_connection()
                if c.limits.connections.in_use < c.limits.limits.max_connections:
                    c.limits.admit_connection()
                    try:
                        stream = await self.open_stream(c, target)
                    except BaseException:
                        c.limits.release_connection()
                        c.signal()
                        raise
                    return _H1Conn(Http1Client(stream, label=f"{c.name} {target.address}"))
                if self._close_idle_elsewhere(c, target):
                    continue
                if not pending:
                    if not c.limits.admit_pending():
                        raise Overflow()
                    pending = True
                await c.released.wait()
        finally:
            if pending:
                c.limits.release_pending()

    def _close_idle_elsewhere(self, c: Cluster, target: Target) -> bool:
        """At the connection limit, an idle connection to another endpoint gives way."""
        for uid, idle in c.idle.items():
            if uid != target.workload.uid and idle:
                conn = idle.pop()
                trio.lowlevel.spawn_system_task(conn.client.aclose)
                c.limits.release_connection()
                return True
        return False

    async def open_stream(self, c: Cluster, target: Target) -> trio.abc.Stream:
        timeout = c.policy.connection_pool.connect_timeout
        try:
            with trio.fail_after(timeout):
                return await self._connect(target.workload, target.port)
        except trio.TooSlowError:
            raise UpstreamError(f"{target.address}: connect timeout after {timeout:g}s", "connect") from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise UpstreamError(f"{target.address}: {exc}", "connect") from None
        except Exception as exc:  # HBONE refusals, identity errors: a failed connect all the same
            if isinstance(exc, UpstreamError | Overflow):
                raise
            raise UpstreamError(f"{target.address}: {exc}", "connect") from None

    # --- HTTP/2 ----------------------------------------------------------------------------------

    async def _request_h2(self, c: Cluster, target: Target, req: Request) -> Response:
        uid = target.workload.uid
        conn = c.h2.get(uid)
        if conn is None or not conn.client.usable or c.limits.connection_exhausted(conn.requests):
            if conn is not None:
                self._drop_h2(c, uid)
            if not c.limits.admit_connection():
                raise Overflow()
            try:
                stream = await self.open_stream(c, target)
            except BaseException:
                c.limits.release_connection()
                raise
            conn = await self._start_h2(c, uid, stream, f"{c.name} {target.address}")
        conn.requests += 1
        return await conn.client.request(req)

    async def _start_h2(self, c: Cluster, uid: str, stream: trio.abc.Stream, label: str) -> _H2Conn:
        assert self._nursery is not None, "Upstreams.run() must be running"
        client = Http2Client(stream, label=label)
        scope = trio.CancelScope()
        conn = _H2Conn(client, scope)
        c.h2[uid] = conn

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await client.run(task_status=task_status)
            finally:
                if c.h2.get(uid) is conn:
                    del c.h2[uid]
                c.limits.release_connection()
                with trio.CancelScope(shield=True):
                    await client.aclose()

        await self._nursery.start(run)
        return conn

    def _drop_h2(self, c: Cluster, uid: str) -> None:
        conn = c.h2.pop(uid, None)
        if conn is not None:
            conn.scope.cancel()

    # --- housekeeping ----------------------------------------------------------------------------

    def _close_cluster(self, c: Cluster) -> None:
        for idle in c.idle.values():
            for conn in idle:
                trio.lowlevel.spawn_system_task(conn.client.aclose)
        c.idle.clear()
        for uid in list(c.h2):
            self._drop_h2(c, uid)

    async def _sweep(self) -> None:
        """Outlier detection's interval sweep (returning ejected hosts), once a second."""
        while True:
            await trio.sleep(1.0)
            now = self._clock()
            for c in list(self._clusters.values()):
                if c.detector is not None:
                    c.detector.tick(now)
