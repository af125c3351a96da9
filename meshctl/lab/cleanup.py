"""Finding and removing everything a lab made, also after its processes were SIGKILLed:
the daemon, every process inside the lab's network namespaces, the namespaces themselves,
their /etc/netns folders, the state folder, and the /run/netns mount if the lab created it.

Everything is found by name (``meshctl.lab.naming``) and through /proc, never only from
memory, so ``lab down`` works on a lab whose daemon died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from meshctl.lab import netlab
from meshctl.lab.config import LabConfig
from meshctl.lab.naming import is_lab_netns

log = logging.getLogger("meshctl.lab.cleanup")

STATE_FILE = "state.json"
BPF_ROOT = Path("/sys/fs/bpf")
PID_FILE = "daemon.pid"
MOUNT_MARKER = "created-run-netns-mount"


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def record_created(cfg: LabConfig) -> None:
    """Called before the lab makes anything: remember whether /run/netns was already a
    mount point, so that ``lab down`` removes that mount only if the lab created it."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    (cfg.state_dir / PID_FILE).write_text(f"{os.getpid()}\n")
    marker = cfg.state_dir / MOUNT_MARKER
    if not _mounted(netlab.NETNS_DIR) and not marker.exists():
        marker.write_text("the lab created the /run/netns bind mount\n")


def write_state(cfg: LabConfig, state: dict[str, Any]) -> None:
    (cfg.state_dir / STATE_FILE).write_text(json.dumps(state))


def daemon_pid(cfg: LabConfig) -> int | None:
    """The lab daemon's pid if it is alive (checked against its command line)."""
    try:
        pid = int((cfg.state_dir / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"meshctl.lab.daemon" in cmdline else None


def lab_netns(cfg: LabConfig) -> list[str]:
    return [n for n in netlab.list_netns() if is_lab_netns(cfg, n)]


def leftovers(cfg: LabConfig) -> list[str]:
    """What of this lab still exists on the host, one line each (empty when clean)."""
    out = [f"network namespace {n}" for n in lab_netns(cfg)]
    out += [f"folder {p}" for p in sorted(netlab.ETC_NETNS.glob(f"{cfg.name}-*"))]
    out += [f"pinned maps {p}" for p in sorted(BPF_ROOT.glob(f"{cfg.name}-node*"))]
    if cfg.state_dir.exists():
        out.append(f"folder {cfg.state_dir}")
    pid = daemon_pid(cfg)
    if pid is not None:
        out.append(f"daemon process {pid}")
    cp = controlplane_pid(cfg)
    if cp is not None:
        out.append(f"control plane process {cp}")
    return out


CONTROLPLANE_PID_FILE = "controlplane.pid"
CONTROLPLANE_MARKER = b"--lab-controlplane"


def controlplane_pid(cfg: LabConfig) -> int | None:
    """The lab's control-plane process, if alive (checked against its command line)."""
    try:
        pid = int((cfg.state_dir / CONTROLPLANE_PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if CONTROLPLANE_MARKER in cmdline and str(cfg.state_dir).encode() in cmdline else None


def kill_daemon(cfg: LabConfig, grace_s: float = 10.0) -> None:
    pid = daemon_pid(cfg)
    if pid is None or pid == os.getpid():
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and daemon_pid(cfg) == pid:
            time.sleep(0.05)
        if daemon_pid(cfg) != pid:
            return


def sweep(cfg: LabConfig, *, keep_state_dir: bool = False) -> list[str]:
    """Remove every trace of the lab; returns what it removed (for the operator)."""
    removed = []
    cp = controlplane_pid(cfg)
    if cp is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(cp, signal.SIGKILL)
        removed.append(f"control plane process {cp}")
    names = lab_netns(cfg)
    # Pods first (their processes), then nodes, then the underlay.
    names.sort(key=lambda n: (0 if "-pod-" in n else 1 if "-node" in n else 2, n))
    for name in names:
        survivors = netlab.kill_netns_processes(name, grace_s=1.0)
        if survivors:
            log.error("%d processes in %s survived SIGKILL; removing the namespace anyway", survivors, name)
        netlab.remove_netns(name)
        removed.append(f"network namespace {name}")
    for folder in sorted(netlab.ETC_NETNS.glob(f"{cfg.name}-*")):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(f"folder {folder}")
    for pins in sorted(BPF_ROOT.glob(f"{cfg.name}-node*")):
        shutil.rmtree(pins, ignore_errors=True)  # the nodes' pinned capture maps
        removed.append(f"pinned maps {pins}")
    with contextlib.suppress(OSError):
        if not any(netlab.ETC_NETNS.iterdir()):
            netlab.ETC_NETNS.rmdir()
    marker = cfg.state_dir / MOUNT_MARKER
    if marker.exists() and _mounted(netlab.NETNS_DIR) and not netlab.list_netns():
        proc = subprocess.run(["umount", str(netlab.NETNS_DIR)], capture_output=True, check=False)
        if proc.returncode == 0:
            removed.append(f"mount {netlab.NETNS_DIR}")
            with contextlib.suppress(OSError):
                netlab.NETNS_DIR.rmdir()
    if not keep_state_dir and cfg.state_dir.exists():
        shutil.rmtree(cfg.state_dir, ignore_errors=True)
        removed.append(f"folder {cfg.state_dir}")
        with contextlib.suppress(OSError):
            cfg.state_root.rmdir()
    return removed
