"""Loading Kubernetes manifests: a multi-document YAML stream in, typed objects out.

``load_documents`` never raises for bad input: each document that is not valid YAML, is too
large, breaks a rule or is of a kind not handled here becomes one entry of
``LoadResult.errors`` (naming the file, document and object) and the other documents still
load. ``kind: List`` (and typed lists such as ``DeploymentList``) are expanded.

With ``kinds="all"`` the Istio and Gateway API kinds modelled by ``controlplane.istio``
(VirtualService, DestinationRule, Gateway, ServiceEntry, PeerAuthentication,
AuthorizationPolicy, RequestAuthentication, gateway.networking.k8s.io Gateway, HTTPRoute,
GatewayClass) load too; without it they are reported as unsupported kinds, as before.
Every loaded object comes with the document it was read from (``LoadResult.items``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from controlplane.k8s.errors import InvalidObject, K8sError, UnsupportedKind
from controlplane.k8s.objects import (
    Deployment,
    K8sObject,
    Namespace,
    Pod,
    Service,
    ServiceAccount,
)
from controlplane.k8s.parse import parse_object
from controlplane.k8s.yamlstream import Document, iter_documents

if TYPE_CHECKING:
    from controlplane.istio.objects import AnyObject, MeshObject

__all__ = [
    "ALL_KINDS",
    "KUBERNETES_KINDS",
    "LoadResult",
    "Loaded",
    "load_documents",
    "parse_object",
]

KUBERNETES_KINDS: Final = "kubernetes"
"""``load_documents(kinds=...)``: only the Kubernetes kinds of this package (the default)."""

ALL_KINDS: Final = "all"
"""``load_documents(kinds=...)``: also the Istio and Gateway API kinds of ``controlplane.istio``."""

_K8S_TYPES = (Namespace, ServiceAccount, Service, Deployment, Pod)


@dataclass(frozen=True, slots=True)
class Loaded:
    """One loaded object and the document it was read from.

    ``document`` is the plain decoded data of that object (for a ``List`` item, the item,
    with ``kind``/``apiVersion`` filled in for typed lists), so it can be stored and loaded
    again. Treat it as read-only.
    """

    obj: AnyObject
    document: dict[str, object]


@dataclass(slots=True)
class LoadResult:
    """What a stream held: loaded items in document order, errors, and warnings (all operator
    text).

    ``errors`` holds ``YamlError``, ``LimitExceeded``, ``InvalidObject`` and
    ``UnsupportedKind`` (the last is usually reported as "skipped", not as a failure).
    ``objects`` lists the Kubernetes objects only, ``mesh_objects`` the Istio and Gateway API
    ones, ``all_objects`` both (in document order).
    """

    items: list[Loaded] = field(default_factory=list)
    errors: list[K8sError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def objects(self) -> list[K8sObject]:
        """The Kubernetes objects (Namespace, ServiceAccount, Service, Deployment, Pod)."""
        return [entry.obj for entry in self.items if isinstance(entry.obj, _K8S_TYPES)]

    @property
    def mesh_objects(self) -> list[MeshObject]:
        """The Istio and Gateway API objects (only with ``kinds="all"``)."""
        return [entry.obj for entry in self.items if not isinstance(entry.obj, _K8S_TYPES)]

    @property
    def all_objects(self) -> list[AnyObject]:
        return [entry.obj for entry in self.items]

    @property
    def ok(self) -> bool:
        """No errors at all (unsupported kinds count as errors here)."""
        return not self.errors

    @property
    def skipped(self) -> list[UnsupportedKind]:
        return [error for error in self.errors if isinstance(error, UnsupportedKind)]

    @property
    def failures(self) -> list[K8sError]:
        """Errors other than unsupported kinds."""
        return [error for error in self.errors if not isinstance(error, UnsupportedKind)]


def load_documents(
    text: str,
    source: str,
    default_namespace: str = "default",
    *,
    kinds: str = KUBERNETES_KINDS,
) -> LoadResult:
    """Parse and validate every document of ``text``; ``source`` names it in messages.

    Objects without ``metadata.namespace`` are put in ``default_namespace``. ``kinds`` is
    ``KUBERNETES_KINDS`` (``"kubernetes"``) or ``ALL_KINDS`` (``"all"``: the Istio and
    Gateway API kinds are parsed as well, see the module docstring); other values raise
    ``ValueError``.
    """
    if kinds not in (KUBERNETES_KINDS, ALL_KINDS):
        raise ValueError(f"kinds must be {KUBERNETES_KINDS!r} or {ALL_KINDS!r}, got {kinds!r}")
    parse: Callable[[object, str, str, list[str] | None], AnyObject] = parse_object
    if kinds == ALL_KINDS:
        # imported here: controlplane.istio builds on this package (no import cycle)
        from controlplane.istio.parse import parse_any

        parse = parse_any
    result = LoadResult()
    for entry in iter_documents(text, source, result.warnings.append):
        if isinstance(entry, K8sError):
            result.errors.append(entry)
            continue
        if entry.value is None:
            continue  # an empty document
        for doc in _expand(entry.value, _document_source(source, entry)):
            if isinstance(doc, K8sError):
                result.errors.append(doc)
                continue
            value, doc_source = doc
            try:
                obj = parse(value, doc_source, default_namespace, result.warnings)
            except K8sError as error:
                result.errors.append(error)
                continue
            document = value if isinstance(value, dict) else {}
            if not isinstance(value, dict) and isinstance(value, Mapping):
                document = {str(key): element for key, element in value.items()}
            result.items.append(Loaded(obj, document))
    return result


def _document_source(source: str, document: Document) -> str:
    return f"{source}, document {document.index}"


def _expand(value: object, source: str) -> Iterator[tuple[object, str] | K8sError]:
    """The document itself with its source, or the items of a ``List`` (recursively)."""
    kind = value.get("kind") if isinstance(value, dict) else None
    if not (isinstance(value, dict) and isinstance(kind, str) and kind.endswith("List")):
        yield value, source
        return
    if "items" not in value:
        yield value, source  # not a list after all; parse_object reports the kind
        return
    items = value["items"]
    if items is None:
        return
    if not isinstance(items, list):
        yield InvalidObject(kind, "", "items", "must be a list", source, items)
        return
    item_kind = kind.removesuffix("List")
    api_version = value.get("apiVersion")
    for index, element in enumerate(items):
        if item_kind and isinstance(element, dict) and "kind" not in element:
            # typed lists (DeploymentList...) as the API returns them: items carry no kind
            element = {"kind": item_kind, "apiVersion": api_version, **element}
        yield from _expand(element, f"{source}, items[{index}]")
