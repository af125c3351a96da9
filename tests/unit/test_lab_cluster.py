"""The lab's cluster model and kube-proxy rules, without namespaces or processes."""

from __future__ import annotations

import itertools

import pytest

from controlplane.k8s.objects import (
    Container,
    ContainerPort,
    Deployment,
    LabelSelector,
    Namespace,
    ObjectMeta,
    Pod,
    PodSpec,
    PodTemplate,
    Service,
    ServiceAccount,
    ServicePort,
)
from meshctl.lab.cluster import ApplyError, Cluster, StartPod, StopPod, template_hash
from meshctl.lab.config import LabConfig, LabConfigError
from meshctl.lab.kubeproxy import Endpoint, ServiceRule, render
from meshctl.lab.naming import is_lab_netns, node_addressing, pod_host_veth


def deployment(name: str, replicas: int = 1, *, ns: str = "default", sa: str = "default",
               labels: dict[str, str] | None = None, image: str = "busybox",
               ports: tuple[ContainerPort, ...] = ()) -> Deployment:
    labels = labels or {"app": name}
    spec = PodSpec(containers=(Container(name="c", image=image, command=("sleep", "1"), ports=ports),),
                   service_account_name=sa)
    return Deployment(
        meta=ObjectMeta(name=name, namespace=ns), replicas=replicas,
        selector=LabelSelector(match_labels=labels),
        template=PodTemplate(labels=labels, annotations={}, spec=spec),
    )


def service(name: str, *, ns: str = "default", target: int | str = 8080, selector: dict[str, str] | None = None,
            cluster_ip: str | None = None) -> Service:
    return Service(meta=ObjectMeta(name=name, namespace=ns), cluster_ip=cluster_ip,
                   ports=(ServicePort(name="http", port=80, target_port=target),),
                   selector=selector or {"app": name})


def mark_ready(cluster: Cluster) -> None:
    for p in cluster.pods.values():
        if p.phase != "Terminating":
            p.phase = "Running"
            for c in p.containers.values():
                c.state, c.ready = "running", True


@pytest.fixture
def cluster() -> Cluster:
    names = (f"s{i:04d}" for i in itertools.count())
    ticks = itertools.count()
    return Cluster(LabConfig(nodes=2), clock=lambda: float(next(ticks)),
                   random_suffix=lambda: next(names))


def test_deployment_pods_are_named_like_kubernetes_and_spread_over_nodes(cluster: Cluster) -> None:
    dep = deployment("reviews-v1", replicas=4)
    assert cluster.apply(dep) == "created"
    actions = cluster.reconcile()
    assert len(actions) == 4 and all(isinstance(a, StartPod) for a in actions)
    names = sorted(p.name for p in cluster.pods.values())
    h = template_hash(dep)
    assert names == [f"reviews-v1-{h}-s000{i}" for i in range(4)]
    assert len(h) == 10
    nodes = sorted(p.node for p in cluster.pods.values())
    assert nodes == ["node1", "node1", "node2", "node2"]
    ips = {p.ip for p in cluster.pods.values()}
    assert len(ips) == 4
    for p in cluster.pods.values():
        assert p.ip.startswith("10.244.1." if p.node == "node1" else "10.244.2.")
    assert cluster.reconcile() == []  # nothing more to do


def test_reapplying_is_unchanged_and_template_change_replaces_pods(cluster: Cluster) -> None:
    cluster.apply(deployment("web", 2))
    cluster.reconcile()
    assert cluster.apply(deployment("web", 2)) == "unchanged"
    assert cluster.apply(deployment("web", 2, image="other")) == "configured"
    actions = cluster.reconcile()
    assert sum(isinstance(a, StopPod) for a in actions) == 2
    assert sum(isinstance(a, StartPod) for a in actions) == 2


def test_scale_down_stops_extra_pods_and_gone_pods_free_their_address(cluster: Cluster) -> None:
    cluster.apply(deployment("web", 3))
    cluster.reconcile()
    cluster.apply(deployment("web", 1))
    stops = [a for a in cluster.reconcile() if isinstance(a, StopPod)]
    assert len(stops) == 2
    for a in stops:
        cluster.pod_gone(a.pod)
    assert len(cluster.pods) == 1


def test_missing_service_account_keeps_pod_pending_until_it_exists(cluster: Cluster) -> None:
    cluster.apply(deployment("ratings", sa="bookinfo-ratings"))
    assert cluster.reconcile() == []
    (pod,) = cluster.pods.values()
    assert 'serviceaccount "bookinfo-ratings" not found' in pod.message
    cluster.apply(ServiceAccount(meta=ObjectMeta(name="bookinfo-ratings")))
    (action,) = cluster.reconcile()
    assert isinstance(action, StartPod) and action.pod is pod and pod.message == ""


def test_objects_in_a_missing_namespace_are_refused(cluster: Cluster) -> None:
    with pytest.raises(ApplyError, match='namespaces "shop" not found'):
        cluster.apply(deployment("web", ns="shop"))
    cluster.apply(Namespace(meta=ObjectMeta(name="shop", namespace="")))
    assert cluster.apply(deployment("web", ns="shop")) == "created"
    assert ("shop", "default") in cluster.service_accounts


def test_service_endpoints_follow_readiness_selector_and_named_target_ports(cluster: Cluster) -> None:
    cluster.apply(deployment("api", 2, ports=(ContainerPort(name="web", container_port=8081),)))
    cluster.apply(deployment("other", 1))
    cluster.apply(service("api", target="web"))
    cluster.reconcile()
    (rule,) = cluster.service_rules()
    assert rule.endpoints == ()  # nothing ready yet
    mark_ready(cluster)
    (rule,) = cluster.service_rules()
    assert sorted(e.port for e in rule.endpoints) == [8081, 8081]
    api_ips = {p.ip for p in cluster.pods.values() if p.labels["app"] == "api"}
    assert {e.ip for e in rule.endpoints} == api_ips
    # a named targetPort the pods do not declare leaves them out
    cluster.apply(service("api", target="grpc"))
    (rule,) = cluster.service_rules()
    assert rule.endpoints == ()


def test_cluster_ips_are_stable_reserved_and_immutable(cluster: Cluster) -> None:
    cluster.apply(service("a"))
    ip = cluster.cluster_ips[("default", "a")]
    assert ip.startswith("10.96.") and ip not in ("10.96.0.10", "10.96.0.1")
    again = Cluster(LabConfig(nodes=2))
    again.apply(service("a"))
    assert again.cluster_ips[("default", "a")] == ip
    with pytest.raises(ApplyError, match="field is immutable"):
        cluster.apply(service("a", cluster_ip="10.96.5.5"))
    with pytest.raises(ApplyError, match="already allocated"):
        cluster.apply(service("b", cluster_ip=ip))
    with pytest.raises(ApplyError, match="not in the valid range"):
        cluster.apply(service("c", cluster_ip="10.1.2.3"))


def test_dns_zone_lists_services_and_headless_endpoints(cluster: Cluster) -> None:
    cluster.apply(deployment("db", 2))
    cluster.apply(Service(meta=ObjectMeta(name="db"), headless=True,
                          ports=(ServicePort(name="pg", port=5432, target_port=5432),),
                          selector={"app": "db"}))
    cluster.reconcile()
    mark_ready(cluster)
    zone = cluster.zone()
    rec = zone.services[("default", "db")]
    assert rec.cluster_ip is None and len(rec.endpoints) == 2
    assert cluster.service_rules() == []  # headless: no VIP, no kube-proxy rule


def test_pods_are_found_by_name_namespace_and_deployment(cluster: Cluster) -> None:
    cluster.apply(deployment("curl"))
    cluster.apply(Pod(meta=ObjectMeta(name="solo"), spec=PodSpec(containers=(Container(name="c", image="x", command=("true",)),))))
    cluster.reconcile()
    (curl,) = [p for p in cluster.pods.values() if p.owner]
    assert cluster.find_pods("curl") == [curl]
    assert cluster.find_pods("deploy/curl") == [curl]
    assert cluster.find_pods(f"default/{curl.name}") == [curl]
    assert [p.name for p in cluster.find_pods("solo")] == ["solo"]
    assert cluster.find_pods("nope") == []
    assert cluster.find_pods("other/curl") == []


def test_deleting_an_owned_pod_gets_it_replaced(cluster: Cluster) -> None:
    cluster.apply(deployment("web"))
    cluster.reconcile()
    (pod,) = cluster.pods.values()
    cluster.delete("Pod", "default", pod.name)
    actions = cluster.reconcile()
    assert [type(a) for a in actions] == [StopPod, StartPod]


def test_pod_spec_updates_are_forbidden_but_label_changes_apply(cluster: Cluster) -> None:
    spec = PodSpec(containers=(Container(name="c", image="x", command=("true",)),))
    cluster.apply(Pod(meta=ObjectMeta(name="p", labels={"a": "1"}), spec=spec))
    cluster.reconcile()
    assert cluster.apply(Pod(meta=ObjectMeta(name="p", labels={"a": "2"}), spec=spec)) == "configured"
    assert cluster.pods[("default", "p")].labels["a"] == "2"
    other = PodSpec(containers=(Container(name="c", image="y", command=("true",)),))
    with pytest.raises(ApplyError, match="Forbidden"):
        cluster.apply(Pod(meta=ObjectMeta(name="p"), spec=other))


def test_deleting_a_namespace_deletes_its_objects_and_default_is_protected(cluster: Cluster) -> None:
    cluster.apply(Namespace(meta=ObjectMeta(name="shop", namespace="")))
    cluster.apply(deployment("web", ns="shop"))
    cluster.apply(service("web", ns="shop"))
    cluster.reconcile()
    cluster.delete("Namespace", "", "shop")
    assert [type(a) for a in cluster.reconcile()] == [StopPod]
    assert not cluster.services
    with pytest.raises(ApplyError, match="may not be deleted"):
        cluster.delete("Namespace", "", "default")
    with pytest.raises(ApplyError, match='services "x" not found'):
        cluster.delete("Service", "default", "x")


def test_kubeproxy_ruleset_balances_rejects_and_hairpins() -> None:
    text = render([
        ServiceRule("default", "reviews", "10.96.1.1", 9080, "tcp",
                    (Endpoint("10.244.1.2", 9080), Endpoint("10.244.2.2", 9080), Endpoint("10.244.1.3", 9080))),
        ServiceRule("default", "empty", "10.96.1.2", 80, "tcp", ()),
    ])
    assert "ip daddr 10.96.1.1 tcp dport 9080 jump svc-default-reviews-tcp-9080" in text
    assert "numgen random mod 3 vmap" in text
    assert "meta l4proto tcp dnat to 10.244.2.2:9080" in text
    assert "ip saddr 10.244.1.2 meta mark set meta mark | 0x4000" in text
    assert "elements = { 10.96.1.2 . 80 }" in text and "reject with tcp reset" in text
    assert text.startswith("table ip meshlab {\n}\ndelete table ip meshlab\n")  # atomic replace
    assert "meta mark & 0x539 == 0x539 return" in text  # captured packets keep their VIP
    assert "reject" not in render([])


def test_config_and_names() -> None:
    with pytest.raises(LabConfigError, match="lab name"):
        LabConfig(name="Bad_Name")
    with pytest.raises(LabConfigError, match="nodes"):
        LabConfig(nodes=0)
    with pytest.raises(LabConfigError, match="must not overlap"):
        LabConfig(service_cidr="10.244.0.0/16", dns_ip="10.244.0.10")
    cfg = LabConfig(name="t1")
    n2 = node_addressing(cfg, 2)
    assert (n2.netns, n2.underlay_ip, str(n2.pod_cidr), n2.gateway_ip) == (
        "t1-node2", "172.18.0.12", "10.244.2.0/24", "10.244.2.1")
    assert len(pod_host_veth("abc")) <= 15
    assert is_lab_netns(cfg, "t1-pod-0a1b2c3d4e") and is_lab_netns(cfg, "t1-underlay")
    assert not is_lab_netns(cfg, "t10-node1") and not is_lab_netns(cfg, "other")
