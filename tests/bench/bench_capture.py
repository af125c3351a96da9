"""Cost of ztunnel's plain transparent forward, steered two ways, against no capture at all.

One topology (three network namespaces made here: client pod, node, server pod; veths created
from inside them, nothing in the host namespace), three paths measured in the same run:

1. ``direct``: client -> server through the node's routing, no capture;
2. ``captured``: the client pod enrolled, the tc programs of ``bpf.loader.Capture`` on the host
   side of the client's veth (and of the server's, for the return path) assign its connections
   to ztunnel's ``Proxy`` on a transparent listener at 15001 in the node namespace, which
   connects upstream with the client's own address;
3. ``tproxy``: the same ``Proxy`` process, steered by nftables TPROXY instead.

Per path: iperf3 bulk throughput (one stream) and wrk new connections per second with p50/p99
latency (``Connection: close`` against nginx with ``keepalive_timeout 0``: one connection per
request). Each measure runs 3 times (``--quick``: once, shorter); the report gives min/median/max
and median(path)/median(direct).

    .venv/bin/python tests/bench/bench_capture.py [--quick] [--json PATH]

Needs root, bcc and a mounted /sys/fs/bpf. Exit status 1 when a phase fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bpf.loader import (  # noqa: E402
    Capture,
    Decision,
    attached_filters,
    install_local_routing,
    remove_local_routing,
)
from meshctl.lab import netlab  # noqa: E402
from meshctl.lab.netlab import entered  # noqa: E402

PID = os.getpid()
PREFIX = f"bcap{PID}"
NODE, CLI, SRV = f"{PREFIX}-node", f"{PREFIX}-cli", f"{PREFIX}-srv"
GATEWAY, CLIENT_IP, SERVER_IP = "10.98.0.1", "10.98.0.2", "10.98.0.3"
CLI_VETH, SRV_VETH = "vc", "vs"
CLIENT_POD_ID = 1
IPERF_PORT, HTTP_PORT, LISTEN_PORT = 5201, 8080, 15001
MARK = 0x539
NFT_TABLE = "bcap"
PATHS = ("direct", "captured", "tproxy")
WAIT_S = 10.0

NFT = f"""\
table ip {NFT_TABLE} {{
  chain pre {{
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set {MARK} accept
    iifname "{CLI_VETH}" tcp dport {{ {IPERF_PORT}, {HTTP_PORT} }} tproxy to :{LISTEN_PORT} meta mark set {MARK} accept
  }}
}}
"""

# ztunnel's Proxy on a transparent listener, as its own process in the node namespace; the
# access log (one line per connection) goes to a file so the bench can count connections.
PROXY = textwrap.dedent("""\
    import logging, signal, sys, trio
    from prometheus_client import CollectorRegistry
    from ztunnel.metrics import Metrics
    from ztunnel.proxy import Proxy
    from ztunnel.sockets import transparent_listener
    from ztunnel.state import EMPTY
    logging.basicConfig(level=logging.INFO, filename=sys.argv[1], format="%(name)s %(message)s")
    async def main():
        proxy = Proxy("node", lambda: EMPTY, Metrics(CollectorRegistry()))
        listener = trio.SocketListener(transparent_listener(int(sys.argv[2])))
        if len(sys.argv) > 3:  # as ztunnel does: the TIME_WAIT lookup needs the listener
            from bpf.loader import Capture
            Capture(sys.argv[3]).set_listener("outbound", listener.socket.fileno())
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(proxy.serve, listener)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
    trio.run(main)
    """)

NGINX = """\
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_timeout 0;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen {port};
    location / {{ return 200 "ok"; }}
  }}
}}
"""


class BenchError(RuntimeError):
    """A phase failed; the message names it."""


def log(msg: str) -> None:
    print(f"[bench_capture {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


_T0 = time.monotonic()


# --- topology ------------------------------------------------------------------------------


def _pod(name: str, veth: str, ip: str) -> None:
    netlab.create_netns(name)
    netlab.wire_pod(NODE, name, veth, ip, GATEWAY)
    for key, value in (("net.ipv6.conf.all.disable_ipv6", "1"),
                       ("net.ipv4.ip_local_port_range", "1024 65000"),
                       ("net.ipv4.tcp_tw_reuse", "1")):
        netlab.sysctl(name, key, value)


def build_topology() -> None:
    netlab.create_netns(NODE)
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv6.conf.all.disable_ipv6", "1"),
        ("net.ipv6.conf.default.disable_ipv6", "1"),
        ("net.ipv4.ip_local_port_range", "1024 65000"),
        ("net.ipv4.tcp_tw_reuse", "1"),
    ):
        netlab.sysctl(NODE, key, value)
    _pod(CLI, CLI_VETH, CLIENT_IP)
    _pod(SRV, SRV_VETH, SERVER_IP)


def in_ns(ns: str, *cmd: str) -> list[str]:
    """A command line run in namespace ``ns`` (nsenter keeps /sys, so bpffs stays visible)."""
    return ["nsenter", f"--net=/run/netns/{ns}", *cmd]


def run_in(ns: str, *cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(in_ns(ns, *cmd), capture_output=True, text=True, timeout=timeout, check=False)


def wait_listening(ns: str, port: int, proc: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} before listening on :{port} in {ns}")
        out = run_in(ns, "ss", "-Hltn", f"sport = :{port}", timeout=5)
        if out.stdout.strip():
            return
        time.sleep(0.1)
    raise BenchError(f"{what} did not listen on :{port} in {ns} within {WAIT_S:.0f} s")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- steering ------------------------------------------------------------------------------


@dataclass
class Steering:
    capture: Capture
    access_log: Path

    def tc_filters(self) -> dict[str, list[str]]:
        with entered(NODE):
            return {v: attached_filters(v) for v in (CLI_VETH, SRV_VETH)}

    def nft_present(self) -> bool:
        out = run_in(NODE, "nft", "list", "tables", timeout=10)
        return f"table ip {NFT_TABLE}" in out.stdout

    def set(self, path: str) -> None:
        """Make ``path``'s steering the only one active, and check it."""
        with entered(NODE):
            for veth in (CLI_VETH, SRV_VETH):
                if path == "captured":
                    self.capture.attach_outbound(veth)
                else:
                    self.capture.detach_outbound(veth)
        if path == "tproxy" and not self.nft_present():
            netlab.load_nft(NODE, NFT)
        elif path != "tproxy" and self.nft_present():
            out = run_in(NODE, "nft", "delete", "table", "ip", NFT_TABLE, timeout=10)
            if out.returncode != 0:
                raise BenchError(f"removing nft table {NFT_TABLE} in {NODE}: {out.stderr.strip()}")
        filters, nft = self.tc_filters(), self.nft_present()
        want_tc = ["mesh_outbound"] if path == "captured" else []
        if any(f != want_tc for f in filters.values()) or nft != (path == "tproxy"):
            raise BenchError(f"{path}: steering not as expected: tc filters {filters}, nft table present {nft}")

    def proxied(self) -> int:
        """Connections the Proxy has finished (lines of its access log)."""
        try:
            text = self.access_log.read_text()
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if line.startswith("ztunnel.access"))

    def syns_captured(self) -> int:
        return self.capture.counters().get((CLIENT_POD_ID, Decision.SYN_TO_OUTBOUND), 0)

    def decisions(self) -> dict[str, int]:
        """The tc program's packet counters, per (pod id, decision), summed over CPUs."""
        return {f"{pod}/{d.value}": n for (pod, d), n in sorted(self.capture.counters().items())}


# --- measures ------------------------------------------------------------------------------


def iperf(seconds: int) -> float:
    """Gb/s received by the server, one stream, client pod -> server pod."""
    out = run_in(CLI, "iperf3", "-c", SERVER_IP, "-p", str(IPERF_PORT), "-t", str(seconds), "-J",
                 "--get-server-output", timeout=seconds + 30)
    try:
        data = json.loads(out.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 gave no JSON (exit {out.returncode}): {out.stderr.strip()[-500:]}") from None
    if "error" in data:
        raise BenchError(f"iperf3: {data['error']}")
    # The server's own view (its text output): the peer address of the control and data connections.
    seen = set(re.findall(r"(?:Accepted connection from|connected to) ([\d.]+)", data.get("server_output_text", "")))
    if seen != {CLIENT_IP}:
        raise BenchError(f"iperf3 server saw {seen}, not the client pod's address {CLIENT_IP}")
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(seconds: int) -> dict[str, float]:
    """New connections per second (one request each) and p50/p99 latency in ms."""
    out = run_in(CLI, "wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-H", "Connection: close",
                 f"http://{SERVER_IP}:{HTTP_PORT}/", timeout=seconds + 30)
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    if out.returncode != 0 or not (rps and p50 and p99):
        raise BenchError(f"wrk failed (exit {out.returncode}): {text[-800:]}{out.stderr[-300:]}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"conn_per_s": float(rps.group(1)), "p50_ms": _ms(p50.group(1)), "p99_ms": _ms(p99.group(1)),
            "socket_errors": float(sum(int(g) for g in errors.groups())) if errors else 0.0,
            "non_2xx": float(non2xx.group(1)) if non2xx else 0.0}


def summary(values: list[float]) -> dict[str, Any]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": values}


# --- the run -------------------------------------------------------------------------------


@contextlib.contextmanager
def lab(tmp: Path) -> Iterator[Steering]:
    procs: list[subprocess.Popen[Any]] = []
    capture = Capture(PREFIX)
    try:
        build_topology()
        (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, port=HTTP_PORT))
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir()
        starts: list[tuple[str, int, list[str], Path]] = [
            (SRV, IPERF_PORT, ["iperf3", "-s", "-p", str(IPERF_PORT)], tmp / "iperf3.log"),
            (SRV, HTTP_PORT, ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c",
                              str(tmp / "nginx.conf"), "-g", "daemon off;"], tmp / "nginx.out"),
            (NODE, LISTEN_PORT, [sys.executable, "-c", PROXY, str(tmp / "access.log"), str(LISTEN_PORT), PREFIX],
             tmp / "proxy.out"),
        ]
        log("compiling and loading the capture programs")
        capture.load()  # before the proxy process adopts the pinned maps (two creators would race)
        for ns, port, cmd, out in starts:
            with out.open("w") as sink:
                proc = subprocess.Popen(in_ns(ns, *cmd), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
            procs.append(proc)
            wait_listening(ns, port, proc, Path(cmd[0]).name if cmd[0] != sys.executable else "ztunnel Proxy")
        capture.enroll(CLIENT_IP, CLIENT_POD_ID)
        with entered(NODE):
            install_local_routing(capture.mark)
            capture.attach_time_wait_lookup()
        yield Steering(capture=capture, access_log=tmp / "access.log")
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                stop(proc)
        with contextlib.suppress(Exception):
            if NODE in netlab.list_netns():
                with entered(NODE):
                    capture.detach_outbound(CLI_VETH)
                    capture.detach_outbound(SRV_VETH)
                    remove_local_routing(capture.mark)
        with contextlib.suppress(Exception):
            capture.remove_pins()
        for name in (CLI, SRV, NODE):
            with contextlib.suppress(Exception):
                netlab.kill_netns_processes(name, grace_s=1.0)
                netlab.remove_netns(name)


def run(quick: bool = False, repeats: int | None = None, seconds: int | None = None) -> dict[str, Any]:
    """Measure the three paths; returns every number. Raises BenchError."""
    missing = [t for t in ("iperf3", "wrk", "nginx", "nsenter", "ss", "nft") if shutil.which(t) is None]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}")
    repeats = repeats or (1 if quick else 3)
    iperf_s = seconds or (2 if quick else 5)
    wrk_s = seconds or (2 if quick else 5)
    result: dict[str, Any] = {"quick": quick, "repeats": repeats, "iperf_seconds": iperf_s, "wrk_seconds": wrk_s,
                              "cpus": os.cpu_count(), "kernel": os.uname().release, "paths": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmpdir, lab(Path(tmpdir)) as steer:
        for path in PATHS:
            steer.set(path)
            proxied, syns, decisions = steer.proxied(), steer.syns_captured(), steer.decisions()
            raw: dict[str, list[float]] = {}
            for i in range(repeats):
                log(f"{path}: iperf3 run {i + 1}/{repeats}")
                raw.setdefault("gbps", []).append(iperf(iperf_s))
                log(f"{path}: wrk run {i + 1}/{repeats}")
                for key, value in wrk(wrk_s).items():
                    raw.setdefault(key, []).append(value)
            time.sleep(0.3)  # the last connections' access-log lines
            proxied_gain, syn_gain = steer.proxied() - proxied, steer.syns_captured() - syns
            expected = {"direct": (False, False), "captured": (True, True), "tproxy": (True, False)}[path]
            if (proxied_gain > 0, syn_gain > 0) != expected or min(proxied_gain, syn_gain) < 0:
                raise BenchError(f"{path}: wrong steering: the Proxy finished {proxied_gain} connections and "
                                 f"the tc program captured {syn_gain} SYNs during the phase")
            result["paths"][path] = {
                **{k: summary(v) for k, v in raw.items()},
                "proxied_connections": proxied_gain,
                "tc_captured_syns": syn_gain,
                "tc_counters_gain": {k: v - decisions.get(k, 0) for k, v in steer.decisions().items()
                                     if v != decisions.get(k, 0)},
            }
    direct = result["paths"]["direct"]
    for path in PATHS:
        p = result["paths"][path]
        p["ratio"] = {k: p[k]["median"] / direct[k]["median"] if direct[k]["median"] else None
                      for k in ("gbps", "conn_per_s", "p50_ms", "p99_ms")}
    result["seconds"] = time.monotonic() - started
    return result


def format_report(result: dict[str, Any]) -> str:
    rows = [("gbps", "iperf3 throughput, Gb/s", 2), ("conn_per_s", "new connections/s (wrk)", 0),
            ("p50_ms", "latency p50, ms", 3), ("p99_ms", "latency p99, ms", 3)]
    lines = [f"{result['repeats']} run(s) each; cells: median (min-max); ratio = median / median(direct)", "",
             "| measure | " + " | ".join(PATHS) + " | captured/direct | tproxy/direct |",
             "|---|" + "---|" * (len(PATHS) + 2)]
    for key, label, digits in rows:
        cells = []
        for path in PATHS:
            s = result["paths"][path][key]
            cells.append(f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})")
        ratios = [result["paths"][p]["ratio"][key] for p in ("captured", "tproxy")]
        cells += [f"{r:.2f}" if r is not None else "-" for r in ratios]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    errs = [f"{p}: {int(sum(result['paths'][p]['socket_errors']['runs']))} socket errors, "
            f"{int(sum(result['paths'][p]['non_2xx']['runs']))} non-2xx, "
            f"{result['paths'][p]['proxied_connections']} proxied connections, "
            f"{result['paths'][p]['tc_captured_syns']} tc-captured SYNs" for p in PATHS]
    return "\n".join([*lines, "", *errs])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one run of each measure, 2 s each")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    try:
        result = run(quick=args.quick)
    except BenchError as exc:
        print(f"bench_capture: {exc}", file=sys.stderr)
        return 1
    print(format_report(result))
    print(f"\n({result['seconds']:.0f} s, {result['cpus']} CPUs, kernel {result['kernel']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"JSON saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
