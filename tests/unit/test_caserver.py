"""CreateCertificate over real gRPC: authentication (lab node credentials, Kubernetes
TokenReview through a fake reviewer), node-scoped authorization, CSR checks, and what is issued."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import SERVICE
from controlplane.ca.authority import CertificateAuthority
from controlplane.ca.identity import SpiffeId
from controlplane.caserver import (
    Caller,
    CertificateService,
    FakeTokenReviewer,
    NodeCredentialAuthenticator,
    PermissionDenied,
    TokenReviewAuthenticator,
    Unauthenticated,
    authorize,
)
from controlplane.server import ControlPlane, FilePersistence
from controlplane.store import ConfigStore, ReportedPod
from tests.unit.test_controlplane_push import Running, start_server

NODE1_CRED = "cred-node1-" + "x" * 20
NODE2_CRED = "cred-node2-" + "y" * 20


def csr_for(uris: list[str], *, dns: tuple[str, ...] = ()) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in dns]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def pod(name: str, node: str, sa: str, ns: str = "default") -> ReportedPod:
    return ReportedPod(uid=name, namespace=ns, name=name, node=node, ip="10.244.1.9", labels={},
                       annotations={}, service_account=sa, owner="", ready=True, phase="Running",
                       ports=(), reporter="lab")


@pytest.fixture
def ca_server(tmp_path: Path) -> Iterator[tuple[Running, CertificateAuthority]]:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    auth = NodeCredentialAuthenticator({NODE1_CRED: "node1", NODE2_CRED: "node2"})
    running = start_server(tmp_path, certificates=lambda store: CertificateService(ca, auth, lambda: store.pods))
    store = running.cp.store
    store.report_pods("lab", [pod("reviews-1", "node1", "bookinfo-reviews"), pod("ratings-1", "node2", "bookinfo-ratings")],
                      [], full=True)
    yield running, ca
    running.shutdown()


def create(running: Running, identity: str, csr: str, credential: str | None, ttl: int = 0) -> pb.CertificateResponse:
    with grpc.insecure_channel(running.target) as chan:
        call = chan.unary_unary(SERVICE + "CreateCertificate", request_serializer=pb.CertificateRequest.SerializeToString,
                                response_deserializer=pb.CertificateResponse.FromString)
        metadata = (("authorization", f"Bearer {credential}"),) if credential is not None else ()
        response: pb.CertificateResponse = call(pb.CertificateRequest(csr=csr, identity=identity, validity_seconds=ttl),
                                                metadata=metadata, timeout=10)
        return response


REVIEWS = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"


def test_the_right_node_gets_a_certificate_that_verifies(ca_server: tuple[Running, CertificateAuthority]) -> None:
    running, ca = ca_server
    resp = create(running, REVIEWS, csr_for([REVIEWS]), NODE1_CRED)
    leaf = x509.load_pem_x509_certificate(resp.cert_chain[0].encode())
    root = x509.load_pem_x509_certificate(resp.cert_chain[-1].encode())
    assert root.public_bytes(serialization.Encoding.PEM) == ca.root_pem
    leaf.verify_directly_issued_by(root)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [REVIEWS]
    assert sans.get_values_for_type(x509.DNSName) == []
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ttl = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert dt.timedelta(hours=23) < ttl <= dt.timedelta(hours=24, minutes=2)


@pytest.mark.parametrize(("credential", "needle"), [(None, "no credential"), ("wrong", "not recognised")])
def test_a_missing_or_bad_credential_is_refused(ca_server: tuple[Running, CertificateAuthority], credential: str | None, needle: str) -> None:
    running, _ = ca_server
    with pytest.raises(grpc.RpcError) as err:
        create(running, REVIEWS, csr_for([REVIEWS]), credential)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert needle in err.value.details()
    assert "wrong" not in err.value.details()  # the credential is never echoed


def test_an_identity_without_a_pod_on_the_callers_node_is_refused(ca_server: tuple[Running, CertificateAuthority]) -> None:
    running, _ = ca_server
    ratings = "spiffe://cluster.local/ns/default/sa/bookinfo-ratings"
    with pytest.raises(grpc.RpcError) as err:
        create(running, ratings, csr_for([ratings]), NODE1_CRED)  # ratings runs on node2
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "node node1 may not obtain a certificate for " + ratings in err.value.details()
    assert "no pod with service account default/bookinfo-ratings runs on it" in err.value.details()
    assert create(running, ratings, csr_for([ratings]), NODE2_CRED).cert_chain


@pytest.mark.parametrize(("uris", "dns", "needle"), [
    ([REVIEWS, "spiffe://cluster.local/ns/default/sa/other"], [], "URI"),
    (["spiffe://cluster.local/ns/default/sa/other"], [], "other"),
    ([REVIEWS], ["evil.example.com"], "DNS"),
    ([], [], "SAN"),
])
def test_csrs_with_extra_or_mismatched_sans_are_refused(ca_server: tuple[Running, CertificateAuthority],
                                                        uris: list[str], dns: list[str], needle: str) -> None:
    running, _ = ca_server
    with pytest.raises(grpc.RpcError) as err:
        create(running, REVIEWS, csr_for(uris, dns=tuple(dns)), NODE1_CRED)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details(), err.value.details()


def test_wrong_trust_domain_and_malformed_identity_are_refused(ca_server: tuple[Running, CertificateAuthority]) -> None:
    running, _ = ca_server
    for identity in ("spiffe://other.td/ns/default/sa/bookinfo-reviews", "not-a-spiffe-id"):
        with pytest.raises(grpc.RpcError) as err:
            create(running, identity, csr_for([identity]), NODE1_CRED)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_token_review_authenticates_ztunnels_and_binds_them_to_their_node() -> None:
    reviewer = FakeTokenReviewer({
        "zt-token": ("system:serviceaccount:istio-system:ztunnel", "node7"),
        "app-token": ("system:serviceaccount:default:curl", "node7"),
    })
    auth = TokenReviewAuthenticator(reviewer)
    assert auth.authenticate("zt-token") == Caller(node="node7", subject="system:serviceaccount:istio-system:ztunnel")
    with pytest.raises(Unauthenticated, match="may not request workload certificates"):
        auth.authenticate("app-token")
    with pytest.raises(Unauthenticated, match="refused by TokenReview"):
        auth.authenticate("forged")
    assert "zt-token" not in repr(reviewer) and "zt-token" not in repr(auth)
    pods = {("default", "p"): pod("p", "node7", "curl")}
    authorize(pods, Caller("node7", "x"), SpiffeId.parse("spiffe://cluster.local/ns/default/sa/curl"))
    with pytest.raises(PermissionDenied):
        authorize(pods, Caller("node8", "x"), SpiffeId.parse("spiffe://cluster.local/ns/default/sa/curl"))


def test_node_credentials_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text('{"node1": "abc"}')
    path.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        NodeCredentialAuthenticator.from_file(path)
    path.chmod(0o600)
    assert NodeCredentialAuthenticator.from_file(path).authenticate("abc").node == "node1"
    assert "abc" not in repr(NodeCredentialAuthenticator.from_file(path))


def test_the_trust_bundle_is_pushed_to_ztunnels(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    store = ConfigStore(persistence=FilePersistence(tmp_path / "objects"))
    cp = ControlPlane(store, certificates=CertificateService(ca, NodeCredentialAuthenticator({}), lambda: store.pods))
    assert cp.book.latest is not None
    bundle = pb.Resource.FromString(cp.book.latest.views["ztunnel"]["ca/trust-bundle"]).trust_bundle
    assert bundle.roots_pem == [ca.root_pem.decode()] and bundle.trust_domain == "cluster.local"
