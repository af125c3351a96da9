"""Identity values and the pure decisions of certificate management (sans-I/O: no trio, no sockets).

Owns: the SPIFFE :class:`Identity` value, the exceptions of the identity layer, the values the
certificate source and the manager exchange (:class:`CertificateBundle`, :class:`CertifiedKey`,
:class:`CertificateInfo`), key and CSR generation, the check of what a CA answered, and the
timing decisions (:func:`refresh_at`, :func:`renewal_time`, :func:`retry_delay`,
:func:`next_attempt_at`, :func:`is_usable`, :func:`fetch_priority`, :func:`certificate_state`).
:mod:`ztunnel.identity` drives them with trio.

Times are timezone-aware UTC ``datetime`` values (X.509 validity is wall-clock time); delays are
float seconds. Private keys never appear in a ``repr``/``str`` of anything defined here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "MAX_SPIFFE_ID_LENGTH",
    "MIN_REFRESH_INTERVAL_S",
    "ON_DEMAND_RETRY_S",
    "RENEW_JITTER_FRACTION",
    "RETRY_BASE_S",
    "RETRY_CAP_S",
    "SCHEME",
    "CertState",
    "CertificateBundle",
    "CertificateInfo",
    "CertificateUnavailable",
    "CertifiedKey",
    "FetchPriority",
    "Identity",
    "IdentityError",
    "InvalidIdentity",
    "InvalidTrustBundle",
    "TrustBundleMissing",
    "Uniform",
    "certificate_state",
    "check_bundle",
    "fetch_priority",
    "is_usable",
    "new_key_and_csr",
    "next_attempt_at",
    "parse_trust_bundle",
    "refresh_at",
    "renewal_time",
    "retry_delay",
]

SCHEME: Final = "spiffe://"
#: SPIFFE-ID.md limits.
MAX_SPIFFE_ID_LENGTH: Final = 2048
MAX_TRUST_DOMAIN_LENGTH: Final = 255

#: Retry back-off after a failed fetch: ``RETRY_BASE_S`` doubling per attempt, capped.
RETRY_BASE_S: Final = 0.1
RETRY_CAP_S: Final = 30.0
#: Renewal happens at half-life plus up to this fraction of the lifetime (1 h → up to 72 s),
#: so the certificates fetched together are not all renewed in the same instant.
RENEW_JITTER_FRACTION: Final = 0.02
#: A fresh certificate is never renewed sooner than this (a CA handing out nearly expired or
#: very short certificates must not turn renewal into a busy loop).
MIN_REFRESH_INTERVAL_S: Final = 1.0
#: While a connection waits for a certificate that is not usable, the back-off is shortened to
#: at most this long after the previous attempt (one attempt per second per identity at most).
ON_DEMAND_RETRY_S: Final = 1.0

_DNS1123_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_URI_ONLY_CHARS: Final = re.compile(r"[?#%@:\s]")


class IdentityError(Exception):
    """Base class of every error of the identity layer."""


class InvalidIdentity(IdentityError, ValueError):
    """A SPIFFE ID that is malformed, or not of the expected trust domain; names the value."""

    def __init__(self, value: str, why: str) -> None:
        super().__init__(f"invalid SPIFFE identity {value!r}: {why}")
        self.value = value
        self.why = why


class CertificateUnavailable(IdentityError):
    """No usable certificate: the CA failed or refused, or the wait for one ran out.

    ``reason`` says why in operator terms (which identity, what the CA said).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidTrustBundle(IdentityError, ValueError):
    """A trust bundle that is not one or more PEM certificates."""


class TrustBundleMissing(IdentityError):
    """A TLS context was asked for before any trust bundle was set."""


# ---------------------------------------------------------------------------------------------
# Identity


def _check_label(what: str, value: str, max_len: int) -> str | None:
    if not value:
        return f"the {what} is empty"
    if len(value) > max_len:
        return f"the {what} {value!r} is longer than {max_len} characters"
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            f"the {what} {value!r} must consist of lowercase letters, digits and '-', "
            "and start and end with a letter or digit"
        )
    return None


def _check_dotted(what: str, value: str, max_len: int) -> str | None:
    if not value:
        return f"the {what} is empty"
    if len(value) > max_len:
        return f"the {what} {value!r} is longer than {max_len} characters"
    for label in value.split("."):
        if not label:
            return f"the {what} {value!r} has an empty label (a leading, trailing or double '.')"
        if (problem := _check_label(f"{what} label", label, 63)) is not None:
            return problem
    return None


def _problem(trust_domain: str, namespace: str, service_account: str) -> str | None:
    return (
        _check_dotted("trust domain", trust_domain, MAX_TRUST_DOMAIN_LENGTH)
        or _check_label("namespace", namespace, 63)
        or _check_dotted("service account", service_account, 253)
    )


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    """A workload identity, ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``.

    Every part is checked on construction (Istio's rules: trust domain and service account are
    dot-separated DNS-1123 labels, the namespace one DNS-1123 label), so an ``Identity`` in hand
    is always valid and ``Identity.parse(str(i)) == i``. Raises :class:`InvalidIdentity`.
    """

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        for name in ("trust_domain", "namespace", "service_account"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise InvalidIdentity(repr(value), f"{name} must be a string, got {type(value).__name__}")
        if (problem := _problem(self.trust_domain, self.namespace, self.service_account)) is not None:
            raise InvalidIdentity(self._uri(), problem)

    @classmethod
    def parse(cls, uri: str) -> Identity:
        """Parse ``spiffe://td/ns/<ns>/sa/<sa>``. Raises :class:`InvalidIdentity` naming ``uri``."""
        if not isinstance(uri, str):
            raise InvalidIdentity(repr(uri), f"expected a string, got {type(uri).__name__}")
        if len(uri) > MAX_SPIFFE_ID_LENGTH:
            raise InvalidIdentity(uri[:64] + "…", f"longer than {MAX_SPIFFE_ID_LENGTH} characters")
        if not uri.startswith(SCHEME):
            raise InvalidIdentity(uri, f"must start with {SCHEME!r}")
        if (bad := _URI_ONLY_CHARS.search(uri, len(SCHEME))) is not None:
            raise InvalidIdentity(
                uri, f"{bad.group()!r} is not allowed (no port, user info, query, fragment or escapes)"
            )
        trust_domain, slash, path = uri[len(SCHEME):].partition("/")
        parts = path.split("/")
        if not slash or len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
            raise InvalidIdentity(uri, "the path must be /ns/<namespace>/sa/<service account>")
        if (problem := _problem(trust_domain, parts[1], parts[3])) is not None:
            raise InvalidIdentity(uri, problem)
        return cls(trust_domain, parts[1], parts[3])

    def _uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self._uri()


# ---------------------------------------------------------------------------------------------
# Values exchanged with the certificate source and handed to users


@dataclass(frozen=True, slots=True)
class CertificateBundle:
    """What a CA answers: the leaf certificate and the rest of its chain (intermediates, then
    the root), all PEM. Public material only."""

    cert_pem: bytes
    chain_pem: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True, repr=False)
class CertifiedKey:
    """A usable workload certificate and its private key (generated on this node).

    ``repr``/``str`` show the identity, serial and validity, never the key.
    ``private_key`` is for building TLS contexts; do not log or serialize it.
    """

    identity: Identity
    cert_pem: bytes
    chain_pem: tuple[bytes, ...]
    serial: int
    not_before: datetime
    not_after: datetime
    private_key: ec.EllipticCurvePrivateKey = field(compare=False)

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    def __repr__(self) -> str:
        return (
            f"CertifiedKey({self.identity}, serial={self.serial_hex}, "
            f"not_before={self.not_before.isoformat()}, not_after={self.not_after.isoformat()})"
        )

    __str__ = __repr__


class CertState(enum.StrEnum):
    """What a certificate entry is doing, for config dumps."""

    FETCHING = "fetching"  # no certificate yet, no attempt failed yet
    VALID = "valid"  # a usable certificate, renewal not due yet
    RENEWING = "renewing"  # a usable certificate, renewal due (in flight or being retried)
    EXPIRED = "expired"  # the certificate held has expired; still trying to get a new one
    FAILED = "failed"  # no certificate ever obtained, attempts failing


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """One identity's certificate as the config dump shows it: JSON-friendly, public only.

    ``chain_pem`` is the leaf then the rest of the chain (certificates only, never keys).
    """

    identity: str
    state: CertState
    serial: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    next_attempt: datetime | None = None
    failed_attempts: int = 0
    last_error: str | None = None
    chain_pem: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Keys, CSRs and checking what the CA answered


def new_key_and_csr(identity: Identity) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and a CSR for ``identity``: empty subject, one URI SAN (critical, as
    RFC 5280 requires with an empty subject), signed with ECDSA-SHA256. Returns (key, CSR PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(identity))]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def _public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_bundle(
    bundle: CertificateBundle, private_key: ec.EllipticCurvePrivateKey, identity: Identity, now: datetime
) -> CertifiedKey:
    """Check a CA's answer against the request: the leaf parses, carries our public key and
    exactly the identity's URI SAN, and has not expired; the chain parses.

    Raises :class:`CertificateUnavailable` saying what is wrong.
    """
    try:
        leaf = x509.load_pem_x509_certificate(bundle.cert_pem)
        for pem in bundle.chain_pem:
            x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateUnavailable(f"the CA answered with a certificate that does not parse: {exc}") from None
    public = leaf.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or _public_der(public) != _public_der(
        private_key.public_key()
    ):
        raise CertificateUnavailable("the CA's certificate does not carry the key of our CSR")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateUnavailable("the CA's certificate has no subject alternative name") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [str(identity)]:
        raise CertificateUnavailable(f"the CA's certificate is for {uris}, not [{str(identity)!r}]")
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not is_usable(not_after, now):
        raise CertificateUnavailable(f"the CA's certificate expired at {not_after.isoformat()}")
    return CertifiedKey(
        identity=identity,
        cert_pem=bundle.cert_pem,
        chain_pem=bundle.chain_pem,
        serial=leaf.serial_number,
        not_before=not_before,
        not_after=not_after,
        private_key=private_key,
    )


def parse_trust_bundle(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM trust bundle. Raises :class:`InvalidTrustBundle`."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise InvalidTrustBundle(f"the trust bundle is not PEM certificates: {exc}") from None
    if any(b"PRIVATE KEY" in line for line in pem.splitlines()):
        raise InvalidTrustBundle("the trust bundle contains a private key; it must hold certificates only")
    return certs


# ---------------------------------------------------------------------------------------------
# Decisions


class Uniform(Protocol):
    """The part of :class:`random.Random` the decisions use (tests pass fixed stand-ins)."""

    def uniform(self, a: float, b: float, /) -> float: ...


def refresh_at(not_before: datetime, not_after: datetime) -> datetime:
    """Half-life: the moment a certificate should be renewed (before jitter)."""
    return not_before + (not_after - not_before) / 2


def renewal_time(not_before: datetime, not_after: datetime, now: datetime, rng: Uniform) -> datetime:
    """When to renew a certificate just obtained: half-life plus a jitter of up to
    ``RENEW_JITTER_FRACTION`` of the lifetime, and never sooner than ``MIN_REFRESH_INTERVAL_S``
    from ``now``."""
    lifetime = (not_after - not_before).total_seconds()
    at = refresh_at(not_before, not_after) + timedelta(
        seconds=rng.uniform(0.0, RENEW_JITTER_FRACTION * max(lifetime, 0.0))
    )
    return max(at, now + timedelta(seconds=MIN_REFRESH_INTERVAL_S))


def retry_delay(attempt: int, rng: Uniform) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first failure).

    Exponential back-off with *equal jitter*: the ceiling is ``RETRY_BASE_S`` doubling per
    attempt, capped at ``RETRY_CAP_S``; the delay is uniform in [ceiling/2, ceiling]. Equal (not
    full) jitter keeps a floor, so consecutive delays never shrink until the cap is reached
    (delay n ≤ ceiling n = floor n+1) while retries of many identities still spread out.
    Raises ``ValueError`` for ``attempt < 1``.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** min(attempt - 1, 64))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


def is_usable(not_after: datetime, now: datetime) -> bool:
    """Whether a certificate can still be presented: it has not expired."""
    return now < not_after


def next_attempt_at(
    scheduled: datetime, last_attempt_end: datetime | None, *, waiting: bool, usable: bool
) -> datetime:
    """When the next fetch for an identity happens: at ``scheduled`` (renewal time or back-off),
    except that a connection waiting for a certificate that is not usable shortens the wait to
    ``ON_DEMAND_RETRY_S`` after the previous attempt."""
    if waiting and not usable and last_attempt_end is not None:
        return min(scheduled, last_attempt_end + timedelta(seconds=ON_DEMAND_RETRY_S))
    return scheduled


class FetchPriority(enum.IntEnum):
    """Order of fetches waiting for a free slot: lower goes first."""

    ON_DEMAND = 0  # a connection is waiting for this certificate
    MISSING = 1  # no usable certificate yet (prefetch for a new pod, or expired)
    RENEWAL = 2  # renewing a certificate that is still usable


def fetch_priority(*, waiting: bool, usable: bool) -> FetchPriority:
    if waiting:
        return FetchPriority.ON_DEMAND
    return FetchPriority.RENEWAL if usable else FetchPriority.MISSING


def certificate_state(
    *, not_after: datetime | None, renew_at: datetime | None, failures: int, now: datetime
) -> CertState:
    """The dump state of an entry holding a certificate valid until ``not_after`` (None: none
    yet), due for renewal at ``renew_at``, after ``failures`` consecutive failed attempts."""
    if not_after is None:
        return CertState.FAILED if failures else CertState.FETCHING
    if not is_usable(not_after, now):
        return CertState.EXPIRED
    if renew_at is not None and now >= renew_at:
        return CertState.RENEWING
    return CertState.VALID
