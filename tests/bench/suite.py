"""``meshctl bench``: every scenario side by side, on one lab, in one run.

One two-node lab (``meshctl lab up --nodes 2``, lab ``mlsuite``) carries seven scenarios:

========== ============================================================================================
no_mesh    plain client pod (node1) -> Service VIP (kube-proxy DNAT) -> plain server pod (node2)
stunnel    the same pods through a stunnel pair (mutual TLS 1.3, ECDSA P-256, both sides verify)
haproxy    the same pods through an haproxy pair (TCP mode, mutual TLS 1.3, one thread each)
mesh_cross enrolled client (node1) -> node1's ztunnel -> HBONE -> node2's ztunnel -> enrolled server
mesh_same  enrolled client (node2) -> node2's ztunnel -> enrolled server (node2), no network hop
waypoint   client (node1) -> ztunnel -> HBONE -> namespace waypoint (L7) -> HBONE -> ztunnel -> server
nginx      plain client -> nginx reverse proxy (one worker, on the waypoint's node) -> plain server
========== ============================================================================================

Every server is nginx (one worker, keep-alive, a 1 KiB file) and ``iperf3 -s``. The measures,
each scenario in turn for every repeat (round robin, so all meet the same machine):

- ``iperf3 -t N``: one stream of bulk data (not through the L7 scenarios: the nginx proxy is HTTP
  only, and the waypoint is measured on HTTP);
- ``wrk -t1 -c16 --latency``: requests/s at saturation, with p50/p90/p99; the CPU seconds each
  component (ztunnels, waypoint, stunnels, haproxies, nginx proxy) used per 1000 of them, from
  ``/proc/<pid>/stat``;
- ``h2load --h1 -c4 --rps``: latency p50/p90/p99 at a fixed offered rate (the same for every
  scenario, below the slowest one's saturation);
- ``wrk -c8 -H 'Connection: close'``: new connections per second;
- memory: VmRSS of each component idle, then while a client holds N connections open through
  the scenario (each carried one request), scaled to 1000 connections.

Every run is checked to have taken its path (server and proxy request counters, ztunnel access
logs, the iperf3 server's view of its peer). Socket errors or non-2xx answers are reported as
problems. The control-plane and CA benchmarks (``bench_controlplane``, ``bench_ca``) run after
the lab is down. The result is written as JSON, Markdown with ratio tables, and PNG charts
(``tests/bench/report.py``).

    meshctl bench [--quick] [--out DIR]          # or: .venv/bin/python -m tests.bench.suite
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from meshctl.lab import netlab  # noqa: E402
from tests.bench import loadgen, peers, report  # noqa: E402
from tests.bench.benchlab import (  # noqa: E402
    WAIT_S,
    BenchError,
    BenchLab,
    interrupt,
    is_problem_line,
)

LAB = "mlsuite"
NS_PLAIN, NS_MESH, NS_WP = "bench-plain", "bench-mesh", "bench-wp"
HTTP, IPERF, STATUS, METRICS = 8080, 5201, 8090, 15020
ST_HTTP_TLS, ST_IPERF_TLS, ST_HTTP_LOCAL, ST_IPERF_LOCAL = 15444, 15443, 15080, 15201
HA_HTTP_TLS, HA_IPERF_TLS, HA_HTTP_LOCAL, HA_IPERF_LOCAL = 16444, 16443, 16080, 16201
FIXED_CONNECTIONS = 4
CONN_CONNECTIONS = 8
WAYPOINT_LABEL = "gateway.networking.k8s.io/gateway-name"
TOOLS = ("ip", "nft", "nsenter", "ss", "curl", "wrk", "h2load", "iperf3", "nginx", "stunnel", "haproxy")

BENCH = BenchLab("bench", LAB)
log, phase = BENCH.log, BENCH.phase


@dataclass(frozen=True)
class Settings:
    mode: str
    repeats: int
    iperf_s: int
    load_s: int
    rate_rps: int
    conn_s: int
    saturation_connections: int
    held_connections: int
    controlplane: dict[str, int] | None
    ca: dict[str, int] | None

    def public(self) -> dict[str, Any]:
        return {"repeats": self.repeats, "iperf_s": self.iperf_s, "load_s": self.load_s, "rate_rps": self.rate_rps,
                "conn_s": self.conn_s, "saturation_connections": self.saturation_connections,
                "held_connections": self.held_connections, "controlplane": self.controlplane, "ca": self.ca}


DEFAULT = Settings("default", repeats=3, iperf_s=3, load_s=4, rate_rps=400, conn_s=2, saturation_connections=16,
                   held_connections=1000,
                   controlplane={"nodes": 1000, "pods": 10_000, "rounds": 10, "burst": 300},
                   ca={"signatures": 2000, "openssl_certs": 50})
QUICK = Settings("quick", repeats=1, iperf_s=1, load_s=2, rate_rps=400, conn_s=1, saturation_connections=16,
                 held_connections=250,
                 controlplane={"nodes": 100, "pods": 1000, "rounds": 3, "burst": 100},
                 ca={"signatures": 200, "openssl_certs": 10})


@dataclass
class Scenario:
    name: str
    label: str
    kind: str                      # floor | peer | mesh
    layer: str                     # - | L4 | L7
    path: str
    client: tuple[str, str]        # (namespace, pod)
    host: str                      # what the client connects to for HTTP
    port: int
    iperf: tuple[str, int] | None  # (host, port); None: not measured
    iperf_peer: str | None         # the address the iperf3 server must see; None: any one address
    access: tuple[str, str] | None  # (node, via) of the ztunnel access lines a connection makes; None: no line
    components: tuple[str, ...]
    server: tuple[str, str]        # the HTTP server pod
    proxy: str | None = None       # "waypoint" | "nginx proxy": a request counter to check

    def url(self) -> str:
        return f"http://{self.host}:{self.port}/{peers.SMALL_FILE}"

    def meta(self) -> dict[str, str]:
        return {"name": self.name, "label": self.label, "kind": self.kind, "layer": self.layer, "path": self.path}


COMPARISONS = (("mesh_cross", "stunnel"), ("mesh_cross", "haproxy"), ("mesh_same", "stunnel"),
               ("waypoint", "nginx"))


# --- the pods -------------------------------------------------------------------------------


def _pod(ns: str, name: str, node: str, containers: dict[str, list[str]], ready_port: int | None = None,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    specs: list[dict[str, Any]] = [{"name": c, "image": cmd[0], "command": cmd} for c, cmd in containers.items()]
    if ready_port is not None:
        specs[0]["readinessProbe"] = {"tcpSocket": {"port": ready_port}, "periodSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name, **(labels or {})}},
            "spec": {"nodeName": node, "containers": specs}}


def _service(ns: str, name: str, iperf: bool = True) -> dict[str, Any]:
    ports = [{"name": "http", "port": HTTP, "targetPort": HTTP}]
    if iperf:
        ports.append({"name": "tcp-iperf", "port": IPERF, "targetPort": IPERF})
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": ports}}


def _yaml(docs: list[dict[str, Any]]) -> str:
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"  # JSON is YAML


def _server(tmp: Path, ns: str) -> dict[str, list[str]]:
    return {"nginx": peers.nginx_server(tmp, f"server-{ns}", HTTP, STATUS),
            "iperf3": ["iperf3", "-s", "-p", str(IPERF)]}


def workloads_manifest(tmp: Path) -> str:
    certs = tmp / "certs"
    plain_server = _server(tmp, NS_PLAIN)
    plain_server["stunnel"] = peers.stunnel_server(tmp, certs, {
        "iperf": (f"0.0.0.0:{ST_IPERF_TLS}", f"127.0.0.1:{IPERF}"),
        "http": (f"0.0.0.0:{ST_HTTP_TLS}", f"127.0.0.1:{HTTP}")}, debug="notice")
    plain_server["haproxy"] = peers.haproxy_server(tmp, certs, {
        "iperf": (f"0.0.0.0:{HA_IPERF_TLS}", f"127.0.0.1:{IPERF}"),
        "http": (f"0.0.0.0:{HA_HTTP_TLS}", f"127.0.0.1:{HTTP}")})
    sleep = {"sleep": ["sleep", "infinity"]}
    return _yaml([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS_PLAIN}},
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NS_MESH, "labels": {"istio.io/dataplane-mode": "ambient"}}},
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NS_WP, "labels": {"istio.io/dataplane-mode": "ambient",
                                                "istio.io/use-waypoint": "waypoint"}}},
        _pod(NS_PLAIN, "server", "node2", plain_server, ready_port=HTTP), _service(NS_PLAIN, "server"),
        _pod(NS_MESH, "server", "node2", _server(tmp, NS_MESH), ready_port=HTTP), _service(NS_MESH, "server"),
        _pod(NS_MESH, "client-far", "node1", sleep), _pod(NS_MESH, "client-near", "node2", sleep),
        _pod(NS_WP, "server", "node2", _server(tmp, NS_WP), ready_port=HTTP), _service(NS_WP, "server"),
        _pod(NS_WP, "client", "node1", sleep),
    ])


def plain_client_manifest(tmp: Path, server_ip: str) -> str:
    certs = tmp / "certs"
    return _yaml([_pod(NS_PLAIN, "client", "node1", {
        "stunnel": peers.stunnel_client(tmp, certs, {
            "iperf": (f"127.0.0.1:{ST_IPERF_LOCAL}", f"{server_ip}:{ST_IPERF_TLS}"),
            "http": (f"127.0.0.1:{ST_HTTP_LOCAL}", f"{server_ip}:{ST_HTTP_TLS}")}, debug="notice"),
        "haproxy": peers.haproxy_client(tmp, certs, {
            "iperf": (f"127.0.0.1:{HA_IPERF_LOCAL}", f"{server_ip}:{HA_IPERF_TLS}"),
            "http": (f"127.0.0.1:{HA_HTTP_LOCAL}", f"{server_ip}:{HA_HTTP_TLS}")})})])


def waypoint_manifest(namespace: str = NS_WP) -> str:
    """A namespace waypoint named ``waypoint`` (the control plane deploys it)."""
    return _yaml([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                   "metadata": {"name": "waypoint", "namespace": namespace, "labels": {"istio.io/waypoint-for": "service"}},
                   "spec": {"gatewayClassName": "istio-waypoint",
                            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}])


def proxy_manifest(tmp: Path, node: str, upstream_ip: str) -> str:
    cmd = peers.nginx_proxy(tmp, "proxy", HTTP, STATUS, upstream_ip, f"server.{NS_PLAIN}.svc.cluster.local")
    return _yaml([_pod(NS_PLAIN, "proxy", node, {"nginx": cmd}, ready_port=HTTP),
                  _service(NS_PLAIN, "proxy", iperf=False)])


# --- the lab as the bench sees it -----------------------------------------------------------


def host(ns: str, svc: str = "server") -> str:
    return f"{svc}.{ns}.svc.cluster.local"


_ACCESS = re.compile(r"ztunnel\.access: (\w+) via=(\S+) src=([\d.]+):\d+ .* flags=(\S+)")
AccessKey = tuple[str, str, str, str, str]  # node, direction, via, source IP, flags


class AccessLog:
    """The ztunnels' access-log lines since a mark (file offsets, so each read is only the new part)."""

    def __init__(self, state_dir: Path) -> None:
        self.files = {node: state_dir / f"ztunnel-{node}.log" for node in ("node1", "node2")}

    def mark(self) -> dict[str, int]:
        return {node: (path.stat().st_size if path.exists() else 0) for node, path in self.files.items()}

    def since(self, mark: dict[str, int]) -> collections.Counter[AccessKey]:
        counts: collections.Counter[AccessKey] = collections.Counter()
        for node, path in self.files.items():
            with path.open("rb") as f:
                f.seek(mark.get(node, 0))
                text = f.read().decode(errors="replace")
            # a line cut by the mark or the end has no match; a connection's line is written whole
            for m in _ACCESS.finditer(text):
                counts[(node, m.group(1), m.group(2), m.group(3), m.group(4))] += 1
        return counts


@dataclass
class Lab:
    status: dict[str, Any]
    components: dict[str, list[int]] = field(default_factory=dict)
    access: AccessLog = field(default_factory=lambda: AccessLog(BENCH.state_dir))

    @property
    def pods(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(p["namespace"], p["name"]): p for p in self.status["pods"]}

    def netns(self, pod: tuple[str, str]) -> str:
        return str(self.pods[pod]["netns"])

    def ip(self, pod: tuple[str, str]) -> str:
        return str(self.pods[pod]["ip"])

    def cluster_ip(self, ns: str, name: str) -> str:
        for s in self.status["services"]:
            if s["namespace"] == ns and s["name"] == name and s.get("cluster_ip"):
                return str(s["cluster_ip"])
        raise BenchError(f"Service {ns}/{name} has no ClusterIP")

    def in_pod(self, pod: tuple[str, str], *cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a command in the pod's network namespace (what ``meshctl lab exec`` does, without
        starting Python for it)."""
        return subprocess.run(["ip", "netns", "exec", self.netns(pod), *cmd], capture_output=True, text=True,
                              timeout=timeout, check=False)

    def waypoint(self) -> dict[str, Any] | None:
        """The waypoint pod's status entry (the control plane names the pod)."""
        return next((p for p in self.status["pods"]
                     if p["namespace"] == NS_WP and p["labels"].get(WAYPOINT_LABEL) == "waypoint"), None)

    def waypoint_pod(self) -> tuple[str, str]:
        wp = self.waypoint()
        if wp is None:
            raise BenchError(f"no waypoint pod in {NS_WP}")
        return (NS_WP, str(wp["name"]))

    # --- counters ---------------------------------------------------------------------------

    def stub_status(self, pod: tuple[str, str]) -> int:
        """Requests an nginx has handled so far (its stub_status; the read itself included)."""
        out = self.in_pod(pod, "curl", "-s", "-m", "5", f"http://127.0.0.1:{STATUS}/status", timeout=15)
        count = loadgen.parse_stub_status(out.stdout)
        if out.returncode != 0 or count is None:
            raise BenchError(f"cannot read the stub_status of nginx in {pod[0]}/{pod[1]} (curl exit "
                             f"{out.returncode}): {(out.stdout + out.stderr)[-300:]}")
        return count

    def waypoint_requests(self) -> collections.Counter[str]:
        """istio_requests_total{reporter="waypoint"} by response code."""
        pod = self.waypoint_pod()
        out = self.in_pod(pod, "curl", "-s", "-m", "5", f"http://127.0.0.1:{METRICS}/metrics", timeout=15)
        if out.returncode != 0:
            raise BenchError(f"cannot read the waypoint's metrics (curl exit {out.returncode}): {out.stderr[-300:]}")
        return loadgen.waypoint_requests_by_code(out.stdout)

    def proxy_count(self, sc: Scenario) -> int:
        if sc.proxy == "waypoint":
            return sum(self.waypoint_requests().values())
        if sc.proxy == "nginx proxy":
            return self.stub_status((NS_PLAIN, "proxy"))
        return 0

    def _per_component(self, names: tuple[str, ...], read: Callable[[list[int]], float | None]) -> dict[str, float]:
        out = {}
        for name in names:
            value = read(self.components[name])
            if value is None:
                raise BenchError(f"{name} (pids {self.components[name]}) is gone; its logs are under "
                                 f"{BENCH.state_dir}")
            out[name] = value
        return out

    def cpu(self, names: tuple[str, ...]) -> dict[str, float]:
        """CPU seconds each component has used so far."""
        return self._per_component(names, loadgen.cpu_seconds)

    def rss(self, names: tuple[str, ...]) -> dict[str, float]:
        """VmRSS of each component now, MB."""
        return self._per_component(names, loadgen.rss_mb)


def _pids(netns: str, match: Callable[[int], bool]) -> list[int]:
    out = []
    for pid in netlab.pids_in_netns(netns):
        with contextlib.suppress(OSError):  # the process may be gone already
            if match(pid):
                out.append(pid)
    return sorted(out)


def pids_by_comm(netns: str, comm: str) -> list[int]:
    """Processes in the namespace whose name starts with ``comm``."""
    return _pids(netns, lambda pid: Path(f"/proc/{pid}/comm").read_text().strip().startswith(comm))


def pids_by_cmdline(netns: str, marker: bytes) -> list[int]:
    """Processes in the namespace whose command line contains ``marker``."""
    return _pids(netns, lambda pid: marker in Path(f"/proc/{pid}/cmdline").read_bytes())


def setup_lab(tmp: Path) -> tuple[Lab, dict[str, Scenario]]:
    peers.make_certificates(tmp / "certs", "meshctl bench CA")
    with phase("lab up (2 nodes)"):
        BENCH.meshctl("up", "--nodes", "2", "--restart-backoff", "0.5", timeout=240)
    with phase("apply the namespaces, servers, mesh clients and the waypoint Gateway"):
        BENCH.meshctl("apply", "-f", "-", "--wait", "--timeout", "90", input=workloads_manifest(tmp), timeout=150)
        BENCH.meshctl("apply", "-f", "-", input=waypoint_manifest(), timeout=60)
        lab = Lab(BENCH.lab_status())
    with phase("apply the plain client (stunnel and haproxy clients) and wait for the waypoint"):
        BENCH.meshctl("apply", "-f", "-", "--wait", "--timeout", "90",
                      input=plain_client_manifest(tmp, lab.ip((NS_PLAIN, "server"))), timeout=150)
        deadline = time.monotonic() + 90
        while True:
            lab = Lab(BENCH.lab_status())
            wp = lab.waypoint()
            if wp is not None and wp["ready"] == "1/1":
                break
            if time.monotonic() > deadline:
                raise BenchError(f"no ready waypoint pod in {NS_WP} after 90 s: {wp}")
            time.sleep(0.5)
        wp_node = str(wp["node"])
        log(f"waypoint pod {wp['name']} is ready on {wp_node}")
    with phase(f"apply the nginx reverse proxy on {wp_node} (the waypoint's node)"):
        BENCH.meshctl("apply", "-f", "-", "--wait", "--timeout", "90",
                      input=proxy_manifest(tmp, wp_node, lab.cluster_ip(NS_PLAIN, "server")), timeout=150)
        lab = Lab(BENCH.lab_status())
        for key, p in lab.pods.items():
            if key[0].startswith("bench-") and p["status"] != "Running":
                raise BenchError(f"pod {key[0]}/{key[1]} is {p['status']} on {p['node']}")
    with phase("wait for every server, stunnel and haproxy to listen"):
        for key, port, what in (
                ((NS_PLAIN, "server"), HTTP, "nginx"), ((NS_PLAIN, "server"), IPERF, "iperf3"),
                ((NS_PLAIN, "server"), ST_HTTP_TLS, "stunnel server"), ((NS_PLAIN, "server"), HA_HTTP_TLS, "haproxy server"),
                ((NS_PLAIN, "server"), ST_IPERF_TLS, "stunnel server"), ((NS_PLAIN, "server"), HA_IPERF_TLS, "haproxy server"),
                ((NS_PLAIN, "client"), ST_HTTP_LOCAL, "stunnel client"), ((NS_PLAIN, "client"), HA_HTTP_LOCAL, "haproxy client"),
                ((NS_PLAIN, "client"), ST_IPERF_LOCAL, "stunnel client"), ((NS_PLAIN, "client"), HA_IPERF_LOCAL, "haproxy client"),
                ((NS_MESH, "server"), HTTP, "nginx"), ((NS_MESH, "server"), IPERF, "iperf3"),
                ((NS_WP, "server"), HTTP, "nginx"), ((NS_WP, "server"), IPERF, "iperf3"),
                ((NS_PLAIN, "proxy"), HTTP, "nginx proxy"), ((NS_PLAIN, "proxy"), STATUS, "nginx proxy")):
            BENCH.wait_listening(lab.netns(key), port, f"{what} in {key[0]}/{key[1]}")
    with phase("finding the component processes"):
        wp_key = lab.waypoint_pod()
        lab.components = {
            "ztunnel node1": [BENCH.ztunnel_pid("node1")], "ztunnel node2": [BENCH.ztunnel_pid("node2")],
            "waypoint": pids_by_cmdline(lab.netns(wp_key), b"waypoint"),
            "stunnel client": pids_by_comm(lab.netns((NS_PLAIN, "client")), "stunnel"),
            "stunnel server": pids_by_comm(lab.netns((NS_PLAIN, "server")), "stunnel"),
            "haproxy client": pids_by_comm(lab.netns((NS_PLAIN, "client")), "haproxy"),
            "haproxy server": pids_by_comm(lab.netns((NS_PLAIN, "server")), "haproxy"),
            "nginx proxy": pids_by_comm(lab.netns((NS_PLAIN, "proxy")), "nginx"),
        }
        empty = [k for k, v in lab.components.items() if not v]
        if empty:
            raise BenchError(f"no process found for {', '.join(empty)}")
    wp_path = ("ztunnel node1" if wp_node == "node1" else f"ztunnel node1 -> HBONE -> {wp_node}")
    scenarios = [
        Scenario("no_mesh", "no mesh", "floor", "-", "plain client (node1) -> Service VIP -> server (node2)",
                 (NS_PLAIN, "client"), host(NS_PLAIN), HTTP, (host(NS_PLAIN), IPERF), lab.ip((NS_PLAIN, "client")),
                 None, (), (NS_PLAIN, "server")),
        Scenario("stunnel", "stunnel mTLS", "peer", "L4",
                 "plain client -> stunnel client -> mTLS 1.3 -> stunnel server (node2) -> server",
                 (NS_PLAIN, "client"), "127.0.0.1", ST_HTTP_LOCAL, ("127.0.0.1", ST_IPERF_LOCAL), "127.0.0.1",
                 None, ("stunnel client", "stunnel server"), (NS_PLAIN, "server")),
        Scenario("haproxy", "haproxy mTLS", "peer", "L4",
                 "plain client -> haproxy client -> mTLS 1.3 -> haproxy server (node2) -> server",
                 (NS_PLAIN, "client"), "127.0.0.1", HA_HTTP_LOCAL, ("127.0.0.1", HA_IPERF_LOCAL), "127.0.0.1",
                 None, ("haproxy client", "haproxy server"), (NS_PLAIN, "server")),
        Scenario("mesh_cross", "mesh L4, 2 nodes", "mesh", "L4",
                 "client (node1) -> ztunnel node1 -> HBONE mTLS -> ztunnel node2 -> server",
                 (NS_MESH, "client-far"), host(NS_MESH), HTTP, (host(NS_MESH), IPERF),
                 lab.ip((NS_MESH, "client-far")), ("node1", "hbone"), ("ztunnel node1", "ztunnel node2"),
                 (NS_MESH, "server")),
        Scenario("mesh_same", "mesh L4, 1 node", "mesh", "L4", "client (node2) -> ztunnel node2 -> server (node2)",
                 (NS_MESH, "client-near"), host(NS_MESH), HTTP, (host(NS_MESH), IPERF),
                 lab.ip((NS_MESH, "client-near")), ("node2", "local"), ("ztunnel node2",), (NS_MESH, "server")),
        Scenario("waypoint", "mesh + waypoint", "mesh", "L7",
                 f"client (node1) -> {wp_path} -> waypoint ({wp_node}) -> HBONE -> ztunnel node2 -> server",
                 # no iperf3: its control connection hung through the waypoint's opaque TCP path after
                 # a failed results exchange (see the README); the waypoint is measured on HTTP
                 (NS_WP, "client"), host(NS_WP), HTTP, None, None, ("node1", "waypoint"),
                 ("ztunnel node1", "waypoint", "ztunnel node2"), (NS_WP, "server"), proxy="waypoint"),
        Scenario("nginx", "nginx L7 proxy", "peer", "L7",
                 f"plain client -> Service VIP -> nginx proxy ({wp_node}) -> Service VIP -> server",
                 (NS_PLAIN, "client"), host(NS_PLAIN, "proxy"), HTTP, None, None, None, ("nginx proxy",),
                 (NS_PLAIN, "server"), proxy="nginx proxy"),
    ]
    return lab, {s.name: s for s in scenarios}


# --- one checked run ------------------------------------------------------------------------


@dataclass
class Before:
    server: int
    proxy: int
    mark: dict[str, int]
    cpu: dict[str, float]


class Runner:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.problems: list[str] = []
        self.retries: list[str] = []

    def before(self, sc: Scenario, http: bool) -> Before:
        return Before(server=self.lab.stub_status(sc.server) if http else 0,
                      proxy=self.lab.proxy_count(sc) if http else 0,
                      mark=self.lab.access.mark(), cpu=self.lab.cpu(sc.components))

    def check(self, sc: Scenario, before: Before, what: str, requests: int, connections: int,
              http: bool) -> dict[str, float]:
        """Fail unless the traffic took the scenario's path; returns each component's CPU seconds."""
        cpu_after = self.lab.cpu(sc.components)
        cpu = {k: cpu_after[k] - before.cpu[k] for k in sc.components}
        client_ip = self.lab.ip(sc.client)
        deadline = time.monotonic() + 5
        while True:  # ztunnel logs a connection when it ends; the tools close theirs on exit
            problems = []
            if http:
                served = self.lab.stub_status(sc.server) - before.server
                if served < requests:
                    problems.append(f"the server counted {served} requests, the client completed {requests}")
                if sc.proxy is not None:
                    proxied = self.lab.proxy_count(sc) - before.proxy
                    if proxied < requests:
                        problems.append(f"the {sc.proxy} counted {proxied} requests, the client completed {requests}")
            new = self.lab.access.since(before.mark)
            mine = {k: n for k, n in new.items() if k[3] == client_ip and k[1] == "outbound"}
            if sc.access is None:
                if mine:
                    problems.append(f"a ztunnel logged connections from {client_ip}, which is outside the mesh: "
                                    f"{dict(mine)}")
            else:
                node, via = sc.access
                got = sum(n for k, n in mine.items() if k[0] == node and k[2] == via)
                if got < connections:
                    problems.append(f"{node}'s ztunnel logged {got} outbound via={via} connections from {client_ip}, "
                                    f"expected {connections}")
                other = {k: n for k, n in mine.items() if k[2] != via}
                if other:
                    problems.append(f"connections from {client_ip} went another way: {dict(other)}")
            if not problems:
                return cpu
            if time.monotonic() > deadline:
                raise BenchError(f"{sc.name} {what}: the traffic did not take the {sc.name} path: "
                                 f"{'; '.join(problems)}")
            time.sleep(0.2)

    def record_bad(self, sc: Scenario, what: str, values: dict[str, float]) -> None:
        bad = values.get("errors", 0.0) + values.get("non_2xx", 0.0)
        if bad:
            msg = (f"{sc.label}, {what}: {values.get('errors', 0):.0f} socket errors, "
                   f"{values.get('non_2xx', 0):.0f} non-2xx answers")
            log(msg)
            self.problems.append(msg)

    # --- the tools --------------------------------------------------------------------------

    def wrk(self, sc: Scenario, connections: int, seconds: int, close: bool = False) -> dict[str, float]:
        extra = ["-H", "Connection: close"] if close else []
        out = self.lab.in_pod(sc.client, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra,
                              sc.url(), timeout=seconds + 40)
        if out.returncode != 0:
            raise BenchError(f"wrk exited {out.returncode}: {(out.stderr or out.stdout)[-600:]}")
        res = loadgen.parse_wrk(out.stdout)
        if res["requests"] <= 0:
            raise BenchError(f"wrk completed no request: {out.stdout[-600:]}")
        return res

    def h2load_rate(self, sc: Scenario, rate: int, seconds: int) -> dict[str, float]:
        log_file = self.tmp / f"h2load-{sc.name}.log"
        with contextlib.suppress(FileNotFoundError):
            log_file.unlink()
        per_client = max(1, rate // FIXED_CONNECTIONS)
        out = self.lab.in_pod(sc.client, "h2load", "--h1", "-t1", f"-c{FIXED_CONNECTIONS}", f"--rps={per_client}",
                              f"-D{seconds}", f"--log-file={log_file}", sc.url(), timeout=seconds + 40)
        if out.returncode != 0 or not log_file.exists():
            raise BenchError(f"h2load exited {out.returncode}: {(out.stderr or out.stdout)[-600:]}")
        return loadgen.parse_h2load(out.stdout, log_file.read_text().splitlines())

    def iperf(self, sc: Scenario, seconds: int) -> dict[str, Any]:
        assert sc.iperf is not None
        for attempt in (1, 2):
            out = self.lab.in_pod(sc.client, "iperf3", "-c", sc.iperf[0], "-p", str(sc.iperf[1]), "-t", str(seconds),
                                  "-J", "--get-server-output", timeout=seconds + 40)
            try:
                res = loadgen.parse_iperf(out.stdout)
            except BenchError as exc:
                # iperf3 3.12 reads the server's results on a non-blocking control socket and gives up
                # when the length prefix and the JSON body arrive apart, which a proxy can cause; its
                # control connection also breaks now and then. One retry, logged with the reason.
                if attempt == 1:
                    log(f"{sc.name}: iperf3 failed ({str(exc)[-200:]}); running it once more")
                    self.retries.append(f"{sc.name} iperf3: {str(exc)[-300:]}")
                    continue
                raise
            peers_seen = res["peers"]
            if sc.iperf_peer is not None and peers_seen != [sc.iperf_peer]:
                raise BenchError(f"the iperf3 server saw peer(s) {peers_seen}, expected {sc.iperf_peer}")
            if sc.iperf_peer is None and len(peers_seen) != 1:
                raise BenchError(f"the iperf3 server saw peer(s) {peers_seen}, expected one")
            return res
        raise AssertionError("unreachable")


# --- holding connections open ---------------------------------------------------------------

HOLD_PY = textwrap.dedent("""\
    import resource, socket, sys, time
    host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
    req = f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n".encode()
    held = []

    def fail(msg):
        print(f"error {msg}", flush=True)
        sys.exit(1)

    def one(i):
        s = socket.create_connection(addr, timeout=10)
        s.sendall(req)
        buf = b""
        while b"\\r\\n\\r\\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                fail(f"connection {i}: closed before the response headers")
            buf += chunk
        head, _, body = buf.partition(b"\\r\\n\\r\\n")
        if not head.startswith(b"HTTP/1.1 200"):
            fail(f"connection {i}: {head[:60]!r}")
        length = 0
        for line in head.split(b"\\r\\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                fail(f"connection {i}: closed inside the body")
            body += chunk
        held.append(s)

    for batch in (1, 2):
        deadline = time.monotonic() + 120
        for i in range(n):
            if time.monotonic() > deadline:
                fail(f"batch {batch}: only {i} of {n} connections opened in 120 s")
            one(i)
        print(f"ready {batch} {len(held)}", flush=True)
        if batch == 1 and not sys.stdin.readline():
            sys.exit(0)
    sys.stdin.read()
    for s in held:
        s.close()
""")


def hold_connections(lab: Lab, sc: Scenario, n: int) -> dict[str, float]:
    """VmRSS growth of each component in MB per 1000 open connections through the scenario (each
    carried one request). The client opens ``n`` connections, then ``n`` more; only the second
    batch is measured, because the first one takes up memory a one-process proxy freed after an
    earlier scenario and kept (Python's allocator and glibc's keep freed memory for reuse)."""
    proc = subprocess.Popen(["ip", "netns", "exec", lab.netns(sc.client), sys.executable, "-c", HOLD_PY, sc.host,
                             str(sc.port), f"/{peers.SMALL_FILE}", str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    stdout = proc.stdout

    def wait_ready(batch: int) -> None:
        ready, _, _ = select.select([stdout], [], [], 150)
        line = stdout.readline().strip() if ready else ""
        if not line.startswith(f"ready {batch}"):
            err = proc.stderr.read()[-600:] if proc.stderr and proc.poll() is not None else ""
            raise BenchError(f"holding {n} connections through {sc.name} failed in batch {batch}: "
                             f"{line or 'no answer in 150 s'} {err}".strip())
        time.sleep(0.5)  # let the proxies finish what the last connection started

    try:
        wait_ready(1)
        rss_before = lab.rss(sc.components)
        proc.stdin.write("more\n")
        proc.stdin.flush()
        wait_ready(2)
        rss_after = lab.rss(sc.components)
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return {k: (rss_after[k] - rss_before[k]) * 1000.0 / n for k in sc.components}


# --- the measures ---------------------------------------------------------------------------


MEASURES: tuple[tuple[str, str, str, str], ...] = (
    # key, label, unit, better
    ("iperf_gbps", "iperf3 bulk throughput", "Gb/s", "higher"),
    ("sat_rps", "requests/s at saturation (wrk -c{sat})", "req/s", "higher"),
    ("sat_p50_ms", "latency p50 at saturation", "ms", "lower"),
    ("sat_p90_ms", "latency p90 at saturation", "ms", "lower"),
    ("sat_p99_ms", "latency p99 at saturation", "ms", "lower"),
    ("fixed_rps", "achieved requests/s at {rate} req/s offered (h2load)", "req/s", "higher"),
    ("fixed_p50_ms", "latency p50 at {rate} req/s", "ms", "lower"),
    ("fixed_p90_ms", "latency p90 at {rate} req/s", "ms", "lower"),
    ("fixed_p99_ms", "latency p99 at {rate} req/s", "ms", "lower"),
    ("conn_per_s", "new connections/s (wrk -c{conn}, Connection: close)", "conn/s", "higher"),
)


def measure(lab: Lab, scenarios: dict[str, Scenario], s: Settings, tmp: Path) -> dict[str, Any]:
    runner = Runner(lab, tmp)
    values: dict[str, dict[str, list[float]]] = {m[0]: collections.defaultdict(list) for m in MEASURES}
    cpu: dict[str, dict[str, list[float]]] = {name: collections.defaultdict(list) for name in scenarios}
    order = list(scenarios.values())

    for sc in order:
        with phase(f"warm-up {sc.name}: requests until they take the path, then 1 s of wrk -c1"):
            wait_for_path(lab, sc)
            b = runner.before(sc, http=True)
            res = runner.wrk(sc, 1, 1)
            runner.check(sc, b, "warm-up", int(res["requests"]), 1, http=True)
    wp_codes = lab.waypoint_requests()

    for i in range(s.repeats):
        rnd = f"{i + 1}/{s.repeats}"
        for sc in order:
            if sc.iperf is None:
                continue
            with phase(f"{sc.name}: iperf3 -t {s.iperf_s} run {rnd}"):
                b = runner.before(sc, http=False)
                res = runner.iperf(sc, s.iperf_s)
                runner.check(sc, b, "iperf3", 0, 2, http=False)  # control + data connection
                values["iperf_gbps"][sc.name].append(float(res["gbps"]))
        for sc in order:
            with phase(f"{sc.name}: wrk -c{s.saturation_connections} -d{s.load_s}s run {rnd}"):
                b = runner.before(sc, http=True)
                res = runner.wrk(sc, s.saturation_connections, s.load_s)
                used = runner.check(sc, b, "saturation", int(res["requests"]), s.saturation_connections, http=True)
                runner.record_bad(sc, "saturation", res)
                for k in ("rps", "p50_ms", "p90_ms", "p99_ms"):
                    values[f"sat_{k}"][sc.name].append(res[k])
                for comp, seconds in used.items():
                    cpu[sc.name][comp].append(seconds / res["requests"] * 1000.0)
        for sc in order:
            with phase(f"{sc.name}: h2load at {s.rate_rps} req/s for {s.load_s} s, run {rnd}"):
                b = runner.before(sc, http=True)
                res = runner.h2load_rate(sc, s.rate_rps, s.load_s)
                runner.check(sc, b, "fixed rate", int(res["requests"]), FIXED_CONNECTIONS, http=True)
                runner.record_bad(sc, "fixed rate", res)
                for k in ("rps", "p50_ms", "p90_ms", "p99_ms"):
                    values[f"fixed_{k}"][sc.name].append(res[k])
        for sc in order:
            with phase(f"{sc.name}: new connections, wrk -c{CONN_CONNECTIONS} Connection: close, run {rnd}"):
                b = runner.before(sc, http=True)
                res = runner.wrk(sc, CONN_CONNECTIONS, s.conn_s, close=True)
                runner.check(sc, b, "new connections", int(res["requests"]), int(res["requests"]), http=True)
                runner.record_bad(sc, "new connections", res)
                values["conn_per_s"][sc.name].append(res["rps"])

    with phase("reading the waypoint's response codes"):
        codes = lab.waypoint_requests() - wp_codes
        if not codes:
            raise BenchError('the waypoint\'s istio_requests_total{reporter="waypoint"} did not grow: '
                             "the requests did not go through the waypoint")
        non_200 = {c: n for c, n in codes.items() if c != "200"}
        if non_200:
            runner.problems.append(f"the waypoint answered non-200 codes: {non_200}")

    with phase("memory: idle"):
        time.sleep(1.0)
        idle = lab.rss(tuple(lab.components))
    per_1000: dict[str, dict[str, float]] = {}
    held: dict[str, int] = {}
    for sc in order:
        if not sc.components:
            continue
        n = connections_to_hold(lab, sc, s.held_connections)
        with phase(f"memory: {sc.name} holding {n} connections"):
            per_1000[sc.name] = hold_connections(lab, sc, n)
            held[sc.name] = n
            time.sleep(0.5)  # the proxies close their side

    label_vars = {"sat": s.saturation_connections, "rate": s.rate_rps, "conn": CONN_CONNECTIONS}
    return {
        "measures": [{"key": key, "label": label.format(**label_vars), "unit": unit, "better": better,
                      "values": {name: list(v) for name, v in values[key].items()}}
                     for key, label, unit, better in MEASURES],
        "cpu": {"label": f"CPU seconds per 1000 requests (wrk -c{s.saturation_connections})", "unit": "s/1000 req",
                "values": {name: {c: list(v) for c, v in comps.items()} for name, comps in cpu.items()}},
        "memory": {"held_connections": s.held_connections, "held": held, "idle_mb": idle,
                   "per_1000_conn_mb": per_1000},
        "waypoint_response_codes": dict(codes),
        "problems": runner.problems,
        "retried": runner.retries,
    }


def connections_to_hold(lab: Lab, sc: Scenario, wanted: int) -> int:
    """``wanted``, or fewer when a component's open-files limit could not take two batches of them
    (each proxied connection holds two sockets in a one-process proxy)."""
    n = wanted
    for comp in sc.components:
        for pid in lab.components[comp]:
            limit = loadgen.open_files_limit(pid)
            if limit is not None and 4 * n + 64 > limit:
                fit = max(10, (limit - 64) // 4)
                log(f"{comp} (pid {pid}) may open {limit} files: holding {fit} connections, not {n}")
                n = min(n, fit)
    return n


def wait_for_path(lab: Lab, sc: Scenario) -> None:
    """Until the client's requests answer 200 and take the expected path (the control plane's push
    of the waypoint reaches the ztunnel a moment after the waypoint is ready)."""
    deadline = time.monotonic() + WAIT_S
    last = ""
    client_ip = lab.ip(sc.client)
    while time.monotonic() < deadline:
        mark = lab.access.mark()
        out = lab.in_pod(sc.client, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", sc.url(),
                         timeout=15)
        last = out.stdout.strip() or out.stderr.strip()
        end = time.monotonic() + 2
        while time.monotonic() < end:
            seen = {k[2] for k in lab.access.since(mark) if k[1] == "outbound" and k[3] == client_ip}
            want = {sc.access[1]} if sc.access else set()
            if last == "200" and seen == want:
                return
            if seen - want:
                break  # went another way (e.g. no waypoint yet): try again
            time.sleep(0.1)
        time.sleep(0.3)
    raise BenchError(f"{sc.name}: requests from {sc.client[0]}/{sc.client[1]} did not take the expected path within "
                     f"{WAIT_S:.0f} s (last curl: {last!r})")


# --- the machine ----------------------------------------------------------------------------


def tool_versions() -> dict[str, str]:
    def first(cmd: list[str], pattern: str) -> str:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        m = re.search(pattern, proc.stdout + proc.stderr)
        return m.group(1) if m else "?"
    return {"wrk": first(["wrk", "-v"], r"wrk (?:debian/)?([\d.]+)"), "h2load": first(["h2load", "--version"], r"nghttp2/([\d.]+)"),
            "iperf3": first(["iperf3", "--version"], r"iperf ([\d.]+)"),
            "nginx": first(["nginx", "-v"], r"nginx/([\d.]+)"),
            "stunnel": first(["stunnel", "-version"], r"stunnel ([\d.]+)"),
            "haproxy": first(["haproxy", "-v"], r"version ([\d.]+)"),
            "openssl": first(["openssl", "version"], r"OpenSSL ([\d.]+\w*)")}


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = m.group(1).strip() if m else platform.processor() or "?"
    mem_kb = 0
    with contextlib.suppress(OSError, AttributeError):
        mem_kb = int(re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))  # type: ignore[union-attr]
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": os.uname().release, "python": sys.version.split()[0], "tools": tool_versions()}


def busy_percent(seconds: float) -> float:
    busy0, _s0, total0 = loadgen.machine_cpu_times()
    time.sleep(seconds)
    busy1, _s1, total1 = loadgen.machine_cpu_times()
    return 100.0 * (busy1 - busy0) / max(1, total1 - total0)


def code_identity() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False)
    if head.returncode != 0:
        return f"{ROOT} (not a git checkout)"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "ztunnel", "waypoint", "controlplane",
                            "meshctl", "bpf"], capture_output=True, text=True, check=False).stdout
    edited = sorted({line[3:].split("/", 1)[0] for line in dirty.splitlines() if line.strip()})
    return f"commit {head.stdout.strip()}" + (f", uncommitted changes in {', '.join(edited)}" if edited else "")


# --- the run --------------------------------------------------------------------------------


def warning_lines(failed: bool = True, limit: int = 8) -> list[str]:
    """The last WARNING/ERROR lines of the ztunnels, the control plane and the waypoint, for the
    failure message (the lab and its logs are gone after it)."""
    files = BENCH.component_logs()
    for path in sorted((BENCH.state_dir / "logs").glob(f"{NS_WP}_waypoint-*/*.log")):
        files[f"waypoint {path.stem}"] = path
    out: list[str] = []
    if not failed:
        return out
    for name, path in files.items():
        with contextlib.suppress(OSError):
            bad = [line for line in path.read_text(errors="replace").splitlines() if is_problem_line(line)]
            out += [f"{name}: {line[:300]}" for line in bad[-limit:]]
    return out


def run(settings: Settings = DEFAULT, allow_other_labs: bool = False) -> dict[str, Any]:
    """Run every scenario and the control-plane and CA benchmarks; returns the result dict
    ``report.write_outputs`` takes. Raises :class:`BenchError` naming the phase that failed."""
    started = time.monotonic()
    with phase("checking the machine"):
        if os.geteuid() != 0:
            raise BenchError("must run as root (the lab needs it)")
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            raise BenchError(f"missing tools: {', '.join(missing)} (scripts/setup installs them)")
        others = BENCH.other_labs()
        if others and not allow_other_labs:
            raise BenchError(f"another lab is up ({', '.join(others)}): its processes would share the CPUs. Take it "
                             "down first, or pass --allow-other-labs")
        busy_before = busy_percent(1.0 if settings.mode == "quick" else 2.0)
    result: dict[str, Any] = {
        "schema": "ambient-mesh-bench/1", "mode": settings.mode,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": settings.public(), "machine": machine(), "code": code_identity(),
        "comparisons": [list(c) for c in COMPARISONS],
    }
    _b0, steal0, total0 = loadgen.machine_cpu_times()
    tmp = Path(tempfile.mkdtemp(prefix="meshctl-bench-"))
    os.chmod(tmp, 0o755)
    try:
        with BENCH.session(warning_lines):
            lab, scenarios = setup_lab(tmp)
            result["scenarios"] = [sc.meta() for sc in scenarios.values()]
            result.update(measure(lab, scenarios, settings, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _b1, steal1, total1 = loadgen.machine_cpu_times()
    result["controlplane"] = None
    result["ca"] = None
    if settings.controlplane is not None:
        from tests.bench import bench_controlplane
        cp = settings.controlplane
        with phase(f"control plane: {cp['nodes']} nodes, {cp['pods']} pods"):
            try:
                result["controlplane"] = bench_controlplane.run(nodes=cp["nodes"], pods=cp["pods"],
                                                                rounds=cp["rounds"], burst=cp["burst"],
                                                                progress=lambda msg: log(f"  {msg}"))
            except bench_controlplane.BenchError as exc:
                raise BenchError(f"the control-plane benchmark failed: {exc}") from exc
    if settings.ca is not None:
        from tests.bench import bench_ca
        with phase(f"CA: {settings.ca['signatures']} signatures"):
            try:
                result["ca"] = bench_ca.run(signatures=settings.ca["signatures"],
                                            openssl_certs=settings.ca["openssl_certs"])
            except bench_ca.BenchError as exc:
                raise BenchError(f"the CA benchmark failed: {exc}") from exc
    result["machine_load"] = {"busy_before_pct": busy_before,
                              "steal_pct": 100.0 * (steal1 - steal0) / max(1, total1 - total0)}
    result["duration_s"] = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    from meshctl.benchcmd import add_arguments
    parser = argparse.ArgumentParser(prog="meshctl bench", description=__doc__.split("\n\n", 1)[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


def run_cli(args: argparse.Namespace) -> int:
    settings = QUICK if args.quick else DEFAULT
    overrides: dict[str, Any] = {}
    if args.repeats is not None:
        if args.repeats < 1:
            print("meshctl bench: --repeats must be at least 1", file=sys.stderr)
            return 2
        overrides["repeats"] = args.repeats
    if args.no_controlplane:
        overrides["controlplane"] = None
    if args.no_ca:
        overrides["ca"] = None
    if overrides:
        settings = Settings(**{**settings.__dict__, **overrides})
    signal.signal(signal.SIGTERM, interrupt)
    try:
        result = run(settings, allow_other_labs=args.allow_other_labs)
    except BenchError as exc:
        print(f"meshctl bench: failed in phase {BENCH.current_phase()!r}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("meshctl bench: interrupted; the lab was taken down", file=sys.stderr)
        return 130
    written = report.write_outputs(result, args.out)
    print(report.format_markdown(result))
    print(f"\nresults: {written['json']}, {written['markdown']}; charts: "
          + ", ".join(str(p) for k, p in written.items() if k.startswith("chart:")))
    for warning in report.assess_noise(result):
        print(f"WARNING: {warning}", file=sys.stderr)
    return 1 if result.get("problems") else 0


if __name__ == "__main__":
    sys.exit(main())
