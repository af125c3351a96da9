"""The real :class:`~ztunnel.identity.CertificateSource`: the control plane's CA over gRPC,
authenticated with this node's bearer credential (never logged).

gRPC's sync API runs in a worker thread so the trio loop never blocks.
"""

from __future__ import annotations

import grpc
import trio

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import SERVICE, channel
from ztunnel.config import Config
from ztunnel.identity import CertificateBundle, CertificateUnavailable, Identity

CALL_TIMEOUT_S = 10.0


class GrpcCertificateSource:
    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self._channel = channel(cfg.controlplane)
        self._call = self._channel.unary_unary(
            SERVICE + "CreateCertificate", request_serializer=pb.CertificateRequest.SerializeToString,
            response_deserializer=pb.CertificateResponse.FromString,
        )

    def __repr__(self) -> str:
        return f"GrpcCertificateSource({self._cfg.controlplane!r}, node={self._cfg.node!r})"

    async def create_certificate(self, csr_pem: bytes, identity: Identity, ttl_s: float) -> CertificateBundle:
        request = pb.CertificateRequest(csr=csr_pem.decode(), validity_seconds=int(ttl_s), identity=str(identity))
        metadata = (("authorization", f"Bearer {self._cfg.credential()}"),)

        def call() -> pb.CertificateResponse:
            response: pb.CertificateResponse = self._call(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
            return response

        try:
            response = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
        except grpc.RpcError as exc:
            raise CertificateUnavailable(
                f"the CA at {self._cfg.controlplane} refused or failed ({exc.code().name}): {exc.details()}"
            ) from None
        chain = [c.encode() for c in response.cert_chain]
        if not chain:
            raise CertificateUnavailable("the CA answered with an empty certificate chain")
        return CertificateBundle(cert_pem=chain[0], chain_pem=tuple(chain[1:]))

    def close(self) -> None:
        self._channel.close()
