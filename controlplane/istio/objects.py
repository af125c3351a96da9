"""The unions of the object kinds this package models, and ``AnyObject`` (these plus the
Kubernetes kinds of ``controlplane.k8s``): what ``load_documents(..., kinds="all")`` returns.
"""

from __future__ import annotations

from typing import TypeAlias

from controlplane.istio.gatewayapi import GatewayClass, HTTPRoute, KubernetesGateway
from controlplane.istio.networking import DestinationRule, Gateway, ServiceEntry, VirtualService
from controlplane.istio.security import (
    AuthorizationPolicy,
    PeerAuthentication,
    RequestAuthentication,
)
from controlplane.k8s.objects import K8sObject

__all__ = ["AnyObject", "GatewayAPIObject", "IstioObject", "MeshObject"]

IstioObject: TypeAlias = (
    VirtualService
    | DestinationRule
    | Gateway
    | ServiceEntry
    | PeerAuthentication
    | AuthorizationPolicy
    | RequestAuthentication
)
"""Objects of ``networking.istio.io`` and ``security.istio.io``."""

GatewayAPIObject: TypeAlias = KubernetesGateway | HTTPRoute | GatewayClass
"""Objects of ``gateway.networking.k8s.io``."""

MeshObject: TypeAlias = IstioObject | GatewayAPIObject
"""Every kind this package models."""

AnyObject: TypeAlias = K8sObject | MeshObject
"""Every kind the loader returns."""
