"""Tracing like Envoy in Istio: W3C and B3 context in, child spans, both kinds of context out,
Zipkin v2 JSON, and the exporter against a real HTTP/1.1 collector on 127.0.0.1."""

from __future__ import annotations

import functools
import json
import logging
import random
import re
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from waypoint.telemetry import RequestRecord
from waypoint.tracing import (
    TRACE_HEADERS,
    Span,
    TraceContext,
    ZipkinExporter,
    ensure_request_id,
    extract,
    parse_traceparent,
    propagation_headers,
    start_span,
    with_trace_headers,
    zipkin_json,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
NOW = 1718153645.993


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


# --- traceparent ---------------------------------------------------------------------------------


def test_traceparent_valid() -> None:
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-01") == TraceContext(TRACE, PARENT, sampled=True)
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-00") == TraceContext(TRACE, PARENT, sampled=False)
    # flags other than "sampled" are ignored; a future version may add fields
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-03") == TraceContext(TRACE, PARENT, sampled=True)
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-01-future") == TraceContext(TRACE, PARENT, sampled=True)


@pytest.mark.parametrize("value", [
    "", "garbage", f"00-{TRACE}-{PARENT}", f"00-{TRACE.upper()}-{PARENT}-01",
    f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{'0' * 16}-01", f"ff-{TRACE}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}-01-extra", f"01-{TRACE}-{PARENT}-01x", f"0g-{TRACE}-{PARENT}-01",
    f"00-{TRACE[:-1]}-{PARENT}0-01", f"00_{TRACE}_{PARENT}_01", f"00-{TRACE}-{PARENT}-zz",
    f"00-{TRACE}-{PARENT[:-1]}g-01",
])
def test_traceparent_malformed_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None
    span = start_span({"traceparent": value}, name="x", now=NOW, rand=rng())
    assert span.trace_id != TRACE and span.parent_id is None


# --- B3 ----------------------------------------------------------------------------------------------


def test_b3_multi() -> None:
    assert extract({"x-b3-traceid": TRACE, "x-b3-spanid": PARENT, "x-b3-sampled": "1"}) == TraceContext(
        TRACE, PARENT, sampled=True)
    assert extract({"x-b3-traceid": "a3ce929d0e0e4736", "x-b3-spanid": PARENT, "x-b3-parentspanid": "1" * 16,
                    "x-b3-sampled": "0"}) == TraceContext("a3ce929d0e0e4736", PARENT, sampled=False)
    assert extract({"x-b3-traceid": TRACE, "x-b3-spanid": PARENT}) == TraceContext(TRACE, PARENT)
    assert extract({"x-b3-traceid": TRACE, "x-b3-spanid": PARENT, "x-b3-sampled": "true"}) == TraceContext(
        TRACE, PARENT, sampled=True)
    # debug implies sampled
    assert extract({"x-b3-traceid": TRACE, "x-b3-spanid": PARENT, "x-b3-flags": "1"}) == TraceContext(
        TRACE, PARENT, sampled=True, debug=True)
    # a sampling decision alone
    assert extract({"x-b3-sampled": "0"}) == TraceContext(sampled=False)


@pytest.mark.parametrize("headers", [
    {"x-b3-traceid": TRACE},
    {"x-b3-traceid": TRACE, "x-b3-spanid": "xyz"},
    {"x-b3-traceid": TRACE[:20], "x-b3-spanid": PARENT},
    {"x-b3-traceid": "0" * 32, "x-b3-spanid": PARENT},
    {"x-b3-traceid": TRACE, "x-b3-spanid": "0" * 16},
    {"x-b3-traceid": TRACE, "x-b3-spanid": PARENT, "x-b3-parentspanid": "nope"},
    {"x-b3-traceid": TRACE, "x-b3-spanid": PARENT + "00"},
])
def test_b3_multi_malformed_is_ignored(headers: dict[str, str]) -> None:
    assert extract(headers) is None
    assert start_span(headers, name="x", now=NOW, rand=rng()).trace_id != TRACE


def test_b3_single() -> None:
    assert extract({"b3": f"{TRACE}-{PARENT}"}) == TraceContext(TRACE, PARENT)
    assert extract({"b3": f"{TRACE}-{PARENT}-1"}) == TraceContext(TRACE, PARENT, sampled=True)
    assert extract({"b3": f"{TRACE}-{PARENT}-0-{'1' * 16}"}) == TraceContext(TRACE, PARENT, sampled=False)
    assert extract({"b3": f"a3ce929d0e0e4736-{PARENT}-d"}) == TraceContext(
        "a3ce929d0e0e4736", PARENT, sampled=True, debug=True)
    assert extract({"b3": "0"}) == TraceContext(sampled=False)
    assert extract({"b3": "d"}) == TraceContext(sampled=True, debug=True)


@pytest.mark.parametrize("value", [
    "", "2", f"{TRACE}", f"{TRACE}-{PARENT}-x", f"{TRACE}-{PARENT}-1-bad", f"{TRACE}-{PARENT}-1-{PARENT}-more",
    f"{TRACE}-short", f"{'0' * 32}-{PARENT}-1", f"{TRACE}--1",
])
def test_b3_single_malformed_is_ignored(value: str) -> None:
    assert extract({"b3": value}) is None


def test_b3_single_wins_over_multi_and_b3_over_traceparent() -> None:
    other = "1" * 32
    headers = {"b3": f"{TRACE}-{PARENT}-1", "x-b3-traceid": other, "x-b3-spanid": "2" * 16,
               "traceparent": f"00-{'3' * 32}-{'4' * 16}-01"}
    assert extract(headers) == TraceContext(TRACE, PARENT, sampled=True)
    del headers["b3"]
    assert extract(headers) == TraceContext(other, "2" * 16)
    # a malformed b3 falls back to the multi headers, then to traceparent
    headers["b3"] = "junk"
    assert extract(headers) == TraceContext(other, "2" * 16)
    assert extract({"b3": "junk", "traceparent": f"00-{TRACE}-{PARENT}-01"}) == TraceContext(
        TRACE, PARENT, sampled=True)


def test_a_bare_b3_single_decision_applies_to_the_multi_header_ids() -> None:
    assert extract({"b3": "0", "x-b3-traceid": TRACE, "x-b3-spanid": PARENT, "x-b3-sampled": "1"}) == TraceContext(
        TRACE, PARENT, sampled=False)


def test_a_bare_b3_decision_rules_a_traceparent_trace() -> None:
    assert extract({"x-b3-sampled": "0", "traceparent": f"00-{TRACE}-{PARENT}-01"}) == TraceContext(
        TRACE, PARENT, sampled=False)


# --- tracestate -----------------------------------------------------------------------------------


def test_tracestate_passes_through_with_its_traceparent() -> None:
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
    span = start_span(headers, name="x", now=NOW, rand=rng())
    assert span.tracestate == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert ("tracestate", span.tracestate) in propagation_headers(span)


def test_tracestate_is_dropped_without_a_valid_matching_traceparent() -> None:
    assert start_span({"traceparent": "bad", "tracestate": "a=b"}, name="x", now=NOW).tracestate == ""
    assert start_span({"tracestate": "a=b"}, name="x", now=NOW).tracestate == ""
    headers = {"x-b3-traceid": "1" * 32, "x-b3-spanid": PARENT, "traceparent": f"00-{TRACE}-{PARENT}-01",
               "tracestate": "a=b"}
    assert start_span(headers, name="x", now=NOW).tracestate == ""


def test_a_long_tracestate_is_cut_to_whole_entries() -> None:
    entries = [f"v{i}=" + "x" * 60 for i in range(20)]
    span = start_span({"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": ",".join(entries)},
                      name="x", now=NOW)
    assert 0 < len(span.tracestate) <= 512
    assert span.tracestate.split(",") == entries[:len(span.tracestate.split(","))]


@given(st.dictionaries(st.sampled_from(sorted(TRACE_HEADERS | {"x-request-id"})), st.text(max_size=80)))
def test_extract_and_start_span_never_raise(headers: dict[str, str]) -> None:
    extract(headers)
    span = start_span(headers, name="x", now=NOW)
    assert re.fullmatch(r"[0-9a-f]{16}|[0-9a-f]{32}", span.trace_id)
    assert re.fullmatch(r"[0-9a-f]{16}", span.span_id)
    ensure_request_id(headers)


# --- spans ---------------------------------------------------------------------------------------------


def test_child_span_keeps_the_trace_and_gets_a_new_id() -> None:
    span = start_span({"traceparent": f"00-{TRACE}-{PARENT}-01"}, name="reviews.default.svc.cluster.local:9080/*",
                      now=NOW, rand=rng(), kind="CLIENT", local_service="waypoint.default")
    assert span.trace_id == TRACE and span.parent_id == PARENT
    assert span.span_id != PARENT and re.fullmatch(r"[0-9a-f]{16}", span.span_id)
    assert (span.kind, span.sampled, span.start) == ("CLIENT", True, 1718153645993000)
    span.finish(duration_s=0.0042)
    assert span.duration == 4200


def test_finish_with_status_and_record() -> None:
    span = start_span({}, name="x", now=NOW, rand=rng(), kind="CLIENT")
    span.tags["node_id"] = "waypoint-1"
    rec = RequestRecord(start_time=NOW, duration_s=0.25, method="GET", path="/p", authority="r:9080",
                        response_code=503, response_flags="UF", upstream_host="10.244.2.7:9080",
                        upstream_cluster="outbound|9080||r.default.svc.cluster.local")
    span.finish(503, rec, now=NOW + 5)
    assert span.duration == 250000  # the record's monotonic duration, not the wall clock
    assert (span.tags["http.status_code"], span.tags["error"], span.tags["response_flags"]) == ("503", "true", "UF")
    assert span.tags["node_id"] == "waypoint-1" and span.tags["http.url"] == "http://r:9080/p"
    assert (span.remote_ip, span.remote_port) == ("10.244.2.7", 9080)
    other = start_span({}, name="x", now=NOW, rand=rng())
    other.finish(200, now=NOW + 0.5)
    assert other.duration == 500000 and other.tags == {"http.status_code": "200"}


def test_a_span_id_never_equals_its_parent() -> None:
    class Stuck(random.Random):
        def __init__(self) -> None:
            super().__init__(1)
            self.calls = 0

        def getrandbits(self, k: int) -> int:
            self.calls += 1
            return int(PARENT, 16) if self.calls == 1 else super().getrandbits(k)

    span = start_span({"x-b3-traceid": TRACE, "x-b3-spanid": PARENT}, name="x", now=NOW, rand=Stuck())
    assert span.span_id != PARENT


def test_new_trace_when_there_is_none() -> None:
    a = start_span({}, name="x", now=NOW, rand=rng(1))
    b = start_span({}, name="x", now=NOW, rand=rng(2))
    assert re.fullmatch(r"[0-9a-f]{32}", a.trace_id) and a.trace_id != "0" * 32
    assert a.trace_id != b.trace_id and a.parent_id is None and a.sampled


def test_sampling() -> None:
    sampled_out = {"traceparent": f"00-{TRACE}-{PARENT}-00"}
    assert not start_span(sampled_out, name="x", now=NOW, sample_percent=100).sampled
    assert start_span({"traceparent": f"00-{TRACE}-{PARENT}-01"}, name="x", now=NOW, sample_percent=0).sampled
    assert start_span({"b3": "d"}, name="x", now=NOW, sample_percent=0).debug
    assert not start_span({}, name="x", now=NOW, sample_percent=0).sampled
    r = rng(3)
    hits = sum(start_span({}, name="x", now=NOW, sample_percent=25, rand=r).sampled for _ in range(4000))
    assert 800 < hits < 1200


def test_ensure_request_id() -> None:
    assert ensure_request_id({"x-request-id": "abc-123"}) == "abc-123"
    assert ensure_request_id([("accept", "*/*"), ("x-request-id", "abc-123")]) == "abc-123"
    for headers in ({}, {"x-request-id": ""}, {"x-request-id": "a\nb"}, {"x-request-id": "x" * 300}):
        new = ensure_request_id(headers)
        assert uuid.UUID(new).version == 4
    assert uuid.UUID(ensure_request_id([("accept", "*/*")])).version == 4


# --- propagation -----------------------------------------------------------------------------------


def test_propagation_headers() -> None:
    span = Span(trace_id=TRACE, span_id="b7ad6b7169203331", parent_id=PARENT, name="x")
    assert propagation_headers(span) == [
        ("traceparent", f"00-{TRACE}-b7ad6b7169203331-01"),
        ("x-b3-traceid", TRACE), ("x-b3-spanid", "b7ad6b7169203331"), ("x-b3-parentspanid", PARENT),
        ("x-b3-sampled", "1"),
    ]
    short = Span(trace_id="a3ce929d0e0e4736", span_id="b7ad6b7169203331", parent_id=None, name="x",
                 sampled=False)
    assert propagation_headers(short) == [
        ("traceparent", "00-0000000000000000a3ce929d0e0e4736-b7ad6b7169203331-00"),
        ("x-b3-traceid", "a3ce929d0e0e4736"), ("x-b3-spanid", "b7ad6b7169203331"), ("x-b3-sampled", "0"),
    ]
    debug = Span(trace_id=TRACE, span_id="b7ad6b7169203331", parent_id=None, name="x", debug=True)
    assert ("x-b3-flags", "1") in propagation_headers(debug)
    assert all(k != "x-b3-sampled" for k, _ in propagation_headers(debug))


@pytest.mark.parametrize("incoming", [
    {"traceparent": f"00-{TRACE}-{PARENT}-01"},
    {"traceparent": f"00-{TRACE}-{PARENT}-00"},
    {"x-b3-traceid": "a3ce929d0e0e4736", "x-b3-spanid": PARENT, "x-b3-sampled": "1"},
    {"b3": f"{TRACE}-{PARENT}-d"},
    {},
])
def test_propagation_round_trips_through_the_parser(incoming: dict[str, str]) -> None:
    span = start_span(incoming, name="x", now=NOW, rand=rng())
    out = dict(propagation_headers(span))
    both = extract(out)
    assert both is not None
    assert (both.trace_id, both.span_id, both.sampled, both.debug) == (span.trace_id, span.span_id, True
                                                                       if span.debug else span.sampled, span.debug)
    only_b3 = extract({k: v for k, v in out.items() if k.startswith("x-b3-")})
    assert only_b3 is not None and (only_b3.trace_id, only_b3.span_id) == (span.trace_id, span.span_id)
    only_w3c = extract({"traceparent": out["traceparent"]})
    assert only_w3c is not None and only_w3c.trace_id.endswith(span.trace_id)
    assert (only_w3c.span_id, only_w3c.sampled) == (span.span_id, span.sampled)
    # the next hop's child continues the same trace
    child = start_span(out, name="y", now=NOW, rand=rng(9))
    assert (child.trace_id, child.parent_id) == (span.trace_id, span.span_id)


def test_with_trace_headers_replaces_incoming_context() -> None:
    incoming = [("x-b3-traceid", "1" * 32), ("b3", "junk"), ("traceparent", "x"), ("tracestate", "a=b"),
                ("x-b3-sampled", "1"), ("end-user", "jason"), ("x-request-id", "rid")]
    span = Span(trace_id=TRACE, span_id="b7ad6b7169203331", parent_id=PARENT, name="x")
    out = with_trace_headers(incoming, span)
    assert out[:2] == [("end-user", "jason"), ("x-request-id", "rid")]
    assert out[2:] == propagation_headers(span)


# --- Zipkin JSON -----------------------------------------------------------------------------------


ZIPKIN_FIELDS = {"traceId", "id", "parentId", "kind", "name", "timestamp", "duration", "localEndpoint",
                 "remoteEndpoint", "annotations", "tags", "debug", "shared"}


def check_zipkin_v2(obj: Any) -> None:
    """Zipkin's v2 span rules (zipkin-api zipkin2-api.yaml)."""
    assert isinstance(obj, list)
    for s in obj:
        assert isinstance(s, dict) and set(s) <= ZIPKIN_FIELDS
        assert re.fullmatch(r"[0-9a-f]{16}|[0-9a-f]{32}", s["traceId"])
        assert re.fullmatch(r"[0-9a-f]{16}", s["id"])
        if "parentId" in s:
            assert re.fullmatch(r"[0-9a-f]{16}", s["parentId"])
        if "kind" in s:
            assert s["kind"] in {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}
        if "name" in s:
            assert isinstance(s["name"], str) and s["name"] == s["name"].lower()
        for key in ("timestamp", "duration"):
            if key in s:
                assert type(s[key]) is int and s[key] >= 1
        for key in ("localEndpoint", "remoteEndpoint"):
            if key in s:
                ep = s[key]
                assert set(ep) <= {"serviceName", "ipv4", "ipv6", "port"}
                assert isinstance(ep.get("serviceName", ""), str) and isinstance(ep.get("ipv4", ""), str)
                if "port" in ep:
                    assert type(ep["port"]) is int and 0 < ep["port"] < 65536
        if "tags" in s:
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in s["tags"].items())
        if "debug" in s:
            assert s["debug"] is True


def test_zipkin_json() -> None:
    span = start_span({"x-b3-traceid": TRACE, "x-b3-spanid": PARENT, "x-b3-sampled": "1"},
                      name="Reviews.default.svc.cluster.local:9080/*", now=NOW, rand=rng(), kind="CLIENT",
                      local_service="Waypoint.default")
    span.finish(duration_s=0.0031)
    span.local_ip, span.remote_ip, span.remote_port = "10.244.1.9", "10.244.2.7", 9080
    span.tags.update({"http.method": "GET", "http.status_code": "200", "upstream_cluster": "outbound|9080|v2|r"})
    root = Span(trace_id="a3ce929d0e0e4736", span_id="b7ad6b7169203331", parent_id=None, name="",
                remote_ip="fd00::1", debug=True)
    decoded = json.loads(zipkin_json([span, root]))
    check_zipkin_v2(decoded)
    assert decoded[0] == {
        "traceId": TRACE, "id": span.span_id, "parentId": PARENT, "kind": "CLIENT",
        "name": "reviews.default.svc.cluster.local:9080/*", "timestamp": 1718153645993000, "duration": 3100,
        "localEndpoint": {"serviceName": "waypoint.default", "ipv4": "10.244.1.9"},
        "remoteEndpoint": {"ipv4": "10.244.2.7", "port": 9080},
        "tags": {"http.method": "GET", "http.status_code": "200", "upstream_cluster": "outbound|9080|v2|r"},
    }
    assert decoded[1] == {"traceId": "a3ce929d0e0e4736", "id": "b7ad6b7169203331", "kind": "SERVER",
                          "remoteEndpoint": {"ipv6": "fd00::1"}, "debug": True}
    assert zipkin_json([]) == b"[]"


# --- the exporter ----------------------------------------------------------------------------------


def make_span(i: int) -> Span:
    span = Span(trace_id=TRACE, span_id=f"{i + 1:016x}", parent_id=PARENT, name=f"op{i}", start=1718153645993000,
                local_service="waypoint")
    span.finish(duration_s=0.001)
    return span


class Collector:
    """A Zipkin collector: HTTP/1.1 on 127.0.0.1, answers each POST with ``status``."""

    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.connections = 0

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        body = b""
        head: h11.Request | None = None
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(bytes(data))
                elif isinstance(event, h11.Request):
                    head, body = event, b""
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert head is not None
                    headers = {k.decode().lower(): v.decode() for k, v in head.headers}
                    self.requests.append((head.method.decode(), head.target.decode(), headers, body))
                    await stream.send_all(conn.send(h11.Response(status_code=self.status,
                                                                 headers=[("content-length", "0")]))
                                          + conn.send(h11.EndOfMessage()))
                    conn.start_next_cycle()
                else:
                    return
        except (trio.BrokenResourceError, h11.ProtocolError):
            return

    async def start(self, nursery: trio.Nursery) -> int:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1"))
        return int(listeners[0].socket.getsockname()[1])

    def spans(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for *_, body in self.requests:
            decoded = json.loads(body)
            check_zipkin_v2(decoded)
            out += decoded
        return out


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def test_exporter_posts_batches_to_a_real_collector() -> None:
    collector = Collector()
    async with trio.open_nursery() as nursery:
        port = await collector.start(nursery)
        exporter = ZipkinExporter(f"http://127.0.0.1:{port}/api/v2/spans", batch=2, flush_interval_s=0.05)
        for i in range(5):
            exporter.export(make_span(i))
        await nursery.start(exporter.run)
        await wait_for(lambda: exporter.sent == 5)
        exporter.export(make_span(5))
        await wait_for(lambda: exporter.sent == 6)
        nursery.cancel_scope.cancel()
    assert (exporter.dropped, exporter.failed) == (0, 0)
    method, target, headers, _ = collector.requests[0]
    assert (method, target) == ("POST", "/api/v2/spans")
    assert headers["content-type"] == "application/json" and headers["host"] == f"127.0.0.1:{port}"
    assert [len(json.loads(body)) for *_, body in collector.requests] == [2, 2, 1, 1]
    assert [s["id"] for s in collector.spans()] == [f"{i + 1:016x}" for i in range(6)]
    assert collector.spans()[0]["name"] == "op0" and collector.spans()[0]["duration"] == 1000
    assert collector.connections == 1  # kept alive across batches


async def test_exporter_default_path_and_unsampled_spans() -> None:
    collector = Collector()
    async with trio.open_nursery() as nursery:
        port = await collector.start(nursery)
        exporter = ZipkinExporter(f"http://127.0.0.1:{port}", flush_interval_s=0.02)
        await nursery.start(exporter.run)
        unsampled = make_span(0)
        unsampled.sampled = False
        exporter.export(unsampled)
        exporter.export(make_span(1))
        await wait_for(lambda: exporter.sent == 1)
        nursery.cancel_scope.cancel()
    assert collector.requests[0][1] == "/api/v2/spans"
    assert [s["id"] for s in collector.spans()] == [f"{2:016x}"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_down_collector_counts_failed_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/api/v2/spans"
    exporter = ZipkinExporter(url, batch=1, flush_interval_s=0.01, max_attempts=2, backoff_s=0.01,
                              max_backoff_s=0.02)
    with caplog.at_level(logging.WARNING, logger="waypoint.tracing"):
        async with trio.open_nursery() as nursery:
            await nursery.start(exporter.run)
            exporter.export(make_span(0))
            await wait_for(lambda: exporter.failed == 1)
            exporter.export(make_span(1))
            await wait_for(lambda: exporter.failed == 2)
            nursery.cancel_scope.cancel()
    assert (exporter.sent, exporter.dropped) == (0, 0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "waypoint.tracing"]
    assert len(warnings) == 1, warnings
    assert url in warnings[0]


async def test_a_full_queue_drops_and_counts() -> None:
    exporter = ZipkinExporter("http://127.0.0.1:9/api/v2/spans", max_queue=3)
    for i in range(5):
        exporter.export(make_span(i))
    assert (exporter.queued, exporter.dropped) == (3, 2)


def memory_connect(collector: Collector, nursery: trio.Nursery,
                   calls: list[tuple[str, int]]) -> Callable[[str, int], Awaitable[trio.abc.Stream]]:
    async def connect(host: str, port: int) -> trio.abc.Stream:
        calls.append((host, port))
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(collector.handle, server)
        return client
    return connect


async def test_injected_connect_and_server_errors_retry_then_fail() -> None:
    collector = Collector(status=503)
    calls: list[tuple[str, int]] = []
    async with trio.open_nursery() as nursery:
        exporter = ZipkinExporter("http://zipkin.istio-system:9411/api/v2/spans", flush_interval_s=0.01,
                                  max_attempts=3, backoff_s=0.001, max_backoff_s=0.002,
                                  connect=memory_connect(collector, nursery, calls))
        await nursery.start(exporter.run)
        exporter.export(make_span(0))
        await wait_for(lambda: exporter.failed == 1)
        collector.status = 202
        exporter.export(make_span(1))
        await wait_for(lambda: exporter.sent == 1)
        nursery.cancel_scope.cancel()
    assert calls[0] == ("zipkin.istio-system", 9411)
    assert len(collector.requests) == 4  # three tries, then the next batch
    assert collector.requests[0][2]["host"] == "zipkin.istio-system:9411"


async def test_a_client_error_is_not_retried() -> None:
    collector = Collector(status=400)
    calls: list[tuple[str, int]] = []
    async with trio.open_nursery() as nursery:
        exporter = ZipkinExporter("http://zipkin:9411/api/v2/spans", flush_interval_s=0.01, max_attempts=3,
                                  backoff_s=0.001, connect=memory_connect(collector, nursery, calls))
        await nursery.start(exporter.run)
        exporter.export(make_span(0))
        await wait_for(lambda: exporter.failed == 1)
        nursery.cancel_scope.cancel()
    assert len(collector.requests) == 1


async def test_a_silent_collector_times_out() -> None:
    async def connect(host: str, port: int) -> trio.abc.Stream:
        client, _server = trio.testing.memory_stream_pair()
        return client  # accepts the request, never answers

    exporter = ZipkinExporter("http://zipkin:9411", flush_interval_s=0.01, timeout_s=0.05, max_attempts=1,
                              backoff_s=0.001, connect=connect)
    async with trio.open_nursery() as nursery:
        await nursery.start(exporter.run)
        exporter.export(make_span(0))
        await wait_for(lambda: exporter.failed == 1)
        nursery.cancel_scope.cancel()
    assert exporter.sent == 0


@pytest.mark.parametrize("url", ["https://zipkin:9411/api/v2/spans", "zipkin:9411", "http://", "http://z:99999/"])
def test_exporter_refuses_urls_it_cannot_use(url: str) -> None:
    with pytest.raises(ValueError, match="zipkin"):
        ZipkinExporter(url)
