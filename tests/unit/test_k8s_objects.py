"""The Kubernetes object model: the Istio samples load exactly, objects are immutable and
hashable, and label selectors follow Kubernetes' semantics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from controlplane.k8s import (
    Container,
    ContainerPort,
    Deployment,
    EnvVar,
    FrozenMap,
    HTTPGetAction,
    K8sObject,
    LabelSelector,
    LoadResult,
    Namespace,
    ObjectMeta,
    Pod,
    PodSpec,
    PodTemplate,
    Probe,
    Requirement,
    Service,
    ServiceAccount,
    ServicePort,
    load_documents,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "istio"


def load_fixture(name: str) -> LoadResult:
    return load_documents((FIXTURES / name).read_text(encoding="utf-8"), name)


def by_kind(objects: list[K8sObject], kind: str) -> list[K8sObject]:
    return [obj for obj in objects if obj.kind == kind]


# --- the Istio samples ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bookinfo.yaml", "curl.yaml"])
def test_fixtures_are_the_istio_samples_with_their_license_header(name: str) -> None:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    assert text.startswith("# Copyright Istio Authors\n")
    assert "Licensed under the Apache License, Version 2.0" in text


def test_bookinfo_loads_cleanly() -> None:
    result = load_fixture("bookinfo.yaml")
    assert result.errors == []
    assert result.warnings == []
    assert result.ok
    services = by_kind(result.objects, "Service")
    accounts = by_kind(result.objects, "ServiceAccount")
    deployments = by_kind(result.objects, "Deployment")
    assert len(result.objects) == 14
    assert [s.meta.name for s in services] == ["details", "ratings", "reviews", "productpage"]
    assert [a.meta.name for a in accounts] == [
        "bookinfo-details",
        "bookinfo-ratings",
        "bookinfo-reviews",
        "bookinfo-productpage",
    ]
    assert [d.meta.name for d in deployments] == [
        "details-v1",
        "ratings-v1",
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
        "productpage-v1",
    ]
    assert all(obj.meta.namespace == "default" for obj in result.objects)


def test_bookinfo_objects_carry_what_the_manifest_says() -> None:
    objects = {obj.key: obj for obj in load_fixture("bookinfo.yaml").objects}
    reviews = objects[("Service", "default", "reviews")]
    assert isinstance(reviews, Service)
    assert reviews.type == "ClusterIP"
    assert not reviews.headless and reviews.cluster_ip is None
    assert reviews.ports == (
        ServicePort(name="http", port=9080, target_port=9080, protocol="TCP", app_protocol=None),
    )
    assert reviews.selector == {"app": "reviews"}
    assert reviews.meta.labels == {"app": "reviews", "service": "reviews"}

    v2 = objects[("Deployment", "default", "reviews-v2")]
    assert isinstance(v2, Deployment)
    assert v2.replicas == 1
    assert v2.selector == LabelSelector(match_labels={"app": "reviews", "version": "v2"})
    assert v2.template.labels == {"app": "reviews", "version": "v2"}
    spec = v2.template.spec
    assert spec.service_account_name == "bookinfo-reviews"
    assert spec.restart_policy == "Always"
    assert spec.termination_grace_period_seconds == 30
    assert spec.node_name is None
    (container,) = spec.containers
    assert container == Container(
        name="reviews",
        image="docker.io/istio/examples-bookinfo-reviews-v2:1.20.1",
        env=(EnvVar(name="LOG_DIR", value="/tmp/logs"),),
        ports=(ContainerPort(name=None, container_port=9080, protocol="TCP"),),
    )
    assert v2.selector.matches(v2.template.labels)

    productpage = objects[("Deployment", "default", "productpage-v1")]
    assert isinstance(productpage, Deployment)
    assert productpage.template.annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9080",
        "prometheus.io/path": "/metrics",
    }


def test_curl_loads_cleanly() -> None:
    result = load_fixture("curl.yaml")
    assert result.errors == [] and result.warnings == []
    assert [obj.key for obj in result.objects] == [
        ("ServiceAccount", "default", "curl"),
        ("Service", "default", "curl"),
        ("Deployment", "default", "curl"),
    ]
    deployment = result.objects[2]
    assert isinstance(deployment, Deployment)
    assert deployment.meta.labels == {}
    spec = deployment.template.spec
    assert spec.termination_grace_period_seconds == 0
    assert spec.service_account_name == "curl"
    assert spec.containers[0].command == ("/bin/sleep", "infinity")
    assert spec.containers[0].image == "curlimages/curl"
    service = result.objects[1]
    assert isinstance(service, Service)
    assert service.ports[0].port == 80 and service.ports[0].target_port == 80


def test_samples_load_into_another_namespace() -> None:
    text = (FIXTURES / "bookinfo.yaml").read_text(encoding="utf-8")
    result = load_documents(text, "bookinfo.yaml", default_namespace="shop")
    assert result.ok
    assert {obj.meta.namespace for obj in result.objects} == {"shop"}


# --- immutability and identity ----------------------------------------------------------


def test_objects_are_frozen_hashable_and_compare_by_value() -> None:
    first = load_fixture("bookinfo.yaml").objects
    second = load_fixture("bookinfo.yaml").objects
    assert first == second
    assert {hash(obj) for obj in first} == {hash(obj) for obj in second}
    assert len(set(first)) == len(first)
    deployment = first[2]
    assert isinstance(deployment, Deployment)
    with pytest.raises(dataclasses.FrozenInstanceError):
        deployment.replicas = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        deployment.meta.labels["app"] = "other"  # type: ignore[index]
    assert not hasattr(deployment, "__dict__")  # slots


def test_mappings_and_sequences_are_frozen_on_construction() -> None:
    labels = {"app": "web"}
    meta = ObjectMeta(name="web", labels=labels)
    labels["app"] = "changed"
    assert meta.labels == {"app": "web"}
    assert isinstance(meta.labels, FrozenMap) and isinstance(meta.annotations, FrozenMap)
    container = Container(name="c", image="i", command=["sleep", "1"])  # type: ignore[arg-type]
    assert container.command == ("sleep", "1")
    hash(container)
    service = Service(meta=meta, selector={"app": "web"})
    assert isinstance(service.selector, FrozenMap)
    hash(service)


def test_frozen_map_behaves_like_a_read_only_dict() -> None:
    frozen = FrozenMap({"a": "1", "b": "2"})
    assert frozen == {"a": "1", "b": "2"} and frozen == FrozenMap({"b": "2", "a": "1"})
    assert frozen != {"a": "1"}
    assert hash(frozen) == hash(FrozenMap({"b": "2", "a": "1"}))
    assert list(frozen) == ["a", "b"] and len(frozen) == 2 and "a" in frozen
    assert isinstance(frozen, Mapping)
    assert not hasattr(frozen, "__setitem__")
    assert repr(frozen) == "FrozenMap({'a': '1', 'b': '2'})"


def test_kind_and_key() -> None:
    meta = ObjectMeta(name="web", namespace="shop")
    spec = PodSpec(containers=(Container(name="c", image="i"),))
    selector = LabelSelector(match_labels={"app": "web"})
    cases: list[tuple[K8sObject, str, tuple[str, str, str]]] = [
        (
            Namespace(meta=ObjectMeta(name="shop", namespace="")),
            "Namespace",
            ("Namespace", "", "shop"),
        ),
        (ServiceAccount(meta=meta), "ServiceAccount", ("ServiceAccount", "shop", "web")),
        (Service(meta=meta), "Service", ("Service", "shop", "web")),
        (
            Deployment(
                meta=meta, selector=selector, template=PodTemplate({"app": "web"}, {}, spec)
            ),
            "Deployment",
            ("Deployment", "shop", "web"),
        ),
        (Pod(meta=meta, spec=spec), "Pod", ("Pod", "shop", "web")),
    ]
    for obj, kind, key in cases:
        assert obj.kind == kind
        assert obj.key == key
    # a Namespace is cluster-scoped whatever its meta says
    assert Namespace(meta=ObjectMeta(name="shop")).key == ("Namespace", "", "shop")
    assert meta.namespaced_name == "shop/web"
    assert ObjectMeta(name="shop", namespace="").namespaced_name == "shop"


def test_defaults_are_kubernetes_defaults() -> None:
    probe = Probe(action=HTTPGetAction(port=8080))
    assert (
        probe.initial_delay_seconds,
        probe.period_seconds,
        probe.timeout_seconds,
        probe.failure_threshold,
        probe.success_threshold,
    ) == (0, 10, 1, 3, 1)
    assert probe.action == HTTPGetAction(port=8080, path="/", scheme="HTTP")
    spec = PodSpec(containers=(Container(name="c", image="i"),))
    assert spec.service_account_name == "default"
    assert spec.restart_policy == "Always"
    assert spec.termination_grace_period_seconds == 30
    assert ObjectMeta(name="x").namespace == "default"
    service = Service(meta=ObjectMeta(name="x"))
    assert (service.type, service.cluster_ip, service.headless, service.selector) == (
        "ClusterIP",
        None,
        False,
        None,
    )


# --- label selectors --------------------------------------------------------------------

LABELS = {"app": "web", "tier": "front", "empty": ""}


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (Requirement("app", "In", ("web", "api")), True),
        (Requirement("app", "In", ("api",)), False),
        (Requirement("missing", "In", ("web",)), False),
        (Requirement("empty", "In", ("",)), True),
        (Requirement("app", "NotIn", ("api",)), True),
        (Requirement("app", "NotIn", ("web",)), False),
        (Requirement("missing", "NotIn", ("web",)), True),  # a missing key is "not in"
        (Requirement("app", "Exists"), True),
        (Requirement("empty", "Exists"), True),  # an empty value still exists
        (Requirement("missing", "Exists"), False),
        (Requirement("missing", "DoesNotExist"), True),
        (Requirement("app", "DoesNotExist"), False),
        (Requirement("empty", "DoesNotExist"), False),
    ],
)
def test_requirement_semantics(requirement: Requirement, expected: bool) -> None:
    assert requirement.matches(LABELS) is expected
    assert LabelSelector(match_expressions=(requirement,)).matches(LABELS) is expected


def test_selector_ands_match_labels_and_expressions() -> None:
    selector = LabelSelector(
        match_labels={"app": "web"},
        match_expressions=(Requirement("tier", "In", ("front", "back")),),
    )
    assert selector.matches(LABELS)
    assert not selector.matches({"app": "web"})
    assert not selector.matches({"app": "api", "tier": "front"})
    assert not LabelSelector(match_labels={"app": "web", "x": "y"}).matches(LABELS)
    # matchLabels compares values exactly: an empty value needs the key present
    assert LabelSelector(match_labels={"empty": ""}).matches(LABELS)
    assert not LabelSelector(match_labels={"missing": ""}).matches(LABELS)


def test_empty_selector_matches_everything() -> None:
    selector = LabelSelector()
    assert selector.empty
    assert selector.matches({}) and selector.matches(LABELS)
    assert not LabelSelector(match_labels={"a": "b"}).empty


def test_unknown_operator_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="Gt"):
        Requirement("a", "Gt", ("1",)).matches({"a": "2"})
