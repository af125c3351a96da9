"""HTTP/1.1 for the waypoint over trio streams: :func:`serve_http1` (downstream connections) and
:class:`Http1Client` (one upstream connection), both on h11.

Bodies are buffered whole (see :mod:`waypoint.http`). What the codecs do on their own:

- **Headers** become lower-case ``str`` (values decoded as latin-1, so every byte survives a
  round trip). Hop-by-hop headers (:data:`~waypoint.http.HOP_BY_HOP`, and the names a
  ``Connection`` header lists) are consumed, except ``te: trailers``. ``Host`` is not in
  :attr:`Request.headers`: it is :attr:`Request.authority` (an absolute-form target
  ``GET http://host/path`` sets the authority and path from the URL, RFC 9112 3.2.2). The
  server answers ``Expect: 100-continue`` itself (it buffers the body anyway) and drops the
  ``expect`` header; the client never sends one.
- **Framing** is the codec's: a response's ``content-length`` is set from its body (a stale one
  or a ``transfer-encoding`` is never forwarded), except a bodiless answer to ``HEAD`` and a
  ``304``, which keep the ``content-length`` they were given; ``204``, ``304`` and ``HEAD``
  answers carry no body. Trailers are sent (chunked) only to a request that said
  ``TE: trailers``; otherwise they are dropped, as HTTP/1.1 allows.
- **Keep-alive and pipelining**: requests on a connection are served one after the other (a
  pipelined request waits for the previous response). HTTP/1.0 clients get one request per
  connection (h11 does not do HTTP/1.0 keep-alive).
- **Errors**: a request the server cannot take is answered with ``err.status``, a
  ``text/plain`` body ``"<reason phrase>: <what was wrong>"`` and ``connection: close``, and
  the connection is closed. The cases:
  malformed HTTP (h11's verdict, 400; a bad ``Transfer-Encoding`` 501), a header section over
  :data:`~waypoint.http.MAX_HEADER_BYTES` (431), a body over
  :data:`~waypoint.http.MAX_BODY_BYTES` (413, before reading it when ``Content-Length`` says so),
  both ``Content-Length`` and ``Transfer-Encoding`` (400: a request-smuggling vector), several
  ``Host`` headers (400), ``CONNECT`` (405: the waypoint does not tunnel), and a request left
  unfinished for ``idle_timeout_s`` (408).
- **Upgrade** (WebSocket, ``h2c``) is not supported and is ignored, as RFC 9110 7.8 allows: the
  request is served as a plain HTTP/1.1 request without its ``upgrade`` header, so the upstream
  never switches protocols and the client sees an ordinary response.
- **Closing**: when the server closes first (an error, ``connection: close``, HTTP/1.0, the
  idle timeout), it half-closes and discards what the client still sends until the client
  closes too, for up to :data:`LINGER_S` (nginx's lingering close), so an answer sent before
  the whole request was read reaches the client instead of being lost to a TCP reset (not when
  :func:`serve_http1` is cancelled or the handler raised: then it just closes). The peer
  closing or resetting the connection ends :func:`serve_http1` quietly, also in the middle of
  a request (nobody is left to answer). An exception from the handler other than
  :class:`~waypoint.http.HttpError` propagates (the connection is closed first).

Limits: one request at a time per connection; a client that goes away while its request is
being handled is noticed when the answer is written (the handler is not cancelled); no ``1xx``
responses from the handler (the client skips ``1xx`` from upstream); no ``CONNECT`` or protocol
switching either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from http import HTTPStatus

import h11
import trio

from waypoint.http import (
    HOP_BY_HOP,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    Handler,
    HttpError,
    Request,
    Response,
    UpstreamError,
    local_response,
)

RECEIVE_CHUNK = 256 * 1024
"""Bytes asked of the stream per read."""
COALESCE_MAX = 64 * 1024
"""A body up to this size is written in the same ``send_all`` as the head (one copy of a small
body is cheaper than a second write); a larger one is written as it is, after the head."""
EARLY_ANSWER_DRAIN_S = 5.0
"""Client: how long the rest of a large request body may take to write after the upstream
answered it with keep-alive (with ``connection: close`` the write is abandoned at once)."""
LINGER_S = 1.0
"""When the server closes first: how long it waits for the client to close, discarding what
it sends."""

REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_NO_BODY_STATUSES = frozenset({204, 304})
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_BYTEARRAY_REPR = re.compile(r"bytearray\((b'.*?')\)")
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)


class _PeerGone(Exception):
    """The downstream peer closed or reset the connection: nothing left to answer."""


def error_response(err: HttpError) -> Response:
    """The local reply for ``err``: ``text/plain`` ``"<reason phrase>: <what was wrong>"``."""
    phrase = REASONS.get(err.status, b"Error").decode()
    return local_response(err.status, f"{phrase}: {err}" if str(err) else phrase)


def encode_value(value: str) -> bytes:
    """A header value as bytes: latin-1 (the inverse of the decoding), UTF-8 beyond it."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def _h11_message(exc: h11.ProtocolError) -> str:
    """h11's words, without its ``bytearray(...)`` wrapping, cut to 200 characters."""
    text = _BYTEARRAY_REPR.sub(r"\1", str(exc))
    return text if len(text) <= 200 else text[:197] + "..."


def _connection_tokens(value: bytes) -> set[str]:
    return {t.strip().lower() for t in value.decode("latin-1").split(",") if t.strip()}


def _split_absolute_target(target: str) -> tuple[str, str] | None:
    """``http://host[:port]/path?q`` → (authority, path); None for any other form."""
    lower = target[:8].lower()
    if lower.startswith("http://"):
        rest = target[7:]
    elif lower.startswith("https://"):
        rest = target[8:]
    else:
        return None
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    authority, path = rest[:cut], rest[cut:]
    if path.startswith("?"):
        path = "/" + path
    return authority, path or "/"


def _request_from_event(ev: h11.Request) -> tuple[Request, bool]:
    """The :class:`Request` for a parsed request head (body not read yet), and whether the client
    accepts trailers. Raises :class:`HttpError` for a request the waypoint refuses."""
    method = ev.method.decode("ascii")
    if method == "CONNECT":
        raise HttpError("CONNECT is not supported", 405)
    target = ev.target.decode("latin-1")
    raw = list(ev.headers)  # (lower-case name, value), validated by h11
    size = len(target)
    hosts: list[bytes] = []
    listed: set[str] = set()
    content_length: int | None = None
    chunked = False
    for name, value in raw:
        size += len(name) + len(value) + 4
        if name == b"host":
            hosts.append(value)
        elif name == b"connection":
            listed |= _connection_tokens(value)
        elif name == b"content-length":
            content_length = int(value)  # h11 checked: digits, one value
        elif name == b"transfer-encoding":
            chunked = True
    if size > MAX_HEADER_BYTES:
        raise HttpError(f"request header section over {MAX_HEADER_BYTES} bytes", 431)
    if content_length is not None and chunked:
        raise HttpError("both Content-Length and Transfer-Encoding")
    if content_length is not None and content_length > MAX_BODY_BYTES:
        raise HttpError(f"request body of {content_length} bytes is over {MAX_BODY_BYTES}", 413)
    if len(hosts) > 1:
        raise HttpError("more than one Host header")
    authority = hosts[0].decode("latin-1") if hosts else ""
    trailers_ok = False
    headers: list[tuple[str, str]] = []
    for name, value in raw:
        n = name.decode("ascii")
        if n == "host":
            continue
        if n in HOP_BY_HOP or n in listed:
            if n == "te" and "trailers" in _connection_tokens(value):
                trailers_ok = True
                headers.append(("te", "trailers"))
            continue
        if n == "expect" and value.lower() == b"100-continue":
            continue
        headers.append((n, value.decode("latin-1")))
    if target[:1] != "/" and not (target == "*" and method == "OPTIONS"):
        absolute = _split_absolute_target(target)
        if absolute is None:
            raise HttpError(f"invalid request target {target[:100]!r}")
        authority, target = absolute
    version = "HTTP/1.0" if ev.http_version == b"1.0" else "HTTP/1.1"
    return Request(method, "http", authority, target, headers, version=version), trailers_ok


def response_head(resp: Response, method: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The header fields to write for ``resp`` (to a ``method`` request) and the body to write
    after them: hop-by-hop headers dropped, ``content-length`` from the body (see the module
    docstring). Shared with :mod:`waypoint.http2`."""
    head_only = method == "HEAD" or resp.status in _NO_BODY_STATUSES
    out: list[tuple[bytes, bytes]] = []
    given_length: bytes | None = None
    for name, value in resp.headers:
        n = name.lower()
        if n in HOP_BY_HOP:
            continue
        if n == "content-length":
            given_length = encode_value(value)
            continue
        out.append((n.encode("ascii"), encode_value(value)))
    body = resp.body
    if head_only:
        keep = (method == "HEAD" or resp.status == 304) and resp.status != 204
        if keep and given_length is not None and not body:
            out.append((b"content-length", given_length))
        elif keep and body:
            out.append((b"content-length", str(len(body)).encode("ascii")))
        body = b""
    else:
        out.append((b"content-length", str(len(body)).encode("ascii")))
    return out, body


class _Connection:
    """One downstream connection's state for :func:`serve_http1`."""

    def __init__(self, stream: trio.abc.Stream, idle_timeout_s: float) -> None:
        self.stream = stream
        self.idle_timeout_s = idle_timeout_s
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.eof = False

    async def receive(self) -> bool:
        """Feed h11 the next bytes; False when none came for ``idle_timeout_s``."""
        with trio.move_on_after(self.idle_timeout_s):
            try:
                data = await self.stream.receive_some(RECEIVE_CHUNK)
            except _PEER_GONE:
                raise _PeerGone from None
            if not data:
                self.eof = True
            self.h11.receive_data(bytes(data))
            return True
        return False

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            if self.eof:
                raise _PeerGone from None  # closed mid-request: nobody to answer
            raise HttpError(_h11_message(exc), exc.error_status_hint) from None

    async def read_head(self) -> h11.Request | None:
        """The next request's head; None when the peer closed or stayed idle between requests."""
        while True:
            ev = self.next_event()
            if ev is h11.NEED_DATA:
                if not await self.receive():
                    if self.h11.their_state is h11.IDLE and not self.h11.trailing_data[0]:
                        return None
                    raise HttpError(f"request incomplete after {self.idle_timeout_s:g}s", 408)
                continue
            if isinstance(ev, h11.Request):
                return ev
            if isinstance(ev, h11.ConnectionClosed):
                return None
            raise HttpError(f"unexpected {type(ev).__name__}")  # pragma: no cover (h11's states)

    async def read_body(self) -> tuple[bytes, list[tuple[str, str]]]:
        """The current request's body and trailers. Raises :class:`HttpError` (413 over the
        limit)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            ev = self.next_event()
            if ev is h11.NEED_DATA:
                if self.h11.they_are_waiting_for_100_continue:
                    await self.send_all(self.h11.send(
                        h11.InformationalResponse(status_code=100, headers=[])))
                if not await self.receive():
                    raise HttpError(f"request body incomplete after {self.idle_timeout_s:g}s", 408)
                continue
            if isinstance(ev, h11.Data):
                size += len(ev.data)
                if size > MAX_BODY_BYTES:
                    raise HttpError(f"request body over {MAX_BODY_BYTES} bytes", 413)
                chunks.append(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                trailers = [(n.decode("ascii"), v.decode("latin-1")) for n, v in ev.headers]
                return b"".join(chunks), trailers
            else:  # pragma: no cover (h11 sends Data then EndOfMessage)
                raise HttpError(f"unexpected {type(ev).__name__}")

    async def send_all(self, data: bytes | None) -> None:
        if not data:
            return
        try:
            await self.stream.send_all(data)
        except _PEER_GONE:
            raise _PeerGone from None

    async def write_response(self, resp: Response, method: str, *, trailers_ok: bool,
                             close: bool) -> None:
        """Write ``resp`` to the request being served (``method``), in as few writes as
        possible."""
        status = resp.status
        if not 200 <= status <= 999:
            raise ValueError(f"cannot send a {status} response over HTTP/1.1")
        head_only = method == "HEAD" or status in _NO_BODY_STATUSES
        headers, body = response_head(resp, method)
        chunked_trailers = bool(resp.trailers) and trailers_ok and not head_only \
            and self.h11.their_http_version == b"1.1"
        if chunked_trailers:
            headers = [h for h in headers if h[0] != b"content-length"]
            headers.append((b"transfer-encoding", b"chunked"))
        if close:
            headers.append((b"connection", b"close"))
        conn = self.h11
        try:
            head = conn.send(h11.Response(status_code=status, headers=headers,
                                          reason=REASONS.get(status, b"")))
            pieces = conn.send_with_data_passthrough(h11.Data(data=body)) if body else None
            tail = conn.send(h11.EndOfMessage(headers=[
                (n.encode("ascii"), encode_value(v)) for n, v in resp.trailers
            ] if chunked_trailers else []))
        except h11.LocalProtocolError as exc:
            # a header h11 will not write (a control character from an HTTP/2 upstream, say):
            # answer 502 by hand, as h11's state is spent
            await self.send_all(_raw_bad_gateway(f"response not valid HTTP/1.1: {exc}"))
            raise _PeerGone from None
        assert head is not None and tail is not None
        if not pieces:
            await self.send_all(head + tail if tail else head)
        elif len(body) <= COALESCE_MAX:
            await self.send_all(b"".join([head, *pieces, tail]))
        else:
            await self.send_all(head)
            for piece in pieces:
                await self.send_all(piece)
            await self.send_all(tail)

    async def close(self, *, linger: bool) -> None:
        """Close the connection. With ``linger``, when the client has not closed its side:
        half-close ours first and discard what it still sends until it does, for up to
        :data:`LINGER_S` (so an answer sent before the whole request was read, or before
        ``connection: close``, is read by the client rather than lost to a reset)."""
        stream = self.stream
        if linger and isinstance(stream, trio.abc.HalfCloseableStream):
            with trio.move_on_after(LINGER_S) as scope:
                scope.shield = True
                try:
                    await stream.send_eof()
                    while not self.eof and await stream.receive_some(RECEIVE_CHUNK):
                        pass
                except (*_PEER_GONE, trio.BusyResourceError):
                    pass
        with trio.move_on_after(0.5) as scope:
            scope.shield = True
            await stream.aclose()


def _raw_bad_gateway(reason: str) -> bytes:
    body = f"Bad Gateway: {reason}".encode("ascii", "replace")
    return (b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


async def serve_http1(stream: trio.abc.Stream, handler: Handler, *, first_bytes: bytes = b"",
                      idle_timeout_s: float = 3600.0,
                      on_error: Callable[[HttpError], None] | None = None) -> None:
    """Serve HTTP/1.x requests on ``stream`` with ``handler`` until the connection ends, then
    close ``stream``.

    ``first_bytes`` were already read from ``stream`` (protocol sniffing) and are parsed first.
    The connection is closed after ``idle_timeout_s`` without a byte between requests; a request
    left unfinished that long is answered 408. ``on_error`` is called with each
    :class:`~waypoint.http.HttpError` the codec answers (malformed or refused requests), not
    with those the handler raises (the handler's own ``HttpError`` is answered with its status
    and the connection closed). Any other exception from ``handler`` propagates. See the module
    docstring for the rest."""
    conn = _Connection(stream, idle_timeout_s)
    if first_bytes:
        conn.h11.receive_data(first_bytes)
    linger = True
    try:
        await _serve(conn, handler, on_error)
    except _PeerGone:
        pass
    except BaseException:  # cancelled, or the handler failed: no lingering
        linger = False
        raise
    finally:
        await conn.close(linger=linger)


async def _serve(conn: _Connection, handler: Handler,
                 on_error: Callable[[HttpError], None] | None) -> None:
    while True:
        method = "GET"
        try:
            ev = await conn.read_head()
            if ev is None:
                return
            method = ev.method.decode("ascii", "replace")
            req, trailers_ok = _request_from_event(ev)
            req.body, req.trailers = await conn.read_body()
        except HttpError as err:
            if on_error is not None:
                on_error(err)
            if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await conn.write_response(error_response(err), method, trailers_ok=False,
                                          close=True)
            return
        try:
            resp = await handler(req)
        except HttpError as err:
            await conn.write_response(error_response(err), method, trailers_ok=False,
                                      close=True)
            return
        await conn.write_response(resp, method, trailers_ok=trailers_ok, close=False)
        if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
            return  # Connection: close, HTTP/1.0, or a switch h11 will not make
        conn.h11.start_next_cycle()


# -- the client ------------------------------------------------------------------------------------


def _request_headers(req: Request) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = [(b"host", encode_value(req.authority))]
    for name, value in req.headers:
        n = name.lower()
        if n in HOP_BY_HOP or n in ("host", "content-length", "expect"):
            if n == "te" and value.strip().lower() == "trailers":
                headers.append((b"te", b"trailers"))
            continue
        headers.append((n.encode("ascii"), encode_value(value)))
    if req.trailers:
        headers.append((b"transfer-encoding", b"chunked"))
    elif req.body or req.method not in _BODYLESS_METHODS:
        headers.append((b"content-length", str(len(req.body)).encode("ascii")))
    return headers


def _decode_response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    pairs = list(raw)
    listed: set[str] = set()
    for name, value in pairs:
        if name == b"connection":
            listed |= _connection_tokens(value)
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        n = name.decode("ascii")
        if n in HOP_BY_HOP or n in listed:
            continue
        out.append((n, value.decode("latin-1")))
    return out


class Http1Client:
    """One HTTP/1.1 connection to an upstream, for one request at a time.

    :meth:`request` writes the request (``Host`` from :attr:`Request.authority`, the body with a
    ``content-length``, or chunked with its trailers) and reads the whole response. A large
    request body is written while the response is read, so an upstream that answers early (a
    413, say) is heard. ``1xx`` responses are skipped. The client never closes ``stream`` by
    itself: call :meth:`aclose` (also after a failure).

    Raises :class:`~waypoint.http.UpstreamError` with ``reason`` ``reset`` (the connection
    closed or broke before the response ended), ``protocol`` (the upstream broke HTTP/1.1, or
    the request could not be written as HTTP/1.1) or ``too_large`` (a response body over
    :data:`~waypoint.http.MAX_BODY_BYTES`). A pooled connection the upstream closed while idle
    fails with ``reset`` before any response byte; such a request can be retried on a new
    connection. Calling :meth:`request` while another is in flight, or on a client that is not
    :attr:`reusable`, raises ``RuntimeError``."""

    def __init__(self, stream: trio.abc.Stream, *, label: str = "") -> None:
        self.stream = stream
        self.label = label or "upstream"
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._busy = False
        self._broken = False
        self._closed = False
        self._eof = False

    @property
    def reusable(self) -> bool:
        """True when the connection can carry another request: both sides kept it alive and
        the last exchange completed."""
        return (not self._busy and not self._broken and not self._closed
                and self._h11.our_state is h11.IDLE and self._h11.their_state is h11.IDLE)

    async def aclose(self) -> None:
        self._closed = True
        with trio.move_on_after(0.5) as scope:
            scope.shield = True
            await self.stream.aclose()

    def _error(self, what: str, reason: str) -> UpstreamError:
        self._broken = True
        return UpstreamError(f"{self.label}: {what}", reason)

    async def request(self, req: Request) -> Response:
        """Send ``req`` and return the whole response (see the class docstring)."""
        if self._busy:
            raise RuntimeError(f"{self.label}: Http1Client.request while another is in flight")
        if not self.reusable:
            raise RuntimeError(f"{self.label}: Http1Client.request on a connection that cannot "
                               "carry another request")
        self._busy = True
        try:
            return await self._exchange(req)
        except BaseException:
            self._broken = True
            raise
        finally:
            self._busy = False

    async def _exchange(self, req: Request) -> Response:
        conn = self._h11
        try:
            head = conn.send(h11.Request(method=req.method.encode("ascii"),
                                         target=req.path.encode("ascii"),
                                         headers=_request_headers(req)))
            pieces = conn.send_with_data_passthrough(h11.Data(data=req.body)) if req.body else []
            tail = conn.send(h11.EndOfMessage(headers=[
                (n.encode("ascii"), encode_value(v)) for n, v in req.trailers]))
        except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
            raise self._error(f"request not valid HTTP/1.1: {exc}", "protocol") from None
        assert head is not None and tail is not None and pieces is not None
        if len(req.body) <= COALESCE_MAX:
            await self._send([b"".join([head, *pieces, tail])])
            return await self._read_response(req.method)
        # a large body: read the response meanwhile (the upstream may answer early and stop
        # reading); an unfinished write leaves the connection unusable
        async with trio.open_nursery() as nursery:
            sent = trio.Event()

            async def write() -> None:
                try:
                    await self._send([head, *pieces, tail])
                except UpstreamError:
                    pass  # the reader reports the failure (or has the response already)
                finally:
                    sent.set()

            nursery.start_soon(write)
            resp = await self._read_response(req.method)
            if not sent.is_set() and self._h11.our_state is h11.IDLE:
                # a keep-alive answer: the upstream reads the rest of the body (usually it is
                # already written, the writer has yet to resume)
                with trio.move_on_after(EARLY_ANSWER_DRAIN_S):
                    await sent.wait()
            if not sent.is_set():
                self._broken = True
                nursery.cancel_scope.cancel()
        return resp

    async def _send(self, blocks: list[bytes]) -> None:
        try:
            for block in blocks:
                if block:
                    await self.stream.send_all(block)
        except _PEER_GONE as exc:
            raise self._error(f"connection broke while sending the request: {exc}",
                              "reset") from None

    async def _receive(self) -> None:
        try:
            data = await self.stream.receive_some(RECEIVE_CHUNK)
        except _PEER_GONE as exc:
            raise self._error(f"connection broke before the response ended: {exc}",
                              "reset") from None
        if not data:
            self._eof = True
        self._h11.receive_data(bytes(data))

    async def _read_response(self, method: str) -> Response:
        conn = self._h11
        status = 0
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof:
                    raise self._error(f"connection closed before the response ended ({exc})",
                                      "reset") from None
                raise self._error(f"invalid HTTP/1.1 response: {_h11_message(exc)}",
                                  "protocol") from None
            if ev is h11.NEED_DATA:
                await self._receive()
            elif isinstance(ev, h11.Data):
                size += len(ev.data)
                if size > MAX_BODY_BYTES:
                    raise self._error(f"response body over {MAX_BODY_BYTES} bytes", "too_large")
                chunks.append(ev.data)
            elif isinstance(ev, h11.Response):
                status = ev.status_code
                headers = _decode_response_headers(ev.headers)
            elif isinstance(ev, h11.InformationalResponse):
                continue
            elif isinstance(ev, h11.EndOfMessage):
                trailers = [(n.decode("ascii"), v.decode("latin-1")) for n, v in ev.headers]
                body = b"".join(chunks)  # bytes (h11 hands out bytearrays)
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                return Response(status, headers, body, trailers)
            elif isinstance(ev, h11.ConnectionClosed):
                raise self._error("connection closed before a response", "reset")
            else:
                raise self._error(f"upstream switched protocols ({method})", "protocol")
