"""The lab daemon's local API: one JSON object per line over a unix socket in the lab's state
folder, one request and one response per connection.

Requests: ``{"op": "status"}``, ``{"op": "apply", "documents": [{"text", "source"}]}``,
``{"op": "delete", "documents": [...]}``, ``{"op": "pods", "ref": "ns/name"}``,
``{"op": "shutdown"}``. Responses carry ``"ok": true`` or ``"ok": false`` with ``"error"``.

Raises :class:`LabNotRunning` when no daemon answers and :class:`LabApiError` for a refused
request.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from meshctl.lab.config import LabConfig

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CLIENT_TIMEOUT_S = 120.0


class LabApiError(RuntimeError):
    """The daemon refused a request or answered something unreadable."""


class LabNotRunning(LabApiError):
    """No lab daemon answers on the lab's socket."""


def socket_path(cfg: LabConfig) -> Path:
    return cfg.state_dir / "lab.sock"


def request(cfg: LabConfig, payload: dict[str, Any], timeout: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """Send one request to the lab daemon and return its response (``ok`` checked)."""
    path = socket_path(cfg)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise LabNotRunning(
                f"lab {cfg.name!r} is not running (no daemon answers on {path}); start it with "
                "`meshctl lab up`"
            ) from None
        sock.sendall(json.dumps(payload).encode() + b"\n")
        buf = bytearray()
        while not buf.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_MESSAGE_BYTES:
                raise LabApiError("the lab daemon's answer is larger than 64 MiB")
    except TimeoutError:
        raise LabApiError(f"the lab daemon did not answer within {timeout:.0f}s") from None
    finally:
        sock.close()
    if not buf:
        raise LabApiError("the lab daemon closed the connection without answering (see its log)")
    try:
        response: dict[str, Any] = json.loads(buf)
    except ValueError as exc:
        raise LabApiError(f"unreadable answer from the lab daemon: {exc}") from None
    if not response.get("ok"):
        raise LabApiError(str(response.get("error", "request refused")))
    return response
