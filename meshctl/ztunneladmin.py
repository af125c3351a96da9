"""Reading a lab node's ztunnel from the host: its admin endpoint (``127.0.0.1:15000``,
``/config_dump``) and metrics endpoint (``:15020``, ``/metrics``), both reached through a socket
opened inside the node's network namespace, and its log file. Shared by ``meshctl
proxy-config``, ``ztunnel-config``, ``metrics`` and ``access-log``.

Every failure is one of :data:`ERRORS`, whose message says in one line what failed and why: the
lab name is invalid or the lab is not running, the node does not exist, the ztunnel does not
answer (naming its log file).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import h11

from meshctl.lab import api, netlab
from meshctl.lab.config import LabConfig, LabConfigError
from meshctl.lab.kubelet import ztunnel_log_file

ADMIN = ("127.0.0.1", 15000)
METRICS = ("127.0.0.1", 15020)  # ztunnel listens on 0.0.0.0:15020 in the node's namespace
TIMEOUT_S = 5.0
MAX_BODY_BYTES = 64 << 20


class ZtunnelError(RuntimeError):
    """A node's ztunnel could not be read; the message says why."""


ERRORS = (ZtunnelError, api.LabApiError, netlab.NetlabError, LabConfigError)


def node_netns(cfg: LabConfig, node: str) -> tuple[str, str]:
    """``(node, its network namespace)`` for ``node`` or ``node/NAME``; asks the lab daemon, so
    raises :class:`api.LabNotRunning` when the lab is down."""
    node = node.removeprefix("node/")
    nodes = {n["name"]: n for n in api.request(cfg, {"op": "status"})["nodes"]}
    if node not in nodes:
        raise ZtunnelError(f"node {node!r} not found; lab {cfg.name} has {', '.join(sorted(nodes)) or 'no nodes'}")
    return node, str(nodes[node]["netns"])


def log_file(cfg: LabConfig, node: str) -> Path:
    """The node's ztunnel log (stdout and stderr, access lines included)."""
    node, _ = node_netns(cfg, node)
    path = ztunnel_log_file(cfg, node)
    if not path.exists():
        raise ZtunnelError(f"ztunnel on {node} has no log yet ({path} does not exist)")
    return path


def http_get(cfg: LabConfig, node: str, address: tuple[str, int], path: str) -> bytes:
    """``GET path`` from ``address`` inside the node's namespace; the body of a 200 answer."""
    node, netns = node_netns(cfg, node)
    where = f"{address[0]}:{address[1]}"
    sock = netlab.unbound_socket_in(netns, socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    conn = h11.Connection(h11.CLIENT)
    body = bytearray()
    status = 0
    with sock:
        try:
            sock.connect(address)
            sock.sendall(conn.send(h11.Request(method="GET", target=path, headers=[("host", "localhost")])) or b"")
            sock.sendall(conn.send(h11.EndOfMessage()) or b"")
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY_BYTES:
                        raise ZtunnelError(f"ztunnel on {node}: {path} on {where} is larger than 64 MiB")
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
        except (OSError, h11.ProtocolError) as exc:
            why = f"no answer within {TIMEOUT_S:g} s" if isinstance(exc, TimeoutError) else (
                getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__)
            raise ZtunnelError(f"ztunnel on {node} does not answer on {where} ({why}); "
                               f"see {ztunnel_log_file(cfg, node)}") from None
    if status != 200:
        raise ZtunnelError(f"ztunnel on {node} answered {status} for {path}: "
                           f"{bytes(body[:200]).decode(errors='replace').strip()}")
    return bytes(body)


def config_dump(cfg: LabConfig, node: str) -> dict[str, Any]:
    """The node's ztunnel ``/config_dump`` (see :mod:`ztunnel.dump`)."""
    body = http_get(cfg, node, ADMIN, "/config_dump")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ZtunnelError(f"ztunnel on {node.removeprefix('node/')}: /config_dump is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ZtunnelError(f"ztunnel on {node.removeprefix('node/')}: /config_dump is not a JSON object")
    return data


def metrics(cfg: LabConfig, node: str) -> str:
    """The node's ztunnel metrics in Prometheus' text format."""
    return http_get(cfg, node, METRICS, "/metrics").decode(errors="replace")
