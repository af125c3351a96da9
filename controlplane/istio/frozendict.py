"""Immutable, hashable mappings for the Istio models: ``FrozenDict`` (any key and value types)
and ``freeze_json`` for the few fields kept as raw data (``localityLbSetting``, TLS settings of
Gateway API listeners...).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeAlias, TypeVar

__all__ = ["FrozenDict", "JsonValue", "freeze_json"]

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(Mapping[K, V], Generic[K, V]):
    """An immutable mapping, equal to any mapping with the same items; hashable when its
    values are."""

    __slots__ = ("_data", "_hash")

    _data: dict[K, V]
    _hash: int | None

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = (), /) -> None:
        self._data = dict(items)
        self._hash = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"


JsonValue: TypeAlias = (
    "bool | int | float | str | tuple[JsonValue, ...] | FrozenDict[str, JsonValue] | None"
)
"""Decoded YAML data made immutable: lists become tuples, mappings ``FrozenDict``."""


def freeze_json(value: object) -> JsonValue:
    """Deep-freeze decoded YAML (mapping keys become strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({str(key): freeze_json(element) for key, element in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze_json(element) for element in value)
    return str(value)  # timestamps, bytes: keep their text
