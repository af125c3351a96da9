"""Tests of the lab's cluster DNS (meshctl.lab.dns): the sans-I/O core and the trio drivers."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from functools import partial

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
import dns.update
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshctl.lab.dns import (
    EDNS_PAYLOAD_SIZE,
    SCHEMA_VERSION,
    ServiceRecord,
    Zone,
    answer,
    respond,
    serve_tcp,
    serve_udp,
)

DOMAIN = "cluster.local"

ZONE = Zone(
    services={
        ("default", "web"): ServiceRecord(
            name="web",
            namespace="default",
            cluster_ip="10.96.0.10",
            endpoints=(("10.0.1.9", "web-abc"),),
            ports=(("http", "tcp", 80), (None, "tcp", 8080), ("dns", "udp", 53)),
        ),
        ("default", "db"): ServiceRecord(
            name="db",
            namespace="default",
            cluster_ip=None,
            endpoints=(("10.0.1.5", "db-0"), ("10.0.1.6", "db-1")),
            ports=(("pg", "tcp", 5432),),
        ),
        ("default", "ghost"): ServiceRecord(
            name="ghost",
            namespace="default",
            cluster_ip=None,
            endpoints=(),
            ports=(("http", "tcp", 80),),
        ),
        ("shop", "cart"): ServiceRecord(
            name="cart", namespace="shop", cluster_ip="10.96.0.20", endpoints=()
        ),
    },
    pods={
        "10.0.1.5": "default",
        "10.0.1.6": "default",
        "10.0.1.9": "default",
        "10.0.2.7": "other",
    },
)

NOERROR, NXDOMAIN = dns.rcode.NOERROR, dns.rcode.NXDOMAIN


def ask(
    name: str,
    rdtype: str = "A",
    zone: Zone = ZONE,
    *,
    max_udp_size: int = 512,
    tcp: bool = False,
    **query_args: object,
) -> dns.message.Message:
    """Ask ``zone`` one question; check the response's framing and return it."""
    query = dns.message.make_query(name, rdtype, **query_args)  # type: ignore[arg-type]
    wire = answer(query.to_wire(), zone, max_udp_size=max_udp_size, tcp=tcp)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    assert response.flags & dns.flags.QR
    assert not response.flags & dns.flags.RA
    assert response.opcode() == dns.opcode.QUERY
    assert response.question == query.question
    return response


def records(section: list[dns.rrset.RRset]) -> set[tuple[str, str, str]]:
    return {
        (rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for rrset in section
        for rdata in rrset
    }


def has_soa(response: dns.message.Message, apex: str = DOMAIN + ".") -> bool:
    return [(r.name.to_text(), r.rdtype) for r in response.authority] == [(apex, dns.rdatatype.SOA)]


# ----------------------------------------------------------------------- positive answers

FQ = "default.svc.cluster.local."


@pytest.mark.parametrize(
    ("qname", "qtype", "expected"),
    [
        # ClusterIP services, with and without the trailing dot, in any case
        ("web.default.svc.cluster.local.", "A", {("web." + FQ, "A", "10.96.0.10")}),
        ("web.default.svc.cluster.local", "A", {("web." + FQ, "A", "10.96.0.10")}),
        ("WeB.DEFAULT.Svc.Cluster.Local", "A", {("web." + FQ, "A", "10.96.0.10")}),
        (
            "cart.shop.svc.cluster.local",
            "A",
            {("cart.shop.svc.cluster.local.", "A", "10.96.0.20")},
        ),
        # headless: one A per ready endpoint, and one name per endpoint hostname
        (
            "db.default.svc.cluster.local",
            "A",
            {("db." + FQ, "A", "10.0.1.5"), ("db." + FQ, "A", "10.0.1.6")},
        ),
        ("db-0.db.default.svc.cluster.local", "A", {("db-0.db." + FQ, "A", "10.0.1.5")}),
        ("DB-1.db.default.svc.cluster.local.", "A", {("db-1.db." + FQ, "A", "10.0.1.6")}),
        # pods by dashed IP in their namespace
        (
            "10-0-2-7.other.pod.cluster.local",
            "A",
            {("10-0-2-7.other.pod.cluster.local.", "A", "10.0.2.7")},
        ),
        # SRV for named ports: ClusterIP -> the service name; headless -> each endpoint
        (
            "_http._tcp.web.default.svc.cluster.local",
            "SRV",
            {("_http._tcp.web." + FQ, "SRV", "0 100 80 web.default.svc.cluster.local.")},
        ),
        (
            "_dns._udp.web.default.svc.cluster.local",
            "SRV",
            {("_dns._udp.web." + FQ, "SRV", "0 100 53 web.default.svc.cluster.local.")},
        ),
        (
            "_pg._tcp.db.default.svc.cluster.local",
            "SRV",
            {
                ("_pg._tcp.db." + FQ, "SRV", "0 100 5432 db-0.db.default.svc.cluster.local."),
                ("_pg._tcp.db." + FQ, "SRV", "0 100 5432 db-1.db.default.svc.cluster.local."),
            },
        ),
        # reverse lookups: ClusterIP, headless endpoint, plain pod
        ("10.0.96.10.in-addr.arpa", "PTR", {("10.0.96.10.in-addr.arpa.", "PTR", "web." + FQ)}),
        (
            "5.1.0.10.in-addr.arpa.",
            "PTR",
            {("5.1.0.10.in-addr.arpa.", "PTR", "db-0.db." + FQ)},
        ),
        (
            "9.1.0.10.in-addr.arpa",
            "PTR",
            {("9.1.0.10.in-addr.arpa.", "PTR", "10-0-1-9.default.pod.cluster.local.")},
        ),
        (
            "7.2.0.10.IN-ADDR.ARPA",
            "PTR",
            {("7.2.0.10.in-addr.arpa.", "PTR", "10-0-2-7.other.pod.cluster.local.")},
        ),
        # the schema version, localhost (the SOA is checked below)
        ("dns-version.cluster.local", "TXT", {("dns-version.cluster.local.", "TXT", '"1.1.0"')}),
        ("localhost.", "A", {("localhost.", "A", "127.0.0.1")}),
        ("localhost", "A", {("localhost.", "A", "127.0.0.1")}),
    ],
)
def test_positive_answers(qname: str, qtype: str, expected: set[tuple[str, str, str]]) -> None:
    response = ask(qname, qtype)
    assert response.rcode() == NOERROR
    assert response.flags & dns.flags.AA
    assert records(response.answer) == expected
    assert response.authority == []


@pytest.mark.parametrize("qname", ["cluster.local", "Cluster.Local."])
def test_soa_record(qname: str) -> None:
    response = ask(qname, "SOA")
    assert response.rcode() == NOERROR
    assert response.flags & dns.flags.AA
    assert response.authority == []
    (soa,) = response.answer[0]
    assert soa.mname == dns.name.from_text("ns.dns.cluster.local.")
    assert soa.rname == dns.name.from_text("hostmaster.cluster.local.")
    assert soa.minimum == ZONE.ttl
    assert SCHEMA_VERSION == "1.1.0"


def test_answer_owner_keeps_the_question_spelling() -> None:
    """Resolvers using 0x20 randomisation compare the echoed name case-sensitively."""
    response = ask("wEb.DeFaUlT.sVc.cLuStEr.LoCaL.")
    assert response.question[0].name.to_text() == "wEb.DeFaUlT.sVc.cLuStEr.LoCaL."
    assert response.answer[0].name.to_text() == "wEb.DeFaUlT.sVc.cLuStEr.LoCaL."


def test_srv_targets_are_in_the_additional_section() -> None:
    response = ask("_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert records(response.additional) == {
        ("db-0.db." + FQ, "A", "10.0.1.5"),
        ("db-1.db." + FQ, "A", "10.0.1.6"),
    }
    response = ask("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert records(response.additional) == {("web." + FQ, "A", "10.96.0.10")}


def test_ttl_comes_from_the_zone() -> None:
    zone = Zone(services=ZONE.services, pods=ZONE.pods, ttl=42)
    response = ask("web.default.svc.cluster.local", zone=zone)
    assert response.answer[0].ttl == 42
    response = ask("nope.default.svc.cluster.local", zone=zone)
    assert response.authority[0].ttl == 42


def test_any_returns_every_record_of_the_name() -> None:
    response = ask("web.default.svc.cluster.local", "ANY")
    assert records(response.answer) == {("web." + FQ, "A", "10.96.0.10")}


# ----------------------------------------------------------------- NODATA and NXDOMAIN


@pytest.mark.parametrize(
    ("qname", "qtype"),
    [
        # existing names, other types
        ("web.default.svc.cluster.local", "AAAA"),
        ("web.default.svc.cluster.local", "TXT"),
        ("web.default.svc.cluster.local", "SRV"),
        ("db-0.db.default.svc.cluster.local", "AAAA"),
        ("10-0-2-7.other.pod.cluster.local", "AAAA"),
        ("_http._tcp.web.default.svc.cluster.local", "A"),
        # a headless service with no ready endpoints exists but has no addresses
        ("ghost.default.svc.cluster.local", "A"),
        ("_http._tcp.ghost.default.svc.cluster.local", "SRV"),
        # the structure of the domain exists
        ("default.svc.cluster.local", "A"),
        ("shop.svc.cluster.local", "A"),
        ("other.svc.cluster.local", "A"),  # a namespace with pods only
        ("svc.cluster.local", "A"),
        ("pod.cluster.local", "A"),
        ("other.pod.cluster.local", "A"),
        ("cluster.local", "A"),
        ("cluster.local.", "AAAA"),
        ("cluster.local", "NS"),
        # empty non-terminals above existing names (RFC 8020)
        ("_tcp.web.default.svc.cluster.local", "SRV"),
        ("_tcp.db.default.svc.cluster.local", "SRV"),
    ],
)
def test_nodata(qname: str, qtype: str) -> None:
    response = ask(qname, qtype)
    assert response.rcode() == NOERROR
    assert response.flags & dns.flags.AA
    assert response.answer == []
    assert has_soa(response)


@pytest.mark.parametrize(
    "qname",
    [
        "nope.default.svc.cluster.local",
        "web.nons.svc.cluster.local",
        "nons.svc.cluster.local",
        "db-9.db.default.svc.cluster.local",
        "web-abc.web.default.svc.cluster.local",  # hostnames are for headless services only
        "x.web.default.svc.cluster.local",
        "_grpc._tcp.web.default.svc.cluster.local",
        "_http._udp.web.default.svc.cluster.local",
        "_http._tcp.cart.shop.svc.cluster.local",
        "_tcp.cart.shop.svc.cluster.local",
        "10-0-2-7.default.pod.cluster.local",  # the pod lives in another namespace
        "10-9-9-9.other.pod.cluster.local",
        "10-96-0-10.default.pod.cluster.local",  # a ClusterIP is not a pod
        "nons.pod.cluster.local",
        "nope.cluster.local",
        "*.default.svc.cluster.local",
        # what ndots:5 and the search list make a pod ask first
        "web.default.svc.cluster.local.default.svc.cluster.local",
        "example.com.default.svc.cluster.local",
        "example.com.svc.cluster.local",
        "example.com.cluster.local",
    ],
)
def test_nxdomain_inside_the_cluster_domain(qname: str) -> None:
    for qtype in ("A", "AAAA", "SRV"):
        response = ask(qname, qtype)
        assert response.rcode() == NXDOMAIN, qtype
        assert response.flags & dns.flags.AA
        assert response.answer == []
        assert has_soa(response)


@pytest.mark.parametrize("qname", ["example.com", "example.com.", "local.", "arpa.", "svc."])
def test_nxdomain_outside_the_cluster_domain(qname: str) -> None:
    """The lab has no upstream: every other name does not exist (and we are not its
    authority, so no AA and no SOA)."""
    response = ask(qname)
    assert response.rcode() == NXDOMAIN
    assert response.answer == []
    assert response.authority == []
    assert not response.flags & dns.flags.AA


def test_localhost_other_types_and_names() -> None:
    response = ask("localhost.", "AAAA")
    assert response.rcode() == NOERROR
    assert response.answer == []
    response = ask("foo.localhost.")
    assert response.rcode() == NXDOMAIN
    assert response.answer == []


@pytest.mark.parametrize(
    ("qname", "rcode"),
    [
        ("8.8.8.8.in-addr.arpa", NXDOMAIN),
        ("1.0.0.127.in-addr.arpa", NXDOMAIN),
        ("0.96.10.in-addr.arpa", NOERROR),  # empty non-terminal above 10.96.0.10
        ("10.in-addr.arpa", NOERROR),
        ("in-addr.arpa", NOERROR),
    ],
)
def test_reverse_negative(qname: str, rcode: dns.rcode.Rcode) -> None:
    response = ask(qname, "PTR")
    assert response.rcode() == rcode
    assert response.answer == []
    assert response.flags & dns.flags.AA
    assert has_soa(response, "in-addr.arpa.")


def test_other_cluster_domain() -> None:
    zone = Zone(domain="Lab.Example.", services=ZONE.services, pods=ZONE.pods)
    response = ask("web.default.svc.lab.example", zone=zone)
    assert records(response.answer) == {("web.default.svc.lab.example.", "A", "10.96.0.10")}
    response = ask("web.default.svc.cluster.local", zone=zone)
    assert response.rcode() == NXDOMAIN
    assert not response.flags & dns.flags.AA
    response = ask("10.0.96.10.in-addr.arpa", "PTR", zone=zone)
    assert records(response.answer) == {
        ("10.0.96.10.in-addr.arpa.", "PTR", "web.default.svc.lab.example.")
    }


def test_ipv6_addresses() -> None:
    zone = Zone(
        services={
            ("default", "v6"): ServiceRecord("v6", "default", "fd00:96::10", ()),
        },
        pods={"fd00:1::7": "default"},
    )
    response = ask("v6.default.svc.cluster.local", "AAAA", zone=zone)
    assert records(response.answer) == {("v6." + FQ, "AAAA", "fd00:96::10")}
    assert ask("v6.default.svc.cluster.local", "A", zone=zone).answer == []
    response = ask("fd00-1--7.default.pod.cluster.local", "AAAA", zone=zone)
    assert records(response.answer) == {
        ("fd00-1--7.default.pod.cluster.local.", "AAAA", "fd00:1::7")
    }
    reverse = dns.reversename.from_address("fd00:96::10").to_text()
    response = ask(reverse, "PTR", zone=zone)
    assert records(response.answer) == {(reverse, "PTR", "v6." + FQ)}


def test_unusable_zone_entries_are_skipped() -> None:
    zone = Zone(
        services={
            ("default", "a.b"): ServiceRecord("a.b", "default", "10.96.0.1", ()),
            ("default", "badip"): ServiceRecord("badip", "default", "not-an-ip", ()),
            ("default", "ok"): ServiceRecord(
                "ok",
                "default",
                None,
                (("bogus", "p"), ("10.0.0.3", "dotted.pod.name"), ("10.0.0.3", "dup")),
                (("web", "tcp", 70000), ("bad name", "tcp", 80), ("h", "tcp", 81)),
            ),
        },
        pods={"nonsense": "default", "10.0.0.4": "Bad_NS!"},
    )
    assert ask("a.b.default.svc.cluster.local", zone=zone).rcode() == NXDOMAIN
    assert ask("badip.default.svc.cluster.local", zone=zone).answer == []
    response = ask("ok.default.svc.cluster.local", zone=zone)
    assert records(response.answer) == {("ok." + FQ, "A", "10.0.0.3")}
    # a pod name that is not a DNS label falls back to the dashed IP
    response = ask("10-0-0-3.ok.default.svc.cluster.local", zone=zone)
    assert records(response.answer) == {("10-0-0-3.ok." + FQ, "A", "10.0.0.3")}
    assert ask("_web._tcp.ok.default.svc.cluster.local", "SRV", zone=zone).rcode() == NXDOMAIN
    assert len(ask("_h._tcp.ok.default.svc.cluster.local", "SRV", zone=zone).answer) == 1


def test_zone_validation() -> None:
    with pytest.raises(ValueError, match="domain"):
        Zone(domain="a..b")
    with pytest.raises(ValueError, match="root"):
        Zone(domain=".")
    with pytest.raises(ValueError, match="TTL"):
        Zone(ttl=-1)
    assert ask("anything.cluster.local", zone=Zone()).rcode() == NXDOMAIN


def test_zone_snapshots_compare_by_content() -> None:
    ask("web.default.svc.cluster.local")  # builds ZONE's index
    assert Zone(services=dict(ZONE.services), pods=dict(ZONE.pods)) == ZONE


# ----------------------------------------------------------------------- header flags


@pytest.mark.parametrize("flags", [dns.flags.RD, 0, dns.flags.RD | dns.flags.CD])
def test_header_flags(flags: int) -> None:
    response = ask("web.default.svc.cluster.local", flags=flags)
    assert response.flags & dns.flags.AA
    assert bool(response.flags & dns.flags.RD) == bool(flags & dns.flags.RD)
    assert not response.flags & dns.flags.RA
    assert not response.flags & dns.flags.TC


# ------------------------------------------------------------------ EDNS and truncation


def test_no_edns_in_no_edns_out() -> None:
    response = ask("web.default.svc.cluster.local")
    assert response.edns == -1


def test_edns_is_echoed() -> None:
    response = ask("web.default.svc.cluster.local", use_edns=0, payload=4096)
    assert response.edns == 0
    assert response.payload == EDNS_PAYLOAD_SIZE
    assert not response.ednsflags & dns.flags.DO
    response = ask("web.default.svc.cluster.local", use_edns=0, want_dnssec=True)
    assert response.ednsflags & dns.flags.DO


def test_unknown_edns_version_is_badvers() -> None:
    query = dns.message.make_query("web.default.svc.cluster.local", "A", use_edns=1)
    reply = respond(query.to_wire(), ZONE)
    assert reply.wire is not None and reply.rejected is not None
    response = dns.message.from_wire(reply.wire)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0
    assert response.answer == []


def big_zone(endpoints: int) -> Zone:
    return Zone(
        services={
            ("default", "big"): ServiceRecord(
                "big",
                "default",
                None,
                tuple((f"10.1.{i // 250}.{i % 250 + 1}", f"big-{i}") for i in range(endpoints)),
                (("http", "tcp", 80),),
            )
        }
    )


BIG = "big.default.svc.cluster.local"


def test_truncated_without_edns() -> None:
    zone = big_zone(50)  # about 800 bytes of answers
    query = dns.message.make_query(BIG, "A")
    wire = answer(query.to_wire(), zone)
    assert wire is not None and len(wire) <= 512
    response = dns.message.from_wire(wire)
    assert response.flags & dns.flags.TC
    assert response.rcode() == NOERROR
    assert response.question == query.question
    # the same query fits a larger non-EDNS limit, over TCP, and with EDNS
    assert not dns.message.from_wire(answer(query.to_wire(), zone, tcp=True) or b"").flags & (
        dns.flags.TC
    )
    response = ask(BIG, zone=zone, max_udp_size=4096)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 50
    response = ask(BIG, zone=zone, use_edns=0, payload=4096)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 50


def test_truncation_honours_the_clients_edns_size() -> None:
    zone = big_zone(50)
    query = dns.message.make_query(BIG, "A", use_edns=0, payload=600)
    wire = answer(query.to_wire(), zone)
    assert wire is not None and len(wire) <= 600
    response = dns.message.from_wire(wire)
    assert response.flags & dns.flags.TC
    assert response.edns == 0  # the OPT record survives truncation


def test_edns_size_is_capped_at_ours() -> None:
    zone = big_zone(100)  # about 1600 bytes: more than EDNS_PAYLOAD_SIZE
    query = dns.message.make_query(BIG, "A", use_edns=0, payload=65000)
    wire = answer(query.to_wire(), zone)
    assert wire is not None and len(wire) <= EDNS_PAYLOAD_SIZE
    assert dns.message.from_wire(wire).flags & dns.flags.TC
    response = ask(BIG, zone=zone, tcp=True)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 100


def test_additional_section_is_dropped_silently() -> None:
    """SRV targets are extra: when they do not fit, they go without setting TC."""
    zone = big_zone(8)  # 8 SRV answers (targets uncompressed) fill 512 bytes
    query = dns.message.make_query("_http._tcp." + BIG, "SRV")
    response = dns.message.from_wire(answer(query.to_wire(), zone) or b"")
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 8
    assert len(response.additional) < 8
    assert len(ask("_http._tcp." + BIG, "SRV", zone=zone, tcp=True).additional) == 8
    # with more, the answer itself does not fit: truncated
    response = ask("_http._tcp." + BIG, "SRV", zone=big_zone(12))
    assert response.flags & dns.flags.TC


# ------------------------------------------------------------------------ bad input


def query_wire(name: str = "web.default.svc.cluster.local", rdtype: str = "A") -> bytes:
    return dns.message.make_query(name, rdtype, id=0x1234).to_wire()


def with_opcode(wire: bytes, opcode: int) -> bytes:
    flags = (int.from_bytes(wire[2:4], "big") & ~0x7800) | (opcode << 11)
    return wire[:2] + flags.to_bytes(2, "big") + wire[4:]


def with_count(wire: bytes, index: int, value: int) -> bytes:
    offset = 4 + 2 * index
    return wire[:offset] + value.to_bytes(2, "big") + wire[offset + 2 :]


def two_questions() -> bytes:
    query = dns.message.make_query("web.default.svc.cluster.local", "A", id=0x1234)
    query.question.append(
        dns.rrset.RRset(
            dns.name.from_text("db.default.svc.cluster.local"), dns.rdataclass.IN, dns.rdatatype.A
        )
    )
    return query.to_wire()


def zero_questions() -> bytes:
    return dns.message.Message(id=0x1234).to_wire()


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x12\x34\x01", id="3 bytes"),
        pytest.param(query_wire()[:11], id="11 bytes"),
        pytest.param(
            dns.message.make_response(dns.message.from_wire(query_wire())).to_wire(),
            id="a response (QR set)",
        ),
    ],
)
def test_dropped(wire: bytes) -> None:
    reply = respond(wire, ZONE)
    assert reply.wire is None
    assert reply.rejected
    assert answer(wire, ZONE) is None


@pytest.mark.parametrize(
    ("wire", "rcode"),
    [
        pytest.param(query_wire()[:12], dns.rcode.FORMERR, id="header only"),
        pytest.param(query_wire()[:20], dns.rcode.FORMERR, id="cut in the question"),
        pytest.param(query_wire() + b"junk", dns.rcode.FORMERR, id="trailing junk"),
        pytest.param(zero_questions(), dns.rcode.FORMERR, id="no question"),
        pytest.param(two_questions(), dns.rcode.FORMERR, id="two questions"),
        pytest.param(with_count(query_wire(), 1, 1), dns.rcode.FORMERR, id="missing answer"),
        pytest.param(with_count(query_wire(), 3, 7), dns.rcode.FORMERR, id="many additionals"),
        pytest.param(b"\x12\x34\x01\x00" + b"\xff" * 30, dns.rcode.FORMERR, id="garbage"),
        pytest.param(with_opcode(query_wire(), dns.opcode.IQUERY), dns.rcode.NOTIMP, id="IQUERY"),
        pytest.param(with_opcode(query_wire(), dns.opcode.STATUS), dns.rcode.NOTIMP, id="STATUS"),
        pytest.param(with_opcode(query_wire(), dns.opcode.NOTIFY), dns.rcode.NOTIMP, id="NOTIFY"),
        pytest.param(with_opcode(query_wire(), 15), dns.rcode.NOTIMP, id="opcode 15"),
        pytest.param(
            dns.update.UpdateMessage("cluster.local", id=0x1234).to_wire(),
            dns.rcode.NOTIMP,
            id="UPDATE",
        ),
        pytest.param(
            dns.message.make_query(
                "version.bind", "TXT", rdclass=dns.rdataclass.CH, id=0x1234
            ).to_wire(),
            dns.rcode.REFUSED,
            id="class CH",
        ),
        pytest.param(query_wire("cluster.local", "AXFR"), dns.rcode.REFUSED, id="AXFR"),
        pytest.param(query_wire("cluster.local", "IXFR"), dns.rcode.REFUSED, id="IXFR"),
        pytest.param(query_wire("cluster.local", "OPT"), dns.rcode.FORMERR, id="qtype OPT"),
    ],
)
def test_rejected(wire: bytes, rcode: dns.rcode.Rcode) -> None:
    reply = respond(wire, ZONE)
    assert reply.rejected
    assert reply.wire is not None
    response = dns.message.from_wire(reply.wire)
    assert response.id == 0x1234
    assert response.flags & dns.flags.QR
    assert response.rcode() == rcode
    assert response.answer == []
    assert response.opcode() == dns.opcode.from_flags(int.from_bytes(wire[2:4], "big"))


def test_normal_queries_are_not_rejected() -> None:
    for name in ("web.default.svc.cluster.local", "nope.cluster.local", "example.com"):
        assert respond(query_wire(name), ZONE).rejected is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_answer_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    check_never_raises(data)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_answer_never_raises_on_mutated_queries(data: st.DataObject) -> None:
    base = bytearray(
        dns.message.make_query(
            "_pg._tcp.db.default.svc.cluster.local", "SRV", use_edns=0, want_dnssec=True
        ).to_wire()
    )
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.integers(0, len(base) - 1))
        base[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    check_never_raises(bytes(base[:cut]) + data.draw(st.binary(max_size=20)))


def check_never_raises(data: bytes) -> None:
    wire = answer(data, ZONE)
    if wire is None:
        return
    response = dns.message.from_wire(wire)
    assert response.id == int.from_bytes(data[:2], "big")
    assert response.flags & dns.flags.QR


LABELS = st.sampled_from(
    ["web", "db", "db-0", "default", "shop", "svc", "pod", "cluster", "local", "_tcp", "_pg",
     "10-0-2-7", "other", "x", "in-addr", "arpa", "10", "96", "0", "localhost"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(LABELS, min_size=0, max_size=7),
    st.sampled_from(["A", "AAAA", "SRV", "PTR", "TXT", "SOA", "ANY", "MX"]),
)
def test_any_name_gets_a_consistent_answer(labels: list[str], qtype: str) -> None:
    name = ".".join(labels) + "."
    response = ask(name, qtype)
    assert response.rcode() in (NOERROR, NXDOMAIN)
    if response.rcode() == NXDOMAIN or not response.answer:
        assert response.answer == []
    in_ours = any(
        dns.name.from_text(name).is_subdomain(dns.name.from_text(apex))
        for apex in (DOMAIN, "in-addr.arpa", "localhost")
    )
    assert bool(response.flags & dns.flags.AA) == in_ours


def test_internal_errors_become_servfail(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Zone):
        __slots__ = ()

        def index(self) -> object:  # type: ignore[override]
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="meshctl.lab.dns"):
        reply = respond(query_wire(), Broken())
    assert reply.wire is not None
    assert dns.message.from_wire(reply.wire).rcode() == dns.rcode.SERVFAIL
    assert "internal error" in caplog.text


# --------------------------------------------------------------------------- drivers


def make_query(name: str, rdtype: str = "A") -> dns.message.QueryMessage:
    return dns.message.make_query(name, rdtype)


async def udp_exchange(
    client: trio.socket.SocketType, query: dns.message.Message
) -> dns.message.Message:
    await client.send(query.to_wire())
    response = dns.message.from_wire(await client.recv(65535))
    assert response.id == query.id
    return response


class Zones:
    """A get_zone that counts its calls and can be switched."""

    def __init__(self, zone: Zone = ZONE) -> None:
        self.zone = zone
        self.calls = 0

    def __call__(self) -> Zone:
        self.calls += 1
        return self.zone


async def test_udp_driver(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="meshctl.lab.dns")
    zones = Zones()
    with trio.fail_after(10):
        server = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await server.bind(("127.0.0.1", 0))
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_udp, server, zones)
            client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await client.connect(server.getsockname())
            client_port = client.getsockname()[1]

            response = await udp_exchange(client, make_query("web.default.svc.cluster.local"))
            assert records(response.answer) == {("web." + FQ, "A", "10.96.0.10")}

            # garbage and a response are dropped without a reply; the server keeps going
            await client.send(b"\x00\x01garbage")
            await client.send(dns.message.make_response(make_query("x.")).to_wire())
            # a malformed query with a readable header gets FORMERR
            await client.send(query_wire()[:20])
            response = dns.message.from_wire(await client.recv(65535))
            assert response.id == 0x1234 and response.rcode() == dns.rcode.FORMERR

            # the zone is read per query
            zones.zone = Zone(pods={"10.0.2.7": "other"})
            response = await udp_exchange(client, make_query("web.default.svc.cluster.local"))
            assert response.rcode() == NXDOMAIN
            response = await udp_exchange(client, make_query("10-0-2-7.other.pod.cluster.local"))
            assert response.answer
            assert zones.calls == 6

            # a big answer is truncated over UDP
            zones.zone = big_zone(50)
            response = await udp_exchange(client, make_query(BIG))
            assert response.flags & dns.flags.TC

            # an independent client (dnspython's) in a thread
            host, port = server.getsockname()
            zones.zone = ZONE
            response = await trio.to_thread.run_sync(
                lambda: dns.query.udp(
                    make_query("db-1.db.default.svc.cluster.local"), host, 5, port
                )
            )
            assert records(response.answer) == {("db-1.db." + FQ, "A", "10.0.1.6")}
            nursery.cancel_scope.cancel()
    rejections = [r.getMessage() for r in caplog.records if "DNS/UDP message" in r.getMessage()]
    assert len(rejections) == 3
    assert all(f"127.0.0.1:{client_port}" in line for line in rejections)
    assert any("short message" in line for line in rejections)
    assert any("response" in line for line in rejections)
    assert any("malformed" in line for line in rejections)


async def test_udp_driver_takes_a_stdlib_socket_and_survives_get_zone_failures() -> None:
    def broken_zone() -> Zone:
        raise RuntimeError("no zone yet")

    with trio.fail_after(10):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        address = server.getsockname()
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_udp, server, broken_zone)
            client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await client.connect(address)
            for _ in range(2):
                response = await udp_exchange(client, make_query("web.default.svc.cluster.local"))
                assert response.rcode() == dns.rcode.SERVFAIL
            nursery.cancel_scope.cancel()
        server.close()


async def read_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


async def tcp_read(stream: trio.abc.ReceiveStream) -> dns.message.Message:
    size = int.from_bytes(await read_exactly(stream, 2), "big")
    return dns.message.from_wire(await read_exactly(stream, size))


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


async def start_tcp(
    nursery: trio.Nursery,
    get_zone: Callable[[], Zone],
    *,
    listen: bool = True,
    stdlib: bool = False,
    idle_timeout: float = 5.0,
    max_connections: int = 100,
) -> tuple[str, int]:
    if stdlib:
        sock: socket.socket | trio.socket.SocketType = socket.socket()
        sock.bind(("127.0.0.1", 0))
        if listen:
            sock.listen()
    else:
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", 0))
        if listen:
            sock.listen()
    address: tuple[str, int] = sock.getsockname()
    await nursery.start(
        partial(serve_tcp, idle_timeout=idle_timeout, max_connections=max_connections),
        sock,
        get_zone,
    )
    return address


async def test_tcp_driver(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="meshctl.lab.dns")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            host, port = await start_tcp(nursery, Zones())
            stream = await trio.open_tcp_stream(host, port)
            # two pipelined queries in one write, then one split across writes
            q1 = make_query("web.default.svc.cluster.local")
            q2 = make_query("_pg._tcp.db.default.svc.cluster.local", "SRV")
            await stream.send_all(framed(q1.to_wire()) + framed(q2.to_wire()))
            r1, r2 = await tcp_read(stream), await tcp_read(stream)
            assert (r1.id, r2.id) == (q1.id, q2.id)
            assert records(r1.answer) == {("web." + FQ, "A", "10.96.0.10")}
            assert len(r2.answer[0]) == 2
            q3 = framed(make_query("db.default.svc.cluster.local").to_wire())
            await stream.send_all(q3[:1])
            await trio.sleep(0.05)
            await stream.send_all(q3[1:9])
            await trio.sleep(0.05)
            await stream.send_all(q3[9:])
            assert len((await tcp_read(stream)).answer[0]) == 2
            # a malformed query with a readable header gets FORMERR on the same connection
            await stream.send_all(framed(query_wire()[:20]))
            assert (await tcp_read(stream)).rcode() == dns.rcode.FORMERR
            # no truncation over TCP
            big = Zones(big_zone(300))
            host2, port2 = await start_tcp(nursery, big)
            big_stream = await trio.open_tcp_stream(host2, port2)
            await big_stream.send_all(framed(make_query(BIG).to_wire()))
            response = await tcp_read(big_stream)
            assert not response.flags & dns.flags.TC
            assert len(response.answer[0]) == 300
            await big_stream.aclose()
            # an unanswerable message closes the connection; the server keeps serving
            await stream.send_all(framed(b"\x00\x01junk"))
            assert await stream.receive_some(100) == b""
            await stream.aclose()
            response = await trio.to_thread.run_sync(
                lambda: dns.query.tcp(
                    make_query("db-0.db.default.svc.cluster.local"), host, 5, port
                )
            )
            assert records(response.answer) == {("db-0.db." + FQ, "A", "10.0.1.5")}
            nursery.cancel_scope.cancel()
    assert any("dropped DNS/TCP message from 127.0.0.1:" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("stdlib", [False, True])
@pytest.mark.parametrize("listen", [False, True])
async def test_tcp_driver_takes_sockets(stdlib: bool, listen: bool) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            host, port = await start_tcp(nursery, Zones(), listen=listen, stdlib=stdlib)
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(framed(make_query("web.default.svc.cluster.local").to_wire()))
            assert (await tcp_read(stream)).answer
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_tcp_listener_object() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            await nursery.start(serve_tcp, listener, Zones())
            host, port = listener.socket.getsockname()
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(framed(make_query("web.default.svc.cluster.local").to_wire()))
            assert (await tcp_read(stream)).answer
            nursery.cancel_scope.cancel()


async def test_stalled_tcp_clients_are_closed_without_affecting_others() -> None:
    idle = 0.3
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            host, port = await start_tcp(nursery, Zones(), idle_timeout=idle)
            silent = await trio.open_tcp_stream(host, port)
            partial = await trio.open_tcp_stream(host, port)
            await partial.send_all(b"\x00\x40abc")  # promises 64 bytes, sends 3
            liar = await trio.open_tcp_stream(host, port)
            await liar.send_all(b"\xff\xff" + b"\x00" * 100)  # garbage length, then stalls
            started = trio.current_time()
            good = await trio.open_tcp_stream(host, port)
            for _ in range(3):
                await good.send_all(framed(make_query("web.default.svc.cluster.local").to_wire()))
                assert (await tcp_read(good)).answer
                await trio.sleep(idle / 3)  # active clients stay open
            for stream in (silent, partial, liar):
                assert await stream.receive_some(100) == b""
            assert trio.current_time() - started < idle * 5
            await good.send_all(framed(make_query("db.default.svc.cluster.local").to_wire()))
            assert (await tcp_read(good)).answer
            nursery.cancel_scope.cancel()


async def test_tcp_connection_limit() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            host, port = await start_tcp(nursery, Zones(), max_connections=2, idle_timeout=5)
            first = await trio.open_tcp_stream(host, port)
            second = await trio.open_tcp_stream(host, port)
            for stream in (first, second):  # make sure both are being served
                await stream.send_all(framed(make_query("web.default.svc.cluster.local").to_wire()))
                assert (await tcp_read(stream)).answer
            third = await trio.open_tcp_stream(host, port)
            try:
                assert await third.receive_some(100) == b""
            except trio.BrokenResourceError:
                pass  # reset instead of closed: refused either way
            await first.aclose()
            await trio.sleep(0.05)
            fourth = await trio.open_tcp_stream(host, port)
            await fourth.send_all(framed(make_query("web.default.svc.cluster.local").to_wire()))
            assert (await tcp_read(fourth)).answer
            nursery.cancel_scope.cancel()
