"""The CSR rules of the CA (controlplane.ca.csr through CertificateAuthority.sign): each bad
request is refused with a CSRRejected naming the problem and the value; arbitrary bytes never
raise anything else."""

from __future__ import annotations

import base64
import ipaddress
import re
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controlplane.ca import CertificateAuthority, CSRRejected, SpiffeId
from controlplane.ca.csr import MAX_CSR_BYTES
from controlplane.ca.testing import ManualClock, make_csr

SLEEP = SpiffeId.parse("spiffe://cluster.local/ns/default/sa/sleep")
OTHER = "spiffe://cluster.local/ns/default/sa/other"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    folder: Path = tmp_path_factory.mktemp("ca")
    return CertificateAuthority.load_or_create(
        folder, clock=ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    )


def _pem_of(der: bytes) -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return (
        f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n".encode()
    )


def _der_of(pem: bytes) -> bytes:
    return x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)


def _tampered() -> bytes:
    """A CSR whose signed content was changed after signing (same length, still parses)."""
    der = _der_of(make_csr(SLEEP))
    assert der.count(b"sa/sleep") == 1
    return _pem_of(der.replace(b"sa/sleep", b"sa/sleeq"))


def _bad_version() -> bytes:
    der = _der_of(make_csr(SLEEP))
    assert der[:16].count(b"\x02\x01\x00") == 1  # CertificationRequestInfo.version
    return _pem_of(der.replace(b"\x02\x01\x00", b"\x02\x01\x01", 1))


def _cn(value: str) -> x509.Name:
    # _validate=False: cryptography refuses to build an empty CN, but Go clients send one
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value, _validate=False)])


BAD: list[tuple[str, Callable[[], bytes], str]] = [
    (
        "garbage",
        lambda: b"hello, CA",
        "CSR is not PEM: no '-----BEGIN CERTIFICATE REQUEST-----' block found",
    ),
    ("empty", lambda: b"", "CSR is not PEM"),
    (
        "certificate instead of CSR",
        lambda: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "CSR is not PEM",
    ),
    (
        "PEM with a garbage body",
        lambda: (
            b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all!\n-----END CERTIFICATE REQUEST-----\n"
        ),
        "CSR PEM block does not hold a valid PKCS#10 certificate request",
    ),
    (
        "PEM with DER garbage",
        lambda: _pem_of(b"\x30\x03\x02\x01\x00"),
        "does not hold a valid PKCS#10",
    ),
    (
        "two CSRs",
        lambda: make_csr(SLEEP) + make_csr(SLEEP),
        "CSR input holds 2 PEM blocks; send exactly one",
    ),
    (
        "too large",
        lambda: make_csr(SLEEP) + b" " * MAX_CSR_BYTES,
        f"bytes; at most {MAX_CSR_BYTES} are accepted",
    ),
    ("bad version", _bad_version, "CSR version 1 is not valid; PKCS#10 has only version 1"),
    ("bad signature", _tampered, "CSR signature does not verify"),
    (
        "RSA key",
        lambda: make_csr(SLEEP, rsa.generate_private_key(65537, 2048)),
        "CSR key is RSA 2048-bit; EC P-256 (secp256r1) is required",
    ),
    (
        "P-384 key",
        lambda: make_csr(SLEEP, ec.generate_private_key(ec.SECP384R1())),
        "CSR key is EC on curve secp384r1 (384 bits); EC P-256 (secp256r1) is required",
    ),
    (
        "Ed25519 key",
        lambda: make_csr(SLEEP, ed25519.Ed25519PrivateKey.generate()),
        "CSR key is Ed25519; EC P-256",
    ),
    (
        "no SAN",
        lambda: make_csr(None),
        "CSR has no subjectAltName; it must carry exactly one URI SAN, spiffe://cluster.local/ns/default/sa/sleep",
    ),
    (
        "DNS SAN only",
        lambda: make_csr(None, extra_names=[x509.DNSName("sleep.default.svc")]),
        'CSR subjectAltName has a DNS name "sleep.default.svc"; only one URI SAN',
    ),
    (
        "extra DNS SAN",
        lambda: make_csr(SLEEP, extra_names=[x509.DNSName("sleep.default.svc")]),
        'has a DNS name "sleep.default.svc"',
    ),
    (
        "extra IP SAN",
        lambda: make_csr(SLEEP, extra_names=[x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]),
        "has an IP address 10.0.0.1",
    ),
    (
        "extra email SAN",
        lambda: make_csr(SLEEP, extra_names=[x509.RFC822Name("a@b.c")]),
        'has an email address "a@b.c"',
    ),
    (
        "two URIs",
        lambda: make_csr(SLEEP, extra_names=[x509.UniformResourceIdentifier(OTHER)]),
        f'CSR subjectAltName has 2 URIs ("{SLEEP}", "{OTHER}"); exactly one, {SLEEP}, is allowed',
    ),
    (
        "mismatched identity",
        lambda: make_csr(OTHER),
        f'CSR asks for identity "{OTHER}", but the caller is {SLEEP}',
    ),
    (
        "other trust domain in SAN",
        lambda: make_csr("spiffe://evil.example/ns/default/sa/sleep"),
        'asks for identity "spiffe://evil.example/ns/default/sa/sleep"',
    ),
    (
        "not a SPIFFE URI",
        lambda: make_csr("https://sleep.default/"),
        'asks for identity "https://sleep.default/"',
    ),
    (
        "CN not the identity",
        lambda: make_csr(SLEEP, subject=_cn("sleep.default.svc")),
        f'CSR subject CN "sleep.default.svc" must be empty or the identity {SLEEP}',
    ),
    (
        "two CNs",
        lambda: make_csr(
            SLEEP, subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(SLEEP))] * 2)
        ),
        "CSR subject has 2 CNs",
    ),
    (
        "asks for CA",
        lambda: make_csr(SLEEP, ca=True),
        "CSR asks for a CA certificate (basicConstraints CA:true)",
    ),
]


@pytest.mark.parametrize(("case", "make", "problem"), BAD, ids=[row[0] for row in BAD])
def test_bad_csr_is_refused_naming_the_problem(
    ca: CertificateAuthority, case: str, make: Callable[[], bytes], problem: str
) -> None:
    with pytest.raises(CSRRejected) as caught:
        ca.sign(make(), SLEEP)
    assert problem in str(caught.value), case


GOOD: list[tuple[str, Callable[[], bytes]]] = [
    ("ztunnel's shape", lambda: make_csr(SLEEP)),
    ("CN equal to the identity", lambda: make_csr(SLEEP, subject=_cn(str(SLEEP)))),
    ("empty CN", lambda: make_csr(SLEEP, subject=_cn(""))),
    (
        "istio-agent's O attribute",
        lambda: make_csr(
            SLEEP, subject=x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "")])
        ),
    ),
    (
        "NEW CERTIFICATE REQUEST label",
        lambda: make_csr(SLEEP).replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"),
    ),
]


@pytest.mark.parametrize(("case", "make"), GOOD, ids=[row[0] for row in GOOD])
@pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning")  # the empty CN
def test_good_csr_is_signed_with_an_empty_subject(
    ca: CertificateAuthority, case: str, make: Callable[[], bytes]
) -> None:
    issued = ca.sign(make(), SLEEP)
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    assert leaf.subject == x509.Name([]), case
    assert list(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [
        x509.UniformResourceIdentifier(str(SLEEP))
    ]


def test_the_leaf_certifies_the_csrs_key(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.sign(make_csr(SLEEP, key), SLEEP)
    assert x509.load_pem_x509_certificate(issued.cert_pem).public_key() == key.public_key()


_VALID_DER = _der_of(make_csr(SLEEP))


@st.composite
def _mutated_csr(draw: st.DrawFn) -> bytes:
    der = bytearray(_VALID_DER)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(der) - 1))
        der[index] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(der)))
        der = der[:cut] + bytearray(draw(st.binary(max_size=16)))
    return _pem_of(bytes(der))


_FOUND_BAD_VERSION = (
    b"-----BEGIN CERTIFICATE REQUEST-----MIIBAzCBqgIBATAAMFkwEwYH0ACIKQYzX0AIDIKQXcjjozoDQgA++/////"
    b"01122255544577ABCCCCEEGGHHIHKJMMPQQRSTUU+YXXX0cc2222223gg444j6600qqq3345w8888zzKBIMEYGCSq1DDEGIHQSa"
    b"jE5MDc00/00111125877BBCCDIJJJNNNNMQRRR+++++YYYXXXXXaacccc244444k6660q335vwww889MAoGCC27ABCGMSMqA0g"
    b"A++0/00155445877AAABCCCDEEEEEGGHHIIKKKJJJJMMMNQRRSUU++XXX0accc22223444jk6666777ooooqqr3445w899z8="
    b"-----END CERTIFICATE REQUEST-----"
)

_ARBITRARY = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(
        lambda b: (
            b"-----BEGIN CERTIFICATE REQUEST-----\n" + b + b"\n-----END CERTIFICATE REQUEST-----\n"
        )
    ),
    st.binary(max_size=512).map(_pem_of),
    _mutated_csr(),
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=_ARBITRARY)
@example(data=_FOUND_BAD_VERSION)  # found by hypothesis: cryptography raised InvalidVersion
def test_sign_raises_only_csr_rejected_on_arbitrary_bytes(
    ca: CertificateAuthority, data: bytes
) -> None:
    try:
        issued = ca.sign(data, SLEEP)
    except CSRRejected as err:
        assert re.match(r"CSR |requested TTL", str(err)), str(err)
        return
    # a mutation may leave a valid CSR (a change to the signature's unused bits, say)
    assert x509.load_pem_x509_certificate(issued.cert_pem).public_key() is not None
