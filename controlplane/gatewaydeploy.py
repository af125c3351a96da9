"""Istio's waypoint deployment controller, as a pure function (the store runs it).

For a Gateway API ``Gateway`` of class ``istio-waypoint``, istiod creates a ServiceAccount, a
Deployment and a Service named after the Gateway, in its namespace (Istio's
``pilot/pkg/config/kube/gateway/deploymentcontroller.go`` with the ``waypoint.yaml`` template;
the waypoint class has no ``-<class>`` name suffix):

- every object carries ``gateway.networking.k8s.io/gateway-name: <name>``; the Deployment, its
  pods and the Service also ``gateway.istio.io/managed: istio.io-mesh-controller``;
- the pods carry ``istio.io/dataplane-mode: none`` (ztunnel must not capture the waypoint's own
  traffic), ``sidecar.istio.io/inject: "false"`` and the canonical name/revision labels, and run
  as the ServiceAccount ``<name>``;
- the Service selects ``gateway.networking.k8s.io/gateway-name: <name>`` and exposes
  ``status-port`` 15021 (appProtocol ``tcp``) and one port per listener (the name of the
  listener, appProtocol its protocol in lower case: ``mesh`` 15008 ``hbone`` for the listener
  ``istioctl waypoint generate`` writes). ``mesh`` 15008 is added when no listener has port
  15008: ztunnel reaches a waypoint on it (Istio's waypoints have it from that listener).

The container runs :data:`WAYPOINT_IMAGE` (the lab maps it to ``python -m waypoint``) with its
pod's facts from ``fieldRef``s (``POD_NAME``, ``POD_NAMESPACE``, ``NODE_NAME``,
``INSTANCE_IP``, ``SERVICE_ACCOUNT``) and ``GATEWAY_NAME``, and a readiness probe
``GET :15021/healthz/ready`` (Istio's; it probes every second because the lab runs no
``startupProbe``, which is what makes Istio's waypoint ready quickly).

Not modelled: ``spec.infrastructure`` (labels and annotations copied to the objects),
``spec.addresses``, the ``gateway.istio.io/service-account`` annotation, and owner references
(the store records which Gateway owns a derived object in its source, :func:`controller_source`).
"""

from __future__ import annotations

import re
from typing import Any, Final

from controlplane.istio.gatewayapi import WAYPOINT_CLASS, KubernetesGateway
from controlplane.k8s.errors import K8sError
from controlplane.k8s.names import check_dns1123_label, check_qualified_name
from controlplane.k8s.objects import K8sObject
from controlplane.k8s.parse import parse_object

__all__ = [
    "CONTAINER_NAME",
    "GATEWAY_NAME_LABEL",
    "HBONE_PORT",
    "MANAGED_LABEL",
    "MANAGED_VALUE",
    "STATUS_PORT",
    "WAYPOINT_IMAGE",
    "WaypointDeployError",
    "controller_source",
    "is_waypoint",
    "owner_of",
    "waypoint_documents",
    "waypoint_objects",
]

WAYPOINT_IMAGE: Final = "ambient-mesh/waypoint:dev"
"""The waypoint's container image; the lab runs ``python -m waypoint`` for it."""

GATEWAY_NAME_LABEL: Final = "gateway.networking.k8s.io/gateway-name"
MANAGED_LABEL: Final = "gateway.istio.io/managed"
MANAGED_VALUE: Final = "istio.io-mesh-controller"
DATAPLANE_MODE_LABEL: Final = "istio.io/dataplane-mode"
CONTAINER_NAME: Final = "istio-proxy"
STATUS_PORT: Final = 15021
HBONE_PORT: Final = 15008
READY_PATH: Final = "/healthz/ready"
TERMINATION_GRACE_S: Final = 2  # Istio's waypoint template

_CONTROLLER: Final = "waypoint controller"
_SOURCE = re.compile(r"waypoint controller \(Gateway ([^/()]+)/([^/()]+)\)")

# env var -> the pod field it comes from (Kubernetes' downward API)
_FIELD_ENV: Final = (
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("NODE_NAME", "spec.nodeName"),
    ("INSTANCE_IP", "status.podIP"),
    ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
)


class WaypointDeployError(ValueError):
    """The Gateway's objects cannot be made (e.g. its name is not a valid Service name)."""


def is_waypoint(obj: object) -> bool:
    """A Gateway API Gateway of class ``istio-waypoint``."""
    return isinstance(obj, KubernetesGateway) and obj.gateway_class_name == WAYPOINT_CLASS


def controller_source(namespace: str, name: str) -> str:
    """The source recorded on the objects made for Gateway ``namespace/name``."""
    return f"{_CONTROLLER} (Gateway {namespace}/{name})"


def owner_of(source: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of the Gateway whose objects carry ``source``, else ``None``."""
    m = _SOURCE.fullmatch(source)
    return (m.group(1), m.group(2)) if m else None


def waypoint_documents(gateway: KubernetesGateway) -> list[dict[str, Any]]:
    """The ServiceAccount, Deployment and Service documents for ``gateway`` (plain data)."""
    name, ns = gateway.meta.name, gateway.meta.namespace
    selector = {GATEWAY_NAME_LABEL: name}
    managed = {GATEWAY_NAME_LABEL: name, MANAGED_LABEL: MANAGED_VALUE}
    pod_labels = {
        "sidecar.istio.io/inject": "false",
        DATAPLANE_MODE_LABEL: "none",
        "service.istio.io/canonical-name": name,
        "service.istio.io/canonical-revision": "latest",
        **managed,
    }
    env: list[dict[str, Any]] = [
        {"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}} for var, path in _FIELD_ENV
    ]
    env.append({"name": "GATEWAY_NAME", "value": name})
    container = {
        "name": CONTAINER_NAME,
        "image": WAYPOINT_IMAGE,
        "ports": [
            {"name": "mesh", "containerPort": HBONE_PORT, "protocol": "TCP"},
            {"name": "status-port", "containerPort": STATUS_PORT, "protocol": "TCP"},
        ],
        "env": env,
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": STATUS_PORT, "scheme": "HTTP"},
            "initialDelaySeconds": 0,
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 4,
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns, "labels": dict(selector)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": dict(managed)},
            "spec": {
                "selector": {"matchLabels": dict(selector)},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                        "serviceAccountName": name,
                        "containers": [container],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": dict(managed)},
            "spec": {
                "type": "ClusterIP",
                "selector": dict(selector),
                "ports": _service_ports(gateway),
            },
        },
    ]


def waypoint_objects(gateway: KubernetesGateway) -> list[tuple[K8sObject, dict[str, Any]]]:
    """The ServiceAccount, Deployment and Service for ``gateway``, each as the loader's typed
    object and its document, validated as if a user had applied them. Raises
    :class:`WaypointDeployError` naming the object and the rule when one is invalid (a Gateway
    name that is a valid subdomain but not a valid Service name, for one)."""
    out: list[tuple[K8sObject, dict[str, Any]]] = []
    source = controller_source(gateway.meta.namespace, gateway.meta.name)
    for document in waypoint_documents(gateway):
        warnings: list[str] = []
        try:
            obj = parse_object(document, source, gateway.meta.namespace, warnings)
        except K8sError as exc:
            raise WaypointDeployError(str(exc)) from None
        if warnings:  # the template above only uses known fields
            raise AssertionError(f"waypoint template produced warnings: {warnings}")
        out.append((obj, document))
    return out


def _service_ports(gateway: KubernetesGateway) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = [
        {"name": "status-port", "port": STATUS_PORT, "protocol": "TCP", "appProtocol": "tcp"},
    ]
    seen = {STATUS_PORT}
    names = {"status-port"}
    for index, listener in enumerate(gateway.listeners):
        if listener.port in seen:
            continue
        protocol = listener.protocol.lower()
        name = next(
            (n for n in (listener.name, f"{protocol}-{index}", f"port-{index}")
             if check_dns1123_label(n) is None and n not in names),
            f"port-{listener.port}",
        )
        entry: dict[str, Any] = {"name": name, "port": listener.port, "protocol": "TCP"}
        if check_qualified_name(protocol) is None:
            entry["appProtocol"] = protocol
        ports.append(entry)
        seen.add(listener.port)
        names.add(name)
    if HBONE_PORT not in seen:
        name = "mesh" if "mesh" not in names else f"mesh-{HBONE_PORT}"
        ports.append({"name": name, "port": HBONE_PORT, "protocol": "TCP", "appProtocol": "hbone"})
    return ports
