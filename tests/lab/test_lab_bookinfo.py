"""The lab runs Istio's Bookinfo unchanged: pods across nodes, DNS, ClusterIP balancing,
exec, logs, restarts and error reporting. Needs root; fails (never skips) without it."""

from __future__ import annotations

import re
import textwrap
from collections import Counter

import pytest

from tests.lab.conftest import Lab

pytestmark = pytest.mark.lab

PAGE = "http://productpage:9080/productpage"
SERVED_BY = re.compile(r"Reviews served by:.*?(reviews-v\d-[\w-]+)", re.S)


def served_by(lab: Lab, pod: str) -> str:
    out = lab.exec(pod, "curl", "-s", "-m", "10", PAGE).stdout
    assert "Simple Bookstore App" in out, out[:500]
    m = SERVED_BY.search(out)
    assert m, out[:2000]
    return m.group(1)


def test_bookinfo_pods_are_running_on_both_nodes(bookinfo_lab: Lab) -> None:
    status = bookinfo_lab.status()
    pods = status["pods"]
    names = sorted(p["name"].rsplit("-", 2)[0] for p in pods)
    assert names == ["curl", "details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"]
    for p in pods:
        assert p["status"] == "Running" and p["ready"] == "1/1", p
        assert re.fullmatch(r"[a-z0-9-]+-[b-z2-9]{10}-[b-z2-9]{5}", p["name"]), p["name"]
        assert p["ip"].startswith({"node1": "10.244.1.", "node2": "10.244.2."}[p["node"]])
    assert {p["node"] for p in pods} == {"node1", "node2"}
    counts = Counter(p["node"] for p in pods)
    assert abs(counts["node1"] - counts["node2"]) <= 1  # spread
    svc = {s["name"]: s for s in status["services"]}
    assert len(svc["reviews"]["endpoints"]) == 3
    assert svc["productpage"]["cluster_ip"].startswith("10.96.")


def test_productpage_answers_with_all_three_reviews_versions(bookinfo_lab: Lab) -> None:
    seen: Counter[str] = Counter()
    for _ in range(60):
        seen[served_by(bookinfo_lab, "curl").split("-")[1]] += 1
        if len(seen) == 3 and min(seen.values()) >= 2:
            break
    assert set(seen) == {"v1", "v2", "v3"}, seen


def test_stars_match_the_reviews_version(bookinfo_lab: Lab) -> None:
    colours: dict[str, set[str]] = {}
    for _ in range(60):
        out = bookinfo_lab.exec("curl", "curl", "-s", "-m", "10", PAGE).stdout
        m = SERVED_BY.search(out)
        assert m
        v = m.group(1).split("-")[1]
        colours.setdefault(v, set()).update(re.findall(r'color="(\w+)"', out))
        if len(colours) == 3:
            break
    assert colours == {"v1": set(), "v2": {"black"}, "v3": {"red"}}


def _pinned_client(lab: Lab, name: str, node: str) -> None:
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          labels: {{app: {name}}}
        spec:
          nodeName: {node}
          containers:
          - name: c
            image: curlimages/curl
            command: ["/bin/sleep", "infinity"]
        """)
    lab.run("apply", "-f", "-", "--wait", input=manifest)


def test_productpage_answers_from_the_other_node_and_the_same_node(bookinfo_lab: Lab) -> None:
    (page,) = bookinfo_lab.pods("productpage-v1")
    other = "node2" if page["node"] == "node1" else "node1"
    _pinned_client(bookinfo_lab, "client-far", other)
    _pinned_client(bookinfo_lab, "client-near", page["node"])
    far = {p["name"]: p for p in bookinfo_lab.status()["pods"]}
    assert far["client-far"]["node"] == other and far["client-near"]["node"] == page["node"]
    assert served_by(bookinfo_lab, "client-far").startswith("reviews-v")
    assert served_by(bookinfo_lab, "client-near").startswith("reviews-v")
    # the server sees the client's own pod address (no NAT across nodes)
    log = bookinfo_lab.run("logs", "deploy/productpage-v1").stdout
    assert far["client-far"]["ip"] in log


def test_cluster_dns_resolves_short_namespaced_and_full_names(bookinfo_lab: Lab) -> None:
    status = bookinfo_lab.status()
    vip = next(s["cluster_ip"] for s in status["services"] if s["name"] == "details")
    for name in ("details", "details.default", "details.default.svc", "details.default.svc.cluster.local"):
        out = bookinfo_lab.exec("curl", "getent", "hosts", name).stdout
        assert out.split()[0] == vip, (name, out)
    missing = bookinfo_lab.exec("curl", "getent", "hosts", "nosuch.default.svc.cluster.local", check=False)
    assert missing.returncode != 0


def test_a_service_without_ready_endpoints_refuses_connections_fast(bookinfo_lab: Lab) -> None:
    manifest = textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata: {name: nobody}
        spec:
          selector: {app: nobody}
          ports: [{name: http, port: 80, targetPort: 8080}]
        """)
    bookinfo_lab.run("apply", "-f", "-", input=manifest)
    out = bookinfo_lab.exec("curl", "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{exitcode}",
                            "http://nobody/", check=False)
    assert out.stdout.strip() == "7", out  # 7 = connection refused, not 28 = timeout


def test_exec_into_a_node_and_by_namespaced_pod_name(bookinfo_lab: Lab) -> None:
    out = bookinfo_lab.exec("node/node1", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "172.18.0.11/24" in out
    (page,) = bookinfo_lab.pods("productpage-v1")
    out = bookinfo_lab.exec(f"default/{page['name']}", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"{page['ip']}/32" in out
    missing = bookinfo_lab.exec("default/nope", "true", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_logs_show_the_apps_access_log(bookinfo_lab: Lab) -> None:
    served_by(bookinfo_lab, "curl")
    log = bookinfo_lab.run("logs", "deploy/details-v1").stdout
    assert "GET /details/0" in log


def test_crashing_container_is_restarted_with_backoff_and_logs_kept(bookinfo_lab: Lab) -> None:
    manifest = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: crasher}
        spec:
          selector: {matchLabels: {app: crasher}}
          template:
            metadata: {labels: {app: crasher}}
            spec:
              containers:
              - name: c
                image: busybox
                command: ["sh", "-c", "echo run $(date +%s%N); exit 3"]
        """)
    bookinfo_lab.run("apply", "-f", "-", input=manifest)
    pod = bookinfo_lab.wait_for(
        "crasher to restart twice",
        lambda: next((p for p in bookinfo_lab.pods("crasher") if p["restarts"] >= 2), None),
    )
    assert pod["status"] in ("CrashLoopBackOff", "Running", "Error")
    assert "run " in bookinfo_lab.run("logs", "crasher", "--previous").stdout
    bookinfo_lab.run("delete", "-f", "-", input=manifest)
    bookinfo_lab.wait_for("crasher to go away", lambda: not bookinfo_lab.pods("crasher"))


def test_invalid_and_unknown_objects_are_reported_and_the_rest_applies(bookinfo_lab: Lab) -> None:
    manifest = textwrap.dedent("""\
        apiVersion: cert-manager.io/v1
        kind: Certificate
        metadata: {name: cert}
        spec: {secretName: x}
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews}
        spec: {hosts: [reviews]}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: broken}
        spec:
          selector: {matchLabels: {app: broken}}
          template:
            metadata: {labels: {app: broken}}
            spec:
              containers:
              - name: c
                image: busybox
                ports: [{containerPort: 70000}]
        ---
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: fine}
        """)
    out = bookinfo_lab.run("apply", "-f", "-", input=manifest, check=False)
    assert out.returncode == 1
    assert "skipped: Certificate cert" in out.stderr and "not supported" in out.stderr
    assert "error: VirtualService default/reviews" in out.stderr and "spec:" in out.stderr
    assert "broken" in out.stderr and "containerPort" in out.stderr
    assert "serviceaccount/fine created" in out.stdout
    assert not bookinfo_lab.pods("broken")


def test_a_namespace_gets_its_own_short_names(bookinfo_lab: Lab) -> None:
    manifest = textwrap.dedent("""\
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: details, namespace: shop}
        spec:
          selector: {app: shop-details}
          ports: [{name: http, port: 9080, targetPort: web}]
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: shop-details, namespace: shop}
        spec:
          replicas: 2
          selector: {matchLabels: {app: shop-details}}
          template:
            metadata: {labels: {app: shop-details}}
            spec:
              containers:
              - name: details
                image: docker.io/istio/examples-bookinfo-details-v1:1.20.1
                ports: [{name: web, containerPort: 9080}]
        """)
    bookinfo_lab.run("apply", "-f", "-", "--wait", input=manifest)
    status = bookinfo_lab.status()
    shop_vip = next(s["cluster_ip"] for s in status["services"] if s["namespace"] == "shop")
    (pod,) = [p for p in status["pods"] if p["name"].startswith("shop-details")][:1]
    out = bookinfo_lab.exec(f"shop/{pod['name']}", "getent", "hosts", "details").stdout
    assert out.split()[0] == shop_vip
    body = bookinfo_lab.exec("curl", "curl", "-s", "-m", "5", "http://details.shop:9080/details/1").stdout
    assert '"author": "William Shakespeare"' in body or '"author":"William Shakespeare"' in body
    bookinfo_lab.run("delete", "-f", "-", input=manifest)
    bookinfo_lab.wait_for("shop pods to go", lambda: not [p for p in bookinfo_lab.status()["pods"] if p["namespace"] == "shop"])
