"""HBONE data-path benchmark: bulk throughput and request latency through the mesh, against no
mesh and against a stunnel mutual-TLS pair, in one run on one lab, reported as ratios.

One two-node lab (``meshctl lab up --nodes 2``, lab ``mlbench``), two namespaces: ``bench-plain``
(not enrolled) and ``bench-mesh`` (``istio.io/dataplane-mode: ambient``). Pods are pinned with
``nodeName``; each server pod runs ``iperf3 -s`` and nginx (one worker, keep-alive, a 1 KiB file).
Four paths, measured interleaved (round robin) in the same run:

1. ``direct``: plain client pod (node1) -> plain server pod (node2), pod IP to pod IP;
2. ``stunnel``: the same two pods, through a stunnel client in the client pod and a stunnel
   server in the server pod: TLS 1.3, ECDSA P-256 certificates made here (one CA, a client and a
   server leaf), each side verifying the other's chain and name;
3. ``mesh_cross``: enrolled client pod (node1) -> enrolled server pod (node2): node1's ztunnel
   takes the connection (tc capture) and carries it in an HBONE tunnel (HTTP/2 CONNECT over mTLS)
   to node2's ztunnel, which delivers it to the server with the client's address;
4. ``mesh_same``: enrolled client and server pods both on node2 (one ztunnel, no network hop).

Per path: ``iperf3 -c -t 5`` (one stream; Gb/s received), ``wrk -t1 -c1 -d5s --latency``
(keep-alive: request latency p50/p99 on one warm connection) and ``wrk -t1 -c16`` (p99 under
load). Each measure runs 3 times (``--quick``: once, shorter); the report gives medians, ratios
to ``direct`` and the issue's two targets:

- mesh throughput / stunnel throughput >= 1;
- (mesh p99 - direct p99) <= 2 x (stunnel p99 - direct p99)   [wrk -c1].

Every run is checked to have taken its path: the iperf3 server's view of the peer address, the
ztunnel access logs (mesh runs add lines, the others none) and stunnel's log (TLS 1.3, both
certificates verified). CPU used by the proxies (ztunnels, stunnels) during each run is read
from /proc. ``--profile`` samples both ztunnels with py-spy during an extra cross-node iperf3
run (and an extra wrk -c1 run) and prints where the time goes.

    flock /tmp/meshlab.lock .venv/bin/python tests/bench/bench_hbone.py [--quick] [--profile] [--json PATH]

Needs root and the lab's tools plus iperf3, wrk, nginx, stunnel. Exit status 1 when a phase
fails (the message names it), 130 when interrupted; the lab is taken down in every case and
checked to have left nothing behind.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench import loadgen, peers  # noqa: E402
from tests.bench.benchlab import BenchError, BenchLab, interrupt  # noqa: E402
from tests.bench.peers import SMALL_FILE  # noqa: E402
from tests.bench.suite import code_identity, pids_by_comm  # noqa: E402

LAB = "mlbench"
NS_PLAIN, NS_MESH = "bench-plain", "bench-mesh"
IPERF_PORT, HTTP_PORT, STATUS_PORT = 5201, 8080, 8090
# stunnel: the client listens on the client pod's loopback, the server on the server pod's IP.
ST_IPERF_LOCAL, ST_HTTP_LOCAL = 15201, 15080
ST_IPERF_TLS, ST_HTTP_TLS = 15443, 15444
PATHS = ("direct", "stunnel", "mesh_cross", "mesh_same")
MESH_PATHS = ("mesh_cross", "mesh_same")
LOADED_CONNECTIONS = 16
BENCH = BenchLab("bench_hbone", LAB)
STATE_DIR, MESHCTL = BENCH.state_dir, BENCH.meshctl_argv
log, current_phase, phase = BENCH.log, BENCH.current_phase, BENCH.phase
meshctl, lab_exec, lab_status = BENCH.meshctl, BENCH.lab_exec, BENCH.lab_status
other_labs, lab_down_and_check = BENCH.other_labs, BENCH.lab_down_and_check
wait_listening = BENCH.wait_listening

# --- configuration files ------------------------------------------------------------------


def stunnel_server(tmp: Path) -> list[str]:
    return peers.stunnel_server(tmp, tmp / "certs", {
        "iperf": (f"0.0.0.0:{ST_IPERF_TLS}", f"127.0.0.1:{IPERF_PORT}"),
        "http": (f"0.0.0.0:{ST_HTTP_TLS}", f"127.0.0.1:{HTTP_PORT}")}, debug="info")


def stunnel_client(tmp: Path, server_ip: str) -> list[str]:
    return peers.stunnel_client(tmp, tmp / "certs", {
        "iperf": (f"127.0.0.1:{ST_IPERF_LOCAL}", f"{server_ip}:{ST_IPERF_TLS}"),
        "http": (f"127.0.0.1:{ST_HTTP_LOCAL}", f"{server_ip}:{ST_HTTP_TLS}")}, debug="info")


def nginx_command(tmp: Path, ns: str) -> list[str]:
    return peers.nginx_server(tmp, f"nginx-{ns}", HTTP_PORT, STATUS_PORT)


# --- manifests ------------------------------------------------------------------------------


def _pod(ns: str, name: str, node: str, containers: dict[str, list[str]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": c, "image": c, "command": cmd}
                                                      for c, cmd in containers.items()]}}


def _yaml(docs: list[dict[str, Any]]) -> str:
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"  # JSON is YAML


def servers_manifest(tmp: Path) -> str:
    iperf = ["iperf3", "-s", "-p", str(IPERF_PORT)]
    sleep = ["sleep", "infinity"]
    return _yaml([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS_PLAIN}},
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NS_MESH, "labels": {"istio.io/dataplane-mode": "ambient"}}},
        _pod(NS_PLAIN, "server", "node2", {"iperf3": iperf, "nginx": nginx_command(tmp, NS_PLAIN),
                                           "stunnel": stunnel_server(tmp)}),
        _pod(NS_MESH, "server", "node2", {"iperf3": iperf, "nginx": nginx_command(tmp, NS_MESH)}),
        _pod(NS_MESH, "client-far", "node1", {"sleep": sleep}),
        _pod(NS_MESH, "client-near", "node2", {"sleep": sleep}),
    ])


def client_manifest(tmp: Path, server_ip: str) -> str:
    return _yaml([_pod(NS_PLAIN, "client", "node1", {"stunnel": stunnel_client(tmp, server_ip)})])


# --- the lab --------------------------------------------------------------------------------


# --- processes, CPU and access logs ---------------------------------------------------------


def cpu_split(pid: int) -> tuple[float, float] | None:
    """(utime, stime) in seconds of the whole process (all threads, exited ones included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) / loadgen.CLK_TCK, int(fields[12]) / loadgen.CLK_TCK


def ztunnel_log_tail(node: str, lines: int = 8) -> str:
    path = STATE_DIR / f"ztunnel-{node}.log"
    tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
    return f"{path} ends:\n  " + "\n  ".join(tail)


def ztunnel_pid(node: str) -> int:
    return BENCH.ztunnel_pid(node, ztunnel_log_tail)

def stunnel_pid(netns: str) -> int:
    pids = pids_by_comm(netns, "stunnel")
    if len(pids) != 1:
        raise BenchError(f"expected one stunnel process in {netns}, found {pids}")
    return pids[0]


_ACCESS = re.compile(r"ztunnel\.access: (\w+) via=(\S+) src=([\d.]+):\d+ .* flags=(\S+)")


def access_counts() -> collections.Counter[tuple[str, str, str, str, str]]:
    """(node, direction, via, source IP, flags) -> access-log lines, over both ztunnels."""
    counts: collections.Counter[tuple[str, str, str, str, str]] = collections.Counter()
    for node in ("node1", "node2"):
        text = (STATE_DIR / f"ztunnel-{node}.log").read_text(errors="replace")
        for m in _ACCESS.finditer(text):
            counts[(node, m.group(1), m.group(2), m.group(3), m.group(4))] += 1
    return counts


@dataclass
class BenchPath:
    name: str
    client: str               # ns/pod for `meshctl lab exec`
    client_ip: str
    iperf_host: str
    iperf_port: int
    url: str
    server_sees: str          # the peer address the iperf3 server must report
    via: tuple[str, str] | None = None  # mesh: (node, via) of the expected outbound access lines

    def expect_access(self, before: collections.Counter[tuple[str, str, str, str, str]],
                      after: collections.Counter[tuple[str, str, str, str, str]], connections: int,
                      what: str) -> dict[str, int]:
        """Check the run took this path; returns the flags of the new outbound lines."""
        new = after - before
        if self.via is None:
            new = collections.Counter({k: n for k, n in new.items() if k[3] == self.client_ip})
            if new:
                raise BenchError(f"{self.name} {what}: ztunnel logged connections on a path outside the mesh: "
                                 f"{dict(new)}")
            return {}
        node, via = self.via
        ours = {k: n for k, n in new.items() if k[:4] == (node, "outbound", via, self.client_ip)}
        got = sum(ours.values())
        if got < connections:
            raise BenchError(f"{self.name} {what}: {node}'s ztunnel logged {got} outbound via={via} connections from "
                             f"{self.client_ip}, expected {connections}: the traffic did not take the mesh path")
        flags: dict[str, int] = collections.Counter()
        for k, n in ours.items():
            flags[k[4]] += n
        return dict(flags)


@dataclass
class Watch:
    """CPU of the proxy processes and ztunnel access-log lines around one measure."""
    procs: dict[str, int]
    before_cpu: dict[str, float | None] = field(default_factory=dict)
    before_access: collections.Counter[tuple[str, str, str, str, str]] = field(default_factory=collections.Counter)
    started: float = 0.0

    def start(self) -> None:
        self.before_access = access_counts()
        self.before_cpu = {k: loadgen.cpu_seconds([p]) for k, p in self.procs.items()}
        self.started = time.monotonic()

    def cpu_percent(self) -> dict[str, float]:
        wall = time.monotonic() - self.started
        out = {}
        for k, p in self.procs.items():
            now, before = loadgen.cpu_seconds([p]), self.before_cpu.get(k)
            if now is None or before is None:
                where = ztunnel_log_tail(k.split("-", 1)[1]) if k.startswith("ztunnel-") else f"see {STATE_DIR}/logs"
                raise BenchError(f"{k} (pid {p}) exited during the measure; {where}")
            out[k] = 100.0 * (now - before) / wall
        return out

    def finish(self, path: BenchPath, connections: int, what: str) -> tuple[dict[str, float], dict[str, int]]:
        cpu = self.cpu_percent()
        deadline = time.monotonic() + 5
        while True:  # ztunnel writes a connection's access line when it ends
            try:
                flags = path.expect_access(self.before_access, access_counts(), connections, what)
                break
            except BenchError:
                if time.monotonic() > deadline or path.via is None:
                    raise
                time.sleep(0.1)
        return cpu, flags


# --- measures -------------------------------------------------------------------------------


IPERF_RESULTS_RACE = "unable to receive results"


def iperf(path: BenchPath, seconds: int) -> dict[str, float]:
    """One stream, client -> server; Gb/s received by the server. iperf3 3.12 reads the
    server's results on a non-blocking control socket and gives up ("unable to receive results:
    Resource temporarily unavailable") when the length prefix and the JSON body arrive apart,
    which a proxy in the path can cause; such a run is repeated once (and logged)."""
    try:
        return _iperf_once(path, seconds)
    except BenchError as exc:
        if IPERF_RESULTS_RACE not in str(exc):
            raise
        log(f"{path.name}: iperf3 lost its results exchange ({IPERF_RESULTS_RACE}); running it again")
        return _iperf_once(path, seconds)


def _iperf_once(path: BenchPath, seconds: int) -> dict[str, float]:
    out = lab_exec(path.client, "iperf3", "-c", path.iperf_host, "-p", str(path.iperf_port), "-t", str(seconds),
                   "-J", "--get-server-output", timeout=seconds + 40)
    try:
        res = loadgen.parse_iperf(out.stdout)
    except BenchError as exc:
        stderr = out.stderr.strip()
        raise BenchError(f"{exc} (exit {out.returncode}" + (f"; stderr: {stderr[-600:]})" if stderr else ")")) from None
    if res["peers"] != [path.server_sees]:
        raise BenchError(f"the iperf3 server saw peer(s) {res['peers']}, expected {path.server_sees}")
    cpu = json.loads(out.stdout)["end"].get("cpu_utilization_percent", {})
    return {"gbps": res["gbps"], "retransmits": res["retransmits"],
            "iperf_client_cpu": float(cpu.get("host_total", 0.0)),
            "iperf_server_cpu": float(cpu.get("remote_total", 0.0))}


def wrk(path: BenchPath, connections: int, seconds: int) -> dict[str, float]:
    """Keep-alive requests for the small file over ``connections`` connections: requests/s and
    latency percentiles in ms."""
    out = lab_exec(path.client, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                   path.url, timeout=seconds + 40)
    if out.returncode != 0:
        raise BenchError(f"wrk failed (exit {out.returncode}): {out.stdout[-800:]}{out.stderr[-400:]}")
    res = loadgen.parse_wrk(out.stdout)
    if res["rps"] <= 0:
        raise BenchError(f"wrk made no request: {out.stdout[-800:]}")
    return res


def summary(values: list[float]) -> dict[str, Any]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": values}


# --- profile --------------------------------------------------------------------------------


def py_spy() -> str:
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        log("py-spy is not in the venv; installing it there (not a project dependency)")
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], capture_output=True,
                             text=True, timeout=300, check=False)
        if pip.returncode != 0 or not exe.exists():
            raise BenchError(f"could not install py-spy: {pip.stderr.strip()[-500:]}")
    return str(exe)


_FRAME = re.compile(r"^(.*) \((.*):(\d+)\)$")
Frame = tuple[str, str, str]  # function, short file, line
IDLE = "idle: trio waiting in epoll_wait"
# (label, predicate on the stack, leaf last), first match wins
_CATEGORIES: tuple[tuple[str, Callable[[list[Frame]], bool]], ...] = (
    (IDLE, lambda st: st[-1][0] == "EpollIOManager.get_events"),
    ("h2 trace log: repr(frame) of every received frame (hexlify, discarded)",
     lambda st: any(f == "Frame.__repr__" and p.endswith("hyperframe/frame.py") for f, p, _ in st)),
    ("ssl.py: TLS record crypto in OpenSSL (SSLSocket: plus its socket syscall)", lambda st: st[-1][1] == "ssl.py"),
    ("trio SSLStream (MemoryBIO shuffling, retry loop)", lambda st: st[-1][1] == "trio/_ssl.py"),
    ("socket send/recv syscalls (trio/_socket.py)", lambda st: st[-1][1] in ("trio/_socket.py", "socket.py")),
    ("h2/hyperframe/hpack (HTTP/2 framing, flow control)",
     lambda st: st[-1][1].split("/", 1)[0] in ("h2", "hyperframe", "hpack")),
    ("ztunnel/hbone.py (HboneCore)", lambda st: st[-1][1] == "ztunnel/hbone.py"),
    ("ztunnel/tunnel.py (H2Link, Tunnel)", lambda st: st[-1][1] == "ztunnel/tunnel.py"),
    ("ztunnel/splice.py (copy loop)", lambda st: st[-1][1] == "ztunnel/splice.py"),
    ("trio scheduler, parking lots, events", lambda st: st[-1][1].startswith("trio/_core/") or st[-1][1] == "trio/_sync.py"),
    ("trio other (highlevel streams)", lambda st: st[-1][1].startswith("trio/")),
)
_ROOT_FRAMES = {"<frozen runpy>", "ztunnel/__main__.py"}


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", f"{ROOT}/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def parse_profile(text: str, top: int = 15) -> dict[str, Any]:
    """py-spy ``--format raw --idle`` (collapsed stacks) of the ztunnel process: only the trio
    thread (stacks through ztunnel/__main__.py; gRPC's threads are left out), in % of its
    samples (wall time) by category, by function (self) and by function (inclusive)."""
    self_fn: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    cats: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames: list[Frame] = []
        for raw in stack.split(";"):
            m = _FRAME.match(raw)
            frames.append((m.group(1), _short(m.group(2)), m.group(3)) if m else (raw, "?", "0"))
        if not any(p == "ztunnel/__main__.py" for _, p, _ in frames):
            continue  # another thread
        n = int(count)
        total += n
        self_fn[f"{frames[-1][0]} ({frames[-1][1]})"] += n
        for key in {f"{f} ({p})" for f, p, _ in frames
                    if p not in _ROOT_FRAMES and (p, f) not in {("trio/_core/_run.py", "run"),
                                                                ("trio/_core/_run.py", "unrolled_run")}}:
            incl[key] += n
        cats[next((label for label, pred in _CATEGORIES if pred(frames)), "other")] += n

    def pct(c: collections.Counter[str], k: int) -> list[tuple[str, float]]:
        return [(key, 100.0 * v / total) for key, v in c.most_common(k)] if total else []
    busy = total - cats[IDLE]
    return {"samples": total, "idle_percent": 100.0 * cats[IDLE] / total if total else 0.0,
            "categories": pct(cats, len(cats)),
            "categories_of_busy": [(k, 100.0 * v / busy) for k, v in cats.most_common() if k != IDLE] if busy else [],
            "self": pct(self_fn, top), "inclusive": pct(incl, top)}


def profile(path: BenchPath, kind: str, seconds: int, tmp: Path) -> dict[str, Any]:
    """py-spy on both ztunnels during one extra run (``kind``: iperf3 or wrk -c1) on ``path``."""
    spy = py_spy()
    pids = {node: ztunnel_pid(node) for node in ("node1", "node2")}
    watch = Watch({f"ztunnel-{n}": p for n, p in pids.items()})
    runner = [*MESHCTL, "exec", path.client, "--"]
    if kind == "iperf3":
        runner += ["iperf3", "-c", path.iperf_host, "-p", str(path.iperf_port), "-t", str(seconds + 2), "-J"]
    else:
        runner += ["wrk", "-t1", "-c1", f"-d{seconds + 2}s", "--latency", path.url]
    procs: list[subprocess.Popen[str]] = []
    try:
        load = subprocess.Popen(runner, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        procs.append(load)
        time.sleep(1.5)  # past the exec start and TCP slow start
        if load.poll() is not None:
            raise BenchError(f"the {kind} run ended early: {load.communicate()[1][-500:]}")
        watch.start()
        split_before = {node: cpu_split(pid) for node, pid in pids.items()}
        spies = {}
        for node, pid in pids.items():
            out = tmp / f"pyspy-{kind}-{node}.txt"
            spies[node] = (subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds),
                                             "--rate", "250", "--format", "raw", "--idle", "-o", str(out)],
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out)
            procs.append(spies[node][0])
        result: dict[str, Any] = {"kind": kind, "path": path.name, "seconds": seconds, "nodes": {}}
        for node, (proc, out) in spies.items():
            msg = proc.communicate(timeout=seconds + 30)[0]
            if proc.returncode != 0 or not out.exists():
                raise BenchError(f"py-spy on {node}'s ztunnel (pid {pids[node]}) failed: {msg.strip()[-500:]}")
            result["nodes"][node] = parse_profile(out.read_text())
            errors = re.search(r"Errors: (\d+)", msg)
            result["nodes"][node]["sampling_errors"] = int(errors.group(1)) if errors else None
        wall = time.monotonic() - watch.started
        cpu = watch.cpu_percent()
        for node, pid in pids.items():
            result["nodes"][node]["cpu_percent"] = cpu[f"ztunnel-{node}"]
            before, after = split_before[node], cpu_split(pid)
            if before is not None and after is not None:
                result["nodes"][node]["user_percent"] = 100.0 * (after[0] - before[0]) / wall
                result["nodes"][node]["sys_percent"] = 100.0 * (after[1] - before[1]) / wall
        stdout, stderr = load.communicate(timeout=seconds + 40)
        try:
            if kind == "iperf3":
                result["gbps_under_profiler"] = loadgen.parse_iperf(stdout)["gbps"]
            elif load.returncode != 0:
                raise BenchError(f"wrk exited {load.returncode}")
            else:
                result["p99_ms_under_profiler"] = loadgen.parse_wrk(stdout)["p99_ms"]
        except BenchError as exc:
            raise BenchError(f"the profiled {kind} run failed: {exc}: {(stderr or stdout)[-500:]}") from None
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


# --- logs -----------------------------------------------------------------------------------


def container_log(status: dict[str, Any], ns: str, pod: str, container: str) -> str:
    (p,) = [p for p in status["pods"] if p["namespace"] == ns and p["name"] == pod]
    path = STATE_DIR / "logs" / f"{ns}_{pod}_{p['uid']}" / f"{container}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def check_stunnel_logs(status: dict[str, Any]) -> dict[str, Any]:
    """Both stunnels negotiated TLS 1.3 and each verified its peer's certificate."""
    out: dict[str, Any] = {}
    for side, pod, peer in (("client", "client", "bench-server"), ("server", "server", "bench-client")):
        text = container_log(status, NS_PLAIN, pod, "stunnel")
        accepted = len(re.findall(rf"Certificate accepted at depth=0: CN={peer}", text))
        suites = collections.Counter(re.findall(r"(TLSv[\d.]+) ciphersuite: (\S+)", text))
        if not accepted or not suites or any(v != "TLSv1.3" for v, _ in suites):
            raise BenchError(f"stunnel {side}: expected TLS 1.3 with {peer}'s certificate verified; its log has "
                             f"{accepted} accepted certificates and ciphersuites {dict(suites)}:\n{text[-1500:]}")
        out[side] = {"peer_certificates_verified": accepted,
                     "ciphersuites": {f"{v} {s}": n for (v, s), n in suites.items()}}
    return out


def log_problems() -> dict[str, list[str]]:
    """WARNING/ERROR lines of both ztunnels and the control plane, counted by message shape."""
    return BENCH.log_problems()


# --- the run --------------------------------------------------------------------------------


def setup_lab(tmp: Path) -> tuple[dict[str, BenchPath], dict[str, Any]]:
    with phase("lab up (2 nodes)"):
        meshctl("up", "--nodes", "2", "--restart-backoff", "0.5", timeout=240)
    with phase("apply namespaces, server pods and mesh client pods"):
        meshctl("apply", "-f", "-", "--wait", "--timeout", "90", input=servers_manifest(tmp), timeout=150)
        status = lab_status()
        pods = {(p["namespace"], p["name"]): p for p in status["pods"]}
        plain_server = pods[(NS_PLAIN, "server")]["ip"]
    with phase("apply the stunnel client pod"):
        meshctl("apply", "-f", "-", "--wait", "--timeout", "90", input=client_manifest(tmp, plain_server), timeout=150)
        status = lab_status()
        pods = {(p["namespace"], p["name"]): p for p in status["pods"]}
        for (ns, name), p in pods.items():
            if p["status"] != "Running" or p["node"] != {"client": "node1", "client-far": "node1"}.get(name, "node2"):
                raise BenchError(f"pod {ns}/{name} is {p['status']} on {p['node']}")
    with phase("wait for the servers and stunnels to listen"):
        netns = {k: p["netns"] for k, p in pods.items()}
        for key, port, what in (((NS_PLAIN, "server"), IPERF_PORT, "iperf3"), ((NS_PLAIN, "server"), HTTP_PORT, "nginx"),
                                ((NS_PLAIN, "server"), ST_IPERF_TLS, "stunnel server"),
                                ((NS_PLAIN, "server"), ST_HTTP_TLS, "stunnel server"),
                                ((NS_MESH, "server"), IPERF_PORT, "iperf3"), ((NS_MESH, "server"), HTTP_PORT, "nginx"),
                                ((NS_PLAIN, "client"), ST_IPERF_LOCAL, "stunnel client"),
                                ((NS_PLAIN, "client"), ST_HTTP_LOCAL, "stunnel client")):
            wait_listening(netns[key], port, f"{what} in {key[0]}/{key[1]}")
    plain_client, mesh_server = pods[(NS_PLAIN, "client")]["ip"], pods[(NS_MESH, "server")]["ip"]
    far, near = pods[(NS_MESH, "client-far")]["ip"], pods[(NS_MESH, "client-near")]["ip"]
    paths = {
        "direct": BenchPath("direct", f"{NS_PLAIN}/client", plain_client, plain_server, IPERF_PORT,
                            f"http://{plain_server}:{HTTP_PORT}/{SMALL_FILE}", plain_client),
        "stunnel": BenchPath("stunnel", f"{NS_PLAIN}/client", plain_client, "127.0.0.1", ST_IPERF_LOCAL,
                             f"http://127.0.0.1:{ST_HTTP_LOCAL}/{SMALL_FILE}", "127.0.0.1"),
        "mesh_cross": BenchPath("mesh_cross", f"{NS_MESH}/client-far", far, mesh_server, IPERF_PORT,
                                f"http://{mesh_server}:{HTTP_PORT}/{SMALL_FILE}", far, ("node1", "hbone")),
        "mesh_same": BenchPath("mesh_same", f"{NS_MESH}/client-near", near, mesh_server, IPERF_PORT,
                               f"http://{mesh_server}:{HTTP_PORT}/{SMALL_FILE}", near, ("node2", "local")),
    }
    return paths, status


def measure_all(paths: dict[str, BenchPath], status: dict[str, Any], repeats: int, iperf_s: int, wrk_s: int,
                loaded: bool) -> dict[str, Any]:
    pods = {(p["namespace"], p["name"]): p for p in status["pods"]}
    with phase("finding the ztunnel and stunnel processes"):
        procs = {"ztunnel-node1": ztunnel_pid("node1"), "ztunnel-node2": ztunnel_pid("node2"),
                 "stunnel-client": stunnel_pid(pods[(NS_PLAIN, "client")]["netns"]),
                 "stunnel-server": stunnel_pid(pods[(NS_PLAIN, "server")]["netns"])}
    raw: dict[str, dict[str, list[float]]] = {p: collections.defaultdict(list) for p in PATHS}
    flags: dict[str, collections.Counter[str]] = {p: collections.Counter() for p in PATHS}

    def record(name: str, prefix: str, values: dict[str, float], cpu: dict[str, float],
               fl: dict[str, int]) -> None:
        for k, v in values.items():
            raw[name][f"{prefix}{k}"].append(v)
        for k, v in cpu.items():
            raw[name][f"{prefix}cpu_{k}"].append(v)
        flags[name].update(fl)

    for name in PATHS:  # warm-up: certificates fetched, HBONE connection pooled, path checked
        with phase(f"warm-up {name}: one request over {paths[name].url}"):
            watch = Watch(procs)
            watch.start()
            wrk(paths[name], 1, 1)
            watch.finish(paths[name], 1, "warm-up")
    measures: list[tuple[str, int, Callable[[BenchPath], dict[str, float]]]] = [
        ("iperf_", 2, lambda p: iperf(p, iperf_s)),  # iperf3: a control and a data connection
        ("c1_", 1, lambda p: wrk(p, 1, wrk_s)),
    ]
    if loaded:
        measures.append((f"c{LOADED_CONNECTIONS}_", LOADED_CONNECTIONS, lambda p: wrk(p, LOADED_CONNECTIONS, wrk_s)))
    for prefix, conns, fn in measures:
        label = {"iperf_": "iperf3", "c1_": "wrk -c1"}.get(prefix, f"wrk -c{LOADED_CONNECTIONS}")
        for i in range(repeats):
            for name in PATHS:  # round robin: every path meets the same machine state
                with phase(f"{name}: {label} run {i + 1}/{repeats}"):
                    for node in ("node1", "node2"):
                        if ztunnel_pid(node) != procs[f"ztunnel-{node}"]:
                            raise BenchError(f"the ztunnel on {node} restarted; {ztunnel_log_tail(node)}")
                    watch = Watch(procs)
                    watch.start()
                    values = fn(paths[name])
                    cpu, fl = watch.finish(paths[name], conns, label)
                    record(name, prefix, values, cpu, fl)
    out: dict[str, Any] = {}
    for name in PATHS:
        out[name] = {k: summary(v) for k, v in sorted(raw[name].items())}
        out[name]["access_log_flags"] = dict(flags[name])
    return out


RATIO_SUFFIXES = ("_gbps", "_rps", "_p50_ms", "_p90_ms", "_p99_ms")


def evaluate(result: dict[str, Any]) -> None:
    """Ratios to ``direct`` and the issue's two targets."""
    paths = result["paths"]

    def med(p: str, k: str) -> float:
        v: float = paths[p][k]["median"]
        return v
    for p in PATHS:
        paths[p]["ratio_to_direct"] = {k: med(p, k) / med("direct", k) if med("direct", k) else None
                                       for k in paths["direct"] if k.endswith(RATIO_SUFFIXES)}
    latency = ["c1_"] + ([f"c{LOADED_CONNECTIONS}_"] if f"c{LOADED_CONNECTIONS}_p99_ms" in paths["direct"] else [])
    targets: dict[str, Any] = {}
    st_gbps = med("stunnel", "iperf_gbps")
    for p in MESH_PATHS:
        ratio = med(p, "iperf_gbps") / st_gbps
        targets[f"{p}_throughput"] = {"mesh_gbps": med(p, "iperf_gbps"), "stunnel_gbps": st_gbps,
                                      "ratio": ratio, "target": ">= 1", "met": ratio >= 1}
        for prefix in latency:
            added_mesh = med(p, f"{prefix}p99_ms") - med("direct", f"{prefix}p99_ms")
            added_st = med("stunnel", f"{prefix}p99_ms") - med("direct", f"{prefix}p99_ms")
            targets[f"{p}_{prefix}p99_added"] = {
                "mesh_added_ms": added_mesh, "stunnel_added_ms": added_st,
                "ratio": added_mesh / added_st if added_st > 0 else None, "target": "<= 2",
                "met": added_mesh <= 2 * added_st}
    result["targets"] = targets


def run(quick: bool = False, repeats: int | None = None, seconds: int | None = None, loaded: bool = True,
        do_profile: bool = False, allow_other_labs: bool = False, keep_logs: Path | None = None) -> dict[str, Any]:
    """Measure the four paths on one lab; returns every number. Raises BenchError."""
    with phase("checking the machine"):
        if os.geteuid() != 0:
            raise BenchError("must run as root (the lab needs it)")
        missing = [t for t in ("ip", "nft", "nsenter", "ss", "iperf3", "wrk", "nginx", "stunnel")
                   if shutil.which(t) is None]
        if missing:
            raise BenchError(f"missing tools: {', '.join(missing)} (scripts/setup installs them)")
        others = other_labs()
        if others and not allow_other_labs:
            raise BenchError(f"another lab is up ({', '.join(others)}): its processes would share the CPUs. Run one "
                             "lab at a time (flock /tmp/meshlab.lock), or pass --allow-other-labs")
        if do_profile:
            py_spy()
    repeats = repeats or (1 if quick else 3)
    iperf_s = seconds or (3 if quick else 5)
    wrk_s = seconds or (3 if quick else 5)
    stunnel_version = subprocess.run(["stunnel", "-version"], capture_output=True, text=True, check=False).stderr
    result: dict[str, Any] = {
        "quick": quick, "repeats": repeats, "iperf_seconds": iperf_s, "wrk_seconds": wrk_s,
        "cpus": os.cpu_count(), "kernel": os.uname().release, "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "stunnel": next((ln.strip() for ln in stunnel_version.splitlines() if ln.startswith("stunnel")), "?"),
        "other_labs": other_labs(), "code": code_identity(),
    }
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-hbone-"))
    os.chmod(tmp, 0o755)

    def copy_logs(failed: bool) -> list[str]:
        if keep_logs is not None and STATE_DIR.exists():
            for src in STATE_DIR.rglob("*.log"):  # logs only: no credentials, keys or sockets
                dst = keep_logs / src.relative_to(STATE_DIR)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            log(f"lab logs copied to {keep_logs}")
        return []

    try:
        with BENCH.session(copy_logs):
            with phase("making certificates and configuration"):
                peers.make_certificates(tmp / "certs", "bench-hbone CA")
            paths, status = setup_lab(tmp)
            result["pods"] = {p: {"client": b.client, "client_ip": b.client_ip,
                                  "target": f"{b.iperf_host}:{b.iperf_port}", "url": b.url} for p, b in paths.items()}
            result["paths"] = measure_all(paths, status, repeats, iperf_s, wrk_s, loaded)
            with phase("checking stunnel's logs"):
                result["stunnel_tls"] = check_stunnel_logs(status)
            if do_profile:
                with phase("profile: py-spy on both ztunnels during a mesh_cross iperf3 run"):
                    result["profile_bulk"] = profile(paths["mesh_cross"], "iperf3", max(iperf_s, 5), tmp)
                with phase("profile: py-spy on both ztunnels during a mesh_cross wrk -c1 run"):
                    result["profile_latency"] = profile(paths["mesh_cross"], "wrk", max(wrk_s, 5), tmp)
            with phase("reading the ztunnel and control-plane logs"):
                result["log_problems"] = log_problems()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    evaluate(result)
    result["seconds"] = time.monotonic() - started
    return result


# --- report ---------------------------------------------------------------------------------


def format_report(result: dict[str, Any]) -> str:
    paths = result["paths"]
    loaded = f"c{LOADED_CONNECTIONS}_rps" in paths["direct"]
    rows: list[tuple[str, str, int]] = [("iperf_gbps", "iperf3 throughput, Gb/s", 2)]
    for prefix, name in (("c1_", "wrk -c1"), *([(f"c{LOADED_CONNECTIONS}_", f"wrk -c{LOADED_CONNECTIONS}")] if loaded else [])):
        rows += [(f"{prefix}rps", f"{name} requests/s", 0), (f"{prefix}p50_ms", f"{name} latency p50, ms", 3),
                 (f"{prefix}p99_ms", f"{name} latency p99, ms", 3)]
    multi = result["repeats"] > 1
    lines = [f"{result['repeats']} run(s) of each measure ({result['iperf_seconds']} s iperf3, {result['wrk_seconds']} s "
             f"wrk), paths interleaved; cell: median" + (" (min-max)" if multi else "") + "; ratio = median / median(direct)",
             "",
             "| measure | " + " | ".join(PATHS) + " | " + " | ".join(f"{p}/direct" for p in PATHS[1:]) + " |",
             "|---|" + "---|" * (2 * len(PATHS) - 1)]
    for key, label, digits in rows:
        cells = []
        for p in PATHS:
            s = paths[p][key]
            cells.append(f"{s['median']:.{digits}f}" + (f" ({s['min']:.{digits}f}-{s['max']:.{digits}f})" if multi else ""))
        for p in PATHS[1:]:
            r = paths[p]["ratio_to_direct"].get(key)
            cells.append(f"{r:.2f}" if r is not None else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    lines += ["", "Proxy CPU during the runs (% of one core, median; iperf3's own: client/server):", ""]
    lines += ["| measure | " + " | ".join(PATHS) + " |", "|---|" + "---|" * len(PATHS)]
    for prefix, name in (("iperf_", "iperf3"), ("c1_", "wrk -c1"), *([(f"c{LOADED_CONNECTIONS}_", f"wrk -c{LOADED_CONNECTIONS}")] if loaded else [])):
        cells = []
        for p in PATHS:
            procs = ("stunnel-client", "stunnel-server") if p == "stunnel" else (
                ("ztunnel-node1", "ztunnel-node2") if p != "direct" else ())
            parts = [f"{k.split('-')[1]} {paths[p][f'{prefix}cpu_{k}']['median']:.0f}" for k in procs]
            if prefix == "iperf_":
                parts.append(f"iperf3 {paths[p]['iperf_iperf_client_cpu']['median']:.0f}/"
                             f"{paths[p]['iperf_iperf_server_cpu']['median']:.0f}")
            cells.append(", ".join(parts) or "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    lines += ["", "Targets (issue): mesh throughput >= stunnel's; p99 added by the mesh <= 2 x p99 added by stunnel "
              "(request latency = wrk -c1; the wrk -c16 rows are for information)", ""]
    for key, t in result["targets"].items():
        verdict = ("MET" if t["met"] else "NOT MET") + (" (information)" if f"_c{LOADED_CONNECTIONS}_" in key else "")
        if key.endswith("_throughput"):
            lines.append(f"  {key}: {t['mesh_gbps']:.2f} / {t['stunnel_gbps']:.2f} Gb/s = {t['ratio']:.2f} "
                         f"(target >= 1): {verdict}")
        else:
            ratio = f"{t['ratio']:.1f}x" if t["ratio"] is not None else "-"
            lines.append(f"  {key}: mesh adds {t['mesh_added_ms']:+.3f} ms, stunnel adds {t['stunnel_added_ms']:+.3f} ms "
                         f"= {ratio} (target <= 2x): {verdict}")
    notes = []
    for p in PATHS:
        errs = sum(sum(paths[p][k]["runs"]) for k in paths[p] if k.endswith(("_errors", "_non_2xx")))
        retr = sum(paths[p]["iperf_retransmits"]["runs"])
        fl = paths[p]["access_log_flags"]
        notes.append(f"{p}: {int(errs)} wrk errors/non-2xx, {int(retr)} TCP retransmits (iperf3)"
                     + (f", ztunnel access-log flags {fl}" if fl else ""))
    if "stunnel_tls" in result:
        st = result["stunnel_tls"]
        notes.append(f"stunnel: {', '.join(st['client']['ciphersuites'])}; the client verified the server's "
                     f"certificate {st['client']['peer_certificates_verified']}x, the server the client's "
                     f"{st['server']['peer_certificates_verified']}x")
    lines += ["", *notes]
    for key in ("profile_bulk", "profile_latency"):
        if key in result:
            lines += ["", *format_profile(result[key])]
    problems = {k: v for k, v in result.get("log_problems", {}).items() if v}
    if problems:
        lines += ["", "WARNING/ERROR lines in the lab's logs:"]
        for name, items in problems.items():
            lines += [f"  {name}:"] + [f"    {item}" for item in items]
    return "\n".join(lines)


def format_profile(prof: dict[str, Any]) -> list[str]:
    extra = (f"{prof['gbps_under_profiler']:.2f} Gb/s under the profiler" if "gbps_under_profiler" in prof
             else f"p99 {prof['p99_ms_under_profiler']:.3f} ms under the profiler")
    lines = [f"Profile: py-spy record (250 Hz, --idle; it stops the process for each sample) of each ztunnel's trio thread, {prof['seconds']} s of a "
             f"{prof['path']} {prof['kind']} run ({extra}); % of the thread's wall time"]
    for node, data in prof["nodes"].items():
        split = (f" (user {data['user_percent']:.0f}%, sys {data['sys_percent']:.0f}%)"
                 if "user_percent" in data else "")
        lines += ["", f"  {node} ztunnel: {data['cpu_percent']:.0f}% of a core{split} from /proc, "
                      f"{100 - data['idle_percent']:.0f}% of samples busy ({data['samples']} samples, "
                      f"{data.get('sampling_errors')} sampling errors)",
                  "    by category (leaf frame): % of wall time, % of busy samples"]
        of_busy = dict(data["categories_of_busy"])
        lines += [f"      {pct:5.1f}%  " + (f"{of_busy[name]:5.1f}%" if name in of_busy else "     ") + f"  {name}"
                  for name, pct in data["categories"]]
        lines += ["    top functions, self:"]
        lines += [f"      {pct:5.1f}%  {name}" for name, pct in data["self"][:12]]
        lines += ["    top functions, inclusive:"]
        lines += [f"      {pct:5.1f}%  {name}" for name, pct in data["inclusive"][:12]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one run of each measure, 3 s each")
    parser.add_argument("--repeats", type=int, help="runs of each measure (default 3, --quick 1)")
    parser.add_argument("--seconds", type=int, help="duration of each iperf3 and wrk run (default 5, --quick 3)")
    parser.add_argument("--no-loaded", action="store_true", help=f"skip the wrk -c{LOADED_CONNECTIONS} runs")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy both ztunnels during an extra mesh_cross iperf3 run and wrk -c1 run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every number to PATH")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the lab's logs to DIR before lab down")
    parser.add_argument("--allow-other-labs", action="store_true", help="run even if another lab is up")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        result = run(quick=args.quick, repeats=args.repeats, seconds=args.seconds, loaded=not args.no_loaded,
                     do_profile=args.profile, allow_other_labs=args.allow_other_labs, keep_logs=args.keep_logs)
    except BenchError as exc:
        print(f"bench_hbone: failed in phase '{current_phase()}': {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bench_hbone: interrupted in phase '{current_phase()}'; the lab was taken down", file=sys.stderr)
        return 130
    print(format_report(result))
    print(f"\n(code: {result['code']}; {result['seconds']:.0f} s, {result['cpus']} CPUs, kernel {result['kernel']}, Python {result['python']}, "
          f"{result['openssl']}, {result['stunnel']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True))
        print(f"JSON saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
