"""The sans-I/O HBONE core: CONNECT handling, flow control, frame sizes and protocol errors,
exercised by pairing a client core with a server core (no sockets)."""

from __future__ import annotations

import h2.connection
import h2.events
import pytest

from ztunnel import hbone
from ztunnel.hbone import (
    Connect,
    ConnectionFailed,
    Data,
    EndOfStream,
    HboneCore,
    HboneError,
    Rejected,
    Reset,
    Response,
    format_authority,
    parse_authority,
)


def pair() -> tuple[HboneCore, HboneCore]:
    c, s = HboneCore(client=True), HboneCore(client=False)
    exchange(c, s)
    return c, s


def exchange(c: HboneCore, s: HboneCore) -> tuple[list[hbone.Event], list[hbone.Event]]:
    """Move bytes both ways until quiet; returns (server events, client events)."""
    server_events: list[hbone.Event] = []
    client_events: list[hbone.Event] = []
    for _ in range(20):
        to_s, to_c = c.data_to_send(), s.data_to_send()
        if not to_s and not to_c:
            break
        if to_s:
            server_events += s.receive(to_s)
        if to_c:
            client_events += c.receive(to_c)
    return server_events, client_events


def test_connect_reaches_the_server_with_authority_and_headers() -> None:
    c, s = pair()
    sid = c.connect("10.0.0.1:9080", [("forwarded", 'for="10.0.0.2:4000"'), ("baggage", "k=v")])
    server, _ = exchange(c, s)
    assert server == [Connect(sid, "10.0.0.1", 9080, {"forwarded": 'for="10.0.0.2:4000"', "baggage": "k=v"})]
    s.respond(sid, 200)
    _, client = exchange(c, s)
    assert client == [Response(sid, 200)]


@pytest.mark.parametrize(("authority", "why"), [
    ("productpage:9080", "not an IP address"),
    ("10.0.0.1", "not ip:port"),
    ("10.0.0.1:0", "out of range"),
    ("10.0.0.1:70000", "out of range"),
])
def test_a_bad_authority_is_answered_400_and_reported(authority: str, why: str) -> None:
    c, s = pair()
    sid = c.connect(authority)
    server, client = exchange(c, s)
    assert len(server) == 1 and isinstance(server[0], Rejected) and why in server[0].reason
    assert client[:2] == [Response(sid, 400), EndOfStream(sid)]


def test_methods_other_than_connect_are_answered_400() -> None:
    raw = h2.connection.H2Connection()
    raw.initiate_connection()
    s = HboneCore(client=False)
    s.receive(raw.data_to_send())
    raw.receive_data(s.data_to_send())
    raw.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "10.0.0.1:80")],
                     end_stream=True)
    events = s.receive(raw.data_to_send())
    assert [type(e) for e in events] == [Rejected, EndOfStream]
    assert "CONNECT only" in events[0].reason  # type: ignore[union-attr]
    answers = raw.receive_data(s.data_to_send())
    status = [e for e in answers if isinstance(e, h2.events.ResponseReceived)]
    assert status and dict(status[0].headers)[b":status"] == b"400"


def test_windows_and_frames_are_set_for_throughput() -> None:
    c, s = pair()
    sid = c.connect("10.0.0.1:80")
    exchange(c, s)
    s.respond(sid, 200)
    exchange(c, s)
    assert c.send_window(sid) == hbone.STREAM_WINDOW
    taken = c.send(sid, b"x" * (hbone.STREAM_WINDOW + 1000))
    assert taken == hbone.STREAM_WINDOW  # the stream window bounds what is queued
    server, _ = exchange(c, s)
    frames = [e for e in server if isinstance(e, Data)]
    assert sum(len(f.data) for f in frames) == hbone.STREAM_WINDOW
    assert max(len(f.data) for f in frames) == hbone.MAX_FRAME  # large frames, not 16 KiB
    assert c.send(sid, b"more") == 0
    for f in frames:
        s.consumed(sid, f.flow_length)
    exchange(c, s)
    assert c.send_window(sid) > 0  # consuming reopened the window


def test_the_connection_window_is_larger_than_one_stream() -> None:
    c, s = pair()
    ids = []
    for _ in range(5):
        sid = c.connect("10.0.0.1:80")
        exchange(c, s)
        s.respond(sid, 200)
        ids.append(sid)
    exchange(c, s)
    total = sum(c.send(sid, b"y" * hbone.STREAM_WINDOW) for sid in ids)
    assert total == hbone.CONNECTION_WINDOW  # 4 streams fill 16 MiB; the fifth waits


def test_half_close_and_reset() -> None:
    c, s = pair()
    sid = c.connect("10.0.0.1:80")
    exchange(c, s)
    s.respond(sid, 200)
    exchange(c, s)
    c.send(sid, b"hello")
    c.end(sid)
    server, _ = exchange(c, s)
    assert [type(e) for e in server] == [Data, EndOfStream]
    s.send(sid, b"world")
    _, client = exchange(c, s)
    assert client == [Data(sid, b"world", 5)]
    s.reset(sid, hbone.CONNECT_ERROR)
    _, client = exchange(c, s)
    assert client == [Reset(sid, int(hbone.CONNECT_ERROR), True)]


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                        # HTTP/1.1 on the HBONE port
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00" * 4,  # window +0
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello inside the tunnel
])
def test_protocol_errors_end_the_connection_with_a_reason_and_goaway(garbage: bytes) -> None:
    s = HboneCore(client=False)
    events = s.receive(garbage)
    assert len(events) == 1 and isinstance(events[0], ConnectionFailed)
    assert "protocol error" in events[0].reason
    assert s.closed
    out = s.data_to_send()
    assert out  # at least the GOAWAY telling the peer why


def test_flow_control_violation_is_a_protocol_error() -> None:
    c, s = pair()
    sid = c.connect("10.0.0.1:80")
    exchange(c, s)
    s.respond(sid, 200)
    exchange(c, s)
    # A DATA frame larger than the stream window, written by hand (h2 itself would refuse).
    payload = b"z" * (hbone.STREAM_WINDOW + 1)
    frames = b""
    for i in range(0, len(payload), hbone.MAX_FRAME):
        chunk = payload[i:i + hbone.MAX_FRAME]
        frames += len(chunk).to_bytes(3, "big") + b"\x00\x00" + sid.to_bytes(4, "big") + chunk
    events = s.receive(frames)
    assert any(isinstance(e, ConnectionFailed) for e in events)


def test_authorities_round_trip() -> None:
    assert parse_authority("10.1.2.3:80") == ("10.1.2.3", 80)
    assert parse_authority("[fd00::1]:443") == ("fd00::1", 443)
    assert format_authority("fd00::1", 443) == "[fd00::1]:443"
    with pytest.raises(HboneError, match="not ip:port"):
        parse_authority("")


def test_goaway_drains_instead_of_closing_and_is_found_across_reads() -> None:
    c, s = pair()
    sid = c.connect("10.0.0.1:80")
    exchange(c, s)
    s.respond(sid, 200)
    exchange(c, s)
    c.send(sid, b"a" * 100)
    s.goaway()
    wire = s.data_to_send()
    s.send(sid, b"after goaway")  # the server may still send on the open stream
    wire += s.data_to_send()
    events: list[hbone.Event] = []
    for i in range(len(wire)):  # one byte at a time: frame boundaries split everywhere
        events += c.receive(wire[i:i + 1])
    assert hbone.GoAway(sid, 0) in events
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"after goaway"
    assert c.send(sid, b"client still sends") == 18
    server, _ = exchange(c, s)
    assert b"".join(e.data for e in server if isinstance(e, Data)) == b"a" * 100 + b"client still sends"


def test_large_data_blocks_are_queued_without_copies_and_in_order() -> None:
    c, s = pair()
    sid = c.connect("10.0.0.1:80")
    exchange(c, s)
    s.respond(sid, 200)
    exchange(c, s)
    payload = bytes(range(256)) * 800  # 200 KiB: one frame
    assert c.send(sid, b"small first") == 11
    assert c.send(sid, payload) == len(payload)
    c.end(sid)
    segments = c.take_segments()
    assert any(segment is payload for segment in segments)  # the caller's own object, not a copy
    events = s.receive(b"".join(segments))
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"small first" + payload
    assert EndOfStream(sid) in events
