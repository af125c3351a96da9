"""The waypoint's L7 telemetry: Istio's HTTP metrics read back through the registry, Envoy's
default access log line, span tags."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from waypoint.http import Request, Response
from waypoint.telemetry import (
    BYTES_BUCKETS,
    DURATION_BUCKETS_MS,
    HTTP_LABELS,
    L7Metrics,
    RequestRecord,
    access_log_line,
    begin,
    format_start_time,
    labels,
    record,
    redact_path,
    set_response,
    span_tags,
    write_access_log,
)
from ztunnel.metrics import TCP_LABELS
from ztunnel.state import Workload

START = 1704067200.123  # 2024-01-01T00:00:00.123Z
PRODUCTPAGE_ID = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
REVIEWS_ID = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"


def workload(name: str, sa: str, labels: dict[str, str], *, enrolled: bool = True,
             ip: str = "10.244.1.5") -> Workload:
    return Workload(uid=f"uid-{name}", name=name, namespace="default", node="node1",
                    service_account=sa, trust_domain="cluster.local", addresses=(ip,),
                    enrolled=enrolled, healthy=True, labels=labels)


PRODUCTPAGE = workload("productpage-v1", "bookinfo-productpage", {"app": "productpage", "version": "v1"})
REVIEWS = workload("reviews-v2", "bookinfo-reviews", {"app": "reviews", "version": "v2"}, ip="10.244.2.7")


def full_record(**kw: Any) -> RequestRecord:
    base: dict[str, Any] = dict(
        start_time=START, duration_s=0.0034, method="GET", path="/reviews/0", authority="reviews:9080",
        user_agent="python-requests/2.31", request_id="4c7a2f1e-8b1d-4a57-9a0e-2a6c3f1b9d10",
        forwarded_for="10.244.1.5", response_code=200, response_code_details="via_upstream",
        bytes_received=0, bytes_sent=295, upstream_service_time_ms=3,
        upstream_host="10.244.2.7:9080", upstream_cluster="outbound|9080|v2|reviews.default.svc.cluster.local",
        upstream_local_address="10.244.1.9:43210", route_name="reviews-v2",
        downstream_remote="10.244.1.5:51234", downstream_local="10.96.0.42:9080",
        source=PRODUCTPAGE, source_principal=PRODUCTPAGE_ID, destination=REVIEWS,
        destination_service="reviews.default.svc.cluster.local",
    )
    base.update(kw)
    return RequestRecord(**base)


EXPECTED_FULL = {
    "reporter": "waypoint",
    "source_workload": "productpage-v1",
    "source_canonical_service": "productpage",
    "source_canonical_revision": "v1",
    "source_workload_namespace": "default",
    "source_principal": PRODUCTPAGE_ID,
    "source_app": "productpage",
    "source_version": "v1",
    "source_cluster": "Kubernetes",
    "destination_workload": "reviews-v2",
    "destination_workload_namespace": "default",
    "destination_principal": REVIEWS_ID,
    "destination_app": "reviews",
    "destination_version": "v2",
    "destination_service": "reviews.default.svc.cluster.local",
    "destination_canonical_service": "reviews",
    "destination_canonical_revision": "v2",
    "destination_service_name": "reviews",
    "destination_service_namespace": "default",
    "destination_cluster": "Kubernetes",
    "request_protocol": "http",
    "response_code": "200",
    "grpc_response_status": "",
    "response_flags": "-",
    "connection_security_policy": "mutual_tls",
}


def bucket_bounds(registry: CollectorRegistry, name: str) -> list[str]:
    for metric in registry.collect():
        if metric.name == name:
            return list(dict.fromkeys(s.labels["le"] for s in metric.samples if s.name == f"{name}_bucket"))
    raise AssertionError(f"{name} not registered")


# --- labels ------------------------------------------------------------------------------------


def test_labels_are_istios_in_order_and_cover_ztunnels_l4_labels() -> None:
    assert len(HTTP_LABELS) == 25
    assert set(TCP_LABELS) <= set(HTTP_LABELS)
    assert list(labels(full_record())) == list(HTTP_LABELS)


def test_labels_of_a_full_record() -> None:
    assert labels(full_record()) == EXPECTED_FULL


def test_unknown_peers_are_unknown_and_canonical_revision_latest() -> None:
    got = labels(RequestRecord(response_code=503, response_flags="UH", mtls=False))
    assert got["source_workload"] == got["destination_workload"] == "unknown"
    assert got["source_principal"] == got["destination_principal"] == "unknown"
    assert got["source_app"] == got["destination_version"] == got["source_cluster"] == "unknown"
    assert got["source_canonical_service"] == got["destination_canonical_service"] == "unknown"
    assert got["source_canonical_revision"] == got["destination_canonical_revision"] == "latest"
    assert got["destination_service"] == got["destination_service_name"] == "unknown"
    assert got["destination_service_namespace"] == "unknown"
    assert (got["response_code"], got["response_flags"]) == ("503", "UH")
    assert got["connection_security_policy"] == "none"


def test_canonical_labels_follow_istiods_precedence() -> None:
    w = workload("ratings-v1", "ratings", {"app": "ratings", "version": "v1",
                                            "service.istio.io/canonical-name": "ratings-canon",
                                            "app.kubernetes.io/version": "1.2"})
    got = labels(RequestRecord(destination=w))
    assert (got["destination_canonical_service"], got["destination_canonical_revision"]) == ("ratings-canon", "1.2")
    assert (got["destination_app"], got["destination_version"]) == ("ratings", "v1")
    bare = workload("job-x", "default", {})
    got = labels(RequestRecord(source=bare))
    assert (got["source_canonical_service"], got["source_canonical_revision"]) == ("job-x", "latest")
    assert (got["source_app"], got["source_version"]) == ("unknown", "unknown")


def test_principals_follow_ztunnels_rules() -> None:
    plain = workload("legacy", "legacy", {}, enrolled=False)
    got = labels(RequestRecord(source=PRODUCTPAGE, destination=plain))
    # the source proved no identity, the destination is not in the mesh
    assert got["source_principal"] == got["destination_principal"] == "unknown"
    got = labels(RequestRecord(destination=plain, destination_principal="spiffe://x/ns/a/sa/b"))
    assert got["destination_principal"] == "spiffe://x/ns/a/sa/b"


def test_service_name_and_namespace_come_from_the_fqdn_unless_given() -> None:
    got = labels(RequestRecord(destination_service="details.bookinfo.svc.cluster.local"))
    assert (got["destination_service_name"], got["destination_service_namespace"]) == ("details", "bookinfo")
    got = labels(RequestRecord(destination_service="example.com", destination_service_namespace="egress"))
    assert (got["destination_service_name"], got["destination_service_namespace"]) == ("example.com", "egress")


@pytest.mark.parametrize(("code", "grpc_status", "want"), [
    (200, "0", "0"), (200, "5", "5"), (503, "", "14"), (403, "", "7"), (404, "", "12"),
    (500, "", "2"), (0, "", ""), (200, "garbage", "2"), (503, "99999", "14"),
])
def test_grpc_response_status(code: int, grpc_status: str, want: str) -> None:
    got = labels(RequestRecord(request_protocol="grpc", response_code=code, grpc_status=grpc_status))
    assert (got["request_protocol"], got["grpc_response_status"]) == ("grpc", want)


# --- metrics through the registry ------------------------------------------------------------------


def test_record_counts_and_observes_through_the_registry() -> None:
    registry = CollectorRegistry()
    metrics = L7Metrics(registry)
    record(metrics, full_record())
    record(metrics, full_record(duration_s=0.2, bytes_sent=5000))
    get = registry.get_sample_value
    assert get("istio_requests_total", EXPECTED_FULL) == 2
    assert get("istio_request_duration_milliseconds_count", EXPECTED_FULL) == 2
    assert get("istio_request_duration_milliseconds_sum", EXPECTED_FULL) == pytest.approx(203.4)
    assert get("istio_request_duration_milliseconds_bucket", {**EXPECTED_FULL, "le": "1.0"}) == 0
    assert get("istio_request_duration_milliseconds_bucket", {**EXPECTED_FULL, "le": "5.0"}) == 1
    assert get("istio_request_duration_milliseconds_bucket", {**EXPECTED_FULL, "le": "250.0"}) == 2
    assert get("istio_request_bytes_bucket", {**EXPECTED_FULL, "le": "0.5"}) == 2
    assert get("istio_request_bytes_sum", EXPECTED_FULL) == 0
    assert get("istio_response_bytes_bucket", {**EXPECTED_FULL, "le": "250.0"}) == 0
    assert get("istio_response_bytes_bucket", {**EXPECTED_FULL, "le": "500.0"}) == 1
    assert get("istio_response_bytes_bucket", {**EXPECTED_FULL, "le": "5000.0"}) == 2
    assert get("istio_response_bytes_bucket", {**EXPECTED_FULL, "le": "+Inf"}) == 2
    assert get("istio_response_bytes_sum", EXPECTED_FULL) == 5295


def test_histograms_use_envoys_default_buckets() -> None:
    registry = CollectorRegistry()
    record(L7Metrics(registry), full_record())
    envoy = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
             600000, 1800000, 3600000]
    assert list(DURATION_BUCKETS_MS) == envoy and list(BYTES_BUCKETS) == envoy
    for name in ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"):
        bounds = bucket_bounds(registry, name)
        assert [float(b) for b in bounds] == [*map(float, envoy), math.inf]


def test_outcomes_are_separate_series() -> None:
    registry = CollectorRegistry()
    metrics = L7Metrics(registry)
    record(metrics, full_record())
    record(metrics, full_record(response_code=503, response_flags="UF", destination=None,
                                response_code_details="upstream_reset_before_response_started{connection_failure}"))
    record(metrics, full_record(response_code=403, response_code_details="rbac_access_denied_matched_policy[none]"))
    get = registry.get_sample_value
    failed = {**EXPECTED_FULL, "response_code": "503", "response_flags": "UF", "destination_workload": "unknown",
              "destination_workload_namespace": "unknown", "destination_principal": "unknown",
              "destination_app": "unknown", "destination_version": "unknown",
              "destination_canonical_service": "unknown", "destination_canonical_revision": "latest",
              "destination_cluster": "unknown"}
    assert get("istio_requests_total", EXPECTED_FULL) == 1
    assert get("istio_requests_total", failed) == 1
    assert get("istio_requests_total", {**EXPECTED_FULL, "response_code": "403"}) == 1


def test_a_new_workload_object_is_never_served_stale_labels() -> None:
    registry = CollectorRegistry()
    metrics = L7Metrics(registry)
    record(metrics, full_record())
    relabelled = workload("reviews-v2", "bookinfo-reviews", {"app": "reviews", "version": "v3"})
    record(metrics, full_record(destination=relabelled))
    get = registry.get_sample_value
    assert get("istio_requests_total", EXPECTED_FULL) == 1
    assert get("istio_requests_total", {**EXPECTED_FULL, "destination_version": "v3",
                                        "destination_canonical_revision": "v3"}) == 1


def test_two_metric_sets_do_not_share_a_registry() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    record(L7Metrics(a), full_record())
    L7Metrics(b)
    assert a.get_sample_value("istio_requests_total", EXPECTED_FULL) == 1
    assert b.get_sample_value("istio_requests_total", EXPECTED_FULL) is None


def test_record_is_cheap() -> None:
    metrics = L7Metrics(CollectorRegistry())
    rec = full_record()
    record(metrics, rec)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        record(metrics, rec)
        access_log_line(rec)
    per_request = (time.perf_counter() - t0) / n
    assert per_request < 200e-6, f"{per_request * 1e6:.1f} µs per request"


# --- from the HTTP messages ----------------------------------------------------------------------


def test_begin_and_set_response_read_the_messages() -> None:
    req = Request("POST", "http", "ratings:9080", "/ratings/0?x=1", headers=[
        ("user-agent", "curl/8"), ("x-request-id", "rid-1"), ("x-forwarded-for", "1.2.3.4"),
        ("authorization", "Bearer secret-token"), ("content-type", "application/json"),
    ], body=b"{}", version="HTTP/2")
    rec = begin(req, start_time=START, downstream_remote="10.0.0.1:5555")
    assert (rec.method, rec.path, rec.authority, rec.protocol, rec.request_protocol) == (
        "POST", "/ratings/0?x=1", "ratings:9080", "HTTP/2", "http")
    assert (rec.user_agent, rec.request_id, rec.forwarded_for, rec.bytes_received) == ("curl/8", "rid-1", "1.2.3.4", 2)
    set_response(rec, Response(201, body=b"created"))
    assert (rec.response_code, rec.bytes_sent, rec.grpc_status) == (201, 7, "")
    assert "secret-token" not in access_log_line(rec)


def test_grpc_status_from_trailers_then_headers() -> None:
    req = Request("POST", "http", "g:50051", "/pkg.Svc/Call", headers=[("content-type", "application/grpc+proto")])
    rec = begin(req, start_time=START)
    assert rec.request_protocol == "grpc"
    set_response(rec, Response(200, headers=[("grpc-status", "3")], trailers=[("grpc-status", "0")]))
    assert rec.grpc_status == "0"
    set_response(rec, Response(200, headers=[("grpc-status", "14")]))
    assert rec.grpc_status == "14"


# --- access log ----------------------------------------------------------------------------------


def test_access_log_line_of_a_full_record() -> None:
    assert access_log_line(full_record()) == (
        '[2024-01-01T00:00:00.123Z] "GET /reviews/0 HTTP/1.1" 200 - via_upstream - "-" 0 295 3 3 '
        '"10.244.1.5" "python-requests/2.31" "4c7a2f1e-8b1d-4a57-9a0e-2a6c3f1b9d10" "reviews:9080" '
        '"10.244.2.7:9080" outbound|9080|v2|reviews.default.svc.cluster.local 10.244.1.9:43210 '
        '10.96.0.42:9080 10.244.1.5:51234 - reviews-v2'
    )


def test_access_log_line_of_an_empty_record() -> None:
    assert access_log_line(RequestRecord(start_time=START)) == (
        '[2024-01-01T00:00:00.123Z] "- - HTTP/1.1" 0 - - - "-" 0 0 0 - "-" "-" "-" "-" "-" - - - - - -'
    )


def test_access_log_line_of_a_failed_request() -> None:
    rec = RequestRecord(
        start_time=START, duration_s=1.0021, method="GET", path="/details/0", authority="details:9080",
        request_id="rid", response_code=503, response_flags="UF,URX",
        response_code_details="upstream_reset_before_response_started{connection failure}",
        upstream_transport_failure_reason="delayed connect error: 111", bytes_sent=91,
        upstream_host="10.244.2.9:9080", upstream_cluster="outbound|9080||details.default.svc.cluster.local",
        downstream_remote="10.244.1.5:40000", route_name="default",
    )
    assert access_log_line(rec) == (
        '[2024-01-01T00:00:00.123Z] "GET /details/0 HTTP/1.1" 503 UF,URX '
        'upstream_reset_before_response_started{connection_failure} - "delayed connect error: 111" '
        '0 91 1002 - "-" "-" "rid" "details:9080" "10.244.2.9:9080" '
        'outbound|9080||details.default.svc.cluster.local - - 10.244.1.5:40000 - default'
    )


def test_access_log_line_for_a_downstream_disconnect_and_http2() -> None:
    line = access_log_line(RequestRecord(start_time=START, method="GET", path="/", protocol="HTTP/2",
                                         response_flags="DC", connection_termination_details="",
                                         response_code_details="downstream_remote_disconnect"))
    assert line.startswith('[2024-01-01T00:00:00.123Z] "GET / HTTP/2" 0 DC downstream_remote_disconnect - "-" 0 0 0 -')


def test_start_time_is_envoys_format() -> None:
    assert format_start_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_start_time(1704067199.9995) == "2023-12-31T23:59:59.999Z"
    assert format_start_time(1704067200.0) == "2024-01-01T00:00:00.000Z"
    assert format_start_time(1718153645.5) == "2024-06-12T00:54:05.500Z"


def test_tokens_never_reach_the_log() -> None:
    assert redact_path("/api?access_token=abc.def&x=1") == "/api?access_token=REDACTED&x=1"
    assert redact_path("/api?ID_TOKEN=abc&token=t") == "/api?ID_TOKEN=REDACTED&token=REDACTED"
    assert redact_path("/tokens/list") == "/tokens/list"
    assert redact_path("/a?tokenized=1") == "/a?tokenized=1"
    line = access_log_line(RequestRecord(start_time=START, method="GET", path="/p?access_token=eyJhbGciOi.x.y"))
    assert "eyJ" not in line and "access_token=REDACTED" in line


def test_client_values_cannot_forge_log_lines() -> None:
    line = access_log_line(RequestRecord(start_time=START, user_agent='evil\n[2024-01-01T00:00:00.000Z] "GET /',
                                         path="/a\r\nb", request_id="x\ty"))
    assert "\n" not in line and "\r" not in line and "\t" not in line
    assert "evil\\x0a[2024" in line and "/a\\x0d\\x0ab" in line and '"x\\x09y"' in line


def test_write_access_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="waypoint.access"):
        write_access_log(full_record())
    assert [r.getMessage() for r in caplog.records] == [access_log_line(full_record())]


# --- span tags -------------------------------------------------------------------------------------


def test_span_tags() -> None:
    tags = span_tags(full_record(path="/r?access_token=s"), node_id="waypoint~10.244.1.9~waypoint-1.default",
                     canonical_service="waypoint", namespace="default")
    assert tags["http.method"] == "GET"
    assert tags["http.url"] == "http://reviews:9080/r?access_token=REDACTED"
    assert tags["http.status_code"] == "200"
    assert tags["upstream_cluster"] == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert tags["response_flags"] == "-"
    assert tags["node_id"] == "waypoint~10.244.1.9~waypoint-1.default"
    assert tags["istio.canonical_service"] == "waypoint"
    assert tags["guid:x-request-id"] == "4c7a2f1e-8b1d-4a57-9a0e-2a6c3f1b9d10"
    assert tags["peer.address"] == "10.244.1.5"
    assert "error" not in tags
    assert all(isinstance(v, str) for v in tags.values())
    assert span_tags(RequestRecord(response_code=503, response_flags="UH"))["error"] == "true"
    assert span_tags(RequestRecord(response_code=0, response_flags="DC"))["error"] == "true"
    assert span_tags(RequestRecord(request_protocol="grpc", response_code=200, grpc_status="0"))["grpc.status_code"] == "0"
