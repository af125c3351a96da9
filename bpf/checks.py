"""Whether this machine can run the eBPF/tc capture, checked once at start: privileges, bcc,
kernel headers, ``ip``/``tc``, the bpf filesystem, and a real compile-and-load of
``capture.c``. :func:`describe` turns the problems into one message for the operator.

Nothing here raises; every failure becomes a problem string.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from bpf.loader import PIN_ROOT, bpffs_mounted, tools_missing

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_BPF = 39
COMPILE_TIMEOUT_S = 120.0

_COMPILE_TEST = "from bpf.loader import compile_programs; compile_programs(None)"


def _effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def headers_dir() -> Path:
    return Path("/lib/modules") / os.uname().release / "build"


def check_environment(*, compile_test: bool = True) -> list[str]:
    """Problems that stop the capture from running here (empty when it can run).

    ``compile_test`` compiles and loads ``capture.c`` in a child process (a few seconds) once
    the other checks pass; its maps are not pinned.
    """
    problems: list[str] = []
    caps = _effective_caps()
    has_bpf = bool(caps & (1 << CAP_BPF)) or bool(caps & (1 << CAP_SYS_ADMIN))
    has_net_admin = bool(caps & (1 << CAP_NET_ADMIN))
    if os.geteuid() != 0 and not (has_bpf and has_net_admin):
        problems.append("not running as root (or with CAP_BPF and CAP_NET_ADMIN)")
    elif not (has_bpf and has_net_admin):
        problems.append("the process lacks CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN")
    if importlib.util.find_spec("bcc") is None:
        problems.append("the bcc Python module is not importable (install python3-bpfcc and expose it to the venv)")
    headers = headers_dir()
    if not (headers / "include").is_dir():
        problems.append(f"kernel headers are missing at {headers} (install linux-headers and link them there)")
    for tool in tools_missing():
        problems.append(f"`{tool}` is missing (install iproute2)")
    if not bpffs_mounted(PIN_ROOT):
        problems.append(f"no bpf filesystem is mounted at {PIN_ROOT} (mount it: `mount -t bpf bpf {PIN_ROOT}`)")
    if compile_test and not problems:
        problems.extend(_compile_test())
    return problems


def _compile_test() -> list[str]:
    root = Path(__file__).resolve().parents[1]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _COMPILE_TEST], capture_output=True, text=True,
            timeout=COMPILE_TIMEOUT_S, cwd=root, check=False,
        )
    except subprocess.TimeoutExpired:
        return [f"compiling and loading bpf/capture.c took longer than {COMPILE_TIMEOUT_S:.0f}s"]
    except OSError as exc:
        return [f"could not run the compile test: {exc}"]
    if proc.returncode == 0:
        return []
    lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line][:3]
    last = lines[-1] if lines else f"exit status {proc.returncode}"
    detail = "; ".join([*errors, last]) if errors else last
    return [f"bpf/capture.c does not compile or load on kernel {os.uname().release}: {detail}"]


def describe(problems: list[str]) -> str:
    """One message for the operator: what is missing and how to fix it."""
    if not problems:
        return "eBPF capture can run on this machine."
    return (
        "eBPF capture cannot run on this machine: " + "; ".join(problems)
        + ". Fix: run scripts/setup as root (it installs bcc and kernel headers), and mount the "
        f"bpf filesystem with `mount -t bpf bpf {PIN_ROOT}` if it is not mounted."
    )
