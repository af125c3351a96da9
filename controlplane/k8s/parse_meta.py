"""Reading ``metadata`` and label selectors, with Kubernetes' rules for names, namespaces,
labels, annotations and ``matchLabels``/``matchExpressions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controlplane.k8s.names import check_dns1123_label, check_label_value, check_qualified_name
from controlplane.k8s.objects import SELECTOR_OPERATORS, LabelSelector, ObjectMeta, Requirement
from controlplane.k8s.reader import Reader, item, sub

__all__ = ["read_label_selector", "read_metadata"]


def read_metadata(
    r: Reader,
    doc: Mapping[str, object],
    *,
    check_name: Callable[[str], str | None],
    namespaced: bool,
    default_namespace: str,
) -> ObjectMeta:
    """``metadata`` of a top-level object; the namespace defaults to ``default_namespace``."""
    meta = r.mapping(doc.get("metadata"), "metadata", "ObjectMeta")
    name = r.check("metadata.name", r.required_string(meta, "name", "metadata"), check_name)
    if namespaced:
        namespace = r.optional_string(meta, "namespace", "metadata") or default_namespace
        r.check("metadata.namespace", namespace, check_dns1123_label)
    else:
        if r.optional_string(meta, "namespace", "metadata") is not None:
            r.warn(f"metadata.namespace is ignored: a {r.kind} is not namespaced")
        namespace = ""
    return ObjectMeta(
        name=name,
        namespace=namespace,
        labels=r.labels(meta.get("labels"), "metadata.labels"),
        annotations=r.annotations(meta.get("annotations"), "metadata.annotations"),
    )


def read_label_selector(r: Reader, value: object, path: str) -> LabelSelector:
    """A ``metav1.LabelSelector``: ``matchLabels`` and ``matchExpressions``."""
    selector = r.mapping(value, path, "LabelSelector")
    match_labels = r.labels(selector.get("matchLabels"), sub(path, "matchLabels"))
    expressions_path = sub(path, "matchExpressions")
    requirements: list[Requirement] = []
    for index, entry in enumerate(r.sequence(selector.get("matchExpressions"), expressions_path)):
        requirements.append(_read_requirement(r, entry, item(expressions_path, index)))
    return LabelSelector(match_labels=match_labels, match_expressions=tuple(requirements))


def _read_requirement(r: Reader, value: object, path: str) -> Requirement:
    if value is None:
        r.fail(path, "must be a mapping with key, operator and values")
    entry = r.mapping(value, path, "LabelSelectorRequirement")
    key = r.check(sub(path, "key"), r.required_string(entry, "key", path), check_qualified_name)
    operator = r.required_string(entry, "operator", path)
    if operator not in SELECTOR_OPERATORS:
        r.fail(sub(path, "operator"), f"must be one of {', '.join(SELECTOR_OPERATORS)}", operator)
    values_path = sub(path, "values")
    values = r.strings(entry.get("values"), values_path)
    for index, label_value in enumerate(values):
        r.check(item(values_path, index), label_value, check_label_value)
    if operator in ("In", "NotIn") and not values:
        r.fail(values_path, f"must list at least one value when the operator is {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        r.fail(values_path, f"must be empty when the operator is {operator}", list(values))
    return Requirement(key=key, operator=operator, values=values)
