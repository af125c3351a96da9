"""The Bookinfo ``productpage`` service: the web page and JSON API in front of the other three.

Routes: ``/`` (index), ``/productpage`` (HTML), ``/api/v1/products[/<id>[/reviews|/ratings]]``,
``POST /login`` (form field ``username``; sets the ``session`` cookie), ``GET /logout``,
``/health`` and ``/metrics``. Upstream calls keep Istio's timings, which its fault-injection task
relies on: details 3 s; reviews 3 s tried twice (6 s in all); ratings 3 s. A signed-in user is
sent upstream as ``end-user: <user>`` (the request-routing task's match); trace headers are
forwarded as listed in ``_upstream``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote

from meshctl.apps.bookinfo._http import (
    App,
    Request,
    Response,
    base_parser,
    html_response,
    json_response,
    method_not_allowed,
    not_found,
    redirect,
    run,
    text_response,
)
from meshctl.apps.bookinfo._page import render_index, render_productpage
from meshctl.apps.bookinfo._upstream import (
    PRODUCTPAGE_FORWARDS,
    Upstream,
    forward_headers,
    get_json,
    upstream_from_env,
)

NAME = "productpage"
log = logging.getLogger("bookinfo")
DETAILS_TIMEOUT_S = 3.0
REVIEWS_TIMEOUT_S = 3.0
REVIEWS_ATTEMPTS = 2  # Istio's productpage retries reviews once on purpose (fault-injection task)
RATINGS_TIMEOUT_S = 3.0

DETAILS_UNAVAILABLE = "Sorry, product details are currently unavailable for this book."
REVIEWS_UNAVAILABLE = "Sorry, product reviews are currently unavailable for this book."
RATINGS_UNAVAILABLE = "Sorry, product ratings are currently unavailable for this book."

SESSION_COOKIE = "session"
MAX_USER_LENGTH = 128

PRODUCTS: tuple[dict[str, object], ...] = (
    {
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": (
            '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>:'
            " an early comedy by <b>William Shakespeare</b> and the shortest of his plays. Two"
            " pairs of identical twins, parted as infants, turn one day in Ephesus into a chain"
            " of mistaken identities, slapstick and word play."
        ),
    },
)


@dataclass(frozen=True)
class ProductpageConfig:
    details: Upstream
    reviews: Upstream
    ratings: Upstream


def config_from_env(env: Mapping[str, str]) -> ProductpageConfig:
    return ProductpageConfig(
        details=upstream_from_env("details", env),
        reviews=upstream_from_env("reviews", env),
        ratings=upstream_from_env("ratings", env),
    )


def clean_user(raw: str) -> str | None:
    """A user name fit for a cookie and an ``end-user`` header, or None.

    1 to 128 printable ASCII characters after trimming surrounding spaces.
    """
    user = raw.strip()
    if not user or len(user) > MAX_USER_LENGTH:
        return None
    if any(not " " <= ch <= "~" for ch in user):
        return None
    return user


def session_user(cookie_header: str | None) -> str | None:
    """The user in the ``session`` cookie, or None when absent or not acceptable."""
    for part in (cookie_header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == SESSION_COOKIE:
            return clean_user(unquote(value.strip().strip('"')))
    return None


def _form_values(request: Request) -> Mapping[str, list[str]]:
    values = dict(request.query)
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    if request.body and content_type in ("", "application/x-www-form-urlencoded"):
        values.update(parse_qs(request.body.decode("utf-8", "replace")))
    return values


class _Metrics:
    """Request and upstream-failure counters for ``/metrics`` (Prometheus text format)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._failures: dict[str, int] = {}

    def request(self, route: str) -> None:
        with self._lock:
            self._requests[route] = self._requests.get(route, 0) + 1

    def failure(self, service: str) -> None:
        with self._lock:
            self._failures[service] = self._failures.get(service, 0) + 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP productpage_requests_total Requests served, by route.",
                "# TYPE productpage_requests_total counter",
            ]
            lines += [
                f'productpage_requests_total{{route="{route}"}} {count}'
                for route, count in sorted(self._requests.items())
            ]
            lines += [
                "# HELP productpage_upstream_failures_total Failed calls, by service.",
                "# TYPE productpage_upstream_failures_total counter",
            ]
            lines += [
                f'productpage_upstream_failures_total{{service="{service}"}} {count}'
                for service, count in sorted(self._failures.items())
            ]
        return "\n".join(lines) + "\n"


def make_app(config: ProductpageConfig) -> App:
    metrics = _Metrics()

    def outgoing_headers(request: Request) -> dict[str, str]:
        headers = forward_headers(request.headers, PRODUCTPAGE_FORWARDS)
        user = session_user(request.header("cookie"))
        if user:
            headers["end-user"] = user
        return headers

    def fetch(
        upstream: Upstream,
        path: str,
        headers: Mapping[str, str],
        timeout: float,
        attempts: int,
        unavailable: str,
    ) -> tuple[int, dict[str, object]]:
        status: int | None = None
        for _ in range(attempts):
            result = get_json(NAME, upstream, path, headers, timeout)
            if result.ok and isinstance(result.payload, dict):
                return 200, result.payload
            status = result.status
            metrics.failure(upstream.service)
        return (status if status and status != 200 else 500), {"error": unavailable}

    def details(product_id: str, headers: Mapping[str, str]) -> tuple[int, dict[str, object]]:
        return fetch(
            config.details,
            f"/details/{quote(product_id, safe='')}",
            headers,
            DETAILS_TIMEOUT_S,
            1,
            DETAILS_UNAVAILABLE,
        )

    def reviews(product_id: str, headers: Mapping[str, str]) -> tuple[int, dict[str, object]]:
        return fetch(
            config.reviews,
            f"/reviews/{quote(product_id, safe='')}",
            headers,
            REVIEWS_TIMEOUT_S,
            REVIEWS_ATTEMPTS,
            REVIEWS_UNAVAILABLE,
        )

    def ratings(product_id: str, headers: Mapping[str, str]) -> tuple[int, dict[str, object]]:
        return fetch(
            config.ratings,
            f"/ratings/{quote(product_id, safe='')}",
            headers,
            RATINGS_TIMEOUT_S,
            1,
            RATINGS_UNAVAILABLE,
        )

    def product_page(request: Request) -> Response:
        headers = outgoing_headers(request)
        details_status, details_body = details("0", headers)
        reviews_status, reviews_body = reviews("0", headers)
        return html_response(
            200,
            render_productpage(
                PRODUCTS[0],
                details_status,
                details_body,
                reviews_status,
                reviews_body,
                session_user(request.header("cookie")),
            ),
        )

    def login(request: Request) -> Response:
        raw = _form_values(request).get("username", [""])[0]
        user = clean_user(raw)
        if user is None:
            return html_response(
                400,
                "<!DOCTYPE html><title>Sign in failed</title><p>Sign in "
                "needs a username of 1 to 128 printable ASCII characters."
                ' <a href="/productpage">Back</a></p>\n',
            )
        cookie = f"{SESSION_COOKIE}={quote(user, safe='')}; Path=/; HttpOnly; SameSite=Lax"
        return redirect("/productpage", [("Set-Cookie", cookie)])

    def logout(request: Request) -> Response:
        cookie = (
            f"{SESSION_COOKIE}=; Path=/; Max-Age=0; "
            "Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax"
        )
        return redirect("/productpage", [("Set-Cookie", cookie)])

    def api(request: Request, parts: list[str]) -> Response:
        # parts: ["api", "v1", "products", ...]
        if len(parts) == 3:
            return json_response(200, list(PRODUCTS))
        headers = outgoing_headers(request)
        product_id = unquote(parts[3])
        if len(parts) == 4:
            status, body = details(product_id, headers)
        elif len(parts) == 5 and parts[4] == "reviews":
            status, body = reviews(product_id, headers)
        elif len(parts) == 5 and parts[4] == "ratings":
            status, body = ratings(product_id, headers)
        else:
            return not_found(request.path)
        return json_response(status, body)

    def route(request: Request) -> tuple[str, Response]:
        path = request.path
        parts = [p for p in path.split("/") if p]
        is_api = parts[:3] == ["api", "v1", "products"]
        if path == "/login":
            if request.method != "POST":
                return "/login", method_not_allowed(["POST"])
            return "/login", login(request)
        if request.method not in ("GET", "HEAD"):
            return "other", method_not_allowed(["GET"])
        if path in ("/", "/index.html"):
            return "/", html_response(
                200,
                render_index(
                    {
                        upstream.service: upstream.url("")
                        for upstream in (config.details, config.reviews, config.ratings)
                    }
                ),
            )
        if path == "/productpage":
            return "/productpage", product_page(request)
        if path == "/logout":
            return "/logout", logout(request)
        if path == "/health":
            return "/health", json_response(200, {"status": "Product page is healthy"})
        if path == "/metrics":
            return "/metrics", text_response(
                200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
            )
        if is_api and len(parts) <= 5:
            return "/api/v1/products", api(request, parts)
        return "other", not_found(path)

    def app(request: Request) -> Response:
        name, response = route(request)
        metrics.request(name)
        return response

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(NAME, "Bookinfo product page (HTML front end and JSON API).")

    def build(args: argparse.Namespace) -> App:
        config = config_from_env(os.environ)
        log.info(
            "%s: details at %s, reviews at %s, ratings at %s",
            NAME,
            config.details.url(""),
            config.reviews.url(""),
            config.ratings.url(""),
        )
        return make_app(config)

    return run(NAME, parser, build, argv)


if __name__ == "__main__":
    sys.exit(main())
