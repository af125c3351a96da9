"""ztunnel's small HTTP endpoints (h11, one request per connection): the admin endpoint
(localhost:15000 in the node's namespace, as Istio's: ``/config_dump`` — built by
:mod:`ztunnel.dump`: workloads, services, policies, certificates (never keys), connections — and
``/healthz/ready``) and the metrics endpoint
(:15020 ``/metrics`` in Prometheus' text format, ``/healthz/ready``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import h11
import trio

log = logging.getLogger("ztunnel.admin")

MAX_REQUEST_BYTES = 16 * 1024
READ_TIMEOUT_S = 5.0


Route = Callable[[], tuple[int, str, bytes]]


def json_route(produce: Callable[[], dict[str, Any]]) -> Route:
    return lambda: (200, "application/json", json.dumps(produce(), indent=2, sort_keys=True, default=str).encode())


def ready_route(ready: Callable[[], bool]) -> Route:
    return lambda: (200, "application/json", b'{"ready": true}') if ready() else (503, "application/json", b'{"ready": false}')


async def serve(
    listener: trio.SocketListener, routes: dict[str, Route],
    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
            request = None
            with trio.move_on_after(READ_TIMEOUT_S):
                while request is None:
                    try:
                        event = conn.next_event()
                    except h11.RemoteProtocolError as exc:
                        await _send(stream, conn, 400, "text/plain", f"bad request: {exc}\n".encode())
                        return
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(4096)
                        conn.receive_data(data)
                        if not data:
                            return
                    elif isinstance(event, h11.Request):
                        request = event
            if request is None:
                return
            path = request.target.decode(errors="replace").split("?", 1)[0]
            route = routes.get(path)
            if request.method not in (b"GET", b"HEAD"):
                await _send(stream, conn, 405, "text/plain", b"only GET\n")
            elif route is None:
                known = ", ".join(sorted(routes))
                await _send(stream, conn, 404, "text/plain", f"no such endpoint {path}; try {known}\n".encode())
            else:
                await _send(stream, conn, *route())

    task_status.started()
    await trio.serve_listeners(handle, [listener])


async def _send(stream: trio.SocketStream, conn: h11.Connection, status: int, content_type: str, data: bytes) -> None:
    headers = [("content-type", content_type), ("content-length", str(len(data))), ("connection", "close")]
    try:
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
        await stream.send_all(conn.send(h11.Data(data=data)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError) as exc:
        log.debug("admin client went away: %s", exc)
