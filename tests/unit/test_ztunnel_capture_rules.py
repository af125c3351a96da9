"""ztunnel's capture plan, the copy loop and the TCP metrics, without namespaces."""

from __future__ import annotations

import hashlib
import os

import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest

from ztunnel.metrics import ConnectionLabels, Metrics
from ztunnel.redirect import Captured, diff, plan, pod_id
from ztunnel.splice import splice
from ztunnel.state import ProxyState, Workload


def wl(uid: str, node: str, ip: str, enrolled: bool) -> Workload:
    return Workload(uid=uid, name=uid, namespace="default", node=node, service_account="sa",
                    trust_domain="cluster.local", addresses=(ip,), enrolled=enrolled, healthy=True)


def test_only_enrolled_pods_on_this_node_are_captured() -> None:
    state = ProxyState(1, {w.uid: w for w in (
        wl("a", "node1", "10.244.1.2", True), wl("b", "node1", "10.244.1.3", False),
        wl("c", "node2", "10.244.2.2", True), wl("d", "node1", "fd00::1", True),
    )}, ())
    assert list(plan(state, "node1")) == ["10.244.1.2"]
    assert plan(state, "node1")["10.244.1.2"] == Captured("a", "10.244.1.2", pod_id("a"))


def test_plan_diffs_enroll_new_and_unenroll_gone_or_changed() -> None:
    a, b = Captured("a", "10.0.0.1", 1), Captured("b", "10.0.0.2", 2)
    moved = Captured("b2", "10.0.0.2", 3)  # the address now belongs to another pod
    change = diff({"10.0.0.1": a, "10.0.0.2": b}, {"10.0.0.2": moved})
    assert change.enroll == (moved,)
    assert change.unenroll == (a, b)
    assert diff({"10.0.0.1": a}, {"10.0.0.1": a}).enroll == ()


def test_pod_ids_are_stable_31_bit_numbers() -> None:
    assert pod_id("x") == pod_id("x") != pod_id("y")
    assert 0 <= pod_id("x") < 2**31
    assert pod_id("x") == int.from_bytes(hashlib.sha256(b"x").digest()[:4], "big") & 0x7FFFFFFF


async def test_splice_copies_both_ways_with_half_close_and_counts() -> None:
    client_side, ztunnel_a = trio.testing.memory_stream_pair()
    ztunnel_b, server_side = trio.testing.memory_stream_pair()
    payload = os.urandom(1_000_000)
    answer = os.urandom(300_000)
    got_at_server = bytearray()
    got_at_client = bytearray()

    async def server() -> None:
        while data := await server_side.receive_some(65536):
            got_at_server.extend(data)
        await server_side.send_all(answer)  # the client half-closed; the server still answers
        await server_side.send_eof()

    async def client() -> None:
        await client_side.send_all(payload)
        await client_side.send_eof()
        while data := await client_side.receive_some(65536):
            got_at_client.extend(data)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            nursery.start_soon(client)
            totals = await splice(ztunnel_a, ztunnel_b)
    assert bytes(got_at_server) == payload and bytes(got_at_client) == answer
    assert (totals.a_to_b, totals.b_to_a) == (len(payload), len(answer))


def test_metrics_use_istios_names_and_an_injected_registry() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    labels = ConnectionLabels(source_workload="curl", source_workload_namespace="default",
                              destination_workload="productpage-v1", destination_workload_namespace="default")
    m.connection_opened(labels)
    m.connection_closed(labels, received=100, sent=2500)
    text = generate_latest(registry).decode()
    assert 'istio_tcp_connections_opened_total{' in text and 'source_workload="curl"' in text
    assert "istio_tcp_received_bytes_total" in text and "istio_tcp_sent_bytes_total" in text
    assert 'connection_security_policy="unknown"' in text
    assert "istio_tcp_connections_opened_total" not in generate_latest().decode()  # not the global registry
