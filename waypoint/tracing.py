"""Distributed tracing as Envoy does it in Istio: read the caller's trace context, make a child
span per request, propagate the context upstream, and report spans to a Zipkin collector.

Context in (:func:`extract`), never raising: a malformed value is ignored as if absent (the
request then starts a new trace):

- B3 (https://github.com/openzipkin/b3-propagation), which Istio's Zipkin tracer and Bookinfo's
  apps use: the single ``b3`` header (``{traceid}-{spanid}[-{sampled}[-{parentspanid}]]`` or a
  bare sampling decision ``0``/``1``/``d``) is read first, as Envoy does, then the multi headers
  ``x-b3-traceid`` (16 or 32 hex), ``x-b3-spanid`` (16 hex), ``x-b3-parentspanid``,
  ``x-b3-sampled`` (``1``/``0``, also ``true``/``false``) and ``x-b3-flags`` (``1``: debug,
  which implies sampled). Sampling headers alone carry a decision without a trace.
- W3C Trace Context (https://www.w3.org/TR/trace-context/): ``traceparent``
  ``{version}-{trace-id}-{parent-id}-{flags}``, lower-case hex, neither id all zeros, version
  ``ff`` invalid, a future version may append ``-...`` fields; bit 0 of flags is "sampled".
  ``tracestate`` is passed through unchanged (cut to whole entries within 512 characters) when
  ``traceparent`` is valid and names the trace the span continues, dropped otherwise, as the spec
  says.
- When B3 and ``traceparent`` both carry a trace, B3 wins (Istio's tracer is Zipkin).

Spans (:func:`start_span`): a new random 64-bit span id whose parent is the caller's span, in
the caller's trace, or a new 128-bit trace. The caller's sampling decision is kept; without one,
``sample_percent`` decides (Istio's default mesh config samples 1%, ``100`` here by default).
:meth:`Span.finish` closes a span with the request's status and
:class:`~waypoint.telemetry.RequestRecord` (Envoy's span tags, the upstream as remote endpoint,
the monotonic duration). A request id (``x-request-id``) is the caller's business:
:func:`ensure_request_id` returns the existing one or a new UUID4.

Context out (:func:`propagation_headers`): ``traceparent`` (version ``00``, a 64-bit trace id
left-padded to 32 hex) with ``tracestate`` when kept, and the B3 multi headers
(``x-b3-flags: 1`` instead of ``x-b3-sampled`` for a debug trace, as B3 says), so both kinds of
app follow the trace. :func:`with_trace_headers` replaces every incoming trace header with them.

Reporting: :func:`zipkin_json` encodes spans as Zipkin's v2 JSON (https://zipkin.io/zipkin-api/,
``POST /api/v2/spans`` with a JSON list of spans: ``traceId`` 16 or 32 lower-hex, ``id`` and
``parentId`` 16 lower-hex, ``kind`` CLIENT/SERVER/PRODUCER/CONSUMER, ``timestamp`` and
``duration`` integer epoch microseconds (duration at least 1), ``localEndpoint``/
``remoteEndpoint`` ``{serviceName, ipv4|ipv6, port}``, ``tags`` string to string, ``debug``
only when true; names lower-case, as Zipkin stores them). :class:`ZipkinExporter` queues sampled
spans (bounded; a full queue drops and counts), and POSTs them in batches over HTTP/1.1 (h11),
keeping the connection alive, retrying a batch a bounded number of times with exponential
back-off, logging each distinct failure once (collector URL and reason) until a delivery works
again. Its counters: ``sent`` (spans the collector accepted), ``dropped`` (spans refused because
the queue was full) and ``failed`` (spans given up after the retries, or refused with a 4xx).
"""

from __future__ import annotations

import json
import logging
import random
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import h11
import trio

from waypoint.telemetry import RequestRecord, span_tags

log = logging.getLogger("waypoint.tracing")

_RNG = random.Random()

# The request headers that carry trace context; the waypoint replaces all of them upstream.
TRACE_HEADERS: Final[frozenset[str]] = frozenset({
    "traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
    "x-b3-sampled", "x-b3-flags",
})
MAX_TRACESTATE: Final = 512
MAX_REQUEST_ID: Final = 256

_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX2 = re.compile(r"[0-9a-f]{2}")
_ZERO16: Final = "0" * 16
_ZERO32: Final = "0" * 32


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The caller's context. ``trace_id`` is empty when only a sampling decision came;
    ``sampled`` is None when no decision came."""

    trace_id: str = ""
    span_id: str = ""
    sampled: bool | None = None
    debug: bool = False
    tracestate: str = ""


@dataclass(slots=True)
class Span:
    """One span. ``start`` is epoch microseconds, ``duration`` microseconds; ids lower-hex."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str = "SERVER"                 # SERVER | CLIENT
    start: int = 0
    duration: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    local_service: str = ""
    local_ip: str = ""
    local_port: int = 0
    remote_ip: str = ""
    remote_port: int = 0
    sampled: bool = True
    debug: bool = False
    tracestate: str = ""

    def finish(self, status: int | None = None, rec: RequestRecord | None = None, *,
               now: float | None = None, duration_s: float | None = None) -> None:
        """Ends the span. Duration (at least 1 µs): ``duration_s`` (monotonic seconds), else the
        record's ``duration_s``, else ``now`` (epoch seconds) minus the start. Tags: the
        record's (:func:`waypoint.telemetry.span_tags`; tags already set win), then ``status``
        as ``http.status_code`` (``error: true`` for 5xx or 0). The remote endpoint defaults to
        the record's upstream host."""
        if duration_s is None and rec is not None and rec.duration_s > 0:
            duration_s = rec.duration_s
        if duration_s is not None:
            self.duration = max(1, round(duration_s * 1_000_000))
        elif now is not None:
            self.duration = max(1, round(now * 1_000_000) - self.start)
        if rec is not None:
            self.tags = {**span_tags(rec), **self.tags}
            if not self.remote_ip and rec.upstream_host:
                self.remote_ip, self.remote_port = _host_port(rec.upstream_host)
        if status is not None:
            self.tags["http.status_code"] = str(status)
            if status == 0 or status >= 500:
                self.tags["error"] = "true"
            else:
                self.tags.pop("error", None)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return (host, int(port)) if host and port.isdigit() and int(port) < 65536 else ("", 0)


# --- context in ----------------------------------------------------------------------------------


def _id16(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    return v if _HEX16.fullmatch(v) and v != _ZERO16 else None


def _trace_id(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if len(v) == 16:
        return v if _HEX16.fullmatch(v) and v != _ZERO16 else None
    return v if _HEX32.fullmatch(v) and v != _ZERO32 else None


def _sampled(value: str | None) -> bool | None:
    if value is None:
        return None
    return {"1": True, "true": True, "0": False, "false": False}.get(value.strip().lower())


def parse_traceparent(value: str | None) -> TraceContext | None:
    """A valid W3C ``traceparent`` as a context, else None."""
    if not value:
        return None
    v = value.strip()
    if len(v) < 55:
        return None
    version = v[:2]
    if not _HEX2.fullmatch(version) or version == "ff":
        return None
    if version == "00" and len(v) != 55:
        return None
    if len(v) > 55 and v[55] != "-":
        return None
    if v[2] != "-" or v[35] != "-" or v[52] != "-":
        return None
    trace_id, span_id, flags = v[3:35], v[36:52], v[53:55]
    if not _HEX32.fullmatch(trace_id) or trace_id == _ZERO32:
        return None
    if not _HEX16.fullmatch(span_id) or span_id == _ZERO16 or not _HEX2.fullmatch(flags):
        return None
    return TraceContext(trace_id, span_id, sampled=bool(int(flags, 16) & 1))


def _parse_b3_single(value: str) -> TraceContext | None:
    v = value.strip().lower()
    if v in ("0", "1", "d"):
        return TraceContext(sampled=v != "0", debug=v == "d")
    parts = v.split("-")
    if len(parts) not in (2, 3, 4):
        return None
    trace_id, span_id = _trace_id(parts[0]), _id16(parts[1])
    if trace_id is None or span_id is None:
        return None
    sampled: bool | None = None
    debug = False
    if len(parts) >= 3:
        if parts[2] not in ("0", "1", "d"):
            return None
        sampled, debug = parts[2] != "0", parts[2] == "d"
    if len(parts) == 4 and _id16(parts[3]) is None:
        return None
    return TraceContext(trace_id, span_id, sampled=sampled, debug=debug)


def _parse_b3_multi(headers: Mapping[str, str]) -> TraceContext | None:
    debug = (headers.get("x-b3-flags") or "").strip() == "1"
    sampled = True if debug else _sampled(headers.get("x-b3-sampled"))
    raw_trace = headers.get("x-b3-traceid")
    if raw_trace is not None:
        trace_id, span_id = _trace_id(raw_trace), _id16(headers.get("x-b3-spanid"))
        parent = headers.get("x-b3-parentspanid")
        if trace_id is not None and span_id is not None and (parent is None or _id16(parent)):
            return TraceContext(trace_id, span_id, sampled=sampled, debug=debug)
    if sampled is not None:
        return TraceContext(sampled=sampled, debug=debug)
    return None


def _cut_tracestate(value: str) -> str:
    value = value.strip()
    if len(value) <= MAX_TRACESTATE and value.isprintable():
        return value
    if not value.isprintable():
        return ""
    kept: list[str] = []
    size = 0
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        extra = len(entry) + (1 if kept else 0)
        if size + extra > MAX_TRACESTATE:
            break
        kept.append(entry)
        size += extra
    return ",".join(kept)


def extract(headers: Mapping[str, str]) -> TraceContext | None:
    """The caller's trace context from lower-case ``headers``, or None (see the module
    docstring for the precedence). Never raises on any header value."""
    b3: TraceContext | None = None
    single = headers.get("b3")
    if single is not None:
        b3 = _parse_b3_single(single)
    if b3 is None or not b3.trace_id:
        multi = _parse_b3_multi(headers)
        if multi is not None and b3 is None:
            b3 = multi
        elif multi is not None and b3 is not None and multi.trace_id:
            # ids from the multi headers, the decision of the single header (read first)
            b3 = TraceContext(multi.trace_id, multi.span_id, b3.sampled, b3.debug or multi.debug)
    w3c = parse_traceparent(headers.get("traceparent"))
    if b3 is not None and b3.trace_id:
        ctx = b3
    elif w3c is not None:
        # a bare B3 sampling decision still rules
        ctx = w3c if b3 is None else TraceContext(w3c.trace_id, w3c.span_id, b3.sampled, b3.debug)
    else:
        return b3
    state = headers.get("tracestate")
    if state and w3c is not None and _same_trace(w3c.trace_id, ctx.trace_id):
        cut = _cut_tracestate(state)
        if cut:
            return TraceContext(ctx.trace_id, ctx.span_id, ctx.sampled, ctx.debug, cut)
    return ctx


def _same_trace(w3c_id: str, other: str) -> bool:
    return w3c_id == other or (len(other) == 16 and w3c_id == _ZERO16 + other)


# --- spans -----------------------------------------------------------------------------------------


def _new_id(rng: random.Random, bits: int, avoid: str | None = None) -> str:
    width = bits // 4
    while True:
        value = rng.getrandbits(bits)
        text = f"{value:0{width}x}"
        if value and text != avoid:
            return text


def start_span(headers: Mapping[str, str], *, name: str, now: float, sample_percent: float = 100.0,
               rand: random.Random | None = None, kind: str = "SERVER",
               local_service: str = "") -> Span:
    """A child of the caller's span (``headers`` lower-case, e.g. ``Request.header_map()``), or
    the root of a new trace, starting at ``now`` (epoch seconds)."""
    rng = rand if rand is not None else _RNG
    ctx = extract(headers)
    if ctx is not None and ctx.trace_id:
        trace_id, parent = ctx.trace_id, ctx.span_id
    else:
        trace_id, parent = _new_id(rng, 128), None
    debug = ctx is not None and ctx.debug
    if debug:
        sampled = True
    elif ctx is not None and ctx.sampled is not None:
        sampled = ctx.sampled
    else:
        sampled = rng.random() * 100.0 < sample_percent
    return Span(trace_id=trace_id, span_id=_new_id(rng, 64, avoid=parent), parent_id=parent,
                name=name, kind=kind, start=round(now * 1_000_000), local_service=local_service,
                sampled=sampled, debug=debug,
                tracestate=ctx.tracestate if ctx is not None else "")


def ensure_request_id(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The request's ``x-request-id`` (``headers`` a lower-case mapping or a list of pairs), or a
    new UUID4 when it has none (or an unusable one: empty, longer than 256 characters or with
    control characters)."""
    if isinstance(headers, Mapping):
        value = headers.get("x-request-id")
    else:
        value = next((v for k, v in headers if k == "x-request-id"), None)
    if value:
        value = value.strip()
        if value and len(value) <= MAX_REQUEST_ID and value.isprintable():
            return value
    return str(uuid.uuid4())


# --- context out -----------------------------------------------------------------------------------


def propagation_headers(span: Span) -> list[tuple[str, str]]:
    """The trace headers for the upstream request: ``traceparent`` (+ ``tracestate``) and B3's
    multi headers, naming ``span`` as the parent."""
    trace32 = span.trace_id if len(span.trace_id) == 32 else span.trace_id.rjust(32, "0")
    out = [("traceparent", f"00-{trace32}-{span.span_id}-{'01' if span.sampled else '00'}")]
    if span.tracestate:
        out.append(("tracestate", span.tracestate))
    out += [("x-b3-traceid", span.trace_id), ("x-b3-spanid", span.span_id)]
    if span.parent_id:
        out.append(("x-b3-parentspanid", span.parent_id))
    if span.debug:
        out.append(("x-b3-flags", "1"))
    else:
        out.append(("x-b3-sampled", "1" if span.sampled else "0"))
    return out


def with_trace_headers(headers: Iterable[tuple[str, str]], span: Span) -> list[tuple[str, str]]:
    """``headers`` without any incoming trace header, plus :func:`propagation_headers`."""
    return [(k, v) for k, v in headers if k not in TRACE_HEADERS] + propagation_headers(span)


# --- Zipkin ---------------------------------------------------------------------------------------


def _endpoint(service: str, ip: str, port: int) -> dict[str, Any]:
    ep: dict[str, Any] = {}
    if service:
        ep["serviceName"] = service.lower()
    if ip:
        ep["ipv6" if ":" in ip else "ipv4"] = ip
    if port:
        ep["port"] = port
    return ep


def zipkin_span(span: Span) -> dict[str, Any]:
    """``span`` as a Zipkin v2 JSON object."""
    out: dict[str, Any] = {"traceId": span.trace_id, "id": span.span_id}
    if span.parent_id:
        out["parentId"] = span.parent_id
    if span.kind:
        out["kind"] = span.kind
    if span.name:
        out["name"] = span.name.lower()
    if span.start > 0:
        out["timestamp"] = span.start
    if span.duration > 0:
        out["duration"] = span.duration
    local = _endpoint(span.local_service, span.local_ip, span.local_port)
    if local:
        out["localEndpoint"] = local
    remote = _endpoint("", span.remote_ip, span.remote_port)
    if remote:
        out["remoteEndpoint"] = remote
    if span.tags:
        out["tags"] = {str(k): str(v) for k, v in span.tags.items()}
    if span.debug:
        out["debug"] = True
    return out


def zipkin_json(spans: Sequence[Span]) -> bytes:
    """The body of ``POST /api/v2/spans``: a JSON list of Zipkin v2 spans."""
    return json.dumps([zipkin_span(s) for s in spans], separators=(",", ":")).encode()


class ExportError(Exception):
    """A collector answered but did not take the spans; ``retry``: worth trying again."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


Connect = Callable[[str, int], Awaitable[trio.abc.Stream]]

MAX_RESPONSE_BYTES: Final = 64 << 10
_MAX_LOGGED_REASONS: Final = 64
_FAILURES = (OSError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError,
             h11.ProtocolError, ExportError)


async def _open_tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


class ZipkinExporter:
    """Reports sampled spans to a Zipkin collector at ``url`` (``http://host[:port][/path]``,
    path ``/api/v2/spans`` when none). :meth:`export` is synchronous and never blocks (call it
    from the trio thread); :meth:`run` delivers until cancelled. Spans still queued when
    :meth:`run` is cancelled are lost."""

    def __init__(self, url: str, *, max_queue: int = 2048, batch: int = 128,
                 flush_interval_s: float = 1.0, connect: Connect | None = None,
                 timeout_s: float = 5.0, max_attempts: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError(f"zipkin collector URL {url!r}: bad port") from None
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"zipkin collector URL {url!r}: want http://host[:port][/path]")
        if max_queue < 1 or batch < 1 or max_attempts < 1:
            raise ValueError("zipkin exporter: max_queue, batch and max_attempts must be at least 1")
        if flush_interval_s <= 0 or timeout_s <= 0 or backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("zipkin exporter: intervals must be positive (max_backoff_s >= backoff_s)")
        self.url = url
        self.host, self.port = parts.hostname, port
        self.authority = parts.netloc.rpartition("@")[2]
        self.path = (parts.path or "/api/v2/spans") + (f"?{parts.query}" if parts.query else "")
        self.max_queue, self.batch, self.flush_interval_s = max_queue, batch, flush_interval_s
        self.timeout_s, self.max_attempts = timeout_s, max_attempts
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._connect: Connect = connect if connect is not None else _open_tcp
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._queue: deque[Span] = deque()
        self._wakeup = trio.Event()
        self._stream: trio.abc.Stream | None = None
        self._conn: h11.Connection | None = None
        self._consecutive_failures = 0
        self._logged: set[str] = set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def export(self, span: Span) -> None:
        """Queues a sampled span (unsampled ones are ignored); drops it when the queue is full."""
        if not span.sampled:
            return
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(span)
        if len(self._queue) >= self.batch:
            self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Delivers batches: a full batch at once, anything queued every ``flush_interval_s``."""
        task_status.started()
        try:
            while True:
                if len(self._queue) < self.batch:
                    with trio.move_on_after(self.flush_interval_s):
                        await self._wakeup.wait()
                self._wakeup = trio.Event()
                while self._queue:
                    n = min(self.batch, len(self._queue))
                    await self._deliver([self._queue.popleft() for _ in range(n)])
        finally:
            await self._close()

    async def _deliver(self, spans: list[Span]) -> None:
        body = zipkin_json(spans)
        for attempt in range(self.max_attempts):
            try:
                with trio.fail_after(self.timeout_s):
                    await self._post(body)
            except _FAILURES as exc:
                await self._close()
                self._failure(_reason(exc, self.timeout_s))
                if isinstance(exc, ExportError) and not exc.retry:
                    break
                if attempt + 1 < self.max_attempts:
                    await trio.sleep(self._backoff())
                continue
            self.sent += len(spans)
            if self._consecutive_failures:
                log.info("zipkin: delivering spans to %s again", self.url)
            self._consecutive_failures = 0
            self._logged.clear()
            return
        self.failed += len(spans)
        await trio.sleep(self._backoff())  # a failing collector is not hammered batch after batch

    def _backoff(self) -> float:
        exponent = min(max(self._consecutive_failures - 1, 0), 20)
        return float(min(self.backoff_s * 2**exponent, self.max_backoff_s))

    def _failure(self, reason: str) -> None:
        self._consecutive_failures += 1
        if reason not in self._logged and len(self._logged) < _MAX_LOGGED_REASONS:
            self._logged.add(reason)
            log.warning("zipkin: cannot deliver spans to %s: %s", self.url, reason)

    async def _post(self, body: bytes) -> None:
        if self._stream is None or self._conn is None:
            self._stream = await self._connect(self.host, self.port)
            self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_BYTES)
        stream, conn = self._stream, self._conn
        request = h11.Request(method="POST", target=self.path, headers=[
            ("Host", self.authority), ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))), ("User-Agent", "ambient-mesh-waypoint"),
        ])
        await stream.send_all(conn.send(request) + conn.send(h11.Data(data=body))
                              + conn.send(h11.EndOfMessage()))
        status = 0
        received = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(MAX_RESPONSE_BYTES)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                received += len(event.data)
                if received > MAX_RESPONSE_BYTES:
                    raise ExportError(f"answer longer than {MAX_RESPONSE_BYTES} bytes")
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ExportError("the collector closed the connection without answering")
            elif event is h11.PAUSED:
                raise ExportError("unexpected HTTP state")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self._close()
        if not 200 <= status < 300:
            raise ExportError(f"HTTP {status}", retry=status >= 500 or status in (408, 429))

    async def _close(self) -> None:
        stream, self._stream, self._conn = self._stream, None, None
        if stream is not None:
            await trio.aclose_forcefully(stream)


def _reason(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, trio.TooSlowError):
        return f"no answer within {timeout_s:g}s"
    if isinstance(exc, h11.ProtocolError):
        return f"bad HTTP from the collector: {exc}"
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return "connection broken"
    return str(exc) or type(exc).__name__
