"""Raw data kept immutable in the Istio models: ``freeze_json`` for the few fields kept as raw
data (``localityLbSetting``, TLS settings of
Gateway API listeners...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from controlplane.k8s.frozenmap import FrozenDict

__all__ = ["FrozenDict", "JsonValue", "freeze_json"]

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
