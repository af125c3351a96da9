"""The mesh's certificate authority: workload identities (SPIFFE IDs) and the CA that signs
their certificates, compatible with Istio's (CSR rules, certificate profile, plug-in
``cacerts`` files). Sans-I/O apart from reading and writing its own files (``pemfiles``)."""

from __future__ import annotations

from controlplane.ca.authority import (
    DEFAULT_MAX_TTL,
    DEFAULT_TRUST_DOMAIN,
    DEFAULT_TTL,
    CertificateAuthority,
    Clock,
    IssuedCertificate,
)
from controlplane.ca.errors import CAConfigError, CAError, CSRRejected, InvalidIdentity
from controlplane.ca.identity import SpiffeId

__all__ = [
    "DEFAULT_MAX_TTL",
    "DEFAULT_TRUST_DOMAIN",
    "DEFAULT_TTL",
    "CAConfigError",
    "CAError",
    "CSRRejected",
    "CertificateAuthority",
    "Clock",
    "InvalidIdentity",
    "IssuedCertificate",
    "SpiffeId",
]
