"""The control plane's configuration store: the single source of truth.

Plays the API server's part: every object goes through validation (``controlplane.k8s.loader``,
which also covers Istio's and Gateway API kinds), namespaced objects need their namespace,
Services get a ClusterIP, and an invalid object is refused without touching the rest. Pods
are not applied by users: the lab's kubelet reports them (with their IPs) through
:meth:`ConfigStore.report_pods`.

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

from controlplane.k8s import clusterip
from controlplane.k8s.errors import K8sError
from controlplane.k8s.loader import ALL_KINDS, LoadResult, load_documents
from controlplane.k8s.objects import Namespace, ObjectMeta, Service

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_RESERVED_IPS = ("10.96.0.10",)  # kube-dns
SYSTEM_NAMESPACES = ("default", "kube-system", "istio-system")

ObjectKey = tuple[str, str, str]  # (kind key, namespace, name)


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
                    outcome = self.delete(obj, dry_run=dry_run)
                else:
                    outcome = self.apply(obj, document, source, dry_run=dry_run)
                results.append(Result(object=ref, result=outcome))
            except StoreError as exc:
                results.append(Result(object=ref, error=f"{ref}: {exc}"))
        return results

    def apply(self, obj: Any, document: Mapping[str, Any], source: str, *, dry_run: bool = False) -> str:
        key = object_key(obj)
        ns = obj.meta.namespace
        if obj.kind != "Namespace" and ("Namespace", "", ns) not in self.objects:
            raise StoreError(f'namespaces "{ns}" not found')
        old = self.objects.get(key)
        if isinstance(obj, Service):
            obj, document = self._with_cluster_ip(key, obj, document, old)
        if old is not None and old.obj == obj:
            return "unchanged"
        if not dry_run:
            self.revision += 1
            self.objects[key] = StoredObject(obj, document, source, self.revision)
            self.persistence.save(key, document, source)
        return "configured" if old is not None else "created"

    def delete(self, obj: Any, *, dry_run: bool = False) -> str:
        key = object_key(obj)
        if key not in self.objects:
            kind = obj.kind.lower() + "s"
            where = f' in namespace "{key[1]}"' if key[1] else ""
            raise StoreError(f'{kind} "{key[2]}" not found{where}')
        if obj.kind == "Namespace" and key[2] in SYSTEM_NAMESPACES:
            raise StoreError(f'namespaces "{key[2]}" is forbidden: this namespace may not be deleted')
        if dry_run:
            return "deleted"
        self.revision += 1
        doomed = [key]
        if obj.kind == "Namespace":
            doomed += [k for k in self.objects if k[1] == key[2] and k[0] != "Namespace"]
        for k in doomed:
            del self.objects[k]
            self.persistence.remove(k)
        return "deleted"

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
        for document, source in ordered:
            for res in self.apply_text(json.dumps(document), source):
                if res.error or res.skipped:
                    problems.append(res.error or res.skipped)
        return problems


def _loaded_items(loaded: LoadResult) -> Iterable[tuple[Any, Mapping[str, Any]]]:
    for item in loaded.items:
        yield item.obj, item.document


__all__ = ["ConfigStore", "K8sError", "ReportedPod", "Result", "StoreError", "StoreSnapshot", "StoredObject"]
