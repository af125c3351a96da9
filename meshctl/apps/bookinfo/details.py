"""The Bookinfo ``details`` service: fixed facts about the book, by product id.

``GET /details/<id>`` answers the same paperback record for any integer id (the id is echoed);
a non-integer id is a 400 with a JSON error. ``GET /health`` says it is healthy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from meshctl.apps.bookinfo._http import (
    App,
    Request,
    Response,
    base_parser,
    json_response,
    method_not_allowed,
    not_found,
    parse_product_id,
    run,
)

NAME = "details"


def book_details(product_id: int) -> dict[str, object]:
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def make_app() -> App:
    def app(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(["GET"])
        if request.path == "/health":
            return json_response(200, {"status": "Details is healthy"})
        prefix, _, rest = request.path.lstrip("/").partition("/")
        if prefix != "details":
            return not_found(request.path)
        product_id = parse_product_id(rest.rstrip("/"))
        if product_id is None:
            return json_response(400, {"error": "please provide numeric product id"})
        return json_response(200, book_details(product_id))

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(NAME, "Bookinfo details service.")

    def build(args: argparse.Namespace) -> App:
        return make_app()

    return run(NAME, parser, build, argv)


if __name__ == "__main__":
    sys.exit(main())
