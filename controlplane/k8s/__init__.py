"""Kubernetes objects for the mesh: typed, immutable models of the kinds the mesh uses
(Namespace, ServiceAccount, Service, Deployment, Pod), and the loading and validation of
YAML manifests into them with Kubernetes' own rules.

``load_documents(..., kinds="all")`` also loads the Istio and Gateway API kinds modelled in
``controlplane.istio`` (which builds on this package); ``LoadResult.items`` pairs every
object with its document.

Sans-I/O: callers read files and pass text in; nothing here touches sockets or files.
"""

from __future__ import annotations

from controlplane.k8s.errors import (
    InvalidObject,
    K8sError,
    LimitExceeded,
    UnsupportedKind,
    YamlError,
)
from controlplane.k8s.frozenmap import FrozenMap
from controlplane.k8s.loader import (
    ALL_KINDS,
    KUBERNETES_KINDS,
    Loaded,
    LoadResult,
    load_documents,
    parse_object,
)
from controlplane.k8s.objects import (
    Container,
    ContainerPort,
    Deployment,
    EnvVar,
    ExecAction,
    GRPCAction,
    HTTPGetAction,
    K8sObject,
    LabelSelector,
    Namespace,
    ObjectKey,
    ObjectMeta,
    Pod,
    PodSpec,
    PodTemplate,
    Probe,
    Requirement,
    Service,
    ServiceAccount,
    ServicePort,
    TCPSocketAction,
)

__all__ = [
    "ALL_KINDS",
    "KUBERNETES_KINDS",
    "Container",
    "ContainerPort",
    "Deployment",
    "EnvVar",
    "ExecAction",
    "FrozenMap",
    "GRPCAction",
    "HTTPGetAction",
    "InvalidObject",
    "K8sError",
    "K8sObject",
    "LabelSelector",
    "LimitExceeded",
    "LoadResult",
    "Loaded",
    "Namespace",
    "ObjectKey",
    "ObjectMeta",
    "Pod",
    "PodSpec",
    "PodTemplate",
    "Probe",
    "Requirement",
    "Service",
    "ServiceAccount",
    "ServicePort",
    "TCPSocketAction",
    "UnsupportedKind",
    "YamlError",
    "load_documents",
    "parse_object",
]
