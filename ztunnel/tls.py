"""TLS for HBONE as a trio stream over a non-blocking ``ssl.SSLSocket`` (OpenSSL reads and
writes the socket itself), instead of ``trio.SSLStream``'s memory BIOs.

Why: ``SSL_read`` returns one TLS record (≤16 KiB) per call. :meth:`TlsStream.receive_some`
keeps reading records while the socket has them, so the HTTP/2 layer sees up to 1 MiB per
call instead of one record — the per-call cost of h2 and trio is paid far less often on bulk
transfers — and no bytes are copied through Python-level BIOs.

Errors: a failed handshake raises :class:`trio.BrokenResourceError` whose ``__cause__`` is the
``ssl.SSLError`` (as ``trio.SSLStream`` does), so callers read the reason the same way.
"""

from __future__ import annotations

import socket
import ssl

import trio

READ_CHUNK = 1024 * 1024


class TlsStream(trio.abc.Stream):
    """A TLS connection after its handshake (see :func:`handshake`)."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._closed = False

    # what peer_identity() and the ALPN check need
    def getpeercert(self, binary_form: bool = False) -> object:
        return self._sock.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        return self._sock.selected_alpn_protocol()

    def version(self) -> str | None:
        return self._sock.version()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        limit = max_bytes or READ_CHUNK
        sock = self._sock
        while True:
            if self._closed:
                raise trio.ClosedResourceError("TLS stream closed")
            try:
                first = sock.recv(limit)
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(sock)
                continue
            except ssl.SSLZeroReturnError:
                return b""
            except (ssl.SSLError, OSError) as exc:
                raise trio.BrokenResourceError(f"TLS read failed: {exc}") from exc
            break
        if not first or len(first) >= limit:
            await trio.lowlevel.checkpoint()
            return first
        # more records already here? take them now (one h2 call for many records)
        parts = [first]
        total = len(first)
        while total < limit:
            try:
                more = sock.recv(limit - total)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLZeroReturnError):
                break
            except (ssl.SSLError, OSError):
                break  # reported on the next call
            if not more:
                break
            parts.append(more)
            total += len(more)
        await trio.lowlevel.checkpoint()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        sock = self._sock
        while view:
            if self._closed:
                raise trio.ClosedResourceError("TLS stream closed")
            try:
                n = sock.send(view)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(sock)
                continue  # OpenSSL wants the same buffer again
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except (ssl.SSLError, OSError) as exc:
                raise trio.BrokenResourceError(f"TLS write failed: {exc}") from exc
            view = view[n:]
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._sock)

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        await trio.lowlevel.checkpoint()


async def handshake(stream: trio.SocketStream, ctx: ssl.SSLContext, *, server: bool) -> TlsStream:
    """Take over ``stream``'s socket and run the TLS handshake on it (no SNI on the client).
    Raises :class:`trio.BrokenResourceError` (cause: the ``ssl.SSLError``) when it fails; the
    socket is closed then."""
    raw = socket.socket(fileno=stream.socket.detach())
    raw.setblocking(False)
    try:
        sock = ctx.wrap_socket(raw, server_side=server, do_handshake_on_connect=False, server_hostname=None)
    except BaseException:
        raw.close()
        raise
    try:
        while True:
            try:
                sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(sock)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(sock)
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
    except BaseException:
        trio.lowlevel.notify_closing(sock)
        sock.close()
        raise
    return TlsStream(sock)
