"""The trio HBONE driver over in-memory streams: tunnels as byte streams, refusals, resets,
back-pressure, pooling, keepalive and drain."""

from __future__ import annotations

import hashlib
from collections.abc import Hashable

import pytest
import trio
import trio.testing

from ztunnel import hbone
from ztunnel.splice import splice
from ztunnel.tunnel import H2Link, LinkClosed, Pool, Request, TunnelRefused


async def echo(req: Request) -> None:
    if req.port == 401:
        await req.reject(401)
        return
    t = await req.accept()
    while data := await t.receive_some():
        await t.send_all(data)
    await t.send_eof()


class Servers:
    """Dials memory streams to in-process H2 servers; counts dials."""

    def __init__(self, nursery: trio.Nursery, handler=echo) -> None:  # type: ignore[no-untyped-def]
        self.nursery = nursery
        self.handler = handler
        self.dials = 0
        self.links: list[H2Link] = []

    async def dial(self, key: Hashable) -> trio.abc.Stream:
        self.dials += 1
        a, b = trio.testing.memory_stream_pair()
        link = H2Link(b, client=False, label=f"server{self.dials}")
        self.links.append(link)
        self.nursery.start_soon(link.run, self.handler)
        return a


async def test_a_tunnel_carries_bytes_exactly_both_ways_with_half_close() -> None:
    async with trio.open_nursery() as n:
        servers = Servers(n)
        pool = Pool(servers.dial)
        await n.start(pool.run)
        t = await pool.open("k", "10.0.0.1:80")
        payload = bytes(range(256)) * 40_000  # ~10 MB: several windows' worth
        got = bytearray()

        async def read() -> None:
            while d := await t.receive_some():
                got.extend(d)

        async with trio.open_nursery() as m:
            m.start_soon(read)
            await t.send_all(payload)
            await t.send_eof()
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        await t.aclose()
        n.cancel_scope.cancel()


async def test_refusal_status_reaches_the_client() -> None:
    async with trio.open_nursery() as n:
        servers = Servers(n)
        pool = Pool(servers.dial)
        await n.start(pool.run)
        with pytest.raises(TunnelRefused) as info:
            await pool.open("k", "10.0.0.1:401")
        assert info.value.status == 401
        t = await pool.open("k", "10.0.0.1:80")  # the connection is still good
        await t.send_all(b"ping")
        assert await t.receive_some() == b"ping"
        assert servers.dials == 1
        n.cancel_scope.cancel()


async def test_streams_are_pooled_about_a_hundred_per_connection() -> None:
    async with trio.open_nursery() as n:
        servers = Servers(n)
        pool = Pool(servers.dial)
        await n.start(pool.run)
        tunnels = []

        async def one() -> None:
            tunnels.append(await pool.open("k", "10.0.0.1:80"))

        async with trio.open_nursery() as m:
            for _ in range(250):
                m.start_soon(one)
        assert len(tunnels) == 250
        assert servers.dials == 3  # 100 + 100 + 50, dials serialized per key
        await pool.open("other", "10.0.0.2:80")
        assert servers.dials == 4  # another key never shares
        for t in tunnels:
            await t.aclose()
        n.cancel_scope.cancel()


async def test_a_slow_reader_holds_the_sender_at_the_window() -> None:
    async with trio.open_nursery() as n:
        parked = trio.Event()

        async def sink(req: Request) -> None:
            t = await req.accept()
            await parked.wait()  # never reads until told
            total = 0
            while d := await t.receive_some():
                total += len(d)
            await t.send_all(str(total).encode())
            await t.send_eof()

        servers = Servers(n, sink)
        pool = Pool(servers.dial)
        await n.start(pool.run)
        t = await pool.open("k", "10.0.0.1:80")
        sent = 0
        with trio.move_on_after(1):
            while True:
                await t.send_all(b"q" * 65536)
                sent += 65536
        assert hbone.STREAM_WINDOW <= sent <= hbone.STREAM_WINDOW + 65536  # held at the window
        parked.set()
        await t.send_eof()
        assert int(await t.receive_some()) == sent
        n.cancel_scope.cancel()


async def test_a_reset_from_the_server_breaks_the_tunnel() -> None:
    async with trio.open_nursery() as n:
        async def resetter(req: Request) -> None:
            t = await req.accept()
            await t.receive_some()
            await t.aclose()  # before either side ended: RST_STREAM

        servers = Servers(n, resetter)
        pool = Pool(servers.dial)
        await n.start(pool.run)
        t = await pool.open("k", "10.0.0.1:80")
        await t.send_all(b"x")
        with pytest.raises(trio.BrokenResourceError, match="reset"):
            await t.receive_some()
        n.cancel_scope.cancel()


async def test_splice_over_a_tunnel_propagates_half_close() -> None:
    async with trio.open_nursery() as n:
        servers = Servers(n)
        pool = Pool(servers.dial)
        await n.start(pool.run)
        t = await pool.open("k", "10.0.0.1:80")
        app, proxy_side = trio.testing.memory_stream_pair()
        n.start_soon(splice, proxy_side, t)
        await app.send_all(b"abc" * 1000)
        await app.send_eof()
        got = bytearray()
        while d := await app.receive_some():
            got.extend(d)
        assert bytes(got) == b"abc" * 1000
        n.cancel_scope.cancel()


async def test_keepalive_closes_a_connection_whose_peer_stopped_answering(autojump_clock: trio.abc.Clock) -> None:
    a, b = trio.testing.memory_stream_pair()
    link = H2Link(a, client=True, label="c")
    silent = False

    async def peer() -> None:  # answers (pings included) until it goes silent, never closes
        core = hbone.HboneCore(client=False)
        while data := await b.receive_some():
            if silent:
                continue
            core.receive(data)
            await b.send_all(core.data_to_send())

    async with trio.open_nursery() as n:
        n.start_soon(peer)
        await n.start(lambda task_status: link.run(keepalive_s=5, task_status=task_status))
        await trio.sleep(30)
        assert not link.closed  # answered pings keep it open
        silent = True  # a black-holed network
        await trio.sleep(11)
        assert link.closed and "PING" in (link.failure or "")
        with pytest.raises(LinkClosed):
            await link.open("10.0.0.1:80")
        n.cancel_scope.cancel()


async def test_drain_lets_open_tunnels_finish_and_refuses_new_ones() -> None:
    a, b = trio.testing.memory_stream_pair()
    client = H2Link(a, client=True, label="c")
    server = H2Link(b, client=False, label="s")
    async with trio.open_nursery() as n:
        n.start_soon(server.run, echo)
        await n.start(client.run)
        t = await client.open("10.0.0.1:80")
        n.start_soon(server.drain, 5.0)
        await trio.sleep(0.05)
        assert client.draining  # GOAWAY reached the client
        with pytest.raises(LinkClosed, match="draining"):
            await client.open("10.0.0.1:80")
        await t.send_all(b"still here")
        assert await t.receive_some() == b"still here"
        await t.send_eof()
        assert await t.receive_some() == b""
        await t.aclose()
        with trio.fail_after(2):
            await server.wait_closed()
        n.cancel_scope.cancel()


async def test_a_dead_connection_breaks_its_tunnels_and_the_pool_dials_again() -> None:
    async with trio.open_nursery() as n:
        servers = Servers(n)
        pool = Pool(servers.dial)
        await n.start(pool.run)
        t = await pool.open("k", "10.0.0.1:80")
        await servers.links[0].transport.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await t.receive_some()
        t2 = await pool.open("k", "10.0.0.1:80")
        await t2.send_all(b"again")
        assert await t2.receive_some() == b"again"
        assert servers.dials == 2
        n.cancel_scope.cancel()
