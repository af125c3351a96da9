"""A namespace waypoint in the lab: Bookinfo with Istio's own networking samples applied
unchanged, through a waypoint the control plane deploys from a ``Gateway`` of class
``istio-waypoint``. Needs root; fails (never skips) without it."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.lab.conftest import (
    FIXTURES,
    Lab,
    host_network_snapshot,
    lab_down_and_check_clean,
    lab_up,
    mounts,
    require_lab_machine,
)

pytestmark = pytest.mark.lab

NET = FIXTURES / "istio" / "networking"
LAB = "mlwp"

ENROLL = textwrap.dedent("""\
    apiVersion: v1
    kind: Namespace
    metadata:
      name: default
      labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata:
      name: waypoint
      namespace: default
      labels: {istio.io/waypoint-for: service}
    spec:
      gatewayClassName: istio-waypoint
      listeners:
      - name: mesh
        port: 15008
        protocol: HBONE
    """)

# Runs inside a pod: N keep-alive GETs, counting "<status> <first group of PATTERN in the body>".
CLIENT_PY = textwrap.dedent("""\
    import collections, http.client, json, re, sys
    host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    headers, pattern = json.loads(sys.argv[5]), re.compile(sys.argv[6])
    method = sys.argv[7] if len(sys.argv) > 7 else "GET"
    counts, conn = collections.Counter(), None
    for _ in range(n):
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            body = r.read().decode(errors="replace")
        except Exception as exc:
            counts["error " + type(exc).__name__] += 1
            conn.close(); conn = None
            continue
        m = pattern.search(body)
        counts[f"{r.status} {m.group(1) if m else '-'}"] += 1
        if (r.getheader("connection") or "").lower() == "close":
            conn.close(); conn = None
    print(json.dumps(counts))
    """)

# A service whose pods answer 200 "<pod name>", or 503 after POST /fail (until POST /recover).
FLAKY_PY = textwrap.dedent("""\
    import http.server, os
    state = {"fail": False}
    name = os.environ.get("POD_NAME", "?").encode()
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a): pass
        def answer(self, code, body):
            self.send_response(code); self.send_header("content-length", str(len(body)))
            self.end_headers(); self.wfile.write(body)
        def do_GET(self):
            self.answer(503 if state["fail"] else 200, name)
        def do_POST(self):
            n = int(self.headers.get("content-length") or 0); self.rfile.read(n)
            state["fail"] = self.path == "/fail"
            self.answer(200, b"failing" if state["fail"] else b"ok")
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
    """)


def flaky_manifest() -> str:
    script = json.dumps(FLAKY_PY)
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: flaky, labels: {{app: flaky}}}}
        spec:
          selector: {{app: flaky}}
          ports: [{{name: http, port: 8080}}]
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: flaky}}
        spec:
          replicas: 2
          selector: {{matchLabels: {{app: flaky}}}}
          template:
            metadata: {{labels: {{app: flaky}}}}
            spec:
              containers:
              - name: flaky
                image: python
                command: ["{sys.executable}", "-c", {script}]
                env:
                - name: POD_NAME
                  valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
                ports: [{{containerPort: 8080}}]
                readinessProbe: {{tcpSocket: {{port: 8080}}}}
        """)


@pytest.fixture(scope="module")
def wlab() -> Iterator[Lab]:
    require_lab_machine()
    before_net, before_mounts = host_network_snapshot(), mounts()
    Lab(LAB).run("down", check=False)
    try:
        lab = lab_up(LAB, "-f", str(FIXTURES / "istio" / "bookinfo.yaml"), "-f", str(FIXTURES / "istio" / "curl.yaml"),
                     "--restart-backoff", "0.5")
        lab.run("apply", "-f", "-", input=ENROLL)
        lab.run("apply", "-f", "-", "--wait", input=flaky_manifest())
        lab.wait_for("the waypoint pod to be ready", lambda: [
            p for p in lab.pods("waypoint-") if p["ready"] == "1/1"], timeout=90)
        lab.run("apply", "-f", str(NET / "destination-rule-all.yaml"))
        yield lab
    finally:
        lab_down_and_check_clean(Lab(LAB), before_net, before_mounts)


def client(lab: Lab, url_host: str, port: int, path: str, n: int, pattern: str, headers: dict[str, str] | None = None,
           method: str = "GET", pod: str = "curl", timeout: float = 300) -> Counter[str]:
    out = lab.exec(pod, sys.executable, "-c", CLIENT_PY, url_host, str(port), path, str(n), json.dumps(headers or {}),
                   pattern, method, timeout=timeout).stdout
    return Counter(json.loads(out.strip().splitlines()[-1]))


def use(lab: Lab, *files: str) -> None:
    """Replace the VirtualServices with Istio's sample files (applied unchanged)."""
    for vs in ("reviews", "ratings", "productpage", "details"):
        delete_vs(lab, vs)
    for f in files:
        lab.run("apply", "-f", str(NET / f))
    time.sleep(1.0)  # the push reaches the waypoint


def delete_vs(lab: Lab, name: str) -> None:
    doc = f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n"
    lab.run("delete", "-f", "-", input=doc, check=False)


REVIEWS = r'"podname":\s*"(reviews-v\d)'


def test_waypoint_is_deployed_and_serves_the_namespace(wlab: Lab) -> None:
    status = wlab.status()
    svc = {s["name"]: s for s in status["services"]}
    assert "waypoint" in svc and svc["waypoint"]["cluster_ip"], svc.keys()
    assert any(p.startswith("15008/") for p in svc["waypoint"]["ports"])
    counts = client(wlab, "reviews", 9080, "/reviews/0", 30, REVIEWS)
    assert sum(v for k, v in counts.items() if k.startswith("200 reviews-v")) == 30, counts
    metrics = wlab.run("exec", wlab.pods("waypoint-")[0]["name"], "--", "curl", "-s", "-m", "5",
                       "http://127.0.0.1:15020/metrics").stdout
    assert re.search(r'istio_requests_total\{[^}]*destination_service="reviews\.default\.svc\.cluster\.local"'
                     r'[^}]*reporter="waypoint"', metrics) or re.search(
        r'istio_requests_total\{[^}]*reporter="waypoint"[^}]*destination_service="reviews', metrics), metrics[:3000]


def test_all_v1_sends_every_request_to_v1(wlab: Lab) -> None:
    use(wlab, "virtual-service-all-v1.yaml")
    counts = client(wlab, "reviews", 9080, "/reviews/0", 100, REVIEWS)
    assert counts == Counter({"200 reviews-v1": 100}), counts


def test_reviews_50_v3_splits_within_5_percent(wlab: Lab) -> None:
    use(wlab, "virtual-service-reviews-50-v3.yaml")
    counts = client(wlab, "reviews", 9080, "/reviews/0", 1000, REVIEWS)
    assert counts["200 reviews-v1"] + counts["200 reviews-v3"] == 1000, counts
    assert abs(counts["200 reviews-v3"] - 500) <= 50, counts


def test_jason_header_goes_to_v2(wlab: Lab) -> None:
    use(wlab, "virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml")
    jason = client(wlab, "reviews", 9080, "/reviews/0", 50, REVIEWS, {"end-user": "jason"})
    others = client(wlab, "reviews", 9080, "/reviews/0", 50, REVIEWS, {"end-user": "someone"})
    assert jason == Counter({"200 reviews-v2": 50}), jason
    assert others == Counter({"200 reviews-v1": 50}), others


def _page_as(lab: Lab, user: str) -> tuple[str, float]:
    script = textwrap.dedent("""\
        import http.client, sys, time, urllib.parse
        c = http.client.HTTPConnection("productpage", 9080, timeout=60)
        c.request("POST", "/login", body=urllib.parse.urlencode({"username": sys.argv[1], "passwd": "x"}),
                  headers={"content-type": "application/x-www-form-urlencoded"})
        r = c.getresponse(); r.read()
        cookie = (r.getheader("set-cookie") or "").split(";")[0]
        t = time.monotonic()
        c.request("GET", "/productpage", headers={"cookie": cookie})
        body = c.getresponse().read().decode()
        print(round(time.monotonic() - t, 2)); print(body)
        """)
    out = lab.exec("curl", sys.executable, "-c", script, user, timeout=120).stdout
    first, _, body = out.partition("\n")
    return body, float(first)


def test_ratings_test_delay_behaves_as_istio_documents(wlab: Lab) -> None:
    use(wlab, "virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml",
        "virtual-service-ratings-test-delay.yaml")
    body, took = _page_as(wlab, "jason")
    # Istio: productpage's 3 s timeout to reviews, tried twice, gives up after about 6 s
    assert "Sorry, product reviews are currently unavailable for this book." in body, body[:2000]
    assert 5.5 <= took <= 9.0, took
    body, took = _page_as(wlab, "someone")
    assert "Sorry, product reviews are currently unavailable" not in body and took < 3.0, (took, body[:1000])


def test_ratings_test_abort_behaves_as_istio_documents(wlab: Lab) -> None:
    use(wlab, "virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml",
        "virtual-service-ratings-test-abort.yaml")
    body, _ = _page_as(wlab, "jason")
    assert "Ratings service is currently unavailable" in body, body[:2000]
    body, _ = _page_as(wlab, "someone")
    assert "Ratings service is currently unavailable" not in body


def _flaky_pods(lab: Lab) -> list[dict[str, str]]:
    pods = lab.pods("flaky-")
    assert len(pods) == 2, pods
    return pods


def _set_failing(lab: Lab, pod: dict[str, str], failing: bool) -> None:
    out = lab.exec("curl", "curl", "-s", "-m", "5", "-X", "POST", f"http://{pod['ip']}:8080/{'fail' if failing else 'recover'}").stdout
    assert out == ("failing" if failing else "ok"), out


def test_a_retry_policy_hides_503s(wlab: Lab) -> None:
    bad, _good = _flaky_pods(wlab)
    _set_failing(wlab, bad, True)
    try:
        no_retry = textwrap.dedent("""\
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: flaky}
            spec:
              hosts: [flaky]
              http:
              - route: [{destination: {host: flaky}}]
                retries: {attempts: 0}
            """)
        wlab.run("apply", "-f", "-", input=no_retry)
        time.sleep(1.0)
        counts = client(wlab, "flaky", 8080, "/", 100, r"(flaky)")
        assert counts["503 flaky"] >= 20, counts  # about half the requests meet the failing pod
        wlab.run("apply", "-f", "-", input=no_retry.replace("attempts: 0", "attempts: 3, retryOn: 5xx"))
        time.sleep(1.0)
        counts = client(wlab, "flaky", 8080, "/", 100, r"(flaky)")
        assert counts == Counter({"200 flaky": 100}), counts
    finally:
        _set_failing(wlab, bad, False)
        delete_vs(wlab, "flaky")


def test_outlier_detection_ejects_a_failing_pod_and_brings_it_back(wlab: Lab) -> None:
    bad, good = _flaky_pods(wlab)
    rules = textwrap.dedent("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: flaky}
        spec:
          hosts: [flaky]
          http:
          - route: [{destination: {host: flaky}}]
            retries: {attempts: 0}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: flaky}
        spec:
          host: flaky
          trafficPolicy:
            loadBalancer: {simple: ROUND_ROBIN}
            outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 4s, maxEjectionPercent: 100}
        """)
    wlab.run("apply", "-f", "-", input=rules)
    time.sleep(1.0)
    try:
        _set_failing(wlab, bad, True)
        name = r"(flaky-[\w-]+)"
        counts = client(wlab, "flaky", 8080, "/", 40, name)
        # two 503s eject the failing pod; everything after goes to the healthy one
        assert counts[f"503 {bad['name']}"] == 2, counts
        assert counts[f"200 {good['name']}"] == 38, counts
        _set_failing(wlab, bad, False)
        time.sleep(6.0)  # past the ejection time and the next sweep
        counts = client(wlab, "flaky", 8080, "/", 20, name)
        assert counts[f"200 {bad['name']}"] >= 5 and counts[f"200 {good['name']}"] >= 5, counts
    finally:
        _set_failing(wlab, bad, False)
        wlab.run("delete", "-f", "-", input=rules, check=False)


def test_l7_authorization_policy_on_the_waypoint(wlab: Lab) -> None:
    policy = textwrap.dedent("""\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: reviews-get-only}
        spec:
          targetRefs:
          - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
          action: ALLOW
          rules:
          - to: [{operation: {methods: [GET], paths: ["/reviews/*", "/ratings/*", "/details/*", "/productpage", "/"]}}]
        """)
    wlab.run("apply", "-f", "-", input=policy)
    time.sleep(1.0)
    try:
        got = client(wlab, "reviews", 9080, "/reviews/0", 5, r"(podname)")
        assert got == Counter({"200 podname": 5}), got
        denied = client(wlab, "reviews", 9080, "/reviews/0", 5, r"(RBAC: access denied)", method="DELETE")
        assert denied == Counter({"403 RBAC: access denied": 5}), denied
    finally:
        wlab.run("delete", "-f", "-", input=policy)


def test_malformed_http_gets_400_and_the_waypoint_keeps_serving(wlab: Lab) -> None:
    script = textwrap.dedent("""\
        import socket
        s = socket.create_connection(("reviews", 9080), timeout=10)
        s.sendall(b"GET /reviews/0 HTTP/1.1\\r\\nHost: reviews\\r\\nBad Header\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        print(data.split(b"\\r\\n", 1)[0].decode())
        """)
    out = wlab.exec("curl", sys.executable, "-c", script).stdout.strip()
    assert out.startswith("HTTP/1.1 400"), out
    counts = client(wlab, "reviews", 9080, "/reviews/0", 10, REVIEWS)
    assert sum(v for k, v in counts.items() if k.startswith("200 ")) == 10, counts
