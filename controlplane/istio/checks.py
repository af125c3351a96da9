"""Istio's syntax rules for values: host names (with wildcards), FQDNs, IP addresses and CIDR
ranges, ports, RE2-compatible regular expressions, HTTP header names, namespaces in
``exportTo``.

Each ``check_*`` function returns ``None`` for a valid value, or the rule it breaks (phrased
to follow a field path), like ``controlplane.k8s.names``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from controlplane.k8s.names import check_dns1123_label

__all__ = [
    "MAX_REGEX_LENGTH",
    "check_cidr_or_ip",
    "check_fqdn",
    "check_header_name",
    "check_ip",
    "check_regex",
    "check_wildcard_domain",
    "is_ip",
]

MAX_REGEX_LENGTH: Final = 1024
"""Istio refuses longer regular expressions (Envoy's RE2 program size limit, approximated)."""

_LABEL: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?")
_MAX_DOMAIN: Final = 255
_MAX_LABEL: Final = 63
_HEADER_TOKEN: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# constructs Python's re accepts but RE2 (Envoy, Istio) does not: lookaround, backreferences,
# atomic groups, possessive quantifiers, conditionals
_NOT_RE2: Final = re.compile(r"\(\?[=!]|\(\?<[=!]|\(\?>|\(\?P=|\(\?\(|\\[1-9]|[*+?}]\+")


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _check_labels(domain: str, labels: list[str]) -> str | None:
    for index, label in enumerate(labels):
        if index == len(labels) - 1 and label == "" and index > 0:
            return None  # a trailing dot: "istio.io."
        if len(label) > _MAX_LABEL or not _LABEL.fullmatch(label):
            return f"must be a valid domain name (label {label!r} is invalid)"
    return None


def check_wildcard_domain(host: str) -> str | None:
    """Istio's host rule: a DNS name whose first label may be ``*`` (``*``, ``*.example.com``),
    or a short name (``reviews``); the top-level label cannot be all digits."""
    if not host:
        return "must not be empty"
    if len(host) > _MAX_DOMAIN:
        return f"must be at most {_MAX_DOMAIN} characters (it has {len(host)})"
    first, _, rest = host.partition(".")
    if first != "*" and (len(first) > _MAX_LABEL or not _LABEL.fullmatch(first)):
        if "*" in first:
            return "may only use '*' as the whole first label ('*' or '*.example.com')"
        return f"must be a valid domain name (label {first!r} is invalid)"
    if not rest:
        return None if "." not in host else "must be a valid domain name (it ends with '.')"
    labels = rest.split(".")
    if "*" in rest:
        return "may only use '*' as the whole first label ('*' or '*.example.com')"
    top = labels[-1] if labels[-1] else (labels[-2] if len(labels) > 1 else "")
    if top.isdigit():
        return f"must be a valid domain name (the top-level label {top!r} cannot be all digits)"
    return _check_labels(host, labels)


def check_fqdn(host: str) -> str | None:
    """A DNS name without wildcards (gateway names, destination hosts of some fields)."""
    if "*" in host:
        return "must be a DNS name without wildcards"
    return check_wildcard_domain(host)


def check_ip(value: str) -> str | None:
    return None if is_ip(value) else "must be an IP address"


def check_cidr_or_ip(value: str) -> str | None:
    """An IP address or a CIDR range (``10.0.0.0/8``, ``2001:db8::/32``)."""
    if "/" not in value:
        return None if is_ip(value) else "must be an IP address or a CIDR range"
    address, _, bits = value.partition("/")
    if not bits.isdigit() or not is_ip(address):
        return "must be an IP address or a CIDR range"
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "must be an IP address or a CIDR range (the prefix length is out of range)"
    return None


def check_regex(value: str) -> str | None:
    """A regular expression Envoy can run (RE2 syntax, at most 1024 characters)."""
    if not value:
        return "regex must not be empty"
    if len(value) > MAX_REGEX_LENGTH:
        return f"regex is too large, the maximum length is {MAX_REGEX_LENGTH}"
    if _NOT_RE2.search(value):
        return (
            "regex uses a construct RE2 does not support (lookaround, backreference, "
            "atomic group or possessive quantifier)"
        )
    try:
        re.compile(value)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"regex does not compile: {exc}"
    return None


def check_header_name(name: str, *, lowercase: bool = False) -> str | None:
    """An HTTP header name (an RFC 7230 token; pseudo-headers ``:authority`` etc. allowed)."""
    if not name:
        return "header name must not be empty"
    token = name[1:] if name.startswith(":") else name
    if not _HEADER_TOKEN.fullmatch(token):
        return "must be a valid HTTP header name"
    if lowercase and name.lower() != name:
        return "header names must be lowercase"
    return None


def check_namespace(value: str) -> str | None:
    return check_dns1123_label(value)
