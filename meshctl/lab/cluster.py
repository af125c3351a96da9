"""The lab's cluster state and controllers, without I/O.

Holds the applied Kubernetes objects and the pods derived from them, and decides what must
happen: which pods to start or stop (the Deployment controller and a spreading scheduler),
which addresses they get, which pods back each Service (endpoints), and from those the DNS
zone and the kube-proxy rules. The lab daemon (``meshctl.lab.daemon``) carries the decisions
out and reports pod status back through :meth:`Cluster.set_pod_status`.

Raises :class:`ApplyError` for an object the cluster refuses (missing namespace, immutable
field changed, address conflicts), with a message in kubectl's words.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controlplane.k8s import clusterip
from controlplane.k8s.objects import (
    Deployment,
    K8sObject,
    Namespace,
    ObjectMeta,
    Pod,
    PodSpec,
    Service,
    ServiceAccount,
)
from meshctl.lab.config import LabConfig
from meshctl.lab.dns import ServiceRecord, Zone
from meshctl.lab.kubeproxy import Endpoint, ServiceRule
from meshctl.lab.naming import NodeAddressing, nodes, pod_netns

ApplyResult = Literal["created", "configured", "unchanged"]
SYSTEM_NAMESPACES = ("default", "kube-system")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.String alphabet


class ApplyError(ValueError):
    """The cluster refused an object or a deletion; the message says why, as kubectl would."""


@dataclass(slots=True)
class ContainerStatus:
    name: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    ready: bool = False
    restart_count: int = 0
    exit_code: int | None = None
    pid: int | None = None
    started_at: float | None = None


@dataclass(slots=True)
class PodRecord:
    """A pod the lab runs: its identity, placement, address and observed status."""

    uid: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: PodSpec
    node: str
    ip: str
    owner: tuple[str, str] | None  # (deployment name, template hash)
    created_at: float
    phase: str = "Pending"  # Pending | Running | Succeeded | Failed | Terminating
    message: str = ""
    containers: dict[str, ContainerStatus] = field(default_factory=dict)
    started: bool = False  # the daemon has been told to start it

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def ready(self) -> bool:
        return (
            self.phase == "Running"
            and bool(self.containers)
            and all(c.ready for c in self.containers.values())
        )

    @property
    def restarts(self) -> int:
        return sum(c.restart_count for c in self.containers.values())

    def netns(self, cfg: LabConfig) -> str:
        return pod_netns(cfg, self.uid)


@dataclass(frozen=True, slots=True)
class StartPod:
    pod: PodRecord


@dataclass(frozen=True, slots=True)
class StopPod:
    pod: PodRecord


Action = StartPod | StopPod


class Cluster:
    """Desired state (objects) and actual state (pods) of one lab; single-threaded."""

    def __init__(
        self,
        cfg: LabConfig,
        *,
        clock: Callable[[], float] = time.time,
        random_suffix: Callable[[], str] | None = None,
    ) -> None:
        self.cfg = cfg
        self._clock = clock
        self._suffix = random_suffix or (
            lambda: "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
        )
        self.nodes: dict[str, NodeAddressing] = {n.name: n for n in nodes(cfg)}
        self.namespaces: dict[str, Namespace] = {}
        self.service_accounts: dict[tuple[str, str], ServiceAccount] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.cluster_ips: dict[tuple[str, str], str] = {}
        self.deployments: dict[tuple[str, str], Deployment] = {}
        self.standalone: dict[tuple[str, str], Pod] = {}
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self._pending_stop: list[PodRecord] = []
        for ns in SYSTEM_NAMESPACES:
            self._apply_namespace(Namespace(meta=_meta(ns, "")))

    # --- applying and deleting objects ----------------------------------------------------

    def apply(self, obj: K8sObject) -> ApplyResult:
        if isinstance(obj, Namespace):
            return self._apply_namespace(obj)
        ns = obj.meta.namespace or "default"
        if ns not in self.namespaces:
            raise ApplyError(f'namespaces "{ns}" not found')
        if isinstance(obj, ServiceAccount):
            return _store(self.service_accounts, (ns, obj.meta.name), obj)
        if isinstance(obj, Service):
            return self._apply_service(obj)
        if isinstance(obj, Deployment):
            return _store(self.deployments, (ns, obj.meta.name), obj)
        if isinstance(obj, Pod):
            return self._apply_pod(obj)
        raise ApplyError(f"kind {type(obj).__name__} is not handled by the lab")

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        """Delete one object; raises :class:`ApplyError` if it does not exist."""
        ns = namespace or "default"
        if kind == "Namespace":
            if name in SYSTEM_NAMESPACES:
                raise ApplyError(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
            if name not in self.namespaces:
                raise ApplyError(f'namespaces "{name}" not found')
            del self.namespaces[name]
            stores: tuple[dict[tuple[str, str], Any], ...] = (
                self.service_accounts, self.services, self.deployments, self.standalone,
            )
            for namespaced in stores:
                for key in [k for k in namespaced if k[0] == name]:
                    del namespaced[key]
            for key in [k for k in self.cluster_ips if k[0] == name]:
                del self.cluster_ips[key]
            return
        by_kind: dict[str, dict[tuple[str, str], Any]] = {
            "ServiceAccount": self.service_accounts,
            "Service": self.services,
            "Deployment": self.deployments,
            "Pod": self.standalone,
        }
        store = by_kind.get(kind)
        if store is None:
            raise ApplyError(f"kind {kind} is not handled by the lab")
        if kind == "Pod" and (ns, name) in self.pods and (ns, name) not in store:
            # A pod owned by a Deployment: delete it and let the controller replace it.
            self.stop_pod(self.pods[(ns, name)])
            return
        if (ns, name) not in store:
            raise ApplyError(f'{_plural(kind)} "{name}" not found in namespace "{ns}"')
        del store[(ns, name)]
        if kind == "Service":
            self.cluster_ips.pop((ns, name), None)

    def applied_objects(self) -> list[K8sObject]:
        """Every object held, except the built-in namespaces' defaults the lab made itself."""
        out: list[K8sObject] = [ns for name, ns in self.namespaces.items() if name not in SYSTEM_NAMESPACES]
        out += [sa for key, sa in self.service_accounts.items() if key[1] != "default"]
        out += [*self.services.values(), *self.deployments.values(), *self.standalone.values()]
        return out

    def _apply_namespace(self, obj: Namespace) -> ApplyResult:
        name = obj.meta.name
        result = _store(self.namespaces, name, obj)
        self.service_accounts.setdefault(
            (name, "default"), ServiceAccount(meta=_meta("default", name))
        )
        return result

    def _apply_service(self, svc: Service) -> ApplyResult:
        key = (svc.meta.namespace or "default", svc.meta.name)
        current = self.cluster_ips.get(key)
        wanted = None if svc.headless else svc.cluster_ip
        if current is not None and wanted and wanted != current:
            raise ApplyError(
                f'Service "{key[1]}" is invalid: spec.clusterIP: Invalid value: "{wanted}": '
                "field is immutable"
            )
        if svc.headless:
            if current not in (None, "None"):
                raise ApplyError(
                    f'Service "{key[1]}" is invalid: spec.clusterIP: Invalid value: "None": '
                    "field is immutable"
                )
            self.cluster_ips[key] = "None"
        elif current is None:
            self.cluster_ips[key] = self._allocate_cluster_ip(key, wanted)
        return _store(self.services, key, svc)

    def _allocate_cluster_ip(self, key: tuple[str, str], wanted: str | None) -> str:
        taken = [ip for k, ip in self.cluster_ips.items() if k != key]
        try:
            return clusterip.allocate(
                key[0], key[1], wanted, taken, self.cfg.service_cidr, reserved=(self.cfg.dns_ip,)
            )
        except clusterip.ClusterIPError as exc:
            raise ApplyError(f'Service "{key[1]}" is invalid: {exc}') from None

    def _apply_pod(self, pod: Pod) -> ApplyResult:
        key = (pod.meta.namespace or "default", pod.meta.name)
        old = self.standalone.get(key)
        if old is not None and old.spec != pod.spec:
            raise ApplyError(
                f'Pod "{key[1]}" is invalid: spec: Forbidden: pod updates may not change fields '
                "other than labels and annotations in the lab (delete and re-create the pod)"
            )
        if key in self.pods and key not in self.standalone:
            raise ApplyError(f'Pod "{key[1]}" already exists, owned by a Deployment')
        result = _store(self.standalone, key, pod)
        record = self.pods.get(key)
        if record is not None:
            record.labels = pod.meta.labels
            record.annotations = pod.meta.annotations
        return result

    # --- controllers ----------------------------------------------------------------------

    def reconcile(self) -> list[Action]:
        """Bring pods in line with the objects: the actions the daemon must carry out."""
        actions: list[Action] = [StopPod(p) for p in self._pending_stop]
        self._pending_stop.clear()
        wanted: set[tuple[str, str]] = set()
        for key, pod in self.standalone.items():
            wanted.add(key)
            if key not in self.pods:
                self._create_pod(key[0], key[1], pod.meta.labels, pod.meta.annotations, pod.spec, None)
        for (ns, name), dep in sorted(self.deployments.items()):
            thash = template_hash(dep)
            mine = [
                p for p in self.pods.values()
                if p.namespace == ns and p.owner and p.owner[0] == name and p.phase != "Terminating"
            ]
            current = [p for p in mine if p.owner == (name, thash)]
            for p in mine:
                if p.owner != (name, thash):
                    self.stop_pod(p)
            current.sort(key=lambda p: (p.created_at, p.name))
            for p in current[dep.replicas:]:
                self.stop_pod(p)
            for p in current[: dep.replicas]:
                wanted.add(p.key)
                p.labels = dep.template.labels
            for _ in range(dep.replicas - len(current)):
                pod_name = self._unique_pod_name(ns, f"{name}-{thash}")
                self._create_pod(
                    ns, pod_name, dep.template.labels, dep.template.annotations,
                    dep.template.spec, (name, thash),
                )
                wanted.add((ns, pod_name))
        for key, p in list(self.pods.items()):
            if key not in wanted and p.phase != "Terminating":
                self.stop_pod(p)
        actions += [StopPod(p) for p in self._pending_stop]
        self._pending_stop.clear()
        for p in sorted(self.pods.values(), key=lambda p: p.created_at):
            if p.started or p.phase == "Terminating":
                continue
            sa = p.spec.service_account_name or "default"
            if (p.namespace, sa) not in self.service_accounts:
                p.message = f'error looking up service account {p.namespace}/{sa}: serviceaccount "{sa}" not found'
                continue
            p.message = ""
            p.started = True
            actions.append(StartPod(p))
        return actions

    def _unique_pod_name(self, ns: str, prefix: str) -> str:
        for _ in range(100):
            name = f"{prefix}-{self._suffix()}"
            if (ns, name) not in self.pods:
                return name
        raise ApplyError(f"could not find a free pod name for {ns}/{prefix}")

    def _create_pod(
        self, ns: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str],
        spec: PodSpec, owner: tuple[str, str] | None,
    ) -> PodRecord:
        node = self._schedule(spec)
        ip = self._allocate_pod_ip(node)
        uid = secrets.token_hex(5)
        record = PodRecord(
            uid=uid, namespace=ns, name=name, labels=labels, annotations=annotations, spec=spec,
            node=node.name, ip=ip, owner=owner, created_at=self._clock(),
            containers={c.name: ContainerStatus(c.name) for c in spec.containers},
        )
        self.pods[(ns, name)] = record
        return record

    def _schedule(self, spec: PodSpec) -> NodeAddressing:
        """Spread: the node with the fewest live pods, lowest index first (or spec.nodeName)."""
        if spec.node_name:
            if spec.node_name not in self.nodes:
                raise ApplyError(f'spec.nodeName: node "{spec.node_name}" does not exist in the lab')
            return self.nodes[spec.node_name]
        load = {n: 0 for n in self.nodes}
        for p in self.pods.values():
            if p.phase != "Terminating":
                load[p.node] += 1
        return self.nodes[min(load, key=lambda n: (load[n], self.nodes[n].index))]

    def _allocate_pod_ip(self, node: NodeAddressing) -> str:
        used = {p.ip for p in self.pods.values() if p.node == node.name}
        for slot in range(2, node.pod_cidr.num_addresses - 1):
            ip = node.pod_ip(slot)
            if ip not in used:
                return ip
        raise ApplyError(f"node {node.name} has no free pod address left in {node.pod_cidr}")

    def stop_pod(self, pod: PodRecord) -> None:
        if pod.phase == "Terminating":
            return
        pod.phase = "Terminating"
        for c in pod.containers.values():
            c.ready = False
        self._pending_stop.append(pod)

    def pod_gone(self, pod: PodRecord) -> None:
        """The daemon removed the pod's processes and network: forget it, free its address."""
        if self.pods.get(pod.key) is pod:
            del self.pods[pod.key]

    def set_pod_status(self, pod: PodRecord, phase: str, message: str = "") -> None:
        if pod.phase != "Terminating":
            pod.phase = phase
            pod.message = message

    # --- derived views -------------------------------------------------------------------

    def endpoints(self, key: tuple[str, str]) -> list[tuple[PodRecord, dict[str, int]]]:
        """Ready pods selected by the service, each with its resolved target port per
        service port name (a named targetPort the pod does not declare leaves that port out)."""
        svc = self.services.get(key)
        if svc is None or not svc.selector:
            return []
        out = []
        for p in sorted(self.pods.values(), key=lambda p: p.name):
            if p.namespace != key[0] or not p.ready:
                continue
            if not all(p.labels.get(k) == v for k, v in svc.selector.items()):
                continue
            ports: dict[str, int] = {}
            for sp in svc.ports:
                target = resolve_target_port(p.spec, sp.target_port)
                if target is not None:
                    ports[_port_key(sp.name, sp.port)] = target
            out.append((p, ports))
        return out

    def service_rules(self) -> list[ServiceRule]:
        rules = []
        for key, svc in self.services.items():
            vip = self.cluster_ips.get(key)
            if not vip or vip == "None":
                continue
            eps = self.endpoints(key)
            for sp in svc.ports:
                pk = _port_key(sp.name, sp.port)
                rules.append(ServiceRule(
                    namespace=key[0], name=key[1], cluster_ip=vip, port=sp.port,
                    protocol=sp.protocol.lower(),
                    endpoints=tuple(Endpoint(p.ip, ports[pk]) for p, ports in eps if pk in ports),
                ))
        return rules

    def zone(self) -> Zone:
        services = {}
        for key, svc in self.services.items():
            vip = self.cluster_ips.get(key)
            services[key] = ServiceRecord(
                name=key[1], namespace=key[0],
                cluster_ip=None if vip in (None, "None") else vip,
                endpoints=tuple((p.ip, p.name) for p, _ in self.endpoints(key)),
                ports=tuple((sp.name, sp.protocol.lower(), sp.port) for sp in svc.ports),
            )
        pods = {p.ip: p.namespace for p in self.pods.values() if p.phase != "Terminating"}
        return Zone(domain=self.cfg.cluster_domain, services=services, pods=pods)

    def find_pods(self, ref: str) -> list[PodRecord]:
        """Pods named by ``ref``: ``ns/name``, ``name``, ``deploy/name``, ``ns/deploy/name``
        or a bare deployment name (its pods, ready ones first)."""
        parts = ref.split("/")
        ns = "default"
        kind = None
        if len(parts) == 3:
            ns, kind, name = parts
        elif len(parts) == 2 and parts[0] in ("deploy", "deployment", "deployments", "pod", "pods"):
            kind, name = parts
        elif len(parts) == 2:
            ns, name = parts
        elif len(parts) == 1:
            name = parts[0]
        else:
            return []
        live = [p for p in self.pods.values() if p.namespace == ns and p.phase != "Terminating"]
        if kind in (None, "pod", "pods"):
            exact = [p for p in live if p.name == name]
            if exact or kind is not None:
                return exact
        owned = [p for p in live if p.owner and p.owner[0] == name]
        return sorted(owned, key=lambda p: (not p.ready, p.created_at))


def resolve_target_port(spec: PodSpec, target: int | str) -> int | None:
    if isinstance(target, int):
        return target
    for c in spec.containers:
        for port in c.ports:
            if port.name == target:
                return port.container_port
    return None


def template_hash(dep: Deployment) -> str:
    """A stable hash of a Deployment's pod template, shortened as Kubernetes' pod-template-hash."""
    digest = hashlib.sha256(repr(dep.template).encode()).hexdigest()
    return "".join(_SUFFIX_ALPHABET[int(digest[i : i + 2], 16) % len(_SUFFIX_ALPHABET)] for i in range(0, 20, 2))


def _port_key(name: str | None, port: int) -> str:
    return name or str(port)


def _store(store: dict[Any, Any], key: Any, obj: Any) -> ApplyResult:
    old = store.get(key)
    store[key] = obj
    if old is None:
        return "created"
    return "unchanged" if old == obj else "configured"


def _meta(name: str, namespace: str) -> ObjectMeta:
    return ObjectMeta(name=name, namespace=namespace, labels={}, annotations={})


def _plural(kind: str) -> str:
    return {"ServiceAccount": "serviceaccounts", "Service": "services",
            "Deployment": "deployments.apps", "Pod": "pods"}.get(kind, kind.lower() + "s")


def pod_summary(cfg: LabConfig, p: PodRecord, now: float) -> dict[str, Any]:
    """A JSON-able row for ``lab status`` and the API."""
    status = p.phase
    for c in p.containers.values():
        if c.state == "waiting" and c.reason and p.phase != "Terminating":
            status = c.reason
    if p.message and not p.started:
        status = "Pending"
    return {
        "namespace": p.namespace, "name": p.name, "node": p.node, "ip": p.ip,
        "ready": f"{sum(c.ready for c in p.containers.values())}/{len(p.containers)}",
        "status": status, "restarts": p.restarts, "age_s": round(now - p.created_at, 1),
        "netns": p.netns(cfg), "labels": dict(p.labels), "message": p.message,
        "service_account": p.spec.service_account_name or "default",
        "owner": p.owner[0] if p.owner else None, "uid": p.uid,
        "containers": [c.name for c in p.spec.containers],
    }


