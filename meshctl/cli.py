"""``meshctl``: the mesh's command line (like istioctl) and the one-host lab."""

from __future__ import annotations

import argparse
import sys

from meshctl import benchcmd, configcmds, observe, proxyconfig, waypointcmds, ztunnelconfig
from meshctl.lab import commands as lab_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lab_commands.add_parser(sub)
    configcmds.add_parsers(sub)
    proxyconfig.add_parser(sub)
    ztunnelconfig.add_parser(sub)
    observe.add_parsers(sub)
    waypointcmds.add_parser(sub)
    benchcmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "lab":
        return lab_commands.run(args)
    if args.command in ("apply", "delete", "analyze", "proxy-status", "debug"):
        return configcmds.run(args)
    if args.command == "proxy-config":
        return proxyconfig.run(args)
    if args.command == "ztunnel-config":
        return ztunnelconfig.run(args)
    if args.command in ("metrics", "access-log"):
        return observe.run(args)
    if args.command == "waypoint":
        return waypointcmds.run(args)
    if args.command == "bench":
        return benchcmd.run(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
