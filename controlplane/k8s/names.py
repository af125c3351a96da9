"""Kubernetes' syntax rules for names and values: DNS labels and subdomains, qualified names
(label and annotation keys), label values, IANA service names (port names), env var names.

Each ``check_*`` function returns ``None`` for a valid value, or the rule it breaks, phrased
to follow a field path: ``"metadata.name: " + rule``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from controlplane.k8s.limits import (
    MAX_DNS1123_LABEL,
    MAX_DNS1123_SUBDOMAIN,
    MAX_IANA_SVC_NAME,
    MAX_LABEL_VALUE,
    MAX_QUALIFIED_NAME,
)

__all__ = [
    "check_dns1035_label",
    "check_dns1123_label",
    "check_dns1123_subdomain",
    "check_env_var_name",
    "check_iana_svc_name",
    "check_ipv4",
    "check_label_value",
    "check_qualified_name",
]

_DNS1123_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_DNS1035_LABEL: Final = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_PART: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_IANA_SVC_NAME_CHARS: Final = re.compile(r"[-a-z0-9]+")
_IANA_SVC_NAME_LETTER: Final = re.compile(r"[a-z]")
_ENV_VAR_NAME: Final = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def _too_long(value: str, maximum: int) -> str | None:
    if len(value) > maximum:
        return f"must be no more than {maximum} characters (it has {len(value)})"
    return None


def check_dns1123_label(value: str) -> str | None:
    """RFC 1123 label: namespaces, container names, Service port names."""
    if (err := _too_long(value, MAX_DNS1123_LABEL)) is not None:
        return err
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'my-name' or '123-abc')"
        )
    return None


def check_dns1123_subdomain(value: str) -> str | None:
    """RFC 1123 subdomain: names of most objects, service account names, label key prefixes."""
    if (err := _too_long(value, MAX_DNS1123_SUBDOMAIN)) is not None:
        return err
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return (
            "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (e.g. 'example.com')"
        )
    return None


def check_dns1035_label(value: str) -> str | None:
    """RFC 1035 label: Service names (they become DNS names and must start with a letter)."""
    if (err := _too_long(value, MAX_DNS1123_LABEL)) is not None:
        return err
    if not _DNS1035_LABEL.fullmatch(value):
        return (
            "must be a DNS-1035 label: lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit (e.g. 'my-name')"
        )
    return None


def check_qualified_name(value: str) -> str | None:
    """A label or annotation key: ``[prefix/]name``, prefix a DNS subdomain, name ≤ 63."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return "the prefix before '/' must not be empty"
        if (err := check_dns1123_subdomain(prefix)) is not None:
            return f"the prefix before '/' {err}"
    else:
        return "must be a name with at most one '/' (an optional DNS subdomain prefix)"
    if not name:
        return "must not be empty" if len(parts) == 1 else "the name after '/' must not be empty"
    if len(name) > MAX_QUALIFIED_NAME:
        return f"the name part must be no more than {MAX_QUALIFIED_NAME} characters"
    if not _QUALIFIED_NAME_PART.fullmatch(name):
        return (
            "must be a qualified name: letters, digits, '-', '_' and '.', starting and ending "
            "with a letter or digit, with an optional DNS subdomain prefix and '/' "
            "(e.g. 'app' or 'example.com/my-name')"
        )
    return None


def check_label_value(value: str) -> str | None:
    """A label value: empty, or ≤ 63 characters of the qualified-name charset."""
    if (err := _too_long(value, MAX_LABEL_VALUE)) is not None:
        return err
    if value and not _QUALIFIED_NAME_PART.fullmatch(value):
        return (
            "must be empty or consist of letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (e.g. 'v1' or 'my_value')"
        )
    return None


def check_iana_svc_name(value: str) -> str | None:
    """An IANA service name: container port names and named target/probe ports."""
    if (err := _too_long(value, MAX_IANA_SVC_NAME)) is not None:
        return err
    if not _IANA_SVC_NAME_CHARS.fullmatch(value):
        return "must be a port name: lowercase letters, digits and '-' only (e.g. 'http')"
    if not _IANA_SVC_NAME_LETTER.search(value):
        return "must be a port name containing at least one letter (e.g. 'http')"
    if value.startswith("-") or value.endswith("-"):
        return "must be a port name that does not start or end with '-'"
    if "--" in value:
        return "must be a port name without consecutive '-'"
    return None


def check_env_var_name(value: str) -> str | None:
    """An environment variable name."""
    if not _ENV_VAR_NAME.fullmatch(value):
        return (
            "must be an environment variable name: letters, digits, '_', '-' and '.', "
            "not starting with a digit (e.g. 'MY_VAR')"
        )
    return None


def check_ipv4(value: str) -> str | None:
    """A dotted-quad IPv4 address."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return "must be an IPv4 address"
    return None
