"""Kubernetes' validation rules, one table row per rule: a bad value is refused with an error
naming the field, the rule and the value; a good value is accepted."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from controlplane.k8s import (
    Deployment,
    EnvVar,
    ExecAction,
    GRPCAction,
    HTTPGetAction,
    InvalidObject,
    K8sObject,
    Namespace,
    Pod,
    Service,
    ServiceAccount,
    TCPSocketAction,
    UnsupportedKind,
    parse_object,
)
from controlplane.k8s.names import (
    check_dns1035_label,
    check_dns1123_label,
    check_dns1123_subdomain,
    check_env_var_name,
    check_iana_svc_name,
    check_label_value,
    check_qualified_name,
)

DELETE = object()


def deployment_doc() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "version": "v1"}},
                "spec": {
                    "serviceAccountName": "web",
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "command": ["nginx"],
                            "args": ["-g", "daemon off;"],
                            "env": [{"name": "MODE", "value": "prod"}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        },
                        {"name": "sidecar", "image": "busybox", "ports": [{"containerPort": 9090}]},
                    ],
                },
            },
        },
    }


def service_doc() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "admin", "port": 9090},
            ],
        },
    }


def pod_doc() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "solo", "labels": {"app": "solo"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def namespace_doc() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}


def account_doc() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}}


DOCS = {
    "Deployment": deployment_doc,
    "Service": service_doc,
    "Pod": pod_doc,
    "Namespace": namespace_doc,
    "ServiceAccount": account_doc,
}

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def edit(doc: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """Set (or with DELETE remove) ``path`` such as ``spec.template.spec.containers[0].name``."""
    doc = copy.deepcopy(doc)
    steps: list[str | int] = [int(index) if index else name for name, index in _STEP.findall(path)]
    target: Any = doc
    for step in steps[:-1]:
        target = target[step]
    if value is DELETE:
        del target[steps[-1]]
    else:
        target[steps[-1]] = value
    return doc


def parse(doc: dict[str, Any], warnings: list[str] | None = None) -> K8sObject:
    return parse_object(doc, "test.yaml, document 1", "default", warnings)


def test_base_documents_are_valid_and_warning_free() -> None:
    for kind, make in DOCS.items():
        warnings: list[str] = []
        obj = parse(make(), warnings)
        assert obj.kind == kind
        assert warnings == []


C0 = "spec.template.spec.containers[0]"
PS = "spec.template.spec"

# (kind, path, bad value, field named in the error, words of the rule)
BAD: list[tuple[str, str, object, str, str]] = [
    # --- object identity ---
    ("Deployment", "kind", DELETE, "kind", "is required"),
    ("Deployment", "apiVersion", DELETE, "apiVersion", "is required"),
    ("Deployment", "apiVersion", "extensions/v1beta1", "apiVersion", "must be apps/v1"),
    ("Service", "apiVersion", "apps/v1", "apiVersion", "must be v1 for a Service"),
    ("Deployment", "kind", 5, "kind", "must be a string"),
    ("Deployment", "metadata", DELETE, "metadata.name", "is required"),
    ("Deployment", "metadata", ["web"], "metadata", "must be a mapping"),
    ("Deployment", "metadata.name", DELETE, "metadata.name", "is required"),
    ("Deployment", "metadata.name", "", "metadata.name", "is required"),
    ("Deployment", "metadata.name", 7, "metadata.name", "must be a string"),
    # --- names ---
    ("Deployment", "metadata.name", "Web", "metadata.name", "DNS-1123 subdomain"),
    ("Deployment", "metadata.name", "web_1", "metadata.name", "DNS-1123 subdomain"),
    ("Deployment", "metadata.name", "-web", "metadata.name", "DNS-1123 subdomain"),
    ("Deployment", "metadata.name", "a" * 254, "metadata.name", "no more than 253 characters"),
    ("Pod", "metadata.name", "Solo", "metadata.name", "DNS-1123 subdomain"),
    ("ServiceAccount", "metadata.name", "web!", "metadata.name", "DNS-1123 subdomain"),
    ("Service", "metadata.name", "1web", "metadata.name", "DNS-1035 label"),
    ("Service", "metadata.name", "web.example", "metadata.name", "DNS-1035 label"),
    ("Service", "metadata.name", "w" * 64, "metadata.name", "no more than 63 characters"),
    ("Namespace", "metadata.name", "shop.example", "metadata.name", "DNS-1123 label"),
    ("Namespace", "metadata.name", "Shop", "metadata.name", "DNS-1123 label"),
    ("Deployment", "metadata.namespace", "my_ns", "metadata.namespace", "DNS-1123 label"),
    ("Service", "metadata.namespace", "a.b", "metadata.namespace", "DNS-1123 label"),
    # --- labels and annotations ---
    (
        "Deployment",
        "metadata.labels",
        {"version": 1},
        "metadata.labels[version]",
        "must be strings",
    ),
    ("Deployment", "metadata.labels", {"on": True}, "metadata.labels[on]", "quote it"),
    ("Deployment", "metadata.labels", {"v": 1.5}, "metadata.labels[v]", "must be strings"),
    ("Deployment", "metadata.labels", {"bad key": "x"}, "metadata.labels", "invalid label key"),
    ("Deployment", "metadata.labels", {"a/b/c": "x"}, "metadata.labels", "at most one '/'"),
    ("Deployment", "metadata.labels", {"/x": "y"}, "metadata.labels", "prefix"),
    ("Deployment", "metadata.labels", {"Ex.com/x": "y"}, "metadata.labels", "DNS-1123 subdomain"),
    ("Deployment", "metadata.labels", {"x" * 64: "y"}, "metadata.labels", "63 characters"),
    ("Deployment", "metadata.labels", {1: "y"}, "metadata.labels", "keys must be strings"),
    ("Deployment", "metadata.labels", {"app": "-web"}, "metadata.labels[app]", "must be empty or"),
    ("Deployment", "metadata.labels", {"app": "w" * 64}, "metadata.labels[app]", "63 characters"),
    ("Deployment", "metadata.labels", ["app"], "metadata.labels", "must be a mapping"),
    ("Deployment", "metadata.annotations", {"x": True}, "metadata.annotations[x]", "strings"),
    (
        "Deployment",
        "metadata.annotations",
        {"a b": "x"},
        "metadata.annotations",
        "invalid annotation key",
    ),
    (
        "Deployment",
        "metadata.annotations",
        {"big": "x" * (256 * 1024)},
        "metadata.annotations",
        "at most 262144 bytes",
    ),
    (
        "Deployment",
        "spec.template.metadata.annotations",
        {"port": 9080},
        "spec.template.metadata.annotations[port]",
        "must be strings",
    ),
    # --- Deployment spec ---
    ("Deployment", "spec", DELETE, "spec", "is required"),
    ("Deployment", "spec.replicas", -1, "spec.replicas", "must be an integer >= 0"),
    ("Deployment", "spec.replicas", "2", "spec.replicas", "must be an integer"),
    ("Deployment", "spec.replicas", True, "spec.replicas", "must be an integer"),
    ("Deployment", "spec.replicas", 1.5, "spec.replicas", "must be an integer"),
    ("Deployment", "spec.replicas", 2**31, "spec.replicas", "between 0 and 2147483647"),
    ("Deployment", "spec.selector", DELETE, "spec.selector", "is required"),
    ("Deployment", "spec.selector", {}, "spec.selector", "must not be empty"),
    ("Deployment", "spec.selector", {"matchLabels": {}}, "spec.selector", "must not be empty"),
    (
        "Deployment",
        "spec.selector.matchLabels",
        {"app": "other"},
        "spec.template.metadata.labels",
        "selector does not match template labels",
    ),
    (
        "Deployment",
        "spec.template.metadata.labels",
        DELETE,
        "spec.template.metadata.labels",
        "selector does not match template labels",
    ),
    (
        "Deployment",
        "spec.selector.matchExpressions",
        [{"key": "app", "operator": "Gt", "values": ["1"]}],
        "spec.selector.matchExpressions[0].operator",
        "must be one of In, NotIn, Exists, DoesNotExist",
    ),
    (
        "Deployment",
        "spec.selector.matchExpressions",
        [{"key": "app", "operator": "In"}],
        "spec.selector.matchExpressions[0].values",
        "at least one value",
    ),
    (
        "Deployment",
        "spec.selector.matchExpressions",
        [{"key": "app", "operator": "Exists", "values": ["web"]}],
        "spec.selector.matchExpressions[0].values",
        "must be empty",
    ),
    (
        "Deployment",
        "spec.selector.matchExpressions",
        [{"key": "bad key", "operator": "Exists"}],
        "spec.selector.matchExpressions[0].key",
        "qualified name",
    ),
    (
        "Deployment",
        "spec.selector.matchExpressions",
        [{"key": "app", "operator": "In", "values": ["-x"]}],
        "spec.selector.matchExpressions[0].values[0]",
        "must be empty or",
    ),
    (
        "Deployment",
        "spec.selector.matchExpressions",
        [{"key": "tier", "operator": "In", "values": ["front"]}],
        "spec.template.metadata.labels",
        "selector does not match template labels",
    ),
    ("Deployment", "spec.template", DELETE, "spec.template", "is required"),
    ("Deployment", f"{PS}", DELETE, PS, "is required"),
    ("Deployment", f"{PS}.restartPolicy", "Never", f"{PS}.restartPolicy", "must be Always"),
    ("Deployment", f"{PS}.restartPolicy", "Sometimes", f"{PS}.restartPolicy", "one of Always"),
    (
        "Deployment",
        f"{PS}.serviceAccountName",
        "Web_SA",
        f"{PS}.serviceAccountName",
        "DNS-1123 subdomain",
    ),
    ("Deployment", f"{PS}.serviceAccountName", 5, f"{PS}.serviceAccountName", "must be a string"),
    ("Deployment", f"{PS}.nodeName", "Node_1", f"{PS}.nodeName", "DNS-1123 subdomain"),
    (
        "Deployment",
        f"{PS}.terminationGracePeriodSeconds",
        -5,
        f"{PS}.terminationGracePeriodSeconds",
        "must be an integer >= 0",
    ),
    # --- containers ---
    ("Deployment", f"{PS}.containers", [], f"{PS}.containers", "at least one container"),
    ("Deployment", f"{PS}.containers", DELETE, f"{PS}.containers", "at least one container"),
    ("Deployment", f"{PS}.containers", {"name": "x"}, f"{PS}.containers", "must be a list"),
    ("Deployment", f"{PS}.containers[0]", "web", C0, "must be a mapping"),
    ("Deployment", f"{C0}.name", "Web", f"{C0}.name", "DNS-1123 label"),
    ("Deployment", f"{C0}.name", "web.1", f"{C0}.name", "DNS-1123 label"),
    ("Deployment", f"{C0}.name", DELETE, f"{C0}.name", "is required"),
    ("Deployment", f"{C0}.name", "sidecar", f"{PS}.containers[1].name", "must be unique"),
    ("Deployment", f"{C0}.image", DELETE, f"{C0}.image", "is required"),
    ("Deployment", f"{C0}.image", "", f"{C0}.image", "is required"),
    ("Deployment", f"{C0}.image", " nginx", f"{C0}.image", "whitespace"),
    ("Deployment", f"{C0}.image", ["nginx"], f"{C0}.image", "must be a string"),
    ("Deployment", f"{C0}.command", ["sh", 5], f"{C0}.command[1]", "must be a string"),
    ("Deployment", f"{C0}.command", "nginx -g", f"{C0}.command", "must be a list"),
    ("Deployment", f"{C0}.args", ["--port", 8080], f"{C0}.args[1]", "quote it"),
    ("Deployment", f"{C0}.workingDir", 5, f"{C0}.workingDir", "must be a string"),
    # --- env ---
    ("Deployment", f"{C0}.env[0].name", "1MODE", f"{C0}.env[0].name", "environment variable name"),
    ("Deployment", f"{C0}.env[0].name", "MY VAR", f"{C0}.env[0].name", "environment variable name"),
    ("Deployment", f"{C0}.env[0].name", DELETE, f"{C0}.env[0].name", "is required"),
    ("Deployment", f"{C0}.env[0].value", 3, f"{C0}.env[0].value", "must be a string"),
    ("Deployment", f"{C0}.env[0].value", False, f"{C0}.env[0].value", "quote it"),
    (
        "Deployment",
        f"{C0}.env[0].valueFrom",
        {"fieldRef": {"fieldPath": "metadata.name"}},
        f"{C0}.env[0].valueFrom",
        "may not be set when value is not empty",
    ),
    (
        "Deployment",
        f"{C0}.env",
        [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}],
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        "is not a pod field",
    ),
    (
        "Deployment",
        f"{C0}.env",
        [{"name": "X", "valueFrom": {}}],
        f"{C0}.env[0].valueFrom",
        "must set one of",
    ),
    (
        "Deployment",
        f"{C0}.env",
        [
            {
                "name": "X",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.name"},
                    "secretKeyRef": {"name": "s", "key": "k"},
                },
            }
        ],
        f"{C0}.env[0].valueFrom",
        "may set only one of",
    ),
    # --- container ports ---
    (
        "Deployment",
        f"{C0}.ports[0].containerPort",
        70000,
        f"{C0}.ports[0].containerPort",
        "between 1 and 65535",
    ),
    (
        "Deployment",
        f"{C0}.ports[0].containerPort",
        0,
        f"{C0}.ports[0].containerPort",
        "between 1 and 65535",
    ),
    (
        "Deployment",
        f"{C0}.ports[0].containerPort",
        "8080",
        f"{C0}.ports[0].containerPort",
        "must be an integer",
    ),
    (
        "Deployment",
        f"{C0}.ports[0].containerPort",
        DELETE,
        f"{C0}.ports[0].containerPort",
        "is required",
    ),
    ("Deployment", f"{C0}.ports[0].name", "HTTP", f"{C0}.ports[0].name", "port name"),
    (
        "Deployment",
        f"{C0}.ports[0].name",
        "http-server-alt1",
        f"{C0}.ports[0].name",
        "no more than 15",
    ),
    ("Deployment", f"{C0}.ports[0].name", "8080", f"{C0}.ports[0].name", "at least one letter"),
    ("Deployment", f"{C0}.ports[0].name", "-http", f"{C0}.ports[0].name", "start or end with '-'"),
    ("Deployment", f"{C0}.ports[0].name", "ht--tp", f"{C0}.ports[0].name", "consecutive '-'"),
    (
        "Deployment",
        f"{C0}.ports[0].protocol",
        "HTTP",
        f"{C0}.ports[0].protocol",
        "one of TCP, UDP, SCTP",
    ),
    (
        "Deployment",
        f"{PS}.containers[1].ports[0].name",
        "http",
        f"{PS}.containers[1].ports[0].name",
        "must be unique within the pod",
    ),
    # --- readiness probes ---
    (
        "Deployment",
        f"{C0}.readinessProbe.httpGet.port",
        "metrics",
        f"{C0}.readinessProbe.httpGet.port",
        "the name of one of this container's ports",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe.httpGet.port",
        70000,
        f"{C0}.readinessProbe.httpGet.port",
        "between 1 and 65535",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe.httpGet.port",
        DELETE,
        f"{C0}.readinessProbe.httpGet.port",
        "is required",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {"tcpSocket": {"port": "admin"}},
        f"{C0}.readinessProbe.tcpSocket.port",
        "named ports: http",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe.httpGet.scheme",
        "FTP",
        f"{C0}.readinessProbe.httpGet.scheme",
        "one of HTTP, HTTPS",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {"periodSeconds": 5},
        f"{C0}.readinessProbe",
        "must specify a handler",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}},
        f"{C0}.readinessProbe",
        "only one handler",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {"exec": {"command": []}},
        f"{C0}.readinessProbe.exec.command",
        "is required",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {"grpc": {"port": "http"}},
        f"{C0}.readinessProbe.grpc.port",
        "must be an integer",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe.periodSeconds",
        -1,
        f"{C0}.readinessProbe.periodSeconds",
        "must be an integer >= 0",
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe.failureThreshold",
        "3",
        f"{C0}.readinessProbe.failureThreshold",
        "must be an integer",
    ),
    # --- Pod ---
    ("Pod", "spec", DELETE, "spec", "is required"),
    (
        "Pod",
        "spec.restartPolicy",
        "Sometimes",
        "spec.restartPolicy",
        "must be one of Always, OnFailure, Never",
    ),
    ("Pod", "spec.containers[0].name", "Main", "spec.containers[0].name", "DNS-1123 label"),
    ("Pod", "spec.containers[0].command", [1], "spec.containers[0].command[0]", "must be a string"),
    # --- Service ---
    ("Service", "spec.ports", DELETE, "spec.ports", "at least one port"),
    ("Service", "spec.ports", [], "spec.ports", "at least one port"),
    ("Service", "spec", DELETE, "spec.ports", "at least one port"),
    ("Service", "spec.ports[0].port", 0, "spec.ports[0].port", "between 1 and 65535"),
    ("Service", "spec.ports[0].port", 65536, "spec.ports[0].port", "between 1 and 65535"),
    ("Service", "spec.ports[0].port", DELETE, "spec.ports[0].port", "is required"),
    ("Service", "spec.ports[0].port", "80", "spec.ports[0].port", "must be an integer"),
    (
        "Service",
        "spec.ports[0].targetPort",
        70000,
        "spec.ports[0].targetPort",
        "between 1 and 65535",
    ),
    ("Service", "spec.ports[0].targetPort", "8080", "spec.ports[0].targetPort", "without quotes"),
    ("Service", "spec.ports[0].targetPort", "Http", "spec.ports[0].targetPort", "port name"),
    (
        "Service",
        "spec.ports[0].targetPort",
        "a-very-long-port-name",
        "spec.ports[0].targetPort",
        "15",
    ),
    ("Service", "spec.ports[0].targetPort", [80], "spec.ports[0].targetPort", "port number"),
    ("Service", "spec.ports[0].name", DELETE, "spec.ports[0].name", "more than one port"),
    ("Service", "spec.ports[1].name", "http", "spec.ports[1].name", "must be unique"),
    ("Service", "spec.ports[1].name", "Admin", "spec.ports[1].name", "DNS-1123 label"),
    ("Service", "spec.ports[1].port", 80, "spec.ports[1]", "same port 80 and protocol TCP"),
    (
        "Service",
        "spec.ports[0].protocol",
        "ICMP",
        "spec.ports[0].protocol",
        "one of TCP, UDP, SCTP",
    ),
    ("Service", "spec.ports[0].appProtocol", "h2c!", "spec.ports[0].appProtocol", "qualified name"),
    (
        "Service",
        "spec.type",
        "Internal",
        "spec.type",
        "one of ClusterIP, NodePort, LoadBalancer, ExternalName",
    ),
    ("Service", "spec.clusterIP", "10.96.0.300", "spec.clusterIP", "IPv4 address"),
    ("Service", "spec.clusterIP", "fd00::1", "spec.clusterIP", "IPv4 address"),
    ("Service", "spec.clusterIP", "none", "spec.clusterIP", "IPv4 address"),
    ("Service", "spec.selector", {"app": 1}, "spec.selector[app]", "must be strings"),
    ("Service", "spec.selector", {"app!": "web"}, "spec.selector", "invalid label key"),
    ("Service", "spec.ports", "80", "spec.ports", "must be a list"),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "field", "rule"),
    BAD,
    ids=[f"{kind}:{path}={value!r}"[:90] for kind, path, value, _, _ in BAD],
)
def test_bad_value_is_refused_naming_field_and_rule(
    kind: str, path: str, value: object, field: str, rule: str
) -> None:
    doc = edit(DOCS[kind](), path, value)
    with pytest.raises(InvalidObject) as caught:
        parse(doc)
    error = caught.value
    assert error.field == field, str(error)
    assert rule in error.rule, str(error)
    assert error.source == "test.yaml, document 1"
    message = str(error)
    assert f"({error.source}): " in message
    assert f"{field}: {error.rule}" in message
    if (
        error.field == path
        and error.has_value
        and value is not DELETE
        and not isinstance(value, (dict, list))
    ):
        assert error.value == value  # the offending value is shown as written


# (kind, path, good value, check on the parsed object)
GOOD: list[tuple[str, str, object, Any]] = [
    ("Deployment", "spec.replicas", 0, lambda d: d.replicas == 0),
    ("Deployment", "spec.replicas", None, lambda d: d.replicas == 1),
    ("Deployment", "spec.replicas", DELETE, lambda d: d.replicas == 1),
    ("Deployment", "metadata.name", "a" * 253, lambda d: len(d.meta.name) == 253),
    ("Deployment", "metadata.name", "web.v1-2", lambda d: d.meta.name == "web.v1-2"),
    ("Deployment", "metadata.namespace", "shop", lambda d: d.meta.namespace == "shop"),
    ("Deployment", "metadata.namespace", "", lambda d: d.meta.namespace == "default"),
    ("Deployment", "metadata.labels", {"app": ""}, lambda d: d.meta.labels == {"app": ""}),
    ("Deployment", "metadata.labels", {"app": None}, lambda d: d.meta.labels == {"app": ""}),
    (
        "Deployment",
        "metadata.labels",
        {"app.kubernetes.io/name": "Web_1.x"},
        lambda d: d.meta.labels["app.kubernetes.io/name"] == "Web_1.x",
    ),
    ("Deployment", "metadata.labels", None, lambda d: d.meta.labels == {}),
    (
        "Deployment",
        "metadata.annotations",
        {"example.com/config": '{"a": [1, 2]}\n', "x": ""},
        lambda d: d.meta.annotations["example.com/config"] == '{"a": [1, 2]}\n',
    ),
    (
        "Deployment",
        "spec.selector",
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]},
        lambda d: d.selector.match_expressions[0].values == ("web", "api"),
    ),
    (
        "Deployment",
        "spec.selector",
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "version", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
            ],
        },
        lambda d: len(d.selector.match_expressions) == 3,
    ),
    ("Deployment", f"{C0}.name", "a" * 63, lambda d: len(d.template.spec.containers[0].name) == 63),
    (
        "Deployment",
        f"{C0}.env[0].name",
        "my.var-1",
        lambda d: d.template.spec.containers[0].env[0].name == "my.var-1",
    ),
    (
        "Deployment",
        f"{C0}.env[0].name",
        "_X",
        lambda d: d.template.spec.containers[0].env[0].name == "_X",
    ),
    (
        "Deployment",
        f"{C0}.env[0].value",
        None,
        lambda d: d.template.spec.containers[0].env[0].value == "",
    ),
    (
        "Deployment",
        f"{C0}.env",
        [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "NS",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
            },
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "DUP", "value": "1"},
            {"name": "DUP", "value": "2"},
        ],
        lambda d: (
            d.template.spec.containers[0].env
            == (
                EnvVar("POD", None, "metadata.name"),
                EnvVar("NS", None, "metadata.namespace"),
                EnvVar("NODE", None, "spec.nodeName"),
                EnvVar("IP", None, "status.podIP"),
                EnvVar("SA", None, "spec.serviceAccountName"),
                EnvVar("DUP", "1"),
                EnvVar("DUP", "2"),
            )
        ),
    ),
    (
        "Deployment",
        f"{PS}.containers[1].ports[0].name",
        "h2c",
        lambda d: d.template.spec.containers[1].ports[0].name == "h2c",
    ),
    (
        "Deployment",
        f"{C0}.ports[0].protocol",
        "UDP",
        lambda d: d.template.spec.containers[0].ports[0].protocol == "UDP",
    ),
    (
        "Deployment",
        f"{C0}.ports[0].containerPort",
        65535,
        lambda d: d.template.spec.containers[0].ports[0].container_port == 65535,
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {"tcpSocket": {"port": 8080}, "periodSeconds": 2, "initialDelaySeconds": 1},
        lambda d: (
            d.template.spec.containers[0].readiness_probe.action == TCPSocketAction(port=8080)
            and d.template.spec.containers[0].readiness_probe.period_seconds == 2
            and d.template.spec.containers[0].readiness_probe.initial_delay_seconds == 1
        ),
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 0, "failureThreshold": 0},
        lambda d: (
            d.template.spec.containers[0].readiness_probe.action
            == ExecAction(("cat", "/tmp/ready"))
            and d.template.spec.containers[0].readiness_probe.period_seconds == 10
            and d.template.spec.containers[0].readiness_probe.failure_threshold == 3
        ),
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {"grpc": {"port": 9090}},
        lambda d: d.template.spec.containers[0].readiness_probe.action == GRPCAction(port=9090),
    ),
    (
        "Deployment",
        f"{C0}.readinessProbe",
        {
            "httpGet": {
                "port": 8080,
                "scheme": "HTTPS",
                "httpHeaders": [{"name": "Host", "value": "x"}],
            }
        },
        lambda d: (
            d.template.spec.containers[0].readiness_probe.action
            == HTTPGetAction(port=8080, path="/", scheme="HTTPS", http_headers=(("Host", "x"),))
        ),
    ),
    (
        "Deployment",
        f"{PS}.serviceAccountName",
        DELETE,
        lambda d: d.template.spec.service_account_name == "default",
    ),
    (
        "Deployment",
        f"{PS}.restartPolicy",
        "Always",
        lambda d: d.template.spec.restart_policy == "Always",
    ),
    ("Deployment", f"{PS}.nodeName", "node1", lambda d: d.template.spec.node_name == "node1"),
    (
        "Deployment",
        f"{PS}.terminationGracePeriodSeconds",
        0,
        lambda d: d.template.spec.termination_grace_period_seconds == 0,
    ),
    (
        "Deployment",
        f"{C0}.workingDir",
        "/srv",
        lambda d: d.template.spec.containers[0].working_dir == "/srv",
    ),
    ("Deployment", f"{C0}.command", None, lambda d: d.template.spec.containers[0].command == ()),
    ("Pod", "spec.restartPolicy", "Never", lambda p: p.spec.restart_policy == "Never"),
    ("Pod", "spec.restartPolicy", "OnFailure", lambda p: p.spec.restart_policy == "OnFailure"),
    ("Pod", "spec.serviceAccount", "legacy", lambda p: p.spec.service_account_name == "legacy"),
    ("Service", "spec.clusterIP", "None", lambda s: s.headless and s.cluster_ip is None),
    (
        "Service",
        "spec.clusterIP",
        "10.96.0.10",
        lambda s: s.cluster_ip == "10.96.0.10" and not s.headless,
    ),
    ("Service", "spec.clusterIP", "", lambda s: s.cluster_ip is None and not s.headless),
    ("Service", "spec.ports[1]", DELETE, lambda s: len(s.ports) == 1),
    ("Service", "spec.ports[0].targetPort", 0, lambda s: s.ports[0].target_port == 80),
    ("Service", "spec.ports[0].targetPort", 8080, lambda s: s.ports[0].target_port == 8080),
    ("Service", "spec.ports[1].targetPort", None, lambda s: s.ports[1].target_port == 9090),
    ("Service", "spec.ports[0].targetPort", "http", lambda s: s.ports[0].target_port == "http"),
    (
        "Service",
        "spec.ports[0].appProtocol",
        "kubernetes.io/h2c",
        lambda s: s.ports[0].app_protocol == "kubernetes.io/h2c",
    ),
    ("Service", "spec.selector", {}, lambda s: s.selector is None),
    ("Service", "spec.selector", DELETE, lambda s: s.selector is None),
    ("Service", "metadata.name", "w" * 63, lambda s: len(s.meta.name) == 63),
    ("Namespace", "metadata.name", "istio-system", lambda n: n.meta.name == "istio-system"),
    ("Namespace", "metadata.name", "1shop", lambda n: n.key == ("Namespace", "", "1shop")),
    (
        "ServiceAccount",
        "metadata.name",
        "bookinfo.reviews",
        lambda a: a.meta.name == "bookinfo.reviews",
    ),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "check"),
    GOOD,
    ids=[f"{k}:{p}={v!r}"[:90] for k, p, v, _ in GOOD],
)
def test_good_value_is_accepted(kind: str, path: str, value: object, check: Any) -> None:
    warnings: list[str] = []
    obj = parse(edit(DOCS[kind](), path, value), warnings)
    assert check(obj)
    assert warnings == []


def test_same_port_number_with_another_protocol_is_fine() -> None:
    doc = edit(service_doc(), "spec.ports[1]", {"name": "dns", "port": 80, "protocol": "UDP"})
    service = parse(doc)
    assert isinstance(service, Service)
    assert [(p.port, p.protocol) for p in service.ports] == [(80, "TCP"), (80, "UDP")]


def test_headless_service_needs_no_ports() -> None:
    doc = edit(edit(service_doc(), "spec.ports", DELETE), "spec.clusterIP", "None")
    service = parse(doc)
    assert isinstance(service, Service) and service.headless and service.ports == ()


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer", "ExternalName"])
def test_other_service_types_are_accepted_with_a_warning(service_type: str) -> None:
    warnings: list[str] = []
    doc = edit(service_doc(), "spec.type", service_type)
    service = parse(doc, warnings)
    assert isinstance(service, Service) and service.type == service_type
    assert warnings == [
        f"Service default/web (test.yaml, document 1): spec.type {service_type} is served as ClusterIP"
    ]


def test_external_name_service_needs_no_ports() -> None:
    doc = edit(edit(service_doc(), "spec.ports", DELETE), "spec.type", "ExternalName")
    doc["spec"]["externalName"] = "db.example.com"
    assert isinstance(parse(doc, []), Service)


def test_namespace_ignores_a_namespace_field_with_a_warning() -> None:
    warnings: list[str] = []
    namespace = parse(edit(namespace_doc(), "metadata.namespace", "other"), warnings)
    assert isinstance(namespace, Namespace) and namespace.meta.namespace == ""
    assert warnings == [
        "Namespace shop (test.yaml, document 1): metadata.namespace is ignored: "
        "a Namespace is not namespaced"
    ]


def test_unsupported_env_sources_load_empty_with_a_warning() -> None:
    warnings: list[str] = []
    env = [
        {"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
    ]
    deployment = parse(edit(deployment_doc(), f"{C0}.env", env), warnings)
    assert isinstance(deployment, Deployment)
    assert deployment.template.spec.containers[0].env == tuple(
        EnvVar(name, "") for name in ("CFG", "PW", "CPU", "APP", "HOST")
    )
    assert len(warnings) == 5
    assert (
        "env[0].valueFrom.configMapKeyRef is not supported here; CFG is set to an empty string"
        in warnings[0]
    )
    assert "status.hostIP is not supported here" in warnings[4]


def test_pod_parses_to_a_pod() -> None:
    pod = parse(pod_doc())
    assert isinstance(pod, Pod)
    assert pod.meta.labels == {"app": "solo"}
    assert pod.spec.containers[0].name == "main"
    assert pod.spec.restart_policy == "Always"


def test_service_account_parses() -> None:
    account = parse(edit(account_doc(), "metadata.namespace", "shop"))
    assert account == ServiceAccount(meta=account.meta) and account.key == (
        "ServiceAccount",
        "shop",
        "web",
    )


def test_parse_object_refuses_a_non_mapping_document() -> None:
    with pytest.raises(InvalidObject, match="must be a Kubernetes object") as caught:
        parse_object(["a", "list"], "x.yaml, document 2")
    assert caught.value.kind == "" and caught.value.name == ""
    assert str(caught.value).startswith("object (unnamed) (x.yaml, document 2): ")


def test_parse_object_raises_unsupported_kind_for_other_kinds() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "shop"},
    }
    with pytest.raises(UnsupportedKind) as caught:
        parse_object(doc, "x.yaml, document 3")
    error = caught.value
    assert (error.api_version, error.apiVersion, error.kind, error.name) == (
        "v1",
        "v1",
        "ConfigMap",
        "shop/cfg",
    )
    assert str(error) == (
        "ConfigMap shop/cfg (x.yaml, document 3): kind ConfigMap (apiVersion v1) is not supported here"
    )


def test_error_message_reads_like_an_operator_would_want() -> None:
    doc = edit(deployment_doc(), f"{C0}.ports[0].containerPort", 70000)
    doc["metadata"]["name"] = "reviews-v1"
    with pytest.raises(InvalidObject) as caught:
        parse_object(doc, "bookinfo.yaml, document 7")
    error = caught.value
    assert (error.kind, error.name, error.field) == (
        "Deployment",
        "default/reviews-v1",
        f"{C0}.ports[0].containerPort",
    )
    assert error.rule == "must be an integer between 1 and 65535"
    assert error.value == 70000 and error.has_value
    assert str(error) == (
        "Deployment default/reviews-v1 (bookinfo.yaml, document 7): "
        "spec.template.spec.containers[0].ports[0].containerPort: "
        "must be an integer between 1 and 65535, got 70000"
    )


def test_string_values_are_shown_quoted_and_long_ones_truncated() -> None:
    with pytest.raises(InvalidObject) as caught:
        parse(edit(deployment_doc(), "metadata.name", "Web App"))
    assert str(caught.value).endswith(', got "Web App"')
    with pytest.raises(InvalidObject) as caught:
        parse(edit(deployment_doc(), "metadata.name", "X" * 300))
    message = str(caught.value)
    assert message.endswith(', got "' + "X" * 76 + "...")
    assert len(message) < 400  # the name in the subject is shortened too


# --- the name rules themselves ----------------------------------------------------------

NAME_RULES = [
    (
        check_dns1123_label,
        ["a", "a-b", "0", "123-abc", "a" * 63],
        ["", "A", "a_b", "a.b", "-a", "a-", "a" * 64],
    ),
    (
        check_dns1123_subdomain,
        ["a", "a.b", "a-b.c-d", "1.2", "a" * 253],
        ["", "A", "a_b", ".a", "a.", "a..b", "a" * 254, "a.-b"],
    ),
    (check_dns1035_label, ["a", "a-1", "abc"], ["", "1a", "a.b", "a-", "A", "a" * 64]),
    (
        check_qualified_name,
        ["a", "A_b.c-D", "example.com/a", "a/B", "x" * 63, "a.b/" + "x" * 63],
        ["", "-a", "a-", "a b", "/a", "a/", "a/b/c", "A.com/a", "x" * 64, "é"],
    ),
    (check_label_value, ["", "a", "A_b.c-D", "1", "x" * 63], ["-a", "a-", "a b", "a/b", "x" * 64]),
    (
        check_iana_svc_name,
        ["http", "h2c", "grpc-web", "a1", "x" * 15],
        ["", "HTTP", "80", "-http", "http-", "ht--tp", "x" * 16, "a_b"],
    ),
    (check_env_var_name, ["A", "_a", "a.b-c", "-x", ".x", "A1"], ["", "1A", "A B", "A=B", "é"]),
]


@pytest.mark.parametrize(
    ("check", "good", "bad"), NAME_RULES, ids=[r[0].__name__ for r in NAME_RULES]
)
def test_name_rules(check: Any, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert check(value) is None, value
    for value in bad:
        assert isinstance(check(value), str), value


def test_parse_object_accepts_any_mapping_and_tuples() -> None:
    from types import MappingProxyType

    doc = deployment_doc()
    doc["spec"]["template"]["spec"]["containers"] = tuple(
        doc["spec"]["template"]["spec"]["containers"]
    )
    deployment = parse(MappingProxyType(doc))  # type: ignore[arg-type]
    assert isinstance(deployment, Deployment) and len(deployment.template.spec.containers) == 2
