"""``meshctl ztunnel-config WHAT NODE [-o table|json]``: what a node's ztunnel knows and does,
read from its admin ``/config_dump`` (like ``istioctl ztunnel-config``):

- ``workload``: every workload of the mesh — address, node, waypoint, protocol (HBONE: in the
  mesh, TCP: not);
- ``service``: every service — VIPs, waypoint, healthy/total endpoints;
- ``policy``: authorization policies — action and scope (``-o json`` adds the rules in words);
- ``certificate``: the certificates this ztunnel holds, one row per certificate of each chain;
- ``connections``: outbound HBONE connections per (source identity, destination identity,
  next hop), then the inbound connections open now;
- ``all``: every table (``-o json``: the whole dump).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from meshctl import table, ztunneladmin
from meshctl.lab.config import DEFAULT_LAB_NAME, LabConfig

Dump = dict[str, Any]

# subcommand -> the config dump section it shows
SECTIONS = {"workload": "workloads", "service": "services", "policy": "policies",
            "certificate": "certificates", "connections": "connections"}
HELP = {
    "workload": "workloads: address, node, waypoint, protocol",
    "service": "services: VIPs, waypoint, healthy/total endpoints",
    "policy": "authorization policies: action, scope (rules with -o json)",
    "certificate": "certificates held: type, status, serial, validity",
    "connections": "HBONE connections per source/destination identity and next hop; open inbound connections",
    "all": "all of the above (-o json: the whole config dump)",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("node", metavar="NODE", help="node name, e.g. node1 (or node/node1)")
    common.add_argument("-o", "--output", choices=["table", "json"], default="table")
    common.add_argument("--lab", default=os.environ.get("MESHLAB_NAME", DEFAULT_LAB_NAME),
                        help="which lab (default %(default)s; env MESHLAB_NAME)")
    zc = sub.add_parser("ztunnel-config", help="what a node's ztunnel knows: workloads, services, policies, "
                        "certificates, connections")
    kinds = zc.add_subparsers(dest="what", required=True, metavar="WHAT")
    for what, text in HELP.items():
        kinds.add_parser(what, parents=[common], help=text, description=text)


def run(args: argparse.Namespace) -> int:
    try:
        dump = ztunneladmin.config_dump(LabConfig(name=args.lab), args.node)
        print(render(args.what, dump, args.output, node=args.node.removeprefix("node/")))
    except ztunneladmin.ERRORS as exc:
        print(f"meshctl ztunnel-config: {exc}", file=sys.stderr)
        return 1
    return 0


def render(what: str, dump: Dump, output: str = "table", *, node: str = "", now: datetime | None = None) -> str:
    """The text ``ztunnel-config WHAT`` prints for ``dump``. Raises :class:`ZtunnelError` when
    the dump lacks the section (a ztunnel older than this command)."""
    sections = list(SECTIONS) if what == "all" else [what]
    missing = [repr(SECTIONS[s]) for s in sections if SECTIONS[s] not in dump]
    if missing:
        raise ztunneladmin.ZtunnelError(
            f"ztunnel on {node or dump.get('node', '?')} reports no {', '.join(missing)} in its config dump "
            "(it is older than `meshctl ztunnel-config`; restart it)")
    if output == "json":
        return json.dumps(dump if what == "all" else dump[SECTIONS[what]], indent=2, sort_keys=True)
    tables: dict[str, Callable[[Any], str]] = {
        "workload": workload_table, "service": service_table, "policy": policy_table,
        "certificate": lambda certs: certificate_table(certs, now), "connections": connections_table,
    }
    return "\n\n".join(tables[s](dump[SECTIONS[s]]) for s in sections)


def workload_table(workloads: list[Dump]) -> str:
    rows = [[_s(w.get("namespace")), _s(w.get("name")), ",".join(w.get("addresses") or []) or "None",
             _s(w.get("node")), waypoint_name(w.get("waypoint")), _s(w.get("protocol"))] for w in workloads]
    return table.render(["NAMESPACE", "POD NAME", "ADDRESS", "NODE", "WAYPOINT", "PROTOCOL"], rows)


def service_table(services: list[Dump]) -> str:
    rows = [[_s(s.get("namespace")), _s(s.get("name") or s.get("hostname")), ",".join(s.get("vips") or []) or "None",
             waypoint_name(s.get("waypoint")), f"{s.get('healthy_endpoints', 0)}/{s.get('endpoints', 0)}"]
            for s in services]
    return table.render(["NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT", "ENDPOINTS"], rows)


def policy_table(policies: list[Dump]) -> str:
    rows = [[_s(p.get("namespace")), _s(p.get("name")),
             _s(p.get("action")) + (" (dry run)" if p.get("dry_run") else ""), _s(p.get("scope"))]
            for p in policies]
    return table.render(["NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"], rows)


def certificate_table(certificates: list[Dump], now: datetime | None = None) -> str:
    """One row per certificate of each identity's chain (Leaf, Intermediate, Root, read from the
    PEMs); an identity without a certificate yet gets one row saying so."""
    now = now or datetime.now(UTC)
    rows = []
    for c in certificates:
        name, state = _s(c.get("identity")), _s(c.get("state"))
        chain = [cert for pem in c.get("chain_pem") or [] if (cert := _load(pem)) is not None]
        if not chain:
            after, before = _time(c.get("not_after")), _time(c.get("not_before"))
            valid = after is not None and before is not None and before <= now < after
            rows.append([name, "Leaf" if c.get("serial") else "None", state, _bool(valid),
                         _s(c.get("serial")), _iso(after), _iso(before)])
        for i, cert in enumerate(chain):
            kind = "Leaf" if i == 0 else ("Root" if cert.issuer == cert.subject else "Intermediate")
            before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
            rows.append([name, kind, state, _bool(before <= now < after), format(cert.serial_number, "x"),
                         _iso(after), _iso(before)])
    return table.render(["CERTIFICATE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER",
                         "NOT BEFORE"], rows)


def connections_table(connections: Dump) -> str:
    """The outbound HBONE pool, a blank line, then the inbound connections open now."""
    pool = [[_s(e.get("source")), _s(e.get("destination")), _s(e.get("next_hop")), _s(e.get("connections"))]
            for e in connections.get("hbone_pool") or []]
    inbound = [[_s(e.get("source_principal") or "plaintext"), _s(e.get("source_ip")), _s(e.get("destination")),
                _s(e.get("destination_address")), _s(e.get("via")),
                "-" if e.get("age_s") is None else f"{e['age_s']:g}s"]
               for e in connections.get("inbound") or []]
    return "\n\n".join([
        table.render(["SOURCE IDENTITY", "DESTINATION IDENTITY", "NEXT HOP", "HBONE CONNECTIONS"], pool),
        table.render(["INBOUND FROM", "SOURCE IP", "DESTINATION", "DESTINATION ADDRESS", "VIA", "AGE"], inbound),
    ])


def waypoint_name(waypoint: Dump | None) -> str:
    """``waypoint`` for ``waypoint.default.svc.cluster.local``, the address without a hostname,
    ``None`` without a waypoint (as istioctl prints it)."""
    if not waypoint:
        return "None"
    hostname = str(waypoint.get("hostname") or "")
    return hostname.split(".", 1)[0] if hostname else str(waypoint.get("address") or "None")


def _s(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _load(pem: object) -> x509.Certificate | None:
    if not isinstance(pem, str):
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _iso(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
