"""Every privileged socket option ztunnel uses, in one place: transparent listeners (the
capture hands them connections addressed elsewhere; ``getsockname()`` is the original
destination) and sockets that connect with a client's own source address.

Raises :class:`SocketSetupError` naming the address and the kernel's reason (usually a
missing CAP_NET_ADMIN, or the local routing for the ztunnel mark not being installed).
"""

from __future__ import annotations

import errno
import logging
import resource
import socket

import trio

LISTEN_BACKLOG = 4096
ZTUNNEL_MARK = 0x539
CONNECT_TIMEOUT_S = 10.0


class SocketSetupError(OSError):
    """A socket could not be set up; the message says which and why."""


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard limit, as Istio's ztunnel does at start: every
    proxied connection holds two sockets, and a 1024 soft limit would cap a node at ~500
    connections. Returns (before, after); logs when it changed or could not."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        logging.getLogger(__name__).warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
        return soft, soft
    logging.getLogger(__name__).info("open-files limit raised from %d to %d", soft, hard)
    return soft, hard


def transparent_listener(port: int, host: str = "0.0.0.0") -> trio.socket.SocketType:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, socket.IP_TRANSPARENT, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise SocketSetupError(
            exc.errno, f"transparent listener on {host}:{port}: {exc.strerror} (needs CAP_NET_ADMIN)"
        ) from None
    sock.setblocking(False)
    return trio.socket.from_stdlib_socket(sock)


async def connect_as(source_ip: str | None, destination: tuple[str, int]) -> trio.SocketStream:
    """A TCP connection to ``destination``; with ``source_ip`` it leaves with that address (the
    original client's). The socket carries no mark: the capture path marks the *replies* so they
    route locally to this socket, while its own packets must follow the normal routes."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source_ip is not None:
            try:
                await sock.bind((source_ip, 0))  # an address of this host (tests on loopback)
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                sock.setsockopt(socket.SOL_IP, socket.IP_TRANSPARENT, 1)  # a pod's address
                await sock.bind((source_ip, 0))
        await sock.connect(destination)
    except OSError:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def connect_upstream(source_ip: str | None, destination: tuple[str, int]) -> trio.SocketStream:
    """:func:`connect_as` within :data:`CONNECT_TIMEOUT_S`; raises ``OSError`` or
    ``trio.TooSlowError`` (describe either with :func:`failure_reason`)."""
    with trio.fail_after(CONNECT_TIMEOUT_S):
        return await connect_as(source_ip, destination)


def failure_reason(exc: BaseException) -> str:
    """Why a connection could not be made, for logs and access-log ``error=`` fields."""
    if isinstance(exc, trio.TooSlowError):
        return f"timed out after {CONNECT_TIMEOUT_S:g} s"
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        return f"TLS: {exc.__cause__}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__


def original_destination(stream: trio.SocketStream) -> tuple[str, int]:
    host, port = stream.socket.getsockname()[:2]
    return str(host), int(port)


def peer(stream: trio.SocketStream) -> tuple[str, int]:
    host, port = stream.socket.getpeername()[:2]
    return str(host), int(port)
