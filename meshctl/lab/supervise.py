"""Supervising the lab's long-running system processes (the control plane, one ztunnel per
node): start, report readiness once, restart after a crash with a delay, and stop them
(SIGTERM, then SIGKILL) when the lab goes down.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

log = logging.getLogger("meshctl.lab.supervise")

RESTART_DELAY_S = 1.0
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


async def supervise(
    name: str, cmd: list[str], log_path: Path, pid_path: Path,
    ready: Callable[[trio.Process], Awaitable[None]],
    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``cmd`` until cancelled; ``ready`` is awaited after the first start (it raises if the
    process cannot become ready) before ``task_status.started()``."""
    started = False
    while True:
        with log_path.open("ab") as logf:
            proc = await trio.lowlevel.open_process(
                cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
            )
        pid_path.write_text(f"{proc.pid}\n")
        try:
            if not started:
                with trio.fail_after(READY_TIMEOUT_S):
                    await ready(proc)
                started = True
                task_status.started()
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                with trio.CancelScope(shield=True):
                    proc.terminate()
                    with trio.move_on_after(STOP_GRACE_S):
                        await proc.wait()
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
        log.error("%s exited with code %s; restarting it in %.0fs (log: %s)", name, code, RESTART_DELAY_S, log_path)
        await trio.sleep(RESTART_DELAY_S)
