"""The typed, immutable Kubernetes objects the lab and the control plane work with.

Only what the mesh needs is modelled: Namespace, ServiceAccount, Service, Deployment and Pod,
with the parts of their specs that matter for running workloads and routing to them.
Values here are already validated and defaulted (see ``parse``); constructing them directly
performs no validation beyond freezing mappings and sequences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from controlplane.k8s.frozenmap import FrozenMap, freeze

__all__ = [
    "SELECTOR_OPERATORS",
    "Container",
    "ContainerPort",
    "Deployment",
    "EnvVar",
    "ExecAction",
    "GRPCAction",
    "HTTPGetAction",
    "K8sObject",
    "LabelSelector",
    "Namespace",
    "ObjectKey",
    "ObjectMeta",
    "Pod",
    "PodSpec",
    "PodTemplate",
    "Probe",
    "ProbeAction",
    "Requirement",
    "Service",
    "ServiceAccount",
    "ServicePort",
    "TCPSocketAction",
]

ObjectKey: TypeAlias = tuple[str, str, str]
"""``(kind, namespace, name)``; the namespace is ``""`` for cluster-scoped kinds."""


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _labels(value: Mapping[str, str] | None) -> FrozenMap:
    return freeze(value)


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """``metadata``: name, namespace (``""`` for cluster-scoped objects), labels, annotations."""

    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=FrozenMap)
    annotations: Mapping[str, str] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        _set(self, "labels", _labels(self.labels))
        _set(self, "annotations", _labels(self.annotations))

    @property
    def namespaced_name(self) -> str:
        """``namespace/name``, or just ``name`` when there is no namespace."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Namespace:
    meta: ObjectMeta

    kind: ClassVar[str] = "Namespace"
    api_version: ClassVar[str] = "v1"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, "", self.meta.name)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    meta: ObjectMeta

    kind: ClassVar[str] = "ServiceAccount"
    api_version: ClassVar[str] = "v1"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One ``spec.ports`` entry; ``target_port`` is a number or a container port name."""

    name: str | None
    port: int
    target_port: int | str
    protocol: str = "TCP"
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    """A Service. ``clusterIP: None`` is ``headless=True, cluster_ip=None``.

    ``selector`` is ``None`` for a Service without a selector (its endpoints are not derived
    from pods). ``type`` keeps what the manifest said; the lab serves every type as ClusterIP.
    """

    meta: ObjectMeta
    type: str = "ClusterIP"
    cluster_ip: str | None = None
    headless: bool = False
    ports: tuple[ServicePort, ...] = ()
    selector: Mapping[str, str] | None = None

    kind: ClassVar[str] = "Service"
    api_version: ClassVar[str] = "v1"

    def __post_init__(self) -> None:
        _set(self, "ports", tuple(self.ports))
        if self.selector is not None:
            _set(self, "selector", freeze(self.selector))

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)


@dataclass(frozen=True, slots=True)
class EnvVar:
    """An environment variable.

    ``value`` is ``None`` exactly when ``field_ref`` names a pod field the runtime fills in
    (``metadata.name``, ``metadata.namespace``, ``spec.nodeName``, ``status.podIP``,
    ``spec.serviceAccountName``). Other ``valueFrom`` sources load as ``value=""``.
    """

    name: str
    value: str | None
    field_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str | None
    container_port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class HTTPGetAction:
    """``httpGet``: ``port`` is a number or the name of one of the container's ports."""

    port: int | str
    path: str = "/"
    host: str | None = None
    scheme: str = "HTTP"
    http_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TCPSocketAction:
    port: int | str
    host: str | None = None


@dataclass(frozen=True, slots=True)
class ExecAction:
    command: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GRPCAction:
    port: int
    service: str | None = None


ProbeAction: TypeAlias = HTTPGetAction | TCPSocketAction | ExecAction | GRPCAction


@dataclass(frozen=True, slots=True)
class Probe:
    """A probe with Kubernetes' defaults (period 10 s, timeout 1 s, failure 3, success 1)."""

    action: ProbeAction
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    failure_threshold: int = 3
    success_threshold: int = 1


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    readiness_probe: Probe | None = None
    working_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("command", "args", "env", "ports"):
            _set(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class PodSpec:
    containers: tuple[Container, ...]
    service_account_name: str = "default"
    node_name: str | None = None
    restart_policy: str = "Always"
    termination_grace_period_seconds: int = 30

    def __post_init__(self) -> None:
        _set(self, "containers", tuple(self.containers))


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """A Deployment's ``spec.template``: the pod's labels and annotations, and its spec."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: PodSpec

    def __post_init__(self) -> None:
        _set(self, "labels", _labels(self.labels))
        _set(self, "annotations", _labels(self.annotations))


SELECTOR_OPERATORS: tuple[str, ...] = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "values", tuple(self.values))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes' semantics: ``NotIn`` and ``DoesNotExist`` match a missing key."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise ValueError(f"unknown label selector operator {self.operator!r}")


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """``matchLabels`` AND every ``matchExpressions`` entry; an empty selector matches all."""

    match_labels: Mapping[str, str] = field(default_factory=FrozenMap)
    match_expressions: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "match_labels", _labels(self.match_labels))
        _set(self, "match_expressions", tuple(self.match_expressions))

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)


@dataclass(frozen=True, slots=True)
class Deployment:
    meta: ObjectMeta
    replicas: int = field(default=1, kw_only=True)
    selector: LabelSelector
    template: PodTemplate

    kind: ClassVar[str] = "Deployment"
    api_version: ClassVar[str] = "apps/v1"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)


@dataclass(frozen=True, slots=True)
class Pod:
    meta: ObjectMeta
    spec: PodSpec

    kind: ClassVar[str] = "Pod"
    api_version: ClassVar[str] = "v1"

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.meta.namespace, self.meta.name)


K8sObject: TypeAlias = Namespace | ServiceAccount | Service | Deployment | Pod
