"""Reading what the load generators print (wrk, h2load, iperf3) and what /proc says about the
processes under load. Pure parsing and /proc reads; the benchmarks run the tools."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from tests.bench.benchlab import BenchError, wrk_ms

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_wrk(text: str) -> dict[str, float]:
    """wrk's ``--latency`` report: rps, requests, errors (socket errors of every kind),
    non_2xx, p50_ms, p90_ms, p99_ms. Raises :class:`BenchError` naming what is missing."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in ", text)
    pct = {p: re.search(rf"^\s+{p}(?:\.0+)?%\s+(\S+)", text, re.M) for p in (50, 90, 99)}
    missing = [what for what, m in (("Requests/sec", rps), ("requests in", total),
                                    *((f"{p}% latency", m) for p, m in pct.items())) if m is None]
    if missing:
        raise BenchError(f"wrk's report has no {', '.join(missing)}: {text[-600:]!r}")
    assert rps is not None and total is not None
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res = {"rps": float(rps.group(1)), "requests": float(total.group(1)),
           "errors": float(sum(int(g) for g in errors.groups())) if errors else 0.0,
           "non_2xx": float(non2xx.group(1)) if non2xx else 0.0}
    for p, m in pct.items():
        assert m is not None
        res[f"p{p}_ms"] = wrk_ms(m.group(1))
    return res


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = math.ceil(p / 100.0 * len(sorted_values))  # 1-based
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def parse_h2load(text: str, log_lines: list[str]) -> dict[str, float]:
    """h2load's report and its ``--log-file`` (one line per request: start µs, status, duration
    µs): rps, requests (2xx+3xx), errors (failed + errored + timed out), non_2xx, p50/p90/p99 in
    ms over the 200 answers."""
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    reqs = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                     r"(\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not rps or not reqs or not codes:
        raise BenchError(f"h2load's report has no req/s, requests or status codes line: {text[-600:]!r}")
    durations = sorted(int(fields[2]) / 1000.0 for fields in (line.split("\t") for line in log_lines)
                       if len(fields) >= 3 and fields[1] == "200")
    if not durations:
        raise BenchError(f"h2load completed no 200 request: {text[-600:]!r}")
    _total, _started, _done, _ok, failed, errored, timeout = (int(g) for g in reqs.groups())
    return {"rps": float(rps.group(1)), "requests": float(int(codes.group(1)) + int(codes.group(2))),
            "errors": float(failed + errored + timeout),
            "non_2xx": float(int(codes.group(2)) + int(codes.group(3)) + int(codes.group(4))),
            "p50_ms": percentile(durations, 50), "p90_ms": percentile(durations, 90),
            "p99_ms": percentile(durations, 99)}


def parse_iperf(text: str) -> dict[str, Any]:
    """``iperf3 -J --get-server-output``: gbps received by the server, retransmits, and the peer
    addresses the server reported (``peers``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 gave no JSON: {text.strip()[-600:]!r}") from None
    if "error" in data:
        raise BenchError(f"iperf3: {data['error']}")
    try:
        gbps = float(data["end"]["sum_received"]["bits_per_second"]) / 1e9
    except (KeyError, TypeError, ValueError):
        raise BenchError(f"iperf3's JSON has no end.sum_received.bits_per_second: {text[-400:]!r}") from None
    peers = sorted(set(re.findall(r"(?:Accepted connection from|connected to) ([\d.]+)",
                                  str(data.get("server_output_text", "")))))
    return {"gbps": gbps, "retransmits": float(data["end"].get("sum_sent", {}).get("retransmits", 0)),
            "peers": peers}


_STUB_REQUESTS = re.compile(r"^\s*\d+\s+\d+\s+(\d+)\s*$", re.M)
_ISTIO_REQUESTS = re.compile(r"^istio_requests_total\{([^}]*)\}\s+(\S+)", re.M)


def parse_stub_status(text: str) -> int | None:
    """Requests handled so far, from nginx's ``stub_status`` page; None when the page has no
    requests line."""
    m = _STUB_REQUESTS.search(text)
    return int(m.group(1)) if m else None


def waypoint_requests_by_code(metrics: str) -> collections.Counter[str]:
    """``istio_requests_total`` with ``reporter="waypoint"`` in a Prometheus text page, summed by
    ``response_code``."""
    by_code: collections.Counter[str] = collections.Counter()
    for labels, value in _ISTIO_REQUESTS.findall(metrics):
        if 'reporter="waypoint"' in labels:
            code = re.search(r'response_code="(\d+)"', labels)
            by_code[code.group(1) if code else "?"] += int(float(value))
    return by_code


# --- /proc ----------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float | None:
    """utime + stime of these processes (all threads); None when one is gone."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def rss_mb(pids: list[int]) -> float | None:
    """Summed VmRSS of these processes in MB (10^6 bytes); None when one is gone."""
    total_kb = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if m is None:  # a zombie has no VmRSS
            return None
        total_kb += int(m.group(1))
    return total_kb * 1024 / 1e6


def open_files_limit(pid: int) -> int | None:
    """The soft RLIMIT_NOFILE of a process, None when unreadable or unlimited."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    return None


def machine_cpu_times() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return user + nice + system + irq + softirq, steal, total
