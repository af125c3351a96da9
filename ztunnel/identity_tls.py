"""TLS contexts for HBONE built from a :class:`~ztunnel.identity_core.CertifiedKey` and a trust
bundle, and reading the peer's SPIFFE identity after a handshake.

Contexts are TLS 1.3 only, ALPN ``h2``, peer certificate required on both sides and verified
against the trust bundle (``VERIFY_X509_STRICT``); no hostname check and no SNI — the caller
pins the peer's identity with :func:`peer_identity`, as Istio's ztunnel pins the SAN.
(Python 3.11's ``ssl`` cannot restrict the TLS 1.3 cipher suites to AES-GCM; OpenSSL's default
TLS 1.3 suites are used.)

Key loading: ``ssl`` only loads keys from a path. The key is first encrypted (PKCS#8, a
one-time random password handed to ``load_cert_chain``), then written with the chain to an
anonymous ``memfd`` read through ``/proc/self/fd/N`` — no name in any file system, closed right
after loading. Where ``memfd`` is not available, a private directory (``0700``, on ``/dev/shm``
when present) holding one ``0600`` file is used and removed right after loading. Either way the
plaintext key never touches a file.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives import serialization

from ztunnel.identity_core import (
    CertificateUnavailable,
    CertifiedKey,
    Identity,
    InvalidIdentity,
    InvalidTrustBundle,
)

__all__ = ["ALPN", "KeyLoading", "build_tls_context", "load_key_material", "peer_identity"]

ALPN = "h2"
KeyLoading = Literal["auto", "memfd", "private-dir"]
_SHM = "/dev/shm"


def build_tls_context(
    key: CertifiedKey, trust_bundle_pem: bytes, *, server: bool, key_loading: KeyLoading = "auto"
) -> ssl.SSLContext:
    """A TLS 1.3-only context presenting ``key`` and trusting ``trust_bundle_pem``.

    Raises :class:`InvalidTrustBundle` when OpenSSL refuses the bundle and
    :class:`CertificateUnavailable` when it refuses the certificate or key.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # SPIFFE: the caller checks the peer's URI SAN (peer_identity)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.set_alpn_protocols([ALPN])
    try:
        ctx.load_verify_locations(cadata=trust_bundle_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidTrustBundle(f"TLS refused the trust bundle: {exc}") from None
    load_key_material(ctx, key, key_loading=key_loading)
    return ctx


def load_key_material(
    ctx: ssl.SSLContext, key: CertifiedKey, *, key_loading: KeyLoading = "auto", private_dir: str | None = None
) -> None:
    """Load ``key``'s certificate, chain and (encrypted) private key into ``ctx`` without leaving
    anything on disk (see the module docstring). ``private_dir`` is where the private directory
    is made for ``"private-dir"`` loading (default ``/dev/shm`` if present, else the temp dir).

    Raises :class:`CertificateUnavailable` when OpenSSL refuses the material.
    """
    password = secrets.token_urlsafe(32).encode()
    encrypted_key = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    data = b"".join(_with_newline(pem) for pem in (key.cert_pem, *key.chain_pem, encrypted_key))
    if key_loading == "memfd" or (key_loading == "auto" and _memfd_available()):
        loader = _load_via_memfd
    else:
        loader = _load_via_private_dir
    try:
        loader(ctx, data, password, private_dir)
    except ssl.SSLError as exc:
        raise CertificateUnavailable(f"TLS refused the certificate or key of {key.identity}: {exc}") from None


def _with_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


def _memfd_available() -> bool:
    return hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _load_via_memfd(ctx: ssl.SSLContext, data: bytes, password: bytes, private_dir: str | None) -> None:
    del private_dir  # not used: nothing is named
    fd = os.memfd_create("ztunnel-svid", os.MFD_CLOEXEC)
    try:
        _write_all(fd, data)
        ctx.load_cert_chain(f"/proc/self/fd/{fd}", password=password)
    finally:
        os.close(fd)


def _load_via_private_dir(ctx: ssl.SSLContext, data: bytes, password: bytes, private_dir: str | None) -> None:
    parent = private_dir
    if parent is None and os.path.isdir(_SHM) and os.access(_SHM, os.W_OK | os.X_OK):
        parent = _SHM
    with tempfile.TemporaryDirectory(prefix="ztunnel-svid-", dir=parent) as directory:  # mode 0700
        path = os.path.join(directory, "svid.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            ctx.load_cert_chain(path, password=password)
        finally:
            os.unlink(path)


class HasPeerCert(Protocol):
    """``ssl.SSLObject``, ``ssl.SSLSocket`` or ``trio.SSLStream`` after its handshake."""

    def getpeercert(self, binary_form: bool = ...) -> Any: ...


def peer_identity(tls: HasPeerCert) -> Identity:
    """The SPIFFE identity the peer presented: its certificate's one URI SAN.

    Call after the handshake (the certificate was verified against the trust bundle). Raises
    :class:`InvalidIdentity` when the peer presented none, several, or a malformed one.
    """
    cert = tls.getpeercert()
    if not cert:
        raise InvalidIdentity("", "the peer presented no certificate")
    uris = [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]
    if len(uris) != 1:
        raise InvalidIdentity(", ".join(map(str, uris)), "the peer's certificate must carry exactly one URI SAN")
    return Identity.parse(str(uris[0]))
