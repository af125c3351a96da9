"""Waypoint benchmark: HTTP requests through the namespace waypoint (L7), against no mesh, the
L4-only mesh (ztunnel HBONE) and nginx as an L7 reverse proxy, in one run on one lab, with ratios.

One two-node lab (``meshctl lab up --nodes 2``, lab ``mlbwp``). Every variant has its own client
pod on node1 and its own HTTP server pod on node2 (nginx, one worker, keep-alive, a 1 KiB
static file; HTTP/1.1 on :8080 and HTTP/2 prior knowledge on :8081), behind a Service named
``server``; the client always requests the Service by name (its ClusterIP):

1. ``no_mesh``: namespace ``bwp-plain`` (not enrolled): client -> server, kube-proxy's DNAT only;
2. ``l4_mesh``: namespace ``bwp-l4`` (``istio.io/dataplane-mode: ambient``): node1's ztunnel
   carries the connection in HBONE (HTTP/2 CONNECT over mTLS) to node2's ztunnel;
3. ``waypoint``: namespace ``bwp-wp`` (ambient and ``istio.io/use-waypoint: waypoint``, with a
   ``Gateway`` of class ``istio-waypoint``; the control plane runs the waypoint pod, the lab's
   scheduler places it): client -> node1's ztunnel -> HBONE -> waypoint (HTTP parsed, routed,
   telemetry) -> HBONE -> node2's ztunnel -> server;
4. ``nginx``: namespace ``bwp-plain``: client -> Service ``proxy`` -> nginx (Debian's binary as
   the pod's command, one worker, ``proxy_pass`` to the ``server`` Service's ClusterIP with a
   keep-alive upstream), pinned with ``nodeName`` to the node the waypoint pod landed on ->
   server.

Measures, round robin over the variants (each round of a measure goes through the four variants
in turn so they meet the same machine): ``wrk -t1 -c16 -d10s --latency``, ``wrk -t1 -c1`` (keep-alive
HTTP/1.1: requests/s, p50, p99) and ``h2load -c4 -m4 -D10`` (HTTP/2 prior knowledge, 16 streams
in flight; p50/p99 from h2load's per-request log). Ratios: waypoint vs nginx, waypoint vs L4
mesh, each vs no mesh.

Every run is checked to have taken its path: the server's nginx ``stub_status`` counts at least the
requests the client completed; the waypoint's ``istio_requests_total{reporter="waypoint"}``
(``:15020/metrics``, read with ``meshctl lab exec``) and the proxy nginx's ``stub_status`` too;
node1's ztunnel logs ``outbound via=hbone`` (L4) or ``via=waypoint`` connections from the mesh
clients and nothing from the plain client or the nginx proxy. Errors or non-2xx answers make the
run invalid (exit status 1, after the report).

    flock /tmp/meshlab.lock .venv/bin/python tests/bench/bench_waypoint.py [--seconds N] [--repeats N] [--no-h2] [--json PATH]

Needs root and the lab's tools plus wrk, h2load and nginx. Exit status 1 when a phase fails (the
message names it) or a run had errors, 130 when interrupted; the lab is taken down in every case
and checked to have left nothing behind.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench import loadgen, peers  # noqa: E402
from tests.bench.benchlab import (  # noqa: E402
    WAIT_S,
    BenchError,
    BenchLab,
    interrupt,
)
from tests.bench.peers import SMALL_FILE  # noqa: E402
from tests.bench.suite import code_identity, pids_by_cmdline  # noqa: E402
from tests.bench.suite import waypoint_manifest as suite_waypoint_manifest  # noqa: E402

LAB = "mlbwp"
NS_PLAIN, NS_L4, NS_WP = "bwp-plain", "bwp-l4", "bwp-wp"
HTTP_PORT, H2_PORT, STATUS_PORT, METRICS_PORT = 8080, 8081, 8090, 15020
VARIANTS = ("no_mesh", "l4_mesh", "waypoint", "nginx")
LOADED = 16
H2_CONNECTIONS, H2_STREAMS = 4, 4
BENCH = BenchLab("bench_waypoint", LAB)
STATE_DIR, MESHCTL = BENCH.state_dir, BENCH.meshctl_argv
log, current_phase, phase = BENCH.log, BENCH.current_phase, BENCH.phase
meshctl, lab_exec, lab_status = BENCH.meshctl, BENCH.lab_exec, BENCH.lab_status
other_labs, lab_down_and_check = BENCH.other_labs, BENCH.lab_down_and_check
wait_listening, ztunnel_pid = BENCH.wait_listening, BENCH.ztunnel_pid
WAYPOINT_LABEL = "gateway.networking.k8s.io/gateway-name"

# --- configuration files and manifests ------------------------------------------------------


def server_command(tmp: Path, ns: str) -> list[str]:
    """The HTTP server of every variant: HTTP/1.1 and HTTP/2 prior knowledge."""
    return peers.nginx_server(tmp, f"server-{ns}", HTTP_PORT, STATUS_PORT, h2=H2_PORT)


def proxy_command(tmp: Path, upstream_ip: str) -> list[str]:
    """The L7 reverse proxy: HTTP/1.1 and HTTP/2 prior knowledge in, keep-alive HTTP/1.1 out to the
    server Service's ClusterIP."""
    return peers.nginx_proxy(tmp, "proxy", HTTP_PORT, STATUS_PORT, upstream_ip,
                             f"server.{NS_PLAIN}.svc.cluster.local", h2=H2_PORT)


def _pod(ns: str, name: str, node: str, command: list[str], http: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": command[0], "command": command}
    if http:
        container["readinessProbe"] = {"tcpSocket": {"port": HTTP_PORT}, "periodSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [container]}}


def _service(ns: str, name: str) -> dict[str, Any]:
    # port names select the waypoint's protocol: "http" HTTP/1.1 or HTTP/2 as the client speaks,
    # "http2" HTTP/2 to the server too
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": HTTP_PORT},
                               {"name": "http2", "port": H2_PORT, "targetPort": H2_PORT}]}}


def _yaml(docs: list[dict[str, Any]]) -> str:
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"  # JSON is YAML


def workloads_manifest(tmp: Path) -> str:
    sleep = ["sleep", "infinity"]
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS_PLAIN}},
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NS_L4, "labels": {"istio.io/dataplane-mode": "ambient"}}},
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NS_WP, "labels": {"istio.io/dataplane-mode": "ambient",
                                                "istio.io/use-waypoint": "waypoint"}}},
    ]
    for ns in (NS_PLAIN, NS_L4, NS_WP):
        docs += [_pod(ns, "client", "node1", sleep, http=False),
                 _pod(ns, "server", "node2", server_command(tmp, ns), http=True),
                 _service(ns, "server")]
    return _yaml(docs)


def waypoint_manifest() -> str:
    return suite_waypoint_manifest(NS_WP)


def proxy_manifest(tmp: Path, node: str, upstream_ip: str) -> str:
    return _yaml([_pod(NS_PLAIN, "proxy", node, proxy_command(tmp, upstream_ip), http=True),
                  _service(NS_PLAIN, "proxy")])


# --- the lab --------------------------------------------------------------------------------


# --- processes, counters, access logs -------------------------------------------------------


_ACCESS = re.compile(r"ztunnel\.access: (\w+) via=(\S+) src=([\d.]+):\d+ .* flags=(\S+)")
AccessKey = tuple[str, str, str, str]  # direction, via, source IP, flags


def access_counts() -> collections.Counter[AccessKey]:
    """Access-log lines of node1's ztunnel (where every client runs)."""
    counts: collections.Counter[AccessKey] = collections.Counter()
    text = (STATE_DIR / "ztunnel-node1.log").read_text(errors="replace")
    for m in _ACCESS.finditer(text):
        counts[(m.group(1), m.group(2), m.group(3), m.group(4))] += 1
    return counts


def stub_status(pod: str) -> int:
    """Requests an nginx has handled so far (its stub_status; the read itself included)."""
    out = lab_exec(pod, "curl", "-s", "-m", "5", f"http://127.0.0.1:{STATUS_PORT}/status", timeout=30)
    count = loadgen.parse_stub_status(out.stdout)
    if out.returncode != 0 or count is None:
        raise BenchError(f"cannot read {pod}'s nginx stub_status (exit {out.returncode}): {out.stdout[-300:]}"
                         f"{out.stderr[-300:]}")
    return count


def waypoint_requests(pod: str) -> collections.Counter[str]:
    """istio_requests_total with reporter="waypoint", summed by response code."""
    out = lab_exec(pod, "curl", "-s", "-m", "5", f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=30)
    if out.returncode != 0:
        raise BenchError(f"cannot read the waypoint's metrics (curl exit {out.returncode}): {out.stderr[-300:]}")
    return loadgen.waypoint_requests_by_code(out.stdout)


@dataclass
class Variant:
    name: str
    what: str
    client: str             # ns/pod for `meshctl lab exec`
    client_ip: str
    host: str               # the Service's DNS name (wrk and h2load resolve it once)
    server: str             # ns/pod of the HTTP server
    via: str | None         # node1's ztunnel: outbound via= lines expected from the client, None: none allowed
    proxy: str | None = None        # ns/pod of the L7 proxy (waypoint or nginx)
    proxy_ip: str | None = None
    proxy_node: str | None = None

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}/{SMALL_FILE}"


@dataclass
class Counters:
    server: int
    proxy: int
    access: collections.Counter[AccessKey]
    cpu: dict[str, float | None]
    t: float


class Checker:
    """Reads the counters around one run and checks the run took its variant's path."""

    def __init__(self, procs: dict[str, list[int]]) -> None:
        self.procs = procs

    def proxy_count(self, v: Variant) -> int:
        if v.proxy is None:
            return 0
        if v.name == "waypoint":
            return sum(waypoint_requests(v.proxy).values())
        return stub_status(v.proxy)

    def read(self, v: Variant) -> Counters:
        return Counters(server=stub_status(v.server), proxy=self.proxy_count(v), access=access_counts(),
                        cpu={k: loadgen.cpu_seconds(p) for k, p in self.procs.items()}, t=time.monotonic())

    def cpu(self, before: Counters) -> dict[str, float]:
        wall = time.monotonic() - before.t
        out = {}
        for k, pids in self.procs.items():
            now, then = loadgen.cpu_seconds(pids), before.cpu[k]
            if now is None or then is None:
                raise BenchError(f"{k} (pids {pids}) exited during the run; see {STATE_DIR}")
            out[k] = 100.0 * (now - then) / wall
        return out

    def check(self, v: Variant, before: Counters, done: int, connections: int, what: str) -> dict[str, Any]:
        """Fail unless the server (and the proxy) saw the ``done`` requests and node1's ztunnel
        logged what this variant's path makes it log."""
        cpu = self.cpu(before)
        deadline = time.monotonic() + 5
        while True:  # ztunnel logs a connection when it ends; wrk/h2load close theirs on exit
            after = self.read(v)
            problems = []
            server, proxy = after.server - before.server, after.proxy - before.proxy
            if server < done:
                problems.append(f"the server's nginx counted {server} requests, the client completed {done}")
            if v.proxy is not None and proxy < done:
                problems.append(f"the {v.name} proxy ({v.proxy}) counted {proxy} requests, the client completed {done}")
            new = after.access - before.access
            ours = sum(n for (d, via, src, _f), n in new.items() if d == "outbound" and src == v.client_ip
                       and via == v.via)
            foreign = {k: n for k, n in new.items() if k[2] in (v.client_ip, v.proxy_ip) and k[1] != v.via}
            if v.via is not None and ours < connections:
                problems.append(f"node1's ztunnel logged {ours} outbound via={v.via} connections from {v.client_ip}, "
                                f"expected {connections}")
            if foreign:
                problems.append(f"node1's ztunnel logged connections this path must not make: {dict(foreign)}")
            if not problems:
                flags: collections.Counter[str] = collections.Counter()
                for (d, via, src, fl), n in new.items():
                    if d == "outbound" and src == v.client_ip and via == v.via:
                        flags[fl] += n
                return {"server_requests": server, "proxy_requests": proxy if v.proxy else None,
                        "access_flags": dict(flags), "cpu": cpu}
            if time.monotonic() > deadline:
                raise BenchError(f"{v.name} {what}: the traffic did not take the {v.name} path: {'; '.join(problems)}")
            time.sleep(0.2)


# --- load generators ------------------------------------------------------------------------


def wrk(v: Variant, connections: int, seconds: int) -> dict[str, float]:
    """Keep-alive HTTP/1.1 requests for the small file: requests/s, latency percentiles (ms),
    completed requests, socket errors and non-2xx answers."""
    out = lab_exec(v.client, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", v.url(HTTP_PORT),
                   timeout=seconds + 40)
    if out.returncode != 0:
        raise BenchError(f"wrk failed (exit {out.returncode}): {out.stdout[-800:]}{out.stderr[-400:]}")
    res = loadgen.parse_wrk(out.stdout)
    if res["requests"] <= 0:
        raise BenchError(f"wrk made no request: {out.stdout[-800:]}")
    return res


def h2load(v: Variant, seconds: int, tmp: Path) -> dict[str, float]:
    """HTTP/2 prior knowledge, ``H2_CONNECTIONS`` connections x ``H2_STREAMS`` concurrent streams:
    requests/s; p50/p99 from h2load's per-request log (nearest rank); failed/errored requests and
    non-2xx."""
    log_file = tmp / f"h2load-{v.name}.log"
    with contextlib.suppress(FileNotFoundError):
        log_file.unlink()
    out = lab_exec(v.client, "h2load", "-t1", f"-c{H2_CONNECTIONS}", f"-m{H2_STREAMS}", f"-D{seconds}",
                   f"--log-file={log_file}", v.url(H2_PORT), timeout=seconds + 40)
    if out.returncode != 0 or not log_file.exists():
        raise BenchError(f"h2load failed (exit {out.returncode}): {out.stdout[-800:]}{out.stderr[-400:]}")
    return loadgen.parse_h2load(out.stdout, log_file.read_text().splitlines())


# --- the run --------------------------------------------------------------------------------


def _pods(status: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["namespace"], p["name"]): p for p in status["pods"]}


def _cluster_ip(status: dict[str, Any], ns: str, name: str) -> str:
    for s in status["services"]:
        if s["namespace"] == ns and s["name"] == name and s.get("cluster_ip"):
            return str(s["cluster_ip"])
    raise BenchError(f"Service {ns}/{name} has no ClusterIP")


def _waypoint_pod(status: dict[str, Any]) -> dict[str, Any] | None:
    for p in status["pods"]:
        if p["namespace"] == NS_WP and p["labels"].get(WAYPOINT_LABEL) == "waypoint" and p["ready"] == "1/1":
            return dict(p)
    return None


def setup_lab(tmp: Path) -> tuple[dict[str, Variant], dict[str, Any]]:
    with phase("lab up (2 nodes)"):
        meshctl("up", "--nodes", "2", "--restart-backoff", "0.5", timeout=240)
    with phase("apply the namespaces, clients (node1), servers (node2) and Services"):
        meshctl("apply", "-f", "-", "--wait", "--timeout", "90", input=workloads_manifest(tmp), timeout=150)
    with phase("apply the waypoint Gateway and wait for the waypoint pod to be ready"):
        meshctl("apply", "-f", "-", input=waypoint_manifest(), timeout=60)
        deadline = time.monotonic() + 90
        wp = None
        while wp is None:
            if time.monotonic() > deadline:
                raise BenchError(f"no ready waypoint pod in {NS_WP} after 90 s: "
                                 f"{[p for p in lab_status()['pods'] if p['namespace'] == NS_WP]}")
            time.sleep(0.5)
            wp = _waypoint_pod(lab_status())
        log(f"waypoint pod {wp['name']} is ready on {wp['node']}")
    with phase(f"apply the nginx reverse proxy on {wp['node']} (the waypoint's node)"):
        status = lab_status()
        meshctl("apply", "-f", "-", "--wait", "--timeout", "90",
                input=proxy_manifest(tmp, wp["node"], _cluster_ip(status, NS_PLAIN, "server")), timeout=150)
        status = lab_status()
        pods = _pods(status)
        for (ns, name), p in pods.items():
            want = {"client": "node1", "server": "node2", "proxy": wp["node"]}.get(name)
            if ns.startswith("bwp-") and want is not None and (p["status"] != "Running" or p["node"] != want):
                raise BenchError(f"pod {ns}/{name} is {p['status']} on {p['node']}, expected Running on {want}")
        for ns in (NS_PLAIN, NS_L4, NS_WP):
            for port in (HTTP_PORT, H2_PORT, STATUS_PORT):
                wait_listening(pods[(ns, "server")]["netns"], port, f"nginx in {ns}/server")
        for port in (HTTP_PORT, H2_PORT, STATUS_PORT):
            wait_listening(pods[(NS_PLAIN, "proxy")]["netns"], port, f"nginx in {NS_PLAIN}/proxy")
    wp = _waypoint_pod(status) or wp
    proxy = pods[(NS_PLAIN, "proxy")]

    def host(ns: str, svc: str = "server") -> str:
        return f"{svc}.{ns}.svc.cluster.local"

    variants = {
        "no_mesh": Variant("no_mesh", "plain pods, Service VIP (kube-proxy)", f"{NS_PLAIN}/client",
                           pods[(NS_PLAIN, "client")]["ip"], host(NS_PLAIN), f"{NS_PLAIN}/server", None),
        "l4_mesh": Variant("l4_mesh", "ztunnel HBONE node1 -> node2", f"{NS_L4}/client", pods[(NS_L4, "client")]["ip"],
                           host(NS_L4), f"{NS_L4}/server", "hbone"),
        "waypoint": Variant("waypoint", f"ztunnel -> waypoint ({wp['node']}) -> ztunnel", f"{NS_WP}/client",
                            pods[(NS_WP, "client")]["ip"], host(NS_WP), f"{NS_WP}/server", "waypoint",
                            proxy=f"{NS_WP}/{wp['name']}", proxy_ip=wp["ip"], proxy_node=wp["node"]),
        "nginx": Variant("nginx", f"nginx reverse proxy ({proxy['node']}), no mesh", f"{NS_PLAIN}/client",
                         pods[(NS_PLAIN, "client")]["ip"], host(NS_PLAIN, "proxy"), f"{NS_PLAIN}/server", None,
                         proxy=f"{NS_PLAIN}/proxy", proxy_ip=proxy["ip"], proxy_node=proxy["node"]),
    }
    return variants, status


def wait_for_path(v: Variant) -> None:
    """Until node1's ztunnel sends this client's requests the expected way (the control plane's
    push of the waypoint reaches the ztunnel a moment after the waypoint is ready)."""
    deadline = time.monotonic() + WAIT_S
    last = ""
    while time.monotonic() < deadline:
        before = access_counts()
        out = lab_exec(v.client, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                       v.url(HTTP_PORT), timeout=30)
        last = out.stdout.strip() or out.stderr.strip()
        end = time.monotonic() + 2
        while time.monotonic() < end:
            new = access_counts() - before
            seen = {k[1] for k in new if k[0] == "outbound" and k[2] == v.client_ip}
            if out.stdout.strip() == "200" and (seen == {v.via} if v.via else not seen):
                return
            if seen - {v.via}:
                break  # went another way (e.g. no waypoint yet): try again
            time.sleep(0.1)
        time.sleep(0.5)
    raise BenchError(f"{v.name}: requests from {v.client} did not take the expected path within {WAIT_S:.0f} s "
                     f"(last curl: {last!r})")


MEASURES = ("c16", "c1", "h2")


def measure_label(m: str) -> str:
    return {"c16": f"wrk -c{LOADED}", "c1": "wrk -c1",
            "h2": f"h2load -c{H2_CONNECTIONS} -m{H2_STREAMS}"}[m]


def measure_all(variants: dict[str, Variant], status: dict[str, Any], repeats: int, seconds: int,
                h2: bool, tmp: Path) -> dict[str, Any]:
    pods = _pods(status)
    wp = variants["waypoint"]
    with phase("finding the ztunnel, waypoint and nginx proxy processes"):
        wp_netns = next(p["netns"] for p in status["pods"] if f"{p['namespace']}/{p['name']}" == wp.proxy)
        procs = {"ztunnel-node1": [ztunnel_pid("node1")], "ztunnel-node2": [ztunnel_pid("node2")],
                 "waypoint": pids_by_cmdline(wp_netns, b"waypoint"),
                 "nginx-proxy": pids_by_cmdline(pods[(NS_PLAIN, "proxy")]["netns"], b"nginx")}
        for k, p in procs.items():
            if not p:
                raise BenchError(f"no {k} process found")
    checker = Checker(procs)
    for name in VARIANTS:
        with phase(f"warm-up {name}: path check, then 1 s of wrk -c1 over {variants[name].url(HTTP_PORT)}"):
            wait_for_path(variants[name])
            before = checker.read(variants[name])
            res = wrk(variants[name], 1, 1)
            checker.check(variants[name], before, int(res["requests"]), 1, "warm-up")
    wp_codes_before = waypoint_requests(str(wp.proxy))
    measures: list[tuple[str, int, Callable[[Variant], dict[str, float]]]] = [
        ("c16", LOADED, lambda v: wrk(v, LOADED, seconds)),
        ("c1", 1, lambda v: wrk(v, 1, seconds)),
    ]
    if h2:
        measures.append(("h2", H2_CONNECTIONS, lambda v: h2load(v, seconds, tmp)))
    raw: dict[str, dict[str, list[Any]]] = {v: collections.defaultdict(list) for v in VARIANTS}
    for key, conns, fn in measures:
        for i in range(repeats):
            for name in VARIANTS:  # round robin: every variant meets the same machine state
                v = variants[name]
                with phase(f"{name}: {measure_label(key)} run {i + 1}/{repeats}"):
                    before = checker.read(v)
                    values = fn(v)
                    checked = checker.check(v, before, int(values["requests"]), conns, measure_label(key))
                    for k, x in values.items():
                        raw[name][f"{key}_{k}"].append(x)
                    for k, x in checked["cpu"].items():
                        raw[name][f"{key}_cpu_{k}"].append(x)
                    raw[name][f"{key}_server_requests"].append(checked["server_requests"])
                    if checked["proxy_requests"] is not None:
                        raw[name][f"{key}_proxy_requests"].append(checked["proxy_requests"])
                    raw[name][f"{key}_access_flags"].append(checked["access_flags"])
                    bad = values["errors"] + values["non_2xx"]
                    if bad:
                        log(f"{name} {measure_label(key)}: {values['errors']:.0f} errors, "
                            f"{values['non_2xx']:.0f} non-2xx answers: this run is not a result")
    with phase("reading the waypoint's response codes"):
        codes = waypoint_requests(str(wp.proxy)) - wp_codes_before
        if not codes:
            raise BenchError("the waypoint's istio_requests_total{reporter=\"waypoint\"} did not grow during the "
                             "waypoint runs: the requests did not go through the waypoint")
    out: dict[str, Any] = {"waypoint_response_codes": dict(codes), "variants": {}}
    for name in VARIANTS:
        entry: dict[str, Any] = {}
        for k, runs in sorted(raw[name].items()):
            if k.endswith("_access_flags"):
                merged: collections.Counter[str] = collections.Counter()
                for d in runs:
                    merged.update(d)
                entry[k] = dict(merged)
            else:
                entry[k] = {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}
        out["variants"][name] = entry
    return out


def log_problems(status: dict[str, Any], wp: Variant) -> dict[str, list[str]]:
    """WARNING/ERROR lines of the ztunnels, the control plane and the waypoint, by message shape."""
    files = {}
    for p in status["pods"]:
        if f"{p['namespace']}/{p['name']}" == wp.proxy:
            d = STATE_DIR / "logs" / f"{p['namespace']}_{p['name']}_{p['uid']}"
            for c in p["containers"]:
                files[f"waypoint {c}"] = d / f"{c}.log"
    return BENCH.log_problems(files)


def run(seconds: int = 10, repeats: int = 1, h2: bool = True, allow_other_labs: bool = False) -> dict[str, Any]:
    """Measure the four variants on one lab; returns every number. Raises BenchError."""
    with phase("checking the machine"):
        if os.geteuid() != 0:
            raise BenchError("must run as root (the lab needs it)")
        missing = [t for t in ("ip", "nft", "nsenter", "ss", "curl", "wrk", "nginx", *(["h2load"] if h2 else []))
                   if shutil.which(t) is None]
        if missing:
            raise BenchError(f"missing tools: {', '.join(missing)} (scripts/setup installs them)")
        others = other_labs()
        if others and not allow_other_labs:
            raise BenchError(f"another lab is up ({', '.join(others)}): its processes would share the CPUs. Run one "
                             "lab at a time (flock /tmp/meshlab.lock), or pass --allow-other-labs")
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()
    result: dict[str, Any] = {"seconds_per_run": seconds, "repeats": repeats, "h2": h2, "cpus": os.cpu_count(),
                              "kernel": os.uname().release, "python": sys.version.split()[0],
                              "nginx": nginx_v.split(":", 1)[-1].strip(), "other_labs": other_labs(),
                              "code": code_identity()}
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-waypoint-"))
    os.chmod(tmp, 0o755)
    try:
        with BENCH.session():
            variants, status = setup_lab(tmp)
            result["topology"] = {n: {"client": f"{v.client} ({v.client_ip}, node1)", "url": v.url(HTTP_PORT),
                                      "server": f"{v.server} (node2)", "what": v.what,
                                      **({"proxy": f"{v.proxy} ({v.proxy_ip}, {v.proxy_node})"} if v.proxy else {})}
                                  for n, v in variants.items()}
            result.update(measure_all(variants, status, repeats, seconds, h2, tmp))
            with phase("reading the ztunnel, control-plane and waypoint logs"):
                result["log_problems"] = log_problems(lab_status(), variants["waypoint"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    evaluate(result)
    result["seconds"] = time.monotonic() - started
    return result


# --- ratios and report ----------------------------------------------------------------------


RATIOS = (("l4_mesh", "no_mesh"), ("waypoint", "no_mesh"), ("nginx", "no_mesh"), ("waypoint", "l4_mesh"),
          ("waypoint", "nginx"))


def evaluate(result: dict[str, Any]) -> None:
    """Ratios of medians (rps, p50, p99) and the invalid runs (errors or non-2xx answers)."""
    vs = result["variants"]
    ratios: dict[str, dict[str, float | None]] = {}
    for a, b in RATIOS:
        r: dict[str, float | None] = {}
        for k in vs[b]:
            if k.endswith(("_rps", "_p50_ms", "_p99_ms")) and k in vs[a]:
                den = vs[b][k]["median"]
                r[k] = vs[a][k]["median"] / den if den else None
        ratios[f"{a}/{b}"] = r
    result["ratios"] = ratios
    invalid = []
    for name in VARIANTS:
        for m in MEASURES:
            for kind in ("errors", "non_2xx"):
                n = sum(vs[name].get(f"{m}_{kind}", {"runs": []})["runs"])
                if n:
                    invalid.append(f"{name} {measure_label(m)}: {n:.0f} {kind.replace('_', '-')}")
    result["invalid"] = invalid


def format_report(result: dict[str, Any]) -> str:
    vs = result["variants"]
    measures = [m for m in MEASURES if f"{m}_rps" in vs["no_mesh"]]
    multi = result["repeats"] > 1
    lines = [f"{result['repeats']} run(s) of {result['seconds_per_run']} s per measure and variant, variants "
             f"interleaved; cell: median" + (" (min-max)" if multi else ""), "", "Topology:"]
    for name, t in result["topology"].items():
        lines.append(f"  {name:9} {t['what']}: {t['client']} -> {t.get('proxy', '-')} -> {t['server']}")
    lines += ["", "| measure | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for m in measures:
        for suffix, label, digits in (("rps", "requests/s", 0), ("p50_ms", "p50, ms", 3), ("p99_ms", "p99, ms", 3)):
            cells = []
            for name in VARIANTS:
                s = vs[name][f"{m}_{suffix}"]
                cells.append(f"{s['median']:.{digits}f}" + (f" ({s['min']:.{digits}f}-{s['max']:.{digits}f})"
                                                             if multi else ""))
            lines.append(f"| {measure_label(m)} {label} | " + " | ".join(cells) + " |")
    lines += ["", "Ratios (median / median):", "",
              "| measure | " + " | ".join(k for k in result["ratios"]) + " |", "|---|" + "---|" * len(result["ratios"])]
    for m in measures:
        for suffix, label in (("rps", "requests/s"), ("p50_ms", "p50"), ("p99_ms", "p99")):
            cells = []
            for r in result["ratios"].values():
                x = r.get(f"{m}_{suffix}")
                cells.append(f"{x:.2f}" if x is not None else "-")
            lines.append(f"| {measure_label(m)} {label} | " + " | ".join(cells) + " |")
    lines += ["", "Proxy CPU during the runs, % of one core (median):", "",
              "| measure | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for m in measures:
        cells = []
        for name in VARIANTS:
            keys = {"no_mesh": (), "l4_mesh": ("ztunnel-node1", "ztunnel-node2"), "nginx": ("nginx-proxy",),
                    "waypoint": ("ztunnel-node1", "waypoint", "ztunnel-node2")}[name]
            cells.append(", ".join(f"{k.replace('ztunnel-', 'zt ')} {vs[name][f'{m}_cpu_{k}']['median']:.0f}"
                                   for k in keys) or "-")
        lines.append(f"| {measure_label(m)} | " + " | ".join(cells) + " |")
    lines += ["", "Checks (totals over the measured runs):"]
    for name in VARIANTS:
        for m in measures:
            done = sum(vs[name][f"{m}_requests"]["runs"])
            srv = sum(vs[name][f"{m}_server_requests"]["runs"])
            prx = vs[name].get(f"{m}_proxy_requests")
            flags = vs[name].get(f"{m}_access_flags") or {}
            lines.append(f"  {name} {measure_label(m)}: client completed {done:.0f}, server counted {srv:.0f}"
                         + (f", {'waypoint' if name == 'waypoint' else 'nginx proxy'} counted {sum(prx['runs']):.0f}"
                            if prx else "")
                         + (f"; node1 ztunnel access-log flags {flags}" if flags else "")
                         + f"; errors {sum(vs[name][f'{m}_errors']['runs']):.0f}, "
                           f"non-2xx {sum(vs[name][f'{m}_non_2xx']['runs']):.0f}")
    lines.append(f"  waypoint istio_requests_total{{reporter=\"waypoint\"}} by response code during the runs: "
                 f"{result['waypoint_response_codes']}")
    problems = {k: v for k, v in result.get("log_problems", {}).items() if v}
    if problems:
        lines += ["", "WARNING/ERROR lines in the lab's logs:"]
        for name, items in problems.items():
            lines += [f"  {name}:"] + [f"    {item}" for item in items]
    if result["invalid"]:
        lines += ["", "INVALID: runs with errors or non-2xx answers are not results: " + "; ".join(result["invalid"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk/h2load run (default 10)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measure per variant (default 1)")
    parser.add_argument("--no-h2", action="store_true", help="skip the h2load (HTTP/2) runs")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every number to PATH")
    parser.add_argument("--allow-other-labs", action="store_true", help="run even if another lab is up")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        result = run(seconds=args.seconds, repeats=args.repeats, h2=not args.no_h2,
                     allow_other_labs=args.allow_other_labs)
    except BenchError as exc:
        print(f"bench_waypoint: failed in phase '{current_phase()}': {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bench_waypoint: interrupted in phase '{current_phase()}'; the lab was taken down", file=sys.stderr)
        return 130
    print(format_report(result))
    print(f"\n(code: {result['code']}; {result['seconds']:.0f} s, {result['cpus']} CPUs, kernel {result['kernel']}, "
          f"Python {result['python']}, nginx {result['nginx']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True))
        print(f"JSON saved to {args.json}")
    return 1 if result["invalid"] else 0


if __name__ == "__main__":
    sys.exit(main())
