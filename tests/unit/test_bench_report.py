"""tests/bench/report.py: Markdown tables, ratios, noise warnings, charts and files of a bench run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.bench import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DASH = "\u2013"
TIMES = "\u00d7"

SCENARIOS = [
    {"name": "no_mesh", "label": "no mesh", "kind": "floor", "layer": "-", "path": "client -> Service VIP -> server"},
    {"name": "stunnel", "label": "stunnel mTLS", "kind": "peer", "layer": "L4", "path": "client -> stunnel -> stunnel -> server"},
    {"name": "haproxy", "label": "haproxy mTLS", "kind": "peer", "layer": "L4", "path": "client -> haproxy -> haproxy -> server"},
    {"name": "mesh_cross", "label": "mesh L4, 2 nodes", "kind": "mesh", "layer": "L4", "path": "client -> ztunnel node1 -> HBONE -> ztunnel node2 -> server"},
    {"name": "mesh_same", "label": "mesh L4, 1 node", "kind": "mesh", "layer": "L4", "path": "client -> ztunnel node2 -> server"},
    {"name": "waypoint", "label": "mesh + waypoint", "kind": "mesh", "layer": "L7", "path": "client -> ztunnel -> waypoint -> ztunnel -> server"},
    {"name": "nginx", "label": "nginx L7 proxy", "kind": "peer", "layer": "L7", "path": "client -> nginx -> server"},
]


def _runs(median: float, rel: float = 0.03) -> list[float]:
    """Three runs around ``median``, spreading 2 x ``rel``."""
    return [round(median * (1 - rel), 6), median, round(median * (1 + rel), 6)]


def _measure(key: str, label: str, unit: str, better: str, medians: dict[str, float]) -> dict[str, Any]:
    return {"key": key, "label": label, "unit": unit, "better": better,
            "values": {name: _runs(m) for name, m in medians.items()}}


def sample_result() -> dict[str, Any]:
    """A realistic default-mode run: clean machine, 3 repeats, every section present."""
    measures = [
        {"key": "iperf_gbps", "label": "iperf3 bulk throughput", "unit": "Gb/s", "better": "higher",
         "values": {"no_mesh": [12.0, 12.4, 12.8], "stunnel": [3.2, 3.3, 3.5], "haproxy": [3.0, 3.4, 3.6],
                    "mesh_cross": [3.0, 3.1, 3.3], "mesh_same": [11.5, 12.0, 12.6]}},  # not through L7 proxies
        {"key": "sat_rps", "label": "wrk -c16 requests/s (saturation)", "unit": "req/s", "better": "higher",
         "values": {"no_mesh": [19500.0, 19915.0, 20400.0], "stunnel": [12000.0, 12769.0, 12974.0],
                    "haproxy": [13000.0, 13500.0, 14000.0], "mesh_cross": [6565.0, 6730.0, 6887.0],
                    "mesh_same": [16945.0, 18626.0, 20382.0], "waypoint": [1300.0, 1373.0, 1400.0],
                    "nginx": [16000.0, 16542.0, 17000.0]}},
        {"key": "sat_p50_ms", "label": "wrk -c16 p50 latency", "unit": "ms", "better": "lower",
         "values": {"no_mesh": [0.63, 0.647, 0.65], "stunnel": [1.11, 1.13, 1.17], "haproxy": [2.2, 2.25, 2.3],
                    "mesh_cross": [2.24, 2.29, 2.36], "mesh_same": [0.74, 0.81, 0.89],
                    "waypoint": [11.0, 11.14, 11.3], "nginx": [0.88, 0.89, 0.9]}},
        _measure("sat_p90_ms", "wrk -c16 p90 latency", "ms", "lower",
                 {"no_mesh": 0.9, "stunnel": 1.6, "haproxy": 3.0, "mesh_cross": 3.3, "mesh_same": 1.2,
                  "waypoint": 18.0, "nginx": 1.5}),
        {"key": "sat_p99_ms", "label": "wrk -c16 p99 latency", "unit": "ms", "better": "lower",
         "values": {"no_mesh": [1.15, 1.17, 1.32], "stunnel": [227.86, 364.42, 442.79],  # noisy, as stunnel is
                    "haproxy": [4.0, 4.3, 4.5], "mesh_cross": [4.23, 4.44, 4.54], "mesh_same": [1.52, 1.89, 1.97],
                    "waypoint": [24.8, 25.1, 25.6], "nginx": [2.2, 2.28, 2.4]}},
        {"key": "fixed_rps", "label": "h2load at 400 req/s: achieved", "unit": "req/s", "better": "higher",
         "values": {name: [399.8, 400.0, 400.1] for name in
                    ("no_mesh", "stunnel", "haproxy", "mesh_cross", "mesh_same", "waypoint", "nginx")}},
        _measure("fixed_p50_ms", "h2load at 400 req/s: p50 latency", "ms", "lower",
                 {"no_mesh": 0.6, "stunnel": 0.9, "haproxy": 0.95, "mesh_cross": 2.36, "mesh_same": 0.98,
                  "waypoint": 17.2, "nginx": 0.98}),
        _measure("fixed_p90_ms", "h2load at 400 req/s: p90 latency", "ms", "lower",
                 {"no_mesh": 0.9, "stunnel": 1.4, "haproxy": 1.5, "mesh_cross": 3.9, "mesh_same": 1.4,
                  "waypoint": 25.0, "nginx": 1.8}),
        _measure("fixed_p99_ms", "h2load at 400 req/s: p99 latency", "ms", "lower",
                 {"no_mesh": 1.47, "stunnel": 2.1, "haproxy": 2.3, "mesh_cross": 5.39, "mesh_same": 2.0,
                  "waypoint": 32.8, "nginx": 2.38}),
        _measure("conn_per_s", "new connections/s (wrk, Connection: close)", "conn/s", "higher",
                 {"no_mesh": 19182.0, "stunnel": 3100.0, "haproxy": 3600.0, "mesh_cross": 1800.0,
                  "mesh_same": 2100.0, "waypoint": 850.0, "nginx": 5200.0}),
    ]
    return {
        "schema": "ambient-mesh-bench/1",
        "mode": "default",
        "started_at": "2026-11-23T10:00:00+00:00",
        "duration_s": 412.3,
        "settings": {"repeats": 3, "iperf_s": 3, "load_s": 4, "rate_rps": 400, "conn_s": 2,
                     "saturation_connections": 16, "held_connections": 1000,
                     "controlplane": {"nodes": 1000, "pods": 10000, "rounds": 20, "burst": 1000},
                     "ca": {"signatures": 2000, "openssl_certs": 50}},
        "machine": {"cpus": 2, "cpu_model": "AMD EPYC 7B13", "memory_gb": 23.5, "kernel": "6.18.44",
                    "python": "3.11.2",
                    "tools": {"wrk": "4.1.0", "h2load": "1.52.0", "iperf3": "3.12", "nginx": "1.22.1",
                              "stunnel": "5.68", "haproxy": "2.6.12", "openssl": "3.0.22"}},
        "code": "commit 5942c8f",
        "scenarios": copy.deepcopy(SCENARIOS),
        "measures": measures,
        "cpu": {"label": "CPU seconds per 1000 requests (wrk -c16)", "unit": "s/1000 req",
                "values": {
                    "no_mesh": {},
                    "stunnel": {"stunnel client": [0.031, 0.03, 0.033], "stunnel server": [0.029, 0.03, 0.031]},
                    "haproxy": {"haproxy client": [0.02, 0.021, 0.022], "haproxy server": [0.02, 0.02, 0.021]},
                    "mesh_cross": {"ztunnel node1": [0.1, 0.11, 0.12], "ztunnel node2": [0.1, 0.1, 0.11]},
                    "mesh_same": {"ztunnel node2": [0.09, 0.095, 0.1]},
                    "waypoint": {"ztunnel node1": [0.2, 0.21, 0.22], "waypoint": [0.6, 0.62, 0.64],
                                 "ztunnel node2": [0.1, 0.11, 0.12]},
                    "nginx": {"nginx proxy": [0.04, 0.041, 0.042]},
                }},
        "memory": {"held_connections": 1000,
                   "held": {"stunnel": 1000, "haproxy": 1000, "mesh_cross": 1000, "waypoint": 1000, "nginx": 500},
                   "idle_mb": {"ztunnel node1": 38.2, "ztunnel node2": 37.9, "waypoint": 45.0,
                               "stunnel client": 5.1, "stunnel server": 5.0, "haproxy client": 9.8,
                               "haproxy server": 9.9, "nginx proxy": 4.2},
                   "per_1000_conn_mb": {
                       "stunnel": {"stunnel client": 8.0, "stunnel server": 8.5},
                       "haproxy": {"haproxy client": 3.0, "haproxy server": 3.1},
                       "mesh_cross": {"ztunnel node1": 12.3, "ztunnel node2": 10.1},
                       "waypoint": {"ztunnel node1": 12.0, "waypoint": 30.0, "ztunnel node2": 10.0},
                       "nginx": {"nginx proxy": 2.5},
                   }},
        "comparisons": [["mesh_cross", "stunnel"], ["mesh_cross", "haproxy"], ["mesh_same", "stunnel"],
                        ["waypoint", "nginx"]],
        "machine_load": {"busy_before_pct": 3.1, "steal_pct": 0.4},
        "waypoint_response_codes": {"200": 27140},
        "problems": [],
        "controlplane": {
            "config": {"nodes": 1000, "pods": 10000},
            "rounds": {"latency_ms": {"p50": 78.8, "p99": 131.5}, "fanout_ms": {"p50": 105.6, "p99": 142.6},
                       "cpu_ms_per_change": 119.5},
            "sync": {"all_synced_s": 11.56},
            "controlplane": {"phases": [{"phase": "start + idle", "hwm_kib": 42188},
                                        {"phase": "burst", "hwm_kib": 203264}]},
            "burst": {"applies_per_s": 38.0},
            "floor": {"fanout_ms": {"p50": 123.7, "p99": 150.0}, "latency_ms": {"p50": 77.0, "p99": 120.0},
                      "all_synced_s": 13.56, "cpu_ms_per_change": 117.0,
                      "server_memory_end": {"hwm_kib": 1404928}},
            "ratios": {"fanout_p50": 105.6 / 123.7},
        },
        "ca": {
            "signatures": 2000,
            "sign": {"per_second": 4064.0, "p50_ms": 0.224, "p99_ms": 0.363, "mean_ms": 0.246},
            "ecdsa": {"per_second": 42122.0, "p50_ms": 0.022, "p99_ms": 0.038, "mean_ms": 0.023},
            "csr_verify": {"per_second": 11598.0, "p50_ms": 0.079, "p99_ms": 0.142, "mean_ms": 0.086},
            "builder": {"per_second": 10639.0, "p50_ms": 0.081, "p99_ms": 0.242, "mean_ms": 0.094},
            "openssl": {"per_second": 35.0, "p50_ms": 26.174, "p99_ms": 42.431, "mean_ms": 28.305},
            "ratios": {"sign_vs_verify_plus_builder": 1.37, "sign_vs_ecdsa": 10.5,
                       "sign_vs_builder": 2.6, "openssl_vs_sign": 115.3},
        },
    }


@pytest.fixture
def result() -> dict[str, Any]:
    return sample_result()


def _measure_of(result: dict[str, Any], key: str) -> dict[str, Any]:
    return next(m for m in result["measures"] if m["key"] == key)


def _section(md: str, heading: str) -> list[str]:
    lines = md.splitlines()
    start = lines.index(heading)
    out = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        out.append(line)
    return out


def _split(line: str) -> list[str]:
    return [c.strip() for c in line.strip()[1:-1].split(" | ")]


def _table(md: str, heading: str) -> dict[str, dict[str, str]]:
    """The first table under ``heading``: first-column text -> column header -> cell."""
    rows: list[str] = []
    for line in _section(md, heading):
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    header = _split(rows[0])
    return {cells[0]: dict(zip(header, cells, strict=True)) for cells in map(_split, rows[2:])}


def _row(table: dict[str, dict[str, str]], prefix: str) -> dict[str, str]:
    matches = [row for label, row in table.items() if label.startswith(prefix)]
    assert len(matches) == 1, (prefix, list(table))
    return matches[0]


# --- numbers ---------------------------------------------------------------------------------


def test_summary_gives_min_median_max() -> None:
    assert report.summary([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0}
    with pytest.raises(ValueError):
        report.summary([])


@pytest.mark.parametrize(
    ("value", "text"),
    [(19915.4, "19,915"), (412.3, "412"), (12.94, "12.9"), (3.1, "3.10"), (0.0312, "0.0312"), (0.0, "0")],
)
def test_numbers_keep_three_significant_digits_and_thousands_separators(value: float, text: str) -> None:
    assert report.fmt_number(value) == text


def test_ratios_are_formatted_with_a_multiplication_sign() -> None:
    assert report.fmt_ratio(0.25) == f"0.25{TIMES}"
    assert report.fmt_ratio(11.008) == f"11.0{TIMES}"
    assert report.fmt_ratio(115.3) == f"115{TIMES}"
    assert report.fmt_ratio(None) == DASH


# --- tables ----------------------------------------------------------------------------------


def test_results_cell_is_median_min_max_and_rps_have_thousands_separators(result: dict[str, Any]) -> None:
    md = report.format_markdown(result)
    table = _table(md, "## Results")
    assert _row(table, "iperf3 bulk throughput, Gb/s")["no mesh"] == f"12.4 (12.0{DASH}12.8)"
    assert _row(table, "wrk -c16 requests/s (saturation), req/s")["mesh L4, 2 nodes"] == (
        f"6,730 (6,565{DASH}6,887)"
    )


def test_a_scenario_not_measured_renders_a_dash(result: dict[str, Any]) -> None:
    table = _table(report.format_markdown(result), "## Results")
    row = _row(table, "iperf3 bulk throughput")
    assert row["nginx L7 proxy"] == DASH
    assert row["mesh + waypoint"] == DASH
    assert row["stunnel mTLS"] != DASH


def test_single_repeat_cells_are_just_the_median(result: dict[str, Any]) -> None:
    result["settings"]["repeats"] = 1
    for m in result["measures"]:
        m["values"] = {name: [values[1]] for name, values in m["values"].items()}
    table = _table(report.format_markdown(result), "## Results")
    assert _row(table, "iperf3 bulk throughput")["no mesh"] == "12.4"


def test_ratio_to_the_floor_is_in_its_row_and_column(result: dict[str, Any]) -> None:
    md = report.format_markdown(result)
    table = _table(md, "## Ratios to the floor (no mesh)")
    row = _row(table, "iperf3 bulk throughput")
    assert row["mesh L4, 2 nodes"] == f"0.25{TIMES}"  # 3.1 / 12.4
    assert "no mesh" not in row  # the floor is not a column of its own ratios
    assert report.floor_ratios(result)["iperf_gbps"]["mesh_cross"] == pytest.approx(0.25)


def test_floor_missing_from_a_measure_gives_dashes_for_that_row(result: dict[str, Any]) -> None:
    del _measure_of(result, "conn_per_s")["values"]["no_mesh"]
    table = _table(report.format_markdown(result), "## Ratios to the floor (no mesh)")
    row = _row(table, "new connections/s")
    assert {cell for col, cell in row.items() if col not in ("measure", "better")} == {DASH}
    assert row["better"] == "higher"
    assert _row(table, "iperf3 bulk throughput")["mesh L4, 2 nodes"] == f"0.25{TIMES}"


def test_behind_the_peer_is_bold_and_listed_and_not_behind_is_neither(result: dict[str, Any]) -> None:
    md = report.format_markdown(result)
    table = _table(md, "## Against the peers")
    # higher is better: 3.1 / 3.3 = 0.94, behind
    assert _row(table, "iperf3 bulk throughput")["mesh L4, 2 nodes / stunnel mTLS"] == f"**0.94{TIMES}**"
    # lower is better: 25.1 / 2.28 = 11.0, behind
    assert _row(table, "wrk -c16 p99 latency")["mesh + waypoint / nginx L7 proxy"] == f"**11.0{TIMES}**"
    # lower is better: 2.29 / 2.25 = 1.02, within the 5% tolerance
    assert _row(table, "wrk -c16 p50 latency")["mesh L4, 2 nodes / haproxy mTLS"] == f"1.02{TIMES}"
    # ahead: same-node mesh moves 3.6x stunnel's bytes
    assert _row(table, "iperf3 bulk throughput")["mesh L4, 1 node / stunnel mTLS"] == f"3.64{TIMES}"
    # fixed rate achieved equally everywhere
    assert _row(table, "h2load at 400 req/s: achieved")["mesh + waypoint / nginx L7 proxy"] == f"1.00{TIMES}"

    behind = _section(md, "## Where we are behind")
    text = "\n".join(behind)
    assert f"- mesh L4, 2 nodes: 0.94{TIMES} stunnel mTLS's bulk throughput (3.10 vs 3.30 Gb/s)" in behind
    assert f"- mesh + waypoint: 11.0{TIMES} nginx L7 proxy's p99 latency at saturation (25.1 vs 2.28 ms)" in behind
    assert "haproxy mTLS's p50 latency at saturation" not in text
    assert "mesh L4, 1 node: 3.64" not in text
    assert "achieved rate" not in text


def test_peer_comparison_cells_expose_the_ratio_and_the_verdict(result: dict[str, Any]) -> None:
    cells = {(c.ours, c.peer, c.measure): c for c in report.peer_comparisons(result)}
    cell = cells[("mesh_cross", "stunnel", "iperf_gbps")]
    assert cell.ratio == pytest.approx(3.1 / 3.3)
    assert cell.behind
    assert not cells[("mesh_cross", "haproxy", "sat_p50_ms")].behind
    nginx_iperf = cells[("waypoint", "nginx", "iperf_gbps")]  # neither measured
    assert nginx_iperf.ratio is None
    assert not nginx_iperf.behind


def test_cpu_table_has_component_medians_and_a_total(result: dict[str, Any]) -> None:
    md = report.format_markdown(result)
    table = _table(md, "## CPU seconds per 1000 requests (wrk -c16)")
    row = table["mesh + waypoint"]
    assert row["waypoint"] == "0.620"
    assert row["ztunnel node1"] == "0.210"
    assert row["stunnel client"] == DASH
    assert row["total"] == f"0.940 (0.900{DASH}0.980)"  # run by run: 0.9, 0.94, 0.98
    assert table["no mesh"]["total"] == "0 (no proxy)"


def test_memory_tables_have_idle_rss_and_per_1000_connections_with_a_total(result: dict[str, Any]) -> None:
    md = report.format_markdown(result)
    idle = _table(md, "## Memory (VmRSS)")
    assert idle["ztunnel node1"]["idle RSS, MB"] == "38.2"
    lines = _section(md, "## Memory (VmRSS)")
    per_conn_start = lines.index("### Per 1000 open connections")
    per_conn = _table("\n".join(["## x", *lines[per_conn_start:]]), "## x")
    assert per_conn["mesh L4, 2 nodes"]["ztunnel node1"] == "12.3"
    assert per_conn["mesh L4, 2 nodes"]["total"] == "22.4"
    assert per_conn["mesh + waypoint"]["total"] == "52.0"
    assert per_conn["nginx L7 proxy"]["held"] == "500"
    assert "scaled to 1000 connections, MB; 1000 connections asked for; held:" in "\n".join(lines)


def test_header_names_machine_code_settings_and_duration(result: dict[str, Any]) -> None:
    md = report.format_markdown(result)
    head = "\n".join(md.splitlines()[:10])
    assert "2 CPUs (AMD EPYC 7B13)" in head
    assert "kernel 6.18.44" in head and "Python 3.11.2" in head and "haproxy 2.6.12" in head
    assert "commit 5942c8f" in head
    assert "default mode" in head and "3 run(s) of each measure" in head and "fixed rate 400 req/s" in head
    assert "2026-11-23T10:00:00+00:00" in head and "412 s (6 min 52 s)" in head
    assert "control-plane bench (nodes 1000, pods 10000, rounds 20, burst 1000)" in head
    result["settings"]["ca"] = None
    assert "CA bench skipped" in report.format_markdown(result)


# --- control plane and CA --------------------------------------------------------------------


def test_controlplane_and_ca_sections_show_headline_numbers(result: dict[str, Any]) -> None:
    md = report.format_markdown(result)
    cp = _table(md, "## Control plane")
    assert cp["fan-out completion p50, ms"]["ours"] == "106"
    assert cp["fan-out completion p50, ms"]["ours / floor"] == f"0.85{TIMES}"
    assert cp["push latency per subscriber p99, ms"]["ours"] == "132"
    assert cp["full sync of every subscriber, s"]["floor"] == "13.6"
    assert cp["peak memory (VmHWM), MB"]["ours"] == "198"
    ca = _table(md, "## CA")
    assert ca["CertificateAuthority.sign()"]["per s"] == "4,064"
    assert f"sign() / its floor (CSR verify + builder): 1.37{TIMES}" in md


def test_controlplane_and_ca_none_omit_their_sections(result: dict[str, Any]) -> None:
    result["controlplane"] = None
    result["ca"] = None
    md = report.format_markdown(result)
    assert "## Control plane" not in md
    assert "## CA" not in md
    del result["controlplane"], result["ca"]
    assert "## CA" not in report.format_markdown(result)


def test_controlplane_and_ca_with_missing_keys_skip_lines(result: dict[str, Any]) -> None:
    result["controlplane"] = {"rounds": {"fanout_ms": {"p50": 105.6}}, "floor": {"error": "floor start: boom"}}
    result["ca"] = {"sign": {"per_second": 4064.0}}
    md = report.format_markdown(result)
    cp = _table(md, "## Control plane")
    assert list(cp) == ["fan-out completion p50, ms"]
    assert cp["fan-out completion p50, ms"]["floor"] == DASH
    assert "The floor failed: floor start: boom" in md
    ca = _table(md, "## CA")
    assert ca["CertificateAuthority.sign()"]["p50 ms"] == DASH
    result["controlplane"] = {}
    result["ca"] = {}
    md = report.format_markdown(result)
    assert "## Control plane" in md and "## CA" in md


# --- noise and problems ----------------------------------------------------------------------


def test_a_clean_run_has_no_noise_warning(result: dict[str, Any]) -> None:
    assert report.assess_noise(result) == []
    assert "How far to trust these numbers" not in report.format_markdown(result)


def test_a_noisy_floor_is_named_with_its_numbers(result: dict[str, Any]) -> None:
    _measure_of(result, "iperf_gbps")["values"]["no_mesh"] = [9.0, 12.0, 13.0]  # 33%
    warnings = report.assess_noise(result)
    assert len(warnings) == 1
    assert "no mesh" in warnings[0] and "iperf3 bulk throughput" in warnings[0]
    assert f"9.00{DASH}13.0 Gb/s" in warnings[0] and "33%" in warnings[0]
    md = report.format_markdown(result)
    assert md.index("How far to trust these numbers") < md.index("## Results")
    assert "iperf3 bulk throughput" in md[md.index("How far to trust these numbers"):md.index("## Scenarios")]


def test_many_noisy_cells_are_counted(result: dict[str, Any]) -> None:
    for m in result["measures"]:
        for name, values in m["values"].items():
            if name != "no_mesh":
                med = values[1]
                m["values"][name] = [med * 0.6, med, med * 1.3]
    warnings = report.assess_noise(result)
    assert len(warnings) == 1
    assert "58 of 68 measurements" in warnings[0]


def test_tail_latencies_may_spread_more_than_medians(result: dict[str, Any]) -> None:
    floor = {m["key"]: m for m in result["measures"]}
    p99 = floor["sat_p99_ms"]["values"]["no_mesh"]
    floor["sat_p99_ms"]["values"]["no_mesh"] = [p99[1] * 0.8, p99[1], p99[1] * 1.2]  # 40%: fine for a tail
    assert report.assess_noise(result) == []
    p50 = floor["sat_p50_ms"]["values"]["no_mesh"]
    floor["sat_p50_ms"]["values"]["no_mesh"] = [p50[1] * 0.8, p50[1], p50[1] * 1.2]  # 40%: noisy for a median
    warnings = report.assess_noise(result)
    assert len(warnings) == 1 and "wrk -c16 p50 latency" in warnings[0] and "limit 25%" in warnings[0]


def test_steal_and_a_busy_machine_before_the_start_are_reported(result: dict[str, Any]) -> None:
    result["machine_load"] = {"busy_before_pct": 41.0, "steal_pct": 7.2}
    warnings = report.assess_noise(result)
    assert any("Something else was using the CPU before the run started" in w and "41%" in w for w in warnings)
    assert any("steal" in w and "7.2%" in w for w in warnings)
    assert len(warnings) == 2


def test_a_single_repeat_run_says_spread_could_not_be_judged(result: dict[str, Any]) -> None:
    result["settings"]["repeats"] = 1
    result["mode"] = "quick"
    for m in result["measures"]:
        m["values"] = {name: [values[0]] for name, values in m["values"].items()}
    warnings = report.assess_noise(result)
    assert len(warnings) == 1
    assert "Single run" in warnings[0] and "could not be judged" in warnings[0]


def test_problems_are_shown_before_the_results(result: dict[str, Any]) -> None:
    result["problems"] = ["waypoint: wrk run 2/3 had 12 non-2xx answers"]
    md = report.format_markdown(result)
    assert "INVALID RUNS (1)" in md
    assert md.index("waypoint: wrk run 2/3 had 12 non-2xx answers") < md.index("## Results")


# --- bad input -------------------------------------------------------------------------------


def test_an_empty_values_list_raises_naming_the_measure_and_scenario(result: dict[str, Any]) -> None:
    _measure_of(result, "sat_rps")["values"]["waypoint"] = []
    with pytest.raises(ValueError, match="measure 'sat_rps': scenario 'waypoint' has no values"):
        report.format_markdown(result)
    with pytest.raises(ValueError, match="'waypoint'"):
        report.assess_noise(result)


def test_other_malformed_results_raise_naming_the_key(result: dict[str, Any]) -> None:
    broken = copy.deepcopy(result)
    del broken["measures"]
    with pytest.raises(ValueError, match="'measures'"):
        report.format_markdown(broken)
    broken = copy.deepcopy(result)
    broken["cpu"]["values"]["waypoint"]["waypoint"] = []
    with pytest.raises(ValueError, match="cpu: scenario 'waypoint', component 'waypoint' has no values"):
        report.format_markdown(broken)
    broken = copy.deepcopy(result)
    broken["comparisons"].append(["mesh_cross", "linkerd"])
    with pytest.raises(ValueError, match="unknown scenario 'linkerd'"):
        report.format_markdown(broken)
    broken = copy.deepcopy(result)
    _measure_of(broken, "iperf_gbps")["values"]["nginx_typo"] = [1.0]
    with pytest.raises(ValueError, match="measure 'iperf_gbps': unknown scenario 'nginx_typo'"):
        report.format_markdown(broken)


# --- files and charts ------------------------------------------------------------------------


def test_write_outputs_writes_json_markdown_and_pngs(result: dict[str, Any], tmp_path: Path) -> None:
    outdir = tmp_path / "out" / "run1"
    paths = report.write_outputs(result, outdir, dpi=30)
    assert json.loads(paths["json"].read_text()) == result
    assert paths["json"] == outdir / "bench.json"
    charts = sorted(k.removeprefix("chart:") for k in paths if k.startswith("chart:"))
    assert charts == sorted(["throughput", "requests", "latency", "cpu", "memory"])
    md = paths["markdown"].read_text()
    assert md == report.format_markdown(result, charts=[f"{name}.png" for name in
                                                         ("throughput", "requests", "latency", "cpu", "memory")])
    for name in charts:
        png = paths[f"chart:{name}"]
        assert png.parent == outdir
        data = png.read_bytes()
        assert len(data) > 100
        assert data.startswith(PNG_SIGNATURE)
        assert f"![{name}]({name}.png)" in md


def test_charts_without_data_are_skipped(result: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "throughput.png").write_bytes(b"stale from an earlier run")
    result["measures"] = [m for m in result["measures"] if m["key"] not in ("iperf_gbps", "conn_per_s")]
    result["memory"] = {"held_connections": 1000, "idle_mb": {}, "per_1000_conn_mb": {}}
    result["cpu"]["values"] = {"no_mesh": {}}
    written = report.draw_charts(result, tmp_path, dpi=20)
    assert [p.name for p in written] == ["requests.png", "latency.png"]
    assert not (tmp_path / "throughput.png").exists()
    md = report.format_markdown(result)
    assert "## Memory" not in md


def test_retried_runs_are_listed(result: dict[str, Any]) -> None:
    result["retried"] = ["waypoint iperf3: unable to send control message: Broken pipe"]
    md = report.format_markdown(result)
    assert "Runs repeated once after a failure (1)" in md and "Broken pipe" in md
