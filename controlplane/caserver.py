"""The CA's front door: who is asking (authentication), whether they may have the identity they
ask for (node-scoped authorization, as Istio does it for ztunnels), and the
``CreateCertificate`` RPC that puts it together with the CA.

Authentication takes a bearer credential from the ``authorization`` metadata:

- :class:`NodeCredentialAuthenticator`: the lab provisions one random credential per node.
- :class:`TokenReviewAuthenticator`: on Kubernetes, the caller's ServiceAccount token is sent to
  a :class:`TokenReviewer` (the API server's TokenReview); the ztunnel's service account is
  required and the node comes from the token's bound-pod claims. :class:`FakeTokenReviewer`
  stands in for the API server in tests.

Authorization: a caller on node N may obtain ``spiffe://td/ns/X/sa/Y`` only while a pod with
service account X/Y runs on N (from the kubelet's pod reports). Credentials never appear in
messages or logs.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import grpc

from controlplane.api import mesh_pb2 as pb
from controlplane.ca.authority import CertificateAuthority, CSRRejected
from controlplane.ca.identity import InvalidIdentity, SpiffeId
from controlplane.store import ReportedPod

log = logging.getLogger("controlplane.ca")

ZTUNNEL_SERVICE_ACCOUNT = "system:serviceaccount:istio-system:ztunnel"
NODE_NAME_CLAIM = "authentication.kubernetes.io/node-name"


class Unauthenticated(Exception):
    """The caller's credential is missing or not recognised (the message never contains it)."""


class PermissionDenied(Exception):
    """The caller may not have the identity it asked for."""


@dataclass(frozen=True, slots=True)
class Caller:
    node: str
    subject: str  # who, for logs: "node credential of node1", "system:serviceaccount:…"


class Authenticator(Protocol):
    def authenticate(self, credential: str) -> Caller: ...


@dataclass(frozen=True)
class NodeCredentialAuthenticator:
    """The lab's per-node credentials: ``{credential: node}``."""

    credentials: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_file(cls, path: Path) -> NodeCredentialAuthenticator:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"{path} is readable by group or others (mode {stat.filemode(mode)}); it holds credentials: chmod 600 it")
        data = json.loads(path.read_text())
        return cls({str(cred): str(node) for node, cred in data.items()})

    def authenticate(self, credential: str) -> Caller:
        for known, node in self.credentials.items():
            if hmac.compare_digest(known.encode(), credential.encode()):
                return Caller(node=node, subject=f"node credential of {node}")
        raise Unauthenticated("the node credential is not recognised")


@dataclass(frozen=True, slots=True)
class TokenReviewStatus:
    authenticated: bool
    username: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    error: str = ""


class TokenReviewer(Protocol):
    def review(self, token: str) -> TokenReviewStatus: ...


@dataclass
class FakeTokenReviewer:
    """Stands in for the API server's TokenReview: ``tokens`` maps a token to
    (username, node the token's pod is bound to). Records how many reviews it did."""

    tokens: dict[str, tuple[str, str]] = field(repr=False)
    reviews: int = 0

    def review(self, token: str) -> TokenReviewStatus:
        self.reviews += 1
        known = self.tokens.get(token)
        if known is None:
            return TokenReviewStatus(authenticated=False, error="token not valid")
        username, node = known
        return TokenReviewStatus(authenticated=True, username=username, extra={NODE_NAME_CLAIM: (node,)})


@dataclass(frozen=True)
class TokenReviewAuthenticator:
    reviewer: TokenReviewer
    allowed: frozenset[str] = frozenset({ZTUNNEL_SERVICE_ACCOUNT})

    def authenticate(self, credential: str) -> Caller:
        status = self.reviewer.review(credential)
        if not status.authenticated:
            raise Unauthenticated(f"the token was refused by TokenReview: {status.error or 'not authenticated'}")
        if status.username not in self.allowed:
            raise Unauthenticated(
                f"{status.username} may not request workload certificates (only {', '.join(sorted(self.allowed))})"
            )
        nodes = status.extra.get(NODE_NAME_CLAIM, ())
        if len(nodes) != 1 or not nodes[0]:
            raise Unauthenticated(f"the token of {status.username} is not bound to a pod on a node (no {NODE_NAME_CLAIM})")
        return Caller(node=nodes[0], subject=status.username)


def authorize(pods: Mapping[tuple[str, str], ReportedPod], caller: Caller, identity: SpiffeId) -> None:
    """Node-scoped authorization: a pod with the identity's service account must run on the
    caller's node."""
    for pod in pods.values():
        if (pod.node == caller.node and pod.namespace == identity.namespace
                and (pod.service_account or "default") == identity.service_account
                and pod.phase not in ("Succeeded", "Failed")):
            return
    raise PermissionDenied(
        f"node {caller.node} may not obtain a certificate for {identity}: no pod with service account "
        f"{identity.namespace}/{identity.service_account} runs on it"
    )


def bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, credential = text.partition(" ")
            if scheme.lower() == "bearer" and credential:
                return credential
            raise Unauthenticated("the authorization metadata is not 'Bearer <credential>'")
    raise Unauthenticated("no credential: send 'authorization: Bearer <credential>' metadata")


@dataclass
class CertificateService:
    """``CreateCertificate``: authenticate, authorize against the current pods, sign."""

    ca: CertificateAuthority
    authenticator: Authenticator
    pods: object  # a callable returning the current pods mapping (the store's)
    issued: int = 0

    async def create_certificate(self, request: pb.CertificateRequest, context: grpc.aio.ServicerContext) -> pb.CertificateResponse:
        try:
            caller = self.authenticator.authenticate(bearer(context.invocation_metadata()))
        except Unauthenticated as exc:
            log.warning("certificate request refused: %s (peer %s)", exc, context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise AssertionError("unreachable") from None
        try:
            identity = SpiffeId.parse(request.identity)
        except InvalidIdentity as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        if identity.trust_domain != self.ca.trust_domain:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{identity} is not in this CA's trust domain {self.ca.trust_domain}")
        try:
            authorize(self.pods(), caller, identity)  # type: ignore[operator]
        except PermissionDenied as exc:
            log.warning("certificate request refused: %s (%s)", exc, caller.subject)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            raise AssertionError("unreachable") from None
        ttl = timedelta(seconds=request.validity_seconds) if request.validity_seconds else None
        try:
            issued = self.ca.sign(request.csr.encode(), identity, ttl)
        except CSRRejected as exc:
            log.warning("certificate request for %s from %s refused: %s", identity, caller.subject, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        self.issued += 1
        log.info("issued certificate serial %x for %s to %s, valid until %s",
                 issued.serial, identity, caller.subject, issued.not_after.isoformat())
        return pb.CertificateResponse(cert_chain=[issued.cert_pem.decode(), *(c.decode() for c in issued.chain_pem)])


def write_private_json(path: Path, data: object) -> None:
    """Write credentials readable by the owner only (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
