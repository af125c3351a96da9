"""The waypoint deployment controller: a Gateway of class istio-waypoint brings its
ServiceAccount, Deployment and Service into the store (and out again), the index gives services
bound to it the waypoint's VIP, persistence does not derive twice, and the lab runs the
Deployment's pod as ``python -m waypoint`` with the control plane's address and its node's
credential."""

from __future__ import annotations

import ipaddress
import json
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

import pytest

from controlplane import gatewaydeploy
from controlplane.api import mesh_pb2 as pb
from controlplane.gatewaydeploy import (
    GATEWAY_NAME_LABEL,
    MANAGED_LABEL,
    MANAGED_VALUE,
    WAYPOINT_IMAGE,
)
from controlplane.index import Index
from controlplane.k8s.loader import load_documents
from controlplane.k8s.objects import Deployment, EnvVar, HTTPGetAction, Service, ServiceAccount
from controlplane.store import GATEWAY_KEY, ConfigStore, ObjectKey
from meshctl.lab.cluster import Cluster, StartPod
from meshctl.lab.config import LabConfig
from meshctl.lab.images import argv_for, builtin_for
from meshctl.lab.kubelet import controlplane_target, node_credential_file
from meshctl.lab.naming import node_addressing
from meshctl.lab.runtime import PodRuntime, lab_environment

SOURCE = "waypoint controller (Gateway default/waypoint)"
DERIVED: list[ObjectKey] = [("ServiceAccount", "default", "waypoint"), ("Deployment", "default", "waypoint"),
                            ("Service", "default", "waypoint")]


def gateway(name: str = "waypoint", ns: str = "default", cls: str = "istio-waypoint", serves: str = "service") -> str:
    return textwrap.dedent(f"""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {{name: {name}, namespace: {ns}, labels: {{istio.io/waypoint-for: {serves}}}}}
        spec:
          gatewayClassName: {cls}
          listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
        """)


REVIEWS = textwrap.dedent("""\
    apiVersion: v1
    kind: Service
    metadata: {name: reviews, namespace: default, labels: {istio.io/use-waypoint: waypoint}}
    spec:
      selector: {app: reviews}
      ports: [{name: http, port: 9080}]
    """)


class Recording:
    def __init__(self) -> None:
        self.files: dict[ObjectKey, tuple[Mapping[str, Any], str]] = {}
        self.saves = 0

    def save(self, key: ObjectKey, document: Mapping[str, Any], source: str) -> None:
        self.files[key] = (json.loads(json.dumps(document)), source)
        self.saves += 1

    def remove(self, key: ObjectKey) -> None:
        self.files.pop(key, None)


def results(store: ConfigStore, text: str, **kw: Any) -> list[dict[str, str]]:
    return [r.as_dict() for r in store.apply_text(text, "test.yaml", **kw)]


def test_a_waypoint_gateway_brings_its_service_account_deployment_and_service() -> None:
    store = ConfigStore()
    assert results(store, gateway()) == [{"object": "gateway.gateway.networking.k8s.io/waypoint", "result": "created"}]
    for key in DERIVED:
        assert store.objects[key].source == SOURCE
    managed = {GATEWAY_NAME_LABEL: "waypoint", MANAGED_LABEL: MANAGED_VALUE}

    sa = store.objects[DERIVED[0]].obj
    assert isinstance(sa, ServiceAccount) and dict(sa.meta.labels) == {GATEWAY_NAME_LABEL: "waypoint"}

    deploy = store.objects[DERIVED[1]].obj
    assert isinstance(deploy, Deployment)
    assert dict(deploy.meta.labels) == managed and deploy.replicas == 1
    assert dict(deploy.selector.match_labels) == {GATEWAY_NAME_LABEL: "waypoint"}
    assert dict(deploy.template.labels) == {
        **managed, "istio.io/dataplane-mode": "none", "sidecar.istio.io/inject": "false",
        "service.istio.io/canonical-name": "waypoint", "service.istio.io/canonical-revision": "latest"}
    spec = deploy.template.spec
    assert spec.service_account_name == "waypoint" and spec.termination_grace_period_seconds == 2
    (container,) = spec.containers
    assert container.image == WAYPOINT_IMAGE and not container.command and not container.args
    assert container.env == (
        EnvVar("POD_NAME", None, "metadata.name"), EnvVar("POD_NAMESPACE", None, "metadata.namespace"),
        EnvVar("NODE_NAME", None, "spec.nodeName"), EnvVar("INSTANCE_IP", None, "status.podIP"),
        EnvVar("SERVICE_ACCOUNT", None, "spec.serviceAccountName"), EnvVar("GATEWAY_NAME", "waypoint"))
    assert [(p.name, p.container_port) for p in container.ports] == [("mesh", 15008), ("status-port", 15021)]
    probe = container.readiness_probe
    assert probe is not None and probe.action == HTTPGetAction(port=15021, path="/healthz/ready")

    svc = store.objects[DERIVED[2]].obj
    assert isinstance(svc, Service)
    assert dict(svc.meta.labels) == managed and dict(svc.selector or {}) == {GATEWAY_NAME_LABEL: "waypoint"}
    assert [(p.name, p.port, p.target_port, p.app_protocol) for p in svc.ports] == [
        ("status-port", 15021, 15021, "tcp"), ("mesh", 15008, 15008, "hbone")]
    assert svc.cluster_ip is not None and ipaddress.ip_address(svc.cluster_ip) in ipaddress.ip_network("10.96.0.0/16")
    assert store.objects[DERIVED[2]].document["spec"]["clusterIP"] == svc.cluster_ip


def test_the_ztunnel_view_gives_bound_services_the_waypoint_vip_and_the_kubelet_gets_the_objects() -> None:
    store = ConfigStore()
    results(store, gateway() + "---\n" + REVIEWS)
    vip = store.objects[DERIVED[2]].obj.cluster_ip
    snap = Index().build(store.snapshot())
    res = pb.Resource.FromString(snap.views["ztunnel"]["service/default/reviews.default.svc.cluster.local"])
    wp = res.address.service.waypoint
    assert (wp.hostname, wp.namespace, wp.hbone_port) == ("waypoint.default.svc.cluster.local", "default", 15008)
    assert wp.address == ipaddress.ip_address(vip).packed
    assert "waypoint/default/waypoint" in snap.views
    kubelet = snap.views["kubelet"]
    for kind, ns, name in DERIVED:
        assert f"kube/{kind}/{ns}/{name}" in kubelet
    # the lab's kubelet loads what it is pushed with the Kubernetes loader: no failure, no warning
    kube = pb.Resource.FromString(kubelet["kube/Deployment/default/waypoint"]).kube
    loaded = load_documents(kube.json, "push")
    assert not loaded.errors and not loaded.warnings
    assert loaded.objects == [store.objects[DERIVED[1]].obj]


def test_deleting_the_gateway_or_changing_its_class_removes_its_objects() -> None:
    store = ConfigStore()
    results(store, gateway())
    assert results(store, gateway(), delete=True) == [
        {"object": "gateway.gateway.networking.k8s.io/waypoint", "result": "deleted"}]
    assert not any(k in store.objects for k in DERIVED)
    results(store, gateway())
    assert results(store, gateway(cls="istio")) == [
        {"object": "gateway.gateway.networking.k8s.io/waypoint", "result": "configured"}]
    assert not any(k in store.objects for k in DERIVED)
    assert (GATEWAY_KEY, "default", "waypoint") in store.objects


def test_other_gateway_classes_and_dry_runs_create_nothing() -> None:
    store = ConfigStore()
    before = dict(store.objects)
    assert results(store, gateway(cls="istio"))[0]["result"] == "created"
    assert set(store.objects) - set(before) == {(GATEWAY_KEY, "default", "waypoint")}
    store = ConfigStore()
    revision = store.revision
    assert results(store, gateway(), dry_run=True) == [
        {"object": "gateway.gateway.networking.k8s.io/waypoint", "result": "created"}]
    assert store.objects == before and store.revision == revision
    results(store, gateway())
    revision = store.revision
    assert results(store, gateway(), delete=True, dry_run=True)[0]["result"] == "deleted"
    assert all(k in store.objects for k in DERIVED) and store.revision == revision


def test_reapplying_is_unchanged_and_repairs_nothing_when_nothing_changed() -> None:
    store = ConfigStore()
    results(store, gateway())
    revision, vip = store.revision, store.objects[DERIVED[2]].obj.cluster_ip
    assert results(store, gateway())[0]["result"] == "unchanged"
    assert store.revision == revision
    results(store, gateway(serves="all"))
    assert store.objects[DERIVED[2]].obj.cluster_ip == vip  # the waypoint keeps its address


def test_the_controllers_objects_are_not_changed_directly_while_the_gateway_exists() -> None:
    store = ConfigStore()
    results(store, gateway())
    kept = dict(store.objects)
    revision = store.revision
    sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: waypoint, namespace: default, labels: {a: b}}\n"
    for kw in ({}, {"delete": True}):
        assert results(store, sa, **kw) == [
            {"object": "serviceaccount/waypoint", "result": "unchanged"},
            {"object": "serviceaccount/waypoint", "warning": (
                "serviceaccount/waypoint: ServiceAccount default/waypoint is managed by the waypoint controller for "
                "Gateway default/waypoint and was left as it is; change or delete the Gateway instead")},
        ]
    assert store.objects == kept and store.revision == revision
    # deleting the namespace takes everything
    results(store, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
    results(store, gateway(ns="shop"))
    assert ("Deployment", "shop", "waypoint") in store.objects
    results(store, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", delete=True)
    assert not [k for k in store.objects if k[1] == "shop"]


def test_an_existing_object_is_taken_over_with_a_warning() -> None:
    store = ConfigStore()
    results(store, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: waypoint, namespace: default}\n")
    out = results(store, gateway())
    assert out[0]["result"] == "created"
    assert out[1]["warning"].startswith("gateway.gateway.networking.k8s.io/waypoint: the waypoint controller took "
                                        "over ServiceAccount default/waypoint (applied from test.yaml)")
    assert store.objects[DERIVED[0]].source == SOURCE


def test_a_waypoint_whose_objects_cannot_be_made_is_refused_whole() -> None:
    store = ConfigStore()
    before = dict(store.objects)
    (res,) = results(store, gateway(name="my.waypoint"))
    assert "the waypoint's objects cannot be made: Service default/my.waypoint" in res["error"]
    assert "must be a DNS-1035 label" in res["error"]
    assert store.objects == before
    # a Service the controller cannot take over (headless) refuses the Gateway, nothing changes
    results(store, "apiVersion: v1\nkind: Service\nmetadata: {name: waypoint}\nspec: {clusterIP: None}\n")
    before = dict(store.objects)
    (res,) = results(store, gateway())
    assert res["error"].startswith("gateway.gateway.networking.k8s.io/waypoint: the waypoint's Service "
                                   "default/waypoint cannot be made: spec.clusterIP")
    assert store.objects == before


def test_a_restart_reloads_the_objects_without_deriving_them_again() -> None:
    disk = Recording()
    store = ConfigStore(persistence=disk)
    results(store, gateway() + "---\n" + REVIEWS)
    assert {disk.files[k][1] for k in DERIVED} == {SOURCE}
    entries = list(disk.files.values())

    again_disk = Recording()
    again = ConfigStore(persistence=again_disk)
    assert again.load_persisted(entries) == []
    assert again_disk.saves == len(entries)  # each persisted object once, nothing derived on top
    assert {k: (s.obj, s.source) for k, s in again.objects.items()} == {
        k: (s.obj, s.source) for k, s in store.objects.items()}

    # a persisted Gateway without its objects gets them; objects without their Gateway go
    only_gateway = [(d, s) for d, s in entries if d["kind"] == "Gateway"]
    third = ConfigStore()
    assert third.load_persisted(only_gateway) == []
    assert all(third.objects[k].source == SOURCE for k in DERIVED)
    orphans = [(d, s) for d, s in entries if s == SOURCE]
    fourth = ConfigStore()
    assert fourth.load_persisted(orphans) == []
    assert not any(k in fourth.objects for k in DERIVED)


def test_waypoint_objects_follow_the_listeners() -> None:
    loaded = load_documents(textwrap.dedent("""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: wp, namespace: ns1}
        spec:
          gatewayClassName: istio-waypoint
          listeners:
          - {name: proxy.protocol, port: 15001, protocol: example.com/proxy}
          - {name: http, port: 8080, protocol: HTTP}
        """), "t", kinds="all")
    (item,) = loaded.items
    (_, _, (svc, doc)) = gatewaydeploy.waypoint_objects(item.obj)  # type: ignore[arg-type]
    assert isinstance(svc, Service)
    assert [(p.name, p.port, p.app_protocol) for p in svc.ports] == [
        ("status-port", 15021, "tcp"), ("port-0", 15001, "example.com/proxy"), ("http", 8080, "http"),
        ("mesh", 15008, "hbone")]
    assert doc["metadata"]["namespace"] == "ns1"
    assert gatewaydeploy.owner_of(gatewaydeploy.controller_source("ns1", "wp")) == ("ns1", "wp")
    assert gatewaydeploy.owner_of("test.yaml") is None


# --- the lab --------------------------------------------------------------------------------------------


def test_the_lab_runs_the_waypoint_image_with_the_controlplane_and_the_node_credential() -> None:
    builtin = builtin_for(WAYPOINT_IMAGE)
    assert builtin is not None and (builtin.module, builtin.port, builtin.controlplane_access) == (
        "waypoint", 15008, True)
    cfg = LabConfig(name="mlab", nodes=2)
    assert lab_environment(cfg, "node2", builtin) == {
        "MESH_CONTROLPLANE": controlplane_target(cfg),
        "MESH_CREDENTIAL_FILE": str(node_credential_file(cfg, "node2"))}
    bookinfo = builtin_for("docker.io/istio/examples-bookinfo-details-v1:1.20.1")
    assert lab_environment(cfg, "node2", bookinfo) == {} and lab_environment(cfg, "node2", None) == {}

    # the control plane's objects, as the lab's kubelet takes them, make a pod running python -m waypoint
    store = ConfigStore()
    results(store, gateway())
    cluster = Cluster(cfg)
    for key in DERIVED:
        cluster.apply(store.objects[key].obj)
    (start,) = [a for a in cluster.reconcile() if isinstance(a, StartPod)]
    pod = start.pod
    assert pod.labels["istio.io/dataplane-mode"] == "none" and pod.spec.service_account_name == "waypoint"
    (container,) = pod.spec.containers
    argv, image_env, used = argv_for(container)
    assert argv == [sys.executable, "-m", "waypoint"] and used == builtin
    node_index = int(pod.node.removeprefix("node"))
    runtime = PodRuntime(cfg, pod, node_addressing(cfg, node_index), lambda: None)
    env = runtime._environment(container, image_env, used)
    assert {k: env[k] for k in ("POD_NAME", "POD_NAMESPACE", "NODE_NAME", "INSTANCE_IP", "SERVICE_ACCOUNT",
                                "GATEWAY_NAME", "MESH_CONTROLPLANE", "MESH_CREDENTIAL_FILE")} == {
        "POD_NAME": pod.name, "POD_NAMESPACE": "default", "NODE_NAME": pod.node, "INSTANCE_IP": pod.ip,
        "SERVICE_ACCOUNT": "waypoint", "GATEWAY_NAME": "waypoint",
        "MESH_CONTROLPLANE": f"unix://{cfg.state_dir}/controlplane.sock",
        "MESH_CREDENTIAL_FILE": f"{cfg.state_dir}/credentials/{pod.node}",
    }


@pytest.mark.parametrize("image", [WAYPOINT_IMAGE, f"{WAYPOINT_IMAGE}@sha256:abc"])
def test_the_waypoint_image_is_known_with_or_without_a_digest(image: str) -> None:
    assert builtin_for(image) is not None
    assert builtin_for("ambient-mesh/waypoint:other") is None
