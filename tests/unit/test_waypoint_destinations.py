"""The waypoint's destination policy: subsets, load balancing, outlier detection, pool limits."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from controlplane.api import mesh_pb2 as pb
from waypoint.destinations import (
    UNLIMITED,
    Balancer,
    ConnectionPool,
    DestinationError,
    Endpoint,
    Lb,
    LoadBalancer,
    OutlierDetector,
    OutlierPolicy,
    PickContext,
    PoolLimits,
    Ring,
    convert,
)

EPS = [Endpoint(f"10.0.0.{i}", {"app": "reviews", "version": f"v{1 + i % 3}"}) for i in range(1, 10)]


def policy(**kw: object) -> pb.DestinationPolicy:
    return pb.DestinationPolicy(host="reviews.default.svc.cluster.local", source="DestinationRule default/reviews", **kw)  # type: ignore[arg-type]


# --- subsets and merging --------------------------------------------------------------------------


def test_subsets_select_by_labels() -> None:
    dp = convert(policy(subsets=[pb.Subset(name="v2", labels={"version": "v2"})]))
    assert {ep.id for ep in dp.endpoints(EPS, "v2")} == {"10.0.0.1", "10.0.0.4", "10.0.0.7"}
    assert dp.endpoints(EPS) == EPS
    with pytest.raises(DestinationError, match=r"DestinationRule default/reviews.*v9"):
        dp.endpoints(EPS, "v9")


def test_subset_policy_overrides_field_by_field() -> None:
    top = pb.TrafficPolicy(load_balancer=pb.LoadBalancer(simple=pb.LoadBalancer.RANDOM),
                           connection_pool=pb.ConnectionPool(max_connections=10),
                           outlier_detection=pb.OutlierDetection(enabled=True, consecutive_5xx_errors=3,
                                                                 interval_seconds=10, base_ejection_time_seconds=30,
                                                                 max_ejection_percent=10))
    sub = pb.TrafficPolicy(load_balancer=pb.LoadBalancer(simple=pb.LoadBalancer.ROUND_ROBIN))
    dp = convert(policy(traffic_policy=top, subsets=[pb.Subset(name="v1", labels={"version": "v1"}, traffic_policy=sub),
                                                      pb.Subset(name="v2", labels={"version": "v2"})]))
    v1 = dp.traffic_policy("v1")
    assert v1.load_balancer.kind is Lb.ROUND_ROBIN
    assert v1.connection_pool.max_connections == 10  # inherited
    assert v1.outlier_detection is not None and v1.outlier_detection.consecutive_5xx == 3
    assert dp.traffic_policy("v2").load_balancer.kind is Lb.RANDOM
    assert dp.traffic_policy().load_balancer.kind is Lb.RANDOM


def test_subset_connection_pool_replaces_the_whole_pool() -> None:
    top = pb.TrafficPolicy(connection_pool=pb.ConnectionPool(max_connections=10, http2_max_requests=5))
    sub = pb.TrafficPolicy(connection_pool=pb.ConnectionPool(max_connections=1))
    dp = convert(policy(traffic_policy=top, subsets=[pb.Subset(name="a", traffic_policy=sub)]))
    pool = dp.traffic_policy("a").connection_pool
    assert (pool.max_connections, pool.max_requests) == (1, UNLIMITED)


def test_istio_defaults() -> None:
    dp = convert(policy())
    tp = dp.traffic_policy()
    assert tp.load_balancer.kind is Lb.LEAST_REQUEST and tp.outlier_detection is None
    assert tp.connection_pool == PoolLimits(UNLIMITED, 10.0, UNLIMITED, UNLIMITED, 0, UNLIMITED, 3600.0)
    od = convert(policy(traffic_policy=pb.TrafficPolicy(outlier_detection=pb.OutlierDetection(
        enabled=True, max_ejection_percent=10)))).traffic_policy().outlier_detection
    assert od == OutlierPolicy(5, 0, 10.0, 30.0, 10, 0)


@pytest.mark.parametrize(("bad", "words"), [
    (policy(subsets=[pb.Subset(name="a"), pb.Subset(name="a")]), "subsets\\[1\\].name"),
    (policy(traffic_policy=pb.TrafficPolicy(load_balancer=pb.LoadBalancer(hash_header="x", hash_source_ip=True))),
     "traffic_policy.load_balancer"),
    (policy(traffic_policy=pb.TrafficPolicy(outlier_detection=pb.OutlierDetection(enabled=True, max_ejection_percent=101))),
     "outlier_detection"),
    (policy(traffic_policy=pb.TrafficPolicy(connection_pool=pb.ConnectionPool(max_connections=-1))),
     "max_connections"),
])
def test_bad_policies_name_the_field(bad: pb.DestinationPolicy, words: str) -> None:
    with pytest.raises(DestinationError, match=f"DestinationRule default/reviews.*{words}"):
        convert(bad)


# --- load balancers -------------------------------------------------------------------------------


def test_round_robin() -> None:
    b = Balancer(LoadBalancer(Lb.ROUND_ROBIN))
    picks = [b.pick(EPS[:3]) for _ in range(6)]
    assert [p.id for p in picks if p] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"] * 2


def test_random_spreads() -> None:
    b = Balancer(LoadBalancer(Lb.RANDOM), random.Random(1))
    counts = Counter(p.id for p in (b.pick(EPS[:4]) for _ in range(2000)) if p)
    assert len(counts) == 4 and all(abs(c - 500) < 75 for c in counts.values())


def test_least_request_prefers_fewer_active() -> None:
    b = Balancer(LoadBalancer(Lb.LEAST_REQUEST), random.Random(2))
    active = {"10.0.0.1": 0, "10.0.0.2": 50, "10.0.0.3": 50}
    counts = Counter(p.id for p in (b.pick(EPS[:3], PickContext(active_requests=active)) for _ in range(3000)) if p)
    # P2C: the idle endpoint wins whenever drawn (2 of 3 pairs include it): ~2/3
    assert 0.6 < counts["10.0.0.1"] / 3000 < 0.73
    assert b.pick(EPS[:1]) == EPS[0] and b.pick([]) is None


@pytest.mark.parametrize(("lb", "ctx"), [
    (LoadBalancer(Lb.CONSISTENT_HASH, hash_header="x-user"), lambda k: PickContext(headers={"x-user": k})),
    (LoadBalancer(Lb.CONSISTENT_HASH, hash_cookie="session"), lambda k: PickContext(cookies={"session": k})),
    (LoadBalancer(Lb.CONSISTENT_HASH, hash_source_ip=True), lambda k: PickContext(source_ip=k)),
    (LoadBalancer(Lb.CONSISTENT_HASH, hash_query_parameter="u"), lambda k: PickContext(query={"u": k})),
])
def test_consistent_hash_is_stable(lb: LoadBalancer, ctx: object) -> None:
    make = ctx  # a key -> PickContext
    b = Balancer(lb, random.Random(0))
    keys = [f"user-{i}" for i in range(1000)]
    first = {k: b.pick(EPS, make(k)) for k in keys}  # type: ignore[operator]
    again = {k: b.pick(list(reversed(EPS)), make(k)) for k in keys}  # type: ignore[operator]
    assert first == again  # same key, same endpoint, whatever the order
    assert len({e.id for e in first.values() if e}) == len(EPS)  # all endpoints used
    gone = EPS[4]
    after = {k: b.pick([e for e in EPS if e != gone], make(k)) for k in keys}  # type: ignore[operator]
    moved = [k for k in keys if first[k] != after[k]]
    assert all(first[k] == gone for k in moved)  # only the removed endpoint's keys move
    assert 0 < len(moved) < 2 * len(keys) / len(EPS)


def test_consistent_hash_without_key_is_random() -> None:
    b = Balancer(LoadBalancer(Lb.CONSISTENT_HASH, hash_header="x-user"), random.Random(5))
    assert len({p.id for p in (b.pick(EPS, PickContext()) for _ in range(200)) if p}) > 3


def test_ring_empty() -> None:
    assert Ring([]).lookup("k") is None


def test_passthrough_uses_original_destination() -> None:
    b = Balancer(LoadBalancer(Lb.PASSTHROUGH))
    assert b.pick(EPS, PickContext(original_destination="10.0.0.3")) == EPS[2]
    assert b.pick(EPS, PickContext(original_destination="10.9.9.9")) is None


# --- outlier detection ----------------------------------------------------------------------------


def detector(**kw: int | float) -> OutlierDetector:
    d = OutlierDetector(OutlierPolicy(**kw), now=0.0)  # type: ignore[arg-type]
    d.set_endpoints([e.id for e in EPS[:4]])
    return d


def test_ejected_after_consecutive_5xx_and_returns_after_base_time() -> None:
    d = detector(max_ejection_percent=50)
    for t in range(4):
        d.record("10.0.0.1", 500, now=t)
    assert not d.is_ejected("10.0.0.1")
    d.record("10.0.0.1", 500, now=4)
    assert d.ejected == {"10.0.0.1"}
    assert [e.id for e in d.available(EPS[:4])] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    d.tick(30)  # sweeps at 10, 20, 30: ejected at 4, back at the first sweep >= 34
    assert d.is_ejected("10.0.0.1")
    d.tick(40)
    assert not d.is_ejected("10.0.0.1")


def test_success_resets_the_count() -> None:
    d = detector(max_ejection_percent=50)
    for status in (500, 503, 500, 500, 200, 500, 500, 500, 500):
        d.record("10.0.0.1", status, now=1)
    assert not d.is_ejected("10.0.0.1")


def test_second_ejection_lasts_twice_as_long() -> None:
    d = detector(max_ejection_percent=50, consecutive_5xx=2)
    for _ in range(2):
        d.record("10.0.0.2", 500, now=1)
    d.tick(40)
    assert not d.is_ejected("10.0.0.2")
    for _ in range(2):
        d.record("10.0.0.2", 502, now=41)
    assert d.is_ejected("10.0.0.2")  # ejected again at 41: 2 x 30s
    d.tick(100)
    assert d.is_ejected("10.0.0.2")
    d.tick(110)
    assert not d.is_ejected("10.0.0.2")


def test_gateway_errors_only_when_configured() -> None:
    d = detector(max_ejection_percent=100, consecutive_5xx=0, consecutive_gateway=2)
    d.record("10.0.0.1", 500, now=0)
    d.record("10.0.0.1", 500, now=0)
    assert not d.is_ejected("10.0.0.1")  # 500 is not a gateway error
    d.record("10.0.0.1", 503, now=0)
    d.record("10.0.0.1", 504, now=0)
    assert d.is_ejected("10.0.0.1")


def test_max_ejection_percent() -> None:
    d = detector(max_ejection_percent=50, consecutive_5xx=1)
    for ep in EPS[:4]:
        d.record(ep.id, 500, now=0)
    assert len(d.ejected) == 2  # 2 of 4 hosts = 50%
    dflt = detector(consecutive_5xx=1)  # default 10%: (0 + 1) / 4 = 25% > 10%
    dflt.record("10.0.0.1", 500, now=0)
    assert not dflt.ejected


def test_min_health_percent_panics_to_all() -> None:
    d = detector(max_ejection_percent=100, consecutive_5xx=1, min_health_percent=60)
    d.record("10.0.0.1", 500, now=0)
    assert len(d.available(EPS[:4])) == 3  # 75% healthy
    d.record("10.0.0.2", 500, now=0)
    assert len(d.available(EPS[:4])) == 4  # 50% < 60%: all
    d0 = detector(max_ejection_percent=100, consecutive_5xx=1)
    for ep in EPS[:4]:
        d0.record(ep.id, 500, now=0)
    assert d0.available(EPS[:4]) == []  # minHealthPercent 0: no panic, no endpoint (503)


# --- connection pool ------------------------------------------------------------------------------


def test_pool_overflow() -> None:
    pool = ConnectionPool(PoolLimits(max_connections=1, max_pending_requests=1, max_requests=2, max_retries=1))
    assert pool.admit_request() and pool.admit_request()
    assert not pool.admit_request()  # 503 UO
    pool.release_request()
    assert pool.admit_request()
    assert pool.admit_connection() and not pool.admit_connection()
    assert pool.admit_pending() and not pool.admit_pending()
    assert pool.admit_retry() and not pool.admit_retry()
    assert pool.overflows == 4
    pool.release_connection()
    assert pool.admit_connection()
    with pytest.raises(ValueError):
        ConnectionPool(PoolLimits()).release_request()


def test_pool_defaults_do_not_limit() -> None:
    pool = ConnectionPool(PoolLimits())
    assert all(pool.admit_request() for _ in range(10000))
    assert not pool.connection_exhausted(10**6)
    assert ConnectionPool(PoolLimits(max_requests_per_connection=3)).connection_exhausted(3)
