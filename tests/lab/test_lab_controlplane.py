"""The control plane inside a running lab: objects go through it, the kubelet is a subscriber,
and a SIGKILLed control plane is restarted while pods keep running. Needs root; never skips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.conftest import FIXTURES, ROOT, Lab

pytestmark = pytest.mark.lab


def meshctl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESHLAB_NAME": lab.name}
    return subprocess.run([sys.executable, "-m", "meshctl.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60, check=False)


def test_istio_samples_apply_through_the_lab_and_proxy_status_shows_the_kubelet(bookinfo_lab: Lab) -> None:
    sample = FIXTURES / "istio" / "networking" / "virtual-service-all-v1.yaml"
    out = meshctl(bookinfo_lab, "apply", "-f", str(sample), "-f", str(FIXTURES / "istio" / "networking" / "destination-rule-all.yaml"))
    assert out.returncode == 0, out.stderr
    assert "virtualservice.networking.istio.io/productpage created" in out.stdout
    status = meshctl(bookinfo_lab, "proxy-status", "-o", "json")
    data = json.loads(status.stdout)
    kubelets = [s for s in data["subscribers"] if s.get("type") == "KUBELET" and s.get("connected")]
    assert len(kubelets) == 1 and kubelets[0]["ackedVersion"] == data["version"]
    dump = json.loads(meshctl(bookinfo_lab, "debug", "config").stdout)
    kinds = {o["key"][0] for o in dump["objects"]}
    assert {"VirtualService", "DestinationRule", "Deployment"} <= kinds
    bad = meshctl(bookinfo_lab, "apply", "-f", "/dev/stdin")
    assert bad.returncode == 0 or "error" in bad.stderr  # empty input is harmless
    deleted = meshctl(bookinfo_lab, "delete", "-f", str(sample))
    assert "deleted" in deleted.stdout


def test_a_killed_control_plane_is_restarted_and_pods_keep_running(bookinfo_lab: Lab) -> None:
    pid_file = Path(f"/run/meshlab/{bookinfo_lab.name}/controlplane.pid")
    before = int(pid_file.read_text())
    pods_before = {p["name"] for p in bookinfo_lab.status()["pods"]}
    os.kill(before, signal.SIGKILL)
    bookinfo_lab.wait_for("a new control plane", lambda: int(pid_file.read_text()) != before, timeout=20)
    # pods were never touched
    assert {p["name"] for p in bookinfo_lab.status()["pods"]} == pods_before
    page = bookinfo_lab.exec("curl", "curl", "-s", "-m", "10", "http://productpage:9080/productpage").stdout
    assert "Simple Bookstore App" in page
    # and the lab converges on changes made through the new control plane
    deadline = time.monotonic() + 20
    while True:
        out = bookinfo_lab.run("apply", "-f", str(FIXTURES / "istio" / "curl.yaml"), check=False)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert out.returncode == 0, out.stderr
    assert "deployment.apps/curl unchanged" in out.stdout
    status = json.loads(meshctl(bookinfo_lab, "proxy-status", "-o", "json").stdout)
    kubelets = [s for s in status["subscribers"] if s.get("type") == "KUBELET" and s.get("connected")]
    assert kubelets and kubelets[0]["ackedVersion"] == status["version"]
