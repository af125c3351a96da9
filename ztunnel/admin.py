"""ztunnel's admin endpoint (localhost:15000 in the node's namespace, as Istio's): ``GET
/config_dump`` (JSON: config version, local workloads, certificates — never keys) and
``GET /healthz/ready``. HTTP/1.1 with h11; one request per connection.
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


async def serve(
    listener: trio.SocketListener, dump: Callable[[], dict[str, Any]], ready: Callable[[], bool],
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
                        await _send(stream, conn, 400, {"error": f"bad request: {exc}"})
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
            if request.method not in (b"GET", b"HEAD"):
                await _send(stream, conn, 405, {"error": "only GET"})
            elif path == "/config_dump":
                await _send(stream, conn, 200, dump())
            elif path == "/healthz/ready":
                ok = ready()
                await _send(stream, conn, 200 if ok else 503, {"ready": ok})
            else:
                await _send(stream, conn, 404, {"error": f"no such endpoint {path}; try /config_dump"})

    task_status.started()
    await trio.serve_listeners(handle, [listener])


async def _send(stream: trio.SocketStream, conn: h11.Connection, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body, indent=2, sort_keys=True, default=str).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(data))), ("connection", "close")]
    try:
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
        await stream.send_all(conn.send(h11.Data(data=data)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError) as exc:
        log.debug("admin client went away: %s", exc)
