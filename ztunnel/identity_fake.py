"""A fake CA for tests: a :class:`~ztunnel.identity.CertificateSource` that signs CSRs with a
throwaway in-memory P-256 CA, and can be told to fail, to be down, or to answer slowly.

It checks CSRs as the real CA does (valid signature, P-256 key, exactly one URI SAN equal to the
requested identity, the mesh's trust domain) and records every call (:attr:`calls`, with its
outcome) for assertions. Times come from ``clock`` (wall-clock POSIX seconds; in tests the same
function the manager uses, following trio's ``MockClock``); delays sleep on trio's clock.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ztunnel.identity_core import CertificateBundle, CertificateUnavailable, Identity

__all__ = ["FakeCall", "FakeCertificateSource"]

CA_VALIDITY: Final = timedelta(days=3650)


@dataclass
class FakeCall:
    """One ``create_certificate`` call. ``outcome``: pending, issued, failed or cancelled."""

    identity: Identity
    ttl_s: float
    csr_pem: bytes
    started: float
    finished: float | None = None
    outcome: str = "pending"
    error: str | None = None
    serial: int | None = None


class FakeCertificateSource:
    """A CA in memory. Public: :attr:`trust_bundle_pem` (its root), :attr:`calls`,
    :attr:`max_in_flight`, :attr:`delay_s` (answer delay, trio clock); methods to fail."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        trust_domain: str = "cluster.local",
        name: str = "fake mesh CA",
        delay_s: float = 0.0,
    ) -> None:
        self._clock = clock
        self.trust_domain = trust_domain
        self.delay_s = delay_s
        self.calls: list[FakeCall] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._fail_next = 0
        self._fail_reason = ""
        self._down_until: float | None = None
        self._called = trio.Event()
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ])
        now = datetime.fromtimestamp(math.floor(clock()), UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        self._root = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.trust_bundle_pem = self._root.public_bytes(serialization.Encoding.PEM)

    def __repr__(self) -> str:
        return f"FakeCertificateSource({self.trust_domain!r}, calls={len(self.calls)})"

    # -- steering -------------------------------------------------------------------------------

    def fail_next(self, n: int, reason: str = "the fake CA refused the request") -> None:
        """The next ``n`` calls fail (after the answer delay) with ``reason``."""
        self._fail_next, self._fail_reason = n, reason

    def go_down(self, until: float | None = None) -> None:
        """Refuse every call (at once, like a refused connection) until ``clock() >= until``
        (``None``: until :meth:`come_back`)."""
        self._down_until = math.inf if until is None else until

    def come_back(self) -> None:
        self._down_until = None

    def is_down(self) -> bool:
        return self._down_until is not None and self._clock() < self._down_until

    # -- observation ----------------------------------------------------------------------------

    def calls_for(self, identity: Identity) -> list[FakeCall]:
        return [c for c in self.calls if c.identity == identity]

    async def wait_for_calls(self, n: int) -> None:
        """Return once at least ``n`` calls were made."""
        while len(self.calls) < n:
            await self._called.wait()

    # -- adversarial material (tests of peers that must be refused) ------------------------------

    def forge(self, uri: str, *, not_before: datetime | None = None, not_after: datetime | None = None,
              tamper: bool = False) -> tuple[bytes, bytes]:
        """A leaf for ``uri`` signed by this CA *without* the CA's checks (any trust domain, any
        validity), as (certificate PEM, unencrypted key PEM) for a test client. ``tamper`` flips
        a bit in the signature, so the chain no longer verifies."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.fromtimestamp(math.floor(self._clock()), UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self._root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(minutes=1))
            .not_valid_after(not_after or now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
        der = bytearray(cert.public_bytes(serialization.Encoding.DER))
        if tamper:
            der[-2] ^= 0x01  # inside the signature value
        pem = x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return pem, key_pem

    # -- the CertificateSource protocol ---------------------------------------------------------

    async def create_certificate(self, csr_pem: bytes, identity: Identity, ttl_s: float) -> CertificateBundle:
        call = FakeCall(identity, ttl_s, csr_pem, started=self._clock())
        self.calls.append(call)
        self._called.set()
        self._called = trio.Event()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.lowlevel.checkpoint()
            if self.is_down():
                raise CertificateUnavailable("the CA is unreachable (fake outage)")
            if self.delay_s > 0:
                await trio.sleep(self.delay_s)
            if self._fail_next > 0:
                self._fail_next -= 1
                raise CertificateUnavailable(self._fail_reason)
            bundle, call.serial = self._sign(csr_pem, identity, ttl_s)
            call.outcome = "issued"
            return bundle
        except CertificateUnavailable as exc:
            call.outcome, call.error = "failed", exc.reason
            raise
        except trio.Cancelled:
            call.outcome = "cancelled"
            raise
        finally:
            self.in_flight -= 1
            call.finished = self._clock()

    def _sign(self, csr_pem: bytes, identity: Identity, ttl_s: float) -> tuple[CertificateBundle, int]:
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CertificateUnavailable(f"the CA refused the CSR: it does not parse: {exc}") from None
        if not csr.is_signature_valid:
            raise CertificateUnavailable("the CA refused the CSR: its signature is invalid")
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
            raise CertificateUnavailable("the CA refused the CSR: the key must be ECDSA P-256")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise CertificateUnavailable("the CA refused the CSR: no subject alternative name") from None
        if list(san) != [x509.UniformResourceIdentifier(str(identity))]:
            raise CertificateUnavailable(f"the CA refused the CSR: its SANs {list(san)} are not exactly {identity}")
        if identity.trust_domain != self.trust_domain:
            raise CertificateUnavailable(f"the CA refused the CSR: {identity} is not in {self.trust_domain}")
        not_before = datetime.fromtimestamp(math.floor(self._clock()), UTC)
        serial = int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self._root.subject)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(seconds=int(ttl_s)))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(list(san)), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        return CertificateBundle(cert.public_bytes(serialization.Encoding.PEM), (self.trust_bundle_pem,)), serial


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not cert_sign,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )
