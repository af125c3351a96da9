"""Test support that lives next to the real thing: a manual clock, CSR builders, and a writer
of Istio plug-in ``cacerts`` folders (root → intermediate), for tests, benches and labs.

Nothing here is used by the CA itself. Key material made here is for tests only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from controlplane.ca.identity import SpiffeId

__all__ = [
    "CaCerts",
    "ManualClock",
    "make_ca_cert",
    "make_csr",
    "write_cacerts",
]


class ManualClock:
    """A clock that moves only when told to; pass it as ``clock=``."""

    def __init__(self, start: datetime | None = None) -> None:
        now = start if start is not None else datetime.now(UTC)
        self.now = now.replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def make_csr(
    identity: SpiffeId | str | None,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    *,
    extra_names: Sequence[x509.GeneralName] = (),
    subject: x509.Name | None = None,
    ca: bool = False,
) -> bytes:
    """A PEM CSR, by default what ztunnel sends: EC P-256, empty subject, one URI SAN.

    ``identity=None`` with no ``extra_names`` gives a CSR without subjectAltName.
    """
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    if identity is not None:
        names.append(x509.UniformResourceIdentifier(str(identity)))
    names.extend(extra_names)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    algorithm = None if _is_edwards(key) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def _is_edwards(key: CertificateIssuerPrivateKeyTypes) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    return isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)


def make_ca_cert(
    subject_cn: str,
    key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    lifetime: timedelta,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = True,
    key_cert_sign: bool = True,
) -> x509.Certificate:
    """A CA certificate (self-signed without ``issuer``), with SKI/AKI and keyUsage.
    ``ca=False`` or ``key_cert_sign=False`` make the broken variants tests need."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"),
            x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
        ]
    )
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = (
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        if issuer_cert is None
        else x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if issuer_cert is None else issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass(eq=False)
class CaCerts:
    """The material of a plug-in CA folder: a root and an intermediate signed by it."""

    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey = field(repr=False)
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(
        cls,
        now: datetime,
        *,
        root_lifetime: timedelta = timedelta(days=3650),
        ca_lifetime: timedelta = timedelta(days=365),
    ) -> CaCerts:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = make_ca_cert("Test root CA", root_key, now - timedelta(hours=1), root_lifetime)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = make_ca_cert(
            "Test intermediate CA",
            ca_key,
            now - timedelta(hours=1),
            ca_lifetime,
            issuer=(root, root_key),
        )
        return cls(root=root, root_key=root_key, ca_cert=ca_cert, ca_key=ca_key)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_cacerts(
    folder: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    roots: Sequence[x509.Certificate],
    chain: Sequence[x509.Certificate],
) -> None:
    """Write Istio's four files: ``ca-cert.pem``, ``ca-key.pem`` (0600), ``root-cert.pem``
    and ``cert-chain.pem``, overwriting what is there."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca-cert.pem").write_bytes(_pem(ca_cert))
    key_path = folder / "ca-key.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(
            ca_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    (folder / "root-cert.pem").write_bytes(b"".join(_pem(c) for c in roots))
    (folder / "cert-chain.pem").write_bytes(b"".join(_pem(c) for c in chain))
