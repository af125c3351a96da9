"""``meshctl ztunnel-config``, ``metrics`` and ``access-log`` without a lab: argument parsing, the
tables (from hand-made dumps), metric filtering, access-log selection, and reading a ztunnel's
admin endpoint (a real one on loopback standing in for the node's) with the operator's errors."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshctl import cli, observe, ztunneladmin, ztunnelconfig
from meshctl.lab import api, netlab
from meshctl.lab.config import LabConfig
from ztunnel import admin
from ztunnel.dump import config_dump
from ztunnel.state import ProxyState, Workload

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)

WORKLOADS: list[dict[str, Any]] = [
    {"namespace": "default", "name": "productpage-v1-6c8f-x2k9q", "addresses": ["10.244.2.4"], "node": "node2",
     "waypoint": None, "protocol": "HBONE"},
    {"namespace": "default", "name": "reviews-v1-7d9c-abcde", "addresses": ["10.244.1.7", "fd00::7"],
     "node": "node1", "waypoint": {"address": "10.96.0.99", "hostname": "waypoint.default.svc.cluster.local"},
     "protocol": "HBONE"},
    {"namespace": "legacy", "name": "curl-5b8f-zz", "addresses": [], "node": "node1", "waypoint": None,
     "protocol": "TCP"},
]
SERVICES: list[dict[str, Any]] = [
    {"namespace": "default", "name": "reviews", "hostname": "reviews.default.svc.cluster.local",
     "vips": ["10.96.12.5"], "waypoint": {"address": "10.96.0.99", "hostname": ""}, "endpoints": 3,
     "healthy_endpoints": 2},
    {"namespace": "default", "name": "api.example.com", "hostname": "api.example.com", "vips": [],
     "waypoint": None, "endpoints": 0, "healthy_endpoints": 0},
]
POLICIES: list[dict[str, Any]] = [
    {"namespace": "istio-system", "name": "deny-all-legacy", "action": "DENY", "scope": "GLOBAL", "dry_run": True,
     "rules": ["namespaces in [legacy]"]},
    {"namespace": "default", "name": "reviews-viewer", "action": "ALLOW", "scope": "WORKLOAD_SELECTOR",
     "dry_run": False, "rules": []},
]
CONNECTIONS: dict[str, Any] = {
    "hbone_pool": [{"source": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
                    "destination": "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
                    "next_hop": "10.244.1.7:15008", "connections": 1}],
    "inbound": [{"source_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
                 "source_ip": "10.244.2.4", "destination": "default/reviews-v1-7d9c-abcde",
                 "destination_address": "10.244.1.7:9080", "via": "hbone", "age_s": 3.5},
                {"source_principal": None, "source_ip": "172.18.0.12", "destination": "default/reviews-v1-7d9c-abcde",
                 "destination_address": "10.244.1.7:9080", "via": "plaintext", "age_s": None}],
}


def lines(text: str) -> list[list[str]]:
    """Table cells, split on the column gaps (three spaces or more)."""
    return [re.split(r"\s{3,}", line) for line in text.splitlines()]


# --- arguments ----------------------------------------------------------------------------------


def test_ztunnel_config_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLAB_NAME", "other")
    args = cli.build_parser().parse_args(["ztunnel-config", "workload", "node1"])
    assert (args.command, args.what, args.node, args.output, args.lab) == ("ztunnel-config", "workload", "node1",
                                                                          "table", "other")
    for what in ("workload", "service", "policy", "certificate", "connections", "all"):
        args = cli.build_parser().parse_args(["ztunnel-config", what, "node/node2", "-o", "json", "--lab", "lab2"])
        assert (args.what, args.node, args.output, args.lab) == (what, "node/node2", "json", "lab2")


@pytest.mark.parametrize("argv", [
    ["ztunnel-config", "route", "node1"], ["ztunnel-config", "workload"], ["ztunnel-config", "workload", "node1", "-o", "yaml"],
    ["metrics", "node1", "--match", "istio_(tcp"], ["access-log", "node1", "--tail", "many"],
])
def test_bad_arguments_exit_2_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "usage: meshctl" in capsys.readouterr().err


def test_metrics_and_access_log_arguments() -> None:
    args = cli.build_parser().parse_args(["metrics", "node1", "--match", "tcp_sent.*reviews"])
    assert (args.command, args.node, args.match.pattern) == ("metrics", "node1", "tcp_sent.*reviews")
    assert cli.build_parser().parse_args(["metrics", "node2"]).match is None
    args = cli.build_parser().parse_args(["access-log", "node1", "--tail", "20", "--lab", "x"])
    assert (args.command, args.node, args.tail, args.lab) == ("access-log", "node1", 20, "x")
    assert cli.build_parser().parse_args(["access-log", "node1"]).tail == -1


# --- tables -------------------------------------------------------------------------------------


def test_workload_table() -> None:
    text = ztunnelconfig.workload_table(WORKLOADS)
    assert text.splitlines()[0] == "NAMESPACE   POD NAME                    ADDRESS              NODE    WAYPOINT   PROTOCOL"
    assert lines(text)[1:] == [
        ["default", "productpage-v1-6c8f-x2k9q", "10.244.2.4", "node2", "None", "HBONE"],
        ["default", "reviews-v1-7d9c-abcde", "10.244.1.7,fd00::7", "node1", "waypoint", "HBONE"],
        ["legacy", "curl-5b8f-zz", "None", "node1", "None", "TCP"],
    ]
    assert all(line == line.rstrip() for line in text.splitlines())
    # columns line up: every cell of a column starts at the same offset
    starts = {line.index("node") for line in text.splitlines()[1:]}
    assert len(starts) == 1


def test_service_table_shows_healthy_over_total_endpoints() -> None:
    assert lines(ztunnelconfig.service_table(SERVICES)) == [
        ["NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT", "ENDPOINTS"],
        ["default", "reviews", "10.96.12.5", "10.96.0.99", "2/3"],
        ["default", "api.example.com", "None", "None", "0/0"],
    ]


def test_policy_table_marks_dry_run() -> None:
    assert lines(ztunnelconfig.policy_table(POLICIES)) == [
        ["NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"],
        ["istio-system", "deny-all-legacy", "DENY (dry run)", "GLOBAL"],
        ["default", "reviews-viewer", "ALLOW", "WORKLOAD_SELECTOR"],
    ]


def _cert(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
          serial: int, start: datetime, days: int) -> str:
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .sign(signer, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_certificate_table_one_row_per_certificate_of_the_chain() -> None:
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("root", "root", root_key, root_key, 0x1, NOW - timedelta(days=100), 3650)
    mid = _cert("mid", "root", mid_key, root_key, 0x2, NOW - timedelta(days=10), 365)
    expired = _cert("leaf", "mid", leaf_key, mid_key, 0xABC, NOW - timedelta(days=2), 1)
    certs: list[dict[str, Any]] = [
        {"identity": "spiffe://cluster.local/ns/default/sa/reviews", "state": "expired", "serial": "abc",
         "chain_pem": [expired, mid, root]},
        {"identity": "spiffe://cluster.local/ns/shop/sa/cart", "state": "fetching", "serial": None,
         "not_before": None, "not_after": None, "chain_pem": []},
        {"identity": "spiffe://cluster.local/ns/shop/sa/old", "state": "valid", "serial": "ff",
         "not_before": "2025-01-01 00:00:00+00:00", "not_after": "2025-01-02 00:00:00+00:00", "chain_pem": ["junk"]},
    ]
    rows = lines(ztunnelconfig.certificate_table(certs, NOW))
    assert rows[0] == ["CERTIFICATE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"]
    assert rows[1:] == [
        ["spiffe://cluster.local/ns/default/sa/reviews", "Leaf", "expired", "false", "abc",
         "2024-12-31T12:00:00Z", "2024-12-30T12:00:00Z"],
        ["spiffe://cluster.local/ns/default/sa/reviews", "Intermediate", "expired", "true", "2",
         "2025-12-22T12:00:00Z", "2024-12-22T12:00:00Z"],
        ["spiffe://cluster.local/ns/default/sa/reviews", "Root", "expired", "true", "1",
         "2034-09-21T12:00:00Z", "2024-09-23T12:00:00Z"],
        ["spiffe://cluster.local/ns/shop/sa/cart", "None", "fetching", "false", "-", "-", "-"],
        ["spiffe://cluster.local/ns/shop/sa/old", "Leaf", "valid", "true", "ff", "2025-01-02T00:00:00Z",
         "2025-01-01T00:00:00Z"],
    ]


def test_connections_tables() -> None:
    pool, inbound = ztunnelconfig.connections_table(CONNECTIONS).split("\n\n")
    assert lines(pool) == [
        ["SOURCE IDENTITY", "DESTINATION IDENTITY", "NEXT HOP", "HBONE CONNECTIONS"],
        ["spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
         "spiffe://cluster.local/ns/default/sa/bookinfo-reviews", "10.244.1.7:15008", "1"],
    ]
    assert lines(inbound) == [
        ["INBOUND FROM", "SOURCE IP", "DESTINATION", "DESTINATION ADDRESS", "VIA", "AGE"],
        ["spiffe://cluster.local/ns/default/sa/bookinfo-productpage", "10.244.2.4", "default/reviews-v1-7d9c-abcde",
         "10.244.1.7:9080", "hbone", "3.5s"],
        ["plaintext", "172.18.0.12", "default/reviews-v1-7d9c-abcde", "10.244.1.7:9080", "plaintext", "-"],
    ]
    assert ztunnelconfig.connections_table({}) == (
        "SOURCE IDENTITY   DESTINATION IDENTITY   NEXT HOP   HBONE CONNECTIONS\n\n"
        "INBOUND FROM   SOURCE IP   DESTINATION   DESTINATION ADDRESS   VIA   AGE")


DUMP: dict[str, Any] = {"node": "node1", "config_version": 4, "workloads": WORKLOADS, "services": SERVICES,
                        "policies": POLICIES, "certificates": [], "connections": CONNECTIONS}


def test_render_json_sections_and_all() -> None:
    import json

    assert json.loads(ztunnelconfig.render("policy", DUMP, "json")) == POLICIES
    assert json.loads(ztunnelconfig.render("all", DUMP, "json")) == DUMP
    text = ztunnelconfig.render("all", DUMP, now=NOW)
    headers = [block.splitlines()[0].split("   ")[0] for block in text.split("\n\n")]
    assert headers == ["NAMESPACE", "NAMESPACE", "NAMESPACE", "CERTIFICATE NAME", "SOURCE IDENTITY", "INBOUND FROM"]


def test_a_dump_without_the_section_says_the_ztunnel_is_older() -> None:
    old = {"node": "node1", "config_version": 3, "workloads": [], "certificates": []}
    with pytest.raises(ztunneladmin.ZtunnelError, match=r"ztunnel on node1 reports no 'services' in its config dump"):
        ztunnelconfig.render("service", old)
    with pytest.raises(ztunneladmin.ZtunnelError, match="reports no 'services', 'policies', 'connections' in"):
        ztunnelconfig.render("all", old)


# --- metrics and access log ----------------------------------------------------------------------

METRICS = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 10.0
# HELP istio_tcp_connections_opened_total TCP connections opened
# TYPE istio_tcp_connections_opened_total counter
istio_tcp_connections_opened_total{reporter="source",destination_service="reviews"} 3.0
istio_tcp_connections_opened_total{reporter="destination",destination_service="ratings"} 1.0
# HELP istio_tcp_connections_opened_created TCP connections opened
# TYPE istio_tcp_connections_opened_created gauge
istio_tcp_connections_opened_created{reporter="source",destination_service="reviews"} 1.7e9
# HELP istio_tcp_sent_bytes_total Bytes sent
# TYPE istio_tcp_sent_bytes_total counter
istio_tcp_sent_bytes_total{reporter="destination",destination_service="reviews"} 512.0
"""


def test_filter_metrics_keeps_matching_istio_samples_with_their_help_and_type() -> None:
    assert observe.filter_metrics(METRICS, re.compile(r"_total\{.*reviews")) == """\
# HELP istio_tcp_connections_opened_total TCP connections opened
# TYPE istio_tcp_connections_opened_total counter
istio_tcp_connections_opened_total{reporter="source",destination_service="reviews"} 3.0
# HELP istio_tcp_sent_bytes_total Bytes sent
# TYPE istio_tcp_sent_bytes_total counter
istio_tcp_sent_bytes_total{reporter="destination",destination_service="reviews"} 512.0
"""
    assert observe.filter_metrics(METRICS, re.compile("ratings")).splitlines()[2:] == [
        'istio_tcp_connections_opened_total{reporter="destination",destination_service="ratings"} 1.0']
    assert observe.filter_metrics(METRICS, re.compile("python_gc")) == ""  # only istio_* series
    assert observe.filter_metrics(METRICS, re.compile("nothing")) == ""


LOG = [
    "2025-01-01 12:00:00,001 INFO ztunnel: ztunnel on node1: admin on 127.0.0.1:15000\n",
    "2025-01-01 12:00:01,002 INFO ztunnel.access: outbound via=hbone src=10.244.1.7:40000 flags=-\n",
    "2025-01-01 12:00:02,003 WARNING ztunnel.inbound: inbound HBONE connection refused\n",
    "2025-01-01 12:00:03,004 INFO ztunnel.access: inbound via=hbone src=10.244.2.4:40001 flags=RBAC",
]


def test_access_lines_keeps_only_access_lines_and_tails() -> None:
    assert observe.access_lines(LOG) == [LOG[1], LOG[3] + "\n"]
    assert observe.access_lines(LOG, 1) == [LOG[3] + "\n"]
    assert observe.access_lines(LOG, 0) == []
    assert observe.access_lines(iter(LOG), 5) == [LOG[1], LOG[3] + "\n"]


# --- reading the ztunnel, and the operator's errors -----------------------------------------------

NODES = {"nodes": [{"name": "node1", "netns": "t-node1"}, {"name": "node2", "netns": "t-node2"}]}


@pytest.fixture
def fake_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[LabConfig]:
    """A lab whose daemon answers with two nodes and whose node namespaces are this one."""
    monkeypatch.setattr(api, "request", lambda cfg, payload, timeout=0: NODES)
    monkeypatch.setattr(netlab, "unbound_socket_in", lambda netns, family, kind: socket.socket(family, kind))
    monkeypatch.setattr(LabConfig, "state_dir", property(lambda self: tmp_path))
    yield LabConfig(name="t")


def _listener() -> tuple[trio.SocketListener, tuple[str, int]]:
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(8)
    return trio.SocketListener(trio.socket.from_stdlib_socket(raw)), raw.getsockname()


async def test_ztunnel_config_reads_a_real_admin_endpoint(
    fake_lab: LabConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    w = Workload(uid="u1", name="reviews-v1", namespace="default", node="node1", service_account="reviews",
                 trust_domain="cluster.local", addresses=("10.244.1.7",), enrolled=True, healthy=True)
    state = ProxyState.build(5, {"u1": w}, (), {})
    listener, address = _listener()
    monkeypatch.setattr(ztunneladmin, "ADMIN", address)
    monkeypatch.setenv("MESHLAB_NAME", "t")
    async with trio.open_nursery() as nursery:
        await nursery.start(admin.serve, listener, {
            "/config_dump": admin.json_route(lambda: config_dump("node1", state, []))})
        code = await trio.to_thread.run_sync(cli.main, ["ztunnel-config", "workload", "node/node1"])
        out = capsys.readouterr()
        assert (code, out.err) == (0, "")
        assert lines(out.out) == [["NAMESPACE", "POD NAME", "ADDRESS", "NODE", "WAYPOINT", "PROTOCOL"],
                                  ["default", "reviews-v1", "10.244.1.7", "node1", "None", "HBONE"]]
        # proxy-config still reads the same endpoint
        code = await trio.to_thread.run_sync(cli.main, ["proxy-config", "secret", "node1"])
        assert (code, capsys.readouterr().out.split()) == (0, ["IDENTITY", "SERIAL", "NOT", "BEFORE", "NOT",
                                                               "AFTER", "STATE"])
        nursery.cancel_scope.cancel()


async def test_metrics_reads_the_metrics_endpoint(
    fake_lab: LabConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    listener, address = _listener()
    monkeypatch.setattr(ztunneladmin, "METRICS", address)
    async with trio.open_nursery() as nursery:
        await nursery.start(admin.serve, listener, {"/metrics": lambda: (200, "text/plain", METRICS.encode())})
        code = await trio.to_thread.run_sync(cli.main, ["metrics", "node1", "--lab", "t", "--match", "sent_bytes"])
        assert (code, capsys.readouterr().out.splitlines()[-1]) == (
            0, 'istio_tcp_sent_bytes_total{reporter="destination",destination_service="reviews"} 512.0')
        code = await trio.to_thread.run_sync(cli.main, ["metrics", "node1", "--lab", "t"])
        assert (code, capsys.readouterr().out) == (0, METRICS)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("argv", "message"), [
    (["ztunnel-config", "workload", "node7"], "meshctl ztunnel-config: node 'node7' not found; lab t has node1, node2"),
    (["metrics", "node3"], "meshctl metrics: node 'node3' not found; lab t has node1, node2"),
    (["ztunnel-config", "all", "node1"], "meshctl ztunnel-config: ztunnel on node1 does not answer on {admin} "
                                         "(Connection refused); see {log}"),
    (["metrics", "node2"], "meshctl metrics: ztunnel on node2 does not answer on {metrics} (Connection refused); "
                           "see {log2}"),
    (["access-log", "node1"], "meshctl access-log: ztunnel on node1 has no log yet ({log} does not exist)"),
])
def test_operator_errors_are_one_line_and_exit_1(
    fake_lab: LabConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str,
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    monkeypatch.setattr(ztunneladmin, "ADMIN", ("127.0.0.1", port))
    monkeypatch.setattr(ztunneladmin, "METRICS", ("127.0.0.1", port))
    assert cli.main([*argv, "--lab", "t"]) == 1
    err = capsys.readouterr().err
    assert err == message.format(admin=f"127.0.0.1:{port}", metrics=f"127.0.0.1:{port}",
                                 log=fake_lab.state_dir / "ztunnel-node1.log",
                                 log2=fake_lab.state_dir / "ztunnel-node2.log") + "\n"


def test_lab_not_running_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["ztunnel-config", "policy", "node1"], ["metrics", "node1"], ["access-log", "node1"]):
        assert cli.main([*argv, "--lab", "zz9"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "lab 'zz9' is not running" in err, err


async def test_a_ztunnel_that_accepts_but_never_answers_times_out(
    fake_lab: LabConfig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    listener, address = _listener()  # listens, never reads
    monkeypatch.setattr(ztunneladmin, "TIMEOUT_S", 0.2)
    with pytest.raises(ztunneladmin.ZtunnelError, match=r"does not answer on .* \(no answer within 0.2 s\)"):
        await trio.to_thread.run_sync(ztunneladmin.http_get, fake_lab, "node1", address, "/config_dump")
    await listener.aclose()


async def test_an_error_status_is_reported(fake_lab: LabConfig) -> None:
    listener, address = _listener()
    async with trio.open_nursery() as nursery:
        await nursery.start(admin.serve, listener, {})
        with pytest.raises(ztunneladmin.ZtunnelError, match="ztunnel on node1 answered 404 for /config_dump: no such"):
            await trio.to_thread.run_sync(ztunneladmin.http_get, fake_lab, "node1", address, "/config_dump")
        nursery.cancel_scope.cancel()


def test_access_log_reads_the_lab_log_file(fake_lab: LabConfig, capsys: pytest.CaptureFixture[str]) -> None:
    (fake_lab.state_dir / "ztunnel-node1.log").write_text("".join(LOG))
    assert cli.main(["access-log", "node1", "--lab", "t", "--tail", "1"]) == 0
    assert capsys.readouterr().out == LOG[3] + "\n"
