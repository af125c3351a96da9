"""Checking a workload's certificate signing request against the identity it was granted.

Pure: ``check_csr`` takes the PEM bytes and the caller's ``SpiffeId`` and returns the public
key to certify, or raises ``CSRRejected`` saying what was wrong with which value. The rules
(the CA copies nothing else from the CSR):

- one PEM ``CERTIFICATE REQUEST`` block, at most ``MAX_CSR_BYTES``, that parses;
- its self-signature verifies;
- its key is EC P-256 (what ztunnel and istio-agent generate);
- it carries a subjectAltName with exactly one entry, a URI equal to the identity;
- its subject CN, if any, is empty or that URI (other subject attributes are ignored: the
  issued certificate's subject is always empty);
- it does not ask for a CA certificate (basicConstraints CA:true).
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from controlplane.ca.errors import CSRRejected
from controlplane.ca.identity import SpiffeId
from controlplane.k8s.errors import format_value

__all__ = ["MAX_CSR_BYTES", "check_csr"]

MAX_CSR_BYTES: Final = 64 * 1024
_PEM_LABEL: Final = b"CERTIFICATE REQUEST-----"
#: What cryptography raises for malformed input once it has a parsed object in hand.
_PARSE_ERRORS: Final = (
    ValueError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)


def _describe_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"a DNS name {format_value(name.value)}"
    if isinstance(name, x509.IPAddress):
        return f"an IP address {name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"an email address {format_value(name.value)}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"a URI {format_value(name.value)}"
    if isinstance(name, x509.DirectoryName):
        return f"a directory name {format_value(name.value.rfc4514_string())}"
    if isinstance(name, x509.RegisteredID):
        return f"a registered ID {name.value.dotted_string}"
    if isinstance(name, x509.OtherName):
        return f"an otherName {name.type_id.dotted_string}"
    return f"a {type(name).__name__}"  # pragma: no cover - every GeneralName type is above


def _load(csr_pem: bytes) -> x509.CertificateSigningRequest:
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CSRRejected(f"CSR is {len(csr_pem)} bytes; at most {MAX_CSR_BYTES} are accepted")
    blocks = csr_pem.count(b"-----BEGIN ")
    if _PEM_LABEL not in csr_pem:
        raise CSRRejected("CSR is not PEM: no '-----BEGIN CERTIFICATE REQUEST-----' block found")
    if blocks > 1:
        raise CSRRejected(
            f"CSR input holds {blocks} PEM blocks; send exactly one CERTIFICATE REQUEST"
        )
    try:
        return x509.load_pem_x509_csr(csr_pem)
    except x509.InvalidVersion as err:
        raise CSRRejected(
            f"CSR version {err.parsed_version} is not valid; PKCS#10 has only version 1 (encoded 0)"
        ) from None
    except _PARSE_ERRORS:
        raise CSRRejected(
            "CSR PEM block does not hold a valid PKCS#10 certificate request (bad base64 or DER)"
        ) from None


def _check_signature(csr: x509.CertificateSigningRequest) -> None:
    try:
        valid = csr.is_signature_valid
    except _PARSE_ERRORS:
        valid = False
    if not valid:
        raise CSRRejected(
            "CSR signature does not verify with the CSR's own public key "
            "(the request was altered or signed with another key)"
        )


def _check_key(csr: x509.CertificateSigningRequest) -> ec.EllipticCurvePublicKey:
    try:
        key = csr.public_key()
    except _PARSE_ERRORS:
        raise CSRRejected(
            "CSR public key is of an unsupported type; EC P-256 is required"
        ) from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return key
        raise CSRRejected(
            f"CSR key is EC on curve {key.curve.name} ({key.curve.key_size} bits); "
            "EC P-256 (secp256r1) is required"
        )
    if isinstance(key, rsa.RSAPublicKey):
        raise CSRRejected(f"CSR key is RSA {key.key_size}-bit; EC P-256 (secp256r1) is required")
    raise CSRRejected(
        f"CSR key is {type(key).__name__.removesuffix('PublicKey') or 'unknown'}; "
        "EC P-256 (secp256r1) is required"
    )


def _check_extensions(csr: x509.CertificateSigningRequest, identity: SpiffeId) -> None:
    try:
        extensions = csr.extensions
    except _PARSE_ERRORS as err:
        raise CSRRejected(f"CSR extensions cannot be parsed: {err}") from None
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        pass
    else:
        if constraints.ca:
            raise CSRRejected(
                "CSR asks for a CA certificate (basicConstraints CA:true); "
                "only workload certificates are issued"
            )
    try:
        san = extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        raise CSRRejected(
            f"CSR has no subjectAltName; it must carry exactly one URI SAN, {identity}"
        ) from None
    if not isinstance(san, x509.SubjectAlternativeName):  # pragma: no cover - cryptography's type
        raise CSRRejected("CSR subjectAltName cannot be parsed")
    names = list(san)
    others = [n for n in names if not isinstance(n, x509.UniformResourceIdentifier)]
    if others:
        listed = ", ".join(_describe_name(n) for n in others)
        raise CSRRejected(
            f"CSR subjectAltName has {listed}; only one URI SAN, {identity}, is allowed"
        )
    uris = [n.value for n in names if isinstance(n, x509.UniformResourceIdentifier)]
    if not uris:
        raise CSRRejected(f"CSR subjectAltName is empty; it must be one URI SAN, {identity}")
    if len(uris) > 1:
        listed = ", ".join(format_value(u) for u in uris)
        raise CSRRejected(
            f"CSR subjectAltName has {len(uris)} URIs ({listed}); exactly one, {identity}, "
            "is allowed"
        )
    if uris[0] != identity.uri:
        raise CSRRejected(
            f"CSR asks for identity {format_value(uris[0])}, but the caller is {identity}"
        )


def _check_subject(csr: x509.CertificateSigningRequest, identity: SpiffeId) -> None:
    try:
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except _PARSE_ERRORS:
        raise CSRRejected("CSR subject cannot be parsed") from None
    if len(names) > 1:
        raise CSRRejected(f"CSR subject has {len(names)} CNs; at most one, {identity}, is allowed")
    if names:
        value = names[0].value
        text = value if isinstance(value, str) else repr(value)
        if text not in ("", identity.uri):
            raise CSRRejected(
                f"CSR subject CN {format_value(text)} must be empty or the identity {identity}"
            )


def check_csr(csr_pem: bytes, identity: SpiffeId) -> ec.EllipticCurvePublicKey:
    """Return the CSR's public key if the CSR may be signed for ``identity``.

    Raises ``CSRRejected`` naming the first rule broken (see the module docstring), checked in
    this order: size and PEM framing, parsing, signature, key type, extensions, subject.
    """
    if not isinstance(csr_pem, bytes):
        raise CSRRejected(f"CSR must be PEM bytes, got {type(csr_pem).__name__}")
    csr = _load(csr_pem)
    _check_signature(csr)
    key = _check_key(csr)
    _check_extensions(csr, identity)
    _check_subject(csr, identity)
    return key
