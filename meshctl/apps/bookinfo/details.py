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
    product_request,
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
        product_id = product_request(request, "details", "Details is healthy")
        if isinstance(product_id, Response):
            return product_id
        return json_response(200, book_details(product_id))

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(NAME, "Bookinfo details service.")

    def build(args: argparse.Namespace) -> App:
        return make_app()

    return run(NAME, parser, build, argv)


if __name__ == "__main__":
    sys.exit(main())
