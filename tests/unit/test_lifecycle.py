"""serve_until_signal: ztunnel's and the waypoint's run loop drains the agent on SIGTERM, then stops."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import trio

from ztunnel.lifecycle import serve_until_signal


class FakeAgent:
    def __init__(self) -> None:
        self.started = trio.Event()
        self.drained: list[float] = []
        self.cancelled = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled = True
            raise

    async def drain(self, timeout_s: float) -> None:
        self.drained.append(timeout_s)


async def test_sigterm_drains_the_agent_then_stops_it(caplog: pytest.LogCaptureFixture) -> None:
    agent = FakeAgent()
    log = logging.getLogger("test.lifecycle")
    with caplog.at_level(logging.INFO, logger="test.lifecycle"), trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_until_signal, lambda: agent, 2.5, "draining HBONE connections", log)
            await agent.started.wait()  # the signal receiver is installed before the agent starts
            os.kill(os.getpid(), signal.SIGTERM)
    assert agent.drained == [2.5]
    assert agent.cancelled
    assert "received SIGTERM; draining HBONE connections (up to 2.5 s), then stopping" in caplog.text
