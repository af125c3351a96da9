"""Destination policy for the waypoint (pure): a pushed :class:`pb.DestinationPolicy` (a resolved
DestinationRule) converted once into immutable types, subsets, load balancing, outlier detection
and connection-pool limits, with Istio's defaults
(https://istio.io/latest/docs/reference/config/networking/destination-rule/):

- Subsets select endpoints by labels. A subset's traffic policy overrides the top-level one field
  by field (loadBalancer, connectionPool, outlierDetection each replaced whole, as istiod's
  ``MergeTrafficPolicy`` does).
- Load balancer: unset (UNSPECIFIED) is LEAST_REQUEST, istiod's default since 1.14. LEAST_REQUEST is
  Envoy's power of two choices (``choice_count`` 2) over the caller's active request counts;
  consistent hash is a ring hash (istiod's default algorithm) over a
  header, cookie, source IP or query parameter; no key: a random endpoint, as Envoy does.
- Outlier detection (Envoy's consecutive 5xx / gateway failure detectors): consecutive5xxErrors
  default 5 (the push cannot tell 0 from unset: 0 reads as unset), consecutiveGatewayErrors 0 = off,
  interval 10s, baseEjectionTime 30s, maxEjectionPercent 10, minHealthPercent 0. The ejection time
  is baseEjectionTime times the number of ejections (capped at max(300s, base), Envoy's
  ``max_ejection_time`` default); hosts return at an interval sweep. Istio maps minHealthPercent
  to Envoy's healthy panic threshold: below it, all endpoints are used.
- Connection pool: Istio's defaults are 2^32-1 for maxConnections, http1MaxPendingRequests,
  http2MaxRequests and maxRetries, maxRequestsPerConnection 0 (unlimited), connectTimeout 10s,
  idleTimeout 1h; beyond a limit the request overflows (503, response flag UO).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final

from controlplane.api import mesh_pb2 as pb

UNLIMITED: Final = 2**32 - 1
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_IDLE_TIMEOUT: Final = 3600.0
DEFAULT_CONSECUTIVE_5XX: Final = 5
DEFAULT_INTERVAL: Final = 10.0
DEFAULT_BASE_EJECTION_TIME: Final = 30.0
DEFAULT_MAX_EJECTION_PERCENT: Final = 10
ENVOY_MAX_EJECTION_TIME: Final = 300.0
POINTS_PER_ENDPOINT: Final = 128
GATEWAY_ERRORS: Final = frozenset({502, 503, 504})


class DestinationError(ValueError):
    """A pushed destination policy is unusable; the message names it and the field."""


class Lb(Enum):
    LEAST_REQUEST = "LEAST_REQUEST"
    RANDOM = "RANDOM"
    ROUND_ROBIN = "ROUND_ROBIN"
    PASSTHROUGH = "PASSTHROUGH"
    CONSISTENT_HASH = "CONSISTENT_HASH"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str  # an address or a workload uid: what the caller tunnels to
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    kind: Lb = Lb.LEAST_REQUEST
    hash_header: str = ""
    hash_cookie: str = ""
    hash_cookie_ttl: float = 0.0
    hash_source_ip: bool = False
    hash_query_parameter: str = ""


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_connections: int = UNLIMITED
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_pending_requests: int = UNLIMITED
    max_requests: int = UNLIMITED
    max_requests_per_connection: int = 0  # 0: unlimited
    max_retries: int = UNLIMITED
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    consecutive_5xx: int = DEFAULT_CONSECUTIVE_5XX  # 0: off
    consecutive_gateway: int = 0                    # 0: off
    interval: float = DEFAULT_INTERVAL
    base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME
    max_ejection_percent: int = DEFAULT_MAX_EJECTION_PERCENT
    min_health_percent: int = 0


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    load_balancer: LoadBalancer = LoadBalancer()
    connection_pool: PoolLimits = PoolLimits()
    outlier_detection: OutlierPolicy | None = None  # None: no outlier detection



_PartialPolicy = tuple[LoadBalancer | None, PoolLimits | None, OutlierPolicy | None]


def merge(top: _PartialPolicy, subset: _PartialPolicy) -> TrafficPolicy:
    """A subset's fields replace the top level's whole (istiod ``MergeTrafficPolicy``)."""
    lb = subset[0] if subset[0] is not None else top[0]
    pool = subset[1] if subset[1] is not None else top[1]
    outlier = subset[2] if subset[2] is not None else top[2]
    return TrafficPolicy(lb or LoadBalancer(), pool or PoolLimits(), outlier)


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: tuple[tuple[str, str], ...]
    policy: TrafficPolicy

    def selects(self, ep: Endpoint) -> bool:
        return all(ep.labels.get(k) == v for k, v in self.labels)


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    host: str
    source: str = ""
    policy: TrafficPolicy = TrafficPolicy()
    subsets: Mapping[str, Subset] = field(default_factory=dict)

    def traffic_policy(self, subset: str = "") -> TrafficPolicy:
        if not subset:
            return self.policy
        return self._subset(subset).policy

    def endpoints(self, endpoints: Sequence[Endpoint], subset: str = "") -> list[Endpoint]:
        """The service's endpoints in ``subset`` ("" : all)."""
        if not subset:
            return list(endpoints)
        s = self._subset(subset)
        return [ep for ep in endpoints if s.selects(ep)]

    def _subset(self, name: str) -> Subset:
        try:
            return self.subsets[name]
        except KeyError:
            raise DestinationError(f"{self.source or self.host}: no subset {name!r}") from None


# --- conversion -----------------------------------------------------------------------------------

_SIMPLE: Final = {
    pb.LoadBalancer.UNSPECIFIED: Lb.LEAST_REQUEST, pb.LoadBalancer.LEAST_REQUEST: Lb.LEAST_REQUEST,
    pb.LoadBalancer.RANDOM: Lb.RANDOM, pb.LoadBalancer.ROUND_ROBIN: Lb.ROUND_ROBIN,
    pb.LoadBalancer.PASSTHROUGH: Lb.PASSTHROUGH,
}


def _partial(tp: pb.TrafficPolicy, where: str) -> _PartialPolicy:
    lb = pool = outlier = None
    if tp.HasField("load_balancer"):
        m = tp.load_balancer
        keys = [bool(m.hash_header), bool(m.hash_cookie), m.hash_source_ip, bool(m.hash_query_parameter)]
        if sum(keys) > 1:
            raise DestinationError(f"{where}.load_balancer: more than one consistent hash key")
        kind = Lb.CONSISTENT_HASH if any(keys) else _SIMPLE.get(m.simple, Lb.LEAST_REQUEST)
        lb = LoadBalancer(kind, m.hash_header.lower(), m.hash_cookie, m.hash_cookie_ttl_seconds,
                          m.hash_source_ip, m.hash_query_parameter)
    if tp.HasField("connection_pool"):
        c = tp.connection_pool
        for name in ("max_connections", "http1_max_pending_requests", "http2_max_requests",
                     "max_requests_per_connection", "max_retries"):
            if getattr(c, name) < 0:
                raise DestinationError(f"{where}.connection_pool.{name}: negative")
        pool = PoolLimits(
            c.max_connections or UNLIMITED, c.connect_timeout_seconds or DEFAULT_CONNECT_TIMEOUT,
            c.http1_max_pending_requests or UNLIMITED, c.http2_max_requests or UNLIMITED,
            c.max_requests_per_connection, c.max_retries or UNLIMITED,
            c.idle_timeout_seconds or DEFAULT_IDLE_TIMEOUT)
    if tp.HasField("outlier_detection") and tp.outlier_detection.enabled:
        o = tp.outlier_detection
        if not 0 <= o.max_ejection_percent <= 100 or not 0 <= o.min_health_percent <= 100:
            raise DestinationError(f"{where}.outlier_detection: percentages must be within 0..100")
        outlier = OutlierPolicy(
            o.consecutive_5xx_errors or DEFAULT_CONSECUTIVE_5XX, max(o.consecutive_gateway_errors, 0),
            o.interval_seconds or DEFAULT_INTERVAL, o.base_ejection_time_seconds or DEFAULT_BASE_EJECTION_TIME,
            o.max_ejection_percent, o.min_health_percent)
    return lb, pool, outlier


def convert(dp: pb.DestinationPolicy) -> DestinationPolicy:
    where = dp.source or f"DestinationPolicy {dp.host}"
    top = _partial(dp.traffic_policy, f"{where}: traffic_policy") if dp.HasField("traffic_policy") else (None, None, None)
    subsets: dict[str, Subset] = {}
    for i, s in enumerate(dp.subsets):
        if not s.name or s.name in subsets:
            raise DestinationError(f"{where}: subsets[{i}].name: empty or repeated ({s.name!r})")
        mine = _partial(s.traffic_policy, f"{where}: subsets[{i}].traffic_policy") \
            if s.HasField("traffic_policy") else (None, None, None)
        subsets[s.name] = Subset(s.name, tuple(sorted(s.labels.items())), merge(top, mine))
    return DestinationPolicy(dp.host, dp.source, merge(top, (None, None, None)),
                             MappingProxyType(subsets))


# --- load balancing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PickContext:
    """What a load balancer may look at for one request."""

    headers: Mapping[str, str] = field(default_factory=dict)  # lowercase names
    cookies: Mapping[str, str] = field(default_factory=dict)
    source_ip: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    active_requests: Mapping[str, int] = field(default_factory=dict)  # endpoint id -> in flight
    original_destination: str = ""  # PASSTHROUGH


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Ring:
    """A ring hash: each endpoint owns ``POINTS_PER_ENDPOINT`` points (a fixed number, unlike
    Envoy's ring that rescales to ``minimumRingSize``, so that removing an endpoint moves only the
    keys it owned); a key goes to the owner of the first point at or after its hash."""

    def __init__(self, ids: Sequence[str]) -> None:
        per = POINTS_PER_ENDPOINT
        points = sorted((_hash(f"{ep}_{i}"), ep) for ep in ids for i in range(per))
        self._hashes = [h for h, _ in points]
        self._owners = [ep for _, ep in points]

    def lookup(self, key: str) -> str | None:
        if not self._owners:
            return None
        i = bisect.bisect_left(self._hashes, _hash(key))
        return self._owners[i % len(self._owners)]


class Balancer:
    """Picks an endpoint among the available ones for one destination (service/subset); keeps
    the round-robin position and the hash ring. ``rng`` is injectable for tests."""

    def __init__(self, lb: LoadBalancer, rng: random.Random | None = None) -> None:
        self.lb = lb
        self.rng = rng or random.Random()
        self._next = 0
        self._ring: tuple[tuple[str, ...], Ring] | None = None

    def hash_key(self, ctx: PickContext) -> str | None:
        lb = self.lb
        if lb.hash_header:
            return ctx.headers.get(lb.hash_header)
        if lb.hash_cookie:
            return ctx.cookies.get(lb.hash_cookie)
        if lb.hash_source_ip:
            return ctx.source_ip or None
        if lb.hash_query_parameter:
            return ctx.query.get(lb.hash_query_parameter)
        return None

    def pick(self, endpoints: Sequence[Endpoint], ctx: PickContext | None = None) -> Endpoint | None:
        if not endpoints:
            return None
        ctx = ctx or PickContext()
        kind = self.lb.kind
        if kind is Lb.ROUND_ROBIN:
            ep = endpoints[self._next % len(endpoints)]
            self._next += 1
            return ep
        if kind is Lb.RANDOM:
            return endpoints[self.rng.randrange(len(endpoints))]
        if kind is Lb.LEAST_REQUEST:
            if len(endpoints) == 1:
                return endpoints[0]
            a, b = self.rng.sample(range(len(endpoints)), 2)
            ea, eb = endpoints[a], endpoints[b]
            return eb if ctx.active_requests.get(eb.id, 0) < ctx.active_requests.get(ea.id, 0) else ea
        if kind is Lb.PASSTHROUGH:
            return next((ep for ep in endpoints if ep.id == ctx.original_destination), None)
        key = self.hash_key(ctx)
        if key is None:
            return endpoints[self.rng.randrange(len(endpoints))]
        ids = tuple(sorted(ep.id for ep in endpoints))
        if self._ring is None or self._ring[0] != ids:
            self._ring = (ids, Ring(ids))
        owner = self._ring[1].lookup(key)
        return next(ep for ep in endpoints if ep.id == owner)


# --- outlier detection ----------------------------------------------------------------------------


@dataclass(slots=True)
class _HostState:
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    ejections: int = 0  # Envoy's ejection multiplier
    ejected_at: float | None = None


class OutlierDetector:
    """Envoy's consecutive 5xx / consecutive gateway failure detection for one destination.
    Time is given by the caller (``now`` in seconds, any origin)."""

    def __init__(self, policy: OutlierPolicy, now: float = 0.0) -> None:
        self.policy = policy
        self._hosts: dict[str, _HostState] = {}
        self._last_sweep = now

    def set_endpoints(self, ids: Sequence[str]) -> None:
        """The current endpoints; state of endpoints gone is dropped."""
        self._hosts = {i: self._hosts.get(i) or _HostState() for i in ids}

    def is_ejected(self, endpoint_id: str) -> bool:
        h = self._hosts.get(endpoint_id)
        return h is not None and h.ejected_at is not None

    @property
    def ejected(self) -> set[str]:
        return {i for i, h in self._hosts.items() if h.ejected_at is not None}

    def record(self, endpoint_id: str, status: int, now: float) -> None:
        """One response from an endpoint (a connect failure or reset counts as 503, as Envoy maps
        local-origin errors when they are not split)."""
        self.tick(now)
        h = self._hosts.setdefault(endpoint_id, _HostState())
        if status < 500:
            h.consecutive_5xx = h.consecutive_gateway = 0
            return
        p = self.policy
        if status in GATEWAY_ERRORS:
            h.consecutive_gateway += 1
            if p.consecutive_gateway and h.consecutive_gateway == p.consecutive_gateway:
                self._eject(endpoint_id, h, now)
        else:
            h.consecutive_gateway = 0
        h.consecutive_5xx += 1
        if p.consecutive_5xx and h.consecutive_5xx == p.consecutive_5xx:
            self._eject(endpoint_id, h, now)

    def _eject(self, endpoint_id: str, h: _HostState, now: float) -> None:
        h.consecutive_5xx = h.consecutive_gateway = 0
        if h.ejected_at is not None:
            return
        ejected = sum(1 for x in self._hosts.values() if x.ejected_at is not None)
        # Envoy (DetectorImpl::ejectHost): eject while (ejected + 1) / hosts <= maxEjectionPercent
        if 100.0 * (ejected + 1) / len(self._hosts) > self.policy.max_ejection_percent:
            return
        h.ejections += 1
        h.ejected_at = now

    def ejection_time(self, endpoint_id: str) -> float:
        h = self._hosts[endpoint_id]
        base = self.policy.base_ejection_time
        return min(base * max(h.ejections, 1), max(ENVOY_MAX_EJECTION_TIME, base))

    def tick(self, now: float) -> None:
        """Run the interval sweeps due by ``now``: ejected hosts whose time is up return; hosts
        not ejected have their ejection multiplier decremented (Envoy)."""
        interval = self.policy.interval
        while self._last_sweep + interval <= now:
            self._last_sweep += interval
            sweep = self._last_sweep
            for i, h in self._hosts.items():
                if h.ejected_at is not None:
                    if sweep >= h.ejected_at + self.ejection_time(i):
                        h.ejected_at = None
                elif h.ejections > 0:
                    h.ejections -= 1

    def available(self, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
        """The endpoints to balance over: those not ejected; all of them when fewer than
        minHealthPercent are healthy (Istio maps it to Envoy's panic threshold; 0 disables it)."""
        healthy = [ep for ep in endpoints if not self.is_ejected(ep.id)]
        mhp = self.policy.min_health_percent
        if endpoints and mhp and 100.0 * len(healthy) / len(endpoints) < mhp:
            return list(endpoints)
        return healthy


# --- connection pool ------------------------------------------------------------------------------


class Overflow(Exception):
    """A connection-pool limit is reached: answer 503 with response flag UO."""

    status = 503
    flag = "UO"


@dataclass(slots=True)
class _Gate:
    limit: int
    in_use: int = 0

    def acquire(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        if self.in_use <= 0:
            raise ValueError("released more than acquired")
        self.in_use -= 1


class ConnectionPool:
    """The circuit-breaker counters of one destination (Envoy's max_connections, max_pending_
    requests, max_requests, max_retries). ``admit_*`` return False when the request overflows."""

    def __init__(self, limits: PoolLimits) -> None:
        self.limits = limits
        self.connections = _Gate(limits.max_connections)
        self.pending = _Gate(limits.max_pending_requests)
        self.requests = _Gate(limits.max_requests)
        self.retries = _Gate(limits.max_retries)
        self.overflows = 0

    def _admit(self, gate: _Gate) -> bool:
        ok = gate.acquire()
        if not ok:
            self.overflows += 1
        return ok

    def admit_request(self) -> bool:
        return self._admit(self.requests)

    def release_request(self) -> None:
        self.requests.release()

    def admit_connection(self) -> bool:
        return self._admit(self.connections)

    def release_connection(self) -> None:
        self.connections.release()

    def admit_pending(self) -> bool:
        """A request waiting for a connection (all connections busy and none may be opened)."""
        return self._admit(self.pending)

    def release_pending(self) -> None:
        self.pending.release()

    def admit_retry(self) -> bool:
        return self._admit(self.retries)

    def release_retry(self) -> None:
        self.retries.release()

    def connection_exhausted(self, requests_on_connection: int) -> bool:
        """Whether a connection has served maxRequestsPerConnection (0: never)."""
        m = self.limits.max_requests_per_connection
        return bool(m) and requests_on_connection >= m
