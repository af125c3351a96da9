"""Turning one decoded document into a typed object: kind dispatch, apiVersion check, and the
object-level rules of Namespace, ServiceAccount, Service, Deployment and Pod.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from controlplane.k8s.errors import InvalidObject, UnsupportedKind
from controlplane.k8s.limits import MAX_INT32, MAX_PORT
from controlplane.k8s.names import (
    check_dns1035_label,
    check_dns1123_label,
    check_dns1123_subdomain,
    check_ipv4,
    check_qualified_name,
)
from controlplane.k8s.objects import (
    Deployment,
    K8sObject,
    Namespace,
    Pod,
    PodTemplate,
    Service,
    ServiceAccount,
    ServicePort,
)
from controlplane.k8s.parse_meta import read_label_selector, read_metadata
from controlplane.k8s.parse_pod import PROTOCOLS, read_pod_spec, read_port_ref
from controlplane.k8s.reader import Reader, item, sub

__all__ = ["API_VERSIONS", "SERVICE_TYPES", "parse_object"]

API_VERSIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Namespace": "v1",
        "ServiceAccount": "v1",
        "Service": "v1",
        "Pod": "v1",
        "Deployment": "apps/v1",
    }
)
"""The kinds this package handles, and the apiVersion each must have."""

SERVICE_TYPES: Final = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def parse_object(
    doc: object,
    source: str,
    default_namespace: str = "default",
    warnings: list[str] | None = None,
) -> K8sObject:
    """Validate one decoded document and build its object.

    Raises ``InvalidObject`` when the document breaks a rule and ``UnsupportedKind`` for a
    kind other than Namespace, ServiceAccount, Service, Deployment (apps/v1) and Pod.
    Warnings (unknown fields...) are appended to ``warnings`` when given.
    """
    sink: list[str] = [] if warnings is None else warnings
    if not isinstance(doc, Mapping):
        raise InvalidObject(
            "",
            "",
            "",
            "a document must be a Kubernetes object (a mapping with apiVersion, kind, metadata)",
            source,
            doc,
        )
    kind = doc.get("kind")
    r = Reader(
        kind if isinstance(kind, str) else "",
        _display_name(doc, kind, default_namespace),
        source,
        sink,
    )
    kind = r.required_string(doc, "kind", "")
    api_version = r.required_string(doc, "apiVersion", "")
    expected = API_VERSIONS.get(kind)
    if expected is None:
        raise UnsupportedKind(api_version, kind, r.name, source)
    if api_version != expected:
        r.fail("apiVersion", f"must be {expected} for a {kind}", api_version)
    fields = r.mapping(doc, "", kind)
    return _BUILDERS[kind](r, fields, default_namespace)


def _display_name(doc: Mapping[object, object], kind: object, default_namespace: str) -> str:
    """``namespace/name`` as well as can be told before validation (for messages)."""
    meta = doc.get("metadata")
    if not isinstance(meta, Mapping):
        return ""
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return ""
    if kind == "Namespace":
        return name
    if not isinstance(namespace, str) or not namespace:
        # the namespace is only known for the kinds handled here
        return (
            f"{default_namespace}/{name}"
            if isinstance(kind, str) and kind in API_VERSIONS
            else name
        )
    return f"{namespace}/{name}"


def _namespace(r: Reader, doc: Mapping[str, object], default_namespace: str) -> Namespace:
    meta = read_metadata(
        r, doc, check_name=check_dns1123_label, namespaced=False, default_namespace=""
    )
    return Namespace(meta=meta)


def _service_account(
    r: Reader, doc: Mapping[str, object], default_namespace: str
) -> ServiceAccount:
    meta = read_metadata(
        r,
        doc,
        check_name=check_dns1123_subdomain,
        namespaced=True,
        default_namespace=default_namespace,
    )
    return ServiceAccount(meta=meta)


def _service(r: Reader, doc: Mapping[str, object], default_namespace: str) -> Service:
    meta = read_metadata(
        r, doc, check_name=check_dns1035_label, namespaced=True, default_namespace=default_namespace
    )
    spec = r.mapping(doc.get("spec"), "spec", "ServiceSpec")
    service_type = r.choice(spec, "type", "spec", SERVICE_TYPES, "ClusterIP")
    if service_type != "ClusterIP":
        r.warn(f"spec.type {service_type} is served as ClusterIP")

    cluster_ip = r.optional_string(spec, "clusterIP", "spec")
    headless = cluster_ip == "None"
    if headless:
        cluster_ip = None
    elif cluster_ip is not None:
        rule = check_ipv4(cluster_ip)
        if rule is not None:
            r.fail(
                "spec.clusterIP", 'must be "None" (headless), empty, or an IPv4 address', cluster_ip
            )

    ports_path = "spec.ports"
    entries = r.sequence(spec.get("ports"), ports_path)
    if not entries and not headless and service_type != "ExternalName":
        r.fail(
            ports_path,
            "must list at least one port (only headless and ExternalName Services may have none)",
        )
    ports: list[ServicePort] = []
    names: dict[str, str] = {}
    numbers: dict[tuple[int, str], str] = {}
    for index, entry in enumerate(entries):
        port_path = item(ports_path, index)
        port = _service_port(r, entry, port_path)
        if port.name is None and len(entries) > 1:
            r.fail(sub(port_path, "name"), "is required when a Service has more than one port")
        if port.name is not None:
            if port.name in names:
                r.fail(
                    sub(port_path, "name"),
                    f"must be unique ({names[port.name]} has the same name)",
                    port.name,
                )
            names[port.name] = port_path
        if (port.port, port.protocol) in numbers:
            r.fail(
                port_path,
                f"duplicates {numbers[(port.port, port.protocol)]} "
                f"(same port {port.port} and protocol {port.protocol})",
            )
        numbers[(port.port, port.protocol)] = port_path
        ports.append(port)

    selector = r.labels(spec.get("selector"), "spec.selector")
    return Service(
        meta=meta,
        type=service_type,
        cluster_ip=cluster_ip,
        headless=headless,
        ports=tuple(ports),
        selector=selector or None,
    )


def _service_port(r: Reader, value: object, path: str) -> ServicePort:
    if value is None:
        r.fail(path, "must be a mapping with port")
    entry = r.mapping(value, path, "ServicePort")
    number = r.integer(r.required(entry, "port", path), sub(path, "port"), 1, MAX_PORT)
    name = r.optional_string(entry, "name", path)
    if name is not None:
        r.check(sub(path, "name"), name, check_dns1123_label)
    target = entry.get("targetPort")
    target_port: int | str = number
    if target is not None and target != 0 and target != "":
        target_port = read_port_ref(r, target, sub(path, "targetPort"))
    app_protocol = r.optional_string(entry, "appProtocol", path)
    if app_protocol is not None:
        r.check(sub(path, "appProtocol"), app_protocol, check_qualified_name)
    return ServicePort(
        name=name,
        port=number,
        target_port=target_port,
        protocol=r.choice(entry, "protocol", path, PROTOCOLS, "TCP"),
        app_protocol=app_protocol,
    )


def _deployment(r: Reader, doc: Mapping[str, object], default_namespace: str) -> Deployment:
    meta = read_metadata(
        r,
        doc,
        check_name=check_dns1123_subdomain,
        namespaced=True,
        default_namespace=default_namespace,
    )
    if doc.get("spec") is None:
        r.fail("spec", "is required")
    spec = r.mapping(doc.get("spec"), "spec", "DeploymentSpec")
    replicas = r.optional_integer(spec, "replicas", "spec", 0, MAX_INT32, 1)
    selector = read_label_selector(r, r.required(spec, "selector", "spec"), "spec.selector")
    if selector.empty:
        r.fail("spec.selector", "must not be empty (set matchLabels or matchExpressions)")
    template = r.mapping(r.required(spec, "template", "spec"), "spec.template", "PodTemplateSpec")
    template_meta = r.mapping(template.get("metadata"), "spec.template.metadata", "ObjectMeta")
    labels = r.labels(template_meta.get("labels"), "spec.template.metadata.labels")
    annotations = r.annotations(
        template_meta.get("annotations"), "spec.template.metadata.annotations"
    )
    if not selector.matches(labels):
        r.fail(
            "spec.template.metadata.labels",
            "selector does not match template labels: the pods this Deployment creates "
            "must be selected by spec.selector",
            dict(labels),
        )
    pod_spec = read_pod_spec(r, template.get("spec"), "spec.template.spec", in_deployment=True)
    return Deployment(
        meta=meta,
        replicas=replicas,
        selector=selector,
        template=PodTemplate(labels=labels, annotations=annotations, spec=pod_spec),
    )


def _pod(r: Reader, doc: Mapping[str, object], default_namespace: str) -> Pod:
    meta = read_metadata(
        r,
        doc,
        check_name=check_dns1123_subdomain,
        namespaced=True,
        default_namespace=default_namespace,
    )
    return Pod(meta=meta, spec=read_pod_spec(r, doc.get("spec"), "spec", in_deployment=False))


_Builder = Callable[[Reader, Mapping[str, object], str], K8sObject]

_BUILDERS: Final[Mapping[str, _Builder]] = MappingProxyType(
    {
        "Namespace": _namespace,
        "ServiceAccount": _service_account,
        "Service": _service,
        "Deployment": _deployment,
        "Pod": _pod,
    }
)
