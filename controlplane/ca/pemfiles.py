"""The CA's files: reading certificates and keys, and writing new ones with safe permissions.

The only module of the package that touches the file system. Every error is a
``CAConfigError`` naming the file and what is wrong with it; the content of a key file never
appears in a message (cryptography's own error texts are not passed on either).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from controlplane.ca.errors import CAConfigError

__all__ = [
    "CERT_FILE_MODE",
    "KEY_FILE_MODE",
    "MAX_PEM_FILE_BYTES",
    "SigningKey",
    "load_certificates",
    "load_private_key",
    "write_new_file",
]

KEY_FILE_MODE: Final = 0o600
CERT_FILE_MODE: Final = 0o644
MAX_PEM_FILE_BYTES: Final = 1024 * 1024

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _read(path: Path, *, private: bool) -> bytes:
    """Read a regular file; with ``private``, refuse one that group or others may access."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CAConfigError(f"{path}: file not found") from None
    except OSError as err:
        raise CAConfigError(f"{path}: cannot open: {err.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CAConfigError(f"{path}: not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if private and mode & 0o077:
            raise CAConfigError(
                f"{path}: mode {mode:04o} lets group or others access the CA private key; "
                f"it must be {KEY_FILE_MODE:04o} (chmod {KEY_FILE_MODE:o} {path})"
            )
        if info.st_size > MAX_PEM_FILE_BYTES:
            raise CAConfigError(
                f"{path}: {info.st_size} bytes is too large for a PEM file "
                f"(at most {MAX_PEM_FILE_BYTES})"
            )
        try:
            return file.read(MAX_PEM_FILE_BYTES + 1)
        except OSError as err:
            raise CAConfigError(f"{path}: cannot read: {err.strerror}") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order; at least one."""
    data = _read(path, private=False)
    if b"PRIVATE KEY-----" in data:
        raise CAConfigError(f"{path}: holds a private key; it must hold only certificates")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except x509.InvalidVersion as err:
        raise CAConfigError(
            f"{path}: a certificate has the invalid X.509 version {err.parsed_version}"
        ) from None
    except ValueError:
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise CAConfigError(f"{path}: no PEM certificate found") from None
        raise CAConfigError(f"{path}: a PEM certificate block does not parse") from None
    return certs


def load_private_key(path: Path, *, require_private_mode: bool) -> SigningKey:
    """The unencrypted EC or RSA private key of a PEM file (PKCS#8, SEC1 or PKCS#1).

    With ``require_private_mode``, a file readable or writable by group or others is refused.
    """
    data = _read(path, private=require_private_mode)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CAConfigError(
            f"{path}: the private key is encrypted; an unencrypted key is required"
        ) from None
    except UnsupportedAlgorithm:
        raise CAConfigError(f"{path}: the private key's algorithm is not supported") from None
    except ValueError:
        raise CAConfigError(
            f"{path}: no unencrypted PEM private key found (or it does not parse)"
        ) from None
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key
    raise CAConfigError(
        f"{path}: {type(key).__name__.removesuffix('PrivateKey')} keys are not supported; "
        "use an EC (P-256, P-384, P-521) or RSA key"
    )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with exactly ``mode`` and ``data``, all or nothing, never overwriting.

    The bytes go to a temporary file created with ``mode`` (``O_EXCL``, so a key file is never
    readable by others, not even while it is written), are synced, then hard-linked into place
    (which fails if ``path`` exists).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover of a crash of this pid's predecessor
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as err:
        raise CAConfigError(f"{path}: cannot create: {err.strerror}") from None
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits of a 0644 file
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    except FileExistsError:
        raise CAConfigError(f"{path}: already exists (created by another process?)") from None
    except OSError as err:
        raise CAConfigError(f"{path}: cannot write: {err.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
