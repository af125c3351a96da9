"""Running an agent (ztunnel's or the waypoint's) until SIGTERM or SIGINT, then draining it."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Protocol

import trio


class DrainableAgent(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    async def drain(self, timeout_s: float) -> None: ...


async def serve_until_signal(make_agent: Callable[[], DrainableAgent], drain_seconds: float, draining: str,
                             log: logging.Logger) -> None:
    """Start the agent ``make_agent()`` builds (inside the trio run); on the first SIGTERM or
    SIGINT log ``received <signal>; <draining> (up to N s), then stopping``, give the agent
    ``drain_seconds`` (plus one) to drain, then cancel everything."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            agent = make_agent()
            await nursery.start(agent.run)
            async for sig in signals:
                log.info("received %s; %s (up to %g s), then stopping", signal.Signals(sig).name, draining,
                         drain_seconds)
                with trio.move_on_after(drain_seconds + 1):
                    await agent.drain(drain_seconds)
                nursery.cancel_scope.cancel()
                break
