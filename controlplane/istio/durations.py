"""Durations as Istio accepts them: Go/protobuf duration text such as ``"1.5s"``, ``"100ms"``,
``"1h2m"``, ``"300us"``, parsed to seconds, with the original text kept for messages.

Gateway API durations are stricter (``^([0-9]{1,5}(h|m|s|ms)){1,4}$``, GEP-2257); see
``parse_gateway_api_duration``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["Duration", "parse_duration", "parse_gateway_api_duration"]

_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GATEWAY_API: Final = re.compile(r"([0-9]{1,5}(h|m|s|ms)){1,4}")
_MAX_TEXT: Final = 64


@dataclass(frozen=True, slots=True)
class Duration:
    """A parsed duration: ``seconds`` (may be 0, never negative here) and the ``text`` written."""

    seconds: float
    text: str

    @property
    def milliseconds(self) -> float:
        return self.seconds * 1000.0

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration | None:
    """Parse Istio duration text; ``None`` when it is not a duration.

    Accepts a sequence of ``<decimal><unit>`` (units ``h m s ms us µs ns``), an optional
    leading ``+``, and a bare ``0``. Negative durations are refused (no Istio field takes one).
    """
    if not isinstance(text, str) or not text or len(text) > _MAX_TEXT:
        return None
    body = text[1:] if text.startswith("+") else text
    if body == "0":
        return Duration(0.0, text)
    if not body:
        return None
    total = 0.0
    position = 0
    while position < len(body):
        match = _PART.match(body, position)
        if match is None:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return Duration(total, text)


def parse_gateway_api_duration(text: str) -> Duration | None:
    """Parse a Gateway API duration (GEP-2257): e.g. ``10s``, ``1h30m``, ``500ms``."""
    if not isinstance(text, str) or not _GATEWAY_API.fullmatch(text):
        return None
    return parse_duration(text)
