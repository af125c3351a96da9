"""ztunnel and the waypoint raise their soft open-files limit to the hard one at start."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          timeout=30, check=True)
    return proc.stdout.strip()


def test_raises_the_soft_limit_to_the_hard_one() -> None:
    # in a child, so this test process keeps its own limits
    out = _run("""
        import resource
        from ztunnel.sockets import raise_open_files_limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        before, after = raise_open_files_limit()
        print(before, after == hard, resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard)
    """)
    assert out == "256 True True"


def test_leaves_a_limit_already_at_the_hard_one() -> None:
    out = _run("""
        import resource
        from ztunnel.sockets import raise_open_files_limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(raise_open_files_limit() == (hard, hard))
    """)
    assert out == "True"
