"""Istio's duration syntax (Go/protobuf text) and the Gateway API's stricter form."""

from __future__ import annotations

import pytest

from controlplane.istio import Duration, parse_duration, parse_gateway_api_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("1h2m", 3720.0),
        ("1h2m3.5s", 3723.5),
        ("7s", 7.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("300us", 0.0003),
        ("300µs", 0.0003),
        ("1000000ns", 0.001),
        (".5s", 0.5),
        ("2.s", 2.0),
        ("+3m", 180.0),
        ("15m", 900.0),
        ("1h", 3600.0),
    ],
)
def test_valid_durations(text: str, seconds: float) -> None:
    parsed = parse_duration(text)
    assert parsed is not None
    assert parsed.seconds == pytest.approx(seconds)
    assert parsed.text == text and str(parsed) == text


@pytest.mark.parametrize(
    "text",
    ["", "1", "s", "1x", "1 s", "-1s", "1s ", "one second", "1.2.3s", "1sm", "ms", "1e3s", "5d"],
)
def test_invalid_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_milliseconds_property() -> None:
    assert Duration(1.5, "1.5s").milliseconds == pytest.approx(1500.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("500ms", 0.5), ("1h30m", 5400.0), ("0s", 0.0), ("99999s", 99999.0)],
)
def test_gateway_api_durations(text: str, seconds: float) -> None:
    parsed = parse_gateway_api_duration(text)
    assert parsed is not None and parsed.seconds == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1.5s", "100000s", "1us", "1h1m1s1ms1s", "", "10"])
def test_gateway_api_refuses_what_its_pattern_refuses(text: str) -> None:
    assert parse_gateway_api_duration(text) is None
