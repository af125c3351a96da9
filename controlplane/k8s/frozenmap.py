"""Immutable, hashable mappings: ``FrozenDict`` (any key and value types) and ``FrozenMap``,
the ``str -> str`` one used for labels and annotations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["FrozenDict", "FrozenMap", "freeze"]

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
        return f"{type(self).__name__}({self._data!r})"


class FrozenMap(FrozenDict[str, str]):
    """An immutable mapping from strings to strings (labels, annotations, selectors)."""

    __slots__ = ()


def freeze(value: Mapping[str, str] | None) -> FrozenMap:
    """Return ``value`` as a ``FrozenMap`` (the same object when it already is one)."""
    if isinstance(value, FrozenMap):
        return value
    return FrozenMap(value or {})
