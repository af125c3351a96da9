"""The copy loop: bytes both ways between two trio streams until both directions end,
propagating half-closes, counting bytes. One loop serves every transport (TCP now, HBONE
tunnels later) because each is a ``trio.abc.HalfCloseableStream``.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

CHUNK = 1024 * 1024


@dataclass(slots=True)
class Totals:
    a_to_b: int = 0
    b_to_a: int = 0
    broken: str = ""  # why the copy ended abnormally (a reset on either side), else ""


async def splice(a: trio.abc.HalfCloseableStream, b: trio.abc.HalfCloseableStream) -> Totals:
    """Copy a→b and b→a concurrently; when one side ends its sending, send EOF to the other.
    A reset on either side ends both directions. Returns the byte counts."""
    totals = Totals()

    async def pump(src: trio.abc.HalfCloseableStream, dst: trio.abc.HalfCloseableStream, forward: bool) -> None:
        try:
            while True:
                data = await src.receive_some(CHUNK)
                if not data:
                    break
                await dst.send_all(data)
                if forward:
                    totals.a_to_b += len(data)
                else:
                    totals.b_to_a += len(data)
            try:
                await dst.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            totals.broken = totals.broken or (str(exc) or exc.__class__.__name__)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, a, b, True)
        nursery.start_soon(pump, b, a, False)
    return totals
