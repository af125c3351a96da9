"""The shared loader with the Istio and Gateway API kinds: dispatch by group and kind, items
carrying their documents, unknown fields as warnings, unsupported kinds skipped, and nothing
ever raising on Istio-shaped input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.istio import (
    KINDS,
    SERVED_VERSIONS,
    AuthorizationPolicy,
    GatewayClass,
    KubernetesGateway,
    PeerAuthentication,
    VirtualService,
    parse_any,
)
from controlplane.istio.fields import ISTIO_FIELDS
from controlplane.k8s import (
    ALL_KINDS,
    K8sError,
    LoadResult,
    Namespace,
    Service,
    UnsupportedKind,
    load_documents,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "istio"

MIXED = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio-waypoint, namespace: ignored}
spec: {controllerName: istio.io/mesh-controller}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: cert}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default}
"""


def load_all(text: str, **kwargs: str) -> LoadResult:
    return load_documents(text, "mixed.yaml", kinds=ALL_KINDS, **kwargs)


def test_mixed_stream_dispatches_by_group_and_kind() -> None:
    result = load_all(MIXED)
    assert [obj.key for obj in result.all_objects] == [
        ("Namespace", "", "shop"),
        ("Gateway", "shop", "edge"),
        ("gateway.networking.k8s.io/Gateway", "shop", "edge"),
        ("gateway.networking.k8s.io/GatewayClass", "", "istio-waypoint"),
    ]
    assert [type(obj) for obj in result.objects] == [Namespace]
    assert len(result.mesh_objects) == 3
    waypoint = result.all_objects[2]
    assert isinstance(waypoint, KubernetesGateway) and waypoint.is_waypoint
    assert waypoint.kind == "Gateway" and waypoint.api_version == "gateway.networking.k8s.io/v1"
    gateway_class = result.all_objects[3]
    assert isinstance(gateway_class, GatewayClass) and gateway_class.meta.namespace == ""
    assert [(e.kind, e.api_version) for e in result.skipped] == [
        ("ConfigMap", "v1"),
        ("Sidecar", "networking.istio.io/v1"),
        ("Certificate", "cert-manager.io/v1"),
        ("Telemetry", "telemetry.istio.io/v1"),
    ]
    assert result.failures == []
    assert any("metadata.namespace is ignored" in w for w in result.warnings)


def test_default_kinds_keep_istio_kinds_unsupported() -> None:
    result = load_documents(MIXED, "mixed.yaml")
    assert [type(obj) for obj in result.all_objects] == [Namespace]
    assert "Gateway" in [e.kind for e in result.skipped]


def test_unknown_kinds_value_is_refused() -> None:
    with pytest.raises(ValueError, match="kinds must be"):
        load_documents("", "x.yaml", kinds="istio")


def test_items_keep_documents_that_load_again() -> None:
    text = (FIXTURES / "networking" / "virtual-service-ratings-test-delay.yaml").read_text()
    result = load_all(text)
    (entry,) = result.items
    assert entry.document == yaml.safe_load(text)
    again = load_documents(yaml.safe_dump(entry.document), "stored.yaml", kinds=ALL_KINDS)
    assert again.all_objects == result.all_objects
    assert hash(again.all_objects[0]) == hash(result.all_objects[0])


def test_list_items_and_default_namespace() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: security.istio.io/v1beta1
  kind: PeerAuthentication
  metadata: {name: default}
  spec: {mtls: {mode: STRICT}}
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec: {ports: [{port: 80}]}
"""
    result = load_all(text, default_namespace="shop")
    pa, service = result.all_objects
    assert isinstance(pa, PeerAuthentication) and isinstance(service, Service)
    assert pa.key == ("PeerAuthentication", "shop", "default") and pa.mtls_mode == "STRICT"
    assert pa.api_version == "security.istio.io/v1beta1"
    assert result.items[0].document["kind"] == "PeerAuthentication"


def test_unknown_fields_are_warnings_and_known_unmodelled_fields_are_silent() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /}, statPrefix: x, uriPrefix: /}]
    route: [{destination: {host: reviews}, wieght: 100}]
status: {}
"""
    result = load_all(text)
    assert result.failures == []
    assert result.warnings == [
        "VirtualService default/reviews (mixed.yaml, document 1): "
        "unknown field spec.http[0].match[0].uriPrefix",
        "VirtualService default/reviews (mixed.yaml, document 1): "
        "unknown field spec.http[0].route[0].wieght",
    ]
    assert isinstance(result.all_objects[0], VirtualService)


def test_authorization_policy_model() -> None:
    text = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-post, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: DENY
  rules:
  - to: [{operation: {methods: [POST], notPaths: [/health]}}]
    when: [{key: source.namespace, notValues: [shop]}]
"""
    (policy,) = load_all(text).all_objects
    assert isinstance(policy, AuthorizationPolicy)
    assert policy.action == "DENY" and policy.selector is None
    assert policy.target_refs[0].name == "waypoint"
    (rule,) = policy.rules
    assert rule.from_ == () and rule.to[0].methods == ("POST",)
    assert rule.when[0].not_values == ("shop",)


def test_parse_any_falls_back_to_kubernetes() -> None:
    service = parse_any(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
         "spec": {"ports": [{"port": 80}]}},
        "x.yaml",
    )  # fmt: skip
    assert isinstance(service, Service)
    with pytest.raises(UnsupportedKind):
        parse_any({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}, "x")


# --- never raises -------------------------------------------------------------------------
def _samples() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("*/*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))
    return docs


SAMPLES = _samples()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(sorted({name for names in ISTIO_FIELDS.values() for name in names}))
API_VERSIONS = st.sampled_from(
    [f"{group}/{version}" for group, versions in SERVED_VERSIONS.items() for version in versions]
    + ["networking.istio.io/v9", "v1", "gateway.networking.k8s.io/v1alpha2"]
)


def _paths(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, element in value.items():
            found.extend(_paths(element, (*prefix, key)))
    elif isinstance(value, list):
        for index, element in enumerate(value):
            found.extend(_paths(element, (*prefix, index)))
    return found


def _set(doc: Any, path: tuple[str | int, ...], value: object) -> None:
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(min_value=0), json_values), max_size=4),
    st.lists(st.tuples(st.integers(min_value=0), FIELD_NAMES, json_values), max_size=3),
    st.none() | st.sampled_from(sorted({kind for _, kind in KINDS})),
    st.none() | API_VERSIONS,
)
def test_istio_shaped_documents_never_raise(
    sample: dict[str, Any],
    edits: list[tuple[int, object]],
    additions: list[tuple[int, str, object]],
    kind: str | None,
    api_version: str | None,
) -> None:
    doc = copy.deepcopy(sample)
    for choice, value in edits:
        paths = _paths(doc)
        if paths:
            _set(doc, paths[choice % len(paths)], value)
    for choice, name, value in additions:
        mappings = [p for p in _paths(doc) if isinstance(_get(doc, p), dict)] + [()]
        target = _get(doc, mappings[choice % len(mappings)])
        if isinstance(target, dict):
            target[name] = value
    if isinstance(doc, dict):
        if kind is not None:
            doc["kind"] = kind
        if api_version is not None:
            doc["apiVersion"] = api_version
    text = yaml.safe_dump(doc)
    result = load_documents(text, "fuzz.yaml", kinds=ALL_KINDS)
    for error in result.errors:
        assert isinstance(error, K8sError) and str(error)
    for entry in result.items:
        hash(entry.obj)  # every model is hashable
        assert isinstance(entry.document, dict)


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc
