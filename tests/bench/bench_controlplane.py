"""Control-plane push benchmark: latency, fan-out, memory and CPU with many ztunnels.

Run ``.venv/bin/python tests/bench/bench_controlplane.py [--quick] [--json PATH]``, or call
:func:`run` (returns every number as a dict). What it does, in one run:

1. starts the control plane as a real subprocess (``python -m controlplane`` on a unix socket)
   and samples its VmRSS/VmHWM and CPU seconds (utime+stime) after each phase;
2. loads namespaces (half of them ``istio.io/dataplane-mode: ambient``), 10 Services per
   namespace and 10 pods per Service (reported like the lab's kubelet, spread over the nodes,
   IPs from 10.0.0.0/8 — data only, no traffic) and times the first snapshot;
3. connects one ZTUNNEL subscriber per node from ONE client process (this script with
   ``--client``: ``grpc.aio``, a few channels carrying many streams each). Each subscriber
   decodes every push, keeps its resource map and ACKs with nonce and version; receive times
   go back to this process over a pipe;
4. makes single small changes one at a time (a Service port, then a pod label, alternating)
   and measures, per subscriber, receive time minus the start of the apply call, and per round
   the time until the last subscriber has it (fan-out completion);
5. makes a burst of applies and counts the pushes it caused, checking every subscriber's end
   state;
6. runs the floor: a minimal ``grpc.aio`` server (this script with ``--floor-server``) that
   replays the very same push bytes to the same number of streams, with the same client, and
   prints our numbers as ratios to it.

Receive times are ``time.monotonic()`` (CLOCK_MONOTONIC is one clock for every process on a
Linux host) and are cross-checked with ``time.time()``.

The simulated subscribers share decoded state between them: each one decodes its own push
(``ConfigPush.FromString``), but when its push is byte-identical to one that another
subscriber already applied on the same base, it takes the resulting resource map instead of
building an equal one (a decoded 10,000-pod mesh holds ~16 MB, so 1000 private copies would
need ~16 GB in one process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from controlplane.api import mesh_pb2 as pb  # noqa: E402
from controlplane.api.client import Stub  # noqa: E402

__all__ = ["BenchError", "format_report", "run"]

METHOD = "/mesh.v1.MeshConfig/"
FIRE = "/bench.Floor/Fire"
FULL_SIZE = {"nodes": 1000, "pods": 10_000, "rounds": 20, "burst": 1000}
QUICK_SIZE = {"nodes": 200, "pods": 2000, "rounds": 5, "burst": 1000}
CHANNELS = 8
# the control plane's server options (controlplane/server.py make_server), so the floor differs
# from it only in what runs above grpc
FLOOR_SERVER_OPTIONS = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]
PODS_PER_SERVICE = 10
SERVICES_PER_NAMESPACE = 10
SERVICE_BATCHES = 4
BURST_SERVICES = 50
ROUND_SETTLE_S = 0.05  # pause after a round, so each change meets an idle control plane
CACHE_STATES = 16      # client: shared resource maps kept for reuse

# Every wait is bounded; these are failure limits, not expectations.
TIMEOUT_START_S = 30.0
TIMEOUT_LOAD_S = 120.0
TIMEOUT_SYNC_S = 180.0
TIMEOUT_ROUND_S = 30.0
TIMEOUT_BURST_S = 120.0
TIMEOUT_CMD_S = 30.0


class BenchError(RuntimeError):
    """A phase failed or timed out; the message names the phase and what was missing."""


# ---------------------------------------------------------------------------------------
# The mesh: namespaces, services, pods
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mesh:
    nodes: int
    pods: int

    @property
    def services(self) -> int:
        return max(1, self.pods // PODS_PER_SERVICE)

    @property
    def namespaces(self) -> int:
        return max(1, -(-self.services // SERVICES_PER_NAMESPACE))

    def service(self, index: int) -> tuple[str, str]:
        """(namespace, name) of service ``index``."""
        return f"ns{index // SERVICES_PER_NAMESPACE}", f"svc{index % SERVICES_PER_NAMESPACE}"

    def namespace_yaml(self, k: int) -> str:
        labels = "\n  labels: {istio.io/dataplane-mode: ambient}" if k % 2 == 0 else ""
        return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns{k}{labels}\n"

    def service_yaml(self, index: int, port: int = 80) -> str:
        ns, name = self.service(index)
        return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
                f"spec:\n  selector: {{app: {name}}}\n"
                f"  ports: [{{name: http, port: {port}, targetPort: http}}]\n")

    def service_resource(self, index: int) -> str:
        ns, name = self.service(index)
        return f"service/{ns}/{name}.{ns}.svc.cluster.local"

    def pod(self, i: int, extra_labels: dict[str, str] | None = None) -> pb.PodStatus:
        svc = (i // PODS_PER_SERVICE) % self.services
        ns, app = self.service(svc)
        ip = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.0.0.0")) + 1 + i)
        return pb.PodStatus(
            uid=str(uuid.UUID(int=i + 1)), namespace=ns, name=f"{app}-7d4f8b9c6-{i:05d}",
            node=f"node{i % self.nodes}", ip=str(ip),
            labels={"app": app, "version": "v1", **(extra_labels or {})},
            service_account=app, owner=app, ready=True, phase="Running",
            ports=[pb.ContainerPortStatus(name="http", port=8080)],
        )

    def pod_resource(self, i: int) -> str:
        return f"workload/{uuid.UUID(int=i + 1)}"


# ---------------------------------------------------------------------------------------
# Small helpers: processes, /proc, statistics
# ---------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return {"rss_kib": out.get("VmRSS", 0), "hwm_kib": out.get("VmHWM", 0)}


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """min, p50, p90, p99, max (linear interpolation), count."""
    if not values:
        return {"n": 0}
    data = sorted(values)

    def q(p: float) -> float:
        pos = (len(data) - 1) * p
        lo = int(pos)
        hi = min(lo + 1, len(data) - 1)
        return data[lo] + (data[hi] - data[lo]) * (pos - lo)

    return {"n": len(data), "min": data[0], "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": data[-1]}


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """A subprocess with its log file; stopped and reaped by :meth:`stop`."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, pipes: bool = False) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=child_env(), stderr=self._log,
            stdout=subprocess.PIPE if pipes else self._log,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        if pipes:
            threading.Thread(target=self._read, daemon=True, name=f"{name}-stdout").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.decode())
        self._lines.put(None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def died(self, phase: str) -> BenchError:
        return BenchError(f"{phase}: the {self.name} process exited with status {self.proc.poll()}; "
                          f"last lines of {self.log_path.name}:\n{tail(self.log_path)}")

    def readline(self, timeout: float, phase: str) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"{phase}: timed out after {timeout:.0f} s waiting for the {self.name} process") from None
        if line is None:
            raise self.died(phase)
        return line

    def request(self, cmd: dict[str, Any], phase: str, timeout: float = TIMEOUT_CMD_S) -> dict[str, Any]:
        """Send one JSON command line, read one JSON answer line."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self.died(phase) from None
        answer: dict[str, Any] = json.loads(self.readline(timeout, phase))
        return answer

    def memory(self) -> dict[str, int]:
        return proc_memory(self.pid) if self.alive() else {}

    def cpu(self) -> float:
        return proc_cpu(self.pid) if self.alive() else 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._log.close()


# ---------------------------------------------------------------------------------------
# The client process (``--client``): many subscribers on grpc.aio
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class State:
    """A subscriber's resource map at one version; shared by subscribers that got there the
    same way (same base, byte-identical push)."""

    serial: int
    version: int
    resources: dict[str, pb.Resource]


@dataclass(slots=True)
class Sub:
    index: int
    state: State | None = None
    records: list[tuple[int, float, float, int, bool, int, int]] = field(default_factory=list)
    error: str = ""

    @property
    def version(self) -> int:
        return self.state.version if self.state is not None else 0


class Fleet:
    """``count`` ZTUNNEL subscribers over ``channels`` grpc.aio channels."""

    def __init__(self, target: str, count: int, channels: int, dump: Path | None) -> None:
        self.target = target
        self.subs = [Sub(i) for i in range(count)]
        self.n_channels = channels
        self.dump = dump
        self._cache: OrderedDict[tuple[int, int, bool], tuple[bytes, State]] = OrderedDict()
        self._serial = 0
        self._want = 0
        self._remaining = 0
        self._changed = asyncio.Event()
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.shared_hits = 0
        self.shared_misses = 0

    async def connect(self) -> None:
        opts = [("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.use_local_subchannel_pool", 1),  # one connection per channel
                ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_permit_without_calls", 1)]
        self._channels = [grpc.aio.insecure_channel(self.target, options=opts) for _ in range(self.n_channels)]
        self._tasks = [asyncio.create_task(self._run(sub, self._channels[sub.index % self.n_channels]))
                       for sub in self.subs]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ch in self._channels:
            await ch.close()

    async def _run(self, sub: Sub, chan: grpc.aio.Channel) -> None:
        call = chan.stream_stream(METHOD + "Subscribe", request_serializer=pb.SubscribeRequest.SerializeToString,
                                  response_deserializer=None)()
        node = f"node{sub.index}"
        try:
            await call.write(pb.SubscribeRequest(hello=pb.Hello(
                subscriber_id=f"ztunnel~{node}~bench", type=pb.ZTUNNEL, node=node)))
            while True:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    sub.error = "the server ended the stream"
                    break
                t_mono, t_wall = time.monotonic(), time.time()
                push = pb.ConfigPush.FromString(raw)
                before = sub.version
                self._apply(sub, raw, push)
                sub.records.append((push.version, t_mono, t_wall, len(raw), push.full,
                                    len(push.upserts), len(push.removals)))
                if self.dump is not None and sub.index == 0:
                    (self.dump / f"{push.version}.bin").write_bytes(raw)
                ack = pb.SubscribeRequest(ack=pb.Ack(nonce=push.nonce, version=push.version))
                del push, raw  # a decoded full push holds ~5x its size; do not keep it while waiting
                await call.write(ack)
                if self._remaining and before < self._want <= sub.version:
                    self._remaining -= 1
                    if not self._remaining:
                        self._changed.set()
        except grpc.aio.AioRpcError as exc:
            sub.error = f"{exc.code().name}: {exc.details()}"
        finally:
            if sub.error:
                self._changed.set()
            call.cancel()

    def _apply(self, sub: Sub, raw: bytes, push: pb.ConfigPush) -> None:
        base = None if push.full else sub.state
        key = (base.serial if base is not None else 0, push.version, push.full)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == raw:
            self.shared_hits += 1
            sub.state = hit[1]
            return
        self.shared_misses += 1
        resources: dict[str, pb.Resource] = {} if base is None else dict(base.resources)
        for name in push.removals:
            resources.pop(name, None)
        for res in push.upserts:
            resources[res.name] = res
        self._serial += 1
        sub.state = State(self._serial, push.version, resources)
        self._cache[key] = (raw, sub.state)
        while len(self._cache) > CACHE_STATES:
            self._cache.popitem(last=False)

    async def wait(self, version: int, timeout: float) -> dict[str, Any]:
        self._want = version
        self._remaining = sum(1 for s in self.subs if s.version < version)
        self._changed.clear()
        deadline = time.monotonic() + timeout
        while self._remaining and not any(s.error for s in self.subs):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
            self._changed.clear()
        self._remaining = sum(1 for s in self.subs if s.version < version)
        if self._remaining:
            versions: dict[int, int] = {}
            for s in self.subs:
                versions[s.version] = versions.get(s.version, 0) + 1
            errors = sorted({s.error for s in self.subs if s.error})
            by_channel: dict[int, int] = {}
            for s in self.subs:
                if s.version < version:
                    by_channel[s.index % self.n_channels] = by_channel.get(s.index % self.n_channels, 0) + 1
            return {"ok": False, "missing": self._remaining, "versions": versions, "errors": errors[:5],
                    "missing_by_channel": by_channel}
        first = [next(r for r in s.records if r[0] >= version) for s in self.subs]
        return {"ok": True, "first": first, "pushes": [len(s.records) for s in self.subs]}

    def check(self, resource: str, port: int | None, label: tuple[str, str] | None) -> dict[str, Any]:
        """How many subscribers hold ``resource`` with service port ``port`` / label ``label``."""
        verdict: dict[int, str] = {}
        bad: list[str] = []
        for s in self.subs:
            if s.state is None:
                bad.append(f"subscriber {s.index}: no config")
                continue
            if s.state.serial not in verdict:
                res = s.state.resources.get(resource)
                if res is None:
                    verdict[s.state.serial] = f"has no {resource}"
                elif port is not None:
                    got = res.address.service.ports[0].service_port if res.address.service.ports else None
                    verdict[s.state.serial] = "" if got == port else f"{resource} has port {got}, want {port}"
                elif label is not None:
                    got_label = res.address.workload.labels.get(label[0])
                    verdict[s.state.serial] = "" if got_label == label[1] else f"{resource} label {label[0]}={got_label}"
                else:
                    verdict[s.state.serial] = ""
            if verdict[s.state.serial]:
                bad.append(f"subscriber {s.index} (version {s.version}): {verdict[s.state.serial]}")
        return {"ok": not bad, "bad": len(bad), "examples": bad[:5]}


async def client_main(target: str, count: int, channels: int, dump: str) -> None:
    import gc

    gc.disable()  # millions of long-lived protobuf wrappers; cycles are not made here
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    fleet = Fleet(target, count, channels, Path(dump) if dump else None)

    def say(answer: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "connect":
            t0 = time.monotonic()
            await fleet.connect()
            say({"ok": True, "t0": t0})
        elif cmd["cmd"] == "wait":
            say(await fleet.wait(cmd["version"], cmd["timeout"]))
        elif cmd["cmd"] == "check":
            label = (str(cmd["label"][0]), str(cmd["label"][1])) if cmd.get("label") else None
            say(fleet.check(cmd["resource"], cmd.get("port"), label))
        elif cmd["cmd"] == "stats":
            say({"ok": True, "shared_hits": fleet.shared_hits, "shared_misses": fleet.shared_misses})
        elif cmd["cmd"] == "quit":
            await fleet.close()
            say({"ok": True})
            break


# ---------------------------------------------------------------------------------------
# The floor (``--floor-server``): the same push bytes through a minimal grpc.aio server
# ---------------------------------------------------------------------------------------


async def floor_main(address: str, payload_dir: str, full_version: int) -> None:
    payloads = {int(p.stem): p.read_bytes() for p in Path(payload_dir).glob("*.bin")}
    full = payloads[full_version]
    streams: set[asyncio.Queue[bytes]] = set()

    async def subscribe(requests: Any, context: Any) -> Any:
        await anext(aiter(requests), None)  # the Hello
        q: asyncio.Queue[bytes] = asyncio.Queue()
        streams.add(q)

        async def drain() -> None:
            async for _ in requests:  # ACKs
                pass

        reader = asyncio.create_task(drain())
        try:
            yield full
            while True:
                yield await q.get()
        finally:
            streams.discard(q)
            reader.cancel()

    async def fire(request: bytes, context: Any) -> bytes:
        data = payloads[int(request.decode())]
        for q in streams:
            q.put_nowait(data)
        return str(len(streams)).encode()

    server = grpc.aio.server(options=FLOOR_SERVER_OPTIONS)
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("mesh.v1.MeshConfig", {
            "Subscribe": grpc.stream_stream_rpc_method_handler(subscribe)}),
        grpc.method_handlers_generic_handler("bench.Floor", {
            "Fire": grpc.unary_unary_rpc_method_handler(fire)}),
    ))
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=0.2)


# ---------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------


@dataclass
class Sampler:
    """Memory and CPU of a process after each phase."""

    child: Child
    phases: list[dict[str, Any]] = field(default_factory=list)
    _cpu: float = 0.0

    def sample(self, phase: str, wall_s: float) -> None:
        cpu = self.child.cpu()
        self.phases.append({"phase": phase, **self.child.memory(), "cpu_s": round(cpu - self._cpu, 3),
                            "cpu_total_s": round(cpu, 3), "wall_s": round(wall_s, 3)})
        self._cpu = cpu


def _self_argv(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _wait_synced(client: Child, version: int, timeout: float, phase: str) -> dict[str, Any]:
    answer = client.request({"cmd": "wait", "version": version, "timeout": timeout}, phase, timeout + 15)
    if not answer["ok"]:
        raise BenchError(
            f"{phase}: timed out after {timeout:g} s: {answer['missing']} subscribers had not reached "
            f"version {version} (subscribers per version held: {answer['versions']}; "
            f"missing per client channel: {answer['missing_by_channel']})"
            + (f"; stream errors: {answer['errors']}" if answer["errors"] else ""))
    return answer


def _check(client: Child, phase: str, resource: str, *, port: int | None = None,
           label: tuple[str, str] | None = None) -> None:
    answer = client.request({"cmd": "check", "resource": resource, "port": port,
                             "label": list(label) if label else None}, phase)
    if not answer["ok"]:
        raise BenchError(f"{phase}: {answer['bad']} subscribers hold the wrong config, e.g. {answer['examples']}")


def _ms(seconds: Sequence[float]) -> list[float]:
    return [s * 1000 for s in seconds]


def run(nodes: int = FULL_SIZE["nodes"], pods: int = FULL_SIZE["pods"], rounds: int = FULL_SIZE["rounds"],
        burst: int = FULL_SIZE["burst"], channels: int = CHANNELS, floor: bool = True,
        progress: Callable[[str], None] | None = None, keep: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns every number (times in ms unless named ``_s``, sizes in bytes,
    memory in KiB). Raises :class:`BenchError` naming the phase that failed or timed out."""
    say = progress or (lambda msg: None)
    mesh = Mesh(nodes, pods)
    tmp = Path(tempfile.mkdtemp(prefix="cpbench-"))
    children: list[Child] = []
    stubs: list[Stub] = []
    result: dict[str, Any] = {
        "config": {"nodes": nodes, "subscribers": nodes, "pods": pods, "services": mesh.services,
                   "namespaces": mesh.namespaces, "rounds": rounds, "burst_applies": burst,
                   "channels": channels, "streams_per_channel": -(-nodes // channels)},
        "machine": {"cpus": os.cpu_count(), "cpu_model": _cpu_model(), "python": platform.python_version(),
                    "grpcio": grpc.__version__, "kernel": platform.release()},
    }
    try:
        # --- 1. start ------------------------------------------------------------------
        say("starting the control plane")
        target = f"unix://{tmp}/cp.sock"
        cp = Child("control plane", [sys.executable, "-m", "controlplane", "--listen", target,
                                     "--state-dir", str(tmp / "state")], tmp / "controlplane.log")
        children.append(cp)
        say(f"control plane pid {cp.pid} (attach a profiler here), log {cp.log_path}")
        stub = Stub(target, timeout=TIMEOUT_LOAD_S)
        stubs.append(stub)
        t_phase = time.monotonic()
        deadline = t_phase + TIMEOUT_START_S
        while True:
            if not cp.alive():
                raise cp.died("start")
            try:
                stub.debug(pb.DebugRequest(what="subscribers"), timeout=1)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise BenchError(f"start: the control plane did not answer within {TIMEOUT_START_S:.0f} s:\n"
                                     f"{tail(cp.log_path)}") from None
                time.sleep(0.05)
        time.sleep(0.5)
        cp_mem = Sampler(cp)
        cp_mem.sample("start + idle", time.monotonic() - t_phase)

        # --- 2. load ---------------------------------------------------------------------
        say(f"loading {mesh.namespaces} namespaces, {mesh.services} services, {pods} pods")
        t_phase = time.monotonic()
        load: dict[str, Any] = {}
        t0 = time.monotonic()
        _apply_checked(stub, ["---\n".join(mesh.namespace_yaml(k) for k in range(mesh.namespaces))], "load namespaces")
        load["namespaces_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        per = -(-mesh.services // SERVICE_BATCHES)
        for start in range(0, mesh.services, per):
            text = "---\n".join(mesh.service_yaml(i) for i in range(start, min(start + per, mesh.services)))
            _apply_checked(stub, [text], "load services")
        load["services_s"] = time.monotonic() - t0
        load["service_calls"] = -(-mesh.services // per)
        time.sleep(0.3)  # let the debounced builds of the services finish
        builds_before = _builds(stub)
        report = pb.PodReport(reporter="bench", full=True, pods=[mesh.pod(i) for i in range(pods)])
        load["pod_report_bytes"] = report.ByteSize()
        t_build = time.monotonic()
        stub.report_pods(report, timeout=TIMEOUT_LOAD_S)
        load["report_pods_call_s"] = time.monotonic() - t_build
        while _builds(stub) <= builds_before:
            if time.monotonic() - t_build > TIMEOUT_LOAD_S:
                raise BenchError(f"load: no snapshot was built within {TIMEOUT_LOAD_S:.0f} s of the pod report")
            time.sleep(0.005)
        load["first_snapshot_s"] = time.monotonic() - t_build
        version = stub.proxy_status(pb.Empty(), timeout=TIMEOUT_CMD_S).version
        load["version"] = version
        result["load"] = load
        cp_mem.sample("loaded", time.monotonic() - t_phase)

        # --- 3. subscribers ------------------------------------------------------------
        say(f"connecting {nodes} subscribers on {channels} channels")
        dump = tmp / "pushes"
        dump.mkdir()
        client = Child("client", _self_argv("--client", target, str(nodes), str(channels), str(dump)),
                       tmp / "client.log", pipes=True)
        children.append(client)
        say(f"client pid {client.pid}")
        client_mem = Sampler(client)
        t_phase = time.monotonic()
        t_connect = client.request({"cmd": "connect"}, "connect")["t0"]
        synced = _wait_synced(client, version, TIMEOUT_SYNC_S, "initial sync")
        first = synced["first"]
        sync_s = [r[1] - t_connect for r in first]
        _wait_acked(stub, nodes, version, "initial sync (ACKs)")
        result["sync"] = {
            "full_push_bytes": first[0][3], "full_push_resources": first[0][5],
            "all_synced_s": max(sync_s), "first_synced_s": min(sync_s),
            "per_subscriber_s": percentiles(sync_s),
            "per_subscriber_raw_s": [round(x, 4) for x in sync_s],
        }
        cp_mem.sample("synced", time.monotonic() - t_phase)
        client_mem.sample("synced", time.monotonic() - t_phase)

        # --- 4. latency rounds ----------------------------------------------------------
        say(f"{rounds} latency rounds")
        t_phase = time.monotonic()
        per_round: list[dict[str, Any]] = []
        lat_mono: list[float] = []
        raw_rounds: list[list[float]] = []
        clock_skew: list[float] = []
        for r in range(rounds):
            phase = f"latency round {r + 1}/{rounds}"
            cpu0 = cp.cpu()
            if r % 2 == 0:
                kind = "service port"
                port = 9000 + r
                t0, w0 = time.monotonic(), time.time()
                resp = stub.apply(pb.ApplyRequest(documents=[pb.Document(text=mesh.service_yaml(0, port), source="bench")]),
                                  timeout=TIMEOUT_ROUND_S)
                call_s = time.monotonic() - t0
                if any(x.error for x in resp.results):
                    raise BenchError(f"{phase}: apply refused: {list(resp.results)}")
                version = resp.version
            else:
                kind = "pod label"
                t0, w0 = time.monotonic(), time.time()
                stub.report_pods(pb.PodReport(reporter="bench", full=False,
                                              pods=[mesh.pod(0, {"bench-round": str(r)})]), timeout=TIMEOUT_ROUND_S)
                call_s = time.monotonic() - t0
                version += 1  # one store revision per report
            answer = _wait_synced(client, version, TIMEOUT_ROUND_S, phase)
            cpu_ms = (cp.cpu() - cpu0) * 1000
            lat = [rec[1] - t0 for rec in answer["first"]]
            clock_skew += [abs((rec[2] - w0) - (rec[1] - t0)) for rec in answer["first"]]
            if r % 2 == 0:
                _check(client, phase, mesh.service_resource(0), port=9000 + r)
            else:
                _check(client, phase, mesh.pod_resource(0), label=("bench-round", str(r)))
            exact = sum(1 for rec in answer["first"] if rec[0] == version)
            if exact != nodes:
                raise BenchError(f"{phase}: {nodes - exact} subscribers got a version other than {version} first")
            lat_mono += lat
            raw_rounds.append([round(x * 1000, 3) for x in lat])
            per_round.append({"round": r + 1, "kind": kind, "version": version, "push_bytes": answer["first"][0][3],
                              "upserts": answer["first"][0][5], "call_ms": call_s * 1000, "cpu_ms": cpu_ms,
                              "fanout_ms": max(lat) * 1000, "first_ms": min(lat) * 1000,
                              "p50_ms": percentiles(lat)["p50"] * 1000})
            _wait_acked(stub, nodes, version, f"{phase} (ACKs)")  # the next change meets an idle control plane
            time.sleep(ROUND_SETTLE_S)
        result["rounds"] = {
            "latency_ms": percentiles(_ms(lat_mono)),
            "fanout_ms": percentiles([p["fanout_ms"] for p in per_round]),
            "cpu_ms_per_change": sum(p["cpu_ms"] for p in per_round) / max(1, len(per_round)),
            "by_kind": {
                k: {"latency_ms": percentiles([x for p, lat in zip(per_round, raw_rounds, strict=True)
                                               if p["kind"] == k for x in lat]),
                    "fanout_ms": percentiles([p["fanout_ms"] for p in per_round if p["kind"] == k]),
                    "push_bytes": max((p["push_bytes"] for p in per_round if p["kind"] == k), default=0)}
                for k in ("service port", "pod label")
            },
            "wall_clock_vs_monotonic_max_ms": max(clock_skew) * 1000 if clock_skew else 0.0,
            "per_round": per_round,
            "per_subscriber_ms": raw_rounds,
        }
        cp_mem.sample("latency rounds", time.monotonic() - t_phase)
        client_mem.sample("latency rounds", time.monotonic() - t_phase)

        # --- 5. burst ---------------------------------------------------------------------
        if burst:
            say(f"burst of {burst} applies")
            t_phase = time.monotonic()
            n_svc = min(BURST_SERVICES, mesh.services)
            pushes_before = answer["pushes"]
            builds_before = _builds(stub)
            calls: list[float] = []
            t0 = time.monotonic()
            for i in range(burst):
                t_call = time.monotonic()
                resp = stub.apply(pb.ApplyRequest(documents=[pb.Document(
                    text=mesh.service_yaml(i % n_svc, 20000 + i), source="bench-burst")]), timeout=TIMEOUT_BURST_S)
                if any(x.error for x in resp.results):
                    raise BenchError(f"burst: apply {i} refused: {list(resp.results)}")
                calls.append(time.monotonic() - t_call)
            t_last = time.monotonic()
            applies_s = t_last - t0
            version = resp.version
            answer = _wait_synced(client, version, TIMEOUT_BURST_S, "burst")
            done_s = max(rec[1] for rec in answer["first"]) - t0
            tail_ms = (max(rec[1] for rec in answer["first"]) - t_last) * 1000
            for k in range(n_svc):
                last_i = max(i for i in range(burst) if i % n_svc == k) if k < burst else None
                if last_i is not None:
                    _check(client, "burst end state", mesh.service_resource(k), port=20000 + last_i)
            pushes = [a - b for a, b in zip(answer["pushes"], pushes_before, strict=True)]
            result["burst"] = {
                "applies": burst, "services": n_svc, "applies_s": applies_s, "applies_per_s": burst / applies_s,
                "all_synced_s": done_s, "after_last_apply_ms": tail_ms, "final_version": version,
                "apply_call_ms": percentiles(_ms(calls)), "snapshots_built": _builds(stub) - builds_before,
                "pushes_subscriber0": pushes[0], "pushes_min": min(pushes), "pushes_max": max(pushes),
                "end_state_ok": True,
            }
            cp_mem.sample("burst", time.monotonic() - t_phase)
            client_mem.sample("burst", time.monotonic() - t_phase)
        stats = client.request({"cmd": "stats"}, "stats")
        result["client"] = {"phases": client_mem.phases, "shared_state_hits": stats["shared_hits"],
                            "own_state_builds": stats["shared_misses"]}
        result["controlplane"] = {"phases": cp_mem.phases}
        with contextlib.suppress(BenchError):
            client.request({"cmd": "quit"}, "quit", 10)
        client.stop()
        cp.stop()

        # --- 6. floor -----------------------------------------------------------------------
        if floor:
            say("floor: the same pushes through a minimal grpc.aio server")
            try:
                result["floor"] = _floor(tmp, dump, nodes, channels, result["load"]["version"], per_round)
            except BenchError as exc:  # our numbers stand; the comparison is missing
                result["floor"] = {"error": str(exc)}
                return result
            cp_p50 = result["rounds"]["fanout_ms"]["p50"]
            fl = result["floor"]
            result["ratios"] = {
                "fanout_p50": cp_p50 / fl["fanout_ms"]["p50"],
                "latency_p50": result["rounds"]["latency_ms"]["p50"] / fl["latency_ms"]["p50"],
                "full_sync": result["sync"]["all_synced_s"] / fl["all_synced_s"],
                "cpu_per_change": result["rounds"]["cpu_ms_per_change"] / max(fl["cpu_ms_per_change"], 1e-9),
            }
        return result
    finally:
        for s in stubs:
            s.close()
        for c in reversed(children):
            c.stop()
        if keep:
            say(f"kept the logs and pushes in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _floor(tmp: Path, dump: Path, nodes: int, channels: int, full_version: int,
           per_round: list[dict[str, Any]]) -> dict[str, Any]:
    children: list[Child] = []
    address = f"unix://{tmp}/floor.sock"
    try:
        server = Child("floor server", _self_argv("--floor-server", address, str(dump), str(full_version)),
                       tmp / "floor.log", pipes=True)
        children.append(server)
        if server.readline(TIMEOUT_START_S, "floor start").strip() != "ready":
            raise BenchError(f"floor start: unexpected output from the floor server:\n{tail(server.log_path)}")
        client = Child("floor client", _self_argv("--client", address, str(nodes), str(channels), ""),
                       tmp / "floor-client.log", pipes=True)
        children.append(client)
        t_connect = client.request({"cmd": "connect"}, "floor connect")["t0"]
        synced = _wait_synced(client, full_version, TIMEOUT_SYNC_S, "floor initial sync")
        sync_s = [r[1] - t_connect for r in synced["first"]]
        sync_mem = server.memory()
        with grpc.insecure_channel(address) as chan:
            fire = chan.unary_unary(FIRE)
            lat: list[float] = []
            fanout: list[float] = []
            cpu_ms = 0.0
            for p in per_round:
                cpu0 = server.cpu()
                t0 = time.monotonic()
                fire(str(p["version"]).encode(), timeout=TIMEOUT_ROUND_S)
                answer = _wait_synced(client, p["version"], TIMEOUT_ROUND_S, f"floor round {p['round']}")
                cpu_ms += (server.cpu() - cpu0) * 1000
                got = [rec[1] - t0 for rec in answer["first"]]
                lat += got
                fanout.append(max(got) * 1000)
                time.sleep(ROUND_SETTLE_S)
        return {"all_synced_s": max(sync_s), "latency_ms": percentiles(_ms(lat)),
                "fanout_ms": percentiles(fanout), "cpu_ms_per_change": cpu_ms / max(1, len(per_round)),
                "server_memory_synced": sync_mem,
                "server_memory_end": server.memory(), "server_cpu_s": server.cpu()}
    finally:
        for c in reversed(children):
            c.stop()


def _apply_checked(stub: Stub, texts: list[str], phase: str) -> None:
    resp = stub.apply(pb.ApplyRequest(documents=[pb.Document(text=t, source="bench") for t in texts]),
                      timeout=TIMEOUT_LOAD_S)
    bad = [r for r in resp.results if r.error or r.skipped]
    if bad:
        raise BenchError(f"{phase}: {len(bad)} objects refused, e.g. {bad[0]}")


def _builds(stub: Stub) -> int:
    return int(json.loads(stub.debug(pb.DebugRequest(what="subscribers"), timeout=TIMEOUT_CMD_S).json)["builds"])


def _wait_acked(stub: Stub, nodes: int, version: int, phase: str, timeout: float = 10.0) -> None:
    """The control plane's own view: every subscriber connected and has ACKed ``version``."""
    deadline = time.monotonic() + timeout
    while True:
        subs = stub.proxy_status(pb.Empty(), timeout=TIMEOUT_CMD_S).subscribers
        behind = [s for s in subs if s.connected and s.acked_version < version]
        connected = sum(1 for s in subs if s.connected)
        if connected >= nodes and not behind:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{phase}: after {timeout:.0f} s the control plane sees {connected} of {nodes} "
                             f"subscribers connected and {len(behind)} not ACKed version {version}")
        time.sleep(0.02)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def _row(name: str, st: dict[str, float], unit: str = "ms") -> str:
    if not st.get("n"):
        return f"  {name:<34} (none)"
    return (f"  {name:<34}" + "".join(f"{st[k]:>9.1f}" for k in ("min", "p50", "p90", "p99", "max"))
            + f"  {unit}  (n={st['n']})")


def format_report(res: dict[str, Any]) -> str:
    c, m = res["config"], res["machine"]
    out = [
        f"Control-plane push benchmark: {c['nodes']} nodes ({c['subscribers']} ZTUNNEL subscribers), "
        f"{c['pods']} pods, {c['services']} services, {c['namespaces']} namespaces",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, grpcio {m['grpcio']}, "
        f"kernel {m['kernel']}; client: 1 process, {c['channels']} channels x {c['streams_per_channel']} streams",
        "",
        "Load",
    ]
    ld = res["load"]
    out += [
        f"  apply {c['namespaces']} namespaces (1 call)            {ld['namespaces_s'] * 1000:9.0f} ms",
        f"  apply {c['services']} services ({ld['service_calls']} calls)            {ld['services_s'] * 1000:9.0f} ms",
        f"  report {c['pods']} pods (1 call, {ld['pod_report_bytes'] / 1e6:.1f} MB)       {ld['report_pods_call_s'] * 1000:9.0f} ms",
        f"  first snapshot (report start -> built)   {ld['first_snapshot_s'] * 1000:9.0f} ms",
        "",
        "Initial full sync",
    ]
    sy = res["sync"]
    out += [
        f"  full push: {sy['full_push_bytes'] / 1e6:.2f} MB, {sy['full_push_resources']} resources",
        f"  first subscriber synced after {sy['first_synced_s']:.2f} s; p50 {sy['per_subscriber_s']['p50']:.2f} s; "
        f"all {c['subscribers']} after {sy['all_synced_s']:.2f} s",
        "",
        f"Latency rounds ({c['rounds']}, one change at a time; time from the start of the apply/report call)",
        f"  {'':<34}{'min':>9}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}",
    ]
    rd = res["rounds"]
    out.append(_row("per subscriber (all rounds)", rd["latency_ms"]))
    out.append(_row("fan-out completion (per round)", rd["fanout_ms"]))
    for kind, st in rd["by_kind"].items():
        out.append(_row(f"{kind}: per subscriber", st["latency_ms"]))
        out.append(_row(f"{kind}: fan-out completion", st["fanout_ms"]))
    out.append("  incremental push: " + ", ".join(f"{k} {st['push_bytes']} B" for k, st in rd["by_kind"].items())
               + f"; wall clock agrees with monotonic within {rd['wall_clock_vs_monotonic_max_ms']:.2f} ms")
    if "burst" in res:
        b = res["burst"]
        out += [
            "",
            f"Burst: {b['applies']} applies over {b['services']} services in {b['applies_s']:.2f} s "
            f"({b['applies_per_s']:.0f}/s); every subscriber had the last one {b['after_last_apply_ms']:.0f} ms "
            f"after the last apply returned",
            _row("apply call, during the burst", b["apply_call_ms"]),
            f"  snapshots built: {b['snapshots_built']}; pushes received: subscriber 0: {b['pushes_subscriber0']}, min {b['pushes_min']}, max {b['pushes_max']}; "
            f"end state checked on every subscriber: {'OK' if b['end_state_ok'] else 'WRONG'}",
        ]
    out += ["", "Control-plane process (VmRSS/VmHWM at the end of the phase; CPU used during it)",
            f"  {'phase':<18}{'VmRSS MB':>10}{'VmHWM MB':>10}{'CPU s':>8}{'wall s':>8}"]
    for ph in res["controlplane"]["phases"]:
        out.append(f"  {ph['phase']:<18}{ph.get('rss_kib', 0) / 1024:>10.1f}{ph.get('hwm_kib', 0) / 1024:>10.1f}"
                   f"{ph['cpu_s']:>8.2f}{ph['wall_s']:>8.2f}")
    out.append("  client process (all subscribers): " + "; ".join(
        f"{ph['phase']} RSS {ph.get('rss_kib', 0) / 1024:.0f} MB, CPU {ph['cpu_s']:.2f} s"
        for ph in res["client"]["phases"]))
    if "floor" in res and "error" in res["floor"]:
        out += ["", f"Floor: FAILED: {res['floor']['error']}"]
    elif "floor" in res:
        fl, ra = res["floor"], res["ratios"]
        out += [
            "",
            "Floor: a minimal grpc.aio server replaying the same push bytes to the same client",
            f"  {'':<34}{'floor':>10}{'ours':>10}{'ratio':>8}",
            f"  {'fan-out completion p50 (ms)':<34}{fl['fanout_ms']['p50']:>10.1f}{rd['fanout_ms']['p50']:>10.1f}"
            f"{ra['fanout_p50']:>7.1f}x",
            f"  {'per-subscriber latency p50 (ms)':<34}{fl['latency_ms']['p50']:>10.1f}{rd['latency_ms']['p50']:>10.1f}"
            f"{ra['latency_p50']:>7.1f}x",
            f"  {'server CPU per change (ms)':<34}{fl['cpu_ms_per_change']:>10.1f}"
            f"{rd['cpu_ms_per_change']:>10.1f}{ra['cpu_per_change']:>7.1f}x",
            f"  {'full sync, all subscribers (s)':<34}{fl['all_synced_s']:>10.2f}{sy['all_synced_s']:>10.2f}"
            f"{ra['full_sync']:>7.1f}x",
            f"  floor server: VmHWM {fl['server_memory_end'].get('hwm_kib', 0) / 1024:.0f} MB, "
            f"CPU {fl['server_cpu_s']:.2f} s",
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        asyncio.run(client_main(argv[1], int(argv[2]), int(argv[3]), argv[4]))
        return 0
    if argv[:1] == ["--floor-server"]:
        asyncio.run(floor_main(argv[1], argv[2], int(argv[3])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SIZE['nodes']} nodes, {QUICK_SIZE['pods']} pods, {QUICK_SIZE['rounds']} rounds")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--pods", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--burst", type=int)
    parser.add_argument("--channels", type=int, default=CHANNELS)
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, pushes)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every number to PATH")
    args = parser.parse_args(argv)
    size = dict(QUICK_SIZE if args.quick else FULL_SIZE)
    for key in size:
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    started = time.monotonic()
    try:
        res = run(size["nodes"], size["pods"], size["rounds"], size["burst"], args.channels, floor=not args.no_floor, keep=args.keep,
                  progress=lambda msg: print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr, flush=True))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    res["total_s"] = time.monotonic() - started
    print(format_report(res))
    print(f"\ntotal {res['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, sort_keys=True))
        print(f"saved all numbers to {args.json.resolve()}")
    return 1 if "error" in res.get("floor", {}) else 0


if __name__ == "__main__":
    sys.exit(main())

