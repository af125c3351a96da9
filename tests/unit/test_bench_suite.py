"""The benchmark suite's pure parts: reading wrk, h2load and iperf3, /proc accounting, the lab
manifests and peer configurations it generates, the access-log reader and ``meshctl bench``'s
arguments. (The suite itself runs in tests/lab/test_lab_bench.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl import cli
from tests.bench import loadgen, peers, suite
from tests.bench.benchlab import BenchError

WRK = """\
Running 1s test @ http://127.0.0.1:18080/small.html
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    82.97us  161.25us   4.23ms   98.55%
    Req/Sec    26.38k     4.96k   31.83k    54.55%
  Latency Distribution
     50%   65.00us
     75%   85.00us
     90%  112.00us
     99%    1.34ms
  28844 requests in 1.10s, 34.74MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  26238.56
Transfer/sec:     31.60MB
"""

H2LOAD = """\
finished in 1.00s, 10.00 req/s, 12.33KB/s
requests: 12 total, 12 started, 11 done, 10 succeeded, 1 failed, 0 errored, 1 timeout
status codes: 9 2xx, 1 3xx, 0 4xx, 1 5xx
"""
H2LOAD_LOG = ["1795413531611990\t200\t2310", "1795413531611983\t200\t2360", "1795413531812675\t200\t238",
              "1795413531812676\t503\t90", "garbage"]


def test_parse_wrk_reads_rate_percentiles_and_failures() -> None:
    res = loadgen.parse_wrk(WRK)
    assert res["rps"] == pytest.approx(26238.56)
    assert res["requests"] == 28844
    assert res["p50_ms"] == pytest.approx(0.065)
    assert res["p90_ms"] == pytest.approx(0.112)
    assert res["p99_ms"] == pytest.approx(1.34)
    assert res["errors"] == 6
    assert res["non_2xx"] == 7


def test_parse_wrk_names_what_is_missing() -> None:
    with pytest.raises(BenchError, match=r"no Requests/sec.*99% latency"):
        loadgen.parse_wrk(WRK.replace("Requests/sec", "R").replace("99%", "98%"))


def test_parse_h2load_uses_the_200_answers_of_the_log() -> None:
    res = loadgen.parse_h2load(H2LOAD, H2LOAD_LOG)
    assert res["rps"] == 10.0
    assert res["requests"] == 10  # 2xx + 3xx
    assert res["errors"] == 2     # failed + errored + timeout
    assert res["non_2xx"] == 2    # 3xx + 4xx + 5xx
    assert res["p50_ms"] == pytest.approx(2.31)
    assert res["p99_ms"] == pytest.approx(2.36)


def test_parse_h2load_fails_without_a_200_or_a_report() -> None:
    with pytest.raises(BenchError, match="no 200"):
        loadgen.parse_h2load(H2LOAD, ["1\t503\t90"])
    with pytest.raises(BenchError, match="req/s"):
        loadgen.parse_h2load("connection refused", H2LOAD_LOG)


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        loadgen.percentile([], 50)


def test_parse_iperf() -> None:
    good = {"end": {"sum_received": {"bits_per_second": 3.5e9}, "sum_sent": {"retransmits": 4}},
            "server_output_text": "Accepted connection from 10.244.1.5, port 4000\n"
                                  "[  5] local 10.244.2.3 port 5201 connected to 10.244.1.5 port 4001\n"}
    res = loadgen.parse_iperf(json.dumps(good))
    assert res == {"gbps": 3.5, "retransmits": 4.0, "peers": ["10.244.1.5"]}
    with pytest.raises(BenchError, match="iperf3: unable to connect"):
        loadgen.parse_iperf(json.dumps({"error": "unable to connect to server"}))
    with pytest.raises(BenchError, match="no JSON"):
        loadgen.parse_iperf("iperf3: error")
    with pytest.raises(BenchError, match="sum_received"):
        loadgen.parse_iperf(json.dumps({"end": {}}))


def test_proc_accounting_of_a_live_and_a_gone_process() -> None:
    me = os.getpid()
    assert (loadgen.cpu_seconds([me]) or 0) > 0
    rss = loadgen.rss_mb([me, me])
    assert rss is not None and rss == pytest.approx(2 * (loadgen.rss_mb([me]) or 0), rel=0.2)
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert loadgen.cpu_seconds([proc.pid]) is None
    assert loadgen.rss_mb([proc.pid]) is None
    limit = loadgen.open_files_limit(me)
    assert limit is None or limit > 0
    busy, steal, total = loadgen.machine_cpu_times()
    assert 0 <= busy <= total and 0 <= steal <= total


def test_workloads_manifest_pins_pods_and_enrols_namespaces(tmp_path: Path) -> None:
    peers.make_certificates(tmp_path / "certs")
    docs = [d for d in yaml.safe_load_all(suite.workloads_manifest(tmp_path)) if d]
    by = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}
    assert by[("Namespace", "", suite.NS_PLAIN)]["metadata"].get("labels") is None
    assert by[("Namespace", "", suite.NS_MESH)]["metadata"]["labels"]["istio.io/dataplane-mode"] == "ambient"
    assert by[("Namespace", "", suite.NS_WP)]["metadata"]["labels"]["istio.io/use-waypoint"] == "waypoint"
    plain = by[("Pod", suite.NS_PLAIN, "server")]["spec"]
    assert plain["nodeName"] == "node2"
    assert {c["name"] for c in plain["containers"]} == {"nginx", "iperf3", "stunnel", "haproxy"}
    assert by[("Pod", suite.NS_MESH, "client-far")]["spec"]["nodeName"] == "node1"
    assert by[("Pod", suite.NS_MESH, "client-near")]["spec"]["nodeName"] == "node2"
    ports = {p["name"] for p in by[("Service", suite.NS_WP, "server")]["spec"]["ports"]}
    assert ports == {"http", "tcp-iperf"}  # the waypoint parses http and passes tcp-iperf through


def test_peer_configs_are_mutual_tls_and_log_to_stderr_only(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    peers.make_certificates(certs)
    assert oct((certs / "server.key").stat().st_mode & 0o777) == "0o600"
    assert oct((certs / "client-bundle.pem").stat().st_mode & 0o777) == "0o600"
    client = Path(peers.stunnel_client(tmp_path, certs, {"http": ("127.0.0.1:1", "10.0.0.1:2")}, debug="notice")[1])
    text = client.read_text()
    for line in ("syslog = no", "requireCert = yes", "verifyChain = yes", "checkHost = bench-server",
                 "sslVersionMin = TLSv1.3", "client = yes", "debug = notice"):
        assert line in text
    server = Path(peers.haproxy_server(tmp_path, certs, {"http": ("0.0.0.0:16444", "127.0.0.1:8080")})[-1])
    assert "verify required" in server.read_text() and "ssl crt" in server.read_text()
    hclient = Path(peers.haproxy_client(tmp_path, certs, {"http": ("127.0.0.1:16080", "10.0.0.1:16444")})[-1])
    assert "verifyhost bench-server" in hclient.read_text()
    if shutil.which("haproxy"):  # scripts/setup installs it; check the files are valid haproxy configs
        for cfg in (server, hclient):
            check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
            assert check.returncode == 0, check.stdout + check.stderr


def test_access_log_reads_only_what_came_after_the_mark(tmp_path: Path) -> None:
    line = ("2026-11-23 06:00:00,000 INFO ztunnel.access: outbound via={via} src=10.244.1.{n}:40000 "
            "dst=10.96.0.10:8080 flags={flags}\n")
    log = suite.AccessLog(tmp_path)
    (tmp_path / "ztunnel-node1.log").write_text(line.format(via="hbone", n=5, flags="-"))
    (tmp_path / "ztunnel-node2.log").write_text("")
    mark = log.mark()
    with (tmp_path / "ztunnel-node1.log").open("a") as f:
        f.write(line.format(via="hbone", n=5, flags="-") + line.format(via="waypoint", n=6, flags="UF"))
    with (tmp_path / "ztunnel-node2.log").open("a") as f:
        f.write(line.format(via="local", n=7, flags="-") + "a line ztunnel.access: cut in the midd")
    got = log.since(mark)
    assert got == {("node1", "outbound", "hbone", "10.244.1.5", "-"): 1,
                   ("node1", "outbound", "waypoint", "10.244.1.6", "UF"): 1,
                   ("node2", "outbound", "local", "10.244.1.7", "-"): 1}


def test_connections_to_hold_fits_the_components_open_files_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = suite.Lab(status={"pods": [], "services": []}, components={"ztunnel node1": [1], "ztunnel node2": [2]})
    sc = suite.Scenario("mesh_cross", "mesh", "mesh", "L4", "p", ("ns", "c"), "h", 80, None, None, None,
                        ("ztunnel node1", "ztunnel node2"), ("ns", "s"))
    limits = {1: 1_048_576, 2: 1024}
    monkeypatch.setattr(loadgen, "open_files_limit", lambda pid: limits[pid])
    assert suite.connections_to_hold(lab, sc, 1000) == (1024 - 64) // 4  # two batches, two sockets each
    limits[2] = 1_048_576
    assert suite.connections_to_hold(lab, sc, 1000) == 1000


def test_meshctl_bench_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    args: Any = cli.build_parser().parse_args(["bench", "--quick", "--out", "/tmp/x", "--no-ca"])
    assert (args.command, args.quick, args.out, args.no_ca, args.no_controlplane) == ("bench", True, Path("/tmp/x"),
                                                                                      True, False)
    assert cli.main(["bench", "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_quick_settings_are_smaller_than_the_default() -> None:
    q, d = suite.QUICK, suite.DEFAULT
    assert q.repeats < d.repeats and q.load_s < d.load_s and q.held_connections < d.held_connections
    assert q.controlplane is not None and d.controlplane is not None
    assert q.controlplane["nodes"] < d.controlplane["nodes"]


def test_parse_stub_status_and_waypoint_requests() -> None:
    page = "Active connections: 1 \nserver accepts handled requests\n 12 12 345 \nReading: 0 Writing: 1 Waiting: 0 \n"
    assert loadgen.parse_stub_status(page) == 345
    assert loadgen.parse_stub_status("404 Not Found") is None
    metrics = ('# TYPE istio_requests_total counter\n'
               'istio_requests_total{reporter="waypoint",response_code="200",source_workload="a"} 10.0\n'
               'istio_requests_total{reporter="waypoint",response_code="200",source_workload="b"} 5.0\n'
               'istio_requests_total{reporter="waypoint",response_code="503"} 2.0\n'
               'istio_requests_total{reporter="source",response_code="200"} 99.0\n')
    assert loadgen.waypoint_requests_by_code(metrics) == {"200": 15, "503": 2}
