"""The control plane's configuration store: the single source of truth.

Plays the API server's part: every object goes through validation (``controlplane.k8s.loader``,
which also covers Istio's and Gateway API kinds), namespaced objects need their namespace,
Services get a ClusterIP, and an invalid object is refused without touching the rest. Pods
are not applied by users: the lab's kubelet reports them (with their IPs) through
:meth:`ConfigStore.report_pods`.

Applying a Gateway API ``Gateway`` of class ``istio-waypoint`` also applies the ServiceAccount,
Deployment and Service istiod's deployment controller would create for it
(``controlplane.gatewaydeploy``), recorded with the source ``waypoint controller (Gateway
ns/name)``; changing the Gateway's class away or deleting it deletes them. Results name only the
Gateway. While the Gateway exists its objects are the controller's: applying or deleting them
directly changes nothing and says so in a warning (istiod would put them back at once).

Sans-I/O: persistence goes through the :class:`Persistence` protocol (files in the control
plane's state folder in production, nothing in tests). Each change bumps ``revision``; the
index reads the store only through :meth:`snapshot`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controlplane import gatewaydeploy
from controlplane.k8s import clusterip
from controlplane.k8s.errors import K8sError
from controlplane.k8s.loader import ALL_KINDS, LoadResult, load_documents
from controlplane.k8s.objects import Namespace, ObjectMeta, Service

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_RESERVED_IPS = ("10.96.0.10",)  # kube-dns
SYSTEM_NAMESPACES = ("default", "kube-system", "istio-system")

ObjectKey = tuple[str, str, str]  # (kind key, namespace, name)
GATEWAY_KEY = "gateway.networking.k8s.io/Gateway"


class StoreError(ValueError):
    """An object was refused by the store (as the API server would refuse it)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    obj: Any                     # a validated, frozen object (k8s, Istio or Gateway API)
    document: Mapping[str, Any]  # the object as applied (plain data), clusterIP filled in
    source: str
    revision: int


@dataclass(frozen=True, slots=True)
class ReportedPod:
    """A pod as the kubelet reports it: where it runs and with which address."""

    uid: str
    namespace: str
    name: str
    node: str
    ip: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    service_account: str
    owner: str
    ready: bool
    phase: str
    ports: tuple[tuple[str, int], ...]  # (container port name, number)
    reporter: str


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """An immutable view of the store at one revision, for the index."""

    revision: int
    objects: Mapping[ObjectKey, StoredObject]
    pods: Mapping[tuple[str, str], ReportedPod]


@dataclass(slots=True)
class Result:
    """One object's outcome, in kubectl's words."""

    object: str
    result: str = ""
    error: str = ""
    warning: str = ""
    skipped: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


class Persistence(Protocol):
    def save(self, key: ObjectKey, document: Mapping[str, Any], source: str) -> None: ...
    def remove(self, key: ObjectKey) -> None: ...


class NoPersistence:
    def save(self, key: ObjectKey, document: Mapping[str, Any], source: str) -> None:
        return None

    def remove(self, key: ObjectKey) -> None:
        return None


def object_key(obj: Any) -> ObjectKey:
    """A key unique across kinds: Istio's and Gateway API's ``Gateway`` differ by group."""
    kind, namespace, name = obj.key
    return (str(kind), str(namespace), str(name))


def kubectl_ref(obj: Any) -> str:
    kind: str = obj.kind
    group = str(getattr(obj, "api_version", "")).split("/")[0] if "/" in str(getattr(obj, "api_version", "")) else ""
    resource = kind.lower() + (f".{group}" if group else "")
    ns = obj.meta.namespace
    prefix = f"{ns}/" if ns and ns != "default" and kind != "Namespace" else ""
    return f"{prefix}{resource}/{obj.meta.name}"


@dataclass(slots=True)
class ConfigStore:
    service_cidr: str = DEFAULT_SERVICE_CIDR
    reserved_ips: tuple[str, ...] = DEFAULT_RESERVED_IPS
    persistence: Persistence = field(default_factory=NoPersistence)
    revision: int = 0
    objects: dict[ObjectKey, StoredObject] = field(default_factory=dict)
    pods: dict[tuple[str, str], ReportedPod] = field(default_factory=dict)
    # while re-loading persisted objects the waypoint controller does not run (its objects were
    # persisted too); load_persisted runs it once afterwards
    _loading: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        for ns in SYSTEM_NAMESPACES:
            meta = ObjectMeta(name=ns, namespace="")
            doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            self.objects[("Namespace", "", ns)] = StoredObject(Namespace(meta=meta), doc, "<built-in>", 0)

    # --- reading -------------------------------------------------------------------------

    def snapshot(self) -> StoreSnapshot:
        return StoreSnapshot(self.revision, dict(self.objects), dict(self.pods))

    # --- applying ------------------------------------------------------------------------

    def apply_text(self, text: str, source: str, *, delete: bool = False, dry_run: bool = False) -> list[Result]:
        """Validate every document in ``text`` and apply (or delete) the valid ones; the
        invalid ones are refused one by one and the rest of the config is untouched."""
        loaded = load_documents(text, source, kinds=ALL_KINDS)
        results: list[Result] = [Result(object=source, warning=w) for w in loaded.warnings]
        results += [Result(object=source, skipped=str(s)) for s in loaded.skipped]
        results += [Result(object=source, error=str(e)) for e in loaded.failures]
        items = list(_loaded_items(loaded))
        if delete:
            items.sort(key=lambda item: item[0].kind == "Namespace")  # contents first
        for obj, document in items:
            ref = kubectl_ref(obj)
            try:
                if delete:
                    outcome, notes = self._delete(obj, dry_run=dry_run)
                else:
                    outcome, notes = self._apply(obj, document, source, dry_run=dry_run)
                results.append(Result(object=ref, result=outcome))
                results += [Result(object=ref, warning=f"{ref}: {note}") for note in notes]
            except StoreError as exc:
                results.append(Result(object=ref, error=f"{ref}: {exc}"))
        return results

    def apply(self, obj: Any, document: Mapping[str, Any], source: str, *, dry_run: bool = False) -> str:
        return self._apply(obj, document, source, dry_run=dry_run)[0]

    def delete(self, obj: Any, *, dry_run: bool = False) -> str:
        return self._delete(obj, dry_run=dry_run)[0]

    def _apply(
        self, obj: Any, document: Mapping[str, Any], source: str, *, dry_run: bool
    ) -> tuple[str, list[str]]:
        """The outcome and notes for the user (warnings) of applying one object."""
        kept = self._kept_by_controller(object_key(obj), obj)
        if kept:
            return "unchanged", kept
        key, obj, document, old = self._prepare(obj, document)
        outcome = "unchanged" if old is not None and old.obj == obj else "configured" if old is not None else "created"
        plan: list[_Planned] = []
        gone: list[ObjectKey] = []
        notes: list[str] = []
        if key[0] == GATEWAY_KEY and not self._loading:
            plan, gone, notes = self._plan_waypoint(obj)
        if dry_run:
            return outcome, notes
        if outcome != "unchanged":
            self._commit(key, obj, document, source)
        self._carry_out(plan, gone)
        return outcome, notes

    def _delete(self, obj: Any, *, dry_run: bool) -> tuple[str, list[str]]:
        key = object_key(obj)
        if key not in self.objects:
            kind = obj.kind.lower() + "s"
            where = f' in namespace "{key[1]}"' if key[1] else ""
            raise StoreError(f'{kind} "{key[2]}" not found{where}')
        if obj.kind == "Namespace" and key[2] in SYSTEM_NAMESPACES:
            raise StoreError(f'namespaces "{key[2]}" is forbidden: this namespace may not be deleted')
        kept = self._kept_by_controller(key, obj)
        if kept:
            return "unchanged", kept
        if dry_run:
            return "deleted", []
        self.revision += 1
        doomed = [key]
        if obj.kind == "Namespace":
            doomed += [k for k in self.objects if k[1] == key[2] and k[0] != "Namespace"]
        elif key[0] == GATEWAY_KEY:
            doomed += self._owned_by(key[1], key[2])
        for k in doomed:
            if self.objects.pop(k, None) is not None:
                self.persistence.remove(k)
        return "deleted", []

    def _prepare(
        self, obj: Any, document: Mapping[str, Any]
    ) -> tuple[ObjectKey, Any, Mapping[str, Any], StoredObject | None]:
        """Checks an object against the store (namespace, ClusterIP) without changing it."""
        key = object_key(obj)
        ns = obj.meta.namespace
        if obj.kind != "Namespace" and ("Namespace", "", ns) not in self.objects:
            raise StoreError(f'namespaces "{ns}" not found')
        old = self.objects.get(key)
        if isinstance(obj, Service):
            obj, document = self._with_cluster_ip(key, obj, document, old)
        return key, obj, document, old

    def _commit(self, key: ObjectKey, obj: Any, document: Mapping[str, Any], source: str) -> None:
        self.revision += 1
        self.objects[key] = StoredObject(obj, document, source, self.revision)
        self.persistence.save(key, document, source)

    # --- the waypoint controller ---------------------------------------------------------------

    def _manager(self, key: ObjectKey) -> str | None:
        """``ns/name`` of the waypoint Gateway whose controller owns the object at ``key``."""
        stored = self.objects.get(key)
        owner = gatewaydeploy.owner_of(stored.source) if stored is not None else None
        if owner is None:
            return None
        gateway = self.objects.get((GATEWAY_KEY, *owner))
        if gateway is None or not gatewaydeploy.is_waypoint(gateway.obj):
            return None
        return f"{owner[0]}/{owner[1]}"

    def _kept_by_controller(self, key: ObjectKey, obj: Any) -> list[str]:
        """A note when the object at ``key`` is the waypoint controller's (it stays as is)."""
        manager = None if self._loading else self._manager(key)
        if manager is None:
            return []
        return [f"{obj.kind} {key[1]}/{key[2]} is managed by the waypoint controller for Gateway {manager} "
                "and was left as it is; change or delete the Gateway instead"]

    def _owned_by(self, namespace: str, name: str) -> list[ObjectKey]:
        source = gatewaydeploy.controller_source(namespace, name)
        return [k for k, s in self.objects.items() if s.source == source]

    def _plan_waypoint(self, gateway: Any) -> tuple[list[_Planned], list[ObjectKey], list[str]]:
        """What the waypoint controller does for ``gateway`` (any Gateway API Gateway): the
        objects to create or update, those to delete, and notes for the user. Raises
        :class:`StoreError` (naming the derived object) when one cannot be made."""
        ns, name = gateway.meta.namespace, gateway.meta.name
        source = gatewaydeploy.controller_source(ns, name)
        plan: list[_Planned] = []
        notes: list[str] = []
        if gatewaydeploy.is_waypoint(gateway):
            try:
                wanted = gatewaydeploy.waypoint_objects(gateway)
            except gatewaydeploy.WaypointDeployError as exc:
                raise StoreError(f"the waypoint's objects cannot be made: {exc}") from None
            for made, made_document in wanted:
                try:
                    key, derived, document, old = self._prepare(made, made_document)
                except StoreError as exc:
                    raise StoreError(f"the waypoint's {made.kind} {ns}/{name} cannot be made: {exc}") from None
                if old is not None and old.source == source and old.obj == derived and old.document == document:
                    plan.append(_Planned(key, derived, document, source, changed=False))
                    continue
                if old is not None and old.source != source:
                    notes.append(f"the waypoint controller took over {made.kind} {ns}/{name} (applied from "
                                 f"{old.source}); it now manages it")
                plan.append(_Planned(key, derived, document, source, changed=True))
        planned = {p.key for p in plan}
        gone = [k for k in self._owned_by(ns, name) if k not in planned]
        return plan, gone, notes

    def _carry_out(self, plan: Iterable[_Planned], gone: Iterable[ObjectKey]) -> None:
        for p in plan:
            if p.changed:
                self._commit(p.key, p.obj, p.document, p.source)
        for key in gone:
            if self.objects.pop(key, None) is not None:
                self.revision += 1
                self.persistence.remove(key)

    def reconcile_waypoints(self) -> list[str]:
        """Run the waypoint controller over every Gateway: create or update the objects of each
        waypoint, delete those whose Gateway is gone or no longer a waypoint. Returns problems."""
        problems = []
        for key, stored in list(self.objects.items()):
            if key[0] != GATEWAY_KEY:
                continue
            try:
                plan, gone, _ = self._plan_waypoint(stored.obj)
            except StoreError as exc:
                problems.append(f"{kubectl_ref(stored.obj)}: {exc}")
                plan, gone = [], self._owned_by(key[1], key[2])
            self._carry_out(plan, gone)
        orphans = []
        for key, stored in self.objects.items():
            owner = gatewaydeploy.owner_of(stored.source)
            if owner is not None and (GATEWAY_KEY, *owner) not in self.objects:
                orphans.append(key)
        self._carry_out([], orphans)
        return problems

    def _with_cluster_ip(
        self, key: ObjectKey, svc: Service, document: Mapping[str, Any], old: StoredObject | None
    ) -> tuple[Service, Mapping[str, Any]]:
        if svc.headless:
            if old is not None and not old.obj.headless:
                raise StoreError('spec.clusterIP: Invalid value: "None": field is immutable')
            return svc, document
        current = old.obj.cluster_ip if old is not None and not old.obj.headless else None
        if old is not None and old.obj.headless:
            raise StoreError(f'spec.clusterIP: Invalid value: "{svc.cluster_ip or ""}": field is immutable')
        if current is not None and svc.cluster_ip and svc.cluster_ip != current:
            raise StoreError(f'spec.clusterIP: Invalid value: "{svc.cluster_ip}": field is immutable')
        ip = current
        if ip is None:
            taken = [
                s.obj.cluster_ip for k, s in self.objects.items()
                if k[0] == "Service" and k != key and s.obj.cluster_ip
            ]
            try:
                ip = clusterip.allocate(key[1], key[2], svc.cluster_ip, taken, self.service_cidr, self.reserved_ips)
            except clusterip.ClusterIPError as exc:
                raise StoreError(str(exc)) from None
        doc = copy.deepcopy(dict(document))
        doc.setdefault("spec", {})["clusterIP"] = ip
        return dataclasses.replace(svc, cluster_ip=ip), doc

    # --- pods from the kubelet -------------------------------------------------------------

    def report_pods(
        self, reporter: str, pods: Iterable[ReportedPod], removed: Iterable[tuple[str, str]], *, full: bool
    ) -> bool:
        """Take a kubelet's pod report; returns whether anything changed."""
        before = self.pods
        after = dict(before)
        if full:
            after = {k: p for k, p in after.items() if p.reporter != reporter}
        for key in removed:
            after.pop(key, None)
        for pod in pods:
            after[(pod.namespace, pod.name)] = pod
        if after == before:
            return False
        self.pods = after
        self.revision += 1
        return True

    # --- loading persisted state -------------------------------------------------------------

    def load_persisted(self, entries: Iterable[tuple[Mapping[str, Any], str]]) -> list[str]:
        """Re-validate and re-apply persisted documents (namespaces first); returns problems."""
        problems = []
        ordered = sorted(entries, key=lambda e: e[0].get("kind") != "Namespace")
        self._loading = True
        try:
            for document, source in ordered:
                for res in self.apply_text(json.dumps(document), source):
                    if res.error or res.skipped:
                        problems.append(res.error or res.skipped)
        finally:
            self._loading = False
        return problems + self.reconcile_waypoints()


@dataclass(frozen=True, slots=True)
class _Planned:
    """An object the waypoint controller applies (``changed=False``: already as wanted)."""

    key: ObjectKey
    obj: Any
    document: Mapping[str, Any]
    source: str
    changed: bool


def _loaded_items(loaded: LoadResult) -> Iterable[tuple[Any, Mapping[str, Any]]]:
    for item in loaded.items:
        yield item.obj, item.document


__all__ = ["ConfigStore", "K8sError", "ReportedPod", "Result", "StoreError", "StoreSnapshot", "StoredObject"]
