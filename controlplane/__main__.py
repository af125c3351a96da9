"""``python -m controlplane``: run the control plane (config store, index, push, later the CA)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from controlplane.ca.authority import CAError, CertificateAuthority
from controlplane.caserver import CertificateService, NodeCredentialAuthenticator
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
    parser.add_argument("--trust-domain", default="cluster.local")
    parser.add_argument("--cacerts", type=Path, default=None,
                        help="plug-in CA folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); "
                             "default: a self-signed root kept in STATE_DIR/ca")
    parser.add_argument("--node-credentials", type=Path, default=None,
                        help="JSON {node: credential} (mode 600): enables the CA for the lab's ztunnels")
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
    certificates = None
    if args.node_credentials is not None:
        try:
            ca = (CertificateAuthority.from_cacerts(args.cacerts) if args.cacerts
                  else CertificateAuthority.load_or_create(args.state_dir / "ca", args.trust_domain))
            authenticator = NodeCredentialAuthenticator.from_file(args.node_credentials)
        except (CAError, OSError, ValueError) as exc:
            log.error("the CA could not start: %s", exc)
            return 2
        certificates = CertificateService(ca, authenticator, lambda: store.pods)
        log.info("CA ready for trust domain %s", ca.trust_domain)
    cp = ControlPlane(store, certificates=certificates)

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
