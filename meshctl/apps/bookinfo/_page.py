"""HTML for productpage: the index page and the product page, self-contained (no external assets).

Owns the markup only; data arrives already fetched. What Istio's tasks and scripts look for is
kept: the title "Simple Bookstore App", "Reviews served by:" followed by the reviews pod name,
and per rated review five star ``<span>``s (``glyphicon-star`` filled, ``glyphicon-star-empty``
for the rest) inside ``<font color="...">``. Every value from upstream is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

TITLE = "Simple Bookstore App"
MAX_STARS = 5

# The style sheet never names the star classes: scripts grep and count them in the page.
_STYLE = """
body { font-family: sans-serif; margin: 0; color: #222; }
nav { background: #1f2937; color: #fff; padding: 0.8em 1.5em; display: flex;
      justify-content: space-between; align-items: center; }
nav a, nav button { color: #fff; }
nav form { display: inline; }
main { max-width: 60em; margin: 0 auto; padding: 1em 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }
blockquote { border-left: 4px solid #ddd; margin: 1em 0; padding: 0.2em 1em; }
.error { color: #b91c1c; }
font > span { font-size: 1.3em; }
font > span::before { content: "\\2605"; }
font > span[class$="-empty"]::before { content: "\\2606"; }
"""


def _page(body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{TITLE}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def render_index(services: Mapping[str, str]) -> str:
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(url)}</td></tr>\n"
        for name, url in services.items()
    )
    return _page(
        "<main>\n<h3>Hello! This is a simple bookstore application made of four services.</h3>\n"
        f"<table>\n<tr><th>Service</th><th>Address</th></tr>\n{rows}</table>\n"
        "<h4>Open the product page as a normal user or as a tester:</h4>\n"
        '<p><a href="/productpage?u=normal">Normal user</a></p>\n'
        '<p><a href="/productpage?u=test">Test user</a></p>\n'
        '<p><a href="/productpage">/productpage</a></p>\n</main>\n'
    )


def _nav(user: str | None) -> str:
    if user:
        who = (
            f"<span>Signed in as <b>{escape(user)}</b> &middot; "
            '<a href="logout">Sign out</a></span>'
        )
    else:
        who = (
            '<form method="post" action="login" name="login_form">'
            '<input name="username" placeholder="Username" required> '
            '<input name="passwd" type="password" placeholder="Password"> '
            '<button type="submit">Sign in</button></form>'
        )
    return f"<nav>\n<b>BookInfo Sample</b>\n{who}\n</nav>\n"


def _details_section(status: int, details: Mapping[str, object]) -> str:
    if status != 200:
        return (
            '<section id="details">\n<h4 class="error">Error fetching product details</h4>\n'
            f"<p>{escape(str(details.get('error', '')))}</p>\n</section>\n"
        )
    fields = (
        ("Type", "type"),
        ("Pages", "pages"),
        ("Publisher", "publisher"),
        ("Language", "language"),
        ("ISBN-10", "ISBN-10"),
        ("ISBN-13", "ISBN-13"),
        ("Author", "author"),
        ("Year", "year"),
    )
    rows = "".join(
        f"<tr><th>{label}</th><td>{escape(str(details.get(key, '')))}</td></tr>\n"
        for label, key in fields
    )
    return f'<section id="details">\n<h4>Book Details</h4>\n<table>\n{rows}</table>\n</section>\n'


def _stars(rating: object) -> str:
    if not isinstance(rating, Mapping):
        return ""
    stars = rating.get("stars")
    if isinstance(stars, int) and not isinstance(stars, bool) and stars > 0:
        filled = min(stars, MAX_STARS)
        color = escape(str(rating.get("color", "black")))
        spans = ['<span class="glyphicon glyphicon-star"></span>\n'] * filled
        spans += ['<span class="glyphicon glyphicon-star-empty"></span>\n'] * (MAX_STARS - filled)
        return f'<font color="{color}">\n{"".join(spans)}</font>\n'
    error = rating.get("error")
    if error:
        return f'<p class="error"><i>{escape(str(error))}</i></p>\n'
    return ""


def _reviews_section(status: int, reviews: Mapping[str, object]) -> str:
    if status != 200:
        return (
            '<section id="reviews">\n<h4 class="error">Error fetching product reviews</h4>\n'
            f"<p>{escape(str(reviews.get('error', '')))}</p>\n</section>\n"
        )
    parts = ['<section id="reviews">\n<h4>Book Reviews</h4>\n']
    items = reviews.get("reviews")
    for review in items if isinstance(items, list) else []:
        if not isinstance(review, Mapping):
            continue
        parts.append(
            "<blockquote>\n"
            f"<p>{escape(str(review.get('text', '')))}</p>\n"
            f"<small>{escape(str(review.get('reviewer', '')))}</small>\n"
            f"{_stars(review.get('rating'))}"
            "</blockquote>\n"
        )
    served_by = f"<u>{escape(str(reviews.get('podname', '')))}</u>"
    cluster = reviews.get("clustername")
    if cluster not in (None, "", "null"):
        served_by += f" on cluster <u>{escape(str(cluster))}</u>"
    parts.append(f"<dl>\n<dt>Reviews served by:</dt>\n<dd>{served_by}</dd>\n</dl>\n</section>\n")
    return "".join(parts)


def render_productpage(
    product: Mapping[str, object],
    details_status: int,
    details: Mapping[str, object],
    reviews_status: int,
    reviews: Mapping[str, object],
    user: str | None,
) -> str:
    """The product page; ``product['descriptionHtml']`` is trusted markup, all else is escaped."""
    return _page(
        _nav(user)
        + "<main>\n"
        + f"<h1>{escape(str(product.get('title', '')))}</h1>\n"
        + f"<p>{product.get('descriptionHtml', '')}</p>\n"
        + _details_section(details_status, details)
        + _reviews_section(reviews_status, reviews)
        + "</main>\n"
    )
