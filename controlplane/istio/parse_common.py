"""Readers shared by the Istio kinds: metadata, workload selectors, policy target references,
``exportTo``, hosts, string matches, destinations, ports, CIDR lists.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.istio.checks import (
    check_cidr_or_ip,
    check_header_name,
    check_regex,
    check_wildcard_domain,
)
from controlplane.istio.frozendict import FrozenDict
from controlplane.istio.networking import Destination, StringMatch
from controlplane.istio.reader import IstioReader, item, sub
from controlplane.istio.security import PolicyTargetReference
from controlplane.k8s.frozenmap import FrozenMap
from controlplane.k8s.limits import MAX_PORT
from controlplane.k8s.names import check_dns1123_label, check_dns1123_subdomain
from controlplane.k8s.objects import ObjectMeta
from controlplane.k8s.parse_meta import read_metadata

__all__ = [
    "read_cidrs",
    "read_destination",
    "read_export_to",
    "read_header_matches",
    "read_hosts",
    "read_meta",
    "read_port",
    "read_string_match",
    "read_target_refs",
    "read_workload_selector",
]


def read_meta(r: IstioReader, doc: Mapping[str, object], default_namespace: str) -> ObjectMeta:
    """``metadata`` of a namespaced custom resource (names are DNS-1123 subdomains)."""
    return read_metadata(
        r,
        doc,
        check_name=check_dns1123_subdomain,
        namespaced=True,
        default_namespace=default_namespace,
    )


def read_port(r: IstioReader, value: object, path: str) -> int:
    return r.integer(value, path, 1, MAX_PORT)


def read_workload_selector(r: IstioReader, value: object, path: str) -> FrozenMap | None:
    """A ``WorkloadSelector`` (``{matchLabels: {...}}``); ``None`` when absent."""
    if value is None:
        return None
    fields = r.mapping(value, path, "WorkloadSelector")
    labels_path = sub(path, "matchLabels")
    labels = r.labels(fields.get("matchLabels"), labels_path)
    for key, label in labels.items():
        if "*" in key or "*" in label:
            r.fail(item(labels_path, key), "wildcards are not supported in selectors", label)
    return labels


def read_target_refs(
    r: IstioReader, spec: Mapping[str, object], path: str
) -> tuple[PolicyTargetReference, ...]:
    """``targetRef`` and ``targetRefs`` (folded together; they exclude each other and the
    ``selector``)."""
    present = [key for key in ("selector", "targetRef", "targetRefs") if spec.get(key)]
    if len(present) > 1:
        r.fail(
            sub(path, present[1]),
            f"only one of selector, targetRef and targetRefs may be set "
            f"(found {' and '.join(present)})",
        )
    refs: list[PolicyTargetReference] = []
    if spec.get("targetRef") is not None:
        refs.append(_target_ref(r, spec["targetRef"], sub(path, "targetRef")))
    refs_path = sub(path, "targetRefs")
    for index, entry in enumerate(r.sequence(spec.get("targetRefs"), refs_path)):
        refs.append(_target_ref(r, entry, item(refs_path, index)))
    return tuple(refs)


def _target_ref(r: IstioReader, value: object, path: str) -> PolicyTargetReference:
    if value is None:
        r.fail(path, "must be a mapping with kind and name")
    fields = r.mapping(value, path, "PolicyTargetReference")
    kind = r.required_string(fields, "kind", path)
    name = r.check(
        sub(path, "name"), r.required_string(fields, "name", path), check_dns1123_subdomain
    )
    namespace = r.opt_str(fields, "namespace", path)
    if namespace is not None:
        r.check(sub(path, "namespace"), namespace, check_dns1123_label)
    group = r.opt_str(fields, "group", path) or ""
    allowed = {
        ("gateway.networking.k8s.io", "Gateway"),
        ("", "Service"),
        ("networking.istio.io", "ServiceEntry"),
        ("gateway.networking.k8s.io", "GatewayClass"),
    }
    if (group, kind) not in allowed:
        r.fail(
            path,
            "must reference a gateway.networking.k8s.io Gateway or GatewayClass, a core "
            'Service (group "") or a networking.istio.io ServiceEntry',
            f"{group}/{kind}" if group else kind,
        )
    return PolicyTargetReference(kind=kind, name=name, group=group, namespace=namespace)


def read_export_to(r: IstioReader, spec: Mapping[str, object], path: str) -> tuple[str, ...]:
    """``exportTo``: ``.`` (this namespace), ``*`` (all), ``~`` (none) or namespace names."""
    field = sub(path, "exportTo")
    values = r.string_list(spec, "exportTo", path)
    seen: set[str] = set()
    for index, value in enumerate(values):
        where = item(field, index)
        if value not in (".", "*", "~"):
            r.check(where, value, check_dns1123_label)
        if value in seen:
            r.fail(where, "must not repeat a namespace", value)
        seen.add(value)
    if len(values) > 1 and ("*" in seen or "~" in seen):
        r.fail(field, "'*' and '~' must be the only entry when present", list(values))
    return values


def read_hosts(
    r: IstioReader,
    parent: Mapping[str, object],
    key: str,
    path: str,
    *,
    allow_ip: bool = False,
) -> tuple[str, ...]:
    field = sub(path, key)
    hosts = r.string_list(parent, key, path)
    for index, host in enumerate(hosts):
        if allow_ip and check_cidr_or_ip(host) is None and "/" not in host:
            continue
        r.check(item(field, index), host, check_wildcard_domain)
    return hosts


def read_string_match(r: IstioReader, value: object, path: str) -> StringMatch:
    """An Istio ``StringMatch``: one of ``exact``, ``prefix``, ``regex`` (``{}`` = any value)."""
    fields = r.mapping(value, path, "StringMatch")
    which = r.one_of(fields, ("exact", "prefix", "regex"), path)
    if which is None:
        return StringMatch(type="any")
    text = r.string(fields[which], sub(path, which))
    if which == "regex":
        r.check(sub(path, "regex"), text, check_regex)
    return StringMatch(type=which, value=text)


def read_header_matches(
    r: IstioReader, value: object, path: str, *, header_names: bool
) -> FrozenDict[str, StringMatch]:
    """A map of header (or query parameter) names to ``StringMatch``es."""
    pairs: dict[str, StringMatch] = {}
    for name, match in r.string_keyed(value, path):
        if header_names:
            rule = check_header_name(name, lowercase=True)
            if rule is not None:
                r.fail(item(path, name), rule, name)
        elif not name:
            r.fail(path, "query parameter names must not be empty")
        pairs[name] = read_string_match(r, match, item(path, name))
    return FrozenDict(pairs)


def read_destination(r: IstioReader, value: object, path: str) -> Destination:
    """A ``Destination``: a host (not ``*``), an optional subset and port number."""
    if value is None:
        r.fail(path, "is required")
    fields = r.mapping(value, path, "Destination")
    host = r.required_string(fields, "host", path)
    if host == "*":
        r.fail(sub(path, "host"), "must name a service, not '*'", host)
    r.check(sub(path, "host"), host, check_wildcard_domain)
    subset = r.opt_str(fields, "subset", path)
    if subset is not None:
        r.check(sub(path, "subset"), subset, _subset_rule)
    port: int | None = None
    if fields.get("port") is not None:
        port_path = sub(path, "port")
        selector = r.mapping(fields["port"], port_path, "PortSelector")
        if selector.get("number") is not None:
            port = read_port(r, selector["number"], sub(port_path, "number"))
    return Destination(host=host, subset=subset, port=port)


def _subset_rule(name: str) -> str | None:
    rule = check_dns1123_label(name)
    return None if rule is None else f"subset name {rule}"


def read_cidrs(
    r: IstioReader, parent: Mapping[str, object], key: str, path: str
) -> tuple[str, ...]:
    field = sub(path, key)
    values = r.string_list(parent, key, path, non_empty=True)
    for index, value in enumerate(values):
        r.check(item(field, index), value, check_cidr_or_ip)
    return values
