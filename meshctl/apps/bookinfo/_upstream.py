"""Calls from one Bookinfo app to another: where the peer is, which headers travel, what failed.

Owns the one list of request headers the apps propagate (trace context and the routing headers
Istio's tasks match on), the addressing Istio's Bookinfo uses (``<NAME>_HOSTNAME``,
``<NAME>_SERVICE_PORT``, ``SERVICES_DOMAIN``), and a bounded JSON GET that turns every failure
-- refused, timed out, non-200, not JSON -- into a value plus one log line naming the URL and
the cause.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshctl.apps.bookinfo._http import DEFAULT_PORT, ConfigError, parse_port, printable

log = logging.getLogger("bookinfo")

MAX_RESPONSE_BYTES = 4 << 20

# Trace context, forwarded verbatim by every app that calls another (as Istio's samples do).
TRACE_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
)
# Headers starting with these are trace context too (Datadog's x-datadog-trace-id etc.).
TRACE_HEADER_PREFIXES: tuple[str, ...] = ("x-datadog-",)

# productpage -> details/reviews. Like Istio's productpage it does NOT forward an incoming
# ``end-user``: it sends ``end-user`` only for the user signed in with its session cookie.
PRODUCTPAGE_FORWARDS: tuple[str, ...] = (
    *TRACE_HEADERS,
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
)
# reviews -> ratings: the incoming ``end-user`` travels on (routing rules may match it).
REVIEWS_FORWARDS: tuple[str, ...] = (*TRACE_HEADERS, "end-user", "user-agent")


def forward_headers(incoming: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    """The headers among ``names`` (lower-case) and the trace prefixes present in ``incoming``."""
    out = {name: incoming[name] for name in names if name in incoming}
    for name, value in incoming.items():
        if name.startswith(TRACE_HEADER_PREFIXES):
            out[name] = value
    return out


@dataclass(frozen=True)
class Upstream:
    """A peer service's address, e.g. ``details:9080``."""

    service: str
    host: str
    port: int

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"


def upstream_from_env(service: str, env: Mapping[str, str]) -> Upstream:
    """``service``'s address as Istio's Bookinfo reads it from the environment.

    Host ``$<SERVICE>_HOSTNAME`` (default the service name) with ``.$SERVICES_DOMAIN`` appended
    when that is set, port ``$<SERVICE>_SERVICE_PORT`` (default 9080). Raises ConfigError for a
    port that is not one.
    """
    prefix = service.upper()
    host = env.get(f"{prefix}_HOSTNAME") or service
    domain = env.get("SERVICES_DOMAIN")
    if domain:
        host = f"{host}.{domain}"
    port_text = env.get(f"{prefix}_SERVICE_PORT") or str(DEFAULT_PORT)
    port = parse_port(port_text)
    if port is None:
        raise ConfigError(
            f"{prefix}_SERVICE_PORT={printable(port_text)!r} is not a TCP port "
            "(expected an integer from 1 to 65535)"
        )
    return Upstream(service, host, port)


@dataclass(frozen=True)
class FetchResult:
    """The outcome of one GET: ``status`` None means no HTTP response at all."""

    status: int | None
    payload: object = None  # the decoded JSON body when ok
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


def _describe(err: BaseException, timeout: float) -> str:
    if isinstance(err, TimeoutError):
        return f"no response within {timeout:g} s"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def get_json(
    caller: str, upstream: Upstream, path: str, headers: Mapping[str, str], timeout: float
) -> FetchResult:
    """GET ``path`` from ``upstream`` expecting a JSON 200; ``timeout`` bounds connect and each read.

    Never raises for network or protocol trouble: the result says what went wrong and one
    warning line is logged (``<caller>: GET <url> failed after <t> s: <cause>``).
    """
    url = upstream.url(path)
    started = time.monotonic()
    conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=timeout)
    result: FetchResult
    try:
        conn.request("GET", path, headers={"Accept": "application/json", **headers})
        response = conn.getresponse()
        body = response.read(MAX_RESPONSE_BYTES + 1)
    except (OSError, http.client.HTTPException, ValueError) as err:
        result = FetchResult(None, error=_describe(err, timeout))
    else:
        if response.status != 200:
            result = FetchResult(response.status, error=f"HTTP {response.status} {response.reason}")
        elif len(body) > MAX_RESPONSE_BYTES:
            result = FetchResult(response.status, error="response body too large")
        else:
            try:
                result = FetchResult(200, payload=json.loads(body))
            except ValueError:
                result = FetchResult(200, error="response body is not JSON")
    finally:
        conn.close()
    if result.error is not None:
        log.warning(
            "%s: GET %s failed after %.2f s: %s",
            caller,
            printable(url),
            time.monotonic() - started,
            result.error,
        )
    return result
