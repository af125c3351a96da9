"""Reports of one ``meshctl bench`` run: JSON, Markdown with ratio tables, PNG charts, noise.

Pure functions of the result dict that the orchestrator (``tests/bench/suite.py``) builds (its
shape: schema ``ambient-mesh-bench/1``, see :func:`validate`); no lab, no subprocesses.

- :func:`write_outputs` writes ``bench.json``, ``bench.md`` and the charts into a folder;
- :func:`format_markdown` renders the report: machine, code and settings, noise warnings and
  invalid runs, every measure as median (min-max), ratios to the floor (no mesh) and to the
  peers (cells where we are behind in bold, then listed in plain words), CPU per 1000 requests,
  memory, and the control-plane and CA benchmarks when they ran;
- :func:`draw_charts` draws the PNGs with matplotlib (Agg, no display, no pyplot state);
- :func:`assess_noise` says when the machine was too noisy to trust the numbers.

Malformed results raise :class:`ValueError` naming the key, measure or scenario.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "BEHIND_TOLERANCE",
    "BUSY_BEFORE_LIMIT_PCT",
    "NOISY_CELLS_SHARE",
    "SCHEMA",
    "SPREAD_LIMIT",
    "STEAL_LIMIT_PCT",
    "TAIL_SPREAD_LIMIT",
    "PeerCell",
    "assess_noise",
    "draw_charts",
    "floor_ratios",
    "fmt_number",
    "fmt_ratio",
    "format_markdown",
    "peer_comparisons",
    "summary",
    "validate",
    "where_behind",
    "write_outputs",
]

Result = Mapping[str, Any]

SCHEMA = "ambient-mesh-bench/1"

# Noise: a cell (measure, scenario) whose runs spread more than this, (max - min) / median ...
SPREAD_LIMIT = 0.25
# ... or, for tail latencies (p90, p99: a handful of slow requests move them), more than this ...
TAIL_SPREAD_LIMIT = 0.5
# ... is noisy; the floor's cells must not be, and no more than this share of all cells.
NOISY_CELLS_SHARE = 1 / 3
# CPU busy % of the machine in the 2 s before the run started.
BUSY_BEFORE_LIMIT_PCT = 25.0
# Hypervisor steal % during the run.
STEAL_LIMIT_PCT = 5.0

# A comparison cell is "behind" the peer beyond this tolerance (ratio < 0.95 for measures where
# higher is better, > 1.05 where lower is better).
BEHIND_TOLERANCE = 0.05

# Latency charts switch to a log scale when the largest bar is this many times the smallest.
LOG_SCALE_RANGE = 20.0
CHART_DPI = 100  # 10-inch-wide figures: ~1000 px
CHART_NAMES = ("throughput", "requests", "latency", "cpu", "memory")

DASH = "\u2013"  # en dash
TIMES = "\u00d7"  # multiplication sign
KINDS = ("floor", "peer", "mesh")
KIND_COLOURS = {"floor": "#8c8c8c", "peer": "#4c72b0", "mesh": "#dd8452"}
KIND_NAMES = {"floor": "floor (no mesh)", "peer": "peer (not a mesh)", "mesh": "our mesh"}

REQUIRED_KEYS = (
    "schema", "mode", "started_at", "duration_s", "settings", "machine", "code",
    "scenarios", "measures", "cpu", "memory", "comparisons", "machine_load",
)  # fmt: skip

# How "Where we are behind" names a measure; a measure may carry its own "short" instead.
PHRASES = {
    "iperf_gbps": "bulk throughput",
    "sat_rps": "requests/s at saturation",
    "sat_p50_ms": "p50 latency at saturation",
    "sat_p90_ms": "p90 latency at saturation",
    "sat_p99_ms": "p99 latency at saturation",
    "fixed_rps": "achieved rate at the fixed request rate",
    "fixed_p50_ms": "p50 latency at the fixed request rate",
    "fixed_p90_ms": "p90 latency at the fixed request rate",
    "fixed_p99_ms": "p99 latency at the fixed request rate",
    "conn_per_s": "new connections/s",
}

SETTING_TEXT = {
    "repeats": "{} run(s) of each measure",
    "iperf_s": "iperf3 {} s",
    "load_s": "load runs {} s",
    "rate_rps": "fixed rate {} req/s",
    "conn_s": "connection runs {} s",
    "saturation_connections": "{} connections at saturation",
    "held_connections": "{} held connections",
}

SETTING_NAMES = {"controlplane": "control-plane bench", "ca": "CA bench"}

# The latency chart: one panel per (key prefix, title), bars per percentile.
LATENCY_PANELS = (("sat", "Latency at saturation"), ("fixed", "Latency at the fixed request rate"))
PERCENTILES = ("p50", "p90", "p99")
PERCENTILE_HATCHES = {"p50": "", "p90": "//", "p99": "xx"}


# ---------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """min, median and max of ``values`` (which must not be empty)."""
    if not values:
        raise ValueError("summary: no values")
    return {
        "min": float(min(values)),
        "median": float(statistics.median(values)),
        "max": float(max(values)),
    }


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median; None with fewer than 2 values or a median <= 0."""
    if len(values) < 2:
        return None
    s = summary(values)
    if s["median"] <= 0:
        return None
    return (s["max"] - s["min"]) / s["median"]


def fmt_number(value: float) -> str:
    """3 significant digits for small values, thousands separators from 100 up."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 2:
        return f"{value:,.0f}"
    return f"{value:.{2 - magnitude}f}"


def fmt_ratio(ratio: float | None) -> str:
    """``0.28x``, ``11.0x``, ``115x`` (with a multiplication sign); DASH for None."""
    if ratio is None or not math.isfinite(ratio):
        return DASH
    if ratio >= 100:
        return f"{ratio:,.0f}{TIMES}"
    if ratio >= 10:
        return f"{ratio:.1f}{TIMES}"
    if ratio >= 0.1 or ratio == 0:
        return f"{ratio:.2f}{TIMES}"
    return f"{ratio:.2g}{TIMES}"


def fmt_cell(values: Sequence[float] | None) -> str:
    """``median (min-max)``; just the median for one value; DASH when not measured."""
    if not values:
        return DASH
    s = summary(values)
    if len(values) == 1:
        return fmt_number(s["median"])
    return f"{fmt_number(s['median'])} ({fmt_number(s['min'])}{DASH}{fmt_number(s['max'])})"


def _ratio(ours: float | None, base: float | None) -> float | None:
    if ours is None or base is None or base == 0:
        return None
    return ours / base


# ---------------------------------------------------------------------------------------
# The result dict
# ---------------------------------------------------------------------------------------


def _check_values(values: object, where: str) -> None:
    if not isinstance(values, list | tuple) or not values:
        raise ValueError(f"{where} has no values")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{where}: {v!r} is not a finite number")


def _check_number(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a finite number")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} is not a mapping (got {type(value).__name__})")
    return value


def validate(result: Result) -> None:
    """Raise :class:`ValueError` naming what is wrong when ``result`` is not a well-formed
    ``ambient-mesh-bench/1`` result. ``controlplane``, ``ca`` and ``problems`` are optional."""
    _mapping(result, "result")
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise ValueError("result: missing key(s) " + ", ".join(repr(k) for k in missing))
    if result["schema"] != SCHEMA:
        raise ValueError(f"result: schema {result['schema']!r}, expected {SCHEMA!r}")
    _mapping(result["settings"], "result 'settings'")
    _mapping(result["machine"], "result 'machine'")
    if result["machine_load"] is not None:
        _mapping(result["machine_load"], "result 'machine_load'")

    scenarios = result["scenarios"]
    if not isinstance(scenarios, list | tuple) or not scenarios:
        raise ValueError("result 'scenarios' is empty")
    names: set[str] = set()
    for i, sc in enumerate(scenarios):
        sc = _mapping(sc, f"scenario {i}")
        for key in ("name", "label", "kind"):
            if key not in sc:
                raise ValueError(f"scenario {i}: missing key {key!r}")
        if sc["kind"] not in KINDS:
            raise ValueError(f"scenario {sc['name']!r}: kind {sc['kind']!r} is not one of {KINDS}")
        if sc["name"] in names:
            raise ValueError(f"scenario {sc['name']!r} appears twice")
        names.add(sc["name"])

    measures = result["measures"]
    if not isinstance(measures, list | tuple):
        raise ValueError("result 'measures' is not a list")
    keys: set[str] = set()
    for i, m in enumerate(measures):
        m = _mapping(m, f"measure {i}")
        for key in ("key", "label", "unit", "better", "values"):
            if key not in m:
                raise ValueError(f"measure {m.get('key', i)!r}: missing key {key!r}")
        if m["key"] in keys:
            raise ValueError(f"measure {m['key']!r} appears twice")
        keys.add(m["key"])
        if m["better"] not in ("higher", "lower"):
            raise ValueError(f"measure {m['key']!r}: better is {m['better']!r}, not 'higher' or 'lower'")
        for name, values in _mapping(m["values"], f"measure {m['key']!r}: values").items():
            if name not in names:
                raise ValueError(f"measure {m['key']!r}: unknown scenario {name!r}")
            _check_values(values, f"measure {m['key']!r}: scenario {name!r}")

    cpu = _mapping(result["cpu"], "result 'cpu'")
    if "values" not in cpu:
        raise ValueError("result 'cpu': missing key 'values'")
    for name, comps in _mapping(cpu["values"], "cpu 'values'").items():
        if name not in names:
            raise ValueError(f"cpu: unknown scenario {name!r}")
        for comp, values in _mapping(comps, f"cpu: scenario {name!r}").items():
            _check_values(values, f"cpu: scenario {name!r}, component {comp!r}")

    memory = _mapping(result["memory"], "result 'memory'")
    for comp, value in _mapping(memory.get("idle_mb", {}), "memory 'idle_mb'").items():
        _check_number(value, f"memory idle_mb: component {comp!r}")
    per_conn = _mapping(memory.get("per_1000_conn_mb", {}), "memory 'per_1000_conn_mb'")
    for name, comps in per_conn.items():
        if name not in names:
            raise ValueError(f"memory per_1000_conn_mb: unknown scenario {name!r}")
        for comp, value in _mapping(comps, f"memory per_1000_conn_mb: scenario {name!r}").items():
            _check_number(value, f"memory per_1000_conn_mb: scenario {name!r}, component {comp!r}")

    comparisons = result["comparisons"]
    if not isinstance(comparisons, list | tuple):
        raise ValueError("result 'comparisons' is not a list")
    for pair in comparisons:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"comparison {pair!r} is not an (ours, peer) pair")
        for name in pair:
            if name not in names:
                raise ValueError(f"comparison {list(pair)!r}: unknown scenario {name!r}")

    problems = result.get("problems")
    if problems is not None and not isinstance(problems, list | tuple):
        raise ValueError("result 'problems' is not a list")


def _scenarios(result: Result) -> list[Mapping[str, Any]]:
    return list(result["scenarios"])


def _measures(result: Result) -> list[Mapping[str, Any]]:
    return list(result["measures"])


def _floor(result: Result) -> Mapping[str, Any] | None:
    for sc in _scenarios(result):
        if sc["kind"] == "floor":
            return sc
    return None


def _labels(result: Result) -> dict[str, str]:
    return {str(sc["name"]): str(sc["label"]) for sc in _scenarios(result)}


def _median(measure: Mapping[str, Any], scenario: str) -> float | None:
    values = measure["values"].get(scenario)
    return summary(values)["median"] if values else None


def _repeats(result: Result) -> int:
    repeats = result["settings"].get("repeats")
    if isinstance(repeats, int) and not isinstance(repeats, bool):
        return repeats
    lengths = [len(v) for m in _measures(result) for v in m["values"].values()]
    return max(lengths, default=0)


def _phrase(measure: Mapping[str, Any]) -> str:
    return str(measure.get("short") or PHRASES.get(measure["key"]) or measure["label"])


# ---------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def spread_limit(measure_key: str) -> float:
    """How far a measure's runs may spread before the cell counts as noisy."""
    return TAIL_SPREAD_LIMIT if re.search(r"_p(9\d)_ms$", measure_key) else SPREAD_LIMIT


def assess_noise(result: Result) -> list[str]:
    """Warnings, for an operator, that the machine was too noisy to trust the numbers."""
    validate(result)
    warnings: list[str] = []
    if _repeats(result) == 1:
        warnings.append(
            "Single run of each measure (repeats = 1): the spread between runs could not be "
            "judged, so noise cannot be told from a real difference."
        )
    floor = _floor(result)
    if floor is not None:
        for m in _measures(result):
            values = m["values"].get(floor["name"], [])
            s = spread(values)
            limit = spread_limit(m["key"])
            if s is not None and s > limit:
                st = summary(values)
                warnings.append(
                    f"The floor ({floor['label']}) itself was unstable on {m['label']}: "
                    f"{fmt_number(st['min'])}{DASH}{fmt_number(st['max'])} {m['unit']} over "
                    f"{len(values)} runs, median {fmt_number(st['median'])}, a spread of "
                    f"{_pct(s)} (limit {_pct(limit)})."
                )
    judged = noisy = 0
    for m in _measures(result):
        for values in m["values"].values():
            if len(values) >= 2:
                judged += 1
                s = spread(values)
                noisy += s is not None and s > spread_limit(m["key"])
    if judged and noisy > judged * NOISY_CELLS_SHARE:
        warnings.append(
            f"{noisy} of {judged} measurements (measure {TIMES} scenario) spread more than "
            f"{_pct(SPREAD_LIMIT)} between runs ({_pct(TAIL_SPREAD_LIMIT)} for p90 and p99), more "
            "than a third of them."
        )
    load = result["machine_load"] or {}
    busy = load.get("busy_before_pct")
    if isinstance(busy, int | float) and busy > BUSY_BEFORE_LIMIT_PCT:
        warnings.append(
            f"Something else was using the CPU before the run started: the machine was "
            f"{busy:.0f}% busy in the 2 s before it (limit {BUSY_BEFORE_LIMIT_PCT:.0f}%)."
        )
    steal = load.get("steal_pct")
    if isinstance(steal, int | float) and steal > STEAL_LIMIT_PCT:
        warnings.append(
            f"The hypervisor took {steal:.1f}% of the CPU time during the run (steal; limit "
            f"{STEAL_LIMIT_PCT:.0f}%): other VMs on the host were competing for its CPUs."
        )
    return warnings


# ---------------------------------------------------------------------------------------
# Ratios
# ---------------------------------------------------------------------------------------


def floor_ratios(result: Result) -> dict[str, dict[str, float | None]]:
    """measure key -> non-floor scenario -> median(scenario) / median(floor); None where either
    was not measured. Empty when no scenario is of kind "floor"."""
    validate(result)
    floor = _floor(result)
    if floor is None:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for m in _measures(result):
        base = _median(m, floor["name"])
        out[m["key"]] = {
            sc["name"]: _ratio(_median(m, sc["name"]), base)
            for sc in _scenarios(result)
            if sc["name"] != floor["name"]
        }
    return out


@dataclass(frozen=True)
class PeerCell:
    """One measure of one (ours, peer) comparison."""

    measure: str  # the measure's key
    ours: str  # scenario names
    peer: str
    ours_median: float | None
    peer_median: float | None
    ratio: float | None  # ours / peer
    behind: bool  # worse than the peer beyond BEHIND_TOLERANCE


def _is_behind(ratio: float | None, better: str) -> bool:
    if ratio is None:
        return False
    if better == "higher":
        return ratio < 1 - BEHIND_TOLERANCE
    return ratio > 1 + BEHIND_TOLERANCE


def peer_comparisons(result: Result) -> list[PeerCell]:
    """Every (comparison, measure) cell, comparisons outside, measures inside."""
    validate(result)
    cells: list[PeerCell] = []
    for ours, peer in result["comparisons"]:
        for m in _measures(result):
            a, b = _median(m, ours), _median(m, peer)
            r = _ratio(a, b)
            cells.append(PeerCell(m["key"], ours, peer, a, b, r, _is_behind(r, m["better"])))
    return cells


def where_behind(result: Result) -> list[str]:
    """Plain sentences, one per comparison cell where we are behind the peer."""
    labels = _labels(result)
    measures = {m["key"]: m for m in _measures(result)}
    lines = []
    for c in peer_comparisons(result):
        if not c.behind or c.ours_median is None or c.peer_median is None:
            continue
        m = measures[c.measure]
        lines.append(
            f"{labels[c.ours]}: {fmt_ratio(c.ratio)} {labels[c.peer]}'s {_phrase(m)} "
            f"({fmt_number(c.ours_median)} vs {fmt_number(c.peer_median)} {m['unit']})"
        )
    return lines


# ---------------------------------------------------------------------------------------
# CPU and memory
# ---------------------------------------------------------------------------------------


def _ordered_union(groups: Iterable[Iterable[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for group in groups:
        for item in group:
            seen.setdefault(item, None)
    return list(seen)


def _cpu_rows(result: Result) -> list[tuple[Mapping[str, Any], dict[str, float], list[float]]]:
    """(scenario, component -> median, per-repeat totals) for each scenario in cpu.values,
    in display order. Totals sum the components run by run when every component has the same
    number of runs, else they are the one sum of medians."""
    values = result["cpu"]["values"]
    rows = []
    for sc in _scenarios(result):
        comps = values.get(sc["name"])
        if comps is None:
            continue
        medians = {str(c): summary(v)["median"] for c, v in comps.items()}
        lengths = {len(v) for v in comps.values()}
        if len(lengths) == 1:
            totals = [float(sum(run)) for run in zip(*comps.values(), strict=True)]
        else:
            totals = [sum(medians.values())]
        rows.append((sc, medians, totals if comps else [0.0]))
    return rows


def _peak_kib(phases: object) -> float | None:
    if not isinstance(phases, list):
        return None
    peaks = [p["hwm_kib"] for p in phases if isinstance(p, Mapping) and isinstance(p.get("hwm_kib"), int | float)]
    return float(max(peaks)) if peaks else None


# ---------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------


def _esc(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], *, text_columns: int = 1) -> list[str]:
    """A Markdown table; the first ``text_columns`` columns left-aligned, numbers right-aligned."""
    lines = [
        "| " + " | ".join(_esc(h) for h in header) + " |",
        "|" + "|".join(["---"] * text_columns + ["---:"] * (len(header) - text_columns)) + "|",
    ]
    lines += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in rows]
    return lines


def _dig(data: object, *path: str) -> Any:
    """data[path[0]][path[1]]...; None when any step is missing or not a mapping."""
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _num(data: object, *path: str) -> float | None:
    value = _dig(data, *path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{seconds:.0f} s ({minutes} min {secs} s)"


def _setting(key: str, value: object) -> str:
    name = SETTING_NAMES.get(key, key)
    if value is None:
        return f"{name} skipped"
    if isinstance(value, Mapping):
        return f"{name} (" + ", ".join(f"{k} {v}" for k, v in value.items()) + ")"
    return SETTING_TEXT[key].format(value) if key in SETTING_TEXT else f"{name} {value}"


def _header_lines(result: Result) -> list[str]:
    m = result["machine"]
    parts = []
    if m.get("cpus") is not None:
        parts.append(f"{m['cpus']} CPUs" + (f" ({m['cpu_model']})" if m.get("cpu_model") else ""))
    if isinstance(m.get("memory_gb"), int | float):
        parts.append(f"{m['memory_gb']:.1f} GB RAM")
    if m.get("kernel"):
        parts.append(f"kernel {m['kernel']}")
    if m.get("python"):
        parts.append(f"Python {m['python']}")
    machine = ", ".join(parts) or "unknown"
    tools = m.get("tools") or {}
    if isinstance(tools, Mapping) and tools:
        machine += "; " + ", ".join(f"{name} {version}" for name, version in tools.items())
    settings = [_setting(str(k), v) for k, v in result["settings"].items()]
    run = f"{result['mode']} mode" + (": " + ", ".join(settings) if settings else "")
    lines = [
        "# meshctl bench: the ambient mesh against no mesh and peer proxies",
        "",
        f"- **Machine:** {machine}",
        f"- **Code:** {result['code']}",
        f"- **Run:** {run}",
        f"- **Started:** {result['started_at']}; took {_duration(float(result['duration_s']))}",
    ]
    load = result["machine_load"] or {}
    load_parts = []
    if isinstance(load.get("busy_before_pct"), int | float):
        load_parts.append(f"CPU {load['busy_before_pct']:.1f}% busy in the 2 s before the start")
    if isinstance(load.get("steal_pct"), int | float):
        load_parts.append(f"steal {load['steal_pct']:.1f}% during the run")
    if load_parts:
        lines.append(f"- **Machine load:** {'; '.join(load_parts)}")
    return lines


def _warning_blocks(result: Result) -> list[str]:
    lines: list[str] = []
    problems = [str(p) for p in result.get("problems") or []]
    if problems:
        lines += [
            "",
            f"> **INVALID RUNS ({len(problems)}):** errors or non-2xx answers; the numbers "
            "they touch cannot be trusted.",
            ">",
        ]
        lines += [f"> - {p}" for p in problems]
    retried = [str(p) for p in result.get("retried") or []]
    if retried:
        lines += ["", f"> **Runs repeated once after a failure ({len(retried)}):** the repeat counted.", ">"]
        lines += [f"> - {p}" for p in retried]
    noise = assess_noise(result)
    if noise:
        lines += ["", "> **How far to trust these numbers:**", ">"]
        lines += [f"> - {w}" for w in noise]
    return lines


def _scenario_section(result: Result) -> list[str]:
    rows = [
        [sc["label"], sc["kind"], str(sc.get("layer", DASH)), f"`{sc['path']}`" if sc.get("path") else DASH]
        for sc in _scenarios(result)
    ]
    return ["", "## Scenarios", "", *_table(["scenario", "kind", "layer", "path"], rows, text_columns=4)]


def _results_section(result: Result) -> list[str]:
    scenarios = _scenarios(result)
    repeats = _repeats(result)
    note = (
        f"Each cell: median (min{DASH}max) of {repeats} runs"
        if repeats > 1
        else "Each cell: one run"
    ) + f"; {DASH}: not measured."
    rows = [
        [f"{m['label']}, {m['unit']}", *(fmt_cell(m["values"].get(sc["name"])) for sc in scenarios)]
        for m in _measures(result)
    ]
    header = ["measure", *(sc["label"] for sc in scenarios)]
    lines = ["", "## Results", "", note, "", *_table(header, rows)]
    codes = result.get("waypoint_response_codes")  # optional: response code -> requests
    if isinstance(codes, Mapping) and codes:
        lines += ["", "The waypoint's answers by response code (istio_requests_total): "
                  + ", ".join(f"{code}: {n:,}" if isinstance(n, int) else f"{code}: {n}"
                              for code, n in sorted(codes.items())) + "."]
    return lines


def _floor_section(result: Result) -> list[str]:
    floor = _floor(result)
    if floor is None:
        return ["", "## Ratios to the floor", "", "No scenario of kind floor in this run."]
    others = [sc for sc in _scenarios(result) if sc["name"] != floor["name"]]
    ratios = floor_ratios(result)
    rows = [
        [str(m["label"]), m["better"], *(fmt_ratio(ratios[m["key"]][sc["name"]]) for sc in others)]
        for m in _measures(result)
    ]
    return [
        "",
        f"## Ratios to the floor ({floor['label']})",
        "",
        f"median(scenario) / median({floor['label']}).",
        "",
        *_table(["measure", "better", *(sc["label"] for sc in others)], rows, text_columns=2),
    ]


def _peer_section(result: Result) -> list[str]:
    pairs = [tuple(p) for p in result["comparisons"]]
    if not pairs:
        return []
    labels = _labels(result)
    cells = {(c.ours, c.peer, c.measure): c for c in peer_comparisons(result)}
    rows = []
    for m in _measures(result):
        row = [str(m["label"]), m["better"]]
        for ours, peer in pairs:
            c = cells[(ours, peer, m["key"])]
            text = fmt_ratio(c.ratio)
            row.append(f"**{text}**" if c.behind else text)
        rows.append(row)
    header = ["measure", "better", *(f"{labels[o]} / {labels[p]}" for o, p in pairs)]
    tol = f"{BEHIND_TOLERANCE * 100:.0f}%"
    behind = where_behind(result)
    lines = [
        "",
        "## Against the peers",
        "",
        f"median(ours) / median(peer). **Bold**: we are behind the peer by more than {tol} "
        "(a lower ratio where higher is better, a higher one where lower is better).",
        "",
        *_table(header, rows, text_columns=2),
        "",
        "## Where we are behind",
        "",
    ]
    if behind:
        lines += [f"- {line}" for line in behind]
    else:
        lines.append(f"Nowhere beyond the {tol} tolerance.")
    return lines


def _cpu_section(result: Result) -> list[str]:
    cpu = result["cpu"]
    rows_data = _cpu_rows(result)
    if not rows_data:
        return []
    comps = _ordered_union(medians for _, medians, _ in rows_data)
    rows = []
    for sc, medians, totals in rows_data:
        cells = [fmt_number(medians[c]) if c in medians else DASH for c in comps]
        total = fmt_cell(totals) if medians else "0 (no proxy)"
        rows.append([sc["label"], *cells, total])
    label = cpu.get("label", "CPU seconds per 1000 requests")
    unit = cpu.get("unit", "s/1000 req")
    return [
        "",
        f"## {label}",
        "",
        f"{unit}; each component: median over the runs; total: median (min{DASH}max) of the "
        "run-by-run sums. The HTTP server and the load generator are not counted.",
        "",
        *_table(["scenario", *comps, "total"], rows),
    ]


def _memory_section(result: Result) -> list[str]:
    memory = result["memory"]
    idle = memory.get("idle_mb") or {}
    per_conn = memory.get("per_1000_conn_mb") or {}
    if not idle and not per_conn:
        return []
    lines = ["", "## Memory (VmRSS)"]
    if idle:
        lines += [
            "",
            "### Idle",
            "",
            *_table(["component", "idle RSS, MB"], [[c, fmt_number(v)] for c, v in idle.items()]),
        ]
    if per_conn:
        held = memory.get("held_connections")
        # optional: scenario -> connections actually held (fewer when a proxy's limits said so)
        held_by = memory.get("held") if isinstance(memory.get("held"), Mapping) else {}
        order = [sc for sc in _scenarios(result) if sc["name"] in per_conn]
        comps = _ordered_union(per_conn[sc["name"]] for sc in order)
        rows = []
        for sc in order:
            values = per_conn[sc["name"]]
            cells = [fmt_number(values[c]) if c in values else DASH for c in comps]
            row = [sc["label"], *cells, fmt_number(sum(values.values()))]
            if held_by:
                n = held_by.get(sc["name"])
                row.append(f"{n:,}" if isinstance(n, int) else DASH)
            rows.append(row)
        lines += [
            "",
            "### Per 1000 open connections",
            "",
            "RSS growth while connections are held open, scaled to 1000 connections, MB"
            + (f"; {held} connections asked for" if held else "")
            + ("; held: how many each scenario took." if held_by else "."),
            "",
            *_table(["scenario", *comps, "total", *(["held"] if held_by else [])], rows),
        ]
    return lines


def _controlplane_section(cp: Mapping[str, Any]) -> list[str]:
    rows: list[list[str]] = []

    def add(label: str, ours: float | None, floor: float | None) -> None:
        if ours is None:
            return
        rows.append([
            label,
            fmt_number(ours),
            fmt_number(floor) if floor is not None else DASH,
            fmt_ratio(_ratio(ours, floor)),
        ])

    fl = cp.get("floor") if isinstance(cp.get("floor"), Mapping) else {}
    for p in ("p50", "p99"):
        add(f"push latency per subscriber {p}, ms",
            _num(cp, "rounds", "latency_ms", p), _num(fl, "latency_ms", p))
    for p in ("p50", "p99"):
        add(f"fan-out completion {p}, ms",
            _num(cp, "rounds", "fanout_ms", p), _num(fl, "fanout_ms", p))
    add("full sync of every subscriber, s", _num(cp, "sync", "all_synced_s"), _num(fl, "all_synced_s"))
    add("server CPU per change, ms", _num(cp, "rounds", "cpu_ms_per_change"), _num(fl, "cpu_ms_per_change"))
    peak = _peak_kib(_dig(cp, "controlplane", "phases"))
    floor_peak = _num(fl, "server_memory_end", "hwm_kib")
    add("peak memory (VmHWM), MB",
        peak / 1024 if peak is not None else None,
        floor_peak / 1024 if floor_peak is not None else None)
    add("burst: applies/s", _num(cp, "burst", "applies_per_s"), None)

    lines = ["", "## Control plane"]
    nodes, pods = _dig(cp, "config", "nodes"), _dig(cp, "config", "pods")
    if nodes is not None and pods is not None:
        lines += ["", f"{nodes} nodes (one ztunnel subscriber each), {pods} pods; "
                  "floor: a minimal grpc.aio server replaying the same pushes to the same client."]
    if rows:
        lines += ["", *_table(["number", "ours", "floor", "ours / floor"], rows)]
    error = _dig(cp, "floor", "error")
    if error:
        lines += ["", f"The floor failed: {error}"]
    if not rows and not error:
        lines += ["", "No headline numbers in this result."]
    return lines


CA_ROWS = (
    ("CertificateAuthority.sign()", "sign"),
    ("floor: CSR parse + signature verify", "csr_verify"),
    ("floor: CertificateBuilder leaf, no checks", "builder"),
    ("floor: ECDSA P-256 sign of 1 KB", "ecdsa"),
    ("floor: openssl x509 -req, 1 process each", "openssl"),
)

CA_RATIOS = (
    ("sign() / its floor (CSR verify + builder)", "sign_vs_verify_plus_builder"),
    ("sign() / bare ECDSA sign", "sign_vs_ecdsa"),
    ("sign() / CertificateBuilder", "sign_vs_builder"),
    ("openssl CLI per certificate / sign()", "openssl_vs_sign"),
)


def _ca_section(ca: Mapping[str, Any]) -> list[str]:
    rows = []
    for label, key in CA_ROWS:
        per_s = _num(ca, key, "per_second")
        if per_s is None:
            continue
        p50, p99 = _num(ca, key, "p50_ms"), _num(ca, key, "p99_ms")
        rows.append([
            label,
            fmt_number(per_s),
            fmt_number(p50) if p50 is not None else DASH,
            fmt_number(p99) if p99 is not None else DASH,
        ])
    verify, build = _num(ca, "csr_verify", "mean_ms"), _num(ca, "builder", "mean_ms")
    if verify is not None and build is not None and verify + build > 0:
        rows.insert(1, ["floor: CSR verify + builder (sum of means)", fmt_number(1000 / (verify + build)), DASH, DASH])
    ratios = [
        f"- {label}: {fmt_ratio(value)} the time"
        for label, key in CA_RATIOS
        if (value := _num(ca, "ratios", key)) is not None
    ]
    lines = ["", "## CA"]
    signatures = _dig(ca, "signatures")
    if signatures is not None:
        lines += ["", f"{signatures} signatures, one thread, EC P-256."]
    if rows:
        lines += ["", *_table(["operation", "per s", "p50 ms", "p99 ms"], rows)]
    if ratios:
        lines += ["", *ratios]
    if not rows and not ratios:
        lines += ["", "No headline numbers in this result."]
    return lines


def format_markdown(result: Result, charts: Sequence[str] = ()) -> str:
    """The Markdown report; ``charts`` (PNG file names next to it) are embedded at the end."""
    validate(result)
    lines = _header_lines(result)
    lines += _warning_blocks(result)
    lines += _scenario_section(result)
    lines += _results_section(result)
    lines += _floor_section(result)
    lines += _peer_section(result)
    lines += _cpu_section(result)
    lines += _memory_section(result)
    cp = result.get("controlplane")
    if isinstance(cp, Mapping):
        lines += _controlplane_section(cp)
    ca = result.get("ca")
    if isinstance(ca, Mapping):
        lines += _ca_section(ca)
    if charts:
        lines += ["", "## Charts"]
        for name in charts:  # one paragraph each, so they stack rather than sit side by side
            lines += ["", f"![{Path(name).stem}]({name})"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------


def _measure(result: Result, key: str) -> Mapping[str, Any] | None:
    for m in _measures(result):
        if m["key"] == key and m["values"]:
            return m
    return None


def _kind_legend(fig: Figure, result: Result) -> None:
    """One legend of the scenario kinds above the panels, clear of the bars."""
    from matplotlib.patches import Patch

    present = {sc["kind"] for sc in _scenarios(result)}
    handles = [Patch(facecolor=KIND_COLOURS[k], label=KIND_NAMES[k]) for k in KINDS if k in present]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=9, frameon=False)


def _scenario_ticks(ax: Axes, xs: Sequence[float], scenarios: Sequence[Mapping[str, Any]]) -> None:
    ax.set_xticks(list(xs), [str(sc["label"]) for sc in scenarios], rotation=25, ha="right", fontsize=9)


def _axis_number(value: float, _pos: int | None = None) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def _style(ax: Axes, title: str, unit: str) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_title(title, fontsize=11)
    ax.set_ylabel(unit)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if ax.get_yscale() == "linear":
        ax.yaxis.set_major_formatter(FuncFormatter(_axis_number))


def _bars(ax: Axes, result: Result, measure: Mapping[str, Any]) -> None:
    """One bar per measured scenario: median, min-max error bar, coloured by kind."""
    present = [sc for sc in _scenarios(result) if sc["name"] in measure["values"]]
    stats = [summary(measure["values"][sc["name"]]) for sc in present]
    xs = list(range(len(present)))
    medians = [s["median"] for s in stats]
    errors = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
    ax.bar(xs, medians, color=[KIND_COLOURS[sc["kind"]] for sc in present], yerr=errors,
           capsize=4, error_kw={"elinewidth": 1, "ecolor": "#333333"})
    for x, s in zip(xs, stats, strict=True):
        ax.annotate(fmt_number(s["median"]), (x, s["max"]), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.margins(y=0.12)
    _scenario_ticks(ax, xs, present)
    _style(ax, str(measure["label"]), str(measure["unit"]))


def _new_figure(width: float, height: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _chart_throughput(result: Result) -> Figure | None:
    measure = _measure(result, "iperf_gbps")
    if measure is None:
        return None
    fig = _new_figure(10, 5)
    _bars(fig.subplots(), result, measure)
    _kind_legend(fig, result)
    return fig


def _chart_requests(result: Result) -> Figure | None:
    measures = [m for key in ("sat_rps", "conn_per_s") if (m := _measure(result, key)) is not None]
    if not measures:
        return None
    fig = _new_figure(10, 5)
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    for ax, m in zip(axes, measures, strict=True):
        _bars(ax, result, m)
    _kind_legend(fig, result)
    return fig


def _latency_panel(
    ax: Axes, result: Result, title: str, measures: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """Grouped bars: one group per scenario, one bar per percentile (hatched), kind colours."""
    from matplotlib.patches import Patch

    present = [sc for sc in _scenarios(result) if any(sc["name"] in m["values"] for _, m in measures)]
    width = 0.8 / len(measures)
    lows: list[float] = []
    highs: list[float] = []
    for i, (pct, m) in enumerate(measures):
        xs, medians, lo, hi, colours = [], [], [], [], []
        for j, sc in enumerate(present):
            values = m["values"].get(sc["name"])
            if not values:
                continue
            s = summary(values)
            xs.append(j - 0.4 + width * (i + 0.5))
            medians.append(s["median"])
            lo.append(s["median"] - s["min"])
            hi.append(s["max"] - s["median"])
            colours.append(KIND_COLOURS[sc["kind"]])
            lows.append(s["min"])
            highs.append(s["max"])
        ax.bar(xs, medians, width=width, color=colours, hatch=PERCENTILE_HATCHES.get(pct, ""),
               edgecolor="white", linewidth=0.5, yerr=[lo, hi], capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    if lows and min(lows) > 0 and max(highs) / min(lows) > LOG_SCALE_RANGE:
        ax.set_yscale("log")
        title += " (log scale)"
    _scenario_ticks(ax, list(range(len(present))), present)
    unit = str(measures[0][1]["unit"])
    _style(ax, title, unit)
    handles = [Patch(facecolor=KIND_COLOURS[k], label=KIND_NAMES[k])
               for k in KINDS if any(sc["kind"] == k for sc in present)]
    handles += [Patch(facecolor="#dddddd", edgecolor="#555555", hatch=PERCENTILE_HATCHES.get(p, ""), label=p)
                for p, _ in measures]
    ax.legend(handles=handles, fontsize=8, loc="upper left", ncols=2)


def _chart_latency(result: Result) -> Figure | None:
    panels = []
    settings = result["settings"]
    for prefix, title in LATENCY_PANELS:
        measures = [(p, m) for p in PERCENTILES if (m := _measure(result, f"{prefix}_{p}_ms")) is not None]
        if not measures:
            continue
        if prefix == "sat" and settings.get("saturation_connections"):
            title += f" ({settings['saturation_connections']} connections)"
        if prefix == "fixed" and settings.get("rate_rps"):
            title += f" ({settings['rate_rps']} req/s)"
        panels.append((title, measures))
    if not panels:
        return None
    fig = _new_figure(10, 4.5 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, measures) in zip(axes, panels, strict=True):
        _latency_panel(ax, result, title, measures)
    return fig


def _component_colours(result: Result) -> dict[str, Any]:
    import matplotlib

    cpu = result["cpu"]["values"].values()
    memory = result["memory"]
    comps = _ordered_union([
        *(c.keys() for c in cpu),
        (memory.get("idle_mb") or {}).keys(),
        *(c.keys() for c in (memory.get("per_1000_conn_mb") or {}).values()),
    ])
    palette = matplotlib.colormaps["tab10" if len(comps) <= 10 else "tab20"]
    return {c: palette(i % palette.N) for i, c in enumerate(comps)}


def _stacked(ax: Axes, result: Result, rows: Sequence[tuple[Mapping[str, Any], Mapping[str, float], Sequence[float]]],
             title: str, unit: str) -> None:
    """Stacked bars by component per scenario; a min-max error bar on each total."""
    colours = _component_colours(result)
    comps = _ordered_union(values.keys() for _, values, _ in rows)
    xs = list(range(len(rows)))
    bottoms = [0.0] * len(rows)
    for comp in comps:
        # only where the component exists: an empty segment's bottom would be a sticky edge
        # that stops the top margin
        at = [i for i, (_, values, _) in enumerate(rows) if comp in values]
        heights = [rows[i][1][comp] for i in at]
        ax.bar([xs[i] for i in at], heights, bottom=[bottoms[i] for i in at], color=colours[comp],
               label=comp, edgecolor="white", linewidth=0.5)
        for i, h in zip(at, heights, strict=True):
            bottoms[i] += h
    for x, (_, values, totals) in zip(xs, rows, strict=True):
        top = sum(values.values())
        if len(totals) > 1:
            s = summary(totals)
            ax.errorbar([x], [top], yerr=[[max(0.0, top - s["min"])], [max(0.0, s["max"] - top)]],
                        fmt="none", ecolor="#333333", capsize=4, elinewidth=1)
            top = max(top, s["max"])
        text = fmt_number(sum(values.values())) if values else "no proxy"
        ax.annotate(text, (x, top), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
    ax.margins(y=0.12)
    _scenario_ticks(ax, xs, [sc for sc, _, _ in rows])
    _style(ax, title, unit)
    if comps:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))


def _chart_cpu(result: Result) -> Figure | None:
    rows = _cpu_rows(result)
    if not any(medians for _, medians, _ in rows):
        return None
    cpu = result["cpu"]
    fig = _new_figure(10, 5)
    _stacked(fig.subplots(), result, rows, str(cpu.get("label", "CPU per 1000 requests")),
             str(cpu.get("unit", "s/1000 req")))
    return fig


def _chart_memory(result: Result) -> Figure | None:
    memory = result["memory"]
    idle = memory.get("idle_mb") or {}
    per_conn = memory.get("per_1000_conn_mb") or {}
    rows: list[tuple[Mapping[str, Any], Mapping[str, float], Sequence[float]]] = [
        (sc, {str(c): float(v) for c, v in per_conn[sc["name"]].items()}, [])
        for sc in _scenarios(result)
        if sc["name"] in per_conn
    ]
    panels = int(bool(idle)) + int(bool(rows))
    if not panels:
        return None
    fig = _new_figure(10, 4.5 * panels)
    axes = list(fig.subplots(panels, 1, squeeze=False)[:, 0])
    if idle:
        ax = axes.pop(0)
        colours = _component_colours(result)
        names = list(idle)
        xs = list(range(len(names)))
        ax.bar(xs, [idle[c] for c in names], color=[colours[c] for c in names])
        for x, c in zip(xs, names, strict=True):
            ax.annotate(fmt_number(idle[c]), (x, idle[c]), xytext=(0, 3), textcoords="offset points",
                        ha="center", fontsize=8)
        ax.set_xticks(xs, names, rotation=25, ha="right", fontsize=9)
        ax.margins(y=0.12)
        _style(ax, "Idle RSS per component", "MB")
    if rows:
        held = memory.get("held_connections")
        title = "RSS per 1000 open connections" + (f" (measured with {held} held open)" if held else "")
        _stacked(axes.pop(0), result, rows, title, "MB")
    return fig


CHARTS: tuple[tuple[str, Callable[[Result], Figure | None]], ...] = (
    ("throughput", _chart_throughput),
    ("requests", _chart_requests),
    ("latency", _chart_latency),
    ("cpu", _chart_cpu),
    ("memory", _chart_memory),
)


def draw_charts(result: Result, outdir: Path, *, dpi: int = CHART_DPI) -> list[Path]:
    """Draw the PNG charts into ``outdir``; a chart whose data is all absent is skipped (and a
    stale file of that name from an earlier run removed). Returns the paths written."""
    validate(result)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in CHARTS:
        path = outdir / f"{name}.png"
        fig = draw(result)
        if fig is None:
            path.unlink(missing_ok=True)
            continue
        try:
            fig.savefig(path, dpi=dpi)
        finally:
            fig.clear()  # Figure objects are not registered with pyplot: nothing else holds them
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def write_outputs(result: Result, outdir: Path, *, dpi: int = CHART_DPI) -> dict[str, Path]:
    """Write ``bench.json`` (first, so the numbers are kept even when the result turns out to
    be malformed; values JSON cannot hold, such as a Path, are written as text), the charts
    and ``bench.md`` into ``outdir``, which is created if needed.

    Returns {"json": ..., "markdown": ..., "chart:<name>": ...}."""
    outdir.mkdir(parents=True, exist_ok=True)
    json_path = outdir / "bench.json"
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    validate(result)
    charts = draw_charts(result, outdir, dpi=dpi)
    md_path = outdir / "bench.md"
    md_path.write_text(format_markdown(result, charts=[p.name for p in charts]))
    out = {"json": json_path, "markdown": md_path}
    out.update({f"chart:{p.stem}": p for p in charts})
    return out
