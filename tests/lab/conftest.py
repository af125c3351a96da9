"""Fixtures for lab tests: a real lab (network namespaces, processes) driven through the
``meshctl`` command line, torn down after the module even when a test failed.

Lab tests never skip: on a machine that cannot run them they fail and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MESHCTL = [sys.executable, "-m", "meshctl.cli"]

# A TCP server for lab tests (port 7000): reads to EOF, answers "<peer ip> <bytes> <sha256>".
HASHER_PY = textwrap.dedent("""\
    import hashlib, socket, threading
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 7000)); s.listen(4096)
    def serve(c, addr):
        with c:
            c.settimeout(60)
            h = hashlib.sha256(); n = 0
            while data := c.recv(1 << 20):
                h.update(data); n += len(data)
            c.sendall(f"{addr[0]} {n} {h.hexdigest()}".encode())
    while True:
        c, addr = s.accept()
        threading.Thread(target=serve, args=(c, addr), daemon=True).start()
    """)


def require_lab_machine() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root")
    for tool in ("ip", "nft", "curl", "getent"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is missing (run scripts/setup)")
    if problems:
        pytest.fail("lab tests cannot run on this machine: " + "; ".join(problems), pytrace=False)


def host_network_snapshot() -> dict[str, Any]:
    """The host namespace's addresses and routes, to prove the lab never touches them."""
    def ip_json(*args: str) -> Any:
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout)

    addrs = sorted(
        (link["ifname"], a["local"], a["prefixlen"]) for link in ip_json("addr") for a in link.get("addr_info", [])
    )
    routes = sorted(json.dumps(r, sort_keys=True) for r in ip_json("route", "show", "table", "all"))
    links = sorted(link["ifname"] for link in ip_json("link"))
    return {"addrs": addrs, "routes": routes, "links": links}


def mounts() -> list[str]:
    return sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())


@dataclass
class Lab:
    name: str

    def run(self, *args: str, check: bool = True, timeout: float = 180, input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*MESHCTL, "lab", "--lab", self.name, *args], capture_output=True, text=True,
            timeout=timeout, check=False, cwd=ROOT, input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"meshctl lab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def exec(self, pod: str, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("exec", pod, "--", *cmd, check=check, timeout=timeout)

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("status", "-o", "json").stdout)
        return data

    def pods(self, prefix: str = "") -> list[dict[str, Any]]:
        return [p for p in self.status()["pods"] if p["name"].startswith(prefix)]

    def wait_for(self, what: str, predicate: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {last!r}")


def lab_up(name: str, *args: str) -> Lab:
    lab = Lab(name)
    lab.run("up", *args, timeout=240)
    return lab


def lab_down_and_check_clean(lab: Lab, before_net: dict[str, Any], before_mounts: list[str]) -> None:
    lab.run("down", timeout=180)
    leftovers = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
                 if n.startswith(f"{lab.name}-")]
    assert leftovers == [], f"namespaces left behind: {leftovers}"
    assert not Path(f"/run/meshlab/{lab.name}").exists()
    assert not list(Path("/etc/netns").glob(f"{lab.name}-*")) if Path("/etc/netns").exists() else True
    assert host_network_snapshot() == before_net, "the host namespace's addresses or routes changed"
    assert mounts() == before_mounts, "mounts changed across lab up/down"


@pytest.fixture(scope="module")
def bookinfo_lab() -> Iterator[Lab]:
    """A two-node lab with Istio's Bookinfo and curl samples applied unchanged."""
    require_lab_machine()
    before_net, before_mounts = host_network_snapshot(), mounts()
    name = "mltest"
    Lab(name).run("down", check=False)
    try:
        lab = lab_up(name, "-f", str(FIXTURES / "istio" / "bookinfo.yaml"),
                     "-f", str(FIXTURES / "istio" / "curl.yaml"), "--restart-backoff", "0.5")
        yield lab
    finally:
        lab_down_and_check_clean(Lab(name), before_net, before_mounts)
