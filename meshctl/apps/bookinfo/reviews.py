"""The Bookinfo ``reviews`` service: two reviews of the book, with star ratings from v2 on.

Versions follow Istio's reviews images, chosen by the environment those images bake in --
``ENABLE_RATINGS`` ("true"/"false") and ``STAR_COLOR`` ("black"/"red") -- or, when those are
absent, by ``--version``: v1 has no ratings, v2 black stars, v3 red stars. With ratings on, each
``GET /reviews/<id>`` calls ``ratings`` (``$RATINGS_HOSTNAME[.$SERVICES_DOMAIN]:$RATINGS_SERVICE_PORT``)
with a 10 s timeout for black stars and 2.5 s otherwise, as Istio's does; when that fails every
review carries ``{"error": "Ratings service is currently unavailable"}`` instead of stars.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshctl.apps.bookinfo._http import (
    App,
    Request,
    Response,
    base_parser,
    json_response,
    product_request,
    run,
)
from meshctl.apps.bookinfo._upstream import (
    REVIEWS_FORWARDS,
    Upstream,
    forward_headers,
    get_json,
    upstream_from_env,
)

NAME = "reviews"
log = logging.getLogger("bookinfo")
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"
BLACK_TIMEOUT_S = 10.0
OTHER_TIMEOUT_S = 2.5

REVIEWS: tuple[tuple[str, str], ...] = (
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other "
        "plays by Shakespeare.",
    ),
)

# --version -> (ENABLE_RATINGS, STAR_COLOR), as baked into Istio's reviews-v1/v2/v3 images.
VERSIONS: dict[str, tuple[bool, str]] = {
    "v1": (False, "black"),
    "v2": (True, "black"),
    "v3": (True, "red"),
}


@dataclass(frozen=True)
class ReviewsConfig:
    ratings_enabled: bool
    star_color: str
    ratings: Upstream
    podname: str
    clustername: str

    @property
    def ratings_timeout_s(self) -> float:
        return BLACK_TIMEOUT_S if self.star_color == "black" else OTHER_TIMEOUT_S


def config_from_env(env: Mapping[str, str], version: str | None = None) -> ReviewsConfig:
    """Environment first (as Istio's images set it), then ``version``'s defaults, then v1."""
    default_enabled, default_color = VERSIONS[version or "v1"]
    enabled_text = env.get("ENABLE_RATINGS")
    enabled = default_enabled if enabled_text is None else enabled_text.strip().lower() == "true"
    return ReviewsConfig(
        ratings_enabled=enabled,
        star_color=env.get("STAR_COLOR") or default_color,
        ratings=upstream_from_env("ratings", env),
        podname=env.get("HOSTNAME") or socket.gethostname(),
        clustername=env.get("CLUSTER_NAME") or "null",
    )


def _stars_by_reviewer(payload: object) -> dict[str, int]:
    if not isinstance(payload, dict):
        return {}
    ratings = payload.get("ratings")
    if not isinstance(ratings, dict):
        return {}
    return {
        name: stars
        for name, stars in ratings.items()
        if isinstance(stars, int) and not isinstance(stars, bool)
    }


def make_app(config: ReviewsConfig) -> App:
    def reviews_for(product_id: int, request: Request) -> dict[str, object]:
        stars: dict[str, int] = {}
        if config.ratings_enabled:
            result = get_json(
                NAME,
                config.ratings,
                f"/ratings/{product_id}",
                forward_headers(request.headers, REVIEWS_FORWARDS),
                config.ratings_timeout_s,
            )
            if result.ok:
                stars = _stars_by_reviewer(result.payload)
        reviews: list[dict[str, object]] = []
        for reviewer, text in REVIEWS:
            review: dict[str, object] = {"reviewer": reviewer, "text": text}
            if config.ratings_enabled:
                if reviewer in stars:
                    review["rating"] = {"stars": stars[reviewer], "color": config.star_color}
                else:
                    review["rating"] = {"error": RATINGS_UNAVAILABLE}
            reviews.append(review)
        return {
            "id": str(product_id),
            "podname": config.podname,
            "clustername": config.clustername,
            "reviews": reviews,
        }

    def app(request: Request) -> Response:
        product_id = product_request(request, "reviews", "Reviews is healthy")
        if isinstance(product_id, Response):
            return product_id
        return json_response(200, reviews_for(product_id, request))

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(
        NAME, "Bookinfo reviews service (v1: no ratings, v2: black stars, v3: red stars)."
    )
    parser.add_argument(
        "--version",
        choices=sorted(VERSIONS),
        default=None,
        help="defaults for ENABLE_RATINGS/STAR_COLOR when those are not set (default v1)",
    )

    def build(args: argparse.Namespace) -> App:
        config = config_from_env(os.environ, args.version)
        if config.ratings_enabled:
            log.info(
                "%s: ratings enabled, %s stars, from %s (timeout %g s)",
                NAME,
                config.star_color,
                config.ratings.url("/ratings"),
                config.ratings_timeout_s,
            )
        else:
            log.info("%s: ratings disabled (v1)", NAME)
        return make_app(config)

    return run(NAME, parser, build, argv)


if __name__ == "__main__":
    sys.exit(main())
