"""HTTP/2 for the waypoint over trio streams: :func:`serve_http2` (downstream connections,
prior knowledge: the client starts with :data:`PREFACE`) and :class:`Http2Client` (one upstream
connection carrying concurrent requests), both on h2.

Bodies are buffered whole (see :mod:`waypoint.http`), so received DATA is acknowledged to the
peer at once; what bounds memory is :data:`~waypoint.http.MAX_BODY_BYTES` per stream and
:data:`MAX_STREAMS` streams per connection. Sending respects the peer's flow-control windows: a
large body is sent as far as the windows allow, then the sender waits for a ``WINDOW_UPDATE``.
Windows are large (:data:`STREAM_WINDOW` per stream, :data:`CONNECTION_WINDOW` per connection),
frames up to :data:`MAX_FRAME` are accepted.

Headers and framing follow :mod:`waypoint.http1`: lower-case names, latin-1 values, no
hop-by-hop headers (``te: trailers`` kept), ``host`` folded into :attr:`Request.authority` (used
when ``:authority`` is absent), ``content-length`` set from the body (a bodiless ``HEAD`` or
``304`` answer keeps the one it was given). Trailers are sent when there are any, both ways
(gRPC's ``grpc-status``).

Errors. A malformed request is a *stream* error (RFC 9113 8.1.1): that stream is answered
``err.status`` with a ``text/plain`` body (then reset with ``NO_ERROR`` if the client was still
sending), ``on_error`` is called, and the other streams go on. Malformed means: missing,
repeated, unknown (``:protocol`` included) or misplaced pseudo-headers, an invalid header name
or value, a connection-specific header, ``te`` other than ``trailers``, a ``content-length``
that is not a number or does not match the body (400); ``CONNECT`` (405); a body over the limit
(413, before reading it when ``content-length`` says so). h2 itself would make the header and
length checks connection errors; here they are the codec's (h2's inbound validation is off and
its per-stream content-length tracking is replaced). A header section over
:data:`~waypoint.http.MAX_HEADER_BYTES` is answered 431 on its stream. Protocol errors of the
connection itself (a bad preface, malformed frames, flow-control violations, a header block
over :data:`HPACK_LIMIT`, more than :data:`MAX_STREAMS` streams) end it with a GOAWAY naming
the error, after ``on_error``.

GOAWAY received: h2 would stop the connection at once; here a ``NO_ERROR`` GOAWAY lets the open
streams finish (streams above its last stream id fail as refused), any other code ends the
connection. A stream reset by the client cancels its handler. An exception from the handler
other than :class:`~waypoint.http.HttpError` ends the connection (GOAWAY ``INTERNAL_ERROR``,
open streams cancelled) and propagates from :func:`serve_http2`.

Writes: one writer at a time per connection. A task that queued frames writes them itself when
no write is in flight (no task switch on the response path), else a writer task does; the task
reading the connection never writes itself (two peers whose readers both waited on full socket
buffers would deadlock).

Limits: no server push, no ``CONNECT`` / extended ``CONNECT``, no h2c upgrade from HTTP/1.1, no
priorities, no idle timeout of its own (the caller cancels).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack
import hyperframe.frame
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
)
from waypoint.http1 import encode_value, error_response, response_head
from ztunnel.hbone import Segment, ZeroCopyH2Connection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SNIFF_MIN = 4
"""How many bytes :func:`is_http2_preface` needs before it says yes (``b"PRI "``)."""

STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
MAX_FRAME = 1 << 20
MAX_STREAMS = 100
HPACK_LIMIT = 4 * MAX_HEADER_BYTES
"""A header block larger than this (HPACK's count: names, values, 32 bytes an entry) ends the
connection; one over :data:`~waypoint.http.MAX_HEADER_BYTES` is answered 431."""
RECEIVE_CHUNK = 256 * 1024
FLUSH_BYTES = 256 * 1024
"""A body being sent is written out every this many bytes (not queued whole)."""
CLOSE_TIMEOUT_S = 1.0

COALESCE_MAX = 64 * 1024
"""Queued blocks smaller than this are joined into one write; larger ones are written as they
are."""

_DEFAULT_WINDOW = 65_535
_NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
_PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR
_INTERNAL_ERROR = h2.errors.ErrorCodes.INTERNAL_ERROR
_CANCEL = h2.errors.ErrorCodes.CANCEL
_REFUSED_STREAM = h2.errors.ErrorCodes.REFUSED_STREAM
_TRANSPORT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)

_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                  b"transfer-encoding", b"upgrade"})
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_HOP_BY_HOP_BYTES = frozenset(n.encode("ascii") for n in HOP_BY_HOP)


def is_http2_preface(data: bytes) -> bool:
    """Whether ``data``, the first bytes of a connection, start an HTTP/2 prior-knowledge
    connection. The rule: ``data`` has at least :data:`SNIFF_MIN` bytes (``b"PRI "``, a method
    no HTTP/1.1 client sends) and agrees with :data:`PREFACE` on all of them, up to its 24
    bytes (what follows the preface is not looked at). Fewer bytes are never enough: a sniffer
    reads until it has :data:`SNIFF_MIN` bytes or the peer stops."""
    n = min(len(data), len(PREFACE))
    return n >= SNIFF_MIN and data[:n] == PREFACE[:n]


class _Stream(h2.stream.H2Stream):
    """h2's stream without its content-length checks, which raise connection errors; the codec
    checks lengths per stream (see the module docstring)."""

    def _initialize_content_length(self, headers: Iterable[Any]) -> None:
        self._expected_content_length = None

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        return


class _Encoder(hpack.Encoder):
    """HPACK without Huffman coding: hpack codes strings byte by byte in Python, ~20 µs a
    kilobyte, paid again on every request for values that are not indexed (request ids, trace
    headers, ``authorization``, which h2 never indexes). Literal strings cost ~25% more bytes
    of header and almost no CPU."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class _H2Connection(ZeroCopyH2Connection):
    """h2's connection (large DATA payloads, including views of the caller's body, written
    without copies: :class:`ztunnel.hbone.ZeroCopyH2Connection`) with the codec's streams, and
    a received GOAWAY reported without closing the connection (h2 would refuse to send or
    receive anything after it)."""

    zero_copy_views = True

    def _begin_new_stream(self, stream_id: int,
                          allowed_ids: h2.connection.AllowedStreamIDs) -> h2.stream.H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = _Stream
        return stream

    def _receive_goaway_frame(self, frame: hyperframe.frame.GoAwayFrame,
                              ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


def _new_h2(*, client: bool) -> _H2Connection:
    config = h2.config.H2Configuration(
        client_side=client, header_encoding=None, validate_inbound_headers=False,
        validate_outbound_headers=False, normalize_inbound_headers=True,
        normalize_outbound_headers=True)
    conn = _H2Connection(config)
    conn.encoder = _Encoder()
    settings: dict[h2.settings.SettingCodes, int] = {
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
        h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
    }
    if client:
        settings[h2.settings.SettingCodes.ENABLE_PUSH] = 0
    conn.local_settings = h2.settings.Settings(client=client, initial_values=settings)
    conn.max_inbound_frame_size = MAX_FRAME
    # HPACK's limit (not advertised: h2 would apply an advertised one to the decoder): a block
    # up to it is decoded, so one over MAX_HEADER_BYTES is the stream's error (431), not the
    # connection's; beyond it, decoding stops and the connection ends
    conn.decoder.max_header_list_size = HPACK_LIMIT
    conn.initiate_connection()
    conn.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
    return conn


def _pairs(headers: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    """h2's header tuples (bytes, as ``header_encoding`` is None) as plain pairs."""
    return [(bytes(n), bytes(v)) for n, v in headers]


def _parse_length(value: bytes) -> int:
    if not value.isdigit() or len(value) > 19:
        raise HttpError(f"invalid content-length {value.decode('latin-1')!r}")
    return int(value)


def _check_field(name: bytes, value: bytes) -> None:
    if not _NAME.match(name):
        raise HttpError(f"invalid header name {name.decode('latin-1')!r}")
    if _BAD_VALUE.search(value):
        raise HttpError(f"invalid value of header {name.decode('latin-1')!r}")


def _request_from_h2(block: Sequence[tuple[bytes, bytes]]) -> tuple[Request, int | None]:
    """The :class:`Request` for a request header block, and its declared content-length.
    Raises :class:`HttpError` for a malformed or refused request."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[str, str]] = []
    host: bytes | None = None
    length: int | None = None
    regular = False
    size = 0
    for name, value in block:
        size += len(name) + len(value) + 32
        if name[:1] == b":":
            if regular:
                raise HttpError(f"pseudo-header {name.decode('latin-1')} after a regular header")
            if name not in _REQUEST_PSEUDO:
                raise HttpError(f"unsupported pseudo-header {name.decode('latin-1')}")
            if name in pseudo:
                raise HttpError(f"repeated pseudo-header {name.decode('latin-1')}")
            pseudo[name] = value
            continue
        regular = True
        _check_field(name, value)
        if name in _CONNECTION_SPECIFIC:
            raise HttpError(f"connection-specific header {name.decode('latin-1')}")
        if name == b"te":
            if value.lower() != b"trailers":
                raise HttpError("te other than trailers")
        elif name == b"host":
            host = value
            continue
        elif name == b"content-length":
            n = _parse_length(value)
            if length is not None and n != length:
                raise HttpError("conflicting content-length headers")
            length = n
        elif name == b"http2-settings":
            continue
        headers.append((name.decode("ascii"), value.decode("latin-1")))
    if size > MAX_HEADER_BYTES:
        raise HttpError(f"request header section over {MAX_HEADER_BYTES} bytes", 431)
    method = pseudo.get(b":method")
    if method is None:
        raise HttpError("missing :method")
    if not _METHOD.match(method):
        raise HttpError("invalid :method")
    if method == b"CONNECT":
        raise HttpError("CONNECT is not supported", 405)
    scheme, path = pseudo.get(b":scheme"), pseudo.get(b":path")
    if not scheme:
        raise HttpError("missing :scheme")
    if not path:
        raise HttpError("missing :path")
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        raise HttpError("invalid :path")
    authority = pseudo.get(b":authority", host or b"")
    if _BAD_VALUE.search(path) or b" " in path or _BAD_VALUE.search(authority):
        raise HttpError("invalid :path or :authority")
    if length is not None and length > MAX_BODY_BYTES:
        raise HttpError(f"request body of {length} bytes is over {MAX_BODY_BYTES}", 413)
    req = Request(method.decode("ascii"), scheme.decode("latin-1"), authority.decode("latin-1"),
                  path.decode("latin-1"), headers, version="HTTP/2")
    return req, length


def _trailers_from_h2(block: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in block:
        if name[:1] == b":":
            raise HttpError("pseudo-header in trailers")
        _check_field(name, value)
        if name in _HOP_BY_HOP_BYTES:
            continue
        out.append((name.decode("ascii"), value.decode("latin-1")))
    return out


def _encode_fields(fields: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(n.lower().encode("ascii"), encode_value(v)) for n, v in fields
            if n.lower() not in HOP_BY_HOP]


class _StreamGone(Exception):
    """The stream (or the whole connection) can no longer be written to."""


class _Exchange:
    """One stream's state on either side."""

    __slots__ = ("chunks", "complete", "declared", "done", "error", "head", "id", "method",
                 "reason", "rejected", "scope", "size", "trailers")

    def __init__(self, stream_id: int, method: str = "") -> None:
        self.id = stream_id
        self.method = method
        self.head: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.declared: int | None = None
        self.trailers: list[tuple[str, str]] = []
        self.complete = False              # the peer's message ended
        self.error: str | None = None      # why the stream failed
        self.reason = "reset"              # the client's UpstreamError reason
        self.rejected = False              # server: answered by the codec
        self.done = trio.Event()           # client: complete or failed
        self.scope: trio.CancelScope | None = None  # server: the handler's

    def body(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


class _Link:
    """What both sides share: the h2 connection, the writer, flow-controlled sending."""

    def __init__(self, transport: trio.abc.Stream, *, client: bool, label: str) -> None:
        self.transport = transport
        self.label = label
        self.h2 = _new_h2(client=client)
        self.streams: dict[int, _Exchange] = {}
        self.closed = False
        self.failure: str | None = None
        self.draining = False
        self._out: list[Segment] = []
        self._queued = 0
        self._written = 0
        self._writing = False
        self._transport_closed = False
        self._shut_down: trio.Event | None = None
        self._wake = trio.Event()
        self._written_lot = trio.lowlevel.ParkingLot()
        self._window_lot = trio.lowlevel.ParkingLot()

    # -- writing -----------------------------------------------------------------------------------

    def kick(self) -> None:
        """Hand what h2 queued to the writer (never blocks)."""
        segments = self.h2.take_segments()
        if segments:
            self._out += segments
            self._queued += 1
            self._wake.set()

    async def flush(self) -> None:
        """Write what h2 queued; return once it is written. Raises :class:`_StreamGone` when
        the connection failed."""
        segments = self.h2.take_segments()
        if segments:
            self._out += segments
            self._queued += 1
        target = self._queued
        if self._written < target and not self.closed:
            if not self._writing:
                # shielded: a write cut in the middle would corrupt the connection's framing
                with trio.CancelScope(shield=True):
                    await self._write_out()
            else:
                self._wake.set()
                while self._written < target and not self.closed:
                    await self._written_lot.park()
        else:
            await trio.lowlevel.checkpoint()
        if self.closed and self._written < target:
            raise _StreamGone(self.failure or "connection closed")

    async def _write_out(self) -> None:
        self._writing = True
        try:
            while self._out and not self.closed:
                out, self._out = self._out, []
                upto = self._queued
                await self._send_segments(out)
                self._written = upto
                self._written_lot.unpark_all()
        except _TRANSPORT_GONE as exc:
            self.fail(f"write failed: {exc or exc.__class__.__name__}")
        finally:
            self._writing = False
            self._written_lot.unpark_all()

    async def _send_segments(self, segments: list[Segment]) -> None:
        small: list[Segment] = []
        for segment in segments:
            if len(segment) < COALESCE_MAX:
                small.append(segment)
                continue
            if small:
                await self.transport.send_all(b"".join(small))
                small = []
            await self.transport.send_all(segment)
        if small:
            await self.transport.send_all(small[0] if len(small) == 1 else b"".join(small))

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if not self._writing and self._out:
                await self._write_out()

    def fail(self, why: str) -> None:
        """The connection is over: fail every stream, wake every waiter."""
        if self.closed:
            return
        self.closed = True
        self.failure = why = why if why.startswith(self.label) else f"{self.label}: {why}"
        for ex in self.streams.values():
            self.stream_failed(ex, why)
        self._written_lot.unpark_all()
        self._window_lot.unpark_all()

    async def drain_out(self) -> None:
        """After the connection failed: write what is still queued (a GOAWAY), after a write
        in flight; best effort, for :data:`CLOSE_TIMEOUT_S` at most."""
        self._out += self.h2.take_segments()
        with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
            scope.shield = True
            while self._writing:
                await self._written_lot.park()
            if not self._out or self._transport_closed:
                return
            out, self._out = self._out, []
            self._writing = True
            try:
                await self._send_segments(out)
            except _TRANSPORT_GONE:
                pass
            finally:
                self._writing = False

    def stream_failed(self, ex: _Exchange, why: str, reason: str = "reset") -> None:
        if ex.error is None:
            ex.error = why
            ex.reason = reason
        if ex.scope is not None:
            ex.scope.cancel()
        ex.done.set()
        self._window_lot.unpark_all()

    # -- sending -----------------------------------------------------------------------------------

    def _writable(self, ex: _Exchange) -> None:
        if self.closed or ex.error is not None:
            raise _StreamGone(ex.error or self.failure or "connection closed")
        if ex.complete and self.h2.config.client_side:
            raise _StreamGone("answered before the request was sent whole")

    async def send_message(self, ex: _Exchange, head: list[tuple[bytes, bytes]], body: bytes,
                           trailers: list[tuple[bytes, bytes]]) -> None:
        """Send a header block, ``body`` within the peer's windows, and ``trailers``; end the
        stream. Raises :class:`_StreamGone`."""
        try:
            self._writable(ex)
            self.h2.send_headers(ex.id, head, end_stream=not body and not trailers)
            if body:
                await self._send_body(ex, body, end=not trailers)
            if trailers:
                self._writable(ex)
                self.h2.send_headers(ex.id, trailers, end_stream=True)
        except h2.exceptions.ProtocolError as exc:  # the stream or connection closed under us
            raise _StreamGone(str(exc)) from None
        await self.flush()

    async def _send_body(self, ex: _Exchange, body: bytes, *, end: bool) -> None:
        view = memoryview(body)
        total, sent, unflushed = len(body), 0, 0
        while sent < total:
            self._writable(ex)
            window = self.h2.local_flow_control_window(ex.id)
            if window <= 0:
                await self.flush()
                unflushed = 0
                self._writable(ex)
                if self.h2.local_flow_control_window(ex.id) <= 0:
                    await self._window_lot.park()
                continue
            n = min(window, self.h2.max_outbound_frame_size, total - sent)
            self.h2.send_data(ex.id, view[sent:sent + n], end_stream=end and sent + n == total)
            sent += n
            unflushed += n
            if unflushed >= FLUSH_BYTES and sent < total:
                await self.flush()
                unflushed = 0

    # -- receiving ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        """Give h2 received bytes and dispatch the events; False when the connection is over."""
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.protocol_error(f"HTTP/2 protocol error: {exc.__class__.__name__}: {exc}")
            return False
        for ev in events:
            self.dispatch(ev)
        self.kick()
        return not self.closed

    async def read_loop(self) -> None:
        while not self.closed:
            try:
                data = await self.transport.receive_some(RECEIVE_CHUNK)
            except _TRANSPORT_GONE as exc:
                self.fail(f"read failed: {exc or exc.__class__.__name__}")
                return
            if not data:
                self.fail("peer closed the connection")
                return
            if not self.feed(bytes(data)):
                return
            if self.draining and not self.streams:
                self.fail("connection drained after GOAWAY")
                return

    def protocol_error(self, why: str) -> None:
        """h2 queued a GOAWAY; the connection is over once it is written."""
        self.kick()
        self.fail(why)

    def dispatch(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.DataReceived):
            if ev.flow_controlled_length:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            ex = self.streams.get(ev.stream_id)
            if ex is not None and ex.error is None and not ex.rejected and ev.data:
                ex.size += len(ev.data)
                ex.chunks.append(ev.data)
                self.on_data(ex)
        elif isinstance(ev, h2.events.StreamEnded):
            ex = self.streams.get(ev.stream_id)
            if ex is not None:
                self.on_end(ex)
        elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._window_lot.unpark_all()
        elif isinstance(ev, h2.events.StreamReset):
            ex = self.streams.get(ev.stream_id)
            if ex is not None:
                code = _code_name(ev.error_code)
                reason = "refused stream" if ev.error_code == _REFUSED_STREAM else "reset"
                self.stream_failed(ex, f"{self.label}: stream reset by the peer ({code}, "
                                   f"{reason})")
                self.on_reset(ex)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.on_goaway(ev)
        else:
            self.on_event(ev)

    def on_goaway(self, ev: h2.events.ConnectionTerminated) -> None:
        code = _code_name(ev.error_code)
        if ev.error_code != _NO_ERROR:
            self.fail(f"{self.label}: peer sent GOAWAY ({code})")
            return
        self.draining = True
        last = ev.last_stream_id or 0
        for ex in list(self.streams.values()):
            if ex.id > last and self._local_stream(ex.id):
                self.stream_failed(ex, f"{self.label}: stream refused by GOAWAY")
        if not self.streams:
            self.fail(f"{self.label}: peer sent GOAWAY")

    def _local_stream(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) == self.h2.config.client_side

    # hooks ---------------------------------------------------------------------------------------

    def on_event(self, ev: h2.events.Event) -> None:
        """Headers and the rest of the events particular to a side."""

    def on_data(self, ex: _Exchange) -> None:
        """A body chunk arrived on ``ex``."""

    def on_end(self, ex: _Exchange) -> None:
        """The peer ended ``ex``."""

    def on_reset(self, ex: _Exchange) -> None:
        """The peer reset ``ex`` (already marked failed)."""

    async def shut_down(self) -> None:
        """End the connection: fail what is open, write a queued GOAWAY if possible, close the
        transport (which also ends a write stuck on a peer that stopped reading, so the tasks
        of the connection can finish)."""
        self.fail(self.failure or "connection closed")
        if self._shut_down is not None:  # another task is at it: wait until the end
            await self._shut_down.wait()
            return
        self._shut_down = trio.Event()
        try:
            await self.drain_out()
            await self.close_transport()
        finally:
            self._shut_down.set()

    async def close_transport(self) -> None:
        if self._transport_closed:
            await trio.lowlevel.checkpoint()
            return
        self._transport_closed = True
        with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
            scope.shield = True
            await self.transport.aclose()


def _code_name(code: object) -> str:
    return code.name if isinstance(code, h2.errors.ErrorCodes) else str(code)


# -- the server ------------------------------------------------------------------------------------


class _Server(_Link):
    """One downstream connection for :func:`serve_http2`."""

    def __init__(self, transport: trio.abc.Stream, handler: Handler,
                 on_error: Callable[[HttpError], None] | None) -> None:
        super().__init__(transport, client=False, label="downstream")
        self.handler = handler
        self.on_error = on_error
        self.requests: dict[int, Request] = {}  # headers received, body being received
        self.crash: Exception | None = None
        self.nursery: trio.Nursery | None = None

    async def run(self, first_bytes: bytes) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            try:
                nursery.start_soon(self._writer)
                self.kick()  # our SETTINGS
                if not first_bytes or self.feed(first_bytes):
                    await self.read_loop()
            finally:
                await self.shut_down()
                nursery.cancel_scope.cancel()
        if self.crash is not None:
            raise self.crash

    def protocol_error(self, why: str) -> None:
        if self.on_error is not None:
            self.on_error(HttpError(why))
        super().protocol_error(why)

    def on_event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            ex = _Exchange(ev.stream_id)
            self.streams[ev.stream_id] = ex
            try:
                req, ex.declared = _request_from_h2(_pairs(ev.headers))
            except HttpError as err:
                self._reject(ex, err)
                return
            ex.method = req.method
            self.requests[ev.stream_id] = req
        elif isinstance(ev, h2.events.TrailersReceived):
            known = self.streams.get(ev.stream_id)
            if known is not None and not known.rejected and known.error is None:
                try:
                    known.trailers = _trailers_from_h2(_pairs(ev.headers))
                except HttpError as err:
                    self._reject(known, err)

    def on_data(self, ex: _Exchange) -> None:
        if ex.size > MAX_BODY_BYTES:
            self._reject(ex, HttpError(f"request body over {MAX_BODY_BYTES} bytes", 413))
        elif ex.declared is not None and ex.size > ex.declared:
            self._reject(ex, HttpError(
                f"request body longer than its content-length {ex.declared}"))

    def on_end(self, ex: _Exchange) -> None:
        ex.complete = True
        if ex.rejected or ex.error is not None:
            return
        req = self.requests.pop(ex.id)
        if ex.declared is not None and ex.size != ex.declared:
            self._reject(ex, HttpError(
                f"request body of {ex.size} bytes, content-length {ex.declared}"))
            return
        req.body = ex.body()
        req.trailers = ex.trailers
        ex.chunks = []
        ex.scope = trio.CancelScope()
        assert self.nursery is not None
        self.nursery.start_soon(self._serve, ex, req)

    def on_reset(self, ex: _Exchange) -> None:
        if ex.scope is None and not ex.rejected:  # no task owns it yet
            self.streams.pop(ex.id, None)
            self.requests.pop(ex.id, None)

    def _reject(self, ex: _Exchange, err: HttpError) -> None:
        ex.rejected = True
        ex.chunks = []
        self.requests.pop(ex.id, None)
        if self.on_error is not None:
            self.on_error(err)
        assert self.nursery is not None
        self.nursery.start_soon(self._send_rejection, ex, err)

    async def _send_rejection(self, ex: _Exchange, err: HttpError) -> None:
        head, body = response_head(error_response(err), ex.method or "GET")
        try:
            await self.send_message(ex, [(b":status", str(err.status).encode("ascii")), *head],
                                    body, [])
            if not ex.complete:  # RFC 9113 8.1: a whole answer, then ask the client to stop
                self.h2.reset_stream(ex.id, _NO_ERROR)
                await self.flush()
        except (_StreamGone, h2.exceptions.ProtocolError):
            pass
        finally:
            self._forget(ex)

    async def _serve(self, ex: _Exchange, req: Request) -> None:
        assert ex.scope is not None
        try:
            with ex.scope:
                try:
                    resp = await self.handler(req)
                except HttpError as err:
                    resp = error_response(err)
                except Exception as exc:  # noqa: BLE001 (run() re-raises it)
                    self._crashed(exc)
                    return
                if resp.status < 200:
                    self._crashed(ValueError(f"cannot send a {resp.status} response"))
                    return
                head, body = response_head(resp, req.method)
                await self.send_message(
                    ex, [(b":status", str(resp.status).encode("ascii")), *head], body,
                    _encode_fields(resp.trailers))
        except _StreamGone:
            pass
        finally:
            self._forget(ex)

    def _forget(self, ex: _Exchange) -> None:
        self.streams.pop(ex.id, None)
        if self.draining and not self.streams and not self.closed:
            self.fail("connection drained after GOAWAY")
            assert self.nursery is not None
            self.nursery.cancel_scope.cancel()

    def _crashed(self, exc: Exception) -> None:
        """The handler raised: end the connection, and have :meth:`run` raise ``exc``."""
        if self.crash is None:
            self.crash = exc
        if not self.closed:
            self.h2.close_connection(_INTERNAL_ERROR)
            self.kick()
        self.fail("handler failed")
        assert self.nursery is not None
        self.nursery.cancel_scope.cancel()


async def serve_http2(stream: trio.abc.Stream, handler: Handler, *, first_bytes: bytes = b"",
                      on_error: Callable[[HttpError], None] | None = None) -> None:
    """Serve an HTTP/2 (prior knowledge) connection on ``stream`` until it ends, each request
    in its own task calling ``handler``; then close ``stream``.

    ``first_bytes`` were already read from ``stream`` (the sniffed preface, say). ``on_error``
    is called with an :class:`~waypoint.http.HttpError` for each request the codec refuses and
    for a connection-level protocol error. The peer closing the connection or sending GOAWAY
    ends it quietly. An exception from ``handler`` other than ``HttpError`` ends the connection
    and propagates. See the module docstring."""
    await _Server(stream, handler, on_error).run(first_bytes)


# -- the client ------------------------------------------------------------------------------------


def _request_block(req: Request) -> list[tuple[bytes, bytes]]:
    block = [(b":method", req.method.encode("ascii")), (b":scheme", req.scheme.encode("ascii")),
             (b":authority", encode_value(req.authority)), (b":path", encode_value(req.path))]
    for name, value in req.headers:
        n = name.lower()
        if n in HOP_BY_HOP or n in ("host", "content-length"):
            if n == "te" and value.strip().lower() == "trailers":
                block.append((b"te", b"trailers"))
            continue
        block.append((n.encode("ascii"), encode_value(value)))
    if req.body or req.method not in _BODYLESS_METHODS:
        block.append((b"content-length", str(len(req.body)).encode("ascii")))
    return block


def _response_from_h2(block: Sequence[tuple[bytes, bytes]]) -> tuple[int, list[tuple[str, str]],
                                                                     int | None]:
    """Status, headers and declared length of a response header block. Raises ``ValueError``
    for a malformed one."""
    status: int | None = None
    headers: list[tuple[str, str]] = []
    length: int | None = None
    for name, value in block:
        if name[:1] == b":":
            if name != b":status" or status is not None or headers:
                raise ValueError(f"unexpected pseudo-header {name.decode('latin-1')}")
            if len(value) != 3 or not value.isdigit():
                raise ValueError(f"invalid :status {value.decode('latin-1')!r}")
            status = int(value)
            continue
        if not _NAME.match(name) or _BAD_VALUE.search(value):
            raise ValueError(f"invalid header {name.decode('latin-1')!r}")
        if name in _HOP_BY_HOP_BYTES:
            continue
        if name == b"content-length":
            try:
                length = _parse_length(value)
            except HttpError as exc:
                raise ValueError(str(exc)) from None
        headers.append((name.decode("ascii"), value.decode("latin-1")))
    if status is None:
        raise ValueError("missing :status")
    return status, headers, length


class _Client(_Link):
    """The connection under an :class:`Http2Client`."""

    def protocol_error(self, why: str) -> None:
        for ex in self.streams.values():
            self.stream_failed(ex, f"{self.label}: {why}", "protocol")
        super().protocol_error(why)

    def on_event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived):
            ex = self.streams.get(ev.stream_id)
            if ex is None:
                return
            if isinstance(ev, h2.events.ResponseReceived):
                ex.head = _pairs(ev.headers)
                return
            try:
                ex.trailers = _trailers_from_h2(_pairs(ev.headers))
            except HttpError as err:
                self.stream_error(ex, f"invalid trailers: {err}", "protocol")

    def on_data(self, ex: _Exchange) -> None:
        if ex.size > MAX_BODY_BYTES:
            ex.chunks = []
            self.stream_error(ex, f"response body over {MAX_BODY_BYTES} bytes", "too_large")

    def on_end(self, ex: _Exchange) -> None:
        if ex.error is None:
            ex.complete = True
        ex.done.set()
        self._window_lot.unpark_all()  # a sender waiting for window can stop: answered

    def stream_error(self, ex: _Exchange, why: str, reason: str) -> None:
        """Give up on ``ex``: reset it and fail its request with ``reason``."""
        try:
            self.h2.reset_stream(ex.id, _PROTOCOL_ERROR if reason == "protocol" else _CANCEL)
        except h2.exceptions.ProtocolError:
            pass  # already closed
        self.kick()
        self.stream_failed(ex, f"{self.label}: {why}", reason)


class Http2Client:
    """One HTTP/2 (prior knowledge) connection to an upstream, carrying concurrent requests.

    The client needs a reader: start :meth:`run` in a nursery (``await nursery.start(client.run)``)
    before calling :meth:`request`; it returns when the connection ends (and closes ``stream``
    then). :meth:`request` may be called from many tasks at once: each gets its own stream, and
    waits for a free one while the peer's ``MAX_CONCURRENT_STREAMS`` are in use. Cancelling a
    request resets its stream (``CANCEL``).

    :meth:`request` raises :class:`~waypoint.http.UpstreamError` with ``reason`` ``reset``
    (``RST_STREAM``, a GOAWAY refusing the stream, the connection closing or breaking, or the
    connection no longer :attr:`usable`), ``protocol`` (a malformed response, an HTTP/2
    protocol error, or a request h2 cannot encode) or ``too_large`` (a response body over
    :data:`~waypoint.http.MAX_BODY_BYTES`). It raises ``RuntimeError`` when :meth:`run` was
    never started. A response that ends before the request body was sent whole stops the
    sending (the stream is reset with ``CANCEL``) and is returned. A ``NO_ERROR`` GOAWAY from
    the upstream lets open requests finish (the connection then closes); the client is not
    :attr:`usable` after it. The client owns one background task besides :meth:`run` (a
    writer, inside :meth:`run`'s nursery)."""

    def __init__(self, stream: trio.abc.Stream, *, label: str = "") -> None:
        self.label = label or "upstream"
        self._link = _Client(stream, client=True, label=self.label)
        self._started = False
        self._running = False
        self._slots = trio.lowlevel.ParkingLot()
        self._read_scope = trio.CancelScope()

    @property
    def usable(self) -> bool:
        """True while new requests can go on this connection (running, not failed or closed,
        no GOAWAY, stream ids left)."""
        link = self._link
        return (self._running and not link.closed and not link.draining
                and link.h2.highest_outbound_stream_id < (1 << 31) - 1024)

    @property
    def active_requests(self) -> int:
        """Requests in flight."""
        return len(self._link.streams)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the connection: write our preface, read the upstream's frames. Reports started
        once the preface is queued; returns when the connection is over (closed by
        :meth:`aclose`, by the upstream, or failed), having closed the stream."""
        if self._started:
            raise RuntimeError("Http2Client.run called twice")
        self._started = True
        link = self._link
        async with trio.open_nursery() as nursery:
            try:
                nursery.start_soon(link._writer)
                link.kick()
                self._running = True
                task_status.started()
                with self._read_scope:
                    await link.read_loop()
            finally:
                self._running = False
                self._slots.unpark_all()
                await link.shut_down()
                nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Close the connection (GOAWAY ``NO_ERROR`` first); open requests fail with
        ``reset``."""
        link = self._link
        if self._running and not link.closed:
            try:
                link.h2.close_connection(_NO_ERROR)
            except h2.exceptions.ProtocolError:
                pass
            link.kick()
        link.fail(f"{self.label}: connection closed")
        self._read_scope.cancel()
        self._slots.unpark_all()
        await link.shut_down()

    async def request(self, req: Request) -> Response:
        """Send ``req`` on a new stream and return the whole response (see the class
        docstring)."""
        link = self._link
        if not self._started:
            raise RuntimeError(f"{self.label}: Http2Client.run has not been started")
        while True:
            if not self.usable:
                raise UpstreamError(f"{self.label}: connection not usable "
                                    f"({link.failure or 'GOAWAY received'})", "reset")
            if link.h2.open_outbound_streams < link.h2.remote_settings.max_concurrent_streams:
                break
            await self._slots.park()
        try:
            block = _request_block(req)
            trailers = _encode_fields(req.trailers)
        except UnicodeEncodeError as exc:
            raise UpstreamError(f"{self.label}: request not valid HTTP/2: {exc}",
                                "protocol") from None
        stream_id = link.h2.get_next_available_stream_id()
        ex = _Exchange(stream_id, req.method)
        link.streams[stream_id] = ex
        try:
            try:
                await link.send_message(ex, block, req.body, trailers)
            except _StreamGone as exc:
                if ex.complete:  # answered early: stop sending the body
                    link.stream_error(ex, "answered early", "reset")
                elif not ex.done.is_set():  # not a reset or failure already reported on ex
                    link.stream_error(ex, f"request not sent: {exc}", "reset")
            await ex.done.wait()
        except BaseException:
            if not ex.done.is_set():
                try:
                    link.h2.reset_stream(stream_id, _CANCEL)
                except h2.exceptions.ProtocolError:
                    pass
                link.kick()
            raise
        finally:
            link.streams.pop(stream_id, None)
            self._slots.unpark_all()
            if link.draining and not link.streams and not link.closed:
                link.fail(f"{self.label}: connection drained after GOAWAY")
                self._read_scope.cancel()
        return self._response(ex)

    def _response(self, ex: _Exchange) -> Response:
        if not ex.complete:
            raise UpstreamError(ex.error or f"{self.label}: stream ended without a response",
                                ex.reason)
        try:
            status, headers, length = _response_from_h2(ex.head)
        except ValueError as exc:
            raise UpstreamError(f"{self.label}: invalid response: {exc}", "protocol") from None
        body = ex.body()
        if ex.method == "HEAD" or status in (204, 304):
            body = b""
        elif length is not None and length != len(body):
            raise UpstreamError(f"{self.label}: response body of {len(body)} bytes, "
                                f"content-length {length}", "protocol")
        return Response(status, headers, body, ex.trailers)
