"""``meshctl bench --quick`` end to end: one lab with every scenario, the control-plane and CA
benchmarks, and the JSON, Markdown and PNG it writes. Needs root and the benchmark tools; fails
(never skips) without them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.conftest import (
    MESHCTL,
    ROOT,
    host_network_snapshot,
    lab_up,
    mounts,
    require_lab_machine,
)

pytestmark = pytest.mark.lab

SCENARIOS = ["no_mesh", "stunnel", "haproxy", "mesh_cross", "mesh_same", "waypoint", "nginx"]


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MESHCTL, "bench", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)


def test_refuses_to_share_the_machine_with_another_lab(tmp_path: Path) -> None:
    require_lab_machine()
    other = lab_up("mlbother", "--nodes", "1")
    try:
        proc = bench("--quick", "--out", str(tmp_path / "out"), timeout=120)
    finally:
        other.run("down", timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "another lab is up (mlbother)" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(600)
def test_quick_run_measures_every_scenario_and_writes_the_report(tmp_path: Path) -> None:
    require_lab_machine()
    before_net, before_mounts = host_network_snapshot(), mounts()
    out = tmp_path / "results"
    started = time.monotonic()
    proc = bench("--quick", "--out", str(out), timeout=540)
    took = time.monotonic() - started
    print(f"meshctl bench --quick took {took:.0f} s")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"

    # the run left the machine as it found it
    assert not Path("/run/meshlab/mlsuite").exists()
    assert host_network_snapshot() == before_net
    assert mounts() == before_mounts

    # where it says it saved the results, they are
    assert f"results: {out / 'bench.json'}, {out / 'bench.md'}" in proc.stdout
    result = json.loads((out / "bench.json").read_text())
    assert result["schema"] == "ambient-mesh-bench/1" and result["mode"] == "quick"
    assert [s["name"] for s in result["scenarios"]] == SCENARIOS
    assert result["problems"] == []
    measures = {m["key"]: m["values"] for m in result["measures"]}
    for key in ("sat_rps", "sat_p99_ms", "fixed_p99_ms", "conn_per_s"):
        assert sorted(measures[key]) == sorted(SCENARIOS), key
        assert all(v[0] > 0 for v in measures[key].values()), (key, measures[key])
    assert sorted(measures["iperf_gbps"]) == sorted(set(SCENARIOS) - {"nginx", "waypoint"})
    # the fixed offered rate is met by every scenario (it is below the slowest one's saturation)
    assert all(v[0] >= 0.9 * result["settings"]["rate_rps"] for v in measures["fixed_rps"].values())
    # the mesh uses CPU in both ztunnels across nodes, the waypoint in the waypoint too
    cpu = result["cpu"]["values"]
    assert cpu["no_mesh"] == {}
    assert set(cpu["mesh_cross"]) == {"ztunnel node1", "ztunnel node2"}
    assert all(v[0] > 0 for v in cpu["mesh_cross"].values())
    assert cpu["waypoint"]["waypoint"][0] > 0
    mem = result["memory"]
    assert all(v > 1 for v in mem["idle_mb"].values()), mem["idle_mb"]
    assert set(mem["per_1000_conn_mb"]) == set(SCENARIOS) - {"no_mesh"}
    assert result["controlplane"] is not None and result["ca"] is not None

    md = (out / "bench.md").read_text()
    for heading in ("## Results", "## Ratios to the floor", "## Against the peers", "## Memory"):
        assert heading in md
    charts = sorted(p.name for p in out.glob("*.png"))
    assert charts == ["cpu.png", "latency.png", "memory.png", "requests.png", "throughput.png"]
    for name in charts:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md
