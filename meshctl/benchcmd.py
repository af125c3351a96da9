"""``meshctl bench``: the benchmark suite (``tests/bench/suite.py``) from the command line.

The suite lives with the other benchmarks under ``tests/bench/`` in the source checkout that
``scripts/setup`` installs (editable), so this command needs that checkout."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

CHECKOUT = Path(__file__).resolve().parents[1]


def _suite() -> ModuleType | None:
    if not (CHECKOUT / "tests" / "bench" / "suite.py").is_file():
        return None
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    return importlib.import_module("tests.bench.suite")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "bench", help="benchmark the mesh against no mesh, stunnel, haproxy and nginx on one lab",
        description="Run every scenario (no mesh; stunnel and haproxy mTLS pairs; the mesh across nodes and on "
                    "one node; through a waypoint; nginx as an L7 proxy) on one two-node lab, then the "
                    "control-plane and CA benchmarks; writes bench.json, bench.md (ratio tables) and PNG "
                    "charts. Needs root and the tools scripts/setup installs.")
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="one run of each measure, shorter runs, fewer held connections, a small control plane "
                             "(under two minutes)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder for bench.json, bench.md and the charts (default ./bench-results)")
    parser.add_argument("--repeats", type=int, help="runs of each measure (default 3, --quick 1)")
    parser.add_argument("--no-controlplane", action="store_true", help="skip the control-plane benchmark")
    parser.add_argument("--no-ca", action="store_true", help="skip the CA benchmark")
    parser.add_argument("--allow-other-labs", action="store_true",
                        help="run even while another lab is up (its processes share the CPUs)")


def run(args: argparse.Namespace) -> int:
    suite = _suite()
    if suite is None:
        print(f"meshctl bench: the benchmark suite is not in {CHECKOUT}/tests/bench; run meshctl from the source "
              "checkout that scripts/setup installed", file=sys.stderr)
        return 2
    code: int = suite.run_cli(args)
    return code
