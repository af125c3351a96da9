"""Capture in the lab: enrolled pods' connections go through their node's ztunnel (tc programs,
no iptables, no pod restarts), servers see clients' real addresses, non-enrolled pods are
untouched, enrolment follows labels on running pods, and thousands of connections arrive
byte-exact. Needs root; never skips."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import (
    HASHER_PY,
    Lab,
    host_network_snapshot,
    lab_down_and_check_clean,
    lab_up,
    mounts,
    require_lab_machine,
)

pytestmark = pytest.mark.lab


CLIENT_PY = textwrap.dedent("""\
    import concurrent.futures, hashlib, os, socket, sys
    host, sequential, parallel, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    host = socket.gethostbyname(host)  # once: this measures connections, not a DNS storm
    def one(i):
        data = os.urandom(size + i % 7)
        c = socket.create_connection((host, 7000), timeout=60)
        with c:
            c.sendall(data); c.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := c.recv(4096):
                answer += chunk
        peer, n, digest = answer.decode().split()
        return peer, int(n) == len(data) and digest == hashlib.sha256(data).hexdigest()
    results = [one(i) for i in range(sequential)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel or 1) as pool:
        results += list(pool.map(one, range(parallel)))
    peers = {p for p, _ in results}
    bad = sum(1 for _, ok in results if not ok)
    print(f"DONE {len(results)} bad={bad} peers={','.join(sorted(peers))}", flush=True)
    """)


HOLD_PY = textwrap.dedent("""\
    import hashlib, os, socket, sys
    data = os.urandom(2_000_000)
    c = socket.create_connection((socket.gethostbyname(sys.argv[1]), 7000), timeout=60)
    c.sendall(data[:1_000_000])
    print("HALF", flush=True)
    sys.stdin.readline()  # the test changes enrolment meanwhile
    c.sendall(data[1_000_000:]); c.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := c.recv(4096):
        answer += chunk
    peer, n, digest = answer.decode().split()
    print("OK" if int(n) == len(data) and digest == hashlib.sha256(data).hexdigest() else "BAD", peer, flush=True)
    """)


def manifest(script_dir: Path) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Namespace
        metadata: {{name: mesh, labels: {{istio.io/dataplane-mode: ambient}}}}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {{name: plain}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: hasher, namespace: mesh}}
        spec:
          selector: {{app: hasher}}
          ports: [{{name: tcp, port: 7000}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: hasher, namespace: mesh, labels: {{app: hasher}}}}
        spec:
          nodeName: node2
          containers:
          - {{name: s, image: python, command: ["{sys.executable}", "{script_dir}/server.py"],
              readinessProbe: {{tcpSocket: {{port: 7000}}, periodSeconds: 1}}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: near, namespace: mesh}}
        spec:
          nodeName: node2
          containers:
          - {{name: c, image: busybox, command: ["sleep", "infinity"]}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: far, namespace: mesh}}
        spec:
          nodeName: node1
          containers:
          - {{name: c, image: busybox, command: ["sleep", "infinity"]}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: outsider, namespace: plain}}
        spec:
          nodeName: node1
          containers:
          - {{name: c, image: busybox, command: ["sleep", "infinity"]}}
        """)


@pytest.fixture(scope="module")
def capture_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab_machine()
    scripts = tmp_path_factory.mktemp("capture")
    (scripts / "server.py").write_text(HASHER_PY)
    (scripts / "client.py").write_text(CLIENT_PY)
    (scripts / "hold.py").write_text(HOLD_PY)
    os.chmod(scripts, 0o755)
    before_net, before_mounts = host_network_snapshot(), mounts()
    name = "mlcap"
    Lab(name).run("down", check=False)
    try:
        lab = lab_up(name, "--restart-backoff", "0.5")
        lab.run("apply", "-f", "-", "--wait", input=manifest(scripts))
        lab.scripts = scripts  # type: ignore[attr-defined]
        yield lab
    finally:
        lab_down_and_check_clean(Lab(name), before_net, before_mounts)


def pod(lab: Lab, name: str) -> dict[str, object]:
    (p,) = [p for p in lab.status()["pods"] if p["name"] == name]
    found: dict[str, object] = p
    return found


def client(lab: Lab, pod_name: str, target: str, sequential: int, concurrent: int = 0, size: int = 1000) -> str:
    ns = pod(lab, pod_name)["namespace"]
    out = lab.exec(f"{ns}/{pod_name}", sys.executable, f"{lab.scripts}/client.py",  # type: ignore[attr-defined]
                   target, str(sequential), str(concurrent), str(size), timeout=600)
    return out.stdout.strip()


def ztunnel_log(lab: Lab, node: str) -> str:
    return Path(f"/run/meshlab/{lab.name}/ztunnel-{node}.log").read_text()


def access_lines(lab: Lab, node: str, src_ip: str) -> list[str]:
    return [line for line in ztunnel_log(lab, node).splitlines() if "ztunnel.access" in line and f"src={src_ip}:" in line]


def test_enrolled_pod_to_pod_ip_and_vip_goes_through_ztunnel_with_the_real_source(capture_lab: Lab) -> None:
    far, hasher = pod(capture_lab, "far"), pod(capture_lab, "hasher")
    vip = next(s["cluster_ip"] for s in capture_lab.status()["services"] if s["name"] == "hasher")
    before = len(access_lines(capture_lab, "node1", str(far["ip"])))
    for target in (str(hasher["ip"]), "hasher.mesh", str(vip)):
        out = client(capture_lab, "far", target, 3)
        assert out == f"DONE 3 bad=0 peers={far['ip']}", (target, out)  # the server saw far's own IP
    lines = access_lines(capture_lab, "node1", str(far["ip"]))[before:]
    assert len(lines) == 9, lines
    assert sum(f"dst={vip}:7000 dst_service=mesh/hasher.mesh.svc.cluster.local" in line for line in lines) == 6
    assert all(re.search(r"bytes_sent=\d+ bytes_received=100\d", line) for line in lines), lines
    inbound = [line for line in ztunnel_log(capture_lab, "node2").splitlines()
               if "inbound" in line and f"src={far['ip']}:" in line]
    assert len(inbound) >= 9  # the server's node took them in too (cross-node)


def test_same_node_capture_and_metrics(capture_lab: Lab) -> None:
    near = pod(capture_lab, "near")
    out = client(capture_lab, "near", "hasher.mesh", 5)
    assert out == f"DONE 5 bad=0 peers={near['ip']}"
    assert len(access_lines(capture_lab, "node2", str(near["ip"]))) >= 5
    metrics = capture_lab.exec("node/node2", "curl", "-s", "http://127.0.0.1:15020/metrics").stdout
    assert re.search(r'istio_tcp_connections_opened_total\{[^}]*source_workload="near"', metrics), metrics[:2000]


def test_non_enrolled_pods_are_untouched_until_enrolled_and_again_after(capture_lab: Lab) -> None:
    outsider = pod(capture_lab, "outsider")
    ip = str(outsider["ip"])
    assert client(capture_lab, "outsider", "hasher.mesh", 3) == f"DONE 3 bad=0 peers={ip}"
    assert access_lines(capture_lab, "node1", ip) == []
    # enrol the running pod through its namespace: no restart, its new connections are captured
    capture_lab.run("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: plain\n  labels: {istio.io/dataplane-mode: ambient}\n")
    capture_lab.wait_for("outsider to be enrolled",
                         lambda: "DONE 1" in client(capture_lab, "outsider", "hasher.mesh", 1) and access_lines(capture_lab, "node1", ip))
    assert pod(capture_lab, "outsider")["restarts"] == 0
    # and out again
    capture_lab.run("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n")
    capture_lab.wait_for("outsider to leave the mesh", lambda: "left the mesh" in ztunnel_log(capture_lab, "node1"))
    seen = len(access_lines(capture_lab, "node1", ip))
    assert client(capture_lab, "outsider", "hasher.mesh", 3) == f"DONE 3 bad=0 peers={ip}"
    assert len(access_lines(capture_lab, "node1", ip)) == seen


def test_thousands_of_connections_lose_no_bytes_and_leave_no_sockets(capture_lab: Lab) -> None:
    far = pod(capture_lab, "far")
    out = client(capture_lab, "far", "hasher.mesh", 2000, 1000, size=4096)
    assert out == f"DONE 3000 bad=0 peers={far['ip']}", out
    # nothing left open in ztunnel: no established TCP socket with far's address in node1
    ss = capture_lab.exec("node/node1", "ss", "-tn", "state", "established").stdout
    assert str(far["ip"]) not in ss, ss




def test_a_restarted_ztunnel_adopts_the_pinned_state_and_captures_again(capture_lab: Lab) -> None:
    far = pod(capture_lab, "far")
    pid_file = Path(f"/run/meshlab/{capture_lab.name}/ztunnel-node1.pid")
    before = int(pid_file.read_text())
    os.kill(before, signal.SIGKILL)
    capture_lab.wait_for("a new ztunnel on node1", lambda: int(pid_file.read_text()) != before, timeout=20)
    capture_lab.wait_for("the new ztunnel to be ready",
                         lambda: ztunnel_log(capture_lab, "node1").count("capture ready on node1") >= 2, timeout=20)
    adopted = re.findall(r"capture ready on node1 \(uplink eth0, (\d+) pods already enrolled\)", ztunnel_log(capture_lab, "node1"))
    assert int(adopted[-1]) >= 1, adopted  # the enrolled map survived in its pin
    seen = len(access_lines(capture_lab, "node1", str(far["ip"])))
    assert client(capture_lab, "far", "hasher.mesh", 3) == f"DONE 3 bad=0 peers={far['ip']}"
    assert len(access_lines(capture_lab, "node1", str(far["ip"]))) == seen + 3
    assert pod(capture_lab, "far")["restarts"] == 0


def test_an_open_connection_finishes_through_ztunnel_after_its_pod_leaves_the_mesh(capture_lab: Lab) -> None:
    ip = str(pod(capture_lab, "outsider")["ip"])
    enrolled = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: plain\n  labels: {istio.io/dataplane-mode: ambient}\n"
    capture_lab.run("apply", "-f", "-", input=enrolled)
    capture_lab.wait_for("outsider to be enrolled", lambda: access_lines(capture_lab, "node1", ip)
                         if "DONE 1" in client(capture_lab, "outsider", "hasher.mesh", 1) else [])
    seen = len(access_lines(capture_lab, "node1", ip))
    holder = subprocess.Popen(
        [sys.executable, "-m", "meshctl.cli", "lab", "--lab", capture_lab.name, "exec", "plain/outsider", "--",
         sys.executable, f"{capture_lab.scripts}/hold.py", "hasher.mesh"],  # type: ignore[attr-defined]
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "HALF"
        left = ztunnel_log(capture_lab, "node1").count(f"pod {ip} left the mesh")
        capture_lab.run("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n")
        capture_lab.wait_for("outsider to leave the mesh",
                             lambda: ztunnel_log(capture_lab, "node1").count(f"pod {ip} left the mesh") > left)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().split() == ["OK", ip]  # every byte, through ztunnel, real source
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    lines = access_lines(capture_lab, "node1", ip)
    assert len(lines) == seen + 1 and "bytes_received=2000000" in lines[-1], lines[-1:]
    # new connections now go direct
    assert client(capture_lab, "outsider", "hasher.mesh", 2) == f"DONE 2 bad=0 peers={ip}"
    assert len(access_lines(capture_lab, "node1", ip)) == seen + 1
