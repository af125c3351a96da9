"""HTTP messages as the waypoint handles them, the same for HTTP/1.1 and HTTP/2.

The codecs (:mod:`waypoint.http1`, :mod:`waypoint.http2`) turn bytes on a stream into these and
back; the request pipeline (:mod:`waypoint.server`) only ever sees these. Header names are
lower-case; pseudo-headers are not in ``headers`` (they are the fields of :class:`Request`), and
neither are hop-by-hop headers (``connection``, ``keep-alive``, ``transfer-encoding``, ``te``
other than ``trailers``, ``upgrade``, ``proxy-connection``), which the codecs consume.

Bodies are whole ``bytes``: the waypoint buffers a message up to :data:`MAX_BODY_BYTES` (Envoy
buffers too when it may retry or mirror a request). A longer request is answered 413, a longer
upstream response 502; the README says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

MAX_BODY_BYTES = 16 << 20
MAX_HEADER_BYTES = 64 << 10

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade",
    "http2-settings",
})


class HttpError(Exception):
    """A peer broke HTTP: a downstream one is answered ``status`` (400 unless said otherwise)
    and, for HTTP/1.1, the connection is closed. ``str()`` names what was wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class UpstreamError(Exception):
    """An upstream request failed before a whole response arrived. ``reason`` is one of
    ``connect`` (no connection), ``reset`` (the connection broke; Envoy's UC/``reset``),
    ``protocol`` (the upstream broke HTTP) or ``too_large``; ``str()`` names the peer."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Request:
    method: str
    scheme: str          # "http" (inside HBONE the waypoint sees plaintext HTTP)
    authority: str       # :authority, or Host for HTTP/1.1
    path: str            # path with query, as sent ("*" for OPTIONS *)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    version: str = "HTTP/1.1"   # "HTTP/1.1" | "HTTP/1.0" | "HTTP/2"
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (lower-case), or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_map(self) -> dict[str, str]:
        """Headers as a dict; repeated headers are joined with ``,`` as HTTP allows."""
        return join_headers(self.headers)


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


def join_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers:
        out[k] = f"{out[k]},{v}" if k in out else v
    return out


def local_response(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A response the waypoint makes itself (Envoy's local replies: plain text, no trailing
    newline, e.g. ``RBAC: access denied``)."""
    body = text.encode()
    return Response(status, [("content-type", "text/plain"), ("content-length", str(len(body))),
                             *headers], body)


# The pipeline's entry point: one call per request on a connection.
Handler = Callable[[Request], Awaitable[Response]]
