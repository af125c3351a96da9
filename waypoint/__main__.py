"""``python -m waypoint``: run a namespace's waypoint (inside its pod's network namespace).

Settings come from flags or, as a Kubernetes Deployment gives them, from the environment:
``GATEWAY_NAME``, ``POD_NAMESPACE``, ``POD_NAME``, ``NODE_NAME``, ``SERVICE_ACCOUNT``,
``MESH_CONTROLPLANE`` (the control plane's gRPC target), ``MESH_CREDENTIAL_FILE`` (the bearer
credential for the CA, mode 600), ``TRUST_DOMAIN``, ``ZIPKIN_URL``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import trio

from waypoint.agent import Agent, WaypointConfig
from ztunnel.config import ConfigError
from ztunnel.identity import IdentityError
from ztunnel.lifecycle import serve_until_signal
from ztunnel.sockets import raise_open_files_limit

log = logging.getLogger("waypoint")


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m waypoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=env.get("GATEWAY_NAME", ""), help="the waypoint Gateway's name")
    parser.add_argument("--namespace", default=env.get("POD_NAMESPACE", ""))
    parser.add_argument("--pod", default=env.get("POD_NAME", ""))
    parser.add_argument("--node", default=env.get("NODE_NAME", ""))
    parser.add_argument("--service-account", default=env.get("SERVICE_ACCOUNT", ""))
    parser.add_argument("--controlplane", default=env.get("MESH_CONTROLPLANE", ""))
    parser.add_argument("--credential-file", default=env.get("MESH_CREDENTIAL_FILE", ""))
    parser.add_argument("--trust-domain", default=env.get("TRUST_DOMAIN", "cluster.local"))
    parser.add_argument("--zipkin", default=env.get("ZIPKIN_URL", ""),
                        help="Zipkin v2 spans URL (default: zipkin.istio-system:9411 when that Service exists)")
    parser.add_argument("--drain-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = [flag for flag, value in (("--name/GATEWAY_NAME", args.name), ("--namespace/POD_NAMESPACE", args.namespace),
                                        ("--node/NODE_NAME", args.node), ("--controlplane/MESH_CONTROLPLANE", args.controlplane),
                                        ("--credential-file/MESH_CREDENTIAL_FILE", args.credential_file)) if not value]
    if missing:
        log.error("waypoint cannot start: missing %s", ", ".join(missing))
        return 2
    raise_open_files_limit()
    try:
        cfg = WaypointConfig(name=args.name, namespace=args.namespace, node=args.node, pod=args.pod or args.name,
                             service_account=args.service_account or args.name, controlplane=args.controlplane,
                             credential_file=Path(args.credential_file), trust_domain=args.trust_domain,
                             zipkin_url=args.zipkin)
        cfg.identity  # noqa: B018 - validates the identity's parts
        cfg.ztunnel_config().credential()
    except (ConfigError, IdentityError) as exc:
        log.error("waypoint cannot start: %s", exc)
        return 2

    code = 0
    try:
        trio.run(serve_until_signal, lambda: Agent(cfg), args.drain_seconds, "draining", log)
    except* OSError as group:
        for failed in group.exceptions:
            log.error("waypoint could not start: %s (is something else using its ports?)", failed)
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
