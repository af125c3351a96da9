"""The Bookinfo demo apps, run as real subprocesses on loopback ports.

Each app is started with ``python -m meshctl.apps.bookinfo.<app> --host 127.0.0.1 --port <free>``
and pointed at its peers through ``*_HOSTNAME``/``*_SERVICE_PORT``, as the lab does with
Kubernetes service names. Peers the test wants to observe or break are in-process stand-ins:
a recording server, a slow one, and one that accepts connections but never answers. Every
subprocess is terminated and reaped in fixture teardown; every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

DETAILS_UNAVAILABLE = "Sorry, product details are currently unavailable for this book."
REVIEWS_UNAVAILABLE = "Sorry, product reviews are currently unavailable for this book."
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"
FILLED_STAR = '<span class="glyphicon glyphicon-star"></span>'
EMPTY_STAR = '<span class="glyphicon glyphicon-star-empty"></span>'


def free_port() -> int:
    """A loopback port nobody listens on right now (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def call(
    port: int,
    path: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 20.0,
) -> Reply:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def wait_until(predicate: object, timeout: float = 3.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# --- the apps as subprocesses -------------------------------------------------------------


@dataclass
class AppProcess:
    app: str
    port: int
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


class Launcher:
    """Starts apps on free loopback ports and stops every one of them in :meth:`stop_all`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def popen(
        self, app: str, args: Sequence[str], env: Mapping[str, str] | None = None, tag: str = ""
    ) -> tuple[subprocess.Popen[bytes], Path, Path]:
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOSTNAME": f"{app}-test-pod",
            **(env or {}),
        }
        stem = f"{app}-{tag or len(self.procs)}"
        out_path, err_path = self.workdir / f"{stem}.out", self.workdir / f"{stem}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"meshctl.apps.bookinfo.{app}", *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=full_env,
            )
        self.procs.append(proc)
        return proc, out_path, err_path

    def start(self, app: str, *args: str, env: Mapping[str, str] | None = None) -> AppProcess:
        for _attempt in range(3):
            port = free_port()
            proc, out_path, err_path = self.popen(
                app, ["--host", LOOPBACK, "--port", str(port), *args], env, f"{port}"
            )
            running = AppProcess(app, port, proc, out_path, err_path)
            if self._wait_healthy(running):
                return running
            if "Address already in use" not in running.stderr():
                break  # not a lost race for the port: a real failure
        pytest.fail(f"{app} did not become healthy (exit {proc.poll()}):\n{running.stderr()}")

    @staticmethod
    def _wait_healthy(app: AppProcess) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if app.proc.poll() is not None:
                return False
            try:
                if call(app.port, "/health", timeout=1.0).status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


def peer_env(service: str, port: int) -> dict[str, str]:
    """Environment pointing an app at ``service`` on a loopback port."""
    prefix = service.upper()
    return {f"{prefix}_HOSTNAME": LOOPBACK, f"{prefix}_SERVICE_PORT": str(port)}


# --- in-process stand-ins for peers ---------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class StandIn:
    """A loopback HTTP server answering every request alike, after ``delay``; records requests."""

    status: int = 200
    payload: object = field(default_factory=dict)
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with stand_in._lock:
                    stand_in.requests.append(
                        Recorded(
                            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                        )
                    )
                if stand_in.delay:
                    stand_in._stop.wait(stand_in.delay)
                body = json.dumps(stand_in.payload).encode()
                try:
                    self.send_response(stand_in.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def recorded(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STOP_TIMEOUT_S)


class Silent:
    """Accepts TCP connections and never answers; counts them."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)

    @property
    def connections(self) -> int:
        return len(self._conns)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=STOP_TIMEOUT_S)
        for conn in self._conns:
            conn.close()
        self._sock.close()


class StandIns:
    def __init__(self) -> None:
        self._open: list[StandIn | Silent] = []

    def http(self, status: int = 200, payload: object | None = None, delay: float = 0.0) -> StandIn:
        stand_in = StandIn(status, {} if payload is None else payload, delay)
        self._open.append(stand_in)
        return stand_in

    def silent(self) -> Silent:
        silent = Silent()
        self._open.append(silent)
        return silent

    def close_all(self) -> None:
        for stand_in in self._open:
            stand_in.close()


@pytest.fixture
def stand_ins() -> Iterator[StandIns]:
    registry = StandIns()
    try:
        yield registry
    finally:
        registry.close_all()


REVIEWS_PAYLOAD = {
    "id": "0",
    "podname": "reviews-standin-pod",
    "clustername": "null",
    "reviews": [
        {"reviewer": "Reviewer1", "text": "Great.", "rating": {"stars": 5, "color": "black"}},
        {"reviewer": "Reviewer2", "text": "Fine.", "rating": {"stars": 4, "color": "black"}},
    ],
}
DETAILS_PAYLOAD = {
    "id": 0,
    "author": "William Shakespeare",
    "year": 1595,
    "type": "paperback",
    "pages": 200,
    "publisher": "PublisherA",
    "language": "English",
    "ISBN-10": "1234567890",
    "ISBN-13": "123-1234567890",
}


# --- details ------------------------------------------------------------------------------


def test_details_serves_the_book_and_rejects_bad_ids(apps: Launcher) -> None:
    details = apps.start("details")

    reply = call(details.port, "/details/0")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {
        "id": 0,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }
    assert call(details.port, "/details/42").json() == {**DETAILS_PAYLOAD, "id": 42}

    bad = call(details.port, "/details/abc")
    assert bad.status == 400
    error = bad.json()
    assert isinstance(error, dict) and "error" in error

    health = call(details.port, "/health")
    assert health.status == 200 and health.json() == {"status": "Details is healthy"}
    assert call(details.port, "/nope").status == 404
    assert call(details.port, "/details/0", method="POST", body=b"{}").status == 405

    # One access line per request, on stdout.
    assert wait_until(lambda: '"GET /details/42 HTTP/1.1" 200' in details.stdout())


# --- ratings ------------------------------------------------------------------------------


def test_ratings_defaults_posts_and_validation(apps: Launcher) -> None:
    ratings = apps.start("ratings")

    assert call(ratings.port, "/ratings/0").json() == {
        "id": 0,
        "ratings": {"Reviewer1": 5, "Reviewer2": 4},
    }
    assert call(ratings.port, "/health").json() == {"status": "Ratings is healthy"}

    posted = call(
        ratings.port,
        "/ratings/3",
        method="POST",
        body=b'{"Reviewer1": 1, "Reviewer2": 2}',
        headers={"Content-Type": "application/json"},
    )
    assert posted.status == 200
    assert posted.json() == {"id": 3, "ratings": {"Reviewer1": 1, "Reviewer2": 2}}
    assert call(ratings.port, "/ratings/3").json() == posted.json()
    assert call(ratings.port, "/ratings/0").json() == {
        "id": 0,
        "ratings": {"Reviewer1": 5, "Reviewer2": 4},
    }

    for body, fragment in [
        (b'{"Reviewer1": 6, "Reviewer2": 4}', "from 1 to 5"),
        (b'{"Reviewer1": 0}', "from 1 to 5"),
        (b'{"Reviewer1": "5"}', "from 1 to 5"),
        (b'{"Reviewer1": true}', "from 1 to 5"),
        (b'{"Reviewer1": 4.5}', "from 1 to 5"),
        (b"not json", "valid ratings JSON"),
        (b"[5, 4]", "JSON object"),
        (b"{}", "JSON object"),
    ]:
        reply = call(ratings.port, "/ratings/3", method="POST", body=body)
        assert reply.status == 400, body
        assert reply.headers["content-type"] == "application/json"
        error = reply.json()
        assert isinstance(error, dict) and fragment in error["error"], (body, error)
    # Rejected posts changed nothing.
    assert call(ratings.port, "/ratings/3").json() == posted.json()

    assert call(ratings.port, "/ratings/x").status == 400
    assert call(ratings.port, "/ratings/x", method="POST", body=b'{"Reviewer1": 5}').status == 400


# --- reviews ------------------------------------------------------------------------------


def test_reviews_v1_has_no_ratings_and_never_calls_ratings(
    apps: Launcher, stand_ins: StandIns
) -> None:
    ratings = stand_ins.http(payload={"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
    reviews = apps.start(
        "reviews",
        "--version",
        "v1",
        env={**peer_env("ratings", ratings.port), "HOSTNAME": "reviews-v1-x"},
    )

    body = call(reviews.port, "/reviews/0").json()
    assert isinstance(body, dict)
    assert body["id"] == "0"
    assert body["podname"] == "reviews-v1-x"
    assert body["clustername"] == "null"
    assert [r["reviewer"] for r in body["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert body["reviews"][0]["text"] == (
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"
    )
    assert body["reviews"][1]["text"] == (
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to "
        "other plays by Shakespeare."
    )
    assert all("rating" not in r for r in body["reviews"])
    assert ratings.recorded() == []
    assert call(reviews.port, "/health").json() == {"status": "Reviews is healthy"}
    assert call(reviews.port, "/reviews/abc").status == 400


@pytest.mark.parametrize(
    ("args", "env", "color"),
    [
        (["--version", "v2"], {}, "black"),
        (["--version", "v3"], {}, "red"),
        ([], {"ENABLE_RATINGS": "true", "STAR_COLOR": "red"}, "red"),  # as Istio's v3 image sets it
        (["--version", "v1"], {"ENABLE_RATINGS": "true"}, "black"),  # environment wins
    ],
)
def test_reviews_with_ratings_show_stars_from_ratings(
    apps: Launcher, args: list[str], env: dict[str, str], color: str
) -> None:
    ratings = apps.start("ratings")
    call(ratings.port, "/ratings/7", method="POST", body=b'{"Reviewer1": 3, "Reviewer2": 2}')
    reviews = apps.start("reviews", *args, env={**env, **peer_env("ratings", ratings.port)})

    body = call(reviews.port, "/reviews/7").json()
    assert isinstance(body, dict) and body["id"] == "7"
    assert [r["rating"] for r in body["reviews"]] == [
        {"stars": 3, "color": color},
        {"stars": 2, "color": color},
    ]


def test_reviews_v3_env_disabled_is_v1(apps: Launcher) -> None:
    reviews = apps.start("reviews", "--version", "v3", env={"ENABLE_RATINGS": "false"})
    body = call(reviews.port, "/reviews/0").json()
    assert isinstance(body, dict)
    assert all("rating" not in r for r in body["reviews"])


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_reviews_with_ratings_down_report_unavailable(apps: Launcher, version: str) -> None:
    reviews = apps.start(
        "reviews", "--version", version, env=peer_env("ratings", free_port())
    )  # nothing listens there

    reply = call(reviews.port, "/reviews/0")
    assert reply.status == 200
    body = reply.json()
    assert isinstance(body, dict)
    assert [r["rating"] for r in body["reviews"]] == [{"error": RATINGS_UNAVAILABLE}] * 2
    assert wait_until(lambda: "GET http://127.0.0.1:" in reviews.stderr())
    failure = next(line for line in reviews.stderr().splitlines() if "failed" in line)
    assert "/ratings/0 failed" in failure and "refused" in failure.lower()


def test_reviews_v3_gives_up_on_ratings_after_2_5_s(apps: Launcher, stand_ins: StandIns) -> None:
    silent = stand_ins.silent()
    reviews = apps.start("reviews", "--version", "v3", env=peer_env("ratings", silent.port))

    started = time.monotonic()
    body = call(reviews.port, "/reviews/0", timeout=15).json()
    elapsed = time.monotonic() - started
    assert isinstance(body, dict)
    assert [r["rating"] for r in body["reviews"]] == [{"error": RATINGS_UNAVAILABLE}] * 2
    assert 2.3 <= elapsed < 5.0, elapsed
    assert silent.connections == 1


def test_reviews_v2_waits_longer_than_v3_for_ratings(apps: Launcher, stand_ins: StandIns) -> None:
    # A ratings answer after 3.5 s: within v2's 10 s timeout, beyond v3's 2.5 s.
    slow = stand_ins.http(payload={"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}, delay=3.5)
    v2 = apps.start("reviews", "--version", "v2", env=peer_env("ratings", slow.port))

    started = time.monotonic()
    body = call(v2.port, "/reviews/0", timeout=15).json()
    elapsed = time.monotonic() - started
    assert isinstance(body, dict)
    assert [r["rating"] for r in body["reviews"]] == [
        {"stars": 5, "color": "black"},
        {"stars": 4, "color": "black"},
    ]
    assert 3.3 <= elapsed < 8.0, elapsed


def test_reviews_propagates_headers_to_ratings(apps: Launcher, stand_ins: StandIns) -> None:
    ratings = stand_ins.http(payload={"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
    reviews = apps.start("reviews", "--version", "v2", env=peer_env("ratings", ratings.port))
    sent = {
        "x-request-id": "rid-123",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=1",
        "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
        "x-b3-spanid": "e457b5a2e4d86bd1",
        "x-b3-sampled": "1",
        "x-datadog-trace-id": "12345",
        "end-user": "jason",
        "user-agent": "bookinfo-test/1.0",
    }
    call(reviews.port, "/reviews/0", headers={**sent, "x-not-propagated": "nope"})

    [seen] = ratings.recorded()
    assert seen.path == "/ratings/0"
    for name, value in sent.items():
        assert seen.headers.get(name) == value, name
    assert "x-not-propagated" not in seen.headers


# --- productpage --------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "color"), [("v1", None), ("v2", "black"), ("v3", "red")])
def test_productpage_over_the_real_apps(apps: Launcher, version: str, color: str | None) -> None:
    ratings = apps.start("ratings")
    details = apps.start("details")
    reviews = apps.start(
        "reviews",
        "--version",
        version,
        env={**peer_env("ratings", ratings.port), "HOSTNAME": f"reviews-{version}-6d7f8b9c-xk2lp"},
    )
    productpage = apps.start(
        "productpage",
        env={
            **peer_env("details", details.port),
            **peer_env("reviews", reviews.port),
            **peer_env("ratings", ratings.port),
        },
    )

    reply = call(productpage.port, "/productpage")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.text
    assert "<title>Simple Bookstore App</title>" in page
    assert "The Comedy of Errors" in page
    assert "PublisherA" in page and "1234567890" in page
    assert re.search(
        r"Reviews served by:.*?reviews-" + version + r"-6d7f8b9c-xk2lp", page, re.DOTALL
    )
    assert "An extremely entertaining play by Shakespeare." in page
    if color is None:
        assert "glyphicon" not in page and "<font" not in page
    else:
        assert page.count(f'<font color="{color}">') == 2
        assert page.count(FILLED_STAR) == 9  # 5 + 4
        assert page.count(EMPTY_STAR) == 1
        assert page.count("glyphicon-star") == 10  # what `grep -o glyphicon-star | wc -l` sees
    assert "Sorry" not in page

    assert call(productpage.port, "/api/v1/products/0").json() == DETAILS_PAYLOAD
    api_reviews = call(productpage.port, "/api/v1/products/0/reviews").json()
    assert isinstance(api_reviews, dict) and api_reviews["podname"].startswith("reviews-")
    assert call(productpage.port, "/api/v1/products/0/ratings").json() == {
        "id": 0,
        "ratings": {"Reviewer1": 5, "Reviewer2": 4},
    }


def test_productpage_routes(apps: Launcher) -> None:
    # Upstreams are irrelevant here; point them at a port nobody listens on.
    down = free_port()
    productpage = apps.start(
        "productpage",
        env={**peer_env("details", down), **peer_env("reviews", down), **peer_env("ratings", down)},
    )

    index = call(productpage.port, "/")
    assert index.status == 200 and 'href="/productpage' in index.text
    assert call(productpage.port, "/health").json() == {"status": "Product page is healthy"}
    products = call(productpage.port, "/api/v1/products").json()
    assert isinstance(products, list) and products[0]["id"] == 0
    assert products[0]["title"] == "The Comedy of Errors"
    assert call(productpage.port, "/metrics").status == 200
    assert call(productpage.port, "/no/such/page").status == 404
    assert call(productpage.port, "/login").status == 405
    assert (
        call(
            productpage.port,
            "/login",
            method="POST",
            body=b"username=",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ).status
        == 400
    )
    ratings = call(productpage.port, "/api/v1/products/0/ratings")
    assert ratings.status == 500
    assert ratings.json() == {
        "error": "Sorry, product ratings are currently unavailable for this book."
    }


def test_login_sends_end_user_upstream(apps: Launcher, stand_ins: StandIns) -> None:
    details = stand_ins.http(payload=DETAILS_PAYLOAD)
    reviews = stand_ins.http(payload=REVIEWS_PAYLOAD)
    productpage = apps.start(
        "productpage",
        env={**peer_env("details", details.port), **peer_env("reviews", reviews.port)},
    )

    # Anonymous: no end-user, and an end-user header from the client is not passed on
    # (Istio's productpage derives it from the session only).
    call(productpage.port, "/productpage", headers={"end-user": "mallory"})
    assert "end-user" not in reviews.recorded()[-1].headers
    assert "end-user" not in details.recorded()[-1].headers

    login = call(
        productpage.port,
        "/login",
        method="POST",
        body=b"username=jason&passwd=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert login.status == 302
    assert login.headers["location"] == "/productpage"
    cookie = login.headers["set-cookie"].split(";")[0]
    assert cookie == "session=jason"

    page = call(productpage.port, "/productpage", headers={"Cookie": cookie}).text
    assert "jason" in page
    assert reviews.recorded()[-1].headers.get("end-user") == "jason"
    assert details.recorded()[-1].headers.get("end-user") == "jason"
    assert "Reviews served by:" in page and "reviews-standin-pod" in page
    assert page.count('<font color="black">') == 2

    logout = call(productpage.port, "/logout", headers={"Cookie": cookie})
    assert logout.status == 302
    assert re.match(r"session=;.*Max-Age=0", logout.headers["set-cookie"])
    call(productpage.port, "/productpage")
    assert "end-user" not in reviews.recorded()[-1].headers


def test_productpage_propagates_trace_headers(apps: Launcher, stand_ins: StandIns) -> None:
    details = stand_ins.http(payload=DETAILS_PAYLOAD)
    reviews = stand_ins.http(payload=REVIEWS_PAYLOAD)
    productpage = apps.start(
        "productpage",
        env={**peer_env("details", details.port), **peer_env("reviews", reviews.port)},
    )
    sent = {
        "x-request-id": "9d3e7c2a-1111-2222-3333-444455556666",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "congo=t61rcWkgMzE",
        "b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
        "x-b3-spanid": "e457b5a2e4d86bd1",
        "x-b3-parentspanid": "05e3ac9a4f6e3b90",
        "x-b3-sampled": "1",
        "x-ot-span-context": "abc",
        "x-datadog-parent-id": "67890",
        "user-agent": "bookinfo-test/2.0",
    }
    call(productpage.port, "/productpage", headers={**sent, "x-private": "secret"})

    for peer in (details, reviews):
        [seen] = peer.recorded()
        for name, value in sent.items():
            assert seen.headers.get(name) == value, (name, seen.path)
        assert "x-private" not in seen.headers
    assert details.recorded()[0].path == "/details/0"
    assert reviews.recorded()[0].path == "/reviews/0"


def test_productpage_with_details_down(apps: Launcher, stand_ins: StandIns) -> None:
    reviews = stand_ins.http(payload=REVIEWS_PAYLOAD)
    down = free_port()
    productpage = apps.start(
        "productpage", env={**peer_env("details", down), **peer_env("reviews", reviews.port)}
    )

    reply = call(productpage.port, "/productpage")
    assert reply.status == 200
    assert DETAILS_UNAVAILABLE in reply.text
    assert "Reviews served by:" in reply.text  # the reviews half still renders
    api = call(productpage.port, "/api/v1/products/0")
    assert api.status == 500 and api.json() == {"error": DETAILS_UNAVAILABLE}
    # The operator gets one line naming what failed, where and why.
    assert wait_until(
        lambda: f"GET http://127.0.0.1:{down}/details/0 failed" in productpage.stderr()
    )
    assert "Traceback" not in productpage.stderr()


def test_productpage_retries_reviews_once(apps: Launcher, stand_ins: StandIns) -> None:
    details = stand_ins.http(payload=DETAILS_PAYLOAD)
    reviews = stand_ins.http(status=503, payload={"error": "fault filter abort"})
    productpage = apps.start(
        "productpage",
        env={**peer_env("details", details.port), **peer_env("reviews", reviews.port)},
    )

    page = call(productpage.port, "/productpage").text
    assert REVIEWS_UNAVAILABLE in page
    assert "Reviews served by:" not in page
    assert len(reviews.recorded()) == 2
    api = call(productpage.port, "/api/v1/products/0/reviews")
    assert api.status == 503 and api.json() == {"error": REVIEWS_UNAVAILABLE}


def test_productpage_waits_3_s_twice_for_reviews(apps: Launcher, stand_ins: StandIns) -> None:
    details = stand_ins.http(payload=DETAILS_PAYLOAD)
    silent = stand_ins.silent()
    productpage = apps.start(
        "productpage", env={**peer_env("details", details.port), **peer_env("reviews", silent.port)}
    )

    started = time.monotonic()
    page = call(productpage.port, "/productpage", timeout=20).text
    elapsed = time.monotonic() - started
    assert REVIEWS_UNAVAILABLE in page
    assert 5.7 <= elapsed < 10.0, elapsed
    assert silent.connections == 2


# --- process behaviour --------------------------------------------------------------------


@pytest.mark.parametrize("app", ["productpage", "details", "reviews", "ratings"])
def test_sigterm_exits_promptly(apps: Launcher, app: str) -> None:
    running = apps.start(app)
    started = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=STOP_TIMEOUT_S) == 0
    assert time.monotonic() - started < 2.0
    assert "Traceback" not in running.stderr()


@pytest.mark.parametrize("port", ["abc", "0", "70000", "-1"])
def test_bad_port_is_one_clear_line(apps: Launcher, port: str) -> None:
    proc, _, err_path = apps.popen("details", ["--port", port])
    assert proc.wait(timeout=STOP_TIMEOUT_S) == 2
    lines = err_path.read_text().strip().splitlines()
    assert len(lines) == 1, lines
    assert "invalid --port" in lines[0] and port in lines[0]


def test_port_in_use_is_one_clear_line(apps: Launcher) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc, _, err_path = apps.popen("ratings", ["--host", LOOPBACK, "--port", str(port)])
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 1
    lines = err_path.read_text().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]


def test_bad_upstream_port_env_is_one_clear_line(apps: Launcher) -> None:
    proc, _, err_path = apps.popen(
        "reviews",
        ["--version", "v2", "--port", str(free_port())],
        env={"RATINGS_SERVICE_PORT": "http"},
    )
    assert proc.wait(timeout=STOP_TIMEOUT_S) == 2
    lines = err_path.read_text().strip().splitlines()
    assert len(lines) == 1 and "RATINGS_SERVICE_PORT" in lines[0], lines
