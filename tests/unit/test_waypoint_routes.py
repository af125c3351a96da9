"""The waypoint's routing core: VirtualService semantics on converted RouteConfigs."""

from __future__ import annotations

import random
from typing import Any

import pytest

from controlplane.api import mesh_pb2 as pb
from waypoint.routes import (
    DEFAULT_RETRY,
    NO_RETRY,
    Redirect,
    Request,
    Rewrite,
    RouteError,
    apply_rewrite,
    convert,
    parse_retry_on,
    redirect_location,
    select,
)

HOST = "reviews.default.svc.cluster.local"


def dest(host: str = HOST, subset: str = "", weight: int = 0, **kw: Any) -> pb.HTTPRouteDestination:
    return pb.HTTPRouteDestination(destination=pb.Destination(host=host, subset=subset), weight=weight, **kw)


def config(*routes: pb.HTTPRoute) -> pb.RouteConfig:
    return pb.RouteConfig(host=HOST, namespace="default", http=list(routes))


def req(path: str = "/", **kw: Any) -> Request:
    base: dict[str, Any] = {"method": "GET", "scheme": "http", "authority": "reviews:9080", "path": path}
    base.update(kw)
    return Request(**base)


def route(name: str, *matches: pb.HTTPMatchRequest, **kw: Any) -> pb.HTTPRoute:
    kw.setdefault("route", [dest(subset=name)])
    return pb.HTTPRoute(name=name, match=list(matches), **kw)


def selected(cfg: pb.RouteConfig, request: Request) -> str | None:
    sel = select(convert(cfg), request)
    return None if sel.route is None else sel.route.name


def M(**kw: Any) -> pb.HTTPMatchRequest:
    return pb.HTTPMatchRequest(**kw)


def S(**kw: str) -> pb.StringMatchRegex:
    return pb.StringMatchRegex(**kw)


# --- matching -------------------------------------------------------------------------------------

MATCH_CASES: list[tuple[str, pb.HTTPMatchRequest, Request, bool]] = [
    ("uri exact", M(uri=S(exact="/a")), req("/a"), True),
    ("uri exact ignores the query", M(uri=S(exact="/a")), req("/a?x=1"), True),
    ("uri exact is not a prefix", M(uri=S(exact="/a")), req("/ab"), False),
    ("uri prefix", M(uri=S(prefix="/api")), req("/api/v1"), True),
    ("uri prefix miss", M(uri=S(prefix="/api")), req("/ap"), False),
    ("uri regex is a full match", M(uri=S(regex="/a[0-9]")), req("/a1"), True),
    ("uri regex partial does not match", M(uri=S(regex="/a[0-9]")), req("/a12"), False),
    ("uri regex ignores the query", M(uri=S(regex="/a[0-9]")), req("/a1?z=2"), True),
    ("uri case-sensitive by default", M(uri=S(exact="/Login")), req("/login"), False),
    ("ignoreUriCase exact", M(uri=S(exact="/Login"), ignore_uri_case=True), req("/LOGIN"), True),
    ("ignoreUriCase prefix", M(uri=S(prefix="/API"), ignore_uri_case=True), req("/api/x"), True),
    ("ignoreUriCase does not apply to regex", M(uri=S(regex="/login"), ignore_uri_case=True), req("/LOGIN"), False),
    ("method exact", M(method=S(exact="POST")), req(method="POST"), True),
    ("method is case-sensitive", M(method=S(exact="POST")), req(method="post"), False),
    ("scheme", M(scheme=S(exact="https")), req(scheme="http"), False),
    ("authority prefix", M(authority=S(prefix="reviews")), req(), True),
    ("authority regex", M(authority=S(regex="ratings.*")), req(), False),
    ("header exact", M(headers={"end-user": S(exact="jason")}), req(headers={"End-User": "jason"}), True),
    ("header exact other value", M(headers={"end-user": S(exact="jason")}), req(headers={"end-user": "bob"}), False),
    ("header absent", M(headers={"end-user": S(exact="jason")}), req(), False),
    ("header presence ({} -> regex .*)", M(headers={"x": S(regex=".*")}), req(headers={"x": ""}), True),
    ("header presence, absent", M(headers={"x": S(regex=".*")}), req(), False),
    ("header presence (no value)", M(headers={"x": S()}), req(headers={"x": "1"}), True),
    ("header regex '*' is presence", M(headers={"x": S(regex="*")}), req(headers={"x": "v"}), True),
    ("header exact '' needs an empty value", M(headers={"x": S(exact="")}), req(headers={"x": "v"}), False),
    ("header exact '' matches empty", M(headers={"x": S(exact="")}), req(headers={"x": ""}), True),
    ("header prefix", M(headers={"ua": S(prefix="Mozilla")}), req(headers={"ua": "Mozilla/5"}), True),
    ("header regex full match", M(headers={"v": S(regex="v[12]")}), req(headers={"v": "v12"}), False),
    ("header names in config are case-insensitive", M(headers={"End-User": S(exact="a")}), req(headers={"end-user": "a"}), True),
    ("withoutHeaders: absent matches", M(without_headers={"x": S(exact="1")}), req(), True),
    ("withoutHeaders: other value matches", M(without_headers={"x": S(exact="1")}), req(headers={"x": "2"}), True),
    ("withoutHeaders: matching value excludes", M(without_headers={"x": S(exact="1")}), req(headers={"x": "1"}), False),
    ("withoutHeaders presence", M(without_headers={"x": S(regex=".*")}), req(headers={"x": "z"}), False),
    ("withoutHeaders presence, absent", M(without_headers={"x": S(regex=".*")}), req(), True),
    ("withoutHeaders exact '', absent", M(without_headers={"x": S(exact="")}), req(), True),
    ("query exact", M(query_params={"a": S(exact="b")}), req("/p?a=b&c=d"), True),
    ("query exact miss", M(query_params={"a": S(exact="b")}), req("/p?a=bb"), False),
    ("query without value is ''", M(query_params={"a": S(exact="")}), req("/p?a"), True),
    ("query absent", M(query_params={"a": S(regex=".*")}), req("/p"), False),
    ("query regex", M(query_params={"id": S(regex="[0-9]+")}), req("/p?id=42"), True),
    ("query decoded", M(query_params={"q": S(exact="a b")}), req("/p?q=a%20b"), True),
    ("port", M(port=9080), req(port=9080), True),
    ("port miss", M(port=9080), req(port=80), False),
    ("sourceLabels subset", M(source_labels={"app": "productpage"}), req(source_labels={"app": "productpage", "v": "1"}), True),
    ("sourceLabels miss", M(source_labels={"app": "productpage", "v": "2"}), req(source_labels={"app": "productpage", "v": "1"}), False),
    ("sourceNamespace", M(source_namespace="prod"), req(source_namespace="prod"), True),
    ("sourceNamespace miss", M(source_namespace="prod"), req(source_namespace="dev"), False),
    ("fields AND-ed", M(uri=S(prefix="/a"), method=S(exact="GET")), req("/a", method="PUT"), False),
    ("empty match entry matches all", M(), req("/anything"), True),
]


@pytest.mark.parametrize(("name", "match", "request_", "expected"), MATCH_CASES, ids=[c[0] for c in MATCH_CASES])
def test_match(name: str, match: pb.HTTPMatchRequest, request_: Request, expected: bool) -> None:
    cfg = config(route("r", match))
    assert (selected(cfg, request_) == "r") is expected


def test_first_match_wins_and_no_route() -> None:
    cfg = config(route("v2", M(uri=S(prefix="/v2"))), route("api", M(uri=S(prefix="/"))))
    assert selected(cfg, req("/v2/x")) == "v2"
    assert selected(cfg, req("/x")) == "api"
    cfg = config(route("api", M(uri=S(prefix="/"))), route("v2", M(uri=S(prefix="/v2"))))
    assert selected(cfg, req("/v2/x")) == "api"
    only = config(route("v2", M(uri=S(prefix="/v2"))))
    sel = select(convert(only), req("/v1"))
    assert sel.no_route and sel.route is None and sel.choose(0.5) is None


def test_match_entries_are_ored() -> None:
    cfg = config(route("r", M(uri=S(exact="/a")), M(headers={"x": S(exact="1")})), route("rest"))
    assert selected(cfg, req("/a")) == "r"
    assert selected(cfg, req("/b", headers={"x": "1"})) == "r"
    assert selected(cfg, req("/b")) == "rest"


# --- conversion errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "words"), [
    (route("broken", M(uri=S(regex="/(a"))), ["broken", "uri", "regex"]),
    (route("h", M(headers={"x": S(regex="[")})), ["http[0] (h)", "headers[x]"]),
    (pb.HTTPRoute(name="none"), ["none", "exactly one"]),
    (route("zero", route=[dest(subset="a"), dest(subset="b")]), ["zero", "weights"]),
    (route("rw", rewrite=pb.HTTPRewrite(uri_regex="(")), ["rw", "rewrite.uri_regex"]),
    (route("nohost", route=[pb.HTTPRouteDestination(destination=pb.Destination())]), ["nohost", "host"]),
])
def test_bad_routes_name_route_and_field(bad: pb.HTTPRoute, words: list[str]) -> None:
    with pytest.raises(RouteError) as e:
        convert(config(bad))
    for w in words:
        assert w in str(e.value)
    assert HOST in str(e.value)


# --- weights --------------------------------------------------------------------------------------


def test_single_destination_gets_everything() -> None:
    sel = select(convert(config(route("r"))), req())
    assert sel.route is not None and sel.route.destinations[0].weight == 100
    for r in (0.0, 0.5, 0.999):
        d = sel.choose(r)
        assert d is not None and d.destination.subset == "r"


def test_weighted_split_within_5_percent() -> None:
    cfg = config(route("r", route=[dest(subset="v1", weight=75), dest(subset="v2", weight=25)]))
    sel = select(convert(cfg), req())
    rng = random.Random(7)
    counts = {"v1": 0, "v2": 0}
    for _ in range(1000):
        d = sel.choose(rng.random())
        assert d is not None
        counts[d.destination.subset] += 1
    assert abs(counts["v1"] - 750) <= 50 and abs(counts["v2"] - 250) <= 50


@pytest.mark.parametrize(("r", "subset"), [(0.0, "a"), (0.099, "a"), (0.1, "c"), (0.999, "c")])
def test_zero_weight_gets_nothing(r: float, subset: str) -> None:
    cfg = config(route("r", route=[dest(subset="a", weight=10), dest(subset="b", weight=0), dest(subset="c", weight=90)]))
    d = select(convert(cfg), req()).choose(r)
    assert d is not None and d.destination.subset == subset


# --- headers --------------------------------------------------------------------------------------


def test_header_operations_merge_route_and_destination() -> None:
    d = dest(weight=100, headers=pb.Headers(
        request=pb.HeaderOperations(set={"x-a": "dest", "x-d": "1"}, add={"x-add": "d"}, remove=["x-gone"]),
        response=pb.HeaderOperations(remove=["server"])))
    r = route("r", route=[d], headers=pb.Headers(
        request=pb.HeaderOperations(set={"X-A": "route"}, add={"x-add": "r"}, remove=["x-old"]),
        response=pb.HeaderOperations(set={"x-resp": "1"})))
    chosen = select(convert(config(r)), req()).choose(0.1)
    assert chosen is not None
    out = chosen.request_headers.apply({"x-gone": "1", "x-old": "1", "x-add": "orig", "keep": "k"})
    assert out == {"x-a": "route", "x-d": "1", "x-add": "orig, d, r", "keep": "k"}
    assert chosen.response_headers.apply({"Server": "envoy"}) == {"x-resp": "1"}


# --- redirect, direct response, rewrite -----------------------------------------------------------

REDIRECTS = [
    ("uri only, query kept", req("/old?a=1"), Redirect(uri="/new"), "http://reviews:9080/new?a=1"),
    ("uri with its own query", req("/old?a=1"), Redirect(uri="/new?b=2"), "http://reviews:9080/new?b=2"),
    ("authority replaced, port kept", req("/p"), Redirect(authority="bookinfo.com"), "http://bookinfo.com:9080/p"),
    ("authority with port", req("/p"), Redirect(authority="b.com:8080"), "http://b.com:8080/p"),
    ("port replaced", req("/p"), Redirect(port=8443), "http://reviews:8443/p"),
    ("scheme https drops the old default port", req("/p", authority="a.com:80"), Redirect(scheme="https"), "https://a.com/p"),
    ("scheme https keeps a custom port", req("/p"), Redirect(scheme="https"), "https://reviews:9080/p"),
    ("default port of the scheme left out", req("/p"), Redirect(scheme="https", port=443), "https://reviews/p"),
    ("all", req("/x?q"), Redirect(uri="/y", authority="z.io", port=8080, scheme="https"), "https://z.io:8080/y?q"),
]


@pytest.mark.parametrize(("name", "request_", "redirect", "location"), REDIRECTS, ids=[c[0] for c in REDIRECTS])
def test_redirect_location(name: str, request_: Request, redirect: Redirect, location: str) -> None:
    assert redirect_location(request_, redirect) == location


def test_redirect_and_direct_response_routes() -> None:
    cfg = config(
        pb.HTTPRoute(name="moved", match=[M(uri=S(prefix="/old"))], redirect=pb.HTTPRedirect(uri="/new")),
        pb.HTTPRoute(name="teapot", direct_response=pb.HTTPDirectResponse(status=418, body="short")),
    )
    conv = convert(cfg)
    sel = select(conv, req("/old/x"))
    assert sel.route is not None and sel.route.redirect is not None
    assert sel.route.redirect.code == 301 and sel.choose(0.3) is None
    assert redirect_location(req("/old/x"), sel.route.redirect) == "http://reviews:9080/new"
    sel = select(conv, req("/x"))
    assert sel.route is not None and sel.route.direct_response is not None
    assert (sel.route.direct_response.status, sel.route.direct_response.body) == (418, "short")


REWRITES = [
    ("prefix replaced", "/api/v1/x?q=1", "/api", "/svc", "/svc/v1/x?q=1"),
    ("prefix to root", "/api/x", "/api/", "/", "/x"),
    ("no uri match: prefix /", "/x", "/", "/v2/", "/v2/x"),
    ("exact/regex: whole path", "/login?a=b", None, "/auth", "/auth?a=b"),
    ("ignoreUriCase prefix length", "/API/x", "/api", "/v1", "/v1/x"),
]


@pytest.mark.parametrize(("name", "path", "prefix", "uri", "out"), REWRITES, ids=[c[0] for c in REWRITES])
def test_apply_rewrite(name: str, path: str, prefix: str | None, uri: str, out: str) -> None:
    assert apply_rewrite(path, prefix, Rewrite(uri=uri)) == out


def test_regex_rewrite_substitutes_groups() -> None:
    cfg = config(route("r", M(uri=S(prefix="/service")),
                       rewrite=pb.HTTPRewrite(uri_regex="^/service/([^/]+)(/.*)$", uri_regex_substitution="\\2/instance/\\1")))
    sel = select(convert(cfg), req("/service/foo/v1/api?x=1"))
    assert sel.route is not None and sel.route.rewrite is not None
    assert apply_rewrite("/service/foo/v1/api?x=1", sel.matched_prefix, sel.route.rewrite) == "/v1/api/instance/foo?x=1"


def test_selection_carries_the_matched_prefix() -> None:
    cfg = config(route("r", M(uri=S(exact="/e")), M(uri=S(prefix="/p")), rewrite=pb.HTTPRewrite(uri="/n", authority="new")))
    conv = convert(cfg)
    assert select(conv, req("/e")).matched_prefix is None
    assert select(conv, req("/p/x")).matched_prefix == "/p"
    sel = select(conv, req("/p/x"))
    assert sel.route is not None and sel.route.rewrite is not None and sel.route.rewrite.authority == "new"
    assert apply_rewrite("/p/x", sel.matched_prefix, sel.route.rewrite) == "/n/x"


# --- timeout, retries -----------------------------------------------------------------------------


def test_timeout() -> None:
    conv = convert(config(route("a", timeout_seconds=0.5), route("b")))
    assert conv.routes[0].timeout == 0.5 and conv.routes[1].timeout is None


@pytest.mark.parametrize(("retries", "expected"), [
    (None, DEFAULT_RETRY),
    (pb.HTTPRetry(attempts=0, retry_on="5xx"), NO_RETRY),
    (pb.HTTPRetry(attempts=3), DEFAULT_RETRY.__class__(3, None, DEFAULT_RETRY.retry_on, DEFAULT_RETRY.retriable_status_codes)),
    (pb.HTTPRetry(attempts=4, per_try_timeout_seconds=2.0, retry_on="5xx, reset,503"),
     DEFAULT_RETRY.__class__(4, 2.0, frozenset({"5xx", "reset", "retriable-status-codes"}), frozenset({503}))),
])
def test_retries(retries: pb.HTTPRetry | None, expected: object) -> None:
    r = route("r") if retries is None else route("r", retries=retries)
    assert convert(config(r)).routes[0].retry == expected


def test_default_retry_is_istios() -> None:
    assert DEFAULT_RETRY.attempts == 2 and DEFAULT_RETRY.per_try_timeout is None
    assert DEFAULT_RETRY.retry_on == {"connect-failure", "refused-stream", "unavailable", "cancelled",
                                      "retriable-status-codes"}
    assert DEFAULT_RETRY.retriable_status_codes == {503}
    assert parse_retry_on("gateway-error,,connect-failure") == (frozenset({"gateway-error", "connect-failure"}), frozenset())


# --- fault and mirrors ----------------------------------------------------------------------------


def test_fault_percentages() -> None:
    fault = pb.HTTPFaultInjection(has_delay=True, delay_seconds=7, delay_percent=100,
                                  has_abort=True, abort_http_status=500, abort_percent=10)
    sel = select(convert(config(route("r", fault=fault))), req())
    draws = iter([0.99, 0.05])
    d = sel.fault(lambda: next(draws))
    assert (d.delay, d.abort) == (7, 500)
    draws = iter([0.5, 0.1])
    d = sel.fault(lambda: next(draws))
    assert (d.delay, d.abort) == (7, None)
    rng = random.Random(3)
    aborts = sum(sel.fault(rng.random).abort is not None for _ in range(1000))
    assert 50 <= aborts <= 150


def test_no_fault() -> None:
    sel = select(convert(config(route("r"))), req())
    assert sel.fault(lambda: 0.0).delay is None and sel.fault(lambda: 0.0).abort is None


def test_mirrors_percent() -> None:
    r = route("r", mirrors=[pb.Mirror(destination=pb.Destination(host="shadow"), percent=30),
                            pb.Mirror(destination=pb.Destination(host="all"), percent=100)])
    sel = select(convert(config(r)), req())
    assert [m.host for m in sel.mirrors(iter([0.2, 0.99]).__next__)] == ["shadow", "all"]
    assert [m.host for m in sel.mirrors(iter([0.3, 0.0]).__next__)] == ["all"]
    rng = random.Random(11)
    n = sum("shadow" in [m.host for m in sel.mirrors(rng.random)] for _ in range(1000))
    assert 250 <= n <= 350


def test_request_headers_are_case_insensitive_and_frozen() -> None:
    r = req(headers={"X-Thing": "1"})
    assert r.headers["x-thing"] == "1"
    with pytest.raises(TypeError):
        r.headers["y"] = "2"  # type: ignore[index]
