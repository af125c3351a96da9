"""The self-signed CA (controlplane.ca.authority): its files on first and later starts, the
certificates it issues (checked with cryptography's verifier and with `openssl verify`), TTL
decisions on an injected clock, and that key material never shows in a repr or an error."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from controlplane.ca import (
    CAConfigError,
    CAError,
    CertificateAuthority,
    CSRRejected,
    IssuedCertificate,
    SpiffeId,
)
from controlplane.ca.authority import CLOCK_SKEW_GRACE, ROOT_LIFETIME
from controlplane.ca.testing import ManualClock, make_csr

SLEEP = SpiffeId.parse("spiffe://cluster.local/ns/default/sa/sleep")
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def ca(tmp_path: Path, clock: ManualClock) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca", clock=clock)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leaf(issued: IssuedCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.cert_pem)


def _openssl_verify(tmp_path: Path, issued: IssuedCertificate, root_pem: bytes, *extra: str) -> str:
    (tmp_path / "root.pem").write_bytes(root_pem)
    (tmp_path / "chain.pem").write_bytes(b"".join(issued.chain_pem))
    (tmp_path / "leaf.pem").write_bytes(issued.cert_pem)
    done = subprocess.run(
        ["openssl", "verify", *extra, "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# -- state files -----------------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_first_start_creates_root_and_key_with_their_modes(
    tmp_path: Path, clock: ManualClock
) -> None:
    old = os.umask(0o077)  # a strict umask must not make the root unreadable to others...
    try:
        ca = CertificateAuthority.load_or_create(tmp_path / "state", clock=clock)
    finally:
        os.umask(old)
    state = tmp_path / "state"
    assert sorted(p.name for p in state.iterdir()) == ["ca-key.pem", "root-cert.pem"]
    assert _mode(state / "root-cert.pem") == 0o644
    assert _mode(state / "ca-key.pem") == 0o600
    assert (state / "root-cert.pem").read_bytes() == ca.root_pem

    root = x509.load_pem_x509_certificate(ca.root_pem)
    assert root.subject == x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Mesh root CA"),
        ]
    )
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)
    key = root.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert root.not_valid_after_utc - root.not_valid_before_utc == ROOT_LIFETIME
    assert root.not_valid_before_utc <= T0 < root.not_valid_after_utc
    private = serialization.load_pem_private_key((state / "ca-key.pem").read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key() == key
    assert ca.trust_domain == "cluster.local"


def test_key_file_is_created_private_from_the_first_byte(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Observes the open(2) calls: the key is born 0600 with O_EXCL, not chmod-ed later."""
    calls: list[tuple[str, int, int]] = []
    real_open = os.open

    def spying_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        calls.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spying_open)
    old = os.umask(0)  # even with no umask at all
    try:
        CertificateAuthority.load_or_create(tmp_path, clock=clock)
    finally:
        os.umask(old)
    creates = [(p, m) for p, f, m in calls if f & os.O_CREAT]
    key_creates = [(p, m) for p, m in creates if "ca-key.pem" in p]
    assert key_creates, calls
    for path, mode in key_creates:
        assert mode == 0o600, (path, oct(mode))
    assert all(f & os.O_EXCL for p, f, _ in calls if f & os.O_CREAT)
    assert _mode(tmp_path / "ca-key.pem") == 0o600


def test_second_start_reuses_the_files(tmp_path: Path, clock: ManualClock) -> None:
    first = CertificateAuthority.load_or_create(tmp_path, clock=clock)
    key_before = (tmp_path / "ca-key.pem").read_bytes()
    clock.advance(timedelta(days=30))
    second = CertificateAuthority.load_or_create(tmp_path, clock=clock)
    assert second.root_pem == first.root_pem
    assert (tmp_path / "ca-key.pem").read_bytes() == key_before
    issued = second.sign(make_csr(SLEEP), SLEEP)
    _leaf(issued).verify_directly_issued_by(x509.load_pem_x509_certificate(first.root_pem))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700])
def test_key_file_with_group_or_other_permissions_is_refused(
    tmp_path: Path, clock: ManualClock, mode: int
) -> None:
    CertificateAuthority.load_or_create(tmp_path, clock=clock)
    os.chmod(tmp_path / "ca-key.pem", mode)
    if mode & 0o077 == 0:
        CertificateAuthority.load_or_create(tmp_path, clock=clock)  # 0700 is private: fine
        return
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.load_or_create(tmp_path, clock=clock)
    message = str(caught.value)
    assert str(tmp_path / "ca-key.pem") in message
    assert f"mode {mode:04o}" in message and "must be 0600" in message


def test_key_not_matching_the_root_is_refused(tmp_path: Path, clock: ManualClock) -> None:
    CertificateAuthority.load_or_create(tmp_path, clock=clock)
    other = ec.generate_private_key(ec.SECP256R1())
    key_path = tmp_path / "ca-key.pem"
    key_path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(CAConfigError, match="does not match") as caught:
        CertificateAuthority.load_or_create(tmp_path, clock=clock)
    assert str(key_path) in str(caught.value)
    assert str(tmp_path / "root-cert.pem") in str(caught.value)


def test_expired_root_is_refused(tmp_path: Path, clock: ManualClock) -> None:
    CertificateAuthority.load_or_create(tmp_path, clock=clock)
    clock.advance(ROOT_LIFETIME)
    with pytest.raises(CAConfigError, match="expired at") as caught:
        CertificateAuthority.load_or_create(tmp_path, clock=clock)
    assert str(tmp_path / "root-cert.pem") in str(caught.value)


@pytest.mark.parametrize("keep", ["root-cert.pem", "ca-key.pem"])
def test_half_a_state_folder_is_refused_not_replaced(
    tmp_path: Path, clock: ManualClock, keep: str
) -> None:
    CertificateAuthority.load_or_create(tmp_path, clock=clock)
    gone = "ca-key.pem" if keep == "root-cert.pem" else "root-cert.pem"
    (tmp_path / gone).unlink()
    before = (tmp_path / keep).read_bytes()
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.load_or_create(tmp_path, clock=clock)
    assert f"{tmp_path / keep} exists but {tmp_path / gone} does not" in str(caught.value)
    assert (tmp_path / keep).read_bytes() == before
    assert not (tmp_path / gone).exists()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("ca-key.pem", b"not a key", "no unencrypted PEM private key found"),
        ("root-cert.pem", b"not a cert", "no PEM certificate found"),
        (
            "root-cert.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "does not parse",
        ),
    ],
)
def test_corrupt_state_files_are_refused_naming_the_file(
    tmp_path: Path, clock: ManualClock, name: str, content: bytes, problem: str
) -> None:
    CertificateAuthority.load_or_create(tmp_path, clock=clock)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.load_or_create(tmp_path, clock=clock)
    assert str(tmp_path / name) in str(caught.value)
    assert problem in str(caught.value)


def test_encrypted_key_is_refused(tmp_path: Path, clock: ManualClock) -> None:
    CertificateAuthority.load_or_create(tmp_path, clock=clock)
    key_path = tmp_path / "ca-key.pem"
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CAConfigError, match="encrypted"):
        CertificateAuthority.load_or_create(tmp_path, clock=clock)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"max_ttl": timedelta(hours=1)}, "default_ttl 24h exceeds max_ttl 1h"),
        ({"max_ttl": timedelta(0)}, "max_ttl must be positive, got 0s"),
        ({"default_ttl": timedelta(seconds=-5)}, "default_ttl must be positive, got -5s"),
    ],
)
def test_inconsistent_ttl_settings_are_refused(
    tmp_path: Path, clock: ManualClock, kwargs: dict[str, Any], problem: str
) -> None:
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.load_or_create(tmp_path, clock=clock, **kwargs)
    assert problem in str(caught.value)
    assert not any(tmp_path.iterdir())  # nothing written for a refused configuration


@pytest.mark.parametrize(
    ("trust_domain", "problem"),
    [
        (
            "Cluster.local",
            "trust_domain 'Cluster.local': the trust domain label \"Cluster\" must be",
        ),
        ("", "trust_domain '': the trust domain is empty"),
        ("a..b", "trust_domain 'a..b': the trust domain \"a..b\" has an empty label"),
    ],
)
def test_invalid_trust_domain_setting_is_refused(
    tmp_path: Path, clock: ManualClock, trust_domain: str, problem: str
) -> None:
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.load_or_create(tmp_path, trust_domain, clock=clock)
    assert str(caught.value).startswith(problem)
    assert not any(tmp_path.iterdir())


def test_naive_clock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="timezone-aware"):
        CertificateAuthority.load_or_create(tmp_path, clock=lambda: datetime(2026, 1, 1))


# -- issued certificates ---------------------------------------------------------------------


def test_issued_certificate_has_istios_profile(ca: CertificateAuthority) -> None:
    issued = ca.sign(make_csr(SLEEP), SLEEP)
    leaf = _leaf(issued)
    assert issued.identity == SLEEP
    assert issued.serial == leaf.serial_number
    assert 0 < issued.serial < 2**128
    assert leaf.subject == x509.Name([])
    root = x509.load_pem_x509_certificate(ca.root_pem)
    assert leaf.issuer == root.subject

    extensions = {e.oid: e for e in leaf.extensions}
    assert set(extensions) == {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    }
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # the subject is empty (RFC 5280 4.2.1.6)
    assert list(san.value) == [
        x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/sleep")
    ]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and usage.value.key_encipherment
    assert not (usage.value.key_cert_sign or usage.value.crl_sign or usage.value.content_commitment)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    assert issued.chain_pem == (ca.root_pem,)


def test_serials_are_random_and_distinct(ca: CertificateAuthority) -> None:
    csr = make_csr(SLEEP)
    serials = {ca.sign(csr, SLEEP).serial for _ in range(50)}
    assert len(serials) == 50
    assert max(serials).bit_length() > 120  # random over 128 bits, not a counter


def test_issued_certificate_verifies_with_cryptography_and_openssl(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")  # the real clock, for openssl
    issued = ca.sign(make_csr(SLEEP), SLEEP)
    root = x509.load_pem_x509_certificate(ca.root_pem)
    verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
    chain = [x509.load_pem_x509_certificate(p) for p in issued.chain_pem]
    verified = verifier.verify(_leaf(issued), chain)
    assert verified.subjects == [x509.UniformResourceIdentifier(str(SLEEP))]
    _leaf(issued).verify_directly_issued_by(root)
    out = _openssl_verify(tmp_path, issued, ca.root_pem, "-purpose", "sslclient")
    assert out.strip() == "leaf.pem: OK"
    _openssl_verify(tmp_path, issued, ca.root_pem, "-purpose", "sslserver")


def test_default_ttl_is_24_hours_backdated_one_minute(
    ca: CertificateAuthority, clock: ManualClock
) -> None:
    issued = ca.sign(make_csr(SLEEP), SLEEP)
    assert ca.default_ttl == timedelta(hours=24)
    assert issued.not_before == T0 - CLOCK_SKEW_GRACE == T0 - timedelta(minutes=1)
    assert issued.not_after == T0 + timedelta(hours=24)
    leaf = _leaf(issued)
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (
        issued.not_before,
        issued.not_after,
    )


@pytest.mark.parametrize(
    "ttl", [timedelta(seconds=1), timedelta(hours=1), timedelta(days=7), timedelta(days=90)]
)
def test_custom_ttl(ca: CertificateAuthority, clock: ManualClock, ttl: timedelta) -> None:
    clock.advance(timedelta(days=3))
    issued = ca.sign(make_csr(SLEEP), SLEEP, ttl)
    assert issued.not_after == clock.now + ttl
    assert issued.not_before == clock.now - timedelta(minutes=1)


def test_ttl_is_clamped_to_the_roots_expiry(ca: CertificateAuthority, clock: ManualClock) -> None:
    root = x509.load_pem_x509_certificate(ca.root_pem)
    clock.now = root.not_valid_after_utc - timedelta(hours=2)
    issued = ca.sign(make_csr(SLEEP), SLEEP)
    assert issued.not_after == root.not_valid_after_utc == ca.signer_not_after
    verifier = PolicyBuilder().store(Store([root])).time(clock.now).build_client_verifier()
    verifier.verify(_leaf(issued), [])


def test_ttl_above_max_is_refused_naming_both(ca: CertificateAuthority) -> None:
    assert ca.max_ttl == timedelta(days=90)
    with pytest.raises(CSRRejected) as caught:
        ca.sign(make_csr(SLEEP), SLEEP, timedelta(days=90, seconds=1))
    assert str(caught.value) == (
        "requested TTL 2160h1s exceeds the maximum workload certificate TTL 2160h"
    )


def test_max_ttl_is_configurable(tmp_path: Path, clock: ManualClock) -> None:
    ca = CertificateAuthority.load_or_create(
        tmp_path, clock=clock, max_ttl=timedelta(hours=12), default_ttl=timedelta(hours=1)
    )
    assert ca.sign(make_csr(SLEEP), SLEEP).not_after == T0 + timedelta(hours=1)
    with pytest.raises(CSRRejected, match=r"requested TTL 13h exceeds .* TTL 12h"):
        ca.sign(make_csr(SLEEP), SLEEP, timedelta(hours=13))


@pytest.mark.parametrize(
    ("ttl", "shown"), [(timedelta(0), "0s"), (timedelta(minutes=-90), "-1h30m")]
)
def test_non_positive_ttl_is_refused(ca: CertificateAuthority, ttl: timedelta, shown: str) -> None:
    with pytest.raises(CSRRejected) as caught:
        ca.sign(make_csr(SLEEP), SLEEP, ttl)
    assert str(caught.value) == f"requested TTL {shown} must be positive"


def test_identity_of_another_trust_domain_is_refused(ca: CertificateAuthority) -> None:
    other = SpiffeId.parse("spiffe://other.mesh/ns/default/sa/sleep")
    with pytest.raises(CSRRejected) as caught:
        ca.sign(make_csr(other), other)
    assert str(caught.value) == (
        "identity spiffe://other.mesh/ns/default/sa/sleep is in trust domain 'other.mesh'; "
        "this CA issues for 'cluster.local'"
    )


def test_trust_domain_is_configurable(tmp_path: Path, clock: ManualClock) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "corp.example", clock=clock)
    identity = SpiffeId.parse("spiffe://corp.example/ns/a/sa/b")
    issued = ca.sign(make_csr(identity), identity)
    root = x509.load_pem_x509_certificate(ca.root_pem)
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "corp.example"
    assert _leaf(issued).extensions.get_extension_for_class(x509.SubjectAlternativeName).value[
        0
    ] == (x509.UniformResourceIdentifier("spiffe://corp.example/ns/a/sa/b"))


def test_signing_after_the_root_expired_is_a_ca_error(
    ca: CertificateAuthority, clock: ManualClock
) -> None:
    clock.now = ca.signer_not_after
    with pytest.raises(CAError, match="signing path expired") as caught:
        ca.sign(make_csr(SLEEP), SLEEP)
    assert not isinstance(caught.value, CSRRejected)


# -- key material never leaks ----------------------------------------------------------------


def _texts(err: BaseException) -> Iterator[str]:
    seen: BaseException | None = err
    while seen is not None:
        yield str(seen)
        yield repr(seen)
        seen = seen.__cause__ or seen.__context__


def test_no_key_material_in_reprs_or_errors(tmp_path: Path, clock: ManualClock) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, clock=clock)
    key_pem = (tmp_path / "ca-key.pem").read_bytes().decode()
    key_lines = [line for line in key_pem.splitlines() if line and "-----" not in line]
    texts = [repr(ca), str(ca), repr(ca.sign(make_csr(SLEEP), SLEEP))]

    def collect(call: Any, *args: Any) -> None:
        with pytest.raises(CAError) as caught:
            call(*args)
        texts.extend(_texts(caught.value))

    collect(ca.sign, key_pem.encode(), SLEEP)  # the key sent as a CSR
    collect(ca.sign, key_pem.encode() + make_csr(SLEEP), SLEEP)
    collect(
        ca.sign,
        make_csr(SLEEP).replace(b"REQUEST-----\n", b"REQUEST-----\n" + key_pem.encode(), 1),
        SLEEP,
    )
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "root-cert.pem").write_bytes(key_pem.encode())  # the key as the root
    os.link(tmp_path / "ca-key.pem", tmp_path / "copy" / "ca-key.pem")
    collect(CertificateAuthority.load_or_create, tmp_path / "copy", "cluster.local")
    os.chmod(tmp_path / "ca-key.pem", 0o644)
    collect(CertificateAuthority.load_or_create, tmp_path, "cluster.local")
    os.chmod(tmp_path / "ca-key.pem", 0o600)
    (tmp_path / "bad").mkdir()
    fd = os.open(tmp_path / "bad" / "ca-key.pem", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, key_pem.encode()[:-40])  # truncated key
    os.close(fd)
    (tmp_path / "bad" / "root-cert.pem").write_bytes(ca.root_pem)
    collect(CertificateAuthority.load_or_create, tmp_path / "bad", "cluster.local")
    for cacerts_file in ("ca-cert.pem", "cert-chain.pem", "root-cert.pem"):
        folder = tmp_path / f"cacerts-{cacerts_file}"
        folder.mkdir()
        for name in ("ca-cert.pem", "cert-chain.pem", "root-cert.pem"):
            (folder / name).write_bytes(key_pem.encode() if name == cacerts_file else ca.root_pem)
        os.link(tmp_path / "ca-key.pem", folder / "ca-key.pem")
        collect(CertificateAuthority.from_cacerts, folder)

    assert len(texts) > 10
    for text in texts:
        assert "PRIVATE KEY" not in text, text
        for line in key_lines:
            assert line not in text, text
