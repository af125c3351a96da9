"""Loading Kubernetes manifests: a multi-document YAML stream in, typed objects out.

``load_documents`` never raises for bad input: each document that is not valid YAML, is too
large, breaks a rule or is of a kind not handled here becomes one entry of
``LoadResult.errors`` (naming the file, document and object) and the other documents still
load. ``kind: List`` (and typed lists such as ``DeploymentList``) are expanded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from controlplane.k8s.errors import InvalidObject, K8sError, UnsupportedKind
from controlplane.k8s.objects import K8sObject
from controlplane.k8s.parse import parse_object
from controlplane.k8s.yamlstream import Document, iter_documents

__all__ = ["LoadResult", "load_documents", "parse_object"]


@dataclass(slots=True)
class LoadResult:
    """What a stream held: objects in document order, errors, and warnings (all operator text).

    ``errors`` holds ``YamlError``, ``LimitExceeded``, ``InvalidObject`` and
    ``UnsupportedKind`` (the last is usually reported as "skipped", not as a failure).
    """

    objects: list[K8sObject] = field(default_factory=list)
    errors: list[K8sError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

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


def load_documents(text: str, source: str, default_namespace: str = "default") -> LoadResult:
    """Parse and validate every document of ``text``; ``source`` names it in messages.

    Objects without ``metadata.namespace`` are put in ``default_namespace``.
    """
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
            try:
                result.objects.append(
                    parse_object(doc[0], doc[1], default_namespace, result.warnings)
                )
            except K8sError as error:
                result.errors.append(error)
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
