"""`lab down` removes everything, also after every lab process was SIGKILLed, and the host's
own namespace never gains addresses, routes or mounts. Needs root; never skips."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.lab.conftest import (
    Lab,
    host_network_snapshot,
    lab_down_and_check_clean,
    lab_up,
    mounts,
    require_lab_machine,
)

pytestmark = pytest.mark.lab

SLEEPERS = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: sleeper}
    spec:
      replicas: 3
      selector: {matchLabels: {app: sleeper}}
      template:
        metadata: {labels: {app: sleeper}}
        spec:
          containers:
          - name: c
            image: busybox
            command: ["sh", "-c", "trap '' TERM; sleep 3600 & wait"]
    """)


def _lab_processes(lab: Lab) -> list[int]:
    """Every process that belongs to the lab: its daemon and anything in its namespaces."""
    netns = [n.split()[0] for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
             if n.startswith(f"{lab.name}-")]
    inodes = {os.stat(f"/run/netns/{n}").st_ino for n in netns}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        ours = f'"name": "{lab.name}"'.encode() in cmd or f"/run/meshlab/{lab.name}".encode() in cmd
        if ino in inodes or (ours and (b"meshctl.lab.daemon" in cmd or b"--lab-controlplane" in cmd)):
            found.append(int(entry.name))
    return found


def test_down_cleans_up_after_sigkill_of_every_lab_process() -> None:
    require_lab_machine()
    before_net, before_mounts = host_network_snapshot(), mounts()
    lab = Lab("mlkill")
    lab.run("down", check=False)
    try:
        lab_up("mlkill", "--nodes", "3")
        lab.run("apply", "-f", "-", "--wait", input=SLEEPERS)
        pids = _lab_processes(lab)
        assert len(pids) >= 5, pids  # daemon, control plane, 3 sleepers (+ their children)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # containers that ignore SIGTERM, and a daemon that can no longer clean up
        assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count("mlkill-") >= 7
    finally:
        lab_down_and_check_clean(lab, before_net, before_mounts)
    assert _lab_processes(lab) == []


def test_up_again_after_a_crash_removes_leftovers_first() -> None:
    require_lab_machine()
    before_net, before_mounts = host_network_snapshot(), mounts()
    lab = Lab("mlagain")
    lab.run("down", check=False)
    try:
        lab_up("mlagain", "--nodes", "1")
        for pid in _lab_processes(lab):
            os.kill(pid, signal.SIGKILL)
        out = lab.run("up", "--nodes", "1")
        assert "removing leftovers" in out.stderr
        assert lab.status()["nodes"][0]["name"] == "node1"
    finally:
        lab_down_and_check_clean(lab, before_net, before_mounts)
