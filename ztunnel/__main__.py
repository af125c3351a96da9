"""``python -m ztunnel``: run a node's ztunnel (in the node's network namespace)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import trio

from ztunnel.agent import Agent
from ztunnel.config import DEFAULT_ADMIN_ADDRESS, DEFAULT_TRUST_DOMAIN, Config, ConfigError

log = logging.getLogger("ztunnel")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ztunnel", description=__doc__)
    parser.add_argument("--node", required=True)
    parser.add_argument("--controlplane", required=True, help="gRPC target of the control plane")
    parser.add_argument("--credential-file", type=Path, required=True, help="this node's CA credential (mode 600)")
    parser.add_argument("--admin-port", type=int, default=DEFAULT_ADMIN_ADDRESS[1])
    parser.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = Config(node=args.node, controlplane=args.controlplane, credential_file=args.credential_file,
                     admin_address=(DEFAULT_ADMIN_ADDRESS[0], args.admin_port), trust_domain=args.trust_domain)
        cfg.credential()
    except ConfigError as exc:
        log.error("ztunnel cannot start: %s", exc)
        return 2

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(Agent(cfg).run)
                async for sig in signals:
                    log.info("received %s; stopping", signal.Signals(sig).name)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(run)
    except OSError as exc:
        log.error("ztunnel could not start: %s (is another ztunnel using admin port %d?)", exc, args.admin_port)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
