"""The config ztunnel follows, converted once from the control plane's protobuf resources into
ztunnel's own immutable types (generated classes never go further than this module).

Raises :class:`StateError` for a resource ztunnel cannot use (the push is then NACKed and the
last good state kept).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from controlplane.api import mesh_pb2 as pb


class StateError(ValueError):
    """A pushed resource is unusable; the message names it and why."""


@dataclass(frozen=True, slots=True)
class Workload:
    uid: str
    name: str
    namespace: str
    node: str
    service_account: str
    trust_domain: str
    addresses: tuple[str, ...]
    enrolled: bool  # HBONE: in the mesh
    healthy: bool
    # "namespace/hostname" of each service selecting it -> {service port: target port}
    services: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    hostname: str
    vips: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.hostname}"


@dataclass(frozen=True, slots=True)
class ProxyState:
    version: int
    workloads: Mapping[str, Workload]
    trust_roots: tuple[bytes, ...]
    services: Mapping[str, Service] = field(default_factory=dict)  # by VIP
    by_ip: Mapping[str, Workload] = field(default_factory=dict)  # every workload address

    @classmethod
    def build(cls, version: int, workloads: Mapping[str, Workload], trust_roots: tuple[bytes, ...],
              services: Mapping[str, Service]) -> ProxyState:
        """A snapshot with its address index built once (the data path looks up per connection)."""
        by_ip = {ip: w for w in workloads.values() for ip in w.addresses}
        return cls(version, workloads, trust_roots, services, by_ip)

    def endpoints(self, service: Service, port: int) -> list[tuple[Workload, int]]:
        """Healthy workloads behind ``service`` with the target port for ``port``."""
        out = []
        for w in self.workloads.values():
            target = w.services.get(service.key, {}).get(port)
            if target is not None and w.healthy and w.addresses:
                out.append((w, target))
        return sorted(out, key=lambda e: e[0].uid)

    def local_identities(self, node: str) -> set[str]:
        """Identities of the enrolled workloads running on ``node``."""
        return {w.identity for w in self.workloads.values() if w.node == node and w.enrolled}


EMPTY = ProxyState(0, {}, ())


def from_resources(version: int, resources: Mapping[str, pb.Resource]) -> ProxyState:
    workloads: dict[str, Workload] = {}
    services: dict[str, Service] = {}
    roots: tuple[bytes, ...] = ()
    for name, res in resources.items():
        kind = res.WhichOneof("kind")
        if kind == "address" and res.address.WhichOneof("type") == "workload":
            w = res.address.workload
            try:
                addresses = tuple(str(ipaddress.ip_address(bytes(a))) for a in w.addresses)
            except ValueError as exc:
                raise StateError(f"{name}: bad address: {exc}") from None
            if not w.uid or not w.namespace:
                raise StateError(f"{name}: a workload needs uid and namespace")
            workloads[w.uid] = Workload(
                uid=w.uid, name=w.name, namespace=w.namespace, node=w.node,
                service_account=w.service_account or "default", trust_domain=w.trust_domain or "cluster.local",
                addresses=addresses, enrolled=w.tunnel_protocol == pb.HBONE, healthy=w.status == pb.HEALTHY,
                services={key: {m.service_port: m.target_port for m in pl.ports} for key, pl in w.services.items()},
            )
        elif kind == "address" and res.address.WhichOneof("type") == "service":
            svc = res.address.service
            try:
                vips = tuple(str(ipaddress.ip_address(bytes(a))) for a in svc.addresses)
            except ValueError as exc:
                raise StateError(f"{name}: bad VIP: {exc}") from None
            entry = Service(namespace=svc.namespace, hostname=svc.hostname, vips=vips)
            for vip in vips:
                services[vip] = entry
        elif kind == "trust_bundle":
            roots = tuple(p.encode() for p in res.trust_bundle.roots_pem)
    return ProxyState.build(version, workloads, roots, services)
