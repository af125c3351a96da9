"""The waypoint's HTTP/1.1 codec: serve_http1 against raw bytes and against Http1Client,
Http1Client against raw upstreams; keep-alive, pipelining, chunked, HTTP/1.0, HEAD,
100-continue, malformed requests, resets, timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

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
from waypoint.http1 import Http1Client, serve_http1

Handler = Callable[[Request], Awaitable[Response]]


class Recorder:
    """A handler that records requests and echoes what it was asked for."""

    def __init__(self, respond: Callable[[Request], Response] | None = None) -> None:
        self.requests: list[Request] = []
        self.respond = respond

    async def __call__(self, req: Request) -> Response:
        self.requests.append(req)
        if self.respond is not None:
            return self.respond(req)
        return Response(200, [("content-type", "text/plain"), ("x-method", req.method),
                              ("x-path", req.path)], b"echo:" + req.body)


class Served:
    """A client end of a connection served by serve_http1, with what the server did."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.errors: list[HttpError] = []
        self.finished = trio.Event()
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_until_eof(self) -> bytes:
        with trio.fail_after(5):
            while data := await self.stream.receive_some(65536):
                self.buffer += data
        out, self.buffer = self.buffer, b""
        return out

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """One response (content-length framed, or none for a 1xx/HEAD-less read)."""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in self.buffer:
                data = await self.stream.receive_some(65536)
                assert data, f"EOF before a response head: {self.buffer!r}"
                self.buffer += data
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                data = await self.stream.receive_some(65536)
                assert data, "EOF in a response body"
                rest += data
            self.buffer = rest[length:]
            return status, headers, rest[:length]

    async def head_only(self, ) -> tuple[int, dict[str, str]]:
        """A response head whose body is not to be read (HEAD, 1xx)."""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in self.buffer:
                data = await self.stream.receive_some(65536)
                assert data, f"EOF before a response head: {self.buffer!r}"
                self.buffer += data
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split(" ")[1]), headers


@asynccontextmanager
async def served(handler: Handler, **kwargs: object) -> AsyncIterator[Served]:
    client, server = trio.testing.memory_stream_pair()
    peer = Served(client)

    async def run() -> None:
        try:
            await serve_http1(server, handler, on_error=peer.errors.append,
                              **kwargs)  # type: ignore[arg-type]
        finally:
            peer.finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        yield peer
        await client.send_eof()  # the server stops waiting for the client to close
        with trio.fail_after(5):
            await peer.finished.wait()
        await client.aclose()


GET = b"GET /a?b=c HTTP/1.1\r\nHost: svc.ns:80\r\n\r\n"


# -- serving -----------------------------------------------------------------------------------------


async def test_a_request_becomes_a_request_and_the_response_is_framed_by_its_body() -> None:
    def respond(req: Request) -> Response:
        return Response(201, [("content-length", "999"), ("transfer-encoding", "chunked"),
                              ("connection", "keep-alive"), ("x-answer", "yes")], b"hello")

    h = Recorder(respond)
    async with served(h) as peer:
        await peer.send(b"POST /p/q?x=1 HTTP/1.1\r\nHost: reviews:9080\r\nX-Custom: A b\r\n"
                        b"Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\n"
                        b"TE: trailers\r\nContent-Length: 3\r\n\r\nabc")
        status, headers, body = await peer.response()
        assert (status, body) == (201, b"hello")
        assert headers["content-length"] == "5"
        assert "transfer-encoding" not in headers and "connection" not in headers
        assert headers["x-answer"] == "yes"
        await peer.stream.send_eof()  # type: ignore[attr-defined]
    [req] = h.requests
    assert (req.method, req.scheme, req.authority, req.path, req.version, req.body) == (
        "POST", "http", "reviews:9080", "/p/q?x=1", "HTTP/1.1", b"abc")
    assert req.headers == [("x-custom", "A b"), ("te", "trailers"), ("content-length", "3")]
    assert peer.errors == []


async def test_keep_alive_serves_requests_one_after_the_other_on_one_connection() -> None:
    h = Recorder()
    async with served(h) as peer:
        for i in range(3):
            await peer.send(f"GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            status, headers, _body = await peer.response()
            assert (status, headers["x-path"]) == (200, f"/{i}")
            assert "connection" not in headers
        await peer.stream.send_eof()  # type: ignore[attr-defined]
        assert await peer.read_until_eof() == b""
    assert [r.path for r in h.requests] == ["/0", "/1", "/2"]


async def test_pipelined_requests_are_answered_in_order() -> None:
    h = Recorder()
    async with served(h) as peer:
        await peer.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                        b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
                        b"GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        answers = [await peer.response() for _ in range(3)]
        assert [a[1]["x-path"] for a in answers] == ["/1", "/2", "/3"]
        assert answers[1][2] == b"echo:hi"
        assert answers[2][1]["connection"] == "close"
        assert await peer.read_until_eof() == b""
    assert peer.errors == []


async def test_a_chunked_request_is_buffered_whole_with_its_trailers() -> None:
    h = Recorder()
    async with served(h) as peer:
        await peer.send(b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n")
        await trio.sleep(0.01)
        await peer.send(b"6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n")
        status, _, body = await peer.response()
        assert (status, body) == (200, b"echo:hello world")
        await peer.stream.send_eof()  # type: ignore[attr-defined]
    [req] = h.requests
    assert req.trailers == [("x-checksum", "42")]
    assert all(k != "transfer-encoding" for k, _ in req.headers)


async def test_http_1_0_needs_no_host_and_gets_one_response_then_close() -> None:
    h = Recorder()
    async with served(h) as peer:
        await peer.send(b"GET /old HTTP/1.0\r\n\r\n")
        status, headers, body = await peer.response()
        assert (status, body) == (200, b"echo:")
        assert headers["connection"] == "close"
        assert await peer.read_until_eof() == b""
    [req] = h.requests
    assert (req.version, req.authority) == ("HTTP/1.0", "")


async def test_head_gets_the_headers_without_a_body_and_the_connection_stays_in_step() -> None:
    def respond(req: Request) -> Response:
        if req.path == "/upstream-head":  # as Http1Client returns a HEAD answer
            return Response(200, [("content-length", "1234")], b"")
        return Response(200, [("content-length", "1")], b"full body")

    async with served(Recorder(respond)) as peer:
        await peer.send(b"HEAD /local HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers = await peer.head_only()
        assert (status, headers["content-length"]) == (200, "9")
        await peer.send(b"HEAD /upstream-head HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers = await peer.head_only()
        assert (status, headers["content-length"]) == (200, "1234")
        await peer.send(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        assert await peer.response() == (200, {"content-length": "9"}, b"full body")
        await peer.stream.send_eof()  # type: ignore[attr-defined]


async def test_204_and_304_carry_no_body() -> None:
    def respond(req: Request) -> Response:
        status = int(req.path[1:])
        return Response(status, [("content-length", "3"), ("etag", "x")], b"abc")

    async with served(Recorder(respond)) as peer:
        await peer.send(b"GET /204 HTTP/1.1\r\nHost: h\r\n\r\nGET /304 HTTP/1.1\r\nHost: h\r\n\r\n"
                        b"GET /200 HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers = await peer.head_only()
        assert status == 204 and "content-length" not in headers
        status, headers = await peer.head_only()
        assert status == 304 and headers["etag"] == "x"
        assert await peer.response() == (200, {"content-length": "3", "etag": "x"}, b"abc")
        await peer.stream.send_eof()  # type: ignore[attr-defined]


async def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    h = Recorder()
    async with served(h) as peer:
        await peer.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
                        b"Expect: 100-continue\r\n\r\n")
        status, _ = await peer.head_only()
        assert status == 100
        await peer.send(b"data")
        assert (await peer.response())[::2] == (200, b"echo:data")
        await peer.stream.send_eof()  # type: ignore[attr-defined]
    assert all(k != "expect" for k, _ in h.requests[0].headers)


async def test_first_bytes_are_parsed_before_the_stream() -> None:
    h = Recorder()
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(lambda: serve_http1(server, h, first_bytes=b"GET /sn"))
        await client.send_all(b"iffed HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := await client.receive_some():
            data += chunk
        await client.aclose()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert h.requests[0].path == "/sniffed"


async def test_absolute_form_and_asterisk_targets() -> None:
    h = Recorder()
    async with served(h) as peer:
        await peer.send(b"GET http://Other.ns:8080/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n"
                        b"GET http://bare.ns HTTP/1.1\r\nHost: ignored\r\n\r\n"
                        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
        assert [(await peer.response())[0] for _ in range(3)] == [200, 200, 200]
        await peer.stream.send_eof()  # type: ignore[attr-defined]
    assert [(r.authority, r.path) for r in h.requests] == [
        ("Other.ns:8080", "/x?y"), ("bare.ns", "/"), ("h", "*")]


async def test_an_upgrade_is_ignored_and_served_as_plain_http() -> None:
    h = Recorder()
    async with served(h) as peer:
        await peer.send(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                        b"Upgrade: websocket\r\nSec-WebSocket-Key: abc\r\n\r\n")
        assert (await peer.response())[0] == 200
        await peer.send(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await peer.response())[1]["x-path"] == "/next"
        await peer.stream.send_eof()  # type: ignore[attr-defined]
    names = {k for k, _ in h.requests[0].headers}
    assert "upgrade" not in names and "connection" not in names
    assert "sec-websocket-key" in names


async def test_response_trailers_go_chunked_only_to_a_client_that_accepts_them() -> None:
    def respond(req: Request) -> Response:
        return Response(200, [], b"body", trailers=[("grpc-status", "0")])

    async with served(Recorder(respond)) as peer:
        await peer.send(b"GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
        _status, headers = await peer.head_only()
        assert headers["transfer-encoding"] == "chunked"
        with trio.fail_after(5):
            while not peer.buffer.endswith(b"0\r\ngrpc-status: 0\r\n\r\n"):
                peer.buffer += await peer.stream.receive_some()
        peer.buffer = b""
        await peer.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert await peer.response() == (200, {"content-length": "4"}, b"body")
        await peer.stream.send_eof()  # type: ignore[attr-defined]


# -- refusing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("request_bytes", "status", "words"), [
    (b"GARBAGE\r\n\r\n", 400, "request line"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n", 400, "header"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", 400, "header"),
    (b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400, "Host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Host"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     400, "Transfer-Encoding"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "chunked"),
    (b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n", 405, "CONNECT"),
    (b"GET index.html HTTP/1.1\r\nHost: h\r\n\r\n", 400, "target"),
    (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "target"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), 413,
     "body"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n", 431,
     "header"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-Many: 0123456789abcdef\r\n" * 3000 + b"\r\n", 431,
     "header"),
])
async def test_a_malformed_request_gets_its_status_and_the_connection_closes(
        request_bytes: bytes, status: int, words: str) -> None:
    h = Recorder()
    async with served(h) as peer:
        await peer.send(request_bytes)
        got, headers, body = await peer.response()
        assert got == status
        assert headers["connection"] == "close"
        assert headers["content-type"] == "text/plain"
        assert words.lower() in body.decode().lower()
        assert await peer.read_until_eof() == b""
        await peer.stream.send_eof()  # type: ignore[attr-defined]
        with trio.fail_after(0.5):  # the server stops draining at our EOF
            await peer.finished.wait()
    assert h.requests == []
    assert [e.status for e in peer.errors] == [status]
    assert str(peer.errors[0]) in body.decode()


async def test_an_early_413_reaches_a_tcp_client_still_sending_its_body() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as n:
        async def accept() -> None:
            stream = await listeners[0].accept()
            await serve_http1(stream, Recorder())

        n.start_soon(accept)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        answer = b""
        async with trio.open_nursery() as m:
            async def upload() -> None:
                await client.send_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n"
                                      % (MAX_BODY_BYTES + 1))
                block = b"x" * (1 << 20)
                with trio.move_on_after(2):
                    for _ in range(8):
                        await client.send_all(block)

            m.start_soon(upload)
            with trio.fail_after(5):
                while chunk := await client.receive_some():
                    answer += chunk
        await client.aclose()
        await listeners[0].aclose()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(b"Too Large: request body of 16777217 bytes is over 16777216")


async def test_a_chunked_body_over_the_limit_is_answered_413() -> None:
    h = Recorder()
    async with served(h) as peer:
        await peer.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
        async with trio.open_nursery() as n:
            async def send() -> None:
                try:
                    for _ in range(MAX_BODY_BYTES // (1 << 20) + 1):
                        await peer.send(chunk)
                except trio.BrokenResourceError:
                    pass
            n.start_soon(send)
            status, headers, body = await peer.response()
        assert (status, headers["connection"]) == (413, "close")
        assert b"Too Large: request body over" in body
        await peer.read_until_eof()
        await peer.stream.send_eof()  # type: ignore[attr-defined]
    assert h.requests == [] and [e.status for e in peer.errors] == [413]


async def test_a_handler_http_error_is_answered_with_its_status_and_closes() -> None:
    errors: list[HttpError] = []

    async def handler(req: Request) -> Response:
        raise HttpError("no route", 404)

    async with served(handler) as peer:
        await peer.send(GET)
        status, headers, body = await peer.response()
        assert (status, body, headers["connection"]) == (404, b"Not Found: no route", "close")
        assert await peer.read_until_eof() == b""
        await peer.stream.send_eof()  # type: ignore[attr-defined]
        errors = peer.errors
    assert errors == []  # the handler's own errors are not the codec's


async def test_another_handler_exception_propagates_and_the_connection_closes() -> None:
    async def handler(req: Request) -> Response:
        raise KeyError("bug")

    client, server = trio.testing.memory_stream_pair()
    await client.send_all(GET)
    await client.send_eof()
    with pytest.raises(KeyError):
        await serve_http1(server, handler)
    assert await client.receive_some() == b""


async def test_cancelling_serve_http1_closes_the_connection_at_once() -> None:
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(GET)
    start = trio.current_time()
    with trio.move_on_after(0.1):
        await serve_http1(server, Recorder())
    assert trio.current_time() - start < 0.5  # no lingering when cancelled
    data = b""
    while chunk := await client.receive_some():
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("partial", [
    b"GET /a HTTP/1.1\r\nHost:",
    b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
    b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
])
async def test_the_peer_closing_mid_request_ends_quietly(partial: bytes) -> None:
    h = Recorder()
    client, server = trio.testing.memory_stream_pair()
    errors: list[HttpError] = []
    await client.send_all(partial)
    await client.send_eof()
    with trio.fail_after(5):
        await serve_http1(server, h, on_error=errors.append)
    assert h.requests == [] and errors == []


async def test_a_peer_reset_mid_request_ends_quietly() -> None:
    class Broken(trio.abc.Stream):
        def __init__(self) -> None:
            self.reads = [b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nab"]

        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            await trio.lowlevel.checkpoint()
            if self.reads:
                return self.reads.pop()
            raise trio.BrokenResourceError("connection reset by peer")

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("connection reset by peer")

        async def wait_send_all_might_not_block(self) -> None:
            await trio.lowlevel.checkpoint()

        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()

    h = Recorder()
    await serve_http1(Broken(), h)
    assert h.requests == []


async def read_all(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(lambda: serve_http1(server, Recorder(), idle_timeout_s=30.0))
        await client.send_all(GET)
        await trio.sleep(29)
        await client.send_all(GET)  # the timer starts again
        start = trio.current_time()
        data = await read_all(client)
        assert 30.0 <= trio.current_time() - start < 31.0
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 2


async def test_a_request_left_unfinished_past_the_timeout_is_answered_408(
        autojump_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()
    errors: list[HttpError] = []
    async with trio.open_nursery() as n:
        n.start_soon(lambda: serve_http1(server, Recorder(), idle_timeout_s=10.0,
                                         on_error=errors.append))
        await client.send_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
        data = await read_all(client)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in data
    assert [e.status for e in errors] == [408]


# -- the client ------------------------------------------------------------------------------------------


@asynccontextmanager
async def client_to_server(handler: Handler) -> AsyncIterator[Http1Client]:
    a, b = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(serve_http1, b, handler)
        client = Http1Client(a, label="reviews")
        yield client
        await client.aclose()


async def test_the_client_and_server_round_trip_and_reuse_the_connection() -> None:
    def respond(req: Request) -> Response:
        return Response(200, [("x-seen-host", req.authority), ("set-cookie", "a=1"),
                              ("set-cookie", "b=2")], req.body[::-1])

    h = Recorder(respond)
    async with client_to_server(h) as client:
        assert client.reusable
        r1 = await client.request(Request("POST", "http", "reviews:9080", "/r?x=1",
                                          [("x-a", "1"), ("host", "stale"), ("content-length",
                                                                           "77")], b"abc"))
        assert client.reusable
        r2 = await client.request(Request("GET", "http", "reviews:9080", "/two", [("x-b", "2")]))
        assert client.reusable
    assert (r1.status, r1.body) == (200, b"cba")
    assert r1.headers == [("x-seen-host", "reviews:9080"), ("set-cookie", "a=1"),
                          ("set-cookie", "b=2"), ("content-length", "3")]
    assert r2.body == b""
    assert [r.path for r in h.requests] == ["/r?x=1", "/two"]
    assert h.requests[0].headers == [("x-a", "1"), ("content-length", "3")]
    assert h.requests[1].headers == [("x-b", "2")]


async def test_a_large_upload_leaves_the_connection_reusable() -> None:
    body = b"L" * (8 << 20)
    h = Recorder(lambda req: Response(200, [], str(len(req.body)).encode()))
    async with client_to_server(h) as client:
        for _ in range(3):
            resp = await client.request(Request("PUT", "http", "h", "/big", body=body))
            assert resp.body == str(len(body)).encode()
            assert client.reusable


async def test_the_client_sends_trailers_chunked_and_reads_response_trailers() -> None:
    h = Recorder(lambda req: Response(200, [], b"ok", trailers=[("grpc-status", "0")]))
    async with client_to_server(h) as client:
        resp = await client.request(Request("POST", "http", "h", "/", [("te", "trailers")],
                                            b"payload", trailers=[("x-sum", "9")]))
    assert h.requests[0].trailers == [("x-sum", "9")] and h.requests[0].body == b"payload"
    assert resp.trailers == [("grpc-status", "0")]


async def test_big_bodies_cross_both_ways_over_tcp() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB
    h = Recorder(lambda req: Response(200, [], req.body + payload))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as n:
        async def accept() -> None:
            stream = await listeners[0].accept()
            await serve_http1(stream, h)

        n.start_soon(accept)
        client = Http1Client(await trio.open_tcp_stream("127.0.0.1", port))
        for _ in range(2):
            resp = await client.request(Request("PUT", "http", "h", "/big", body=payload))
            assert resp.body == payload + payload
        assert client.reusable
        await client.aclose()
        await listeners[0].aclose()


class RawUpstream:
    """The far end of an Http1Client: reads one request, then does what a test says."""

    def __init__(self) -> None:
        self.client_end, self.end = trio.testing.memory_stream_pair()

    async def read_request(self) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await self.end.receive_some()
        return data


async def test_an_upstream_closing_mid_response_is_a_reset() -> None:
    up = RawUpstream()
    client = Http1Client(up.client_end, label="ratings")
    async with trio.open_nursery() as n:
        async def upstream() -> None:
            await up.read_request()
            await up.end.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await up.end.aclose()

        n.start_soon(upstream)
        with pytest.raises(UpstreamError) as info:
            await client.request(Request("GET", "http", "ratings", "/"))
    assert info.value.reason == "reset"
    assert "ratings" in str(info.value)
    assert not client.reusable


async def test_an_upstream_closing_before_answering_is_a_reset() -> None:
    up = RawUpstream()
    client = Http1Client(up.client_end)
    async with trio.open_nursery() as n:
        async def upstream() -> None:
            await up.read_request()
            await up.end.aclose()

        n.start_soon(upstream)
        with pytest.raises(UpstreamError) as info:
            await client.request(Request("GET", "http", "h", "/"))
    assert info.value.reason == "reset"


async def test_a_broken_upstream_connection_is_a_reset() -> None:
    class Dead(trio.abc.Stream):
        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("reset")

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("reset")

        async def wait_send_all_might_not_block(self) -> None:
            await trio.lowlevel.checkpoint()

        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()

    with pytest.raises(UpstreamError) as info:
        await Http1Client(Dead()).request(Request("GET", "http", "h", "/"))
    assert info.value.reason == "reset"


@pytest.mark.parametrize("answer", [
    b"SPDY/3 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n",
])
async def test_an_upstream_breaking_http_is_a_protocol_error(answer: bytes) -> None:
    up = RawUpstream()
    client = Http1Client(up.client_end)
    async with trio.open_nursery() as n:
        async def upstream() -> None:
            await up.read_request()
            await up.end.send_all(answer)

        n.start_soon(upstream)
        with pytest.raises(UpstreamError) as info:
            await client.request(Request("GET", "http", "h", "/"))
    assert info.value.reason == "protocol"


async def test_a_response_body_over_the_limit_is_too_large() -> None:
    up = RawUpstream()
    client = Http1Client(up.client_end)
    async with trio.open_nursery() as n:
        async def upstream() -> None:
            await up.read_request()
            await up.end.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
                                  % (MAX_BODY_BYTES + 1))
            block = b"z" * (1 << 20)
            try:
                for _ in range(MAX_BODY_BYTES // len(block) + 1):
                    await up.end.send_all(block)
            except trio.BrokenResourceError:
                pass

        n.start_soon(upstream)
        with pytest.raises(UpstreamError) as info:
            await client.request(Request("GET", "http", "h", "/"))
        await client.aclose()
    assert info.value.reason == "too_large"


async def test_the_client_skips_1xx_reads_head_answers_and_honours_connection_close() -> None:
    up = RawUpstream()
    client = Http1Client(up.client_end)
    async with trio.open_nursery() as n:
        async def upstream() -> None:
            req = await up.read_request()
            assert req.startswith(b"HEAD /h HTTP/1.1\r\nhost: h\r\n")
            await up.end.send_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                                  b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n"
                                  b"Connection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\n"
                                  b"\r\n")

        n.start_soon(upstream)
        resp = await client.request(Request("HEAD", "http", "h", "/h"))
    assert (resp.status, resp.body, resp.headers) == (200, b"", [("content-length", "4096")])
    assert not client.reusable
    with pytest.raises(RuntimeError):
        await client.request(Request("GET", "http", "h", "/"))


async def test_the_client_reads_a_body_delimited_by_close() -> None:
    up = RawUpstream()
    client = Http1Client(up.client_end)
    async with trio.open_nursery() as n:
        async def upstream() -> None:
            await up.read_request()
            await up.end.send_all(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
            await up.end.aclose()

        n.start_soon(upstream)
        resp = await client.request(Request("GET", "http", "h", "/"))
    assert resp.body == b"until the end"
    assert not client.reusable


async def test_an_early_answer_to_a_large_upload_is_returned() -> None:
    client_end, end = trio.testing.lockstep_stream_pair()
    client = Http1Client(client_end)
    async with trio.open_nursery() as n:
        async def upstream() -> None:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await end.receive_some()
            await end.send_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n")
            await end.aclose()

        n.start_soon(upstream)
        with trio.fail_after(5):
            resp = await client.request(Request("POST", "http", "h", "/",
                                                body=b"u" * (4 << 20)))
    assert resp.status == 413
    assert not client.reusable


async def test_concurrent_use_of_one_client_is_a_programming_error() -> None:
    up = RawUpstream()
    client = Http1Client(up.client_end)
    async with trio.open_nursery() as n:
        n.start_soon(client.request, Request("GET", "http", "h", "/"))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError):
            await client.request(Request("GET", "http", "h", "/"))
        await up.end.send_all(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert client.reusable
