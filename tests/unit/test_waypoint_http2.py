"""The waypoint's HTTP/2 codec: serve_http2 against Http2Client and against a raw h2 peer,
Http2Client against raw h2 upstreams; concurrency, flow control, trailers, stream errors that
spare their siblings, connection errors, resets and GOAWAY."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import pytest
import trio
import trio.testing

from waypoint.http import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    HttpError,
    Request,
    Response,
    UpstreamError,
)
from waypoint.http2 import HPACK_LIMIT, PREFACE, Http2Client, is_http2_preface, serve_http2

Handler = Callable[[Request], Awaitable[Response]]


async def echo(req: Request) -> Response:
    return Response(200, [("x-path", req.path), ("x-method", req.method)], req.body,
                    trailers=[("x-got-trailers", str(len(req.trailers)))] if req.trailers else [])


class LiteralEncoder(hpack.Encoder):
    """No Huffman coding (slow in hpack for the big headers some tests send)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class H2Peer:
    """A raw h2 connection driven by a test (no validation of what it sends)."""

    def __init__(self, stream: trio.abc.Stream, *, client: bool = True,
                 settings: dict[h2.settings.SettingCodes, int] | None = None) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=client, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False))
        self.conn.encoder = LiteralEncoder()
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=client,
                                                            initial_values=settings)
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.eof = False
        self.auto_ack = True

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def receive(self) -> list[h2.events.Event]:
        data = await self.stream.receive_some(1 << 20)
        if not data:
            self.eof = True
            return []
        events = self.conn.receive_data(data)
        for ev in events:
            if self.auto_ack and isinstance(ev, h2.events.DataReceived) \
                    and ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        self.events += events
        try:
            await self.flush()  # acks
        except trio.BrokenResourceError:
            pass  # the other side closed already: what it sent is still to be read
        return events

    async def until(self, done: Callable[[], bool]) -> None:
        with trio.fail_after(5):
            while not done():
                await self.receive()
                if self.eof:
                    return

    def of(self, stream_id: int) -> list[h2.events.Event]:
        return [e for e in self.events if getattr(e, "stream_id", None) == stream_id]

    def ended(self, stream_id: int) -> bool:
        return any(isinstance(e, h2.events.StreamEnded | h2.events.StreamReset)
                   for e in self.of(stream_id))

    def was_reset(self, stream_id: int) -> bool:
        return any(isinstance(e, h2.events.StreamReset) for e in self.of(stream_id))

    def answer(self, stream_id: int) -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes]]:
        headers: dict[bytes, bytes] = {}
        trailers: dict[bytes, bytes] = {}
        body = b""
        for e in self.of(stream_id):
            if isinstance(e, h2.events.ResponseReceived):
                headers = {bytes(k): bytes(v) for k, v in e.headers}
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
            elif isinstance(e, h2.events.TrailersReceived):
                trailers = {bytes(k): bytes(v) for k, v in e.headers}
        return headers, body, trailers

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        for e in self.events:
            if isinstance(e, h2.events.ConnectionTerminated):
                return e
        return None


def request_headers(path: str = "/", method: str = "GET",
                    extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    return [(b":method", method.encode()), (b":scheme", b"http"),
            (b":authority", b"productpage:9080"), (b":path", path.encode()), *(extra or [])]


@asynccontextmanager
async def served(handler: Handler) -> AsyncIterator[tuple[H2Peer, list[HttpError], trio.Event]]:
    a, b = trio.testing.memory_stream_pair()
    errors: list[HttpError] = []
    finished = trio.Event()

    async def run() -> None:
        try:
            await serve_http2(b, handler, on_error=errors.append)
        finally:
            finished.set()

    async with trio.open_nursery() as n:
        n.start_soon(run)
        peer = H2Peer(a)
        await peer.flush()
        yield peer, errors, finished
        with trio.fail_after(5):
            await a.aclose()
            await finished.wait()


@asynccontextmanager
async def client_to_server(handler: Handler, *, tcp: bool = False,
                           ) -> AsyncIterator[Http2Client]:
    async with trio.open_nursery() as n:
        if tcp:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]

            async def accept() -> None:
                stream = await listeners[0].accept()
                await listeners[0].aclose()
                await serve_http2(stream, handler)

            n.start_soon(accept)
            client_end: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        else:
            client_end, server_end = trio.testing.memory_stream_pair()
            n.start_soon(serve_http2, server_end, handler)
        client = Http2Client(client_end, label="details")
        await n.start(client.run)
        yield client
        await client.aclose()


# -- the preface -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [
    (PREFACE, True),
    (PREFACE + b"\x00\x00\x00\x04", True),
    (b"PRI ", True),
    (b"PRI * HTTP/2", True),
    (b"PRI", False),
    (b"", False),
    (b"GET / HTTP/1.1\r\n", False),
    (b"PRI * HTTP/1.1\r\n", False),
    (b"PRIX", False),
])
def test_is_http2_preface(data: bytes, expected: bool) -> None:
    assert is_http2_preface(data) is expected


# -- serving -----------------------------------------------------------------------------------------


async def test_a_request_and_response_round_trip_with_trailers_both_ways() -> None:
    seen: list[Request] = []

    async def handler(req: Request) -> Response:
        seen.append(req)
        return Response(200, [("content-type", "application/grpc"), ("content-length", "1"),
                              ("connection", "keep-alive")], b"\x00reply",
                        trailers=[("grpc-status", "0"), ("grpc-message", "ok")])

    async with client_to_server(handler) as client:
        resp = await client.request(Request(
            "POST", "http", "details:9080", "/pkg.Svc/Call?x=1",
            [("content-type", "application/grpc"), ("te", "trailers"), ("host", "stale"),
             ("transfer-encoding", "chunked"), ("x-user", "Ünï")], b"\x00req",
            trailers=[("x-checksum", "7")]))
    [req] = seen
    assert (req.method, req.scheme, req.authority, req.path, req.version, req.body) == (
        "POST", "http", "details:9080", "/pkg.Svc/Call?x=1", "HTTP/2", b"\x00req")
    assert req.headers == [("content-type", "application/grpc"), ("te", "trailers"),
                           ("x-user", "Ünï"), ("content-length", "4")]
    assert req.trailers == [("x-checksum", "7")]
    assert (resp.status, resp.body) == (200, b"\x00reply")
    assert resp.headers == [("content-type", "application/grpc"), ("content-length", "6")]
    assert resp.trailers == [("grpc-status", "0"), ("grpc-message", "ok")]


async def test_streams_are_served_concurrently() -> None:
    in_flight = 0
    peak = 0
    all_in = trio.Event()

    async def handler(req: Request) -> Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 20:
            all_in.set()
        await all_in.wait()
        in_flight -= 1
        return Response(200, [], req.path.encode())

    results: dict[int, bytes] = {}
    async with client_to_server(handler) as client:
        async def one(i: int) -> None:
            results[i] = (await client.request(Request("GET", "http", "h", f"/{i}"))).body

        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                for i in range(20):
                    n.start_soon(one, i)
    assert peak == 20
    assert results == {i: f"/{i}".encode() for i in range(20)}


async def test_big_bodies_beyond_the_default_window_cross_both_ways_over_tcp() -> None:
    payload = bytes(range(256)) * 20_000  # ~5 MB, many windows' worth

    async def handler(req: Request) -> Response:
        return Response(200, [], req.body[::-1])

    async with client_to_server(handler, tcp=True) as client:
        async def one() -> None:
            resp = await client.request(Request("PUT", "http", "h", "/", body=payload))
            assert resp.body == payload[::-1]

        async with trio.open_nursery() as n:
            for _ in range(3):
                n.start_soon(one)


async def test_the_server_waits_for_window_updates_when_sending() -> None:
    big = b"w" * 300_000

    async def handler(req: Request) -> Response:
        return Response(200, [], big)

    async with served(handler) as (peer, _errors, _):
        peer.auto_ack = False  # the default 65,535-byte windows, not reopened
        peer.conn.send_headers(1, request_headers(), end_stream=True)
        await peer.flush()
        with trio.move_on_after(0.3):
            while True:
                await peer.receive()
        received = sum(len(e.data) for e in peer.of(1) if isinstance(e, h2.events.DataReceived))
        assert received == 65_535  # the window, not a byte more
        peer.conn.increment_flow_control_window(1 << 20)
        peer.conn.increment_flow_control_window(1 << 20, stream_id=1)
        await peer.flush()
        await peer.until(lambda: peer.ended(1))
        assert peer.answer(1)[1] == big


async def test_a_request_body_beyond_the_default_window_is_read_whole() -> None:
    body = b"r" * 3_000_000
    seen: list[Request] = []

    async def handler(req: Request) -> Response:
        seen.append(req)
        return Response(204)

    async with served(handler) as (peer, _, _):
        peer.conn.send_headers(1, request_headers("/up", "POST"))
        sent = 0
        with trio.fail_after(5):
            while sent < len(body):
                window = peer.conn.local_flow_control_window(1)
                n = min(window, peer.conn.max_outbound_frame_size, len(body) - sent)
                if n:
                    peer.conn.send_data(1, body[sent:sent + n], end_stream=sent + n == len(body))
                    sent += n
                    await peer.flush()
                else:
                    await peer.receive()
        await peer.until(lambda: peer.ended(1))
        assert peer.answer(1)[0][b":status"] == b"204"
    assert seen[0].body == body


async def test_first_bytes_are_fed_before_the_stream() -> None:
    a, b = trio.testing.memory_stream_pair()
    peer = H2Peer(a)
    preface = peer.conn.data_to_send()
    async with trio.open_nursery() as n:
        n.start_soon(lambda: serve_http2(b, echo, first_bytes=preface[:10]))
        await a.send_all(preface[10:])
        peer.conn.send_headers(1, request_headers("/sniffed"), end_stream=True)
        await peer.flush()
        await peer.until(lambda: peer.ended(1))
        await a.aclose()
    assert peer.answer(1)[0][b"x-path"] == b"/sniffed"


async def test_head_keeps_the_given_length_and_sends_no_body() -> None:
    async def handler(req: Request) -> Response:
        return Response(200, [("content-length", "4096")], b"")

    async with client_to_server(handler) as client:
        resp = await client.request(Request("HEAD", "http", "h", "/"))
    assert (resp.status, resp.body, resp.headers) == (200, b"", [("content-length", "4096")])


@pytest.mark.parametrize(("headers", "status", "words"), [
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h")], 400, ":path"),
    ([(b":method", b"GET"), (b":path", b"/"), (b":authority", b"h")], 400, ":scheme"),
    ([(b":scheme", b"http"), (b":path", b"/"), (b":authority", b"h")], 400, ":method"),
    (request_headers(extra=[(b"X-Upper", b"1")]), 400, "header name"),
    (request_headers(extra=[(b"x-bad", b"a\nb")]), 400, "value"),
    (request_headers(extra=[(b"connection", b"keep-alive")]), 400, "connection-specific"),
    (request_headers(extra=[(b"te", b"gzip")]), 400, "te"),
    ([(b":method", b"GET"), (b"x-a", b"1"), (b":scheme", b"http"), (b":path", b"/")], 400,
     "after a regular"),
    (request_headers(extra=[(b":protocol", b"websocket")]), 400, ":protocol"),
    ([*request_headers()[:3], (b":path", b"/"), (b":path", b"/x")], 400, "repeated"),
    ([(b":method", b"CONNECT"), (b":authority", b"db:5432")], 405, "CONNECT"),
    (request_headers(method="POST", extra=[(b"content-length", b"%d" % (MAX_BODY_BYTES + 1))]),
     413, "body"),
    (request_headers(method="POST", extra=[(b"content-length", b"ten")]), 400,
     "content-length"),
    (request_headers(extra=[(b"x-big", b"a" * MAX_HEADER_BYTES)]), 431, "header section"),
])
async def test_a_malformed_stream_is_answered_and_its_siblings_carry_on(
        headers: list[tuple[bytes, bytes]], status: int, words: str) -> None:
    release = trio.Event()

    async def handler(req: Request) -> Response:
        await release.wait()
        return Response(200, [], b"sibling " + req.path.encode())

    async with served(handler) as (peer, errors, _):
        peer.conn.send_headers(1, request_headers("/slow"), end_stream=True)
        peer.conn.send_headers(3, headers, end_stream=False)
        peer.conn.send_data(3, b"x", end_stream=True)
        await peer.flush()
        await peer.until(lambda: peer.ended(3))
        answer, body, _ = peer.answer(3)
        assert answer[b":status"] == str(status).encode()
        assert answer[b"content-type"] == b"text/plain"
        assert words.lower() in body.decode().lower()
        release.set()
        peer.conn.send_headers(5, request_headers("/later"), end_stream=True)
        await peer.flush()
        await peer.until(lambda: peer.ended(1) and peer.ended(5))
        assert peer.answer(1)[1] == b"sibling /slow"
        assert peer.answer(5)[1] == b"sibling /later"
        assert peer.goaway() is None
    assert [e.status for e in errors] == [status]


async def test_a_body_not_matching_its_content_length_is_a_stream_error() -> None:
    async with served(echo) as (peer, errors, _):
        peer.conn.send_headers(1, request_headers("/a", "POST", [(b"content-length", b"5")]))
        peer.conn.send_data(1, b"abc", end_stream=True)
        peer.conn.send_headers(3, request_headers("/b", "POST", [(b"content-length", b"2")]))
        peer.conn.send_data(3, b"abc", end_stream=True)
        peer.conn.send_headers(5, request_headers("/c", "POST", [(b"content-length", b"3")]))
        peer.conn.send_data(5, b"abc", end_stream=True)
        await peer.flush()
        await peer.until(lambda: all(peer.ended(i) for i in (1, 3, 5)))
        assert peer.answer(1)[0][b":status"] == b"400"
        assert peer.answer(3)[0][b":status"] == b"400"
        assert peer.answer(5)[1] == b"abc"
    assert [e.status for e in errors] == [400, 400]


async def test_a_body_declared_over_the_limit_is_answered_413_and_the_client_gets_it() -> None:
    seen: list[Request] = []

    async def handler(req: Request) -> Response:
        seen.append(req)
        return Response(200)

    async with client_to_server(handler) as client:
        with trio.fail_after(10):
            resp = await client.request(Request("POST", "http", "h", "/",
                                                body=b"b" * (MAX_BODY_BYTES + 1)))
        assert resp.status == 413
        assert b"Too Large: request body of 16777217 bytes" in resp.body
        resp = await client.request(Request("GET", "http", "h", "/after"))
        assert resp.status == 200
    assert [r.path for r in seen] == ["/after"]


async def test_a_streamed_body_over_the_limit_is_answered_413_then_reset() -> None:
    async with served(echo) as (peer, errors, _):
        peer.conn.send_headers(1, request_headers("/up", "POST"))
        block = b"s" * (1 << 20)
        sent = 0
        with trio.fail_after(10):
            while not peer.was_reset(1):
                n = min(peer.conn.local_flow_control_window(1),
                        peer.conn.max_outbound_frame_size)
                if n and sent <= MAX_BODY_BYTES:
                    peer.conn.send_data(1, block[:n])
                    sent += n
                    await peer.flush()
                else:
                    await peer.receive()
        answer, body, _ = peer.answer(1)
        assert answer[b":status"] == b"413" and b"request body over" in body
        [reset] = [e for e in peer.of(1) if isinstance(e, h2.events.StreamReset)]
        assert reset.error_code == h2.errors.ErrorCodes.NO_ERROR
        peer.conn.send_headers(3, request_headers("/next"), end_stream=True)
        await peer.flush()
        await peer.until(lambda: peer.ended(3))
        assert peer.answer(3)[0][b"x-path"] == b"/next"
    assert [e.status for e in errors] == [413]


async def test_a_handler_http_error_answers_its_stream_only() -> None:
    async def handler(req: Request) -> Response:
        if req.path == "/denied":
            raise HttpError("RBAC: access denied", 403)
        return Response(200, [], b"fine")

    async with client_to_server(handler) as client:
        denied = await client.request(Request("GET", "http", "h", "/denied"))
        fine = await client.request(Request("GET", "http", "h", "/fine"))
    assert (denied.status, denied.body) == (403, b"Forbidden: RBAC: access denied")
    assert (fine.status, fine.body) == (200, b"fine")


async def test_another_handler_exception_ends_the_connection_and_propagates() -> None:
    async def handler(req: Request) -> Response:
        raise KeyError("bug")

    a, b = trio.testing.memory_stream_pair()
    peer = H2Peer(a)
    peer.conn.send_headers(1, request_headers(), end_stream=True)
    await peer.flush()
    with pytest.raises(KeyError):
        await serve_http2(b, handler)
    await peer.until(lambda: False)
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR


async def test_garbage_after_the_preface_ends_the_connection_with_goaway() -> None:
    async with served(echo) as (peer, errors, finished):
        peer.conn.send_headers(1, request_headers(), end_stream=True)
        await peer.flush()
        await peer.until(lambda: peer.ended(1))
        await peer.stream.send_all(b"\x00\x00\x08\x07\x00\x00\x00\x00\x01garbage!")  # GOAWAY on 1
        await peer.stream.send_all(b"\xff" * 64)
        with trio.fail_after(5):
            await finished.wait()
        await peer.until(lambda: False)
        goaway = peer.goaway()
        assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert peer.eof
    assert len(errors) == 1 and "protocol error" in str(errors[0]).lower()


async def test_a_header_block_beyond_hpacks_limit_ends_the_connection() -> None:
    async with served(echo) as (peer, errors, finished):
        peer.conn.max_outbound_frame_size = 1 << 20  # the server accepts large frames
        peer.conn.send_headers(1, request_headers(extra=[(b"x-huge", b"h" * HPACK_LIMIT)]),
                               end_stream=True)
        await peer.flush()
        with trio.fail_after(5):
            await finished.wait()
        await peer.until(lambda: False)
        goaway = peer.goaway()
        assert goaway is not None and goaway.error_code != h2.errors.ErrorCodes.NO_ERROR
    assert len(errors) == 1


async def test_a_bad_preface_ends_the_connection() -> None:
    a, b = trio.testing.memory_stream_pair()
    errors: list[HttpError] = []
    await a.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    with trio.fail_after(5):
        await serve_http2(b, echo, on_error=errors.append)
    assert len(errors) == 1 and "preamble" in str(errors[0])


async def test_the_peer_closing_or_going_away_ends_quietly() -> None:
    started = trio.Event()

    async def handler(req: Request) -> Response:
        started.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with served(handler) as (peer, errors, finished):
        peer.conn.send_headers(1, request_headers(), end_stream=True)
        await peer.flush()
        await started.wait()
        await peer.stream.aclose()
        with trio.fail_after(5):
            await finished.wait()
    assert errors == []

    async with served(echo) as (peer, errors, finished):
        peer.conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        await peer.flush()
        with trio.fail_after(5):
            await finished.wait()
    assert errors == []


async def test_cancelling_serve_http2_closes_the_connection_at_once() -> None:
    async def handler(req: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    a, b = trio.testing.memory_stream_pair()
    peer = H2Peer(a)
    peer.conn.send_headers(1, request_headers(), end_stream=True)
    await peer.flush()
    start = trio.current_time()
    with trio.move_on_after(0.1):
        await serve_http2(b, handler)
    assert trio.current_time() - start < 0.5
    await peer.until(lambda: False)
    assert peer.eof


async def test_a_graceful_goaway_from_the_client_lets_open_streams_finish() -> None:
    release = trio.Event()

    async def handler(req: Request) -> Response:
        await release.wait()
        return Response(200, [], b"done")

    async with served(handler) as (peer, _, finished):
        peer.conn.send_headers(1, request_headers(), end_stream=True)
        await peer.flush()
        await trio.testing.wait_all_tasks_blocked()
        await peer.stream.send_all(b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
                                   b"\x00\x00\x00\x00\x00\x00\x00\x00")  # GOAWAY NO_ERROR
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        await peer.until(lambda: peer.ended(1))
        assert peer.answer(1)[1] == b"done"
        with trio.fail_after(5):
            await finished.wait()


async def test_a_stream_reset_by_the_client_cancels_its_handler() -> None:
    cancelled = trio.Event()

    async def handler(req: Request) -> Response:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    async with served(handler) as (peer, errors, _):
        peer.conn.send_headers(1, request_headers(), end_stream=True)
        await peer.flush()
        await trio.testing.wait_all_tasks_blocked()
        peer.conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        peer.conn.send_headers(3, request_headers("/b", "POST"))  # reset before its end
        await peer.flush()
        peer.conn.reset_stream(3, h2.errors.ErrorCodes.CANCEL)
        await peer.flush()
        with trio.fail_after(5):
            await cancelled.wait()
    assert errors == []


# -- the client -------------------------------------------------------------------------------------------


@asynccontextmanager
async def client_to_raw(settings: dict[h2.settings.SettingCodes, int] | None = None,
                        ) -> AsyncIterator[tuple[Http2Client, H2Peer, trio.Nursery]]:
    a, b = trio.testing.memory_stream_pair()
    upstream = H2Peer(b, client=False, settings=settings)
    await upstream.flush()
    client = Http2Client(a, label="ratings")
    async with trio.open_nursery() as n:
        await n.start(client.run)
        yield client, upstream, n
        await client.aclose()


async def requests_arrive(upstream: H2Peer, count: int) -> list[int]:
    await upstream.until(lambda: sum(isinstance(e, h2.events.StreamEnded)
                                     for e in upstream.events) >= count)
    return [e.stream_id for e in upstream.events if isinstance(e, h2.events.StreamEnded)]


async def test_the_client_needs_run() -> None:
    a, _ = trio.testing.memory_stream_pair()
    with pytest.raises(RuntimeError):
        await Http2Client(a).request(Request("GET", "http", "h", "/"))


@pytest.mark.parametrize(("upstream_does", "reason"), [
    ("rst", "reset"),
    ("close", "reset"),
    ("goaway_error", "reset"),
    ("garbage", "protocol"),
    ("no_status", "protocol"),
    ("bad_length", "protocol"),
])
async def test_upstream_failures_become_upstream_errors(upstream_does: str, reason: str) -> None:
    async with client_to_raw() as (client, upstream, n):
        outcome: list[UpstreamError] = []

        async def call() -> None:
            with pytest.raises(UpstreamError) as info:
                await client.request(Request("GET", "http", "ratings", "/r"))
            outcome.append(info.value)

        n.start_soon(call)
        [sid] = await requests_arrive(upstream, 1)
        if upstream_does == "rst":
            upstream.conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif upstream_does == "goaway_error":
            upstream.conn.close_connection(h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif upstream_does == "no_status":
            upstream.conn.send_headers(sid, [(b"x-a", b"1")], end_stream=True)
        elif upstream_does == "bad_length":
            upstream.conn.send_headers(sid, [(b":status", b"200"), (b"content-length", b"9")])
            upstream.conn.send_data(sid, b"short", end_stream=True)
        elif upstream_does == "close":
            upstream.conn.send_headers(sid, [(b":status", b"200")])
            upstream.conn.send_data(sid, b"part")
        await upstream.flush()
        if upstream_does == "close":
            await upstream.stream.aclose()
        if upstream_does == "garbage":
            await upstream.stream.send_all(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
        with trio.fail_after(5):
            while not outcome:
                await trio.sleep(0.001)
    assert outcome[0].reason == reason
    assert "ratings" in str(outcome[0])


async def test_a_response_over_the_limit_is_too_large_and_the_connection_survives() -> None:
    async with client_to_raw() as (client, upstream, n):
        outcome: list[UpstreamError] = []

        async def call() -> None:
            with pytest.raises(UpstreamError) as info:
                await client.request(Request("GET", "http", "ratings", "/huge"))
            outcome.append(info.value)

        n.start_soon(call)
        [sid] = await requests_arrive(upstream, 1)
        upstream.conn.send_headers(sid, [(b":status", b"200")])
        sent = 0
        with trio.fail_after(10):
            while not outcome:
                window = 0 if upstream.was_reset(sid) else \
                    upstream.conn.local_flow_control_window(sid)
                n_bytes = min(window, upstream.conn.max_outbound_frame_size,
                              MAX_BODY_BYTES + 1 - sent)
                if n_bytes > 0:
                    upstream.conn.send_data(sid, b"h" * n_bytes)
                    sent += n_bytes
                    await upstream.flush()
                else:
                    with trio.move_on_after(0.01):
                        await upstream.receive()
        assert outcome[0].reason == "too_large"
        await upstream.until(lambda: upstream.was_reset(sid))
        assert client.usable

        async def answer() -> None:
            [_, sid2] = await requests_arrive(upstream, 2)
            upstream.conn.send_headers(sid2, [(b":status", b"200")], end_stream=True)
            await upstream.flush()

        n.start_soon(answer)
        assert (await client.request(Request("GET", "http", "ratings", "/"))).status == 200


async def test_a_graceful_goaway_finishes_open_requests_and_refuses_later_ones() -> None:
    async with client_to_raw() as (client, upstream, n):
        results: dict[str, Response | UpstreamError] = {}

        async def call(path: str) -> None:
            try:
                results[path] = await client.request(Request("GET", "http", "r", path))
            except UpstreamError as exc:
                results[path] = exc

        n.start_soon(call, "/1")
        n.start_soon(call, "/2")
        ids = await requests_arrive(upstream, 2)
        upstream.conn.close_connection(0, last_stream_id=min(ids))
        await upstream.flush()
        await trio.testing.wait_all_tasks_blocked()
        assert not client.usable
        with pytest.raises(UpstreamError):
            await client.request(Request("GET", "http", "r", "/3"))
        # h2 (the test's peer) refuses to send after its own GOAWAY: write the answer by hand
        upstream.conn = h2.connection.H2Connection()
        stream_id = min(ids).to_bytes(4, "big")
        await upstream.stream.send_all(
            b"\x00\x00\x01\x01\x05" + stream_id + b"\x88")  # HEADERS :status 200, END_STREAM
        with trio.fail_after(5):
            while len(results) < 2:
                await trio.sleep(0.001)
    paths = {e.stream_id: dict(e.headers)[b":path"].decode() for e in upstream.events
             if isinstance(e, h2.events.RequestReceived)}
    done, refused = results[paths[min(ids)]], results[paths[max(ids)]]
    assert isinstance(done, Response) and done.status == 200
    assert isinstance(refused, UpstreamError) and refused.reason == "reset"


async def test_an_early_answer_stops_the_upload_and_is_returned() -> None:
    async with client_to_raw() as (client, upstream, n):
        upstream.auto_ack = False  # never reopen the window: the upload stalls at 64 KiB
        result: list[Response] = []

        async def call() -> None:
            result.append(await client.request(Request("POST", "http", "r", "/up",
                                                       body=b"u" * (1 << 20))))

        n.start_soon(call)
        await upstream.until(lambda: any(isinstance(e, h2.events.RequestReceived)
                                         for e in upstream.events))
        upstream.conn.send_headers(1, [(b":status", b"413")], end_stream=True)
        await upstream.flush()
        await upstream.until(lambda: upstream.was_reset(1))
        with trio.fail_after(5):
            while not result:
                await trio.sleep(0.001)
    assert result[0].status == 413
    [reset] = [e for e in upstream.of(1) if isinstance(e, h2.events.StreamReset)]
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL


async def test_the_client_respects_the_peers_concurrency_limit() -> None:
    settings = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1}
    async with client_to_raw(settings) as (client, upstream, n):
        await upstream.until(lambda: any(isinstance(e, h2.events.SettingsAcknowledged)
                                         for e in upstream.events))
        await trio.testing.wait_all_tasks_blocked()
        done: list[int] = []

        async def call(i: int) -> None:
            await client.request(Request("GET", "http", "r", f"/{i}"))
            done.append(i)

        n.start_soon(call, 1)
        n.start_soon(call, 2)
        [first] = await requests_arrive(upstream, 1)
        with trio.move_on_after(0.1):
            await requests_arrive(upstream, 2)
        assert len([e for e in upstream.events if isinstance(e, h2.events.RequestReceived)]) == 1
        upstream.conn.send_headers(first, [(b":status", b"200")], end_stream=True)
        await upstream.flush()
        [_, second] = await requests_arrive(upstream, 2)
        upstream.conn.send_headers(second, [(b":status", b"200")], end_stream=True)
        await upstream.flush()
        with trio.fail_after(5):
            while len(done) < 2:
                await trio.sleep(0.001)


async def test_a_cancelled_request_resets_its_stream() -> None:
    async with client_to_raw() as (client, upstream, _n):
        with trio.move_on_after(0.05):
            await client.request(Request("GET", "http", "r", "/slow"))
        await upstream.until(lambda: upstream.was_reset(1))
        [reset] = [e for e in upstream.of(1) if isinstance(e, h2.events.StreamReset)]
        assert reset.error_code == h2.errors.ErrorCodes.CANCEL
        assert client.usable and client.active_requests == 0


async def test_aclose_fails_open_requests_and_makes_the_client_unusable() -> None:
    async with client_to_raw() as (client, upstream, n):
        outcome: list[UpstreamError] = []

        async def call() -> None:
            with pytest.raises(UpstreamError) as info:
                await client.request(Request("GET", "http", "r", "/"))
            outcome.append(info.value)

        n.start_soon(call)
        await requests_arrive(upstream, 1)
        await client.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert not client.usable
        assert [e.reason for e in outcome] == ["reset"]
        await upstream.until(lambda: False)
        assert upstream.goaway() is not None
