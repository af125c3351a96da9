"""Turning one decoded document into a typed Istio or Gateway API object: dispatch by API group
and kind, the served-versions check, and the fallback to the Kubernetes kinds (``parse_any``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from controlplane.istio.gatewayapi import GATEWAY_API_GROUP
from controlplane.istio.objects import AnyObject, MeshObject
from controlplane.istio.parse_destinationrule import read_destination_rule
from controlplane.istio.parse_gateway import read_gateway, read_service_entry
from controlplane.istio.parse_gatewayapi import (
    read_gateway_class,
    read_http_route,
    read_kubernetes_gateway,
)
from controlplane.istio.parse_security import (
    read_authorization_policy,
    read_peer_authentication,
    read_request_authentication,
)
from controlplane.istio.parse_virtualservice import read_virtual_service
from controlplane.istio.reader import IstioReader
from controlplane.k8s.errors import UnsupportedKind
from controlplane.k8s.parse import parse_object

__all__ = [
    "DEPRECATED_VERSIONS",
    "KINDS",
    "SERVED_VERSIONS",
    "is_mesh_kind",
    "key_kind",
    "parse_any",
    "parse_mesh_object",
]

NETWORKING: Final = "networking.istio.io"
SECURITY: Final = "security.istio.io"

SERVED_VERSIONS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        NETWORKING: ("v1", "v1beta1", "v1alpha3"),
        SECURITY: ("v1", "v1beta1"),
        GATEWAY_API_GROUP: ("v1", "v1beta1"),
    }
)
"""The versions served for each API group, newest first."""

DEPRECATED_VERSIONS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {GATEWAY_API_GROUP: ("v1alpha2",)}
)
"""Versions still accepted, with a warning (Istio's own samples used them)."""

_Builder = Callable[[IstioReader, Mapping[str, object], str, str], MeshObject]

KINDS: Final[Mapping[tuple[str, str], _Builder]] = MappingProxyType(
    {
        (NETWORKING, "VirtualService"): read_virtual_service,
        (NETWORKING, "DestinationRule"): read_destination_rule,
        (NETWORKING, "Gateway"): read_gateway,
        (NETWORKING, "ServiceEntry"): read_service_entry,
        (SECURITY, "PeerAuthentication"): read_peer_authentication,
        (SECURITY, "AuthorizationPolicy"): read_authorization_policy,
        (SECURITY, "RequestAuthentication"): read_request_authentication,
        (GATEWAY_API_GROUP, "Gateway"): read_kubernetes_gateway,
        (GATEWAY_API_GROUP, "HTTPRoute"): read_http_route,
        (GATEWAY_API_GROUP, "GatewayClass"): read_gateway_class,
    }
)
"""The (group, kind) pairs this package models."""

_CLUSTER_SCOPED: Final = frozenset({(GATEWAY_API_GROUP, "GatewayClass")})


def key_kind(group: str, kind: str) -> str:
    """The first element of an object key: the plain kind for Istio's groups, ``group/kind``
    for the Gateway API (whose ``Gateway`` would otherwise clash with Istio's)."""
    return f"{group}/{kind}" if group == GATEWAY_API_GROUP else kind


def _group_version(doc: Mapping[object, object]) -> tuple[str, str, str] | None:
    """``(group, version, kind)`` when the document is of a kind modelled here."""
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    group, slash, version = api_version.rpartition("/")
    if not slash or (group, kind) not in KINDS:
        return None
    return group, version, kind


def is_mesh_kind(doc: object) -> bool:
    """Whether ``doc`` claims a (group, kind) this package models (any version)."""
    return isinstance(doc, Mapping) and _group_version(doc) is not None


def _display_name(doc: Mapping[object, object], scoped: bool, default_namespace: str) -> str:
    meta = doc.get("metadata")
    if not isinstance(meta, Mapping):
        return ""
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return ""
    if not scoped:
        return name
    if not isinstance(namespace, str) or not namespace:
        namespace = default_namespace
    return f"{namespace}/{name}"


def parse_mesh_object(
    doc: object,
    source: str,
    default_namespace: str = "default",
    warnings: list[str] | None = None,
) -> MeshObject:
    """Validate one Istio or Gateway API document and build its object.

    Raises ``UnsupportedKind`` for other kinds and ``InvalidObject`` when a rule is broken
    (an apiVersion that is not served, a missing host, weights not adding up...).
    """
    sink: list[str] = [] if warnings is None else warnings
    found = _group_version(doc) if isinstance(doc, Mapping) else None
    if found is None or not isinstance(doc, Mapping):
        api_version = doc.get("apiVersion") if isinstance(doc, Mapping) else None
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        raise UnsupportedKind(
            api_version if isinstance(api_version, str) else "",
            kind if isinstance(kind, str) else "",
            "",
            source,
        )
    group, version, kind = found
    scoped = (group, kind) not in _CLUSTER_SCOPED
    r = IstioReader(
        key_kind(group, kind), _display_name(doc, scoped, default_namespace), source, sink
    )
    served = SERVED_VERSIONS[group]
    if version not in served:
        if version in DEPRECATED_VERSIONS.get(group, ()):
            r.warn(f"apiVersion {group}/{version} is deprecated; use {group}/{served[0]}")
        else:
            r.fail(
                "apiVersion",
                f"must be one of {', '.join(f'{group}/{v}' for v in served)} for a {kind}",
                f"{group}/{version}",
            )
    fields = r.mapping(doc, "", "IstioObject")
    return KINDS[(group, kind)](r, fields, default_namespace, f"{group}/{version}")


def parse_any(
    doc: object,
    source: str,
    default_namespace: str = "default",
    warnings: list[str] | None = None,
) -> AnyObject:
    """``parse_mesh_object`` for the kinds modelled here, ``controlplane.k8s.parse_object``
    for everything else (which raises ``UnsupportedKind`` for kinds neither handles)."""
    if is_mesh_kind(doc):
        return parse_mesh_object(doc, source, default_namespace, warnings)
    return parse_object(doc, source, default_namespace, warnings)
