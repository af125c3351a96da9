"""The Bookinfo ``ratings`` service: each reviewer's stars for a product, kept in memory.

``GET /ratings/<id>`` answers ``{"id": <id>, "ratings": {...}}`` -- 5 and 4 stars from
Reviewer1 and Reviewer2 unless ratings were posted for that id. ``POST /ratings/<id>`` with a
JSON object of reviewer -> integer stars (1..5) replaces that id's ratings and answers them.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence

from meshctl.apps.bookinfo._http import (
    App,
    Request,
    Response,
    base_parser,
    json_response,
    printable,
    product_request,
    run,
)

NAME = "ratings"
DEFAULT_RATINGS: dict[str, int] = {"Reviewer1": 5, "Reviewer2": 4}
MAX_REVIEWERS = 100
MAX_REVIEWER_NAME = 100
MAX_STORED_PRODUCTS = 10_000


class RatingsStore:
    """Posted ratings by product id; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_product: dict[int, dict[str, int]] = {}

    def get(self, product_id: int) -> dict[str, int]:
        with self._lock:
            return dict(self._by_product.get(product_id, DEFAULT_RATINGS))

    def put(self, product_id: int, ratings: dict[str, int]) -> dict[str, int] | None:
        """Store ``ratings``; None when the store is full (it is a demo, not a database)."""
        with self._lock:
            if product_id not in self._by_product and len(self._by_product) >= MAX_STORED_PRODUCTS:
                return None
            self._by_product[product_id] = dict(ratings)
            return dict(ratings)


def validate_ratings(body: bytes) -> dict[str, int] | str:
    """The ratings in a POST body, or the reason they are not acceptable."""
    try:
        data = json.loads(body)
    except ValueError:
        return "please provide valid ratings JSON"
    if not isinstance(data, dict) or not data:
        return 'ratings must be a non-empty JSON object such as {"Reviewer1": 5, "Reviewer2": 4}'
    if len(data) > MAX_REVIEWERS:
        return f"at most {MAX_REVIEWERS} reviewers per product"
    ratings: dict[str, int] = {}
    for reviewer, stars in data.items():
        if not reviewer or len(reviewer) > MAX_REVIEWER_NAME:
            return f"reviewer names must be 1 to {MAX_REVIEWER_NAME} characters"
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            return (
                f"rating for {printable(reviewer)!r} must be an integer from 1 to 5, "
                f"got {printable(json.dumps(stars), 40)}"
            )
        ratings[reviewer] = stars
    return ratings


def make_app(store: RatingsStore | None = None) -> App:
    ratings_store = store if store is not None else RatingsStore()

    def app(request: Request) -> Response:
        product_id = product_request(request, "ratings", "Ratings is healthy", ("GET", "POST"))
        if isinstance(product_id, Response):
            return product_id
        if request.method == "POST":
            ratings = validate_ratings(request.body)
            if isinstance(ratings, str):
                return json_response(400, {"error": ratings})
            stored = ratings_store.put(product_id, ratings)
            if stored is None:
                return json_response(507, {"error": "too many products with posted ratings"})
            return json_response(200, {"id": product_id, "ratings": stored})
        return json_response(200, {"id": product_id, "ratings": ratings_store.get(product_id)})

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(NAME, "Bookinfo ratings service (ratings kept in memory).")

    def build(args: argparse.Namespace) -> App:
        return make_app()

    return run(NAME, parser, build, argv)


if __name__ == "__main__":
    sys.exit(main())
