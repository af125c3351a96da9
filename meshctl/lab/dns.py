"""The lab's cluster DNS: what CoreDNS's ``kubernetes`` plugin does in a real cluster.

This module owns answering DNS queries for the lab's cluster domain, following the
Kubernetes DNS-based service discovery specification (schema 1.1.0), from an immutable
:class:`Zone` snapshot that the lab daemon replaces as the cluster changes:

* ``<svc>.<ns>.svc.<domain>``: A (or AAAA) of the ClusterIP; for a headless service one
  record per ready endpoint, and ``<hostname>.<svc>.<ns>.svc.<domain>`` per endpoint
  (the hostname is the pod name, or the dashed IP when the pod name is not a DNS label);
* ``_<port>._<proto>.<svc>.<ns>.svc.<domain>``: SRV for named ports (targets in the
  additional section);
* ``<a-b-c-d>.<ns>.pod.<domain>``: A of a pod IP that exists in that namespace;
* ``d.c.b.a.in-addr.arpa`` (and ``ip6.arpa``): PTR of ClusterIPs, headless endpoints and
  pods;
* ``dns-version.<domain>``: TXT with the schema version; ``<domain>``: SOA;
* ``localhost.``: 127.0.0.1.  Every other name gets NXDOMAIN: the lab has no upstream.

It is split into a sans-I/O core (:func:`respond` / :func:`answer`: wire bytes in, wire
bytes out, never raising) and two thin trio drivers (:func:`serve_udp`,
:func:`serve_tcp`) that serve on sockets the caller has already created and bound (the
lab binds them inside other network namespaces).  It does not own the sockets, the
pods' ``resolv.conf``, or any forwarding.  Messages are parsed and built with dnspython.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import socket
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.reversename
import dns.rrset
import trio

__all__ = [
    "EDNS_PAYLOAD_SIZE",
    "SCHEMA_VERSION",
    "TCP_IDLE_TIMEOUT",
    "TCP_MAX_CONNECTIONS",
    "Reply",
    "ServiceRecord",
    "Zone",
    "answer",
    "respond",
    "serve_tcp",
    "serve_udp",
]

log = logging.getLogger("meshctl.lab.dns")

SCHEMA_VERSION = "1.1.0"
"""The Kubernetes DNS schema version served as TXT at ``dns-version.<domain>``."""

EDNS_PAYLOAD_SIZE = 1232
"""The largest UDP response we send to an EDNS client (and advertise in our OPT)."""

TCP_IDLE_TIMEOUT = 5.0
"""Seconds a TCP client may take to send a whole query (or to read a reply) before it is
closed; this bounds idle, stalled and garbage-sending connections."""

TCP_MAX_CONNECTIONS = 256
"""Concurrent TCP connections served; further ones are closed at once."""

UDP_RECEIVE_SIZE = 65535
"""Receive buffer for one UDP datagram (the largest a datagram can be)."""

_HEADER_SIZE = 12
_DEFAULT_UDP_SIZE = 512
_MAX_MESSAGE_SIZE = 65535
_SOA_REFRESH, _SOA_RETRY, _SOA_EXPIRE = 7200, 1800, 86400
_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_IN = dns.rdataclass.IN
_REVERSE_APEXES = (dns.reversename.ipv4_reverse_domain, dns.reversename.ipv6_reverse_domain)
_LOCALHOST = dns.name.from_text("localhost.")
_SOCKET_GONE_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
_ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """One Service as cluster DNS sees it."""

    name: str
    namespace: str
    cluster_ip: str | None
    """The ClusterIP; ``None`` for a headless service."""
    endpoints: tuple[tuple[str, str], ...]
    """``(pod IP, pod name)`` of the ready endpoints (used for headless answers)."""
    ports: tuple[tuple[str | None, str, int], ...] = ()
    """``(port name, protocol lower-case e.g. "tcp", port)``; named ports get SRV records."""


@dataclass(frozen=True, slots=True)
class Zone:
    """An immutable snapshot of what cluster DNS serves.

    The mappings must not be mutated once the zone is handed to the server: the zone
    indexes them on first use and keeps the index.
    """

    domain: str = "cluster.local"
    services: Mapping[tuple[str, str], ServiceRecord] = field(default_factory=dict)
    """Services keyed by ``(namespace, name)``."""
    pods: Mapping[str, str] = field(default_factory=dict)
    """Pod IP -> namespace."""
    ttl: int = 5
    _index: _Index | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            name = dns.name.from_text(self.domain)
        except dns.exception.DNSException as exc:
            raise ValueError(f"invalid cluster domain {self.domain!r}: {exc}") from exc
        if name == dns.name.root:
            raise ValueError("the cluster domain cannot be the root")
        if not 0 <= self.ttl <= 0x7FFFFFFF:
            raise ValueError(f"invalid TTL {self.ttl}")

    def index(self) -> _Index:
        """The lookup index of this snapshot (built on first use)."""
        index = self._index
        if index is None:
            index = _Index.build(self)
            object.__setattr__(self, "_index", index)
        return index


# --------------------------------------------------------------------------- index

_Node = dict[dns.rdatatype.RdataType, list[dns.rdata.Rdata]]


@dataclass(slots=True)
class _Index:
    """Every owner name of a zone snapshot, with its records.

    Empty non-terminals (names with no records but with names below them) are present
    with no records, so they answer NODATA and not NXDOMAIN (RFC 8020).
    """

    ttl: int
    apexes: tuple[dns.name.Name, ...]  # most specific first
    soa: dict[dns.name.Name, dns.rrset.RRset]
    nodes: dict[dns.name.Name, _Node]

    @classmethod
    def build(cls, zone: Zone) -> _Index:
        domain = dns.name.from_text(zone.domain).canonicalize()
        serial = zlib.crc32(
            repr((sorted(zone.services.items()), sorted(zone.pods.items()))).encode()
        )
        mname = dns.name.Name((b"ns", b"dns", *domain.labels))
        rname = dns.name.Name((b"hostmaster", *domain.labels))
        apexes = tuple(sorted({domain, *_REVERSE_APEXES, _LOCALHOST}, key=lambda n: -len(n.labels)))
        index = cls(ttl=zone.ttl, apexes=apexes, soa={}, nodes={})
        for apex in (domain, *_REVERSE_APEXES):
            soa = _soa(mname, rname, serial, zone.ttl)
            index.soa[apex] = dns.rrset.from_rdata_list(apex, zone.ttl, [soa])
            index._add(apex, soa)
        index._add(_LOCALHOST, _address_rdata(ipaddress.IPv4Address("127.0.0.1")))
        index._add(
            _sub(domain, "dns-version"),
            dns.rdtypes.ANY.TXT.TXT(_IN, dns.rdatatype.TXT, [SCHEMA_VERSION]),
        )
        svc_domain, pod_domain = _sub(domain, "svc"), _sub(domain, "pod")
        index._add_name(svc_domain)
        index._add_name(pod_domain)

        namespaces: set[str] = set()
        ptrs: dict[dns.name.Name, list[dns.name.Name]] = {}
        for record in zone.services.values():
            svc, ns = _label(record.name), _label(record.namespace)
            if svc is None or ns is None:
                log.debug(
                    "not serving service %s/%s: not DNS labels", record.namespace, record.name
                )
                continue
            namespaces.add(ns)
            svc_name = _sub(svc_domain, ns, svc)
            index._add_name(svc_name)
            # (target, address) pairs that SRV records point at
            targets: list[dns.name.Name] = []
            cluster_ip = _address(record.cluster_ip)
            if record.cluster_ip not in (None, "", "None") and cluster_ip is None:
                log.debug("service %s/%s: bad ClusterIP %r", ns, svc, record.cluster_ip)
            elif cluster_ip is not None:
                index._add(svc_name, _address_rdata(cluster_ip))
                ptrs.setdefault(_reverse(cluster_ip), []).append(svc_name)
                targets.append(svc_name)
            else:
                seen: set[str] = set()
                for ip_text, pod_name in record.endpoints:
                    ip = _address(ip_text)
                    if ip is None or ip.compressed in seen:
                        continue
                    seen.add(ip.compressed)
                    host = _label(pod_name) or _dashed(ip)
                    host_name = _sub(svc_name, host)
                    index._add(svc_name, _address_rdata(ip))
                    index._add(host_name, _address_rdata(ip))
                    ptrs.setdefault(_reverse(ip), []).append(host_name)
                    targets.append(host_name)
            for port_name, protocol, port in record.ports:
                if port_name is None:
                    continue
                pname, proto = _label(port_name), _label(protocol)
                if pname is None or proto is None or not 0 <= port <= 0xFFFF:
                    log.debug("service %s/%s: not serving port %r", ns, svc, port_name)
                    continue
                srv_name = _sub(svc_name, "_" + proto, "_" + pname)
                index._add_name(srv_name)
                for target in targets:
                    index._add(srv_name, _srv(port, target))

        for ip_text, pod_ns in zone.pods.items():
            ip, ns = _address(ip_text), _label(pod_ns)
            if ip is None or ns is None:
                log.debug("not serving pod %s in namespace %r", ip_text, pod_ns)
                continue
            namespaces.add(ns)
            pod_owner = _sub(pod_domain, ns, _dashed(ip))
            index._add(pod_owner, _address_rdata(ip))
            # A headless endpoint's PTR (the specification's MUST) wins over the pod's.
            ptrs.setdefault(_reverse(ip), [pod_owner])

        for ns in namespaces:
            index._add_name(_sub(svc_domain, ns))
            index._add_name(_sub(pod_domain, ns))
        for reverse, names in ptrs.items():
            for target in dict.fromkeys(names):
                index._add(reverse, _ptr(target))
        return index

    def _add_name(self, name: dns.name.Name) -> _Node:
        """Add ``name`` and its ancestors up to its apex (with no records)."""
        node = self.nodes.get(name)
        if node is not None:
            return node
        node = self.nodes[name] = {}
        apex = self.apex_of(name)
        parent = name
        while apex is not None and parent != apex:
            parent = parent.parent()
            if parent in self.nodes:
                break
            self.nodes[parent] = {}
        return node

    def _add(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> None:
        rdatas = self._add_name(name).setdefault(rdata.rdtype, [])
        if rdata not in rdatas:
            rdatas.append(rdata)

    def apex_of(self, name: dns.name.Name) -> dns.name.Name | None:
        for apex in self.apexes:
            if name.is_subdomain(apex):
                return apex
        return None


def _label(text: str) -> str | None:
    """``text`` lower-cased if it is usable as one DNS label, else ``None``."""
    lowered = text.lower()
    return lowered if _LABEL_RE.match(lowered) else None


def _sub(parent: dns.name.Name, *labels: str) -> dns.name.Name:
    """The name ``labels[-1]. ... .labels[0].parent`` (labels listed parent-first)."""
    return dns.name.Name((*(lab.encode() for lab in reversed(labels)), *parent.labels))


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# dnspython's rdata constructors are untyped: these wrappers are the only callers.


def _address_rdata(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> dns.rdata.Rdata:
    if ip.version == 4:
        return dns.rdtypes.IN.A.A(_IN, dns.rdatatype.A, ip.compressed)  # type: ignore[no-untyped-call]
    return dns.rdtypes.IN.AAAA.AAAA(_IN, dns.rdatatype.AAAA, ip.compressed)  # type: ignore[no-untyped-call]


def _srv(port: int, target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.IN.SRV.SRV(_IN, dns.rdatatype.SRV, 0, 100, port, target)  # type: ignore[no-untyped-call]


def _ptr(target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.PTR.PTR(_IN, dns.rdatatype.PTR, target)  # type: ignore[no-untyped-call]


def _soa(mname: dns.name.Name, rname: dns.name.Name, serial: int, ttl: int) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.SOA.SOA(  # type: ignore[no-untyped-call]
        _IN, dns.rdatatype.SOA, mname, rname, serial, _SOA_REFRESH, _SOA_RETRY, _SOA_EXPIRE, ttl
    )


def _dashed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The pod-name form of an IP: ``10-1-2-3`` (IPv6: colons become dashes)."""
    return ip.compressed.replace(".", "-").replace(":", "-")


def _reverse(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> dns.name.Name:
    return dns.reversename.from_address(ip.compressed)


# ---------------------------------------------------------------------------- core


@dataclass(frozen=True, slots=True)
class Reply:
    """What to do with one received message."""

    wire: bytes | None
    """The response to send, or ``None`` to drop the message."""
    rejected: str | None = None
    """Why the message was rejected (answered with an error rcode, or dropped); ``None``
    for a query that was answered normally (including NXDOMAIN and NODATA)."""


def answer(
    query: bytes, zone: Zone, *, max_udp_size: int = _DEFAULT_UDP_SIZE, tcp: bool = False
) -> bytes | None:
    """The response to the DNS message ``query``, or ``None`` to drop it; never raises.

    ``max_udp_size`` is the UDP size limit for a client without EDNS; an EDNS client's
    advertised size is used instead (at most :data:`EDNS_PAYLOAD_SIZE`, at least
    ``max_udp_size``).  A response that does not fit is sent truncated (TC set).  With
    ``tcp`` the limit is 65535 bytes (the caller adds the 2-byte length prefix).
    """
    return respond(query, zone, max_udp_size=max_udp_size, tcp=tcp).wire


def respond(
    query: bytes, zone: Zone, *, max_udp_size: int = _DEFAULT_UDP_SIZE, tcp: bool = False
) -> Reply:
    """Like :func:`answer`, also saying why a message was rejected (for logging)."""
    try:
        return _respond(query, zone, max_udp_size=max_udp_size, tcp=tcp)
    except Exception:
        # A bug here must not take the server down: log it and answer SERVFAIL.
        log.exception("internal error answering a DNS query")
        if len(query) < _HEADER_SIZE or query[2] & 0x80:
            return Reply(None, "internal error")
        return Reply(_header_reply(query, dns.rcode.SERVFAIL), "internal error")


def _respond(query: bytes, zone: Zone, *, max_udp_size: int, tcp: bool) -> Reply:
    if len(query) < _HEADER_SIZE:
        return Reply(None, f"short message ({len(query)} bytes)")
    flags = int.from_bytes(query[2:4], "big")
    if flags & dns.flags.QR:
        # Answering responses invites loops between servers: drop them like CoreDNS.
        return Reply(None, "message is a response (QR set)")
    opcode = (flags >> 11) & 0xF
    if opcode != dns.opcode.QUERY:
        return Reply(_header_reply(query, dns.rcode.NOTIMP), f"opcode {opcode} not implemented")
    qdcount, ancount, nscount, arcount = (
        int.from_bytes(query[i : i + 2], "big") for i in range(4, 12, 2)
    )
    if qdcount != 1:
        return Reply(_header_reply(query, dns.rcode.FORMERR), f"{qdcount} questions")
    if ancount > 1 or nscount > 1 or arcount > 2:
        return Reply(
            _header_reply(query, dns.rcode.FORMERR),
            f"unexpected records (an={ancount} ns={nscount} ar={arcount})",
        )
    try:
        message = dns.message.from_wire(query)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a malformed message
        return Reply(_header_reply(query, dns.rcode.FORMERR), f"malformed: {_describe(exc)}")
    if len(message.question) != 1:  # pragma: no cover - the header said 1
        return Reply(_header_reply(query, dns.rcode.FORMERR), "not one question")

    response = dns.message.make_response(message, our_payload=EDNS_PAYLOAD_SIZE)
    if message.edns >= 0:
        response.ednsflags |= message.ednsflags & dns.flags.DO  # RFC 3225: copy DO
    if tcp:
        limit = _MAX_MESSAGE_SIZE
    elif message.edns >= 0:
        limit = max(max_udp_size, min(message.payload, EDNS_PAYLOAD_SIZE))
    else:
        limit = max_udp_size

    question = message.question[0]
    rejected: str | None = None
    if message.edns > 0:
        response.set_rcode(dns.rcode.BADVERS)
        rejected = f"EDNS version {message.edns}"
    elif question.rdclass != _IN:
        response.set_rcode(dns.rcode.REFUSED)
        rejected = f"class {dns.rdataclass.to_text(question.rdclass)}"
    elif question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        response.set_rcode(dns.rcode.REFUSED)
        rejected = "zone transfers are not offered"
    elif dns.rdatatype.is_metatype(question.rdtype) and question.rdtype != dns.rdatatype.ANY:
        response.set_rcode(dns.rcode.FORMERR)
        rejected = f"meta type {dns.rdatatype.to_text(question.rdtype)} in question"
    else:
        _fill(response, question.name, question.rdtype, zone.index())
    return Reply(response.to_wire(max_size=limit, prefer_truncation=True), rejected)


def _fill(
    response: dns.message.Message,
    qname: dns.name.Name,
    qtype: dns.rdatatype.RdataType,
    index: _Index,
) -> None:
    """Put the answer to ``qname``/``qtype`` into ``response``."""
    apex = index.apex_of(qname)
    if apex is None:
        # Not ours, and the lab has no upstream to forward to.
        response.set_rcode(dns.rcode.NXDOMAIN)
        return
    response.flags |= dns.flags.AA
    node = index.nodes.get(qname)
    if node is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
    else:
        rdtypes: Iterable[dns.rdatatype.RdataType] = (
            sorted(node) if qtype == dns.rdatatype.ANY else [qtype] if qtype in node else []
        )
        for rdtype in rdtypes:
            # The question's spelling of the name (case and all) owns the answer.
            response.answer.append(dns.rrset.from_rdata_list(qname, index.ttl, node[rdtype]))
            if rdtype == dns.rdatatype.SRV:
                _add_srv_targets(response, node[rdtype], index)
        if response.answer:
            return
    soa = index.soa.get(apex)
    if soa is not None:
        response.authority.append(soa)


def _add_srv_targets(
    response: dns.message.Message, srvs: list[dns.rdata.Rdata], index: _Index
) -> None:
    for srv in srvs:
        assert isinstance(srv, dns.rdtypes.IN.SRV.SRV)
        target = index.nodes.get(srv.target, {})
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            if rdtype in target:
                rrset = dns.rrset.from_rdata_list(srv.target, index.ttl, target[rdtype])
                if rrset not in response.additional:
                    response.additional.append(rrset)


def _header_reply(query: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A bare error response built from the query's header alone (no question)."""
    flags = int.from_bytes(query[2:4], "big")
    response = dns.message.Message(id=int.from_bytes(query[0:2], "big"))
    response.flags = dns.flags.QR | (flags & (dns.flags.RD | 0x7800))  # RD and opcode
    response.set_rcode(rcode)
    return response.to_wire()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# -------------------------------------------------------------------------- drivers


def _serve_one(
    data: bytes, get_zone: Callable[[], Zone], peer: str, transport: str
) -> bytes | None:
    """Answer one message from ``peer``, logging rejections; never raises."""
    try:
        zone = get_zone()
    except Exception:
        log.exception("cannot get the cluster DNS zone; answering SERVFAIL to %s", peer)
        if len(data) < _HEADER_SIZE or data[2] & 0x80:
            return None
        return _header_reply(data, dns.rcode.SERVFAIL)
    reply = respond(data, zone, tcp=transport == "TCP")
    if reply.rejected is not None:
        outcome = "dropped" if reply.wire is None else "rejected"
        log.debug("%s DNS/%s message from %s: %s", outcome, transport, peer, reply.rejected)
    return reply.wire


def _format_peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


async def serve_udp(
    sock: trio.socket.SocketType | socket.socket,
    get_zone: Callable[[], Zone],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer DNS over UDP on the bound datagram socket ``sock`` until cancelled.

    ``sock`` is a trio socket or a stdlib one (wrapped here; trio makes it non-blocking).
    ``get_zone`` is called for every query.  Bad packets and send failures are logged
    and skipped; only the socket going away ends the loop.
    """
    if isinstance(sock, socket.socket):
        sock = trio.socket.from_stdlib_socket(sock)
    task_status.started()
    while True:
        try:
            data, address = await sock.recvfrom(UDP_RECEIVE_SIZE)
        except OSError as exc:
            if exc.errno in _SOCKET_GONE_ERRNOS:
                raise
            log.debug("DNS/UDP receive error (continuing): %s", exc)
            continue
        peer = _format_peer(address)
        wire = _serve_one(data, get_zone, peer, "UDP")
        if wire is None:
            continue
        try:
            await sock.sendto(wire, address)
        except OSError as exc:
            if exc.errno in _SOCKET_GONE_ERRNOS:
                raise
            log.debug("cannot send DNS/UDP response to %s: %s", peer, exc)


async def serve_tcp(
    listener: trio.abc.Listener[trio.SocketStream] | trio.socket.SocketType | socket.socket,
    get_zone: Callable[[], Zone],
    *,
    idle_timeout: float = TCP_IDLE_TIMEOUT,
    max_connections: int = TCP_MAX_CONNECTIONS,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer DNS over TCP (2-byte length framing, RFC 7766) until cancelled.

    ``listener`` is a :class:`trio.SocketListener` or a bound stream socket, trio or
    stdlib (listened on here if the caller has not).  Each connection may carry many queries; one whose
    client takes longer than ``idle_timeout`` seconds to send a query (or to take a
    reply) is closed, as is one sending an unanswerable message.
    """
    if isinstance(listener, socket.socket):
        listener = trio.socket.from_stdlib_socket(listener)
    if isinstance(listener, trio.socket.SocketType):
        if not listener.getsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_ACCEPTCONN):
            listener.listen(max_connections)
        listener = trio.SocketListener(listener)
    active = 0

    async def serve_client(stream: trio.SocketStream, peer: str) -> None:
        nonlocal active
        try:
            await _serve_tcp_client(stream, get_zone, peer, idle_timeout)
        finally:
            active -= 1

    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRNOS:
                    raise
                log.warning("DNS/TCP accept failed (%s); retrying shortly", exc)
                await trio.sleep(0.1)
                continue
            peer = _stream_peer(stream)
            if active >= max_connections:
                log.debug("dropped DNS/TCP connection from %s: %d connections open", peer, active)
                await trio.aclose_forcefully(stream)
                continue
            active += 1
            nursery.start_soon(serve_client, stream, peer)


def _stream_peer(stream: trio.SocketStream) -> str:
    try:
        return _format_peer(stream.socket.getpeername())
    except OSError:
        return "unknown peer"


class _EndOfStream(Exception):
    """The client closed the connection in the middle of a message."""


async def _serve_tcp_client(
    stream: trio.SocketStream, get_zone: Callable[[], Zone], peer: str, idle_timeout: float
) -> None:
    buffer = bytearray()
    try:
        while True:
            with trio.move_on_after(idle_timeout) as scope:
                data = await _receive_message(stream, buffer)
            if scope.cancelled_caught:
                log.debug(
                    "closed DNS/TCP connection from %s: no complete query in %gs",
                    peer,
                    idle_timeout,
                )
                return
            if data is None:
                return
            wire = _serve_one(data, get_zone, peer, "TCP")
            if wire is None:
                log.debug("closed DNS/TCP connection from %s after an unanswerable message", peer)
                return
            with trio.move_on_after(idle_timeout) as scope:
                await stream.send_all(len(wire).to_bytes(2, "big") + wire)
            if scope.cancelled_caught:
                log.debug(
                    "closed DNS/TCP connection from %s: reply not taken in %gs", peer, idle_timeout
                )
                return
    except (_EndOfStream, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        log.debug("closed DNS/TCP connection from %s: %s", peer, _describe(exc))
    finally:
        await trio.aclose_forcefully(stream)


async def _receive_message(stream: trio.SocketStream, buffer: bytearray) -> bytes | None:
    """The next length-prefixed message, or ``None`` at a clean end of stream."""
    header = await _receive_exactly(stream, buffer, 2)
    if header is None:
        return None
    message = await _receive_exactly(stream, buffer, int.from_bytes(header, "big"))
    if message is None:
        raise _EndOfStream("end of stream after a length prefix")
    return message


async def _receive_exactly(stream: trio.SocketStream, buffer: bytearray, size: int) -> bytes | None:
    while len(buffer) < size:
        chunk = await stream.receive_some(_MAX_MESSAGE_SIZE)
        if not chunk:
            if buffer:
                raise _EndOfStream("end of stream in the middle of a message")
            return None
        buffer += chunk
    data = bytes(buffer[:size])
    del buffer[:size]
    return data
