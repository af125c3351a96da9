"""Typed, immutable models of ``security.istio.io``: PeerAuthentication, AuthorizationPolicy and
RequestAuthentication.

``selector`` is the workload selector's ``matchLabels`` (``None`` when the policy has none: it
applies to the namespace, or to the mesh in the root namespace). ``targetRef`` and
``targetRefs`` are both folded into ``target_refs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from controlplane.istio.durations import Duration
from controlplane.istio.frozendict import FrozenDict
from controlplane.k8s.objects import ObjectKey, ObjectMeta

__all__ = [
    "MTLS_MODES",
    "POLICY_ACTIONS",
    "AuthorizationPolicy",
    "ClaimToHeader",
    "Condition",
    "JWTHeader",
    "JWTRule",
    "Operation",
    "PeerAuthentication",
    "PolicyTargetReference",
    "RequestAuthentication",
    "Rule",
    "Source",
]

MTLS_MODES: tuple[str, ...] = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
POLICY_ACTIONS: tuple[str, ...] = ("ALLOW", "DENY", "AUDIT", "CUSTOM")


@dataclass(frozen=True, slots=True)
class PolicyTargetReference:
    """``targetRef``: e.g. ``{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}``."""

    kind: str
    name: str
    group: str = ""
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class PeerAuthentication:
    """``mtls_mode`` UNSET inherits from the parent scope; ``port_level_mtls`` maps workload
    ports to modes (only with a selector)."""

    meta: ObjectMeta
    api_version: str = "security.istio.io/v1"
    selector: Mapping[str, str] | None = None
    mtls_mode: str = "UNSET"
    port_level_mtls: FrozenDict[int, str] = field(default_factory=FrozenDict)

    kind: ClassVar[str] = "PeerAuthentication"
    group: ClassVar[str] = "security.istio.io"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)


@dataclass(frozen=True, slots=True)
class Source:
    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    not_service_accounts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule matches when any ``from_`` source, any ``to`` operation and every ``when``
    condition match (an absent part matches everything)."""

    from_: tuple[Source, ...] = ()
    to: tuple[Operation, ...] = ()
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    """``rules`` empty: ALLOW allows nothing (deny-all); DENY/CUSTOM without rules are refused.
    ``provider`` is the CUSTOM action's extension provider name."""

    meta: ObjectMeta
    api_version: str = "security.istio.io/v1"
    selector: Mapping[str, str] | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    action: str = "ALLOW"
    provider: str | None = None
    rules: tuple[Rule, ...] = ()

    kind: ClassVar[str] = "AuthorizationPolicy"
    group: ClassVar[str] = "security.istio.io"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)


@dataclass(frozen=True, slots=True)
class JWTHeader:
    name: str
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimToHeader:
    header: str
    claim: str


@dataclass(frozen=True, slots=True)
class JWTRule:
    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str | None = None
    forward_original_token: bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class RequestAuthentication:
    meta: ObjectMeta
    api_version: str = "security.istio.io/v1"
    selector: Mapping[str, str] | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    jwt_rules: tuple[JWTRule, ...] = ()

    kind: ClassVar[str] = "RequestAuthentication"
    group: ClassVar[str] = "security.istio.io"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)
