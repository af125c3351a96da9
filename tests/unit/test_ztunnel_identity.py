"""ztunnel's identity layer: SPIFFE identities, the timing decisions (table tests, no trio), and
the IdentityManager against the fake CA on trio's MockClock (autojump: waits cost no real time).

The wall clock the manager and the fake CA see is ``T0 + trio.current_time()``; T0 is real time
at import, so certificates are also valid for OpenSSL's real-time checks in the TLS tests.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import random
import re
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from ztunnel.identity import (
    CERTIFICATE_WAIT_S,
    CertificateBundle,
    CertificateUnavailable,
    CertifiedKey,
    CertState,
    Identity,
    IdentityManager,
    InvalidIdentity,
    InvalidTrustBundle,
    TrustBundleMissing,
    is_usable,
    peer_identity,
    refresh_at,
    retry_delay,
)
from ztunnel.identity_core import (
    MIN_REFRESH_INTERVAL_S,
    ON_DEMAND_RETRY_S,
    RETRY_BASE_S,
    RETRY_CAP_S,
    FetchPriority,
    certificate_state,
    fetch_priority,
    new_key_and_csr,
    next_attempt_at,
    renewal_time,
)
from ztunnel.identity_fake import FakeCertificateSource
from ztunnel.identity_tls import KeyLoading, build_tls_context, load_key_material

T0 = float(int(time.time()))
HOUR = 3600.0


def wall() -> float:
    return T0 + trio.current_time()


def at(seconds: float) -> datetime:
    """Mock-clock seconds as the wall-clock datetime the manager sees."""
    return datetime.fromtimestamp(T0 + seconds, UTC)


def ident(sa: str, ns: str = "default") -> Identity:
    return Identity("cluster.local", ns, sa)


class Fixed:
    """A stand-in for random.Random: ``uniform(a, b)`` always gives the same fraction of b - a."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float, /) -> float:
        return a + (b - a) * self.fraction


@asynccontextmanager
async def running(manager: IdentityManager) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        yield nursery
        nursery.cancel_scope.cancel()


async def sleep_until(mock_seconds: float) -> None:
    await trio.sleep_until(mock_seconds)


async def wait_for_issued(ca: FakeCertificateSource, identity: Identity, count: int) -> None:
    while True:
        await trio.testing.wait_all_tasks_blocked()  # let calls made so far finish
        if sum(c.outcome == "issued" for c in ca.calls_for(identity)) >= count:
            return
        await ca.wait_for_calls(len(ca.calls) + 1)


# -- Identity ---------------------------------------------------------------------------------


def test_identity_parses_and_prints() -> None:
    i = Identity.parse("spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews")
    assert i == Identity("cluster.local", "bookinfo", "bookinfo-reviews")
    assert str(i) == "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
    assert Identity.parse("spiffe://example.org/ns/a/sa/x.y").service_account == "x.y"


@pytest.mark.parametrize(("value", "why"), [
    ("", "must start with"),
    ("http://cluster.local/ns/a/sa/b", "must start with"),
    ("spiffe://cluster.local/ns/a", "the path must be"),
    ("spiffe://cluster.local/ns/a/sa/b/c", "the path must be"),
    ("spiffe://cluster.local/sa/a/ns/b", "the path must be"),
    ("spiffe://cluster.local", "the path must be"),
    ("spiffe:///ns/a/sa/b", "the trust domain is empty"),
    ("spiffe://Cluster.local/ns/a/sa/b", "trust domain label"),
    ("spiffe://cluster..local/ns/a/sa/b", "empty label"),
    ("spiffe://cluster.local:8080/ns/a/sa/b", "':' is not allowed"),
    ("spiffe://u@cluster.local/ns/a/sa/b", "'@' is not allowed"),
    ("spiffe://cluster.local/ns/a/sa/b?x=1", "'?' is not allowed"),
    ("spiffe://cluster.local/ns/a/sa/b%20", "'%' is not allowed"),
    ("spiffe://cluster.local/ns//sa/b", "the namespace is empty"),
    ("spiffe://cluster.local/ns/A/sa/b", "the namespace 'A'"),
    ("spiffe://cluster.local/ns/a.b/sa/b", "the namespace 'a.b'"),
    ("spiffe://cluster.local/ns/a/sa/-b", "the service account label '-b'"),
    ("spiffe://cluster.local/ns/" + "n" * 64 + "/sa/b", "longer than 63"),
])
def test_invalid_identities_are_refused_naming_the_value(value: str, why: str) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        Identity.parse(value)
    assert repr(value) in str(caught.value)
    assert why in str(caught.value)


def test_identity_constructor_checks_parts() -> None:
    with pytest.raises(InvalidIdentity, match=re.escape("'spiffe://cluster.local/ns/Bad/sa/x'")):
        Identity("cluster.local", "Bad", "x")


_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)


@given(td=st.lists(_label, min_size=1, max_size=3), ns=_label, sa=st.lists(_label, min_size=1, max_size=2))
def test_identity_round_trips(td: list[str], ns: str, sa: list[str]) -> None:
    i = Identity(".".join(td), ns, ".".join(sa))
    assert Identity.parse(str(i)) == i
    assert str(Identity.parse(str(i))) == str(i)


# -- decisions (pure) -------------------------------------------------------------------------

E = datetime(2030, 1, 1, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return E + timedelta(seconds=seconds)


@pytest.mark.parametrize(("not_before", "not_after", "expected"), [
    (0, 3600, 1800),
    (0, 86400, 43200),
    (100, 200, 150),
    (0, 1, 0.5),
])
def test_refresh_at_is_half_life(not_before: float, not_after: float, expected: float) -> None:
    assert refresh_at(s(not_before), s(not_after)) == s(expected)


@pytest.mark.parametrize(("fraction", "now", "lifetime", "expected"), [
    (0.0, 0, 3600, 1800),  # half-life
    (1.0, 0, 3600, 1872),  # + up to 2 % of the lifetime
    (0.5, 0, 86400, 43200 + 864),
    (0.0, 1799.5, 3600, 1800.5),  # never sooner than 1 s from now
    (0.0, 5000, 3600, 5001),  # a certificate obtained after its half-life
])
def test_renewal_time(fraction: float, now: float, lifetime: float, expected: float) -> None:
    assert renewal_time(s(0), s(lifetime), s(now), Fixed(fraction)) == s(expected)


@pytest.mark.parametrize(("attempt", "low", "high"), [
    (1, 0.05, 0.1),
    (2, 0.1, 0.2),
    (3, 0.2, 0.4),
    (9, 12.8, 25.6),
    (10, 15.0, 30.0),  # capped
    (100, 15.0, 30.0),
    (100_000, 15.0, 30.0),  # no overflow
])
def test_retry_delay_is_exponential_with_equal_jitter(attempt: int, low: float, high: float) -> None:
    assert retry_delay(attempt, Fixed(0.0)) == pytest.approx(low)
    assert retry_delay(attempt, Fixed(1.0)) == pytest.approx(high)


def test_retry_delay_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt must be at least 1, got 0"):
        retry_delay(0, Fixed(0.5))


@given(attempt=st.integers(1, 500), fraction=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_retry_delay_bounds_and_never_shrinks_below_the_cap(attempt: int, fraction: float, seed: int) -> None:
    delay = retry_delay(attempt, Fixed(fraction))
    assert RETRY_BASE_S / 2 <= delay <= RETRY_CAP_S
    nxt = retry_delay(attempt + 1, random.Random(seed))
    if RETRY_BASE_S * 2 ** attempt <= RETRY_CAP_S:  # the next ceiling is below the cap
        assert nxt >= delay


@pytest.mark.parametrize(("now", "usable"), [(-1, True), (3599.999, True), (3600, False), (4000, False)])
def test_is_usable_until_not_after(now: float, usable: bool) -> None:
    assert is_usable(s(3600), s(now)) is usable


@pytest.mark.parametrize(("scheduled", "last_end", "waiting", "usable", "expected"), [
    (30, 0, False, False, 30),  # back-off as scheduled
    (30, 0, True, True, 30),  # a waiter is served by the usable certificate: no hurry
    (30, 0, True, False, ON_DEMAND_RETRY_S),  # a waiter and nothing usable: retry sooner
    (0.5, 0, True, False, 0.5),  # never later than scheduled
    (30, None, True, False, 30),  # no attempt yet (the first one is due at once anyway)
])
def test_next_attempt_at(scheduled: float, last_end: float | None, waiting: bool, usable: bool, expected: float) -> None:
    got = next_attempt_at(s(scheduled), None if last_end is None else s(last_end), waiting=waiting, usable=usable)
    assert got == s(expected)


@pytest.mark.parametrize(("waiting", "usable", "expected"), [
    (True, True, FetchPriority.ON_DEMAND),
    (True, False, FetchPriority.ON_DEMAND),
    (False, False, FetchPriority.MISSING),
    (False, True, FetchPriority.RENEWAL),
])
def test_fetch_priority(waiting: bool, usable: bool, expected: FetchPriority) -> None:
    assert fetch_priority(waiting=waiting, usable=usable) is expected


@pytest.mark.parametrize(("not_after", "renew_at", "failures", "now", "expected"), [
    (None, None, 0, 0, CertState.FETCHING),
    (None, None, 3, 0, CertState.FAILED),
    (3600, 1800, 0, 100, CertState.VALID),
    (3600, 1800, 0, 1800, CertState.RENEWING),
    (3600, 1800, 4, 2000, CertState.RENEWING),
    (3600, 1800, 9, 3600, CertState.EXPIRED),
])
def test_certificate_state(
    not_after: float | None, renew_at: float | None, failures: int, now: float, expected: CertState
) -> None:
    got = certificate_state(
        not_after=None if not_after is None else s(not_after),
        renew_at=None if renew_at is None else s(renew_at),
        failures=failures, now=s(now),
    )
    assert got is expected


# -- the manager ------------------------------------------------------------------------------


async def test_want_fetches_in_the_background(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall, rng=Fixed(0.0))
    a = ident("a")
    manager.want([a])
    assert [(i.identity, i.state) for i in manager.snapshot()] == [(str(a), CertState.FETCHING)]
    async with running(manager):
        await trio.testing.wait_all_tasks_blocked()
        assert [(c.identity, c.outcome, c.ttl_s) for c in ca.calls] == [(a, "issued", HOUR)]
        [info] = manager.snapshot()
        assert info.state is CertState.VALID
        assert info.serial == format(ca.calls[0].serial, "x")
        assert (info.not_before, info.not_after) == (at(0), at(HOUR))
        assert info.next_attempt == at(HOUR / 2)
        before = trio.current_time()
        key = await manager.certificate(a)
        assert trio.current_time() == before  # served from the cache, no wait
        assert key.serial == ca.calls[0].serial and key.identity == a


async def test_renewal_at_half_life_before_expiry(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall, rng=Fixed(0.5))
    a = ident("a")
    manager.want([a])
    async with running(manager):
        first = await manager.certificate(a)
        await ca.wait_for_calls(2)
        # half-life (1800 s) + half of the 2 % jitter window (36 s)
        assert ca.calls[1].started - T0 == pytest.approx(1836)
        await trio.testing.wait_all_tasks_blocked()
        second = await manager.certificate(a)
        assert second.serial == ca.calls[1].serial != first.serial
        assert second.private_key.public_key().public_numbers() != first.private_key.public_key().public_numbers()
        assert second.not_after == at(1836 + HOUR)
        [info] = manager.snapshot()
        assert info.state is CertState.VALID and info.next_attempt == at(1836 + 1836)


async def test_renewal_time_with_real_jitter_stays_near_half_life(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall, rng=random.Random(3))
    identities = [ident(f"sa{i}") for i in range(5)]
    manager.want(identities)
    async with running(manager):
        await ca.wait_for_calls(10)
        renewals = [c.started - T0 for c in ca.calls[5:]]
        assert all(1800 <= t <= 1872 for t in renewals), renewals
        assert len(set(renewals)) == 5  # spread, not all at once


async def test_ca_outage_old_certificate_served_retries_back_off_then_renewal(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ztunnel.identity")
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall, rng=random.Random(7))
    a = ident("a")
    manager.want([a])
    async with running(manager):
        old = await manager.certificate(a)
        await sleep_until(1000)
        ca.go_down(until=T0 + 2500)  # from before half-life to after it, ends before expiry
        for t in (1900, 2200, 2490):
            await sleep_until(t)
            before = trio.current_time()
            assert (await manager.certificate(a)).serial == old.serial  # the old certificate, at once
            assert trio.current_time() == before
            [info] = manager.snapshot()
            assert info.state is CertState.RENEWING and info.failed_attempts > 0
            assert "unreachable" in (info.last_error or "")
        await wait_for_issued(ca, a, 2)
        failed = [c for c in ca.calls if c.outcome == "failed"]
        issued = ca.calls[-1]
        assert ca.calls == [ca.calls[0], *failed, issued]
        starts = [c.started - T0 for c in [*failed, issued]]
        assert 1800 <= starts[0] <= 1872  # the renewal attempt at half-life
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert RETRY_BASE_S / 2 <= gaps[0] <= RETRY_BASE_S
        capped_from = next(i for i, g in enumerate(gaps) if g >= RETRY_CAP_S / 2)
        assert all(b >= a for a, b in itertools.pairwise(gaps[:capped_from + 1])), gaps
        assert all(RETRY_CAP_S / 2 <= g <= RETRY_CAP_S for g in gaps[capped_from:]), gaps
        assert 2500 <= starts[-1] <= 2500 + RETRY_CAP_S < HOUR  # back when the CA is, before expiry
        new = await manager.certificate(a)
        assert new.serial == issued.serial != old.serial
        assert manager.snapshot()[0].state is CertState.VALID
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == len(failed)
    first = failures[0]
    assert first.startswith(f"certificate for {a}: attempt 1 failed: the CA is unreachable (fake outage); next retry in ")
    assert f"still serving serial {old.serial_hex}" in first
    assert all("\n" not in line for line in failures)


async def test_outage_past_expiry_certificate_raises_naming_the_identity(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=600, clock=wall, rng=random.Random(1))
    a = ident("a", ns="bookinfo")
    manager.want([a])
    async with running(manager):
        await manager.certificate(a)
        ca.go_down()
        await sleep_until(700)
        assert manager.snapshot()[0].state is CertState.EXPIRED
        calls_before = len(ca.calls)
        start = trio.current_time()
        with pytest.raises(CertificateUnavailable) as caught:
            await manager.certificate(a)
        assert trio.current_time() - start == CERTIFICATE_WAIT_S
        message = str(caught.value)
        assert message.startswith(f"no certificate for {a} after waiting 10 s: the certificate expired at ")
        assert "the CA is unreachable (fake outage)" in message
        # a waiting connection shortens the back-off to one attempt per second at most
        during = ca.calls[calls_before:]
        assert CERTIFICATE_WAIT_S - 2 <= len(during) <= CERTIFICATE_WAIT_S + 1
        ca.come_back()
        start = trio.current_time()
        key = await manager.certificate(a)
        assert trio.current_time() - start <= ON_DEMAND_RETRY_S
        assert key.serial == ca.calls[-1].serial
        assert manager.snapshot()[0].state is CertState.VALID


async def test_first_fetch_failing_reports_failed_and_why(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall, delay_s=100)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall, fetch_timeout_s=30, rng=Fixed(1.0))
    a = ident("a")
    async with running(manager):
        with pytest.raises(CertificateUnavailable, match=re.escape(f"no certificate for {a} after waiting 10 s: the CA has not answered yet")):
            await manager.certificate(a)
        ca.delay_s = 0
        await sleep_until(30.05)  # the first request timed out at 30 s, the retry is due at 30.1 s
        [info] = manager.snapshot()
        assert info.state is CertState.FAILED and info.serial is None
        assert info.last_error == "the CA did not answer within 30 s"
        assert ca.calls[0].outcome == "cancelled"
        await manager.certificate(a)
        assert trio.current_time() == pytest.approx(30.1)
        assert manager.snapshot()[0].state is CertState.VALID


async def test_unwanted_identity_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall)
    a, b = ident("a"), ident("b")
    manager.want([a, b])
    async with running(manager):
        await trio.testing.wait_all_tasks_blocked()
        assert {c.identity for c in ca.calls} == {a, b}
        manager.want([a])
        assert [i.identity for i in manager.snapshot()] == [str(a)]
        await sleep_until(2 * HOUR)
        assert len(ca.calls_for(b)) == 1  # never renewed
        assert len(ca.calls_for(a)) >= 3


async def test_unwanting_cancels_a_pending_fetch(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall, delay_s=5)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall)
    c = ident("c")
    manager.want([c])
    async with running(manager):
        await sleep_until(1)
        assert ca.calls_for(c)[0].outcome == "pending"
        manager.want([])
        await trio.testing.wait_all_tasks_blocked()
        assert ca.calls_for(c)[0].outcome == "cancelled"
        assert manager.snapshot() == []
        await sleep_until(HOUR)
        assert len(ca.calls) == 1


async def test_on_demand_is_served_before_queued_background_fetches(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall, delay_s=1)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall, max_concurrent_fetches=1)
    background = [ident(f"bg{i}") for i in range(5)]
    urgent = ident("urgent")
    manager.want(background)
    async with running(manager):
        await trio.testing.wait_all_tasks_blocked()
        assert len(ca.calls) == 1  # one in flight, four queued behind the limit
        key = await manager.certificate(urgent)
        assert trio.current_time() == 2.0  # the one in flight, then ours
        await ca.wait_for_calls(6)
        order = [c.identity for c in ca.calls]
        assert order[0] in background and order[1] == urgent
        assert set(order[2:]) == set(background) - {order[0]}
        assert key.serial == ca.calls[1].serial
        assert ca.max_in_flight == 1


async def test_a_queued_background_fetch_becomes_urgent_when_a_connection_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ca = FakeCertificateSource(clock=wall, delay_s=1)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall, max_concurrent_fetches=1)
    background = [ident(f"bg{i}") for i in range(5)]
    manager.want(background)
    async with running(manager):
        await trio.testing.wait_all_tasks_blocked()
        queued = next(i for i in reversed(background) if i != ca.calls[0].identity)
        await manager.certificate(queued)
        assert trio.current_time() == 2.0
        assert ca.calls[1].identity == queued


async def test_on_demand_identity_is_kept_until_the_next_want(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall)
    x = ident("x")
    async with running(manager):
        await manager.certificate(x)
        await manager.certificate(x)
        assert len(ca.calls) == 1
        assert [i.identity for i in manager.snapshot()] == [str(x)]
        manager.want([ident("y")])
        assert [i.identity for i in manager.snapshot()] == [str(ident("y"))]


async def test_identities_of_another_trust_domain_are_refused(autojump_clock: trio.testing.MockClock) -> None:
    manager = IdentityManager(FakeCertificateSource(clock=wall), clock=wall)
    foreign = Identity("example.org", "a", "b")
    with pytest.raises(InvalidIdentity, match=re.escape("not in this mesh's trust domain 'cluster.local'")):
        manager.want([ident("a"), foreign])
    assert manager.snapshot() == []
    with pytest.raises(InvalidIdentity, match=re.escape("spiffe://example.org/ns/a/sa/b")):
        await manager.certificate(foreign)


async def test_the_csr_and_the_certificate_match_the_local_key(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall)
    a = ident("reviews", ns="bookinfo")
    async with running(manager):
        key = await manager.certificate(a)
    csr = x509.load_pem_x509_csr(ca.calls[0].csr_pem)
    assert csr.is_signature_valid
    assert csr.subject == x509.Name([])
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(str(a))]  # exactly one SAN: the URI
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    assert isinstance(key.private_key.curve, ec.SECP256R1)
    cert = x509.load_pem_x509_certificate(key.cert_pem)
    der = serialization.PublicFormat.SubjectPublicKeyInfo
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, der)
    assert spki == public.public_bytes(serialization.Encoding.DER, der)
    assert spki == key.private_key.public_key().public_bytes(serialization.Encoding.DER, der)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    ) == [str(a)]


class WrongKeySource:
    """A broken CA: answers with a certificate for a key other than the CSR's."""

    def __init__(self, ca: FakeCertificateSource) -> None:
        self.ca = ca

    async def create_certificate(self, csr_pem: bytes, identity: Identity, ttl_s: float) -> CertificateBundle:
        _, other_csr = new_key_and_csr(identity)
        return await self.ca.create_certificate(other_csr, identity, ttl_s)


class FlakySource:
    """Raises a foreign exception once, then works."""

    def __init__(self, ca: FakeCertificateSource) -> None:
        self.ca = ca
        self.raised = False

    async def create_certificate(self, csr_pem: bytes, identity: Identity, ttl_s: float) -> CertificateBundle:
        if not self.raised:
            self.raised = True
            raise RuntimeError("boom")
        return await self.ca.create_certificate(csr_pem, identity, ttl_s)


async def test_a_certificate_for_another_key_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    manager = IdentityManager(WrongKeySource(FakeCertificateSource(clock=wall)), clock=wall)
    async with running(manager):
        with pytest.raises(CertificateUnavailable, match="failed, last: the CA's certificate does not carry the key of our CSR"):
            await manager.certificate(ident("a"))


async def test_an_unexpected_source_error_does_not_stop_the_loop(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    manager = IdentityManager(FlakySource(FakeCertificateSource(clock=wall)), clock=wall)
    async with running(manager):
        await manager.certificate(ident("a"))
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "attempt 1 failed: unexpected RuntimeError from the certificate source: boom" in line


async def test_fake_ca_fails_n_times_then_works(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    ca.fail_next(3, "quota exceeded")
    manager = IdentityManager(ca, clock=wall, rng=Fixed(1.0))
    async with running(manager):
        await manager.certificate(ident("a"))
    assert [c.outcome for c in ca.calls] == ["failed"] * 3 + ["issued"]
    assert ca.calls[0].error == "quota exceeded"
    assert trio.current_time() == pytest.approx(0.1 + 0.2 + 0.4)


async def test_nothing_public_shows_a_private_key(autojump_clock: trio.testing.MockClock) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, clock=wall)
    manager.set_trust_bundle(ca.trust_bundle_pem)
    a = ident("a")
    async with running(manager):
        key = await manager.certificate(a)
        await manager.tls_context(a, server=True)
    body = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode().splitlines()[1]
    snapshot = manager.snapshot()
    texts = [
        repr(key), str(key), repr(snapshot), str(snapshot), repr(manager), repr(ca), repr(ca.calls),
        json.dumps([dataclasses.asdict(i) for i in snapshot], default=str),
    ]
    for text in texts:
        assert "PRIVATE KEY" not in text and body not in text
    assert snapshot[0].chain_pem[0] == key.cert_pem.decode()
    assert snapshot[0].chain_pem[1:] == (ca.trust_bundle_pem.decode(),)


# -- TLS --------------------------------------------------------------------------------------


TLSStream = trio.SSLStream[trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]]


async def handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> tuple[TLSStream, TLSStream,
           dict[str, BaseException]]:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_raw, client_ctx, server_hostname=None)
    server = trio.SSLStream(server_raw, server_ctx, server_side=True)
    errors: dict[str, BaseException] = {}

    async def side(name: str, stream: TLSStream) -> None:
        try:
            await stream.do_handshake()
            if name == "client":  # TLS 1.3: the client learns of a refusal on its first read
                await stream.send_all(b"ping")
                answer = await stream.receive_some(4)
            else:
                answer = await stream.receive_some(4)
                await stream.send_all(b"pong")
            if not answer:  # the peer closed: its alert may not have reached us first
                errors[name] = ConnectionResetError(f"{name}: the peer closed the connection")
                await trio.aclose_forcefully(stream)
            else:
                assert answer == (b"pong" if name == "client" else b"ping")
        except trio.BrokenResourceError as exc:
            errors[name] = exc
            await trio.aclose_forcefully(stream)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "client", client)
            nursery.start_soon(side, "server", server)
    return client, server, errors


@pytest.mark.parametrize("loading", ["memfd", "private-dir"])
async def test_two_identities_complete_a_tls13_handshake(
    autojump_clock: trio.testing.MockClock, loading: KeyLoading
) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, ttl_s=HOUR, clock=wall)
    manager.set_trust_bundle(ca.trust_bundle_pem)
    a, b = ident("productpage"), ident("reviews", ns="bookinfo")
    async with running(manager):
        if loading == "memfd":
            server_ctx = await manager.tls_context(a, server=True)
            client_ctx = await manager.tls_context(b, server=False)
            assert await manager.tls_context(a, server=True) is server_ctx  # built once
        else:
            server_ctx = build_tls_context(await manager.certificate(a), ca.trust_bundle_pem, server=True,
                                           key_loading="private-dir")
            client_ctx = build_tls_context(await manager.certificate(b), ca.trust_bundle_pem, server=False,
                                           key_loading="private-dir")
    for ctx in (server_ctx, client_ctx):
        assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    client, server, errors = await handshake(client_ctx, server_ctx)
    assert errors == {}
    assert client.version() == server.version() == "TLSv1.3"
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "h2"
    assert peer_identity(client) == a
    assert peer_identity(server) == b


async def test_a_certificate_from_another_trust_bundle_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    ours, theirs = FakeCertificateSource(clock=wall), FakeCertificateSource(clock=wall, name="another CA")
    manager = IdentityManager(ours, ttl_s=HOUR, clock=wall)
    stranger = IdentityManager(theirs, ttl_s=HOUR, clock=wall)
    manager.set_trust_bundle(ours.trust_bundle_pem)
    a, b = ident("a"), ident("b")
    async with running(manager), running(stranger):
        server_ctx = await manager.tls_context(a, server=True)
        client_ctx = await manager.tls_context(b, server=False)
        stranger.set_trust_bundle(ours.trust_bundle_pem)  # the stranger trusts us; we do not trust it
        stranger_client = await stranger.tls_context(b, server=False)
        stranger.set_trust_bundle(theirs.trust_bundle_pem)
        stranger_server = await stranger.tls_context(a, server=True)

    _, _, errors = await handshake(stranger_client, server_ctx)  # our server refuses the client
    assert isinstance(errors["server"].__cause__, ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(errors["server"].__cause__)
    assert "client" in errors

    _, _, errors = await handshake(client_ctx, stranger_server)  # our client refuses the server
    assert isinstance(errors["client"].__cause__, ssl.SSLCertVerificationError)
    assert "server" in errors


async def test_tls_context_needs_a_trust_bundle(autojump_clock: trio.testing.MockClock) -> None:
    manager = IdentityManager(FakeCertificateSource(clock=wall), clock=wall)
    with pytest.raises(InvalidTrustBundle):
        manager.set_trust_bundle(b"not a certificate")
    async with running(manager):
        with pytest.raises(TrustBundleMissing, match=re.escape("spiffe://cluster.local/ns/default/sa/a")):
            await manager.tls_context(ident("a"), server=False)


async def test_private_dir_key_loading_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock, tmp_path: os.PathLike[str]
) -> None:
    ca = FakeCertificateSource(clock=wall)
    manager = IdentityManager(ca, clock=wall)
    async with running(manager):
        key: CertifiedKey = await manager.certificate(ident("a"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    load_key_material(ctx, key, key_loading="private-dir", private_dir=os.fspath(tmp_path))
    assert os.listdir(tmp_path) == []


def test_minimum_refresh_guard_constant_is_sane() -> None:
    assert 0 < MIN_REFRESH_INTERVAL_S <= ON_DEMAND_RETRY_S
