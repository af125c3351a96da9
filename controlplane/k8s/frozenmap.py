"""``FrozenMap``: the immutable, hashable ``str -> str`` mapping used for labels and annotations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

__all__ = ["FrozenMap", "freeze"]


class FrozenMap(Mapping[str, str]):
    """An immutable mapping from strings to strings; equal to any mapping with the same items."""

    __slots__ = ("_data", "_hash")

    _data: dict[str, str]
    _hash: int | None

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = (), /) -> None:
        self._data = dict(items)
        self._hash = None

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
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
        if isinstance(other, FrozenMap):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def freeze(value: Mapping[str, str] | None) -> FrozenMap:
    """Return ``value`` as a ``FrozenMap`` (the same object when it already is one)."""
    if isinstance(value, FrozenMap):
        return value
    return FrozenMap(value or {})
