"""Typed, path-tracking access to one decoded document.

A ``Reader`` knows which object it is reading (kind, name, source), so every check it makes
can fail with an ``InvalidObject`` that names the object, the field path and the rule, and
every unknown field becomes a warning naming its full path. YAML ``null`` is treated as
"absent", as the Kubernetes API server does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from controlplane.k8s.errors import NO_VALUE, InvalidObject, describe_object, format_value
from controlplane.k8s.fields import KNOWN_FIELDS
from controlplane.k8s.frozenmap import FrozenMap
from controlplane.k8s.limits import MAX_ANNOTATIONS_BYTES, MAX_INT32
from controlplane.k8s.names import check_label_value, check_qualified_name

__all__ = ["Reader", "item", "sub"]


def sub(path: str, key: str) -> str:
    """``spec`` + ``replicas`` -> ``spec.replicas``."""
    return f"{path}.{key}" if path else key


def item(path: str, index: int | str) -> str:
    """``spec.ports`` + 0 -> ``spec.ports[0]``; map keys the same way (``labels[app]``)."""
    return f"{path}[{index}]"


_SCALAR_HINT = " (quote it in YAML)"


class Reader:
    """Reads fields of one object; failures raise ``InvalidObject``, oddities become warnings."""

    __slots__ = ("_warnings", "kind", "name", "source")

    def __init__(self, kind: str, name: str, source: str, warnings: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.source = source
        self._warnings = warnings

    # --- reporting ----------------------------------------------------------------------
    def fail(self, field: str, rule: str, value: object = NO_VALUE) -> NoReturn:
        raise InvalidObject(self.kind, self.name, field, rule, self.source, value)

    def warn(self, message: str) -> None:
        self._warnings.append(f"{describe_object(self.kind, self.name, self.source)}: {message}")

    def check(self, field: str, value: str, check: Callable[[str], str | None]) -> str:
        """Apply a ``names.check_*`` rule; return ``value`` when it passes."""
        rule = check(value)
        if rule is not None:
            self.fail(field, rule, value)
        return value

    # --- structure ----------------------------------------------------------------------
    def mapping(self, value: object, path: str, level: str) -> Mapping[str, object]:
        """An object-like mapping whose fields are those of Kubernetes type ``level``.

        ``None`` reads as empty; unknown fields are warned about and dropped.
        """
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping", value)
        known = KNOWN_FIELDS[level]
        result: dict[str, object] = {}
        for key, field_value in value.items():
            if isinstance(key, str) and key in known:
                result[key] = field_value
            else:
                shown = key if isinstance(key, str) else format_value(key)
                self.warn(f"unknown field {sub(path, shown)}")
        return result

    def required(self, parent: Mapping[str, object], key: str, path: str) -> object:
        value = parent.get(key)
        if value is None:
            self.fail(sub(path, key), "is required")
        return value

    def sequence(self, value: object, path: str) -> Sequence[object]:
        """A list; ``None`` reads as empty."""
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            self.fail(path, "must be a list", value)
        return value

    # --- scalars ------------------------------------------------------------------------
    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            hint = _SCALAR_HINT if isinstance(value, (bool, int, float)) else ""
            self.fail(path, f"must be a string{hint}", value)
        return value

    def required_string(self, parent: Mapping[str, object], key: str, path: str) -> str:
        value = self.string(self.required(parent, key, path), sub(path, key))
        if not value:
            self.fail(sub(path, key), "is required (it is empty)")
        return value

    def optional_string(self, parent: Mapping[str, object], key: str, path: str) -> str | None:
        """A string field; absent, ``null`` and ``""`` all read as ``None``."""
        value = parent.get(key)
        if value is None:
            return None
        return self.string(value, sub(path, key)) or None

    def integer(self, value: object, path: str, minimum: int, maximum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, _range_rule(minimum, maximum, None), value)
        if not minimum <= value <= maximum:
            self.fail(path, _range_rule(minimum, maximum, value), value)
        return value

    def optional_integer(
        self,
        parent: Mapping[str, object],
        key: str,
        path: str,
        minimum: int,
        maximum: int,
        default: int,
    ) -> int:
        value = parent.get(key)
        if value is None:
            return default
        return self.integer(value, sub(path, key), minimum, maximum)

    def choice(
        self,
        parent: Mapping[str, object],
        key: str,
        path: str,
        choices: Sequence[str],
        default: str,
    ) -> str:
        value = self.optional_string(parent, key, path)
        if value is None:
            return default
        if value not in choices:
            self.fail(sub(path, key), f"must be one of {', '.join(choices)}", value)
        return value

    def strings(self, value: object, path: str) -> tuple[str, ...]:
        """A list of strings (``command``, ``args``...); ``None`` reads as empty."""
        return tuple(
            self.string(element, item(path, index))
            for index, element in enumerate(self.sequence(value, path))
        )

    # --- label-like maps ----------------------------------------------------------------
    def labels(self, value: object, path: str) -> FrozenMap:
        """Labels or a label selector map: qualified-name keys, label-value values."""
        pairs = self._string_map(value, path, "label")
        for key, label in pairs.items():
            self.check(item(path, key), label, check_label_value)
        return FrozenMap(pairs)

    def annotations(self, value: object, path: str) -> FrozenMap:
        pairs = self._string_map(value, path, "annotation")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in pairs.items())
        if size > MAX_ANNOTATIONS_BYTES:
            self.fail(
                path,
                f"annotations may total at most {MAX_ANNOTATIONS_BYTES} bytes "
                f"(keys and values), these total {size}",
            )
        return FrozenMap(pairs)

    def _string_map(self, value: object, path: str, what: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of {what} keys to values", value)
        pairs: dict[str, str] = {}
        for key, element in value.items():
            if not isinstance(key, str):
                self.fail(path, f"{what} keys must be strings{_SCALAR_HINT}", key)
            rule = check_qualified_name(key)
            if rule is not None:
                self.fail(path, f"invalid {what} key: {rule}", key)
            if element is None:
                element = ""  # as the API server decodes null into a string
            if not isinstance(element, str):
                hint = _SCALAR_HINT if isinstance(element, (bool, int, float)) else ""
                self.fail(item(path, key), f"{what} values must be strings{hint}", element)
            pairs[key] = element
        return pairs


def _range_rule(minimum: int, maximum: int, value: int | None) -> str:
    if maximum >= MAX_INT32 and (value is None or value < minimum):
        return f"must be an integer >= {minimum}"
    return f"must be an integer between {minimum} and {maximum}"
