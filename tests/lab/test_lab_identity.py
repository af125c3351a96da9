"""Every enrolled pod's service account gets a certificate on its node's ztunnel within a
second of the pod starting, and only there; `meshctl proxy-config secret` shows them (never
keys). Needs root; never skips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.lab.conftest import ROOT, Lab

pytestmark = pytest.mark.lab

ENROLLED = textwrap.dedent("""\
    apiVersion: v1
    kind: Namespace
    metadata:
      name: shop
      labels: {istio.io/dataplane-mode: ambient}
    ---
    apiVersion: v1
    kind: ServiceAccount
    metadata: {name: cart, namespace: shop}
    ---
    apiVersion: v1
    kind: ServiceAccount
    metadata: {name: idle, namespace: shop}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: cart, namespace: shop}
    spec:
      replicas: 3
      selector: {matchLabels: {app: cart}}
      template:
        metadata: {labels: {app: cart}}
        spec:
          serviceAccountName: cart
          containers:
          - {name: c, image: busybox, command: ["sleep", "infinity"]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: opted-out, namespace: shop, labels: {istio.io/dataplane-mode: none}}
    spec:
      nodeName: node1
      serviceAccountName: idle
      containers:
      - {name: c, image: busybox, command: ["sleep", "infinity"]}
    """)


def secrets(lab: Lab, node: str) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "meshctl.cli", "proxy-config", "secret", node, "-o", "json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30, check=False,
                         env={**os.environ, "MESHLAB_NAME": lab.name})
    assert out.returncode == 0, out.stderr
    data: list[dict[str, object]] = json.loads(out.stdout)
    return data


def valid_identities(lab: Lab, node: str) -> set[str]:
    return {str(c["identity"]) for c in secrets(lab, node) if c.get("state") in ("valid", "renewing")}


def test_enrolled_pods_get_certificates_on_their_node_within_a_second(bookinfo_lab: Lab) -> None:
    cart = "spiffe://cluster.local/ns/shop/sa/cart"
    idle = "spiffe://cluster.local/ns/shop/sa/idle"
    bookinfo_lab.run("apply", "-f", "-", input=ENROLLED)
    delays: list[float] = []
    deadline = time.monotonic() + 30
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        pods = [p for p in bookinfo_lab.status()["pods"] if p["namespace"] == "shop" and p["name"].startswith("cart")]
        nodes = {p["node"] for p in pods}
        for node in nodes:
            if node not in seen and cart in valid_identities(bookinfo_lab, node):
                seen[node] = time.monotonic()
                started = min(p["age_s"] for p in pods if p["node"] == node)
                delays.append(started)  # the pod's age when its node first held the certificate
        if nodes and set(seen) == nodes:
            break
        time.sleep(0.05)
    assert seen and set(seen) == {"node1", "node2"}, seen
    print(f"certificate present on the pod's node at pod age {', '.join(f'{d:.2f}s' for d in delays)}")
    assert max(delays) < 1.0, delays
    # the opted-out pod's service account and bookinfo's (not enrolled) have no certificate anywhere
    for node in ("node1", "node2"):
        held = {str(c["identity"]) for c in secrets(bookinfo_lab, node)}
        assert idle not in held
        assert not any("/ns/default/" in i for i in held), held


def test_a_service_account_without_pods_on_a_node_has_no_certificate_there(bookinfo_lab: Lab) -> None:
    manifest = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: solo, namespace: shop}
        spec:
          nodeName: node2
          serviceAccountName: idle
          containers:
          - {name: c, image: busybox, command: ["sleep", "infinity"]}
        """)
    bookinfo_lab.run("apply", "-f", "-", "--wait", input=manifest)
    idle = "spiffe://cluster.local/ns/shop/sa/idle"
    bookinfo_lab.wait_for("idle's certificate on node2", lambda: idle in valid_identities(bookinfo_lab, "node2"))
    assert idle not in {str(c["identity"]) for c in secrets(bookinfo_lab, "node1")}
    # the last pod leaving drops the certificate
    bookinfo_lab.run("delete", "-f", "-", input=manifest)
    bookinfo_lab.wait_for("idle's certificate to go", lambda: idle not in {str(c["identity"]) for c in secrets(bookinfo_lab, "node2")})


def test_proxy_config_secret_shows_chains_and_never_keys(bookinfo_lab: Lab) -> None:
    env = {**os.environ, "MESHLAB_NAME": bookinfo_lab.name}
    for args in (["secret", "node1"], ["secret", "node1", "-o", "pem"], ["all", "node1"]):
        out = subprocess.run([sys.executable, "-m", "meshctl.cli", "proxy-config", *args], capture_output=True,
                             text=True, cwd=ROOT, timeout=30, check=False, env=env)
        assert out.returncode == 0, out.stderr
        assert "PRIVATE KEY" not in out.stdout
    pem = subprocess.run([sys.executable, "-m", "meshctl.cli", "proxy-config", "secret", "node1", "-o", "pem"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30, check=False, env=env).stdout
    assert "BEGIN CERTIFICATE" in pem
    table = subprocess.run([sys.executable, "-m", "meshctl.cli", "proxy-config", "secret", "node1"],
                           capture_output=True, text=True, cwd=ROOT, timeout=30, check=False, env=env).stdout
    assert table.splitlines()[0].split()[:2] == ["IDENTITY", "SERIAL"]
    assert "spiffe://cluster.local/ns/shop/sa/cart" in table
