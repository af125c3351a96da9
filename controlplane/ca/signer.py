"""The signing material and the certificates made with it, as pure functions of their inputs.

- ``check_signer`` decides whether a signing certificate, its key, its chain and the trust
  roots are consistent at a given time, and returns a ``Signer`` (raises ``CAConfigError``
  naming the file and the problem).
- ``make_root`` builds the self-signed root of a new mesh; ``build_leaf`` a workload
  certificate. Neither reads a clock or a file: times, serials and keys come in as arguments.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.ca.errors import CAConfigError
from controlplane.ca.identity import SpiffeId
from controlplane.ca.pemfiles import SigningKey

__all__ = [
    "MIN_RSA_BITS",
    "ROOT_COMMON_NAME",
    "Signer",
    "SignerFiles",
    "build_leaf",
    "check_signer",
    "make_root",
]

SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512

ROOT_COMMON_NAME: Final = "Mesh root CA"
MIN_RSA_BITS: Final = 2048


@dataclass(frozen=True, slots=True)
class SignerFiles:
    """The names used in error messages for each piece of signing material."""

    cert: str
    key: str
    chain: str
    roots: str


@dataclass(frozen=True, slots=True, eq=False)
class Signer:
    """Checked signing material. ``chain`` is what follows a leaf: the signing certificate,
    any intermediates above it, then the root; ``not_after`` is the earliest expiry on that
    path (no leaf may outlive it). The key never appears in the repr."""

    cert: x509.Certificate
    key: SigningKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]
    not_after: datetime
    hash_algorithm: SignatureHash = field(repr=False)
    authority_key_id: x509.AuthorityKeyIdentifier = field(repr=False)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _same_public_key(key: SigningKey, cert: x509.Certificate) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return key.public_key().public_bytes(der, fmt) == cert.public_key().public_bytes(der, fmt)


def _hash_for(key: SigningKey, file: str) -> SignatureHash:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise CAConfigError(
                f"{file}: RSA {key.key_size}-bit key is too weak; at least {MIN_RSA_BITS} bits"
            )
        return hashes.SHA256()
    if isinstance(key.curve, ec.SECP256R1):
        return hashes.SHA256()
    if isinstance(key.curve, ec.SECP384R1):
        return hashes.SHA384()
    if isinstance(key.curve, ec.SECP521R1):
        return hashes.SHA512()
    raise CAConfigError(
        f"{file}: EC curve {key.curve.name} is not supported; use P-256, P-384 or P-521"
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_validity(cert: x509.Certificate, where: str, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CAConfigError(
            f"{where} (subject {_subject(cert)}) is not valid before "
            f"{cert.not_valid_before_utc.isoformat()} (now {now.isoformat()})"
        )
    if now >= cert.not_valid_after_utc:
        raise CAConfigError(
            f"{where} (subject {_subject(cert)}) expired at "
            f"{cert.not_valid_after_utc.isoformat()} (now {now.isoformat()})"
        )


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> str | None:
    """``None`` if ``parent`` signed ``child``, else why not."""
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature:
        return "the signature does not verify with the issuer's key"
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        return str(err)
    return None


def _authority_key_id(cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            cert.public_key()  # type: ignore[arg-type]
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def check_signer(
    cert: x509.Certificate,
    key: SigningKey,
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
    files: SignerFiles,
) -> Signer:
    """Check that the material can sign workload certificates now; raises ``CAConfigError``.

    ``chain`` is the content of the chain file: ``cert`` first, each certificate issued by the
    next, ending with a certificate of ``roots`` or one issued by one of them.
    """
    hash_algorithm = _hash_for(key, files.key)
    if not _same_public_key(key, cert):
        raise CAConfigError(
            f"{files.key} does not match {files.cert}: the key's public key differs from the "
            f"certificate's (subject {_subject(cert)})"
        )
    if not _is_ca(cert):
        raise CAConfigError(
            f"{files.cert} (subject {_subject(cert)}) is not a CA certificate "
            "(basicConstraints CA:true is missing)"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CAConfigError(
            f"{files.cert} (subject {_subject(cert)}) has no keyUsage extension; "
            "a signing CA needs keyCertSign"
        ) from None
    if not usage.key_cert_sign:
        raise CAConfigError(f"{files.cert} (subject {_subject(cert)}) keyUsage lacks keyCertSign")
    _check_validity(cert, files.cert, now)
    if not chain:
        raise CAConfigError(f"{files.chain}: empty")
    if chain[0] != cert:
        raise CAConfigError(
            f"{files.chain}: the first certificate must be {files.cert} (subject "
            f"{_subject(cert)}), found subject {_subject(chain[0])}"
        )
    if not roots:
        raise CAConfigError(f"{files.roots}: empty")
    for index, (child, parent) in enumerate(itertools.pairwise(chain), start=1):
        where = f"{files.chain}: certificate {index + 1}"
        if not _is_ca(parent):
            raise CAConfigError(
                f"{where} (subject {_subject(parent)}) is not a CA certificate "
                "(basicConstraints CA:true is missing)"
            )
        if (why := _issued_by(child, parent)) is not None:
            raise CAConfigError(
                f"{files.chain}: certificate {index} (subject {_subject(child)}) is not issued "
                f"by certificate {index + 1} (subject {_subject(parent)}): {why}"
            )
        _check_validity(parent, where, now)
    last = chain[-1]
    if last in roots:
        root = last
        path = tuple(chain)
    else:
        issuers = [r for r in roots if _issued_by(last, r) is None]
        if not issuers:
            raise CAConfigError(
                f"{files.chain} does not lead to {files.roots}: its last certificate "
                f"(subject {_subject(last)}, issuer {last.issuer.rfc4514_string()}) is neither "
                f"in {files.roots} nor signed by a certificate in it"
            )
        root = issuers[0]
        path = (*chain, root)
    if not _is_ca(root):
        raise CAConfigError(
            f"{files.roots}: the root (subject {_subject(root)}) is not a CA certificate "
            "(basicConstraints CA:true is missing)"
        )
    _check_validity(root, files.roots, now)
    return Signer(
        cert=cert,
        key=key,
        chain=path,
        roots=tuple(roots),
        not_after=min(c.not_valid_after_utc for c in path),
        hash_algorithm=hash_algorithm,
        authority_key_id=_authority_key_id(cert),
    )


def make_root(
    key: ec.EllipticCurvePrivateKey,
    trust_domain: str,
    not_before: datetime,
    lifetime: timedelta,
    serial: int,
) -> x509.Certificate:
    """A self-signed root: subject O=<trust domain>, CN=``ROOT_COMMON_NAME``; CA:true
    (critical), keyCertSign + cRLSign (critical), SKI and AKI of its own key."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, ROOT_COMMON_NAME),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


_LEAF_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_EXTENDED_KEY_USAGE: Final = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)
_EMPTY_NAME: Final = x509.Name([])


def build_leaf(
    signer: Signer,
    public_key: ec.EllipticCurvePublicKey,
    identity: SpiffeId,
    not_before: datetime,
    not_after: datetime,
    serial: int,
) -> x509.Certificate:
    """A workload certificate as Istio issues it: empty subject, the SPIFFE URI as the only
    (critical) SAN, digitalSignature + keyEncipherment (critical), serverAuth + clientAuth,
    CA:false (critical), AKI of the signer and an SKI."""
    return (
        x509.CertificateBuilder()
        .subject_name(_EMPTY_NAME)
        .issuer_name(signer.cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=True,
        )
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        .add_extension(_LEAF_EXTENDED_KEY_USAGE, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(signer.authority_key_id, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(signer.key, signer.hash_algorithm)
    )
