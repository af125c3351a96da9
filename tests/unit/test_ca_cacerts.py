"""Istio's plug-in CA (CertificateAuthority.from_cacerts): a root → intermediate made here, the
four cacerts files, leaves whose chain `openssl verify` and cryptography accept, and each kind
of inconsistent folder refused with an error naming the file."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from controlplane.ca import CAConfigError, CertificateAuthority, IssuedCertificate, SpiffeId
from controlplane.ca.testing import CaCerts, ManualClock, make_ca_cert, make_csr, write_cacerts

SLEEP = SpiffeId.parse("spiffe://cluster.local/ns/default/sa/sleep")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def material() -> CaCerts:
    return CaCerts.generate(datetime.now(UTC))


@pytest.fixture
def folder(tmp_path: Path, material: CaCerts) -> Path:
    folder = tmp_path / "cacerts"
    write_cacerts(
        folder,
        material.ca_cert,
        material.ca_key,
        [material.root],
        [material.ca_cert, material.root],
    )
    return folder


def _openssl_verify(folder: Path, issued: IssuedCertificate, workdir: Path) -> None:
    """As a peer would: trust root-cert.pem, take the chain the CA returned as untrusted."""
    (workdir / "leaf.pem").write_bytes(issued.cert_pem)
    (workdir / "returned-chain.pem").write_bytes(b"".join(issued.chain_pem))
    for untrusted in (folder / "cert-chain.pem", workdir / "returned-chain.pem"):
        done = subprocess.run(
            [
                "openssl", "verify", "-purpose", "sslclient",
                "-CAfile", str(folder / "root-cert.pem"),
                "-untrusted", str(untrusted),
                str(workdir / "leaf.pem"),
            ],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip().endswith("leaf.pem: OK")


def test_plugged_in_intermediate_issues_verifiable_leaves(
    tmp_path: Path, folder: Path, material: CaCerts
) -> None:
    ca = CertificateAuthority.from_cacerts(folder)
    assert ca.root_pem == _pem(material.root)
    issued = ca.sign(make_csr(SLEEP), SLEEP)
    assert issued.chain_pem == (_pem(material.ca_cert), _pem(material.root))
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    assert leaf.issuer == material.ca_cert.subject
    leaf.verify_directly_issued_by(material.ca_cert)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = material.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    verifier = PolicyBuilder().store(Store([material.root])).build_client_verifier()
    verified = verifier.verify(leaf, [material.ca_cert])
    assert verified.subjects == [x509.UniformResourceIdentifier(str(SLEEP))]
    _openssl_verify(folder, issued, tmp_path)


def test_chain_file_without_the_root_gets_the_root_appended(
    tmp_path: Path, material: CaCerts
) -> None:
    folder = tmp_path / "cacerts"
    write_cacerts(folder, material.ca_cert, material.ca_key, [material.root], [material.ca_cert])
    issued = CertificateAuthority.from_cacerts(folder).sign(make_csr(SLEEP), SLEEP)
    assert issued.chain_pem == (_pem(material.ca_cert), _pem(material.root))
    _openssl_verify(folder, issued, tmp_path)


def test_two_intermediates_and_a_bundle_of_two_roots(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    material = CaCerts.generate(now)
    key2 = ec.generate_private_key(ec.SECP256R1())
    second = make_ca_cert("Cluster CA", key2, now - timedelta(minutes=5), timedelta(days=30),
                          issuer=(material.ca_cert, material.ca_key))  # fmt: skip
    old_root = make_ca_cert(
        "Old root", ec.generate_private_key(ec.SECP256R1()), now, timedelta(days=9)
    )
    folder = tmp_path / "cacerts"
    write_cacerts(
        folder, second, key2, [old_root, material.root], [second, material.ca_cert, material.root]
    )
    ca = CertificateAuthority.from_cacerts(folder)
    assert ca.root_pem == _pem(old_root) + _pem(material.root)
    issued = ca.sign(make_csr(SLEEP), SLEEP)
    assert issued.chain_pem == (_pem(second), _pem(material.ca_cert), _pem(material.root))
    _openssl_verify(folder, issued, tmp_path)
    # the leaf may not outlive the shortest-lived certificate on its path
    assert ca.signer_not_after == second.not_valid_after_utc
    assert (
        ca.sign(make_csr(SLEEP), SLEEP, timedelta(days=60)).not_after == second.not_valid_after_utc
    )


def test_ttl_is_clamped_to_the_intermediates_expiry(tmp_path: Path) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    material = CaCerts.generate(now, ca_lifetime=timedelta(hours=2))
    folder = tmp_path / "cacerts"
    write_cacerts(
        folder,
        material.ca_cert,
        material.ca_key,
        [material.root],
        [material.ca_cert, material.root],
    )
    clock = ManualClock(now)
    ca = CertificateAuthority.from_cacerts(folder, clock=clock)
    issued = ca.sign(make_csr(SLEEP), SLEEP)
    assert issued.not_after == material.ca_cert.not_valid_after_utc == now + timedelta(hours=1)
    verifier = PolicyBuilder().store(Store([material.root])).time(now).build_client_verifier()
    verifier.verify(x509.load_pem_x509_certificate(issued.cert_pem), [material.ca_cert])


# -- inconsistent folders ----------------------------------------------------------------------


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_key_not_matching_ca_cert_is_refused(folder: Path) -> None:
    (folder / "ca-key.pem").write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.from_cacerts(folder)
    assert str(caught.value).startswith(
        f"{folder / 'ca-key.pem'} does not match {folder / 'ca-cert.pem'}"
    )


def test_chain_not_leading_to_the_root_is_refused(folder: Path) -> None:
    """root-cert.pem holds another root than the one cert-chain.pem ends with."""
    other_root = make_ca_cert(
        "Some other root",
        ec.generate_private_key(ec.SECP256R1()),
        datetime.now(UTC),
        timedelta(days=9),
    )
    (folder / "root-cert.pem").write_bytes(_pem(other_root))
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.from_cacerts(folder)
    assert str(caught.value) == (
        f"{folder / 'cert-chain.pem'} does not lead to {folder / 'root-cert.pem'}: its last certificate "
        "(subject CN=Test root CA,O=cluster.local, issuer CN=Test root CA,O=cluster.local) is neither "
        f"in {folder / 'root-cert.pem'} nor signed by a certificate in it"
    )


def test_broken_chain_link_is_refused(tmp_path: Path, material: CaCerts) -> None:
    folder = tmp_path / "cacerts"
    stranger = make_ca_cert(
        "Stranger", ec.generate_private_key(ec.SECP256R1()), datetime.now(UTC), timedelta(days=9)
    )
    write_cacerts(
        folder,
        material.ca_cert,
        material.ca_key,
        [material.root],
        [material.ca_cert, stranger, material.root],
    )
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.from_cacerts(folder)
    assert str(caught.value).startswith(
        f"{folder / 'cert-chain.pem'}: certificate 1 (subject CN=Test intermediate CA,O=cluster.local) "
        "is not issued by certificate 2 (subject CN=Stranger,O=cluster.local)"
    )


def test_chain_not_starting_with_ca_cert_is_refused(tmp_path: Path, material: CaCerts) -> None:
    folder = tmp_path / "cacerts"
    write_cacerts(folder, material.ca_cert, material.ca_key, [material.root], [material.root])
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.from_cacerts(folder)
    assert str(caught.value) == (
        f"{folder / 'cert-chain.pem'}: the first certificate must be {folder / 'ca-cert.pem'} "
        "(subject CN=Test intermediate CA,O=cluster.local), found subject CN=Test root CA,O=cluster.local"
    )


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({"ca": False}, "is not a CA certificate (basicConstraints CA:true is missing)"),
        ({"key_cert_sign": False}, "keyUsage lacks keyCertSign"),
    ],
)
def test_intermediate_that_cannot_sign_is_refused(
    tmp_path: Path, material: CaCerts, broken: dict[str, bool], problem: str
) -> None:
    not_ca = make_ca_cert(
        "Not a CA", material.ca_key, datetime.now(UTC) - timedelta(hours=1), timedelta(days=30),
        issuer=(material.root, material.root_key), **broken,
    )  # fmt: skip
    folder = tmp_path / "cacerts"
    write_cacerts(folder, not_ca, material.ca_key, [material.root], [not_ca, material.root])
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.from_cacerts(folder)
    assert (
        str(caught.value)
        == f"{folder / 'ca-cert.pem'} (subject CN=Not a CA,O=cluster.local) {problem}"
    )


def test_non_ca_in_the_middle_of_the_chain_is_refused(tmp_path: Path, material: CaCerts) -> None:
    now = datetime.now(UTC)
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = make_ca_cert("Middle", middle_key, now - timedelta(hours=1), timedelta(days=30),
                          issuer=(material.root, material.root_key), ca=False)  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = make_ca_cert(
        "Bottom", key, now - timedelta(hours=1), timedelta(days=9), issuer=(middle, middle_key)
    )
    folder = tmp_path / "cacerts"
    write_cacerts(folder, ca_cert, key, [material.root], [ca_cert, middle, material.root])
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.from_cacerts(folder)
    assert str(caught.value) == (
        f"{folder / 'cert-chain.pem'}: certificate 2 (subject CN=Middle,O=cluster.local) "
        "is not a CA certificate (basicConstraints CA:true is missing)"
    )


def test_expired_intermediate_is_refused(folder: Path, material: CaCerts) -> None:
    clock = ManualClock(material.ca_cert.not_valid_after_utc + timedelta(seconds=1))
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.from_cacerts(folder, clock=clock)
    assert str(caught.value).startswith(
        f"{folder / 'ca-cert.pem'} (subject CN=Test intermediate CA"
    )
    assert "expired at" in str(caught.value)


@pytest.mark.parametrize("name", ["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"])
def test_missing_file_is_named(folder: Path, name: str) -> None:
    (folder / name).unlink()
    with pytest.raises(CAConfigError) as caught:
        CertificateAuthority.from_cacerts(folder)
    assert str(caught.value) == f"{folder / name}: file not found"


def test_several_certificates_in_ca_cert_are_refused(folder: Path, material: CaCerts) -> None:
    (folder / "ca-cert.pem").write_bytes(_pem(material.ca_cert) + _pem(material.root))
    with pytest.raises(CAConfigError, match="holds 2 certificates, expected 1") as caught:
        CertificateAuthority.from_cacerts(folder)
    assert str(folder / "ca-cert.pem") in str(caught.value)


def test_kubernetes_secret_mode_is_accepted_for_plugged_in_keys(folder: Path) -> None:
    """Secrets are mounted 0644 by default; Istio reads them, so do we (only our own state
    folder's key must be 0600)."""
    (folder / "ca-key.pem").chmod(0o644)
    CertificateAuthority.from_cacerts(folder).sign(make_csr(SLEEP), SLEEP)
