"""HBONE in the lab: enrolled pods' connections cross the underlay only as TLS to port 15008,
servers see clients' own addresses, PeerAuthentication STRICT/PERMISSIVE and AuthorizationPolicy
DENY/ALLOW by principal are enforced (and visible in metrics and access logs), bad peers on
15008 are refused without leaking, and large and many transfers arrive byte-exact.
Needs root; never skips."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import (
    FIXTURES,
    HASHER_PY,
    Lab,
    host_network_snapshot,
    lab_down_and_check_clean,
    lab_up,
    mounts,
    require_lab_machine,
)

pytestmark = pytest.mark.lab

NAME = "mlhb"
MARKER = b"MESH-CLEARTEXT-MARKER-"


# argv: host count parallel size [marker]; prints "DONE n ok=k failed=f peers=..." and never
# raises: a refused connection is counted, with its error, not a crash.
CLIENT_PY = textwrap.dedent("""\
    import concurrent.futures, hashlib, os, socket, sys
    host, count, parallel, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    marker = sys.argv[5].encode() if len(sys.argv) > 5 else b""
    host = socket.gethostbyname(host)  # once: this measures connections, not a DNS storm
    block = os.urandom(1 << 20)
    def one(i):
        h = hashlib.sha256(); sent = 0
        try:
            c = socket.create_connection((host, 7000), timeout=60)
            with c:
                while sent < size:
                    n = min(len(block), size - sent)
                    chunk = (marker + sent.to_bytes(8, "big") + block)[:n]
                    c.sendall(chunk); h.update(chunk); sent += n
                c.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := c.recv(4096):
                    answer += chunk
            peer, n, digest = answer.decode().split()
            return peer, int(n) == sent and digest == h.hexdigest(), ""
        except Exception as exc:
            return "-", False, f"{type(exc).__name__}: {exc}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
        results = list(pool.map(one, range(count)))
    ok = sum(1 for _, good, _ in results if good)
    peers = sorted({p for p, good, _ in results if good})
    errors = sorted({e for _, _, e in results if e})[:3]
    print(f"DONE {len(results)} ok={ok} failed={len(results) - ok} peers={','.join(peers)} errors={errors}", flush=True)
    """)

# closes first: ztunnel's client-side socket of each connection ends in TIME_WAIT
GREETER_PY = textwrap.dedent("""\
    import socket
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 7100)); s.listen(128)
    while True:
        c, addr = s.accept()
        c.sendall(b"hello " + addr[0].encode()); c.close()
    """)

# argv: host rounds; connects from ONE source port each time, prints the slowest connect
REUSE_PY = textwrap.dedent("""\
    import socket, sys, time
    host, rounds = socket.gethostbyname(sys.argv[1]), int(sys.argv[2])
    slowest, answers = 0.0, set()
    for _ in range(rounds):
        c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind(("0.0.0.0", 23456)); c.settimeout(10)  # below the ephemeral range: no other socket of the pod has it
        t = time.monotonic(); c.connect((host, 7100)); slowest = max(slowest, time.monotonic() - t)
        data = b""
        while chunk := c.recv(100):
            data += chunk
        answers.add(data.decode()); c.close()
    print(f"slowest={slowest:.3f} answers={sorted(answers)}", flush=True)
    """)

# argv: host port mode(plain|garbage); what a non-mesh attacker sends to 15008
POKE_PY = textwrap.dedent("""\
    import socket, sys
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = socket.create_connection((host, port), timeout=10)
    c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" if mode == "plain" else bytes(range(256)) * 4)
    try:
        print("ANSWER", len(c.recv(4096)))
    except OSError as exc:
        print("ERROR", type(exc).__name__)
    """)


def manifest(scripts: Path) -> str:
    def sleeper(name: str, ns: str, sa: str, node: str) -> str:
        return textwrap.dedent(f"""\
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: {name}, namespace: {ns}}}
            spec:
              nodeName: {node}
              serviceAccountName: {sa}
              containers:
              - {{name: c, image: busybox, command: ["sleep", "infinity"]}}
            """)

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
        kind: ServiceAccount
        metadata: {{name: alpha, namespace: mesh}}
        ---
        apiVersion: v1
        kind: ServiceAccount
        metadata: {{name: beta, namespace: mesh}}
        ---
        apiVersion: v1
        kind: ServiceAccount
        metadata: {{name: hasher, namespace: mesh}}
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
          serviceAccountName: hasher
          containers:
          - {{name: s, image: python, command: ["{sys.executable}", "{scripts}/server.py"],
              readinessProbe: {{tcpSocket: {{port: 7000}}, periodSeconds: 1}}}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: greeter, namespace: mesh}}
        spec:
          selector: {{app: greeter}}
          ports: [{{name: tcp, port: 7100}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: greeter, namespace: mesh, labels: {{app: greeter}}}}
        spec:
          nodeName: node2
          containers:
          - {{name: s, image: python, command: ["{sys.executable}", "{scripts}/greeter.py"],
              readinessProbe: {{tcpSocket: {{port: 7100}}, periodSeconds: 1}}}}
        """) + sleeper("alpha", "mesh", "alpha", "node1") + sleeper("beta", "mesh", "beta", "node1") \
        + sleeper("near", "mesh", "alpha", "node2") + sleeper("outsider", "plain", "default", "node1") \
        + sleeper("neighbour", "plain", "default", "node2")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab_machine()
    scripts = tmp_path_factory.mktemp("hbone")
    for name, text in (("server.py", HASHER_PY), ("client.py", CLIENT_PY), ("poke.py", POKE_PY),
                       ("greeter.py", GREETER_PY), ("reuse.py", REUSE_PY)):
        (scripts / name).write_text(text)
    os.chmod(scripts, 0o755)
    before_net, before_mounts = host_network_snapshot(), mounts()
    Lab(NAME).run("down", check=False)
    try:
        lab = lab_up(NAME, "--restart-backoff", "0.5")
        # Bookinfo and curl, unchanged, in the default namespace enrolled as a user would do it
        lab.run("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n"
                                          "  labels: {istio.io/dataplane-mode: ambient}\n")
        lab.run("apply", "-f", str(FIXTURES / "istio" / "bookinfo.yaml"), "-f", str(FIXTURES / "istio" / "curl.yaml"),
                "--wait")
        lab.run("apply", "-f", "-", "--wait", input=manifest(scripts))
        lab.scripts = scripts  # type: ignore[attr-defined]
        yield lab
    finally:
        lab_down_and_check_clean(Lab(NAME), before_net, before_mounts)


def pod_ip(lab: Lab, name: str) -> str:
    return str(next(p["ip"] for p in lab.status()["pods"] if p["name"] == name))


def ns_of(name: str) -> str:
    return "plain" if name in ("outsider", "neighbour") else "mesh"


def run_client(lab: Lab, pod: str, target: str, count: int, parallel: int = 0, size: int = 1000,
               marker: str = "") -> str:
    out = lab.exec(f"{ns_of(pod)}/{pod}", sys.executable, f"{lab.scripts}/client.py",  # type: ignore[attr-defined]
                   target, str(count), str(parallel), str(size), *([marker] if marker else []), timeout=900)
    return out.stdout.strip()


def ztunnel_log(lab: Lab, node: str) -> str:
    return Path(f"/run/meshlab/{lab.name}/ztunnel-{node}.log").read_text()


def metrics(lab: Lab, node: str) -> str:
    return lab.exec(f"node/{node}", "curl", "-s", "http://127.0.0.1:15020/metrics").stdout


def ztunnel_fds(lab: Lab, node: str) -> int:
    pid = int(Path(f"/run/meshlab/{lab.name}/ztunnel-{node}.pid").read_text())
    return len(os.listdir(f"/proc/{pid}/fd"))


def apply(lab: Lab, yaml: str) -> None:
    lab.run("apply", "-f", "-", input=textwrap.dedent(yaml))


def delete(lab: Lab, yaml: str) -> None:
    lab.run("delete", "-f", "-", input=textwrap.dedent(yaml))


def test_only_tls_to_15008_crosses_the_underlay_and_servers_see_real_clients(lab: Lab, tmp_path: Path) -> None:
    pcap = tmp_path / "underlay.pcap"
    os.chmod(tmp_path, 0o755)
    tshark = subprocess.Popen(
        ["ip", "netns", "exec", f"{NAME}-underlay", "tshark", "-q", "-i", "br0", "-f", "tcp", "-w", str(pcap)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert tshark.stderr is not None
        deadline = time.monotonic() + 30
        while "Capturing on" not in (line := tshark.stderr.readline()):
            assert time.monotonic() < deadline and tshark.poll() is None, f"tshark did not start: {line}"
        alpha = pod_ip(lab, "alpha")
        # the first mesh connection of the lab (its TLS handshake is in the capture)
        lab.wait_for("a first mesh connection", lambda: "ok=1 " in run_client(lab, "alpha", "hasher.mesh", 1), 30)
        out = run_client(lab, "alpha", "hasher.mesh", 20, 5, size=200_000, marker=MARKER.decode())
        assert out.startswith(f"DONE 20 ok=20 failed=0 peers={alpha} "), out  # the server saw alpha's own IP
        out = run_client(lab, "alpha", pod_ip(lab, "hasher"), 5, size=50_000, marker=MARKER.decode())
        assert out.startswith(f"DONE 5 ok=5 failed=0 peers={alpha} "), out
        # Bookinfo: curl -> productpage -> details/reviews -> ratings, across both nodes
        for _ in range(6):
            page = lab.exec("default/curl", "curl", "-s", "-H", f"x-marker: {MARKER.decode()}",
                            "http://productpage:9080/productpage?u=normal").stdout
            assert "Book Details" in page and "Book Reviews" in page, page[:500]
        time.sleep(1)
    finally:
        tshark.send_signal(signal.SIGINT)
        tshark.wait(timeout=30)
    fields = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport",
         "-e", "tcp.dstport"], capture_output=True, text=True, check=True).stdout.split("\n")
    packets = [f.split("\t") for f in fields if f.strip()]
    assert len(packets) > 100, f"the capture saw too little: {len(packets)} packets"
    not_hbone = [p for p in packets if "15008" not in (p[2], p[3])]
    assert not_hbone == [], f"{len(not_hbone)} TCP packets on the underlay not to/from 15008: {not_hbone[:5]}"
    raw = pcap.read_bytes()
    assert MARKER not in raw and b"GET /productpage" not in raw and b"/ratings/" not in raw, \
        "application bytes crossed the underlay in clear"
    # Bookinfo's own hops went through the tunnels too (the nodes' access logs say so)
    logs = ztunnel_log(lab, "node1") + ztunnel_log(lab, "node2")
    assert re.search(r"inbound via=hbone .*dst_workload=default/(details|reviews|ratings|productpage)-", logs)
    hello = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", "tcp.port==15008,tls", "-Y", "tls.handshake.type == 1",
         "-T", "fields", "-e", "tls.handshake.extensions_alpn_str", "-e", "tls.handshake.extensions.supported_version"],
        capture_output=True, text=True, check=True).stdout.split("\n")
    hellos = [h for h in hello if h.strip()]
    assert hellos and all("h2" in h and "0x0304" in h for h in hellos), hellos  # TLS 1.3, ALPN h2


def test_strict_refuses_a_non_mesh_client_and_permissive_admits_it(lab: Lab) -> None:
    outsider, hasher = pod_ip(lab, "outsider"), pod_ip(lab, "hasher")
    strict = """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: mesh}
        spec: {mtls: {mode: STRICT}}
        """
    apply(lab, strict)
    try:
        lab.wait_for("STRICT to refuse the outsider",
                     lambda: "ok=0 failed=1" in run_client(lab, "outsider", hasher, 1), 20)
        # a non-mesh pod on the server's own node is refused the same way
        assert "ok=0 failed=1" in run_client(lab, "neighbour", hasher, 1)
        assert "ok=3 failed=0" in run_client(lab, "alpha", "hasher.mesh", 3)  # mesh clients are fine
        log = ztunnel_log(lab, "node2")
        assert re.search(rf"inbound via=plaintext src={re.escape(outsider)}:\d+ .*flags=RBAC .*STRICT", log), log[-3000:]
        apply(lab, strict.replace("STRICT", "PERMISSIVE"))
        lab.wait_for("PERMISSIVE to admit the outsider",
                     lambda: f"ok=1 failed=0 peers={outsider} " in run_client(lab, "outsider", hasher, 1), 20)
        neighbour = pod_ip(lab, "neighbour")
        assert f"ok=1 failed=0 peers={neighbour} " in run_client(lab, "neighbour", hasher, 1)
        assert re.search(rf"inbound via=plaintext src={re.escape(neighbour)}:\d+ .*flags=-$", ztunnel_log(lab, "node2"), re.M)
    finally:
        delete(lab, strict)


def test_a_deny_by_principal_blocks_exactly_that_caller_in_metrics_and_logs(lab: Lab) -> None:
    deny = """\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: deny-alpha, namespace: mesh}
        spec:
          selector: {matchLabels: {app: hasher}}
          action: DENY
          rules: [{from: [{source: {principals: ["cluster.local/ns/mesh/sa/alpha"]}}]}]
        """
    apply(lab, deny)
    try:
        lab.wait_for("the DENY to apply", lambda: "ok=0 failed=2" in run_client(lab, "alpha", "hasher.mesh", 2), 20)
        assert "ok=3 failed=0" in run_client(lab, "beta", "hasher.mesh", 3)
        assert "ok=0 failed=1" in run_client(lab, "near", "hasher.mesh", 1)  # alpha's identity on the same node
        text = metrics(lab, "node2")
        denied = re.findall(r'istio_tcp_connections_closed_total\{([^}]*response_flags="RBAC"[^}]*)\} (\d+)', text)
        principals = {re.search(r'source_principal="([^"]*)"', labels).group(1) for labels, _ in denied}  # type: ignore[union-attr]
        assert "spiffe://cluster.local/ns/mesh/sa/alpha" in principals, denied
        assert "spiffe://cluster.local/ns/mesh/sa/beta" not in principals, denied
        log = ztunnel_log(lab, "node2")
        assert re.search(r"src_principal=spiffe://cluster.local/ns/mesh/sa/alpha .*flags=RBAC policy='mesh/deny-alpha'",
                         log), log[-3000:]
        assert "src_principal=spiffe://cluster.local/ns/mesh/sa/beta" in log
        assert not re.search(r"src_principal=spiffe://cluster.local/ns/mesh/sa/beta .*flags=RBAC", log)
    finally:
        delete(lab, deny)
    lab.wait_for("the DENY to go", lambda: "ok=1 failed=0" in run_client(lab, "alpha", "hasher.mesh", 1), 20)


def test_an_allow_only_policy_admits_only_its_principals(lab: Lab) -> None:
    allow = """\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: only-beta, namespace: mesh}
        spec:
          selector: {matchLabels: {app: hasher}}
          action: ALLOW
          rules: [{from: [{source: {principals: ["cluster.local/ns/mesh/sa/beta"]}}]}]
        """
    apply(lab, allow)
    try:
        lab.wait_for("the ALLOW to apply", lambda: "ok=0 failed=1" in run_client(lab, "alpha", "hasher.mesh", 1), 20)
        assert "ok=3 failed=0" in run_client(lab, "beta", "hasher.mesh", 3)
        assert "ok=0 failed=1" in run_client(lab, "near", "hasher.mesh", 1)
        assert "ok=0 failed=1" in run_client(lab, "outsider", pod_ip(lab, "hasher"), 1)  # plaintext: no principal
    finally:
        delete(lab, allow)
    lab.wait_for("the ALLOW to go", lambda: "ok=1 failed=0" in run_client(lab, "alpha", "hasher.mesh", 1), 20)


def test_bad_peers_on_15008_are_refused_without_crash_or_leak(lab: Lab) -> None:
    hasher = pod_ip(lab, "hasher")
    run_client(lab, "alpha", "hasher.mesh", 5)
    before = ztunnel_fds(lab, "node2")
    for mode in ("plain", "garbage") * 5:
        out = lab.exec("plain/outsider", sys.executable, f"{lab.scripts}/poke.py", hasher, "15008", mode).stdout  # type: ignore[attr-defined]
        assert out.startswith(("ANSWER", "ERROR")), out
    log = ztunnel_log(lab, "node2")
    refused = re.findall(r"inbound HBONE connection from [\d.]+:\d+ to [\d.]+:15008 refused: TLS handshake failed", log)
    assert len(refused) >= 10, log[-2000:]
    assert re.search(r'istio_tcp_connections_closed_total\{[^}]*response_flags="DPE"[^}]*\} 1\d', metrics(lab, "node2"))
    assert "ok=5 failed=0" in run_client(lab, "alpha", "hasher.mesh", 5)  # still serving
    lab.wait_for("ztunnel's descriptors to settle", lambda: ztunnel_fds(lab, "node2") <= before + 2, 20)


def test_a_gigabyte_and_a_thousand_concurrent_connections_arrive_byte_exact(lab: Lab) -> None:
    alpha = pod_ip(lab, "alpha")
    out = run_client(lab, "alpha", "hasher.mesh", 1, size=1_000_000_000)
    assert out.startswith(f"DONE 1 ok=1 failed=0 peers={alpha} "), out
    out = run_client(lab, "alpha", "hasher.mesh", 1000, 1000, size=10_000)
    assert out.startswith(f"DONE 1000 ok=1000 failed=0 peers={alpha} "), out
    near = pod_ip(lab, "near")
    out = run_client(lab, "near", "hasher.mesh", 1000, 1000, size=10_000)  # same node: served locally
    assert out.startswith(f"DONE 1000 ok=1000 failed=0 peers={near} "), out
    opened = re.findall(r'istio_tcp_connections_opened_total\{[^}]*connection_security_policy="mutual_tls"[^}]*\} (\S+)',
                        metrics(lab, "node2"))
    assert sum(float(v) for v in opened) >= 2000


@pytest.mark.parametrize("client", ["alpha", "near"])
def test_a_source_port_reused_while_ztunnel_holds_it_in_time_wait_connects_at_once(lab: Lab, client: str) -> None:
    """The server closes first, so ztunnel's socket facing the client ends in TIME_WAIT; the
    client's next SYN from the same port must be accepted at once, not after a 1 s resend."""
    out = lab.exec(f"mesh/{client}", sys.executable, f"{lab.scripts}/reuse.py", "greeter.mesh", "5").stdout  # type: ignore[attr-defined]
    slowest = float(re.search(r"slowest=([\d.]+)", out).group(1))  # type: ignore[union-attr]
    assert slowest < 0.5, out
    assert f"hello {pod_ip(lab, client)}" in out, out
