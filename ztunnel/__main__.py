"""``python -m ztunnel``: run a node's ztunnel (in the node's network namespace)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio

from ztunnel.agent import Agent
from ztunnel.capture import CaptureUnavailable
from ztunnel.config import DEFAULT_ADMIN_ADDRESS, DEFAULT_TRUST_DOMAIN, Config, ConfigError
from ztunnel.lifecycle import serve_until_signal
from ztunnel.sockets import raise_open_files_limit

log = logging.getLogger("ztunnel")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ztunnel", description=__doc__)
    parser.add_argument("--node", required=True)
    parser.add_argument("--controlplane", required=True, help="gRPC target of the control plane")
    parser.add_argument("--credential-file", type=Path, required=True, help="this node's CA credential (mode 600)")
    parser.add_argument("--admin-port", type=int, default=DEFAULT_ADMIN_ADDRESS[1])
    parser.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    parser.add_argument("--capture", action="store_true", help="load the tc capture and serve 15001/15006")
    parser.add_argument("--bpf-prefix", default="", help="pin folder name under /sys/fs/bpf (default mesh-<node>)")
    parser.add_argument("--uplink", default="eth0", help="the node's interface towards other nodes")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove the capture on shutdown (default: keep it so a restarted ztunnel takes over)")
    parser.add_argument("--drain-seconds", type=float, default=5.0,
                        help="on SIGTERM, how long open tunnels may finish after GOAWAY")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_open_files_limit()
    try:
        cfg = Config(node=args.node, controlplane=args.controlplane, credential_file=args.credential_file,
                     admin_address=(DEFAULT_ADMIN_ADDRESS[0], args.admin_port), trust_domain=args.trust_domain,
                     capture=args.capture, bpf_prefix=args.bpf_prefix, uplink=args.uplink, cleanup=args.cleanup)
        cfg.credential()
    except ConfigError as exc:
        log.error("ztunnel cannot start: %s", exc)
        return 2

    code = 0
    try:
        trio.run(serve_until_signal, lambda: Agent(cfg), args.drain_seconds, "draining HBONE connections", log)
    except* CaptureUnavailable as group:
        for unavailable in _leaves(group):
            log.error("ztunnel cannot capture traffic on this machine: %s", unavailable)
        code = 2
    except* OSError as group:
        for failed in _leaves(group):
            log.error("ztunnel could not start: %s (is another ztunnel using its ports?)", failed)
        code = 1
    return code


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


if __name__ == "__main__":
    sys.exit(main())
