"""ztunnel's transparent forward on its own, steered by nftables TPROXY (the comparison path of
issue 5's benchmark): the server sees the client's real address, bytes arrive exactly, and the
access log and metrics record the connection. Needs root; never skips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from meshctl.lab import netlab
from tests.lab.conftest import ROOT, require_lab_machine

pytestmark = pytest.mark.lab

CLIENT_IP, SERVER_IP, GATEWAY = "10.99.0.2", "10.99.0.3", "10.99.0.1"
MARK = 0x539

NFT = f"""\
table ip ztf {{
  chain pre {{
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set {MARK} accept
    iifname "vc" tcp dport 8080 tproxy to :15001 meta mark set {MARK} accept
  }}
}}
"""

PROXY = textwrap.dedent("""\
    import logging, signal, sys, trio
    from prometheus_client import CollectorRegistry, generate_latest
    from ztunnel.metrics import Metrics
    from ztunnel.proxy import Proxy
    from ztunnel.sockets import transparent_listener
    from ztunnel.state import EMPTY
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
    registry = CollectorRegistry()
    async def main():
        proxy = Proxy("node", lambda: EMPTY, Metrics(registry))
        listener = trio.SocketListener(transparent_listener(15001))
        with trio.open_signal_receiver(signal.SIGTERM) as signals, trio.move_on_after(float(sys.argv[1])):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(proxy.serve, listener)
                print("READY", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
    trio.run(main)
    print(generate_latest(registry).decode(), flush=True)
    """)

SERVER = textwrap.dedent("""\
    import hashlib, socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(64); s.settimeout(30)
    print("READY", flush=True)
    for _ in range(int(sys.argv[1])):
        c, addr = s.accept(); c.settimeout(30)
        h = hashlib.sha256(); n = 0
        while data := c.recv(262144):
            h.update(data); n += len(data)
        c.sendall(h.hexdigest().encode()); c.close()
        print("PEER", addr[0], n, flush=True)
    """)

CLIENT = textwrap.dedent("""\
    import hashlib, os, socket, sys
    data = os.urandom(int(sys.argv[1]))
    c = socket.create_connection((sys.argv[2], 8080), timeout=30)
    c.sendall(data); c.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := c.recv(4096):
        answer += chunk
    print("OK" if answer.decode() == hashlib.sha256(data).hexdigest() else "MISMATCH", flush=True)
    """)


@dataclass
class Topology:
    node: str
    client: str
    server: str


@pytest.fixture
def topology() -> Iterator[Topology]:
    require_lab_machine()
    t = Topology(*(f"ztf{os.getpid()}-{n}" for n in ("node", "client", "server")))
    try:
        for name in (t.node, t.client, t.server):
            netlab.create_netns(name)
        for pod, ip, host_if in ((t.client, CLIENT_IP, "vc"), (t.server, SERVER_IP, "vs")):
            netlab.wire_pod(t.node, pod, host_if, ip, GATEWAY)
        for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
            netlab.sysctl(t.node, key, "1" if key.endswith("forward") else "0")
        netlab.load_nft(t.node, NFT)
        for cmd in (["rule", "add", "fwmark", str(MARK), "lookup", "100"],
                    ["route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"]):
            subprocess.run(["ip", "-n", t.node, *cmd], check=True, capture_output=True)
        yield t
    finally:
        for name in (t.client, t.server, t.node):
            netlab.kill_netns_processes(name, grace_s=0.5)
            netlab.remove_netns(name)


def start(netns: str, code: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", line + (proc.stdout.read() if proc.poll() is not None else "")
    return proc


def test_transparent_forward_keeps_the_client_address_and_every_byte(topology: Topology) -> None:
    connections = 20
    server = start(topology.server, SERVER, str(connections))
    proxy = start(topology.node, PROXY, "20")
    try:
        sizes = [1, 1000, 65536, 1_000_003] + [200_000] * (connections - 4)
        for size in sizes:
            out = subprocess.run(["ip", "netns", "exec", topology.client, sys.executable, "-c", CLIENT, str(size), SERVER_IP],
                                 capture_output=True, text=True, timeout=30, check=False)
            if out.stdout.strip() != "OK":
                proxy.terminate()
                raise AssertionError(f"size {size}: {out.stdout}{out.stderr}\nproxy: {proxy.communicate(timeout=10)[0][-3000:]}")
        server_out, _ = server.communicate(timeout=30)
    finally:
        proxy.terminate()
    proxy_out, _ = proxy.communicate(timeout=30)
    peers = [line.split() for line in server_out.splitlines() if line.startswith("PEER")]
    assert len(peers) == connections
    assert {p[1] for p in peers} == {CLIENT_IP}  # the server saw the client pod's own address
    assert sorted(int(p[2]) for p in peers) == sorted(sizes)
    access = [line for line in proxy_out.splitlines() if line.startswith("ztunnel.access")]
    assert len(access) == connections, proxy_out[-2000:]
    assert f"src={CLIENT_IP}:" in access[0] and f"dst={SERVER_IP}:8080" in access[0]
    assert "flags=-" in access[0]
    assert 'istio_tcp_connections_opened_total{' in proxy_out
    closed = [line for line in proxy_out.splitlines() if line.startswith("istio_tcp_connections_closed_total{")]
    assert closed and float(closed[0].rsplit(" ", 1)[1]) == connections
    received = [line for line in proxy_out.splitlines() if line.startswith("istio_tcp_received_bytes_total{")]
    assert float(received[0].rsplit(" ", 1)[1]) == sum(sizes)

