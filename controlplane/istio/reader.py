"""``IstioReader``: the Kubernetes package's path-tracking ``Reader`` extended with Istio's
field tables and the value types Istio configuration uses (booleans, numbers, durations,
percentages, string lists and maps, one-of groups).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controlplane.istio.durations import Duration, parse_duration
from controlplane.istio.fields import ISTIO_FIELDS
from controlplane.istio.frozendict import FrozenDict
from controlplane.k8s.errors import format_value
from controlplane.k8s.limits import MAX_INT32
from controlplane.k8s.reader import Reader, item, sub

__all__ = ["IstioReader", "item", "sub"]

_HINT = " (quote it in YAML)"


class IstioReader(Reader):
    """A ``Reader`` that knows Istio's and the Gateway API's field tables."""

    __slots__ = ()

    def mapping(self, value: object, path: str, level: str) -> Mapping[str, object]:
        known = ISTIO_FIELDS.get(level)
        if known is None:
            return super().mapping(value, path, level)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping", value)
        result: dict[str, object] = {}
        for key, field_value in value.items():
            if isinstance(key, str) and key in known:
                result[key] = field_value
            else:
                shown = key if isinstance(key, str) else format_value(key)
                self.warn(f"unknown field {sub(path, shown)}")
        return result

    # --- scalars ------------------------------------------------------------------------
    def boolean(self, parent: Mapping[str, object], key: str, path: str) -> bool | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(sub(path, key), "must be true or false", value)
        return value

    def opt_int(
        self,
        parent: Mapping[str, object],
        key: str,
        path: str,
        minimum: int = 0,
        maximum: int = MAX_INT32,
    ) -> int | None:
        value = parent.get(key)
        if value is None:
            return None
        return self.integer(value, sub(path, key), minimum, maximum)

    def number(self, value: object, path: str, minimum: float, maximum: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"must be a number between {minimum:g} and {maximum:g}", value)
        number = float(value)
        if not minimum <= number <= maximum:  # also refuses NaN
            self.fail(path, f"must be a number between {minimum:g} and {maximum:g}", value)
        return number

    def opt_str(self, parent: Mapping[str, object], key: str, path: str) -> str | None:
        return self.optional_string(parent, key, path)

    def duration(
        self,
        parent: Mapping[str, object],
        key: str,
        path: str,
        *,
        allow_zero: bool = False,
    ) -> Duration | None:
        """A duration; Istio requires at least 1ms (``allow_zero`` also accepts exactly 0)."""
        value = parent.get(key)
        if value is None:
            return None
        field = sub(path, key)
        if not isinstance(value, str):
            self.fail(field, 'must be a duration string such as "1.5s", "100ms" or "1h2m"', value)
        parsed = parse_duration(value)
        if parsed is None:
            self.fail(field, 'must be a duration such as "1.5s", "100ms" or "1h2m"', value)
        if parsed.seconds == 0 and allow_zero:
            return parsed
        if parsed.seconds < 0.001:
            self.fail(field, "duration must be at least 1ms", value)
        if abs(parsed.seconds * 1000 - round(parsed.seconds * 1000)) > 1e-6:
            self.fail(field, "only durations to millisecond precision are supported", value)
        return parsed

    def percentage(self, parent: Mapping[str, object], key: str, path: str) -> float | None:
        """An Istio ``Percent`` (``{value: 12.5}``) between 0 and 100."""
        value = parent.get(key)
        if value is None:
            return None
        field = sub(path, key)
        fields = self.mapping(value, field, "Percent")
        raw = fields.get("value")
        if raw is None:
            return 0.0
        return self.number(raw, sub(field, "value"), 0.0, 100.0)

    # --- collections --------------------------------------------------------------------
    def string_list(
        self,
        parent: Mapping[str, object],
        key: str,
        path: str,
        *,
        non_empty: bool = False,
    ) -> tuple[str, ...]:
        """A list of strings; with ``non_empty`` each element must be a non-empty string."""
        field = sub(path, key)
        values = self.strings(parent.get(key), field)
        if non_empty:
            for index, value in enumerate(values):
                if not value:
                    self.fail(item(field, index), "must not be empty")
        return values

    def string_map(self, value: object, path: str) -> FrozenDict[str, str]:
        """A mapping of strings to strings (header names to values, claims...)."""
        if value is None:
            return FrozenDict()
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping of strings to strings", value)
        pairs: dict[str, str] = {}
        for key, element in value.items():
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings{_HINT}", key)
            if not isinstance(element, str):
                hint = _HINT if isinstance(element, (bool, int, float)) else ""
                self.fail(item(path, key), f"must be a string{hint}", element)
            pairs[key] = element
        return FrozenDict(pairs)

    def string_keyed(self, value: object, path: str) -> Sequence[tuple[str, object]]:
        """The items of a mapping with string keys (a map of objects)."""
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping", value)
        pairs: list[tuple[str, object]] = []
        for key, element in value.items():
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings{_HINT}", key)
            pairs.append((key, element))
        return pairs

    def one_of(self, parent: Mapping[str, object], keys: Sequence[str], path: str) -> str | None:
        """The one of ``keys`` that is set (not null), refusing more than one."""
        present = [key for key in keys if parent.get(key) is not None]
        if len(present) > 1:
            where = sub(path, present[1]) if path or present[1] else path
            self.fail(
                where,
                f"only one of {', '.join(keys)} may be set (found {' and '.join(present)})",
            )
        return present[0] if present else None
