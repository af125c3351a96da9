"""The waypoint's HTTP routing core (pure): a pushed :class:`pb.RouteConfig` is converted once into
immutable types here (generated classes go no further), and :func:`select` picks the route for a
request with the semantics of Istio's VirtualService
(https://istio.io/latest/docs/reference/config/networking/virtual-service/) as istiod translates
it for Envoy (pilot/pkg/networking/core/route/route.go):

- Routes are tried in order; the first that matches wins. No route: :data:`NO_ROUTE` (the caller
  answers 404 with response flag NR, as Envoy does).
- A route's ``match`` entries are OR-ed, the fields of one entry AND-ed; no entries: matches all.
- ``uri``: ``exact`` and ``regex`` see the path without its query (Envoy ``path``/``safe_regex``),
  ``prefix`` the whole ``:path`` (Envoy ``prefix``). Regexes are RE2-style full matches
  (:func:`re.fullmatch`). ``ignoreUriCase`` applies to exact and prefix uri matches only (the
  VirtualService docs: "the case will be ignored only in the case of exact and prefix URI matches").
- ``scheme``/``method``/``authority`` are case-sensitive string matches.
- ``headers``: names are lowercase; a match with no value (``{}``, translated to regex ``.*``) or
  regex ``*`` checks presence ("If the value is empty and only the name of header is specified,
  presence of the header is checked"); ``exact: ""`` matches a present, empty header. ``withoutHeaders``
  has "the same syntax with the header, but has opposite meaning": the entry matches when the header
  is absent or does not match.
- ``queryParams``: exact / regex (and prefix) on the first value of the parameter; ``?a`` has value "".
- ``port``, ``sourceLabels`` (a subset of the client's labels), ``sourceNamespace``.

Route results: weighted destinations (weights are relative, as Istio documents them: "A destination
will receive weight/(sum of all weights) requests"; translate.py makes a lone destination 100),
redirect (:func:`redirect_location`, code 301 by default), direct response, rewrite
(:func:`apply_rewrite`), header operations (destination-level merged with route-level), timeout
(0/unset: none), retries (:class:`RetryPolicy`, Istio's default when unset), fault injection and
mirrors, both decided by an injectable random number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote

from controlplane.api import mesh_pb2 as pb

# Istio's default retry policy (pilot/pkg/networking/core/route/retry/retry.go ``DefaultPolicy``;
# istio.io docs/concepts/traffic-management "Retries": "The default retry behavior for HTTP
# requests is to retry twice before returning the error"): 2 retries on
# "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", retriable
# status code 503, no per-try timeout.
DEFAULT_RETRY_ATTEMPTS: Final = 2
DEFAULT_RETRY_ON: Final = frozenset(
    {"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"})
DEFAULT_RETRIABLE_STATUS_CODES: Final = frozenset({503})
DEFAULT_REDIRECT_CODE: Final = 301  # HTTPRedirect.redirectCode: "Default is 301"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class RouteError(ValueError):
    """A pushed route is unusable; the message names the route and the field."""


# --- the request ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """What routing sees of a request. ``headers`` may be given with any case; they are stored
    under lowercase names (HTTP names are case-insensitive)."""

    method: str
    scheme: str
    authority: str
    path: str  # ":path", with the query
    headers: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    source_labels: Mapping[str, str] = field(default_factory=dict)
    source_namespace: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType({k.lower(): v for k, v in self.headers.items()}))
        object.__setattr__(self, "source_labels", MappingProxyType(dict(self.source_labels)))

    @property
    def path_only(self) -> str:
        return self.path.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.path.split("?", 1)[1] if "?" in self.path else ""


def query_params(query: str) -> dict[str, str]:
    """The first value of each parameter, percent-decoded; ``a`` alone has value ""."""
    out: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out.setdefault(unquote(name), unquote(value))
    return out


# --- converted configuration ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringMatch:
    kind: str  # "exact" | "prefix" | "regex" | "present"
    value: str = ""
    pattern: re.Pattern[str] | None = None

    def matches(self, text: str, ignore_case: bool = False) -> bool:
        if self.kind == "present":
            return True
        if self.kind == "regex":
            assert self.pattern is not None
            return self.pattern.fullmatch(text) is not None
        if ignore_case:
            text, value = text.lower(), self.value.lower()
        else:
            value = self.value
        return text == value if self.kind == "exact" else text.startswith(value)


@dataclass(frozen=True, slots=True)
class MatchRequest:
    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()
    without_headers: tuple[tuple[str, StringMatch], ...] = ()
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    ignore_uri_case: bool = False
    source_labels: tuple[tuple[str, str], ...] = ()
    port: int = 0
    source_namespace: str = ""

    def matches(self, req: Request) -> bool:
        if self.uri is not None:
            target = req.path if self.uri.kind == "prefix" else req.path_only
            if not self.uri.matches(target, self.ignore_uri_case):
                return False
        for m, value in ((self.scheme, req.scheme), (self.method, req.method), (self.authority, req.authority)):
            if m is not None and not m.matches(value):
                return False
        for name, m in self.headers:
            got = req.headers.get(name)
            if got is None or not m.matches(got):
                return False
        for name, m in self.without_headers:
            got = req.headers.get(name)
            if got is not None and m.matches(got):
                return False
        if self.query_params:
            params = query_params(req.query)
            for name, m in self.query_params:
                got = params.get(name)
                if got is None or not m.matches(got):
                    return False
        if self.port and self.port != req.port:
            return False
        if any(req.source_labels.get(k) != v for k, v in self.source_labels):
            return False
        return not (self.source_namespace and self.source_namespace != req.source_namespace)

    @property
    def uri_prefix(self) -> str | None:
        """The prefix a prefix rewrite replaces: the uri prefix, "/" without a uri match (istiod
        matches those with prefix "/"), None for exact and regex uri matches (the whole path)."""
        if self.uri is None:
            return "/"
        if self.uri.kind == "prefix":
            return self.uri.value
        if self.uri.kind == "present":
            return "/"
        return None


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def merged_over(self, specific: HeaderOps) -> HeaderOps:
        """``self`` (route level) applied after ``specific`` (destination level): Envoy applies
        header mutations from the most to the least specific level, so for the same name the
        route-level ``set`` wins; ``add`` keeps both; removals are united."""
        names = {k for k, _ in self.set}
        return HeaderOps(
            set=(*((k, v) for k, v in specific.set if k not in names), *self.set),
            add=(*specific.add, *self.add),
            remove=tuple(dict.fromkeys((*specific.remove, *self.remove))),
        )

    def apply(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers after these operations (names lowercase; ``add`` appends with ", ")."""
        out = {k.lower(): v for k, v in headers.items()}
        for name in self.remove:
            out.pop(name, None)
        for name, value in self.set:
            out[name] = value
        for name, value in self.add:
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    subset: str = ""
    port: int = 0


@dataclass(frozen=True, slots=True)
class RouteDestination:
    destination: Destination
    weight: int
    request_headers: HeaderOps = HeaderOps()   # merged: destination level, then route level
    response_headers: HeaderOps = HeaderOps()


@dataclass(frozen=True, slots=True)
class Redirect:
    uri: str = ""
    authority: str = ""
    port: int = 0
    scheme: str = ""
    code: int = DEFAULT_REDIRECT_CODE


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: str = ""


@dataclass(frozen=True, slots=True)
class Rewrite:
    uri: str = ""
    authority: str = ""
    uri_regex: re.Pattern[str] | None = None
    uri_regex_substitution: str = ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int  # retries after the first try; 0: none
    per_try_timeout: float | None = None
    retry_on: frozenset[str] = frozenset()
    retriable_status_codes: frozenset[int] = frozenset()


DEFAULT_RETRY: Final = RetryPolicy(DEFAULT_RETRY_ATTEMPTS, None, DEFAULT_RETRY_ON, DEFAULT_RETRIABLE_STATUS_CODES)
NO_RETRY: Final = RetryPolicy(0)


@dataclass(frozen=True, slots=True)
class FaultDecision:
    delay: float | None = None  # seconds to wait before forwarding
    abort: int | None = None    # status to answer instead of forwarding


@dataclass(frozen=True, slots=True)
class Fault:
    delay_seconds: float | None = None
    delay_percent: float = 100.0
    abort_status: int | None = None
    abort_percent: float = 100.0

    def decide(self, rand: Callable[[], float]) -> FaultDecision:
        """Delay and abort are decided independently (Envoy's fault filter), each by one draw
        in [0, 1) against its percentage."""
        delay = abort = None
        if self.delay_seconds is not None and rand() * 100.0 < self.delay_percent:
            delay = self.delay_seconds
        if self.abort_status is not None and rand() * 100.0 < self.abort_percent:
            abort = self.abort_status
        return FaultDecision(delay, abort)


@dataclass(frozen=True, slots=True)
class Mirror:
    destination: Destination
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: tuple[MatchRequest, ...] = ()
    destinations: tuple[RouteDestination, ...] = ()
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    rewrite: Rewrite | None = None
    timeout: float | None = None
    retry: RetryPolicy = DEFAULT_RETRY
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    request_headers: HeaderOps = HeaderOps()   # route level only (used for redirects/direct responses)
    response_headers: HeaderOps = HeaderOps()

    @property
    def total_weight(self) -> int:
        return sum(d.weight for d in self.destinations)


@dataclass(frozen=True, slots=True)
class RouteConfig:
    host: str
    namespace: str
    routes: tuple[Route, ...]
    sources: tuple[str, ...] = ()


# --- conversion -----------------------------------------------------------------------------------


def _compile(regex: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as e:
        raise RouteError(f"{where}: invalid regex {regex!r}: {e}") from None


def _string_match(m: pb.StringMatchRegex, where: str, *, header: bool = False) -> StringMatch:
    kind = m.WhichOneof("match_type")
    if kind is None:
        return StringMatch("present")
    if kind == "regex":
        if header and m.regex in ("*", ".*"):  # istiod: a catch-all header match is a presence match
            return StringMatch("present")
        return StringMatch("regex", m.regex, _compile(m.regex, where))
    return StringMatch(kind, getattr(m, kind))


def _opt(msg: pb.HTTPMatchRequest, name: str, where: str) -> StringMatch | None:
    return _string_match(getattr(msg, name), f"{where}.{name}") if msg.HasField(name) else None


def _match(m: pb.HTTPMatchRequest, where: str) -> MatchRequest:
    def table(entries: Mapping[str, pb.StringMatchRegex], fld: str, *, lower: bool) -> tuple[tuple[str, StringMatch], ...]:
        return tuple(sorted(
            ((k.lower() if lower else k),
             _string_match(v, f"{where}.{fld}[{k}]", header=lower)) for k, v in entries.items()))

    return MatchRequest(
        name=m.name, uri=_opt(m, "uri", where), scheme=_opt(m, "scheme", where),
        method=_opt(m, "method", where), authority=_opt(m, "authority", where),
        headers=table(m.headers, "headers", lower=True),
        without_headers=table(m.without_headers, "without_headers", lower=True),
        query_params=table(m.query_params, "query_params", lower=False),
        ignore_uri_case=m.ignore_uri_case, source_labels=tuple(sorted(m.source_labels.items())),
        port=m.port, source_namespace=m.source_namespace,
    )


def _ops(h: pb.HeaderOperations) -> HeaderOps:
    return HeaderOps(set=tuple(sorted((k.lower(), v) for k, v in h.set.items())),
                     add=tuple(sorted((k.lower(), v) for k, v in h.add.items())),
                     remove=tuple(dict.fromkeys(n.lower() for n in h.remove)))


def _headers(h: pb.Headers) -> tuple[HeaderOps, HeaderOps]:
    return _ops(h.request), _ops(h.response)


def _destination(d: pb.Destination, where: str) -> Destination:
    if not d.host:
        raise RouteError(f"{where}.host: empty")
    return Destination(d.host, d.subset, d.port)


def parse_retry_on(text: str) -> tuple[frozenset[str], frozenset[int]]:
    """istiod's ``parseRetryOn``: integers are retriable status codes (and then
    "retriable-status-codes" is implied); the rest are Envoy retry conditions."""
    conditions: set[str] = set()
    codes: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.isdigit():
            codes.add(int(part))
        else:
            conditions.add(part)
    if codes:
        conditions.add("retriable-status-codes")
    return frozenset(conditions), frozenset(codes)


def _retry(route: pb.HTTPRoute) -> RetryPolicy:
    """istiod's ``retry.ConvertPolicy``: unset -> the default policy; attempts <= 0 -> no
    retries; otherwise the default with attempts, retryOn (if given) and perTryTimeout overridden."""
    if not route.HasField("retries"):
        return DEFAULT_RETRY
    r = route.retries
    if r.attempts <= 0:
        return NO_RETRY
    retry_on, codes = (parse_retry_on(r.retry_on) if r.retry_on
                       else (DEFAULT_RETRY_ON, DEFAULT_RETRIABLE_STATUS_CODES))
    return RetryPolicy(r.attempts, r.per_try_timeout_seconds or None, retry_on, codes)


def convert_route(r: pb.HTTPRoute, index: int = 0) -> Route:
    where = f"http[{index}]" + (f" ({r.name})" if r.name else "")
    req_route, resp_route = _headers(r.headers)
    dests = []
    for i, d in enumerate(r.route):
        if d.weight < 0:
            raise RouteError(f"{where}.route[{i}].weight: negative ({d.weight})")
        req, resp = _headers(d.headers)
        weight = 100 if len(r.route) == 1 and d.weight == 0 else d.weight
        dests.append(RouteDestination(_destination(d.destination, f"{where}.route[{i}].destination"), weight,
                                      req_route.merged_over(req), resp_route.merged_over(resp)))
    redirect = None
    if r.HasField("redirect"):
        rd = r.redirect
        redirect = Redirect(rd.uri, rd.authority, rd.port, rd.scheme, rd.redirect_code or DEFAULT_REDIRECT_CODE)
    direct = DirectResponse(r.direct_response.status, r.direct_response.body) if r.HasField("direct_response") else None
    actions = sum(x for x in (bool(dests), redirect is not None, direct is not None))
    if actions != 1:
        raise RouteError(f"{where}: needs exactly one of route, redirect, direct_response (has {actions})")
    if dests and sum(d.weight for d in dests) <= 0:
        raise RouteError(f"{where}.route: the weights sum to 0")
    rewrite = None
    if r.HasField("rewrite"):
        rw = r.rewrite
        if rw.uri and rw.uri_regex:
            raise RouteError(f"{where}.rewrite: uri and uriRegexRewrite are exclusive")
        rewrite = Rewrite(rw.uri, rw.authority,
                          _compile(rw.uri_regex, f"{where}.rewrite.uri_regex") if rw.uri_regex else None,
                          rw.uri_regex_substitution)
    fault = None
    if r.HasField("fault") and (r.fault.has_delay or r.fault.has_abort):
        f = r.fault
        fault = Fault(f.delay_seconds if f.has_delay else None, f.delay_percent,
                      f.abort_http_status if f.has_abort else None, f.abort_percent)
    return Route(
        name=r.name, match=tuple(_match(m, f"{where}.match[{j}]") for j, m in enumerate(r.match)),
        destinations=tuple(dests), redirect=redirect, direct_response=direct, rewrite=rewrite,
        timeout=r.timeout_seconds or None, retry=_retry(r), fault=fault,
        mirrors=tuple(Mirror(_destination(m.destination, f"{where}.mirrors[{j}].destination"), m.percent)
                      for j, m in enumerate(r.mirrors)),
        request_headers=req_route, response_headers=resp_route,
    )


def convert(config: pb.RouteConfig) -> RouteConfig:
    """The waypoint's form of a pushed RouteConfig; :class:`RouteError` if a route is unusable."""
    try:
        routes = tuple(convert_route(r, i) for i, r in enumerate(config.http))
    except RouteError as e:
        raise RouteError(f"RouteConfig {config.host}: {e}") from None
    return RouteConfig(config.host, config.namespace, routes, tuple(config.sources))


# --- selection ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome of routing one request. ``route`` None: no route (404 NR)."""

    route: Route | None
    match: MatchRequest | None = None  # the entry that matched (None: the route has no entries)

    @property
    def no_route(self) -> bool:
        return self.route is None

    @property
    def matched_prefix(self) -> str | None:
        """What a prefix rewrite replaces (see :meth:`MatchRequest.uri_prefix`)."""
        return "/" if self.match is None else self.match.uri_prefix

    def choose(self, r: float) -> RouteDestination | None:
        """The weighted destination for a random number ``r`` in [0, 1); None for a redirect or
        direct response (or no route)."""
        if self.route is None or not self.route.destinations:
            return None
        dests = self.route.destinations
        point = r * self.route.total_weight
        acc = 0
        for d in dests:
            acc += d.weight
            if point < acc:
                return d
        return next(d for d in reversed(dests) if d.weight > 0)

    def fault(self, rand: Callable[[], float]) -> FaultDecision:
        if self.route is None or self.route.fault is None:
            return FaultDecision()
        return self.route.fault.decide(rand)

    def mirrors(self, rand: Callable[[], float]) -> list[Destination]:
        """The mirrors this request is copied to: one draw per mirror against its percentage."""
        if self.route is None:
            return []
        return [m.destination for m in self.route.mirrors if rand() * 100.0 < m.percent]


NO_ROUTE: Final = Selection(None)


def select(config: RouteConfig, request: Request) -> Selection:
    for route in config.routes:
        if not route.match:
            return Selection(route)
        for m in route.match:
            if m.matches(request):
                return Selection(route, m)
    return NO_ROUTE


# --- rewrites and redirects -----------------------------------------------------------------------


def apply_rewrite(path: str, route_match_prefix: str | None, rewrite: Rewrite) -> str:
    """The ``:path`` after a rewrite; the query is kept.

    ``uri``: "If the original URI was matched based on prefix, the value provided in this field will
    replace the corresponding matched prefix" (Envoy ``prefix_rewrite``); for an exact or regex
    match (``route_match_prefix`` None) the whole path is replaced. ``uriRegexRewrite``: every
    match of the regex in the path is substituted (Envoy ``regex_rewrite``, RE2 GlobalReplace;
    ``\\1`` refers to groups)."""
    if rewrite.uri_regex is None and rewrite.uri and route_match_prefix is not None:
        # the prefix was matched on the whole :path (maybe ignoring case): swap that many characters
        return rewrite.uri + path[len(route_match_prefix):]
    only, sep, query = path.partition("?")
    if rewrite.uri_regex is not None:
        only = rewrite.uri_regex.sub(rewrite.uri_regex_substitution, only)
    elif rewrite.uri:
        only = rewrite.uri
    return only + sep + query


def _split_authority(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):  # [v6]:port
        host, _, rest = authority.partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host + "]", int(port) if port.isdigit() else None
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return authority, None


def redirect_location(request: Request, redirect: Redirect) -> str:
    """The Location of a redirect, as Envoy builds it from istiod's RedirectAction:

    - scheme: ``scheme`` or the request's;
    - host: ``authority`` or the request's authority (without its port);
    - port: ``port`` if set; else the request's port, dropped when the scheme changed and it was
      the old scheme's default; a port that is the (new) scheme's default is left out;
    - path: ``uri`` replaces the whole path ("irrespective of the request URI being matched as an
      exact path or prefix"); the request's query is kept unless ``uri`` has its own (Envoy
      ``path_redirect`` without ``strip_query``)."""
    scheme = redirect.scheme or request.scheme
    req_host, req_port = _split_authority(request.authority)
    host = req_host
    port = req_port
    if redirect.authority:
        host, auth_port = _split_authority(redirect.authority)
        port = auth_port if auth_port is not None else req_port
    if redirect.port:
        port = redirect.port
    elif scheme != request.scheme and port == _DEFAULT_PORTS.get(request.scheme):
        port = None
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    path = request.path
    if redirect.uri:
        path = redirect.uri if "?" in redirect.uri or not request.query else f"{redirect.uri}?{request.query}"
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}{path}"


def routes_from(configs: Iterable[pb.RouteConfig]) -> dict[str, RouteConfig]:
    """Converted configs by host."""
    return {c.host: convert(c) for c in configs}
