"""The eBPF/tc capture (``bpf/``) on real namespaces: a node namespace with a transparent
listener, a client pod and a server pod behind veths, the programs attached from the node.

Topology (all namespaces made here, no host-namespace interface, address or route)::

    [bpft-<pid>-cli] eth0 10.77.0.2/32 ⇄ vcli ─┐
                                               [bpft-<pid>-node] gw 10.77.0.1, ip_forward=1,
    [bpft-<pid>-srv] eth0 10.77.0.3/32 ⇄ vsrv ─┘  listener 0.0.0.0:15001 (IP_TRANSPARENT)

Needs root; fails (never skips) when ``bpf.checks.check_environment()`` reports problems.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from bpf.checks import check_environment, describe
from bpf.loader import (
    Capture,
    CaptureError,
    Decision,
    attached_filters,
    install_local_routing,
    remove_local_routing,
)
from meshctl.lab import netlab
from meshctl.lab.netlab import entered
from tests.lab.conftest import host_network_snapshot

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
PID = os.getpid()
NODE, CLI, SRV = f"bpft-{PID}-node", f"bpft-{PID}-cli", f"bpft-{PID}-srv"
PREFIX = f"bpft-{PID}"
GATEWAY, CLIENT_IP, SERVER_IP = "10.77.0.1", "10.77.0.2", "10.77.0.3"
VIP = "10.96.123.45"
CLI_VETH, SRV_VETH = "vcli", "vsrv"
CLIENT_ID, SERVER_ID = 1, 2
SERVER_PORT, LISTEN_PORT = 8080, 15001
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
TIMEOUT_S = 5.0
T = TypeVar("T")


# --- topology ------------------------------------------------------------------------------


def _pod(name: str, veth: str, ip: str) -> None:
    netlab.create_netns(name)
    netlab.wire_pod(NODE, name, veth, ip, GATEWAY)
    netlab.sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")


def build_topology() -> None:
    netlab.create_netns(NODE)
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv6.conf.all.disable_ipv6", "1"),
        ("net.ipv6.conf.default.disable_ipv6", "1"),
    ):
        netlab.sysctl(NODE, key, value)
    _pod(CLI, CLI_VETH, CLIENT_IP)
    _pod(SRV, SRV_VETH, SERVER_IP)


def remove_topology() -> None:
    for name in (CLI, SRV, NODE):
        netlab.kill_netns_processes(name, grace_s=1.0)
        netlab.remove_netns(name)


# --- the node's transparent listener and the server pod's app ----------------------------


@dataclass
class Accepted:
    peer: tuple[str, int]
    local: tuple[str, int]


@dataclass
class Servers:
    """Threads serving the node listener (echo or transparent forward) and the server app."""

    mode: str = "echo"  # or "forward"
    accepted: queue.Queue[Accepted] = field(default_factory=queue.Queue)
    forward_errors: queue.Queue[str] = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)

    def start(self) -> None:
        with entered(NODE):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        listener.bind(("0.0.0.0", LISTEN_PORT))
        listener.listen(64)
        server = netlab.socket_in(SRV, socket.AF_INET, socket.SOCK_STREAM, (SERVER_IP, SERVER_PORT))
        server.listen(64)
        self.sockets += [listener, server]
        for sock in self.sockets:
            sock.settimeout(0.2)
        self._spawn(self._accept_loop, listener, self._node_conn)
        self._spawn(self._accept_loop, server, self._server_conn)

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            sock.close()
        for thread in self.threads:
            thread.join(timeout=TIMEOUT_S)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept_loop(self, listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(TIMEOUT_S)
            self._spawn(handle, conn)

    def _server_conn(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(f"server saw {conn.getpeername()[0]}\n".encode())
            _echo(conn)

    def _node_conn(self, conn: socket.socket) -> None:
        peer, local = conn.getpeername(), conn.getsockname()
        self.accepted.put(Accepted(peer=peer, local=local))
        with conn:
            if self.mode == "echo":
                conn.sendall(f"node accepted {local[0]}:{local[1]} from {peer[0]}\n".encode())
                _echo(conn)
                return
            # Transparent forward: a socket bound to the client's own address.
            with entered(NODE):
                upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with upstream:
                upstream.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
                upstream.settimeout(2.0)
                try:
                    upstream.bind((peer[0], 0))
                    upstream.connect(local)
                except OSError as exc:
                    self.forward_errors.put(f"{type(exc).__name__}: {exc}")
                    return
                upstream.settimeout(TIMEOUT_S)
                back = threading.Thread(target=_copy, args=(upstream, conn), daemon=True)
                back.start()
                _copy(conn, upstream)
                back.join(timeout=TIMEOUT_S)


def _echo(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := conn.recv(65536):
            conn.sendall(data)


def _copy(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)


# --- the client pod ------------------------------------------------------------------------


def client_connect(dst: tuple[str, int], timeout: float = TIMEOUT_S) -> socket.socket:
    sock = netlab.unbound_socket_in(CLI, socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(dst)
    except OSError:
        sock.close()
        raise
    return sock


def exchange(dst: tuple[str, int], payload: bytes = b"ping " * 1000) -> str:
    """Connect from the client pod, read the greeting line, check the echo; returns the line."""
    with client_connect(dst) as sock:
        reader = sock.makefile("rb")
        line = reader.readline().decode().strip()
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = reader.read1(65536)
            assert chunk, f"connection to {dst[0]}:{dst[1]} closed after {len(got)} of {len(payload)} echoed bytes"
            got += chunk
        assert got == payload
        return line


def drain(q: queue.Queue[T]) -> list[T]:
    items: list[T] = []
    with contextlib.suppress(queue.Empty):
        while True:
            items.append(q.get_nowait())
    return items


# --- fixture -------------------------------------------------------------------------------


@dataclass
class Env:
    capture: Capture
    servers: Servers

    def counters(self) -> dict[tuple[int, Decision], int]:
        return self.capture.counters()

    def settled_counters(self) -> dict[tuple[int, Decision], int]:
        """Counters once the last packets of closed connections (final ACKs) went through."""
        last = self.counters()
        for _ in range(20):
            time.sleep(0.1)
            now = self.counters()
            if now == last:
                return now
            last = now
        raise AssertionError(f"counters kept changing for 2 s without traffic: {last}")

    def filters(self, ifname: str) -> list[str]:
        with entered(NODE):
            return attached_filters(ifname)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    problems = check_environment()
    if problems:
        pytest.fail(describe(problems), pytrace=False)
    host_before = host_network_snapshot()
    servers = Servers()
    capture = Capture(PREFIX)
    try:
        build_topology()
        servers.start()
        with entered(NODE):
            install_local_routing(capture.mark)
        capture.load()
        capture.enroll(CLIENT_IP, CLIENT_ID)
        capture.enroll(SERVER_IP, SERVER_ID)
        yield Env(capture=capture, servers=servers)
    finally:
        try:
            servers.close()
            if NODE in netlab.list_netns():
                with entered(NODE):
                    capture.detach_outbound(CLI_VETH)
                    capture.detach_outbound(SRV_VETH)
                    remove_local_routing(capture.mark)
        finally:
            try:
                capture.remove_pins()
            finally:
                remove_topology()
        left = [n for n in netlab.list_netns() if n.startswith(f"bpft-{PID}-")]
        assert left == [], f"namespaces left behind: {left}"
        assert not capture.pin_dir.exists(), f"{capture.pin_dir} left behind"
        assert host_network_snapshot() == host_before, "the host namespace's addresses, routes or links changed"


# --- tests ---------------------------------------------------------------------------------


def test_environment_is_described() -> None:
    assert describe([]) == "eBPF capture can run on this machine."
    message = describe(["kernel headers are missing at /x"])
    assert "kernel headers are missing at /x" in message and "scripts/setup" in message


def test_outbound_capture_reaches_node_listener_with_original_destination(env: Env) -> None:
    env.servers.mode = "echo"
    with entered(NODE):
        env.capture.attach_outbound(CLI_VETH)
        env.capture.attach_outbound(CLI_VETH)  # idempotent
    assert env.filters(CLI_VETH) == ["mesh_outbound"]
    before = env.counters()
    drain(env.servers.accepted)

    for dst in ((SERVER_IP, SERVER_PORT), (VIP, 80)):
        line = exchange(dst)
        assert line == f"node accepted {dst[0]}:{dst[1]} from {CLIENT_IP}", line
        got = env.servers.accepted.get(timeout=TIMEOUT_S)
        assert got.local == dst and got.peer[0] == CLIENT_IP

    after = env.counters()
    gained = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert gained.get((CLIENT_ID, Decision.SYN_TO_OUTBOUND)) == 2, gained
    assert gained.get((CLIENT_ID, Decision.ESTABLISHED_ASSIGNED), 0) >= 6, gained  # ACK, data, FIN...
    assert gained.get((CLIENT_ID, Decision.LOOKUP_FAILED), 0) == 0, gained


def test_transparent_forward_keeps_client_ip_with_return_path_on_server_veth(env: Env) -> None:
    env.servers.mode = "forward"
    with entered(NODE):
        env.capture.attach_outbound(CLI_VETH)
        env.capture.detach_outbound(SRV_VETH)
    drain(env.servers.forward_errors)

    # Without capture on the server pod's veth, its SYN-ACK to the client's address is
    # forwarded to the client pod (which resets it): the transparent connect never completes.
    with client_connect((SERVER_IP, SERVER_PORT)) as sock:
        sock.settimeout(4.0)
        assert sock.recv(100) == b""  # the listener closes after its upstream connect failed
    err = env.servers.forward_errors.get(timeout=TIMEOUT_S)
    assert "timed out" in err, err

    with entered(NODE):
        env.capture.attach_outbound(SRV_VETH)
    before = env.counters()
    line = exchange((SERVER_IP, SERVER_PORT))
    assert line == f"server saw {CLIENT_IP}", line
    after = env.counters()
    server_gain = after.get((SERVER_ID, Decision.ESTABLISHED_ASSIGNED), 0) - before.get(
        (SERVER_ID, Decision.ESTABLISHED_ASSIGNED), 0)
    assert server_gain >= 3, after  # SYN-ACK, greeting, echo, FIN came back through rule 1
    assert env.servers.forward_errors.empty()
    env.servers.mode = "echo"


def test_detach_goes_direct_and_leaves_no_filter(env: Env) -> None:
    env.servers.mode = "echo"
    with entered(NODE):
        env.capture.attach_outbound(CLI_VETH)
        env.capture.detach_outbound(CLI_VETH)
        env.capture.detach_outbound(CLI_VETH)  # idempotent
        env.capture.detach_outbound("nosuchif0")  # a gone veth is fine
    assert "mesh_outbound" not in env.filters(CLI_VETH)
    assert env.filters(CLI_VETH) == []
    drain(env.servers.accepted)
    before = env.settled_counters()

    line = exchange((SERVER_IP, SERVER_PORT))
    assert line == f"server saw {CLIENT_IP}", line  # straight to the server pod
    with pytest.raises(OSError):
        client_connect((VIP, 80), timeout=2.0)  # the VIP exists nowhere without capture
    assert env.servers.accepted.empty()
    after = env.settled_counters()
    assert {k: v for k, v in after.items() if k[0] == CLIENT_ID} == {
        k: v for k, v in before.items() if k[0] == CLIENT_ID}


def test_attach_errors_name_interface_and_namespace(env: Env) -> None:
    with entered(NODE), pytest.raises(CaptureError) as info:
        env.capture.attach_outbound("nosuchif0")
    assert "nosuchif0" in str(info.value) and f"network namespace {NODE}" in str(info.value)
    with entered(NODE):
        env.capture.attach_outbound(CLI_VETH)
        try:
            with pytest.raises(CaptureError, match="detach it first"):
                env.capture.attach_inbound(CLI_VETH)
        finally:
            env.capture.detach_outbound(CLI_VETH)


def test_inbound_program_assigns_to_inbound_and_hbone_listeners(env: Env) -> None:
    """``inbound`` on a link standing in for the uplink (the client veth): SYNs addressed to the
    enrolled server pod go to 15006, or to 15008 for HBONE."""
    listeners = []
    with entered(NODE):
        for port in (15006, 15008):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(8)
            sock.settimeout(TIMEOUT_S)
            listeners.append(sock)
    try:
        with entered(NODE):
            env.capture.attach_inbound(CLI_VETH)
        before = env.counters()
        for listener, dst in zip(listeners, ((SERVER_IP, SERVER_PORT), (SERVER_IP, 15008)), strict=True):
            with client_connect(dst):
                conn, peer = listener.accept()
                with conn:
                    assert conn.getsockname() == dst and peer[0] == CLIENT_IP
        # Not addressed to an enrolled pod: left alone (the VIP has no route on the node).
        with pytest.raises(OSError):
            client_connect((VIP, 80), timeout=2.0)
        after = env.counters()
        for decision in (Decision.SYN_TO_INBOUND, Decision.SYN_TO_HBONE):
            key = (SERVER_ID, decision)
            assert after.get(key, 0) - before.get(key, 0) == 1, (decision, after)
        # No inbound listener (ztunnel restarting): the SYN is dropped, never passed around
        # the mesh to the app (which listens on the server pod's port).
        listeners[0].close()
        with pytest.raises(TimeoutError):
            client_connect((SERVER_IP, SERVER_PORT), timeout=1.5)
        failed = (SERVER_ID, Decision.LOOKUP_FAILED)
        assert env.counters().get(failed, 0) - before.get(failed, 0) >= 1
    finally:
        with entered(NODE):
            env.capture.detach_inbound(CLI_VETH)
        for sock in listeners:
            sock.close()
    assert env.filters(CLI_VETH) == []


_RELOAD = """
import json, sys
from bpf.loader import Capture
cap = Capture(sys.argv[1])
cap.load()
print(json.dumps({"counters": [[p, d.value, v] for (p, d), v in cap.counters().items()],
                  "enrolled": cap.enrolled()}))
"""


def test_restarted_loader_adopts_pinned_maps(env: Env) -> None:
    env.servers.mode = "echo"
    with entered(NODE):
        env.capture.attach_outbound(CLI_VETH)
    exchange((VIP, 80))
    before = env.settled_counters()
    assert before.get((CLIENT_ID, Decision.SYN_TO_OUTBOUND), 0) >= 1

    # Another process (a restarted ztunnel) opens the same pins and sees the same state.
    proc = subprocess.run([sys.executable, "-c", _RELOAD, PREFIX], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["enrolled"] == {CLIENT_IP: CLIENT_ID, SERVER_IP: SERVER_ID}
    other = {(p, Decision(d)): v for p, d, v in seen["counters"]}
    assert {k: v for k, v in other.items() if k[0] == CLIENT_ID} == {
        k: v for k, v in before.items() if k[0] == CLIENT_ID}

    # This process drops its BPF object and compiles again: the maps are adopted, the filter
    # is replaced by the new program, and counting continues from the old values.
    env.capture.close()
    env.capture = Capture(PREFIX)
    env.capture.load()
    with entered(NODE):
        env.capture.attach_outbound(CLI_VETH)
    assert env.filters(CLI_VETH) == ["mesh_outbound"]
    assert env.capture.enrolled() == {CLIENT_IP: CLIENT_ID, SERVER_IP: SERVER_ID}
    exchange((VIP, 80))
    after = env.counters()
    key = (CLIENT_ID, Decision.SYN_TO_OUTBOUND)
    assert after[key] == before[key] + 1, (before, after)
    with entered(NODE):
        env.capture.detach_outbound(CLI_VETH)


def test_capture_counts_quickly(env: Env) -> None:
    """Sanity numbers: 50 captured connections through the echo listener in bounded time."""
    env.servers.mode = "echo"
    with entered(NODE):
        env.capture.attach_outbound(CLI_VETH)
    try:
        start = time.monotonic()
        for _ in range(50):
            exchange((VIP, 80), payload=b"x")
        elapsed = time.monotonic() - start
        assert elapsed < 30, elapsed
    finally:
        with entered(NODE):
            env.capture.detach_outbound(CLI_VETH)
