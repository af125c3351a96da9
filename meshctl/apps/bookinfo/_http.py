"""Server-side plumbing shared by the Bookinfo apps: command line, server loop, wire format.

Owns the ``--host``/``--port`` options, logging (one access line per request on stdout,
diagnostics on stderr), the threaded HTTP/1.1 server with prompt exit on SIGTERM/SIGINT,
request parsing (bounded bodies, chunked uploads) and the response helpers (JSON, HTML, text,
redirects). An app is one function ``Request -> Response``; an exception escaping it is logged
for the operator and becomes a short JSON 500 -- never a traceback on the wire.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlsplit

DEFAULT_PORT = 9080
DEFAULT_HOST = "0.0.0.0"
MAX_BODY_BYTES = 1 << 20
IDLE_TIMEOUT_S = 120.0  # an idle keep-alive connection is closed after this long

log = logging.getLogger("bookinfo")
access_log = logging.getLogger("bookinfo.access")

_ID_RE = re.compile(r"[+-]?[0-9]{1,18}")
_UNPRINTABLE_RE = re.compile(r"[^\x20-\x7e]")


class ConfigError(ValueError):
    """A setting (flag or environment variable) the app cannot run with; the text says why."""


@dataclass(frozen=True)
class Request:
    """One parsed request. Header names are lower-case; the first of repeated headers wins."""

    method: str
    path: str  # without the query string
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    client: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    """What an app answers; Content-Length and Date are added by the server."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


App = Callable[[Request], Response]


def json_response(status: int, payload: object) -> Response:
    return Response(status, json.dumps(payload).encode(), "application/json")


def html_response(status: int, text: str) -> Response:
    return Response(status, text.encode(), "text/html; charset=utf-8")


def text_response(
    status: int, text: str, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    return Response(status, text.encode(), content_type)


def redirect(location: str, extra_headers: Sequence[tuple[str, str]] = ()) -> Response:
    return Response(302, b"", "text/plain; charset=utf-8", [("Location", location), *extra_headers])


def method_not_allowed(allowed: Sequence[str]) -> Response:
    response = json_response(405, {"error": f"method not allowed; use {', '.join(allowed)}"})
    response.headers.append(("Allow", ", ".join(allowed)))
    return response


def not_found(path: str) -> Response:
    return json_response(404, {"error": f"no such resource: {printable(path)}"})


def parse_product_id(text: str) -> int | None:
    """The integer product id in a path segment, or None when it is not a plain integer."""
    return int(text) if _ID_RE.fullmatch(text) else None


def product_request(
    request: Request, resource: str, health: str, methods: Sequence[str] = ("GET",)
) -> Response | int:
    """Route ``/health`` and ``/<resource>/<id>`` the way every Bookinfo backend does: the
    answer for health, a 404/405/400 for anything else that is not a product request, or the
    product id."""
    allowed = ("HEAD", *methods) if "GET" in methods else tuple(methods)
    if request.path == "/health":
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(["GET"])
        return json_response(200, {"status": health})
    prefix, _, rest = request.path.lstrip("/").partition("/")
    if prefix != resource:
        return not_found(request.path)
    if request.method not in allowed:
        return method_not_allowed(list(methods))
    product_id = parse_product_id(rest.rstrip("/"))
    if product_id is None:
        return json_response(400, {"error": "please provide numeric product ID"})
    return product_id


def parse_port(text: str) -> int | None:
    """A TCP port from 1 to 65535, or None when ``text`` is not one."""
    if not text.strip().isdigit():
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def printable(text: str, limit: int = 200) -> str:
    """``text`` made safe for a log line: control and non-ASCII characters escaped, bounded."""
    cleaned = _UNPRINTABLE_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a :class:`Request` for ``app`` and writes its answer."""

    protocol_version = "HTTP/1.1"
    server_version = "bookinfo"
    timeout = IDLE_TIMEOUT_S
    app: App
    app_name: str

    def version_string(self) -> str:
        return self.server_version

    def _dispatch(self) -> None:
        started = time.monotonic()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except _BodyError as err:
            self.close_connection = True
            response = json_response(err.status, {"error": err.message})
        else:
            request = Request(
                method=self.command,
                path=split.path or "/",
                query=parse_qs(split.query),
                headers=headers,
                body=body,
                client=str(self.client_address[0]),
            )
            try:
                response = self.app(request)
            except Exception:
                log.exception(
                    "%s: internal error serving %s %s",
                    self.app_name,
                    self.command,
                    printable(self.path),
                )
                response = json_response(500, {"error": "internal server error"})
        self._write(response)
        self._log_access(response, headers, started)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _dispatch

    def _read_body(self) -> bytes:
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            if encoding.strip().lower() != "chunked":
                raise _BodyError(501, f"unsupported Transfer-Encoding {printable(encoding)!r}")
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        if not length_text.strip().isdigit():
            raise _BodyError(400, "invalid Content-Length")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise _BodyError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _BodyError(400, "malformed chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "malformed chunk size") from None
            if size < 0:
                raise _BodyError(400, "malformed chunk size")
            if size == 0:
                for _ in range(64):  # trailer section, bounded
                    if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        break
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
            data = self.rfile.read(size)
            if len(data) != size:
                raise _BodyError(400, "truncated chunked body")
            chunks.append(data)
            self.rfile.readline(8)  # the CRLF after the chunk

    def _write(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and response.body:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _log_access(self, response: Response, headers: Mapping[str, str], started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000.0
        access_log.info(
            '%s "%s %s %s" %d %d %.1fms ua=%s x-request-id=%s',
            self.client_address[0],
            self.command,
            printable(self.path, 500),
            self.request_version,
            response.status,
            len(response.body),
            elapsed_ms,
            json.dumps(printable(headers.get("user-agent", "-"))),
            printable(headers.get("x-request-id", "-")),
        )

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _log_access writes the access line, with the duration

    def log_error(self, format: str, *args: object) -> None:
        log.info("%s: %s: %s", self.app_name, self.client_address[0], printable(format % args))

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s: %s: %s", self.app_name, self.client_address[0], printable(format % args))


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # in-flight requests never hold up exit

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall on DNS in a fresh pod.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


def configure_logging() -> None:
    """Access lines to stdout, everything else to stderr; UTC timestamps."""
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    diag = logging.StreamHandler(sys.stderr)
    diag.setFormatter(formatter)
    log.handlers[:] = [diag]
    log.setLevel(logging.INFO)
    log.propagate = False
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(formatter)
    access_log.handlers[:] = [out]
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def make_server(app_name: str, app: App, host: str, port: int) -> ThreadingHTTPServer:
    """Bind ``app`` to ``host:port``; raises OSError when the address cannot be bound."""
    handler = type(
        f"{app_name}_Handler", (_Handler,), {"app": staticmethod(app), "app_name": app_name}
    )
    server_class = _Server6 if ":" in host else _Server
    return server_class((host, port), handler)


def base_parser(app_name: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m meshctl.apps.bookinfo.{app_name}", description=description
    )
    parser.add_argument(
        "--port", default=str(DEFAULT_PORT), help=f"TCP port to listen on (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    return parser


def run(
    app_name: str,
    parser: argparse.ArgumentParser,
    build_app: Callable[[argparse.Namespace], App],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse the command line, build the app, serve until SIGTERM/SIGINT; the exit status."""
    configure_logging()
    args = parser.parse_args(argv)
    port = parse_port(str(args.port))
    if port is None:
        log.error(
            "%s: invalid --port %r: expected an integer from 1 to 65535",
            app_name,
            printable(str(args.port)),
        )
        return 2
    try:
        app = build_app(args)
    except ConfigError as err:
        log.error("%s: %s", app_name, err)
        return 2
    try:
        server = make_server(app_name, app, args.host, port)
    except OSError as err:
        log.error("%s: cannot listen on %s:%d: %s", app_name, args.host, port, err.strerror or err)
        return 1
    received: list[str] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        # Never raise from a signal handler (it could land anywhere in the main thread, even
        # inside Thread.start()); ask serve_forever to return, from another thread as it needs.
        if not received:
            received.append(signal.Signals(signum).name)
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("%s: listening on %s:%d", app_name, args.host, port)
    try:
        server.serve_forever(poll_interval=0.5)
        if received:
            log.info("%s: received %s, exiting", app_name, received[0])
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
