"""Workload identities: the SPIFFE ID ``spiffe://<trust domain>/ns/<namespace>/sa/<account>``.

``SpiffeId`` is a frozen value that parses and prints the URI; building one checks every part,
so a ``SpiffeId`` in hand is always valid. Raises ``InvalidIdentity`` naming the value and the
rule it breaks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from controlplane.ca.errors import InvalidIdentity
from controlplane.k8s.errors import format_value
from controlplane.k8s.names import check_dns1123_label, check_dns1123_subdomain

__all__ = [
    "MAX_SPIFFE_ID_LENGTH",
    "MAX_TRUST_DOMAIN_LENGTH",
    "SCHEME",
    "InvalidIdentity",
    "SpiffeId",
    "check_trust_domain",
]

SCHEME: Final = "spiffe://"
#: The SPIFFE spec's limits (SPIFFE-ID.md, "Maximum SPIFFE ID Length" / trust domain name).
MAX_SPIFFE_ID_LENGTH: Final = 2048
MAX_TRUST_DOMAIN_LENGTH: Final = 255

_PATH_SHAPE: Final = "/ns/<namespace>/sa/<service account>"
_URI_ONLY_CHARS: Final = re.compile(r"[?#%@:\s]")


def check_trust_domain(value: str) -> str | None:
    """``None`` for a valid trust domain, else the rule it breaks. Istio's rule (``ValidateTrustDomain``): dot-separated DNS-1123 labels, lowercase."""
    if not value:
        return "the trust domain is empty"
    if len(value) > MAX_TRUST_DOMAIN_LENGTH:
        return (
            f"the trust domain must be no more than {MAX_TRUST_DOMAIN_LENGTH} characters "
            f"(it has {len(value)})"
        )
    for label in value.split("."):
        if not label:
            return f"the trust domain {format_value(value)} has an empty label (a leading, trailing or double '.')"
        if (rule := check_dns1123_label(label)) is not None:
            return f"the trust domain label {format_value(label)} {rule}"
    return None


def _check_part(what: str, value: str, rule: str | None) -> str | None:
    if not value:
        return f"the {what} is empty"
    if rule is not None:
        return f"the {what} {format_value(value)} {rule}"
    return None


def _find_problem(trust_domain: str, namespace: str, service_account: str) -> str | None:
    return (
        check_trust_domain(trust_domain)
        or _check_part("namespace", namespace, check_dns1123_label(namespace))
        or _check_part("service account", service_account, check_dns1123_subdomain(service_account))
    )


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A workload identity. ``str()`` gives the URI, ``principal`` Istio's principal form.

    ``namespace`` is a Kubernetes namespace name (DNS-1123 label), ``service_account`` a
    ServiceAccount name (DNS-1123 subdomain). Raises ``InvalidIdentity``.
    """

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        for name in ("trust_domain", "namespace", "service_account"):
            if not isinstance(getattr(self, name), str):
                raise InvalidIdentity(
                    f"SPIFFE ID {name} must be a string, got {type(getattr(self, name)).__name__}"
                )
        problem = _find_problem(self.trust_domain, self.namespace, self.service_account)
        if problem is not None:
            raise InvalidIdentity(f"invalid SPIFFE ID {format_value(self.uri)}: {problem}")

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Parse exactly ``spiffe://<td>/ns/<ns>/sa/<sa>``; raises ``InvalidIdentity``."""
        if not isinstance(uri, str):
            raise InvalidIdentity(f"a SPIFFE ID must be a string, got {type(uri).__name__}")

        def bad(problem: str) -> InvalidIdentity:
            return InvalidIdentity(f"invalid SPIFFE ID {format_value(uri)}: {problem}")

        if len(uri) > MAX_SPIFFE_ID_LENGTH:
            raise bad(f"longer than {MAX_SPIFFE_ID_LENGTH} characters ({len(uri)})")
        if not uri.startswith(SCHEME):
            raise bad(f"must start with {SCHEME!r} (lowercase)")
        rest = uri[len(SCHEME) :]
        if (found := _URI_ONLY_CHARS.search(rest)) is not None:
            char = found.group()
            what = {
                "?": "a query ('?')",
                "#": "a fragment ('#')",
                "%": "percent-encoding ('%')",
                "@": "user info ('@')",
                ":": "a port (':')",
            }.get(char, "whitespace")
            raise bad(f"must not contain {what}")
        trust_domain, slash, path = rest.partition("/")
        if not trust_domain:
            raise bad("the trust domain is empty")
        if not slash:
            raise bad(f"has no path; expected {SCHEME}<trust domain>{_PATH_SHAPE}")
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
            raise bad(f"the path must be {_PATH_SHAPE}, got {format_value('/' + path)}")
        problem = _find_problem(trust_domain, parts[1], parts[3])
        if problem is not None:
            raise bad(problem)
        return cls(trust_domain, parts[1], parts[3])

    @property
    def uri(self) -> str:
        """The SPIFFE URI (``str()`` gives the same)."""
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """Istio's principal form, ``<td>/ns/<ns>/sa/<sa>`` (AuthorizationPolicy ``principals``)."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri
