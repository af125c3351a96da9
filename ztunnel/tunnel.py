"""HBONE over trio: the driver of :class:`ztunnel.hbone.HboneCore` on a (TLS) byte stream, tunnels
as ``trio.abc.HalfCloseableStream`` (so :func:`ztunnel.splice.splice` serves TCP and HBONE
alike), and the client-side connection pool.

- :class:`H2Link` runs one HTTP/2 connection: a reader task feeds the core, writers flush what
  the core queued under one lock (the task that produced bytes pays for writing them), HTTP/2
  PINGs keep it alive and detect a dead peer, :meth:`H2Link.drain` closes it gracefully.
- :class:`Tunnel` is one CONNECT stream. Received bytes are acknowledged to the peer only when
  the reader took them, so a slow destination slows the sender (flow control end to end).
- :class:`Pool` shares connections per key (source identity, destination identity, next hop),
  about :data:`~ztunnel.hbone.MAX_STREAMS` streams each; dials for one key are serialized so a
  burst of new connections opens a few TLS connections, not one each.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field

import trio

from ztunnel import hbone
from ztunnel.hbone import HboneCore, HboneError, Segment

log = logging.getLogger("ztunnel.hbone")

READ_CHUNK = 1024 * 1024


class TunnelRefused(HboneError):
    """The peer answered the CONNECT with a status other than 200."""

    def __init__(self, status: int, authority: str) -> None:
        super().__init__(f"CONNECT {authority} answered {status}")
        self.status = status


class LinkClosed(HboneError, trio.BrokenResourceError):
    """The HTTP/2 connection under a tunnel ended."""


class Tunnel(trio.abc.HalfCloseableStream):
    """One HBONE stream: bytes in both directions, half-close with :meth:`send_eof`."""

    def __init__(self, link: H2Link, stream_id: int) -> None:
        self._link = link
        self.stream_id = stream_id
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._received_eof = False
        self._sent_eof = False
        self._reset: str | None = None
        self._closed = False
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()
        self._response = trio.Event()
        self.status = 0

    # -- called by the link ----------------------------------------------------------------------

    def _on_data(self, data: bytes, flow_length: int) -> None:
        self._chunks.append((data, flow_length))
        self._readable.unpark_all()

    def _on_eof(self) -> None:
        self._received_eof = True
        self._readable.unpark_all()

    def _on_reset(self, why: str) -> None:
        if self._reset is None:
            self._reset = why
        self._readable.unpark_all()
        self._writable.unpark_all()
        self._response.set()

    def _on_window(self) -> None:
        self._writable.unpark_all()

    def _on_response(self, status: int) -> None:
        self.status = status
        self._response.set()

    @property
    def finished(self) -> bool:
        return self._reset is not None or (self._received_eof and self._sent_eof)

    # -- the stream interface ----------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("tunnel closed")
        while not self._chunks and not self._received_eof and self._reset is None:
            await self._readable.park()
        if not self._chunks:
            if self._reset is not None:
                raise trio.BrokenResourceError(self._reset)
            await trio.lowlevel.checkpoint()
            return b""
        data, flow = self._chunks.popleft()
        if max_bytes is not None and len(data) > max_bytes:
            self._chunks.appendleft((data[max_bytes:], 0))
            data = data[:max_bytes]
            # acknowledge the whole frame now; the rest is already counted as buffered here
        self._link.core.consumed(self.stream_id, flow)
        self._link.kick()
        await trio.lowlevel.checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("tunnel closed")
        if self._sent_eof:
            raise trio.ClosedResourceError("send_eof was called on this tunnel")
        view = memoryview(data)
        while view:
            if self._reset is not None:
                raise trio.BrokenResourceError(self._reset)
            n = self._link.core.send(self.stream_id, view)
            if n:
                view = view[n:]
                await self._link.flush()
            else:
                await self._writable.park()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        while self._link.core.send_window(self.stream_id) <= 0 and self._reset is None:
            await self._writable.park()

    async def send_eof(self) -> None:
        if self._sent_eof or self._reset is not None:
            await trio.lowlevel.checkpoint()
            return
        self._sent_eof = True
        self._link.core.end(self.stream_id)
        await self._link.flush()
        self._link.maybe_forget(self)

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        if not self.finished:
            self._reset = self._reset or "tunnel closed locally"
            self._link.core.reset(self.stream_id, hbone.CANCEL)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self._link.flush()
        self._link.forget(self)
        await trio.lowlevel.checkpoint()


@dataclass(slots=True)
class Request:
    """Server: an inbound CONNECT waiting for :meth:`accept` or :meth:`reject`."""
    link: H2Link
    stream_id: int
    host: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    answered: bool = False

    async def accept(self) -> Tunnel:
        """Answer 200 and return the tunnel."""
        self.answered = True
        tunnel = self.link.streams[self.stream_id]
        self.link.core.respond(self.stream_id, 200)
        await self.link.flush()
        return tunnel

    async def reject(self, status: int) -> None:
        """Answer ``status`` (400/401/503) and end the stream."""
        self.answered = True
        self.link.core.respond(self.stream_id, status, end=True)
        # RFC 9113 8.1: a complete response before the request ended; RST_STREAM(NO_ERROR)
        # asks the client to stop sending without an error.
        self.link.core.reset(self.stream_id, 0)
        tunnel = self.link.streams.pop(self.stream_id, None)
        if tunnel is not None:
            tunnel._on_reset(f"refused with {status}")
            tunnel._closed = True
        await self.link.flush()


Handler = Callable[[Request], Awaitable[None]]


class H2Link:
    """One HBONE HTTP/2 connection over ``transport`` (see the module docstring)."""

    def __init__(self, transport: trio.abc.Stream, *, client: bool, label: str = "") -> None:
        self.transport = transport
        self.core = HboneCore(client=client)
        self.client = client
        self.label = label
        self.streams: dict[int, Tunnel] = {}
        self.reserved = 0
        self.closed = False
        self.draining = False
        self.failure: str | None = None
        self._wake = trio.Event()
        self._out: list[Segment] = []  # taken from the core by kick(), for the writer
        self._writing = False
        self._written = trio.Event()
        self._pings: dict[bytes, trio.Event] = {}
        self._idle = trio.Event()
        self._done = trio.Event()
        self._read_scope = trio.CancelScope()

    # -- writing -----------------------------------------------------------------------------------

    def kick(self) -> None:
        """Have the writer task send what the core queued (never blocks: the reader uses it).
        Nothing queued (most window acknowledgements are below h2's threshold): no wake-up."""
        segments = self.core.take_segments()
        if segments:
            self._out += segments
            self._wake.set()

    def _take(self) -> list[Segment]:
        segments = self.core.take_segments()
        if self._out:
            segments, self._out = self._out + segments, []
        return segments

    async def flush(self) -> None:
        """Write what the core has queued, and return once it is written: directly from the
        calling task when no write is in flight (no task switch on the request path), else
        through the writer task. At most one write is in flight per connection, so a slow peer
        slows the streams' senders. The reader never calls this (see :meth:`kick`): two peers
        whose readers both waited on full socket buffers would deadlock."""
        if not self._writing and not self.closed:
            data = self._take()
            if data:
                await self._write(data)
            else:
                await trio.lowlevel.checkpoint()
            return
        self._wake.set()
        while (self._writing or self._wake.is_set()) and not self.closed:
            await self._written.wait()  # returns once everything queued before this call is written
        await trio.lowlevel.checkpoint()

    async def _write(self, segments: list[Segment]) -> None:
        self._writing = True
        try:
            small: list[Segment] = []
            for segment in segments:  # small ones coalesced; large DATA payloads written as they are
                if len(segment) < 65536:
                    small.append(segment)
                    continue
                if small:
                    await self.transport.send_all(b"".join(small))
                    small = []
                await self.transport.send_all(segment)
            if small:
                await self.transport.send_all(b"".join(small))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(f"write failed: {exc or exc.__class__.__name__}")
        finally:
            self._writing = False
            self._written.set()
            self._written = trio.Event()

    async def _writer(self) -> None:
        while not self.closed:
            await self._wake.wait()
            while self._writing and not self.closed:
                await self._written.wait()  # a stream's task is writing directly
            self._wake = trio.Event()
            data = self._take()
            if data:
                await self._write(data)
            else:
                self._written.set()
                self._written = trio.Event()

    # -- running -----------------------------------------------------------------------------------

    async def run(self, handler: Handler | None = None, *, keepalive_s: float = 30.0,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the connection until it ends; a server gives ``handler`` each CONNECT (run in
        its own task). Returns when the connection is over; the transport is closed then."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                self.kick()  # our preface and settings
                task_status.started()
                if keepalive_s > 0:
                    nursery.start_soon(self._keepalive, keepalive_s)
                with self._read_scope:
                    await self._read(nursery, handler)
                nursery.cancel_scope.cancel()
        finally:
            self._fail(self.failure or "connection closed")
            with trio.CancelScope(shield=True):
                await self.transport.aclose()
            self._done.set()

    async def _read(self, nursery: trio.Nursery, handler: Handler | None) -> None:
        while not self.closed:
            try:
                data = await self.transport.receive_some(READ_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(f"read failed: {exc or exc.__class__.__name__}")
                return
            if not data:
                self._fail("peer closed the connection")
                return
            for ev in self.core.receive(data):
                self._dispatch(ev, nursery, handler)
            self.kick()  # acks, window updates, answers

    def _dispatch(self, ev: hbone.Event, nursery: trio.Nursery, handler: Handler | None) -> None:
        if isinstance(ev, hbone.Data):
            t = self.streams.get(ev.stream_id)
            if t is None:
                self.core.consumed(ev.stream_id, ev.flow_length)
            else:
                t._on_data(ev.data, ev.flow_length)
        elif isinstance(ev, hbone.EndOfStream):
            if (t := self.streams.get(ev.stream_id)) is not None:
                t._on_eof()
                self.maybe_forget(t)
        elif isinstance(ev, hbone.WindowOpened):
            if ev.stream_id == 0:
                for t in self.streams.values():
                    t._on_window()
            elif (t := self.streams.get(ev.stream_id)) is not None:
                t._on_window()
        elif isinstance(ev, hbone.Reset):
            if (t := self.streams.pop(ev.stream_id, None)) is not None:
                t._on_reset(f"peer reset the tunnel (HTTP/2 error code {ev.code})")
                self._check_idle()
        elif isinstance(ev, hbone.Response):
            if (t := self.streams.get(ev.stream_id)) is not None:
                t._on_response(ev.status)
        elif isinstance(ev, hbone.Connect):
            t = Tunnel(self, ev.stream_id)
            self.streams[ev.stream_id] = t
            request = Request(self, ev.stream_id, ev.host, ev.port, ev.headers)
            if handler is None or self.draining:
                nursery.start_soon(request.reject, 503)
            else:
                nursery.start_soon(self._handle, handler, request)
        elif isinstance(ev, hbone.Rejected):
            log.warning("%s: CONNECT refused with 400: %s", self.label, ev.reason)
        elif isinstance(ev, hbone.PingAcknowledged):
            if (e := self._pings.pop(ev.opaque, None)) is not None:
                e.set()
        elif isinstance(ev, hbone.GoAway):
            self.draining = True
            if ev.code:
                log.warning("%s: peer sent GOAWAY with HTTP/2 error code %d", self.label, ev.code)
            self._check_idle()
        elif isinstance(ev, hbone.ConnectionFailed):
            log.warning("%s: %s", self.label, ev.reason)
            self.failure = ev.reason
            nursery.start_soon(self._flush_and_fail, ev.reason)

    async def _flush_and_fail(self, reason: str) -> None:
        with trio.move_on_after(1):
            await self.flush()  # the GOAWAY telling the peer why
        self._fail(reason)

    async def _handle(self, handler: Handler, request: Request) -> None:
        try:
            await handler(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("%s: stream %d ended: %s", self.label, request.stream_id, exc)
        except Exception:  # one stream's failure must not end the connection's other streams
            log.exception("%s: handling CONNECT %s:%d failed", self.label, request.host, request.port)
        finally:
            if not request.answered:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await request.reject(503)
            t = self.streams.get(request.stream_id)
            if t is not None:
                with trio.CancelScope(shield=True):
                    await t.aclose()

    async def _keepalive(self, interval_s: float) -> None:
        """PING every ``interval_s``; no answer within ``interval_s`` ends the connection."""
        while not self.closed:
            await trio.sleep(interval_s)
            opaque = os.urandom(8)
            acked = trio.Event()
            self._pings[opaque] = acked
            self.core.ping(opaque)
            await self.flush()
            with trio.move_on_after(interval_s):
                await acked.wait()
            if not acked.is_set() and not self.closed:
                log.warning("%s: no answer to an HTTP/2 PING in %.0f s: closing the connection", self.label,
                            interval_s)
                self._fail("keepalive PING unanswered")
                return

    def _fail(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.failure = self.failure or reason
        for t in list(self.streams.values()):
            t._on_reset(f"HBONE connection {self.label} ended: {self.failure}")
        self.streams.clear()
        self._idle.set()
        self._wake.set()
        self._written.set()
        self._read_scope.cancel()  # the reader may be waiting for bytes that will never come

    # -- streams -----------------------------------------------------------------------------------

    def forget(self, tunnel: Tunnel) -> None:
        if self.streams.get(tunnel.stream_id) is tunnel:
            del self.streams[tunnel.stream_id]
        self._check_idle()

    def maybe_forget(self, tunnel: Tunnel) -> None:
        if tunnel.finished:
            self.forget(tunnel)

    def _check_idle(self) -> None:
        if not self.streams:
            self._idle.set()

    @property
    def usable(self) -> bool:
        return not self.closed and not self.draining

    def capacity(self) -> int:
        limit = min(hbone.MAX_STREAMS, self.core.peer_max_streams)
        return limit - len(self.streams) - self.reserved

    async def open(self, authority: str, headers: Sequence[tuple[str, str]] = ()) -> Tunnel:
        """Client: CONNECT to ``authority``; returns the tunnel once the peer answered 200.
        Raises :class:`TunnelRefused` for another status, :class:`LinkClosed` if the
        connection ends first."""
        if not self.usable:
            raise LinkClosed(f"HBONE connection {self.label} is {'closed' if self.closed else 'draining'}")
        stream_id = self.core.connect(authority, headers)
        t = Tunnel(self, stream_id)
        self.streams[stream_id] = t
        self._idle = trio.Event()
        await self.flush()
        await t._response.wait()
        if t.status and t.status != 200:
            await t.aclose()
            raise TunnelRefused(t.status, authority)
        if t._reset is not None:
            await t.aclose()
            raise LinkClosed(t._reset)
        return t

    async def drain(self, timeout_s: float) -> None:
        """GOAWAY, then wait up to ``timeout_s`` for open streams to finish; then close."""
        self.draining = True
        self.core.goaway()
        await self.flush()
        if self.streams:
            self._idle = trio.Event()
            self._check_idle()
            with trio.move_on_after(timeout_s):
                await self._idle.wait()
        self._fail("drained")
        with trio.CancelScope(shield=True):
            await self.transport.aclose()

    async def wait_closed(self) -> None:
        await self._done.wait()


Dial = Callable[[Hashable], Awaitable[trio.abc.Stream]]


class Pool:
    """Client connections shared per key (see the module docstring). Run :meth:`run` in a
    nursery; connections live in it and end with it."""

    def __init__(self, dial: Dial, *, keepalive_s: float = 30.0, idle_timeout_s: float = 60.0) -> None:
        self._dial = dial
        self._keepalive_s = keepalive_s
        self._idle_timeout_s = idle_timeout_s
        self._links: dict[Hashable, list[H2Link]] = {}
        self._locks: dict[Hashable, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def connections(self) -> dict[Hashable, int]:
        return {k: len(v) for k, v in self._links.items() if v}

    async def open(self, key: Hashable, authority: str, headers: Sequence[tuple[str, str]] = ()) -> Tunnel:
        """A tunnel to ``authority`` over a pooled connection for ``key`` (dialled if needed).
        Raises what the dial raises (OSError, TLS and identity errors), :class:`TunnelRefused`
        and :class:`LinkClosed`."""
        link = await self._link(key)
        try:
            return await link.open(authority, headers)
        finally:
            link.reserved -= 1

    async def _link(self, key: Hashable) -> H2Link:
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:
            links = self._links.setdefault(key, [])
            links[:] = [ln for ln in links if not ln.closed]
            for ln in links:
                if ln.usable and ln.capacity() > 0:
                    ln.reserved += 1
                    return ln
            transport = await self._dial(key)
            link = H2Link(transport, client=True, label=str(key))
            assert self._nursery is not None, "Pool.run is not running"
            await self._nursery.start(self._serve, key, link)
            link.reserved += 1
            links.append(link)
            return link

    async def _serve(self, key: Hashable, link: H2Link, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: link.run(keepalive_s=self._keepalive_s,
                                                             task_status=task_status))
            task_status.started()
            nursery.start_soon(self._reap_idle, link)
            await link.wait_closed()
            nursery.cancel_scope.cancel()
        links = self._links.get(key)
        if links is not None and link in links:
            links.remove(link)

    async def _reap_idle(self, link: H2Link) -> None:
        """Close a connection that carried no stream for ``idle_timeout_s``."""
        busy_at = trio.current_time()
        while not link.closed:
            await trio.sleep(self._idle_timeout_s / 4)
            now = trio.current_time()
            if link.streams or link.reserved:
                busy_at = now
            elif now - busy_at >= self._idle_timeout_s:
                await link.drain(1.0)
                return

    async def drain(self, timeout_s: float) -> None:
        """Gracefully close every connection (GOAWAY, then wait for their streams)."""
        async with trio.open_nursery() as nursery:
            for links in self._links.values():
                for link in links:
                    nursery.start_soon(link.drain, timeout_s)
