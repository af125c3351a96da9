"""ztunnel's workload certificates: one per service account with a pod on this node.

:class:`IdentityManager` fetches a certificate for each wanted identity from a
:class:`CertificateSource` (the control plane's CA; keys are generated here and never leave the
node), renews it at half-life, retries failures with jittered back-off while the old certificate
is served until it expires, and drops the certificates of identities no longer wanted.
Connections get certificates with :meth:`IdentityManager.certificate` (on demand: they jump ahead
of background fetches) and TLS contexts with :meth:`IdentityManager.tls_context`.

The values and pure decisions live in :mod:`ztunnel.identity_core` (re-exported here), TLS
context building in :mod:`ztunnel.identity_tls`, the test CA in :mod:`ztunnel.identity_fake`.
Time is injectable: ``clock`` gives wall-clock POSIX seconds (X.509 validity), waits run on
trio's clock; tests make one follow the other with ``MockClock``.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Final, Protocol

import trio

from ztunnel.identity_core import (
    CertificateBundle,
    CertificateInfo,
    CertificateUnavailable,
    CertifiedKey,
    CertState,
    FetchPriority,
    Identity,
    IdentityError,
    InvalidIdentity,
    InvalidTrustBundle,
    TrustBundleMissing,
    Uniform,
    certificate_state,
    check_bundle,
    fetch_priority,
    is_usable,
    new_key_and_csr,
    next_attempt_at,
    parse_trust_bundle,
    refresh_at,
    renewal_time,
    retry_delay,
)
from ztunnel.identity_tls import build_tls_context, peer_identity

__all__ = [
    "CERTIFICATE_WAIT_S",
    "DEFAULT_TRUST_DOMAIN",
    "DEFAULT_TTL_S",
    "FETCH_TIMEOUT_S",
    "MAX_CONCURRENT_FETCHES",
    "CertState",
    "CertificateBundle",
    "CertificateInfo",
    "CertificateSource",
    "CertificateUnavailable",
    "CertifiedKey",
    "Identity",
    "IdentityError",
    "IdentityManager",
    "InvalidIdentity",
    "InvalidTrustBundle",
    "TrustBundleMissing",
    "is_usable",
    "peer_identity",
    "refresh_at",
    "retry_delay",
]

log = logging.getLogger("ztunnel.identity")

DEFAULT_TRUST_DOMAIN: Final = "cluster.local"
DEFAULT_TTL_S: Final = 86400.0
#: How long :meth:`IdentityManager.certificate` waits before raising ``CertificateUnavailable``.
CERTIFICATE_WAIT_S: Final = 10.0
#: One CA request taking longer than this counts as a failed attempt (and is retried).
FETCH_TIMEOUT_S: Final = 30.0
#: CA requests in flight at once; further fetches queue, on-demand ones first.
MAX_CONCURRENT_FETCHES: Final = 8


class CertificateSource(Protocol):
    """Where certificates come from (the control plane's CA over gRPC, or the fake).

    ``create_certificate`` signs ``csr_pem`` (one URI SAN = ``identity``) for ``ttl_s`` seconds.
    Raises :class:`CertificateUnavailable` with the reason on any failure.
    """

    async def create_certificate(self, csr_pem: bytes, identity: Identity, ttl_s: float) -> CertificateBundle: ...


class _FetchSlots:
    """A concurrency limit whose waiters are served by priority (then arrival), the priority
    being re-read at each hand-off (a queued renewal becomes urgent when a connection waits)."""

    @dataclass(eq=False)
    class _Waiter:
        priority: Callable[[], FetchPriority]
        seq: int
        granted: trio.Event = field(default_factory=trio.Event)

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrent_fetches must be at least 1, got {limit}")
        self._limit = limit
        self._busy = 0
        self._queue: list[_FetchSlots._Waiter] = []
        self._seq = count()

    @asynccontextmanager
    async def hold(self, priority: Callable[[], FetchPriority]) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: Callable[[], FetchPriority]) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._busy < self._limit and not self._queue:
            self._busy += 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = self._Waiter(priority, next(self._seq))
        self._queue.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():  # handed the slot as we were cancelled: pass it on
                self._release()
            else:
                self._queue.remove(waiter)
            raise

    def _release(self) -> None:
        if self._queue:
            best = min(self._queue, key=lambda w: (w.priority(), w.seq))
            self._queue.remove(best)
            best.granted.set()  # the slot moves to ``best``; _busy is unchanged
        else:
            self._busy -= 1


class _Entry:
    """One identity's certificate and fetch state. Mutated only by the manager."""

    def __init__(self, identity: Identity, *, wanted: bool, now: datetime) -> None:
        self.identity = identity
        self.wanted = wanted
        self.waiters = 0
        self.current: CertifiedKey | None = None
        self.renew_at: datetime | None = None
        self.next_attempt = now
        self.last_attempt_end: datetime | None = None
        self.failures = 0
        self.last_error: str | None = None
        self.scope: trio.CancelScope | None = None
        self.wakeup = trio.Event()  # pokes the entry's task (a waiter arrived)
        self.changed = trio.Event()  # wakes waiters (an attempt finished)

    def usable(self, now: datetime) -> CertifiedKey | None:
        if self.current is not None and is_usable(self.current.not_after, now):
            return self.current
        return None

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class IdentityManager:
    """Keeps a certificate for each identity wanted on this node (see the module docstring).

    ``clock`` returns wall-clock POSIX seconds; ``rng`` jitters renewals and retries. Run
    :meth:`run` in a nursery; :meth:`want`, :meth:`set_trust_bundle` and :meth:`snapshot` may be
    called before it starts (fetches then start with it).
    """

    def __init__(
        self,
        source: CertificateSource,
        *,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
        rng: Uniform | None = None,
        max_concurrent_fetches: int = MAX_CONCURRENT_FETCHES,
        wait_s: float = CERTIFICATE_WAIT_S,
        fetch_timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self._source = source
        self._trust_domain = trust_domain
        self._ttl_s = ttl_s
        self._clock = clock
        self._rng: Uniform = rng if rng is not None else random.Random()
        self._slots = _FetchSlots(max_concurrent_fetches)
        self._wait_s = wait_s
        self._fetch_timeout_s = fetch_timeout_s
        self._entries: dict[Identity, _Entry] = {}
        self._nursery: trio.Nursery | None = None
        self._trust_pem: bytes | None = None
        self._trust_generation = 0
        self._contexts: dict[tuple[Identity, bool], tuple[CertifiedKey, int, ssl.SSLContext]] = {}

    def __repr__(self) -> str:
        return (
            f"IdentityManager(trust_domain={self._trust_domain!r}, identities={len(self._entries)}, "
            f"running={self._nursery is not None})"
        )

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch and renew certificates until cancelled. Raises ``RuntimeError`` if already running."""
        if self._nursery is not None:
            raise RuntimeError("IdentityManager.run is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for entry in self._entries.values():
                    self._spawn(entry)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for entry in self._entries.values():
                entry.scope = None

    def _spawn(self, entry: _Entry) -> None:
        if self._nursery is None or entry.scope is not None:
            return
        entry.scope = trio.CancelScope()
        self._nursery.start_soon(self._maintain, entry, name=f"certificate {entry.identity}")

    # -- what the node needs --------------------------------------------------------------------

    def want(self, identities: Iterable[Identity]) -> None:
        """Set the identities with pods on this node: new ones are fetched in the background,
        the others are dropped (pending fetch cancelled, certificate and key forgotten) unless
        a connection is waiting for them right now (then they go at the next ``want``).

        Raises :class:`InvalidIdentity` (changing nothing) for an identity of another trust domain.
        """
        wanted = set(identities)
        for identity in wanted:
            self._check_trust_domain(identity)
        for identity, entry in list(self._entries.items()):
            if identity not in wanted:
                entry.wanted = False
                if entry.waiters == 0:
                    self._drop(entry)
        for identity in sorted(wanted):
            self._entry(identity).wanted = True

    def _check_trust_domain(self, identity: Identity) -> None:
        if identity.trust_domain != self._trust_domain:
            raise InvalidIdentity(str(identity), f"not in this mesh's trust domain {self._trust_domain!r}")

    def _entry(self, identity: Identity) -> _Entry:
        entry = self._entries.get(identity)
        if entry is None:
            entry = _Entry(identity, wanted=False, now=self._now())
            self._entries[identity] = entry
            self._spawn(entry)
        return entry

    def _drop(self, entry: _Entry) -> None:
        del self._entries[entry.identity]
        if entry.scope is not None:
            entry.scope.cancel()
        entry.current = None  # forget the key
        for server in (False, True):
            self._contexts.pop((entry.identity, server), None)
        log.info("certificate for %s dropped: no pod on this node uses it any more", entry.identity)

    # -- serving --------------------------------------------------------------------------------

    async def certificate(self, identity: Identity) -> CertifiedKey:
        """A usable certificate for ``identity``, fetched now (ahead of background work) if
        needed, even when the identity is not wanted (it is kept until the next :meth:`want`).

        Raises :class:`CertificateUnavailable` naming the identity and the last error after
        waiting ``wait_s`` (10 s by default), and :class:`InvalidIdentity` for another trust domain.
        """
        await trio.lowlevel.checkpoint()
        self._check_trust_domain(identity)
        entry = self._entry(identity)
        if (key := entry.usable(self._now())) is not None:
            return key
        entry.waiters += 1
        entry.wakeup.set()
        try:
            with trio.move_on_after(self._wait_s):
                while (key := entry.usable(self._now())) is None:
                    await entry.changed.wait()
                return key
        finally:
            entry.waiters -= 1
        raise CertificateUnavailable(
            f"no certificate for {identity} after waiting {self._wait_s:g} s: {self._why_not(entry)}"
        )

    def _why_not(self, entry: _Entry) -> str:
        if self._nursery is None:
            return "the identity manager is not running"
        if entry.current is not None:
            expired = f"the certificate expired at {entry.current.not_after.isoformat()}"
            return f"{expired}; renewal failed {entry.failures} times, last: {entry.last_error}"
        if entry.last_error is not None:
            return f"{entry.failures} attempts failed, last: {entry.last_error}"
        return "the CA has not answered yet"

    async def tls_context(self, identity: Identity, *, server: bool) -> ssl.SSLContext:
        """A TLS 1.3 context presenting ``identity``'s certificate and trusting the trust bundle
        (built once per certificate and bundle; see :mod:`ztunnel.identity_tls`).

        Raises :class:`CertificateUnavailable` as :meth:`certificate`, and
        :class:`TrustBundleMissing` before :meth:`set_trust_bundle` was called.
        """
        key = await self.certificate(identity)
        if self._trust_pem is None:
            raise TrustBundleMissing(f"no trust bundle yet: cannot build a TLS context for {identity}")
        cached = self._contexts.get((identity, server))
        if cached is not None and cached[0] is key and cached[1] == self._trust_generation:
            return cached[2]
        ctx = build_tls_context(key, self._trust_pem, server=server)
        self._contexts[(identity, server)] = (key, self._trust_generation, ctx)
        return ctx

    def set_trust_bundle(self, pem: bytes) -> None:
        """Replace the roots peers' certificates are verified against (PEM certificates).
        Contexts built afterwards use it. Raises :class:`InvalidTrustBundle`."""
        roots = parse_trust_bundle(pem)
        if pem != self._trust_pem:
            self._trust_pem = pem
            self._trust_generation += 1
            log.info("trust bundle set: %d root certificate(s)", len(roots))

    def snapshot(self) -> list[CertificateInfo]:
        """Every identity's certificate state for config dumps (public material only)."""
        now = self._now()
        out = []
        for identity in sorted(self._entries):
            entry = self._entries[identity]
            key = entry.current
            state = certificate_state(
                not_after=key.not_after if key else None, renew_at=entry.renew_at, failures=entry.failures, now=now
            )
            out.append(CertificateInfo(
                identity=str(identity),
                state=state,
                serial=key.serial_hex if key else None,
                not_before=key.not_before if key else None,
                not_after=key.not_after if key else None,
                next_attempt=entry.next_attempt,
                failed_attempts=entry.failures,
                last_error=entry.last_error,
                chain_pem=tuple(pem.decode("ascii") for pem in (key.cert_pem, *key.chain_pem)) if key else (),
            ))
        return out

    # -- the per-identity loop ------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _maintain(self, entry: _Entry) -> None:
        assert entry.scope is not None
        with entry.scope:
            while True:
                await self._sleep_until_due(entry)
                await self._attempt(entry)

    async def _sleep_until_due(self, entry: _Entry) -> None:
        while True:
            now = self._now()
            due = next_attempt_at(
                entry.next_attempt, entry.last_attempt_end,
                waiting=entry.waiters > 0, usable=entry.usable(now) is not None,
            )
            if due <= now:
                return
            entry.wakeup = trio.Event()
            with trio.move_on_after((due - now).total_seconds()):
                await entry.wakeup.wait()

    async def _attempt(self, entry: _Entry) -> None:
        def priority() -> FetchPriority:
            return fetch_priority(waiting=entry.waiters > 0, usable=entry.usable(self._now()) is not None)

        async with self._slots.hold(priority):
            outcome = await self._fetch(entry.identity)
        now = self._now()
        entry.last_attempt_end = now
        if isinstance(outcome, CertifiedKey):
            entry.current = outcome
            entry.failures = 0
            entry.last_error = None
            entry.renew_at = renewal_time(outcome.not_before, outcome.not_after, now, self._rng)
            entry.next_attempt = entry.renew_at
            log.info(
                "certificate for %s issued: serial %s, valid until %s, renewal at %s",
                entry.identity, outcome.serial_hex, outcome.not_after.isoformat(), entry.renew_at.isoformat(),
            )
        else:
            entry.failures += 1
            entry.last_error = outcome
            delay = retry_delay(entry.failures, self._rng)
            entry.next_attempt = datetime.fromtimestamp(now.timestamp() + delay, UTC)
            current = entry.usable(now)
            serving = (
                f"; still serving serial {current.serial_hex} until {current.not_after.isoformat()}"
                if current is not None else "; no usable certificate"
            )
            log.warning(
                "certificate for %s: attempt %d failed: %s; next retry in %.2f s%s",
                entry.identity, entry.failures, outcome, delay, serving,
            )
        entry.notify()

    async def _fetch(self, identity: Identity) -> CertifiedKey | str:
        """One CA request: the new certificate, or why there is none."""
        key, csr = new_key_and_csr(identity)
        with trio.move_on_after(self._fetch_timeout_s):
            try:
                bundle = await self._source.create_certificate(csr, identity, self._ttl_s)
            except CertificateUnavailable as exc:
                return exc.reason
            except Exception as exc:  # noqa: BLE001 -- the seam to a foreign source: renewals must go on
                return f"unexpected {type(exc).__name__} from the certificate source: {exc}"
            try:
                return check_bundle(bundle, key, identity, self._now())
            except CertificateUnavailable as exc:
                return exc.reason
        return f"the CA did not answer within {self._fetch_timeout_s:g} s"

