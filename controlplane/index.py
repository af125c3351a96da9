"""The index: turns the store's objects and reported pods into what each subscriber needs.

A :class:`Snapshot` holds, per *view*, every resource as serialized ``mesh.v1.Resource``
bytes keyed by resource name:

- ``kubelet``: the Kubernetes objects the lab's kubelet runs (``kube/<kind>/<ns>/<name>``);
- ``ztunnel``: workloads and services (``workload/<uid>``, ``service/<ns>/<hostname>``) and
  authorization policies (``authz/<ns>/<name>``). Istio sends every ztunnel the whole mesh's
  addresses and policies (no per-node scoping); so do we. Each workload carries its effective
  PeerAuthentication mode (:func:`effective_mtls`);
- ``waypoint/<ns>/<name>``: routes and destination policies of the services bound to that
  waypoint (a waypoint also gets the ``ztunnel`` view, for endpoints and policies).

Building is incremental: each resource is cached with a fingerprint of what it depends on, so
an unchanged resource keeps the very same bytes object and diffs are cheap. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.api import mesh_pb2 as pb
from controlplane.store import ObjectKey, ReportedPod, StoredObject, StoreSnapshot

TRUST_DOMAIN = "cluster.local"
CLUSTER_DOMAIN = "cluster.local"
ROOT_NAMESPACE = "istio-system"
CLUSTER_ID = "Kubernetes"
HBONE_PORT = 15008
KUBE_KINDS = ("Namespace", "ServiceAccount", "Service", "Deployment", "Pod")
DATAPLANE_MODE = "istio.io/dataplane-mode"
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR = "istio.io/waypoint-for"
WAYPOINT_CLASS = "istio-waypoint"
MANAGED_BY = "gateway.istio.io/managed"
MANAGED_WAYPOINT = "istio.io-mesh-controller"
STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"
# Kinds a workload resource depends on, per namespace (its own and the root namespace).
WORKLOAD_DEPENDENCIES = ("Service", "AuthorizationPolicy", "PeerAuthentication", "Namespace",
                         "gateway.networking.k8s.io/Gateway")

Age = tuple[float, int, str]
"""Sorts oldest first: (creationTimestamp, first seen at revision when it has none, name)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    views: Mapping[str, Mapping[str, bytes]]


@dataclass(slots=True)
class Index:
    """Builds snapshots; keeps the per-resource cache between builds."""

    converters: list[Callable[[StoreSnapshot, dict[str, dict[str, bytes]], Index], None]] = field(
        default_factory=list
    )
    _cache: dict[str, tuple[Any, bytes]] = field(default_factory=dict)
    _touched: set[str] = field(default_factory=set)
    # the store revision at which each PeerAuthentication was first seen: its age when the
    # document has no metadata.creationTimestamp
    _born: dict[ObjectKey, int] = field(default_factory=dict)

    def build(self, store: StoreSnapshot) -> Snapshot:
        self._touched = set()
        views: dict[str, dict[str, bytes]] = {"kubelet": {}, "ztunnel": {}}
        fp = _namespace_fingerprints(store.objects)
        self._kubelet(store, views["kubelet"])
        waypoints = _waypoints(store)
        self._services(store, views["ztunnel"], waypoints)
        self._workloads(store, views["ztunnel"], fp, waypoints)
        for ns, name in waypoints:
            views.setdefault(f"waypoint/{ns}/{name}", {})
        for convert in self.converters:
            convert(store, views, self)
        # forget cache entries of resources that no longer exist
        for name in list(self._cache):
            if name not in self._touched:
                del self._cache[name]
        return Snapshot(store.revision, views)

    def cached(self, name: str, fingerprint: Any, make: Callable[[], pb.Resource]) -> bytes:
        """The serialized resource ``name``, rebuilt only when ``fingerprint`` changed."""
        self._touched.add(name)
        hit = self._cache.get(name)
        if hit is not None and hit[0] == fingerprint:
            return hit[1]
        data: bytes = make().SerializeToString(deterministic=True)
        self._cache[name] = (fingerprint, data)
        return data

    # --- the kubelet's view --------------------------------------------------------------

    def _kubelet(self, store: StoreSnapshot, out: dict[str, bytes]) -> None:
        import json

        for key, stored in store.objects.items():
            if key[0] not in KUBE_KINDS:
                continue
            name = f"kube/{key[0]}/{key[1]}/{key[2]}"

            def make(stored: StoredObject = stored, key: ObjectKey = key, name: str = name) -> pb.Resource:
                return pb.Resource(name=name, kube=pb.KubeObject(
                    kind=key[0], api_version=str(stored.document.get("apiVersion", "")),
                    namespace=key[1], name=key[2], json=json.dumps(stored.document, sort_keys=True),
                ))

            out[name] = self.cached(name, stored.revision, make)

    # --- services ------------------------------------------------------------------------

    def _services(self, store: StoreSnapshot, out: dict[str, bytes], waypoints: Mapping[tuple[str, str], Any]) -> None:
        namespaces = {k[2]: s.obj for k, s in store.objects.items() if k[0] == "Namespace"}
        for key, stored in store.objects.items():
            if key[0] != "Service":
                continue
            svc = stored.obj
            hostname = f"{svc.meta.name}.{svc.meta.namespace}.svc.{CLUSTER_DOMAIN}"
            name = f"service/{svc.meta.namespace}/{hostname}"
            ns_obj = namespaces.get(svc.meta.namespace)
            wp = _waypoint_for(svc.meta.labels, ns_obj.meta.labels if ns_obj else {}, svc.meta.namespace,
                               waypoints, store, "service")
            fingerprint = (stored.revision, _gateway_fp(wp))

            def make(svc: Any = svc, hostname: str = hostname, name: str = name, wp: Any = wp) -> pb.Resource:
                return pb.Resource(name=name, address=pb.Address(service=pb.Service(
                    name=svc.meta.name, namespace=svc.meta.namespace, hostname=hostname,
                    addresses=[_ip_bytes(svc.cluster_ip)] if svc.cluster_ip else [],
                    ports=[_service_port(p) for p in svc.ports],
                    waypoint=wp, selector=dict(svc.selector or {}),
                )))

            out[name] = self.cached(name, fingerprint, make)

    # --- workloads -----------------------------------------------------------------------

    def _workloads(
        self, store: StoreSnapshot, out: dict[str, bytes], fp: Mapping[str, tuple[int, int]],
        waypoints: Mapping[tuple[str, str], Any],
    ) -> None:
        by_ns: dict[str, list[StoredObject]] = {}
        policies: dict[str, list[StoredObject]] = {}
        peer_authns: dict[str, list[tuple[Age, Any]]] = {}
        namespaces: dict[str, Any] = {}
        for key, stored in store.objects.items():
            if key[0] == "Service":
                by_ns.setdefault(key[1], []).append(stored)
            elif key[0] == "AuthorizationPolicy":
                policies.setdefault(key[1], []).append(stored)
            elif key[0] == "PeerAuthentication":
                born = self._born.setdefault(key, stored.revision)
                peer_authns.setdefault(key[1], []).append((_age(stored, born), stored.obj))
            elif key[0] == "Namespace":
                namespaces[key[2]] = stored.obj
        for key in [k for k in self._born if k not in store.objects]:
            del self._born[key]
        root_fp = fp.get(ROOT_NAMESPACE)
        for pod in store.pods.values():
            if not pod.ip:
                continue
            name = f"workload/{pod.uid}"
            # every object of these kinds in the pod's and the root namespace is covered
            fingerprint = (pod, fp.get(pod.namespace), root_fp)
            ns_obj = namespaces.get(pod.namespace)

            def make(pod: ReportedPod = pod, name: str = name, ns_obj: Any = ns_obj) -> pb.Resource:
                root = pod.namespace != ROOT_NAMESPACE
                return pb.Resource(name=name, address=pb.Address(workload=_workload(
                    pod, ns_obj, by_ns.get(pod.namespace, []),
                    policies.get(pod.namespace, []) + (policies.get(ROOT_NAMESPACE, []) if root else []),
                    peer_authns.get(pod.namespace, []) + (peer_authns.get(ROOT_NAMESPACE, []) if root else []),
                    waypoints, store,
                )))

            out[name] = self.cached(name, fingerprint, make)


def _workload(
    pod: ReportedPod, ns_obj: Any, services: Iterable[StoredObject], policies: Iterable[StoredObject],
    peer_authns: Iterable[tuple[Age, Any]], waypoints: Mapping[tuple[str, str], Any], store: StoreSnapshot,
) -> pb.Workload:
    ns_labels: Mapping[str, str] = ns_obj.meta.labels if ns_obj is not None else {}
    labels = pod.labels
    svc_ports: dict[str, pb.PortList] = {}
    for stored in services:
        svc = stored.obj
        if not svc.selector or not all(labels.get(k) == v for k, v in svc.selector.items()):
            continue
        mappings = []
        for p in svc.ports:
            target = p.target_port if isinstance(p.target_port, int) else dict(pod.ports).get(p.target_port)
            if target is not None:
                mappings.append(pb.PortMapping(service_port=p.port, target_port=target))
        hostname = f"{svc.meta.name}.{svc.meta.namespace}.svc.{CLUSTER_DOMAIN}"
        svc_ports[f"{svc.meta.namespace}/{hostname}"] = pb.PortList(ports=mappings)
    selected = []
    for stored in policies:
        pol = stored.obj
        if pol.target_refs or pol.action == "CUSTOM":
            continue  # not sent to ztunnels (see translate.convert)
        selector = getattr(pol, "selector", None)
        match_labels = getattr(selector, "match_labels", selector) if selector is not None else None
        if match_labels and all(labels.get(k) == v for k, v in match_labels.items()):
            selected.append(f"{pol.meta.namespace}/{pol.meta.name}")
    mode, ports = effective_mtls(pod.namespace, labels, peer_authns)
    workload_name = pod.owner or pod.name
    return pb.Workload(
        uid=pod.uid, name=pod.name, namespace=pod.namespace, addresses=[_ip_bytes(pod.ip)],
        node=pod.node, service_account=pod.service_account or "default", trust_domain=TRUST_DOMAIN,
        labels=dict(labels),
        tunnel_protocol=pb.HBONE if enrolled(labels, ns_labels) else pb.TUNNEL_NONE,
        waypoint=_waypoint_for(labels, ns_labels, pod.namespace, waypoints, store, "workload"),
        status=pb.HEALTHY if pod.ready else pb.UNHEALTHY,
        services=svc_ports, workload_name=workload_name,
        canonical_name=_first(labels, ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"), workload_name),
        canonical_revision=_first(labels, ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"), "latest"),
        cluster_id=CLUSTER_ID, authorization_policies=sorted(selected),
        mtls_mode=_MTLS_WIRE[mode], port_mtls={port: _MTLS_WIRE[m] for port, m in ports.items()},
    )


_MTLS_WIRE = {STRICT: pb.MTLS_STRICT, PERMISSIVE: pb.MTLS_PERMISSIVE}


def effective_mtls(
    namespace: str, labels: Mapping[str, str], peer_authns: Iterable[tuple[Age, Any]],
) -> tuple[str, dict[int, str]]:
    """A workload's PeerAuthentication mode and its port overrides, as Istio computes them:
    the oldest PeerAuthentication selecting the workload in its namespace > the oldest
    namespace-wide one > the oldest mesh-wide one (root namespace, no selector) > PERMISSIVE.
    UNSET inherits from the scope above; a port-level mode on the selecting policy overrides
    the workload's mode for that workload port (UNSET inherits). ``peer_authns``: the
    PeerAuthentications of the workload's namespace and of the root namespace, with their age.

    DISABLE counts as PERMISSIVE: in ambient mode ztunnel cannot turn mTLS off for mesh traffic
    (HBONE is always mTLS), it can only accept plaintext as well, which is what PERMISSIVE means
    to it (istio.io, docs/ambient/usage/l4-policy: DISABLE "will be ignored"). Selector policies
    in the root namespace are not used, as in istiod's ambient index
    (pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go)."""
    mesh: tuple[Age, Any] | None = None
    scoped: tuple[Age, Any] | None = None
    selecting: tuple[Age, Any] | None = None
    for age, pa in peer_authns:
        ns = pa.meta.namespace
        if not pa.selector:
            if ns == ROOT_NAMESPACE and (mesh is None or age < mesh[0]):
                mesh = (age, pa)
            elif ns == namespace and ns != ROOT_NAMESPACE and (scoped is None or age < scoped[0]):
                scoped = (age, pa)
        elif ns == namespace and ns != ROOT_NAMESPACE and all(labels.get(k) == v for k, v in pa.selector.items()):
            if selecting is None or age < selecting[0]:
                selecting = (age, pa)
    mode = PERMISSIVE
    for chosen in (mesh, scoped, selecting):
        if chosen is not None and chosen[1].mtls_mode != "UNSET":
            mode = STRICT if chosen[1].mtls_mode == STRICT else PERMISSIVE
    ports: dict[int, str] = {}
    if selecting is not None:
        for port, port_mode in selecting[1].port_level_mtls.items():
            if port_mode == "UNSET":
                continue
            effective = STRICT if port_mode == STRICT else PERMISSIVE
            if effective != mode:
                ports[int(port)] = effective
    return mode, ports


def _age(stored: StoredObject, born: int) -> Age:
    """Istio picks the oldest policy by metadata.creationTimestamp, then by name. Our store does
    not stamp one, so objects without it come after those with one, ordered by when the index
    first saw them."""
    metadata = stored.document.get("metadata")
    created = metadata.get("creationTimestamp") if isinstance(metadata, Mapping) else None
    when = math.inf
    if isinstance(created, datetime):
        when = created.timestamp()
    elif isinstance(created, str):
        try:
            when = datetime.fromisoformat(created).timestamp()
        except ValueError:
            pass  # not a timestamp: ordered as if it had none
    return (when, born if when == math.inf else 0, str(stored.obj.meta.name))


def enrolled(pod_labels: Mapping[str, str], ns_labels: Mapping[str, str]) -> bool:
    """Istio's ambient enrolment: the pod label wins (``none`` opts out), else the namespace's."""
    mode = pod_labels.get(DATAPLANE_MODE)
    if mode is not None:
        return mode == "ambient"
    return ns_labels.get(DATAPLANE_MODE) == "ambient"


def _first(labels: Mapping[str, str], keys: Iterable[str], default: str) -> str:
    for k in keys:
        if labels.get(k):
            return labels[k]
    return default


def _ip_bytes(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def _service_port(p: Any) -> pb.ServicePort:
    target = p.target_port
    return pb.ServicePort(
        service_port=p.port, target_port=target if isinstance(target, int) else 0,
        target_port_name=target if isinstance(target, str) else "", name=p.name or "",
        app_protocol=p.app_protocol or protocol_from_port_name(p.name or ""),
    )


def protocol_from_port_name(name: str) -> str:
    """Istio's protocol selection by port name: ``<protocol>[-<suffix>]``."""
    prefix = name.split("-", 1)[0].lower()
    known = {"http": "http", "http2": "http2", "https": "https", "grpc": "grpc", "grpc-web": "grpc-web",
             "tcp": "tcp", "tls": "tls", "mongo": "mongo", "mysql": "mysql", "redis": "redis"}
    return known.get(prefix, "")


def _namespace_fingerprints(objects: Mapping[ObjectKey, StoredObject]) -> dict[str, tuple[int, int]]:
    """Per namespace, (newest revision, count) of the objects workloads depend on: a creation or
    an update raises the newest revision, a deletion lowers the count."""
    fp: dict[str, tuple[int, int]] = {}
    for key, stored in objects.items():
        if key[0] in WORKLOAD_DEPENDENCIES:
            ns = key[2] if key[0] == "Namespace" else key[1]
            newest, count = fp.get(ns, (0, 0))
            fp[ns] = (max(newest, stored.revision), count + 1)
    return fp


def _waypoints(store: StoreSnapshot) -> dict[tuple[str, str], Any]:
    """Gateway API Gateways of class istio-waypoint, by (namespace, name)."""
    out = {}
    for key, stored in store.objects.items():
        obj = stored.obj
        if obj.kind == "Gateway" and getattr(obj, "gateway_class_name", None) == WAYPOINT_CLASS:
            out[(key[1], key[2])] = obj
    return out


def _waypoint_for(
    labels: Mapping[str, str], ns_labels: Mapping[str, str], namespace: str,
    waypoints: Mapping[tuple[str, str], Any], store: StoreSnapshot, what: str,
) -> pb.GatewayAddress | None:
    """The waypoint a service or workload uses (``istio.io/use-waypoint`` on it, else on its
    namespace; ``none`` opts out), if that waypoint serves this kind of traffic. A waypoint's
    own Service and pods never have one (Istio's ambient ``waypoints.go``: "This is a waypoint,
    so it cannot have a waypoint")."""
    if labels.get(MANAGED_BY) == MANAGED_WAYPOINT:
        return None
    name = labels.get(USE_WAYPOINT)
    wp_ns = labels.get(USE_WAYPOINT_NAMESPACE, namespace) if name else None
    if name is None:
        name = ns_labels.get(USE_WAYPOINT)
        wp_ns = ns_labels.get(USE_WAYPOINT_NAMESPACE, namespace)
    if not name or name == "none" or wp_ns is None:
        return None
    gw = waypoints.get((wp_ns, name))
    if gw is None:
        return None
    serves = gw.meta.labels.get(WAYPOINT_FOR, "service")
    if serves not in (what, "all"):
        return None
    svc = store.objects.get(("Service", wp_ns, name))
    address = _ip_bytes(svc.obj.cluster_ip) if svc is not None and svc.obj.cluster_ip else b""
    return pb.GatewayAddress(hostname=f"{name}.{wp_ns}.svc.{CLUSTER_DOMAIN}", namespace=wp_ns,
                             address=address, hbone_port=HBONE_PORT)


def _gateway_fp(gw: pb.GatewayAddress | None) -> bytes:
    return gw.SerializeToString() if gw is not None else b""


def diff(old: Mapping[str, bytes] | None, new: Mapping[str, bytes]) -> tuple[list[bytes], list[str]]:
    """(upserts, removals) that turn ``old`` into ``new``; identical bytes objects are skipped
    without comparing their contents."""
    if old is None:
        return list(new.values()), []
    upserts = [data for name, data in new.items() if (prev := old.get(name)) is not data and prev != data]
    removals = [name for name in old if name not in new]
    return upserts, removals
