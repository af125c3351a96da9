"""The config ztunnel follows, converted once from the control plane's protobuf resources into
ztunnel's own immutable types (generated classes never go further than this module).

Raises :class:`StateError` for a resource ztunnel cannot use (the push is then NACKed and the
last good state kept).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

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

    @property
    def identity(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True, slots=True)
class ProxyState:
    version: int
    workloads: Mapping[str, Workload]
    trust_roots: tuple[bytes, ...]

    def local_identities(self, node: str) -> set[str]:
        """Identities of the enrolled workloads running on ``node``."""
        return {w.identity for w in self.workloads.values() if w.node == node and w.enrolled}


EMPTY = ProxyState(0, {}, ())


def from_resources(version: int, resources: Mapping[str, pb.Resource]) -> ProxyState:
    workloads: dict[str, Workload] = {}
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
            )
        elif kind == "trust_bundle":
            roots = tuple(p.encode() for p in res.trust_bundle.roots_pem)
    return ProxyState(version, workloads, roots)
