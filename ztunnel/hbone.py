"""HBONE's HTTP/2 layer, sans-I/O: one HTTP/2 ``CONNECT`` stream per tunnelled TCP connection
over an mTLS connection (Istio's wire contract, see ARCHITECTURE.md).

:class:`HboneCore` wraps :class:`h2.connection.H2Connection` for one side of one connection: it
sets the windows and frame sizes for throughput (4 MiB per stream, 16 MiB per connection,
large frames), validates inbound ``CONNECT`` requests (a bad one is answered ``400`` here and
reported as :class:`Rejected`), and turns h2's events into the few this mesh uses. It never
touches a socket: feed it bytes with :meth:`HboneCore.receive`, send what
:meth:`HboneCore.data_to_send` returns. The trio driver is :mod:`ztunnel.tunnel`.

Graceful drain: h2 treats a GOAWAY, sent or received, as the end of the connection (it then
refuses to send on open streams and drops queued frames). HTTP/2 means "no new streams; open ones
may finish", so the core sends its own GOAWAY frame and keeps received ones away from h2 (a
small frame scanner on the inbound bytes), reporting them as :class:`GoAway`.

A peer that breaks the protocol (malformed frames, flow-control violations) ends the connection:
:meth:`receive` returns :class:`ConnectionFailed` naming what was wrong, and a ``GOAWAY`` is
queued to tell the peer.
"""

from __future__ import annotations

import binascii
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame


def _short_hex(data: bytes | None) -> str:
    """hyperframe's ``_raw_data_repr`` with the same output, hexlifying 10 bytes instead of the
    whole payload: h2 formats ``repr(frame)`` for its trace log on every received frame, even
    with logging off, which cost ~0.2 ms per 256 KiB DATA frame (a tenth of the data path)."""
    if not data:
        return "None"
    r = binascii.hexlify(data[:11]).decode("ascii")
    return "<hex:" + (r[:20] + "..." if len(r) > 20 else r) + ">"


hyperframe.frame._raw_data_repr = _short_hex

Segment = bytes | memoryview


class ZeroCopyH2Connection(h2.connection.H2Connection):
    """h2's connection with large DATA payloads kept out of its byte buffer (shared by HBONE
    and the waypoint's HTTP/2 codec). h2 serializes every frame into one ``bytearray``
    (``_prepare_for_sending``, internal but unchanged since h2 3) and :meth:`data_to_send`
    copies that again: six copies of each payload in all, the largest user-space cost of a bulk
    transfer. Here a DATA frame of :data:`ZERO_COPY_MIN` bytes or more becomes two segments —
    its 9-byte header and the payload object itself (``bytes`` or a ``memoryview`` of the
    caller's body, see :attr:`zero_copy_views`) — after what was queued before it; :meth:`take_segments` hands them out in
    order."""

    # whether memoryview payloads are sent without a copy too; HBONE copies them (its callers
    # may reuse their buffer as soon as a send returns)
    zero_copy_views = False

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self._segments: list[Segment] = []

    def _prepare_for_sending(self, frames: list[hyperframe.frame.Frame]) -> None:
        for frame in frames:
            data = getattr(frame, "data", None)
            if (isinstance(frame, hyperframe.frame.DataFrame) and isinstance(data, bytes | memoryview)
                    and (self.zero_copy_views or isinstance(data, bytes)) and len(data) >= ZERO_COPY_MIN and "PADDED" not in frame.flags):
                if self._data_to_send:
                    self._segments.append(bytes(self._data_to_send))
                    self._data_to_send = bytearray()
                frame.body_len = len(data)
                flags = 0x1 if "END_STREAM" in frame.flags else 0
                self._segments.append(_DATA_HEADER.pack(len(data) >> 8, len(data) & 0xFF, 0x0, flags,
                                                        frame.stream_id & 0x7FFFFFFF))
                self._segments.append(data)
            else:
                self._data_to_send += frame.serialize()

    def take_segments(self) -> list[Segment]:
        """Everything queued, in order: blocks to write one after the other."""
        out = self._segments
        self._segments = []
        if self._data_to_send:
            out.append(bytes(self._data_to_send))
            self._data_to_send = bytearray()
        return out

    def data_to_send(self, amount: int | None = None) -> bytes:
        if amount is not None:
            raise NotImplementedError("take all queued bytes at once (take_segments)")
        return b"".join(self.take_segments())

    def clear_outbound_data_buffer(self) -> None:
        self._segments = []
        super().clear_outbound_data_buffer()


ZERO_COPY_MIN = 16 * 1024
_DATA_HEADER = struct.Struct(">HBBBL")  # hyperframe's frame header layout

STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME = 1024 * 1024
MAX_STREAMS = 100
MAX_HEADER_LIST = 64 * 1024
_DEFAULT_CONNECTION_WINDOW = 65_535
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_GOAWAY = 0x7

CANCEL = h2.errors.ErrorCodes.CANCEL
CONNECT_ERROR = h2.errors.ErrorCodes.CONNECT_ERROR


class HboneError(Exception):
    """A tunnel could not be used; the message says why."""


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """Server: a valid CONNECT request for ``authority`` (``host:port``, an IP literal)."""
    stream_id: int
    host: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Server: a request answered ``400`` by the core; ``reason`` says what was wrong."""
    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Response:
    """Client: the answer to a CONNECT."""
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes
    flow_length: int  # what to hand back to :meth:`HboneCore.consumed` once the bytes are used


@dataclass(frozen=True, slots=True)
class EndOfStream:
    stream_id: int


@dataclass(frozen=True, slots=True)
class Reset:
    stream_id: int
    code: int
    remote: bool


@dataclass(frozen=True, slots=True)
class WindowOpened:
    stream_id: int  # 0: the connection window


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    opaque: bytes


@dataclass(frozen=True, slots=True)
class GoAway:
    """The peer will take no stream above ``last_stream_id``; open ones may finish."""
    last_stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The peer broke the protocol; the connection is over (a GOAWAY is queued)."""
    reason: str


Event = Connect | Rejected | Response | Data | EndOfStream | Reset | WindowOpened | PingAcknowledged | GoAway \
    | ConnectionFailed


# -- the core -----------------------------------------------------------------------------------


def parse_authority(value: str) -> tuple[str, int]:
    """``"10.0.0.1:80"`` or ``"[fd00::1]:80"`` → (ip, port). Raises :class:`HboneError`."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise HboneError(f"authority {value!r} is not ip:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise HboneError(f"authority {value!r}: {host!r} is not an IP address") from None
    port = int(port_text)
    if not 0 < port < 65536:
        raise HboneError(f"authority {value!r}: port {port} out of range")
    return str(ip), port


def format_authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HboneCore:
    """One side of one HBONE connection (see the module docstring)."""

    def __init__(self, *, client: bool) -> None:
        self.client = client
        config = h2.config.H2Configuration(client_side=client, header_encoding=None)
        self._h2 = ZeroCopyH2Connection(config)
        self._h2.local_settings = h2.settings.Settings(client=client, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            **({h2.settings.SettingCodes.ENABLE_PUSH: 0} if client else {}),
        })
        self._h2.max_inbound_frame_size = MAX_FRAME
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_CONNECTION_WINDOW)
        self.closed = False
        self.goaway_sent = False
        self._extra = b""                      # our own GOAWAY, after what h2 queued
        # the inbound frame scanner (see the module docstring)
        self._preface_left = 0 if client else len(_PREFACE)
        self._header = bytearray()
        self._payload_left = 0
        self._goaway: bytearray | None = None
        self._goaway_left = 0

    # -- sending ---------------------------------------------------------------------------------

    def connect(self, authority: str, headers: Sequence[tuple[str, str]] = ()) -> int:
        """Client: open a CONNECT stream to ``authority``; returns its stream id."""
        stream_id = self._h2.get_next_available_stream_id()
        block = [(b":method", b"CONNECT"), (b":authority", authority.encode())]
        block += [(k.encode(), v.encode()) for k, v in headers]
        self._h2.send_headers(stream_id, block)
        return stream_id

    def respond(self, stream_id: int, status: int, *, end: bool = False) -> None:
        """Server: answer a CONNECT (``200`` opens the tunnel; anything else should end it)."""
        self._h2.send_headers(stream_id, [(b":status", str(status).encode())], end_stream=end)

    def send_window(self, stream_id: int) -> int:
        """How many bytes :meth:`send` would take now on ``stream_id``."""
        try:
            return self._h2.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return 0

    def send(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue as much of ``data`` as the flow-control windows allow; returns the count taken.
        A ``bytes`` block that fits in one frame is queued as is (no copy)."""
        window = self.send_window(stream_id)
        frame = self._h2.max_outbound_frame_size
        if isinstance(data, bytes) and len(data) <= min(window, frame):
            if data:
                self._h2.send_data(stream_id, data)
            return len(data)
        taken = 0
        view = memoryview(data)
        while taken < len(view) and window > 0:
            n = min(window, frame, len(view) - taken)
            self._h2.send_data(stream_id, view[taken:taken + n].tobytes())
            taken += n
            window -= n
        return taken

    def end(self, stream_id: int) -> None:
        """Half-close: no more data from this side on ``stream_id``."""
        self._h2.end_stream(stream_id)

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        try:
            self._h2.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError,
                h2.exceptions.ProtocolError):
            pass  # already gone

    def consumed(self, stream_id: int, n: int) -> None:
        """``n`` received bytes of ``stream_id`` were delivered: let the peer send more."""
        if n <= 0:
            return
        try:
            self._h2.acknowledge_received_data(n, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            pass

    def ping(self, opaque: bytes) -> None:
        self._h2.ping(opaque)

    def goaway(self, code: int = 0) -> None:
        """Graceful close: the peer may open no new stream; the open ones may finish."""
        if self.closed or self.goaway_sent:
            return
        self.goaway_sent = True
        frame = hyperframe.frame.GoAwayFrame(0)
        frame.last_stream_id = self._h2.highest_inbound_stream_id
        frame.error_code = code
        self._extra += frame.serialize()

    def data_to_send(self) -> bytes:
        """Everything queued, as one block (copies; the driver uses :meth:`take_segments`)."""
        return b"".join(self.take_segments())

    def take_segments(self) -> list[Segment]:
        """Everything queued, in order, as blocks to write one after the other (large DATA
        payloads are the caller's own objects, not copies)."""
        out = self._h2.take_segments()
        if self._extra:
            out.append(self._extra)
            self._extra = b""
        return out

    @property
    def peer_max_streams(self) -> int:
        return int(self._h2.remote_settings.max_concurrent_streams)

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, data: bytes | bytearray) -> list[Event]:
        """Feed bytes from the peer; returns what happened."""
        if self.closed:
            return []
        data, goaways = self._scan(data)
        try:
            h2_events = self._h2.receive_data(data) if data else []
        except h2.exceptions.ProtocolError as exc:
            self.closed = True
            return [ConnectionFailed(f"HTTP/2 protocol error: {exc.__class__.__name__}: {exc}")]
        out: list[Event] = []
        for ev in h2_events:
            self._translate(ev, out)
        out += goaways
        return out

    def _scan(self, data: bytes | bytearray) -> tuple[bytes | bytearray, list[Event]]:
        """Pass ``data`` on to h2 except GOAWAY frames, which become :class:`GoAway` events."""
        view = memoryview(data)
        n, i = len(view), 0
        kept: list[memoryview | bytes] = []
        stripped = bool(self._header) or self._goaway is not None  # state carried from the last call
        goaways: list[Event] = []
        if self._preface_left:
            i = min(self._preface_left, n)
            kept.append(view[:i])
            self._preface_left -= i
        while i < n:
            if self._payload_left:
                take = min(self._payload_left, n - i)
                kept.append(view[i:i + take])
                self._payload_left -= take
                i += take
            elif self._goaway is not None:
                take = min(self._goaway_left, n - i)
                self._goaway += view[i:i + take]
                self._goaway_left -= take
                i += take
                if not self._goaway_left:
                    body, self._goaway = self._goaway, None
                    last = int.from_bytes(body[0:4], "big") & 0x7FFF_FFFF
                    goaways.append(GoAway(last, int.from_bytes(body[4:8], "big")))
            else:
                take = min(9 - len(self._header), n - i)
                self._header += view[i:i + take]
                i += take
                if len(self._header) < 9:
                    break
                length, kind = int.from_bytes(self._header[:3], "big"), self._header[3]
                if kind == _GOAWAY and 8 <= length <= MAX_FRAME:
                    self._goaway, self._goaway_left = bytearray(), length
                    stripped = True
                else:
                    kept.append(bytes(self._header))
                    self._payload_left = length
                self._header = bytearray()
        if not stripped and not self._header:
            return data, goaways  # every byte passed on, in order: no copy
        return b"".join(kept), goaways

    def _translate(self, ev: h2.events.Event, out: list[Event]) -> None:
        if isinstance(ev, h2.events.DataReceived):
            assert ev.stream_id is not None and ev.data is not None
            if ev.data or ev.flow_controlled_length:
                out.append(Data(ev.stream_id, ev.data, ev.flow_controlled_length or 0))
        elif isinstance(ev, h2.events.RequestReceived):
            assert ev.stream_id is not None
            self._request(ev.stream_id, ev.headers or [], out)
        elif isinstance(ev, h2.events.ResponseReceived):
            assert ev.stream_id is not None
            status = dict(ev.headers or []).get(b":status", b"0")
            out.append(Response(ev.stream_id, int(status) if status.isdigit() else 0))
        elif isinstance(ev, h2.events.StreamEnded):
            assert ev.stream_id is not None
            out.append(EndOfStream(ev.stream_id))
        elif isinstance(ev, h2.events.StreamReset):
            assert ev.stream_id is not None
            out.append(Reset(ev.stream_id, int(ev.error_code or 0), ev.remote_reset))
        elif isinstance(ev, h2.events.WindowUpdated):
            out.append(WindowOpened(ev.stream_id or 0))
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            out.append(WindowOpened(0))  # a new initial window may have opened every stream
        elif isinstance(ev, h2.events.PingAckReceived):
            out.append(PingAcknowledged(ev.ping_data or b""))
        elif isinstance(ev, h2.events.ConnectionTerminated):  # (GOAWAYs are scanned out: not expected)
            out.append(GoAway(int(ev.last_stream_id or 0), int(ev.error_code or 0)))
        # h2 reports every end of stream as StreamEnded (also after headers, data or trailers);
        # settings acks, pings (answered by h2), trailers, priority and unknown frames need nothing

    def _request(self, stream_id: int, raw: list[tuple[bytes, bytes]] | list[tuple[str, str]],
                 out: list[Event]) -> None:
        headers: dict[str, str] = {}
        for k, v in raw:
            key = k.decode("latin-1") if isinstance(k, bytes) else k
            headers[key] = v.decode("latin-1") if isinstance(v, bytes) else v
        method = headers.get(":method", "")
        try:
            if self.client:
                raise HboneError("a server may not open streams")
            if method != "CONNECT":
                raise HboneError(f"method {method!r}: HBONE takes CONNECT only")
            if ":protocol" in headers:
                raise HboneError(f"extended CONNECT ({headers[':protocol']!r}) is not HBONE")
            host, port = parse_authority(headers.get(":authority", ""))
        except HboneError as exc:
            self.respond(stream_id, 400, end=True)
            out.append(Rejected(stream_id, str(exc)))
            return
        extra = {k: v for k, v in headers.items() if not k.startswith(":")}
        out.append(Connect(stream_id, host, port, extra))
