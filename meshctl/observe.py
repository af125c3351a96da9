"""``meshctl metrics NODE [--match REGEX]`` and ``meshctl access-log NODE [--tail N]``: what a
node's ztunnel reports about the traffic it carries.

- ``metrics``: the Prometheus text of its ``:15020/metrics`` (read inside the node's network
  namespace); ``--match`` keeps only the ``istio_*`` samples whose line (name and labels) matches
  the regular expression, with their ``# HELP``/``# TYPE`` lines.
- ``access-log``: its access lines (logger ``ztunnel.access``, one per connection, written when the
  connection ends) from the lab's log file ``/run/meshlab/<lab>/ztunnel-<node>.log``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import deque
from collections.abc import Iterable

from meshctl import ztunneladmin
from meshctl.lab.config import DEFAULT_LAB_NAME, LabConfig

ACCESS_LOGGER = "ztunnel.access"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = argparse.ArgumentParser(add_help=False)
    lab.add_argument("--lab", default=os.environ.get("MESHLAB_NAME", DEFAULT_LAB_NAME),
                     help="which lab (default %(default)s; env MESHLAB_NAME)")
    m = sub.add_parser("metrics", parents=[lab], help="a node's ztunnel metrics (Prometheus text)")
    m.add_argument("node", metavar="NODE", help="node name, e.g. node1 (or node/node1)")
    m.add_argument("--match", type=_regex, default=None, metavar="REGEX",
                   help="only the istio_* samples whose line matches REGEX, e.g. 'tcp_sent.*reviews'")
    a = sub.add_parser("access-log", parents=[lab], help="a node's ztunnel access log, one line per connection")
    a.add_argument("node", metavar="NODE", help="node name, e.g. node1 (or node/node1)")
    a.add_argument("--tail", type=int, default=-1, metavar="N", help="only the last N lines (default: all)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = LabConfig(name=args.lab)
        if args.command == "metrics":
            text = ztunneladmin.metrics(cfg, args.node)
            if args.match is not None:
                text = filter_metrics(text, args.match)
                if not text:
                    print(f"meshctl metrics: no istio_* sample matches {args.match.pattern!r}", file=sys.stderr)
            sys.stdout.write(text)
        else:
            path = ztunneladmin.log_file(cfg, args.node)
            try:
                with path.open(encoding="utf-8", errors="replace") as f:
                    lines = access_lines(f, args.tail)
            except OSError as exc:
                raise ztunneladmin.ZtunnelError(f"cannot read {path}: {exc.strerror}") from None
            sys.stdout.writelines(lines)
    except ztunneladmin.ERRORS as exc:
        print(f"meshctl {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def filter_metrics(text: str, pattern: re.Pattern[str]) -> str:
    """The ``istio_*`` samples of Prometheus ``text`` whose line matches ``pattern``, each
    family's ``# HELP``/``# TYPE`` lines before its first kept sample; ``""`` when none does."""
    out: list[str] = []
    comments: list[str] = []  # of the current family, until one of its samples is kept
    for line in text.splitlines(keepends=True):
        if line.startswith("#"):
            if comments and _family(line) != _family(comments[0]):
                comments = []
            comments.append(line)
        elif line.startswith("istio_") and pattern.search(line):
            out += comments
            comments = []
            out.append(line if line.endswith("\n") else line + "\n")
    return "".join(out)


def access_lines(lines: Iterable[str], tail: int = -1) -> list[str]:
    """The access-log lines among ``lines`` (the last ``tail`` of them when ``tail >= 0``)."""
    kept = (line if line.endswith("\n") else line + "\n" for line in lines if ACCESS_LOGGER in line)
    if tail < 0:
        return list(kept)
    return list(deque(kept, maxlen=tail))


def _family(comment: str) -> str:
    """The metric a ``# HELP name …``/``# TYPE name …`` line is about."""
    words = comment.split(maxsplit=3)
    return words[2] if len(words) > 2 else ""


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({exc})") from None
