"""``meshctl proxy-config secret NODE``: the certificates a node's ztunnel holds — identity,
serial, validity, state and chain (``-o pem``) — read from its admin endpoint
(127.0.0.1:15000 in the node's network namespace, through :mod:`meshctl.ztunneladmin`). Keys
are never shown: ztunnel never exposes them. ``proxy-config all NODE``: the whole dump as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from meshctl import table, ztunneladmin
from meshctl.lab.config import DEFAULT_LAB_NAME, LabConfig

ProxyConfigError = ztunneladmin.ZtunnelError
config_dump = ztunneladmin.config_dump


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pc = sub.add_parser("proxy-config", help="what a node's ztunnel holds")
    kinds = pc.add_subparsers(dest="what", required=True, metavar="WHAT")
    sec = kinds.add_parser("secret", help="certificates: identity, serial, validity, chain")
    sec.add_argument("node", metavar="NODE", help="node name, e.g. node1 (or node/node1)")
    sec.add_argument("-o", "--output", choices=["table", "json", "pem"], default="table")
    sec.add_argument("--lab", default=os.environ.get("MESHLAB_NAME", DEFAULT_LAB_NAME))
    dump = kinds.add_parser("all", help="the whole config dump as JSON")
    dump.add_argument("node")
    dump.add_argument("--lab", default=os.environ.get("MESHLAB_NAME", DEFAULT_LAB_NAME))


def run(args: argparse.Namespace) -> int:
    try:
        dump = config_dump(LabConfig(name=args.lab), args.node)
    except ztunneladmin.ERRORS as exc:
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
        rows = [[str(c.get("identity")), str(c.get("serial")), str(c.get("not_before")),
                 str(c.get("not_after")), str(c.get("state"))] for c in certs]
        print(table.render(["IDENTITY", "SERIAL", "NOT BEFORE", "NOT AFTER", "STATE"], rows))
    return 0
