"""The exception hierarchy of the certificate authority, with messages written for an operator.

Every message names the value or the file that was wrong and what was wrong with it. No message
ever contains private key material: errors about a key file name the file, never its content.
"""

from __future__ import annotations

__all__ = ["CAConfigError", "CAError", "CSRRejected", "InvalidIdentity"]


class CAError(Exception):
    """Base class of every error this package raises."""


class InvalidIdentity(CAError, ValueError):
    """A SPIFFE ID (or one of its parts) that does not follow the mesh's identity syntax."""


class CSRRejected(CAError):
    """A signing request refused: the CSR, the identity it asks for, or the requested TTL."""


class CAConfigError(CAError):
    """The CA's own material (state folder, plug-in ``cacerts`` files, settings) is unusable."""
