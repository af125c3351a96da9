"""``python -m controlplane``: run the control plane (config store, index, push, later the CA)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from controlplane.server import ControlPlane, FilePersistence, serve
from controlplane.store import DEFAULT_RESERVED_IPS, DEFAULT_SERVICE_CIDR, ConfigStore

log = logging.getLogger("controlplane")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane", description=__doc__)
    parser.add_argument("--listen", required=True, help="unix:///path/to.sock or host:port")
    parser.add_argument("--state-dir", type=Path, required=True, help="where applied objects are kept")
    parser.add_argument("--config-dir", type=Path, action="append", default=[],
                        help="folder of YAML files to apply and watch (repeatable)")
    parser.add_argument("--service-cidr", default=DEFAULT_SERVICE_CIDR)
    parser.add_argument("--reserved-ip", action="append", default=list(DEFAULT_RESERVED_IPS))
    parser.add_argument("--lab-controlplane", metavar="LAB_STATE_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for folder in args.config_dir:
        if not folder.is_dir():
            log.error("--config-dir %s is not a folder", folder)
            return 2
    persistence = FilePersistence(args.state_dir / "objects")
    store = ConfigStore(service_cidr=args.service_cidr, reserved_ips=tuple(args.reserved_ip),
                        persistence=persistence)
    problems = store.load_persisted(persistence.load())
    for problem in problems:
        log.error("a persisted object no longer loads and was dropped: %s", problem)
    log.info("loaded %d objects from %s", len(store.objects), args.state_dir)
    cp = ControlPlane(store)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(cp, args.listen, folders=args.config_dir, stop=stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        log.error("the control plane could not start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
