"""``meshctl proxy-config secret NODE``: the certificates a node's ztunnel holds — identity,
serial, validity, state and chain (``-o pem``) — read from its admin endpoint
(127.0.0.1:15000 in the node's network namespace). Keys are never shown: ztunnel never
exposes them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

import h11

from meshctl.lab import api, netlab
from meshctl.lab.config import DEFAULT_LAB_NAME, LabConfig

ADMIN = ("127.0.0.1", 15000)
TIMEOUT_S = 5.0


class ProxyConfigError(RuntimeError):
    """The ztunnel's config could not be read; the message says why."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pc = sub.add_parser("proxy-config", help="what a node's ztunnel holds")
    kinds = pc.add_subparsers(dest="what", required=True, metavar="WHAT")
    sec = kinds.add_parser("secret", help="certificates: identity, serial, validity, chain")
    sec.add_argument("node", help="node name, e.g. node1 (or node/node1)")
    sec.add_argument("-o", "--output", choices=["table", "json", "pem"], default="table")
    sec.add_argument("--lab", default=os.environ.get("MESHLAB_NAME", DEFAULT_LAB_NAME))
    dump = kinds.add_parser("all", help="the whole config dump as JSON")
    dump.add_argument("node")
    dump.add_argument("--lab", default=os.environ.get("MESHLAB_NAME", DEFAULT_LAB_NAME))


def config_dump(cfg: LabConfig, node: str) -> dict[str, Any]:
    node = node.removeprefix("node/")
    nodes = {n["name"]: n for n in api.request(cfg, {"op": "status"})["nodes"]}
    if node not in nodes:
        raise ProxyConfigError(f"node {node!r} not found; the lab has {', '.join(sorted(nodes))}")
    sock = netlab.unbound_socket_in(nodes[node]["netns"], socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    conn = h11.Connection(h11.CLIENT)
    with sock:
        try:
            sock.connect(ADMIN)
        except OSError as exc:
            raise ProxyConfigError(
                f"ztunnel on {node} does not answer on {ADMIN[0]}:{ADMIN[1]} ({exc.strerror}); "
                f"see /run/meshlab/{cfg.name}/ztunnel-{node}.log"
            ) from None
        sock.sendall(conn.send(h11.Request(method="GET", target="/config_dump", headers=[("host", "localhost")])) or b"")
        sock.sendall(conn.send(h11.EndOfMessage()) or b"")
        body = bytearray()
        status = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    if status != 200:
        raise ProxyConfigError(f"ztunnel on {node} answered {status}: {body[:200].decode(errors='replace')}")
    data: dict[str, Any] = json.loads(body)
    return data


def run(args: argparse.Namespace) -> int:
    cfg = LabConfig(name=args.lab)
    try:
        dump = config_dump(cfg, args.node)
    except (ProxyConfigError, api.LabApiError, netlab.NetlabError) as exc:
        print(f"meshctl proxy-config: {exc}", file=sys.stderr)
        return 1
    if args.what == "all":
        print(json.dumps(dump, indent=2, sort_keys=True))
        return 0
    certs: list[dict[str, Any]] = dump.get("certificates", [])
    if args.output == "json":
        print(json.dumps(certs, indent=2, sort_keys=True))
    elif args.output == "pem":
        for c in certs:
            print(f"# {c.get('identity')} serial {c.get('serial')}")
            for pem in c.get("chain_pem") or []:
                print(pem.strip() if isinstance(pem, str) else pem)
    else:
        rows = [["IDENTITY", "SERIAL", "NOT BEFORE", "NOT AFTER", "STATE"]]
        for c in certs:
            rows.append([str(c.get("identity")), str(c.get("serial")), str(c.get("not_before")),
                         str(c.get("not_after")), str(c.get("state"))])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0
