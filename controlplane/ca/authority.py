"""The mesh's certificate authority: signs workload certificates for SPIFFE identities.

Two ways to get one, as in Istio:

- ``CertificateAuthority.load_or_create(state_dir)``: a self-signed root (EC P-256, 10 years)
  made on first start and kept in ``root-cert.pem`` (0644) and ``ca-key.pem`` (0600);
- ``CertificateAuthority.from_cacerts(folder)``: Istio's plug-in CA files ``ca-cert.pem``,
  ``ca-key.pem``, ``root-cert.pem`` and ``cert-chain.pem``.

``sign`` is sans-I/O: it checks the CSR (``controlplane.ca.csr``), decides the validity from the
injected clock, and builds the leaf (``controlplane.ca.signer``). Raises ``CSRRejected`` for a
bad request, ``CAConfigError`` for unusable CA material or settings, ``CAError`` when the CA
itself can no longer issue (its signing path expired, a broken clock). Key material never
appears in a repr, a str or an error message.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.ca.csr import check_csr
from controlplane.ca.errors import CAConfigError, CAError, CSRRejected
from controlplane.ca.identity import SpiffeId, check_trust_domain
from controlplane.ca.pemfiles import (
    CERT_FILE_MODE,
    KEY_FILE_MODE,
    load_certificates,
    load_private_key,
    write_new_file,
)
from controlplane.ca.signer import Signer, SignerFiles, build_leaf, check_signer, make_root

__all__ = [
    "CACERTS_CERT_FILE",
    "CACERTS_CHAIN_FILE",
    "CACERTS_KEY_FILE",
    "CACERTS_ROOT_FILE",
    "CLOCK_SKEW_GRACE",
    "DEFAULT_MAX_TTL",
    "DEFAULT_TRUST_DOMAIN",
    "DEFAULT_TTL",
    "ROOT_LIFETIME",
    "SELF_SIGNED_CERT_FILE",
    "SELF_SIGNED_KEY_FILE",
    "CAConfigError",
    "CAError",
    "CSRRejected",
    "CertificateAuthority",
    "Clock",
    "IssuedCertificate",
    "utc_now",
]

DEFAULT_TRUST_DOMAIN: Final = "cluster.local"
#: Istio's defaults: DEFAULT_WORKLOAD_CERT_TTL 24 h, MAX_WORKLOAD_CERT_TTL 90 days.
DEFAULT_TTL: Final = timedelta(hours=24)
DEFAULT_MAX_TTL: Final = timedelta(days=90)
#: Istio's self-signed root lives 10 years (CITADEL_SELF_SIGNED_CA_CERT_TTL).
ROOT_LIFETIME: Final = timedelta(days=3650)
#: Leaves are backdated by this much, for workloads whose clock is behind the CA's.
CLOCK_SKEW_GRACE: Final = timedelta(minutes=1)
#: Serial numbers are random, positive and at most 128 bits (as Istio's genSerialNum).
SERIAL_BITS: Final = 128

SELF_SIGNED_CERT_FILE: Final = "root-cert.pem"
SELF_SIGNED_KEY_FILE: Final = "ca-key.pem"
CACERTS_CERT_FILE: Final = "ca-cert.pem"
CACERTS_KEY_FILE: Final = "ca-key.pem"
CACERTS_ROOT_FILE: Final = "root-cert.pem"
CACERTS_CHAIN_FILE: Final = "cert-chain.pem"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: the current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A signed workload certificate. ``chain_pem`` follows the leaf as Istio returns it: the
    signing CA, any intermediates, then the root. ``not_before``/``not_after`` are the
    certificate's own (UTC, whole seconds)."""

    cert_pem: bytes = field(repr=False)
    chain_pem: tuple[bytes, ...] = field(repr=False)
    serial: int
    not_before: datetime
    not_after: datetime
    identity: SpiffeId


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _random_serial() -> int:
    return secrets.randbelow((1 << SERIAL_BITS) - 1) + 1


def _format_duration(value: timedelta) -> str:
    """``2160h``, ``24h``, ``1h30m``, ``-5s``: Go's duration units, as Istio's settings
    (``MAX_WORKLOAD_CERT_TTL=2160h``) are written; zero units are left out."""
    total = int(value.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    if value.microseconds and not parts:
        return f"{sign}{abs(value.total_seconds()):g}s"
    return sign + ("".join(parts) or "0s")


def _check_settings(trust_domain: str, default_ttl: timedelta, max_ttl: timedelta) -> None:
    if not isinstance(trust_domain, str):
        raise CAConfigError(f"trust_domain must be a string, got {type(trust_domain).__name__}")
    if (problem := check_trust_domain(trust_domain)) is not None:
        raise CAConfigError(f"trust_domain {trust_domain!r}: {problem}")
    if max_ttl <= timedelta(0):
        raise CAConfigError(f"max_ttl must be positive, got {_format_duration(max_ttl)}")
    if default_ttl <= timedelta(0):
        raise CAConfigError(f"default_ttl must be positive, got {_format_duration(default_ttl)}")
    if default_ttl > max_ttl:
        raise CAConfigError(
            f"default_ttl {_format_duration(default_ttl)} exceeds max_ttl "
            f"{_format_duration(max_ttl)}"
        )


def _now(clock: Clock) -> datetime:
    now = clock()
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise CAError(f"the CA clock must return a timezone-aware datetime, got {now!r}")
    return now.astimezone(UTC)


class CertificateAuthority:
    """Signs workload certificates with checked signing material.

    Build it with ``load_or_create`` or ``from_cacerts``; the constructor takes an already
    checked ``Signer``. Raises ``CAConfigError`` for inconsistent TTL settings.
    """

    __slots__ = (
        "_chain_pem",
        "_clock",
        "_default_ttl",
        "_max_ttl",
        "_root_pem",
        "_signer",
        "_source",
        "_trust_domain",
    )

    def __init__(
        self,
        signer: Signer,
        trust_domain: str,
        *,
        clock: Clock = utc_now,
        default_ttl: timedelta = DEFAULT_TTL,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
        source: str = "",
    ) -> None:
        _check_settings(trust_domain, default_ttl, max_ttl)
        self._signer = signer
        self._trust_domain = trust_domain
        self._clock = clock
        self._default_ttl = default_ttl
        self._max_ttl = max_ttl
        self._source = source
        self._chain_pem = tuple(_pem(c) for c in signer.chain)
        self._root_pem = b"".join(_pem(c) for c in signer.roots)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def load_or_create(
        cls,
        state_dir: Path,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        *,
        clock: Clock = utc_now,
        default_ttl: timedelta = DEFAULT_TTL,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
    ) -> CertificateAuthority:
        """The self-signed CA kept in ``state_dir``, made on first start.

        Reuses ``root-cert.pem`` and ``ca-key.pem`` when both exist; creates both when neither
        does. Raises ``CAConfigError`` when only one exists, the key file is accessible by
        group or others, the key does not match the root, or the root is expired or not a CA.
        """
        _check_settings(trust_domain, default_ttl, max_ttl)
        state_dir = Path(state_dir)
        cert_path = state_dir / SELF_SIGNED_CERT_FILE
        key_path = state_dir / SELF_SIGNED_KEY_FILE
        files = SignerFiles(
            cert=str(cert_path), key=str(key_path), chain=str(cert_path), roots=str(cert_path)
        )
        now = _now(clock)
        has_cert, has_key = cert_path.exists(), key_path.exists()
        if has_cert != has_key:
            present, missing = (cert_path, key_path) if has_cert else (key_path, cert_path)
            hint = (
                "restore the key, or remove both files to make a new root (every workload "
                "certificate and trust bundle then changes)"
                if has_cert
                else "a first start may have stopped half-way; if nothing trusts this CA yet, "
                "remove the key file to start over"
            )
            raise CAConfigError(f"{present} exists but {missing} does not: {hint}")
        if has_cert:
            key = load_private_key(key_path, require_private_mode=True)
            certs = load_certificates(cert_path)
            if len(certs) != 1:
                raise CAConfigError(f"{cert_path}: holds {len(certs)} certificates, expected 1")
            signer = check_signer(certs[0], key, certs, certs, now, files)
            source = f"self-signed root in {state_dir}"
        else:
            try:
                state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as err:
                raise CAConfigError(f"{state_dir}: cannot create: {err.strerror}") from None
            new_key = ec.generate_private_key(ec.SECP256R1())
            root = make_root(
                new_key, trust_domain, now - CLOCK_SKEW_GRACE, ROOT_LIFETIME, _random_serial()
            )
            key_pem = new_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_new_file(key_path, key_pem, KEY_FILE_MODE)
            write_new_file(cert_path, _pem(root), CERT_FILE_MODE)
            signer = check_signer(root, new_key, [root], [root], now, files)
            source = f"self-signed root created in {state_dir}"
        return cls(
            signer,
            trust_domain,
            clock=clock,
            default_ttl=default_ttl,
            max_ttl=max_ttl,
            source=source,
        )

    @classmethod
    def from_cacerts(
        cls,
        folder: Path,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        *,
        clock: Clock = utc_now,
        default_ttl: timedelta = DEFAULT_TTL,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
    ) -> CertificateAuthority:
        """A CA from Istio's plug-in files in ``folder`` (the ``cacerts`` Secret).

        ``ca-cert.pem`` is the signing certificate (usually an intermediate), ``ca-key.pem``
        its key, ``root-cert.pem`` the trust roots, ``cert-chain.pem`` ca-cert up to the root.
        The key file's mode is not checked (Kubernetes mounts Secrets 0644 by default).
        Raises ``CAConfigError`` naming the file: unreadable, not PEM, key not matching
        ca-cert, ca-cert not a CA with keyCertSign, a chain link not verifying, the chain not
        ending at root-cert, or a certificate expired or not yet valid.
        """
        _check_settings(trust_domain, default_ttl, max_ttl)
        folder = Path(folder)
        paths = {
            name: folder / name
            for name in (CACERTS_CERT_FILE, CACERTS_KEY_FILE, CACERTS_ROOT_FILE, CACERTS_CHAIN_FILE)
        }
        files = SignerFiles(
            cert=str(paths[CACERTS_CERT_FILE]),
            key=str(paths[CACERTS_KEY_FILE]),
            chain=str(paths[CACERTS_CHAIN_FILE]),
            roots=str(paths[CACERTS_ROOT_FILE]),
        )
        certs = load_certificates(paths[CACERTS_CERT_FILE])
        if len(certs) != 1:
            raise CAConfigError(
                f"{files.cert}: holds {len(certs)} certificates, expected 1 (the signing CA)"
            )
        key = load_private_key(paths[CACERTS_KEY_FILE], require_private_mode=False)
        roots = load_certificates(paths[CACERTS_ROOT_FILE])
        chain = load_certificates(paths[CACERTS_CHAIN_FILE])
        signer = check_signer(certs[0], key, chain, roots, _now(clock), files)
        return cls(
            signer,
            trust_domain,
            clock=clock,
            default_ttl=default_ttl,
            max_ttl=max_ttl,
            source=f"plug-in CA files in {folder}",
        )

    # -- properties ---------------------------------------------------------------------

    @property
    def root_pem(self) -> bytes:
        """The trust bundle: every root certificate, PEM, concatenated."""
        return self._root_pem

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    @property
    def default_ttl(self) -> timedelta:
        return self._default_ttl

    @property
    def max_ttl(self) -> timedelta:
        return self._max_ttl

    @property
    def signer_not_after(self) -> datetime:
        """The earliest expiry on the signing path; no leaf outlives it."""
        return self._signer.not_after

    def __repr__(self) -> str:
        return (
            f"CertificateAuthority(trust_domain={self._trust_domain!r}, "
            f"signer={self._signer.cert.subject.rfc4514_string()!r}, "
            f"signer_not_after={self._signer.not_after.isoformat()!r}, "
            f"source={self._source!r})"
        )

    # -- signing ------------------------------------------------------------------------

    def sign(
        self, csr_pem: bytes, identity: SpiffeId, ttl: timedelta | None = None
    ) -> IssuedCertificate:
        """Sign ``csr_pem`` for ``identity`` (the caller's authenticated identity).

        ``ttl`` defaults to ``default_ttl``; the leaf is valid from now - ``CLOCK_SKEW_GRACE``
        until min(now + ttl, ``signer_not_after``). Raises ``CSRRejected`` (bad CSR, identity
        of another trust domain, TTL ≤ 0 or above ``max_ttl``) and ``CAError`` (the signing
        path has expired).
        """
        if not isinstance(identity, SpiffeId):
            raise TypeError(f"identity must be a SpiffeId, got {type(identity).__name__}")
        if identity.trust_domain != self._trust_domain:
            raise CSRRejected(
                f"identity {identity} is in trust domain {identity.trust_domain!r}; this CA "
                f"issues for {self._trust_domain!r}"
            )
        if ttl is None:
            ttl = self._default_ttl
        if ttl <= timedelta(0):
            raise CSRRejected(f"requested TTL {_format_duration(ttl)} must be positive")
        if ttl > self._max_ttl:
            raise CSRRejected(
                f"requested TTL {_format_duration(ttl)} exceeds the maximum workload "
                f"certificate TTL {_format_duration(self._max_ttl)}"
            )
        public_key = check_csr(csr_pem, identity)
        now = _now(self._clock)
        signer = self._signer
        if now >= signer.not_after:
            raise CAError(
                f"cannot issue: the CA's signing path expired at {signer.not_after.isoformat()} "
                f"(now {now.isoformat()})"
            )
        not_before = max(now - CLOCK_SKEW_GRACE, signer.cert.not_valid_before_utc)
        not_after = min(now + ttl, signer.not_after)
        cert = build_leaf(signer, public_key, identity, not_before, not_after, _random_serial())
        return IssuedCertificate(
            cert_pem=_pem(cert),
            chain_pem=self._chain_pem,
            serial=cert.serial_number,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            identity=identity,
        )
