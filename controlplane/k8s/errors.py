"""The exception hierarchy of the Kubernetes object layer, with messages written for an operator.

Every error names where the problem is (file, document, field) and what rule was broken.
The loader never raises these for bad input: it collects them in ``LoadResult.errors``.
``parse_object`` raises ``InvalidObject`` and ``UnsupportedKind``.
"""

from __future__ import annotations

import json
from typing import Final

__all__ = [
    "NO_VALUE",
    "InvalidObject",
    "K8sError",
    "LimitExceeded",
    "UnsupportedKind",
    "YamlError",
    "describe_object",
    "format_value",
]


class _NoValue:
    """Marker for "no offending value to show" (distinct from a YAML ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE: Final = _NoValue()

_MAX_SHOWN_CHARS: Final = 80


def format_value(value: object) -> str:
    """Render a decoded YAML value the way an operator wrote it: JSON-ish, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (dict, list, tuple)):
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return "a mapping" if isinstance(value, dict) else "a list"
    else:
        text = f"{type(value).__name__} {value!s}"
    if len(text) > _MAX_SHOWN_CHARS:
        text = text[: _MAX_SHOWN_CHARS - 3] + "..."
    return text


class K8sError(Exception):
    """Base class of every error this package reports."""


class InvalidObject(K8sError):
    """A document that is a Kubernetes object of a handled kind, but breaks a rule.

    ``name`` is ``namespace/name`` (or ``name`` for cluster-scoped objects, or ``""`` when
    the document has no usable name); ``field`` is a path such as
    ``spec.template.spec.containers[0].ports[0].containerPort`` (``""`` for the document
    itself); ``source`` says where the document came from (``file, document N``).
    """

    kind: str
    name: str
    field: str
    rule: str
    source: str
    value: object
    has_value: bool

    def __init__(
        self,
        kind: str,
        name: str,
        field: str,
        rule: str,
        source: str = "",
        value: object = NO_VALUE,
    ) -> None:
        self.kind = kind
        self.name = name
        self.field = field
        self.rule = rule
        self.source = source
        self.has_value = value is not NO_VALUE
        self.value = None if value is NO_VALUE else value
        super().__init__(self._message(value))

    def _message(self, value: object) -> str:
        subject = describe_object(self.kind, self.name, self.source)
        text = f"{self.field}: {self.rule}" if self.field else self.rule
        if value is not NO_VALUE:
            text += f", got {format_value(value)}"
        return f"{subject}: {text}"


class UnsupportedKind(K8sError):
    """A well-formed object of a kind this layer does not handle (ConfigMap, Istio CRDs, ...).

    Callers usually report it as "skipped" rather than as a failure.
    """

    api_version: str
    kind: str
    name: str
    source: str

    def __init__(self, api_version: str, kind: str, name: str, source: str = "") -> None:
        self.api_version = api_version
        self.kind = kind
        self.name = name
        self.source = source
        subject = describe_object(kind, name, source)
        super().__init__(f"{subject}: kind {kind} (apiVersion {api_version}) is not supported here")

    @property
    def apiVersion(self) -> str:  # the Kubernetes spelling
        return self.api_version


class YamlError(K8sError):
    """Text that is not valid YAML (or uses YAML features refused here, e.g. custom tags).

    ``line`` and ``column`` are 1-based, from PyYAML's mark, when known.
    """

    file: str
    problem: str
    line: int | None
    column: int | None
    document: int | None

    def __init__(
        self,
        file: str,
        problem: str,
        line: int | None = None,
        column: int | None = None,
        document: int | None = None,
    ) -> None:
        self.file = file
        self.problem = problem
        self.line = line
        self.column = column
        self.document = document
        where = file
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        text = f"{where}: invalid YAML: {problem}"
        if document is not None:
            text += f" (in document {document})"
        super().__init__(text)


class LimitExceeded(K8sError):
    """Input refused because it is too large or too deeply nested (see ``limits``)."""

    source: str
    limit: str
    maximum: int

    def __init__(self, source: str, what: str, limit: str, maximum: int) -> None:
        self.source = source
        self.limit = limit
        self.maximum = maximum
        super().__init__(f"{source}: {what}; the limit is {maximum} ({limit})")


def describe_object(kind: str, name: str, source: str) -> str:
    """``Deployment default/reviews-v1 (bookinfo.yaml, document 7)``."""
    if len(name) > _MAX_SHOWN_CHARS:
        name = name[: _MAX_SHOWN_CHARS - 3] + "..."
    subject = kind or "object"
    subject += f" {name}" if name else " (unnamed)"
    if source:
        subject += f" ({source})"
    return subject
