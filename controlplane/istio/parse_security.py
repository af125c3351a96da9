"""PeerAuthentication, AuthorizationPolicy and RequestAuthentication: reading ``spec`` with
Istio's rules (mTLS modes, port-level mTLS only with a selector, actions and providers,
non-empty sources and operations, supported ``when`` keys and their values, IP blocks, ports,
JWT rules).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from controlplane.istio.checks import check_cidr_or_ip, check_header_name
from controlplane.istio.frozendict import FrozenDict
from controlplane.istio.parse_common import (
    read_meta,
    read_target_refs,
    read_workload_selector,
)
from controlplane.istio.reader import IstioReader, item, sub
from controlplane.istio.security import (
    MTLS_MODES,
    POLICY_ACTIONS,
    AuthorizationPolicy,
    ClaimToHeader,
    Condition,
    JWTHeader,
    JWTRule,
    Operation,
    PeerAuthentication,
    RequestAuthentication,
    Rule,
    Source,
)

__all__ = [
    "WHEN_KEYS",
    "check_when_key",
    "read_authorization_policy",
    "read_peer_authentication",
    "read_request_authentication",
]

WHEN_KEYS: Final = (
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[...]",
    "request.headers[...]",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "experimental.envoy.filters.*[...]",
)
"""The condition keys Istio supports in ``rules[].when[].key``."""

_PLAIN_KEYS: Final = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
_IP_KEYS: Final = frozenset({"source.ip", "remote.ip", "destination.ip"})
_MAP_KEYS: Final = ("request.headers", "request.auth.claims", "experimental.envoy.filters.")


def check_when_key(key: str) -> str | None:
    """Istio's rule for a ``when`` key; ``None`` when supported."""
    if key in _PLAIN_KEYS:
        return None
    for prefix in _MAP_KEYS:
        if key.startswith(prefix):
            open_at = key.find("[")
            if key.endswith("]") and 0 < open_at < len(key) - 2:
                return None
            return "must have the form name[key], e.g. request.headers[x-user]"
    if key == "destination.namespace":
        return "destination.namespace is not supported: the policy's namespace applies"
    if key.startswith("destination.labels"):
        return "destination.labels is not supported: use the policy's selector"
    if key in ("destination.name", "destination.user"):
        return f"{key} is not supported (it was removed after v1alpha1)"
    return f"is not a supported key (supported: {', '.join(WHEN_KEYS)})"


# --- PeerAuthentication ---------------------------------------------------------------------
def read_peer_authentication(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> PeerAuthentication:
    meta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "PeerAuthentication")
    selector = read_workload_selector(r, spec.get("selector"), "spec.selector")
    mode = "UNSET"
    if spec.get("mtls") is not None:
        mtls = r.mapping(spec["mtls"], "spec.mtls", "MutualTLS")
        mode = r.choice(mtls, "mode", "spec.mtls", MTLS_MODES, "UNSET")
    ports_path = "spec.portLevelMtls"
    raw_ports = spec.get("portLevelMtls")
    ports: dict[int, str] = {}
    if raw_ports is not None:
        if not isinstance(raw_ports, Mapping):
            r.fail(ports_path, "must be a mapping of port numbers to mtls settings", raw_ports)
        if not raw_ports:
            r.fail(ports_path, "must have at least one port when set")
        if not selector:
            r.fail(
                ports_path,
                "port level mTLS needs a selector with matchLabels (mesh- and "
                "namespace-wide PeerAuthentications cannot have it)",
            )
        for key, value in raw_ports.items():
            where = item(ports_path, key)
            number = key
            if isinstance(key, str) and key.isdigit():
                number = int(key)
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                r.fail(where, "port must be an integer between 1 and 65535", key)
            port_mtls = r.mapping(value, where, "MutualTLS")
            ports[number] = r.choice(port_mtls, "mode", where, MTLS_MODES, "UNSET")
    return PeerAuthentication(
        meta=meta,
        api_version=api_version,
        selector=selector,
        mtls_mode=mode,
        port_level_mtls=FrozenDict(ports),
    )


# --- AuthorizationPolicy --------------------------------------------------------------------
def read_authorization_policy(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> AuthorizationPolicy:
    meta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "AuthorizationPolicy")
    target_refs = read_target_refs(r, spec, "spec")
    selector = read_workload_selector(r, spec.get("selector"), "spec.selector")
    action = r.choice(spec, "action", "spec", POLICY_ACTIONS, "ALLOW")
    provider: str | None = None
    if spec.get("provider") is not None:
        if action != "CUSTOM":
            r.fail("spec.provider", f"can only be set with action CUSTOM, the action is {action}")
        provider_fields = r.mapping(spec["provider"], "spec.provider", "ExtensionProvider")
        provider = r.opt_str(provider_fields, "name", "spec.provider")
    rules_path = "spec.rules"
    entries = r.sequence(spec.get("rules"), rules_path)
    if action == "CUSTOM":
        if not entries:
            r.fail(
                rules_path,
                "a CUSTOM policy without rules never triggers; add an empty "
                "rule {} to apply it to every request",
            )
        if provider is None:
            r.fail("spec.provider.name", "is required with action CUSTOM")
    if action == "DENY" and not entries:
        r.fail(
            rules_path,
            "a DENY policy without rules never triggers; add an empty rule {} "
            "to deny every request",
        )
    rules = tuple(_rule(r, entry, item(rules_path, i), action) for i, entry in enumerate(entries))
    return AuthorizationPolicy(
        meta=meta,
        api_version=api_version,
        selector=selector,
        target_refs=target_refs,
        action=action,
        provider=provider,
        rules=rules,
    )


_SOURCE_FIELDS: Final = (
    ("principals", "principals"),
    ("not_principals", "notPrincipals"),
    ("request_principals", "requestPrincipals"),
    ("not_request_principals", "notRequestPrincipals"),
    ("namespaces", "namespaces"),
    ("not_namespaces", "notNamespaces"),
    ("ip_blocks", "ipBlocks"),
    ("not_ip_blocks", "notIpBlocks"),
    ("remote_ip_blocks", "remoteIpBlocks"),
    ("not_remote_ip_blocks", "notRemoteIpBlocks"),
    ("service_accounts", "serviceAccounts"),
    ("not_service_accounts", "notServiceAccounts"),
)
_OPERATION_FIELDS: Final = (
    ("hosts", "hosts"),
    ("not_hosts", "notHosts"),
    ("ports", "ports"),
    ("not_ports", "notPorts"),
    ("methods", "methods"),
    ("not_methods", "notMethods"),
    ("paths", "paths"),
    ("not_paths", "notPaths"),
)
_CUSTOM_UNSUPPORTED: Final = frozenset(
    {
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "notRequestPrincipals",
        "namespaces",
        "notNamespaces",
        "serviceAccounts",
        "notServiceAccounts",
    }
)


def _rule(r: IstioReader, value: object, path: str, action: str) -> Rule:
    if value is None:
        r.fail(path, "rule must not be null (use {} for a rule that matches everything)")
    f = r.mapping(value, path, "Rule")
    sources: list[Source] = []
    from_path = sub(path, "from")
    if f.get("from") is not None and not r.sequence(f["from"], from_path):
        r.fail(from_path, "must not be empty when set")
    for index, entry in enumerate(r.sequence(f.get("from"), from_path)):
        where = item(from_path, index)
        from_fields = r.mapping(entry, where, "From")
        if from_fields.get("source") is None:
            r.fail(sub(where, "source"), "is required")
        sources.append(_source(r, from_fields["source"], sub(where, "source"), action))
    operations: list[Operation] = []
    to_path = sub(path, "to")
    if f.get("to") is not None and not r.sequence(f["to"], to_path):
        r.fail(to_path, "must not be empty when set")
    for index, entry in enumerate(r.sequence(f.get("to"), to_path)):
        where = item(to_path, index)
        to_fields = r.mapping(entry, where, "To")
        if to_fields.get("operation") is None:
            r.fail(sub(where, "operation"), "is required")
        operations.append(_operation(r, to_fields["operation"], sub(where, "operation")))
    conditions: list[Condition] = []
    when_path = sub(path, "when")
    for index, entry in enumerate(r.sequence(f.get("when"), when_path)):
        conditions.append(_condition(r, entry, item(when_path, index), action))
    return Rule(from_=tuple(sources), to=tuple(operations), when=tuple(conditions))


def _source(r: IstioReader, value: object, path: str, action: str) -> Source:
    f = r.mapping(value, path, "Source")
    values: dict[str, tuple[str, ...]] = {}
    for attribute, key in _SOURCE_FIELDS:
        values[attribute] = r.string_list(f, key, path, non_empty=True)
        if values[attribute] and action == "CUSTOM" and key in _CUSTOM_UNSUPPORTED:
            r.fail(sub(path, key), "is not supported with action CUSTOM")
        if key.lower().endswith("ipblocks"):
            for index, block in enumerate(values[attribute]):
                r.check(item(sub(path, key), index), block, check_cidr_or_ip)
    if not any(values.values()):
        r.fail(
            path,
            "must set at least one field (an empty source matches nothing useful; "
            "omit from to match every source)",
        )
    identity = any(
        values[a] for a in ("principals", "not_principals", "namespaces", "not_namespaces")
    )
    if identity and (values["service_accounts"] or values["not_service_accounts"]):
        r.fail(sub(path, "serviceAccounts"), "cannot be combined with principals or namespaces")
    return Source(**values)


def _operation(r: IstioReader, value: object, path: str) -> Operation:
    f = r.mapping(value, path, "Operation")
    values: dict[str, tuple[str, ...]] = {}
    for attribute, key in _OPERATION_FIELDS:
        values[attribute] = r.string_list(f, key, path, non_empty=True)
    for key in ("ports", "notPorts"):
        field = sub(path, key)
        for index, port in enumerate(r.strings(f.get(key), field)):
            if not port.isdigit() or int(port) > 65535:
                r.fail(
                    item(field, index),
                    "must be a port number between 0 and 65535 (as a string)",
                    port,
                )
    for key in ("paths", "notPaths"):
        field = sub(path, key)
        for index, text in enumerate(r.strings(f.get(key), field)):
            if ("{*}" in text or "{**}" in text) and _bad_template(text):
                r.fail(item(field, index), "is an invalid or unsupported path template", text)
    if not any(values.values()):
        r.fail(path, "must set at least one field (omit to to match every operation)")
    return Operation(**values)


_BAD_TEMPLATE: Final = re.compile(r"/\{\w+=\*\*?\}|\{\w*\}|/\*\*?|\*\*?/")


def _bad_template(path: str) -> bool:
    return _BAD_TEMPLATE.search(path) is not None


def _condition(r: IstioReader, value: object, path: str, action: str) -> Condition:
    if value is None:
        r.fail(path, "condition must not be null")
    f = r.mapping(value, path, "Condition")
    key = r.required_string(f, "key", path)
    rule = check_when_key(key)
    if rule is not None:
        r.fail(sub(path, "key"), rule, key)
    if action == "CUSTOM" and (
        key in ("source.namespace", "source.principal", "source.serviceAccount")
        or key.startswith("request.auth.")
    ):
        r.fail(sub(path, "key"), "is not supported with action CUSTOM", key)
    values = r.string_list(f, "values", path, non_empty=True)
    not_values = r.string_list(f, "notValues", path, non_empty=True)
    if not values and not not_values:
        r.fail(path, f"at least one of values and notValues must be set for key {key}")
    for field, entries in (("values", values), ("notValues", not_values)):
        for index, entry in enumerate(entries):
            where = item(sub(path, field), index)
            if key in _IP_KEYS:
                r.check(where, entry, check_cidr_or_ip)
            if key == "destination.port" and (not entry.isdigit() or int(entry) > 65535):
                r.fail(where, "must be a port number between 0 and 65535", entry)
    return Condition(key=key, values=values, not_values=not_values)


# --- RequestAuthentication ------------------------------------------------------------------
def read_request_authentication(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> RequestAuthentication:
    meta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "RequestAuthentication")
    target_refs = read_target_refs(r, spec, "spec")
    selector = read_workload_selector(r, spec.get("selector"), "spec.selector")
    rules_path = "spec.jwtRules"
    rules = tuple(
        _jwt_rule(r, entry, item(rules_path, i))
        for i, entry in enumerate(r.sequence(spec.get("jwtRules"), rules_path))
    )
    return RequestAuthentication(
        meta=meta,
        api_version=api_version,
        selector=selector,
        target_refs=target_refs,
        jwt_rules=rules,
    )


def _jwt_rule(r: IstioReader, value: object, path: str) -> JWTRule:
    if value is None:
        r.fail(path, "must be a mapping with an issuer")
    f = r.mapping(value, path, "JWTRule")
    issuer = r.opt_str(f, "issuer", path)
    jwks_uri = r.opt_str(f, "jwksUri", path)
    if issuer is None and jwks_uri is None:
        r.fail(sub(path, "issuer"), "issuer or jwksUri must be set")
    if jwks_uri is not None:
        parts = urlsplit(jwks_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            r.fail(sub(path, "jwksUri"), "must be an http:// or https:// URL", jwks_uri)
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            r.fail(sub(path, "jwksUri"), "must be an http:// or https:// URL", jwks_uri)
    jwks = r.opt_str(f, "jwks", path)
    if jwks is not None:
        try:
            parsed = json.loads(jwks)
        except ValueError:
            r.fail(sub(path, "jwks"), "must be a JSON Web Key Set (JSON)", jwks)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("keys", parsed), (list, dict)):
            r.fail(sub(path, "jwks"), "must be a JSON Web Key Set (a JSON object with keys)", jwks)
    headers_path = sub(path, "fromHeaders")
    headers: list[JWTHeader] = []
    for index, entry in enumerate(r.sequence(f.get("fromHeaders"), headers_path)):
        where = item(headers_path, index)
        if entry is None:
            r.fail(where, "must be a mapping with a name")
        h = r.mapping(entry, where, "JWTHeader")
        name = r.required_string(h, "name", where)
        rule = check_header_name(name)
        if rule is not None:
            r.fail(sub(where, "name"), rule, name)
        headers.append(JWTHeader(name=name, prefix=r.opt_str(h, "prefix", where)))
    claims_path = sub(path, "outputClaimToHeaders")
    claims: list[ClaimToHeader] = []
    for index, entry in enumerate(r.sequence(f.get("outputClaimToHeaders"), claims_path)):
        where = item(claims_path, index)
        if entry is None:
            r.fail(where, "must be a mapping with header and claim")
        c = r.mapping(entry, where, "ClaimToHeader")
        header = r.required_string(c, "header", where)
        rule = check_header_name(header, lowercase=False)
        if rule is not None or header.startswith(":"):
            r.fail(sub(where, "header"), rule or "must be a valid HTTP header name", header)
        claims.append(ClaimToHeader(header=header, claim=r.required_string(c, "claim", where)))
    return JWTRule(
        issuer=issuer,
        audiences=r.string_list(f, "audiences", path, non_empty=True),
        jwks_uri=jwks_uri,
        jwks=jwks,
        from_headers=tuple(headers),
        from_params=r.string_list(f, "fromParams", path, non_empty=True),
        from_cookies=r.string_list(f, "fromCookies", path, non_empty=True),
        output_payload_to_header=r.opt_str(f, "outputPayloadToHeader", path),
        forward_original_token=r.boolean(f, "forwardOriginalToken", path) or False,
        output_claim_to_headers=tuple(claims),
        timeout=r.duration(f, "timeout", path),
    )
