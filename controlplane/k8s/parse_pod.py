"""Reading a pod spec: containers, their ports, environment and readiness probes, with
Kubernetes' rules (unique container and port names, port ranges, probe handlers...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from controlplane.k8s.limits import MAX_INT32, MAX_INT64, MAX_PORT
from controlplane.k8s.names import (
    check_dns1123_label,
    check_dns1123_subdomain,
    check_env_var_name,
    check_iana_svc_name,
)
from controlplane.k8s.objects import (
    Container,
    ContainerPort,
    EnvVar,
    ExecAction,
    GRPCAction,
    HTTPGetAction,
    PodSpec,
    Probe,
    ProbeAction,
    TCPSocketAction,
)
from controlplane.k8s.reader import Reader, item, sub

__all__ = ["FIELD_REFS", "PROTOCOLS", "read_pod_spec", "read_port_ref"]

PROTOCOLS: Final = ("TCP", "UDP", "SCTP")
RESTART_POLICIES: Final = ("Always", "OnFailure", "Never")

FIELD_REFS: Final = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "status.podIP",
        "spec.serviceAccountName",
    }
)
"""``valueFrom.fieldRef.fieldPath`` values loaded as ``EnvVar(value=None, field_ref=...)``."""

_OTHER_FIELD_REFS: Final = frozenset(
    {"metadata.uid", "status.hostIP", "status.hostIPs", "status.podIPs"}
)
_MAP_FIELD_REF: Final = re.compile(r"metadata\.(labels|annotations)\['[^']*'\]")
_ENV_SOURCES: Final = (
    "fieldRef",
    "resourceFieldRef",
    "configMapKeyRef",
    "secretKeyRef",
    "fileKeyRef",
)
_PROBE_HANDLERS: Final = ("exec", "httpGet", "tcpSocket", "grpc")


def read_pod_spec(r: Reader, value: object, path: str, *, in_deployment: bool) -> PodSpec:
    """A ``PodSpec`` at ``path`` (``spec`` of a Pod, ``spec.template.spec`` of a Deployment)."""
    if value is None:
        r.fail(path, "is required")
    spec = r.mapping(value, path, "PodSpec")
    containers_path = sub(path, "containers")
    entries = r.sequence(spec.get("containers"), containers_path)
    if not entries:
        r.fail(containers_path, "must list at least one container")
    containers: list[Container] = []
    container_names: dict[str, str] = {}
    port_names: dict[str, str] = {}
    for index, entry in enumerate(entries):
        container_path = item(containers_path, index)
        container = _read_container(r, entry, container_path, port_names)
        if container.name in container_names:
            r.fail(
                sub(container_path, "name"),
                f"must be unique within the pod ({container_names[container.name]} "
                "has the same name)",
                container.name,
            )
        container_names[container.name] = container_path
        containers.append(container)

    restart_policy = r.choice(spec, "restartPolicy", path, RESTART_POLICIES, "Always")
    if in_deployment and restart_policy != "Always":
        r.fail(
            sub(path, "restartPolicy"),
            "must be Always in a Deployment's pod template",
            restart_policy,
        )
    account = r.optional_string(spec, "serviceAccountName", path)
    account_field = "serviceAccountName"
    if account is None:  # the deprecated spelling, which Kubernetes still honours
        account = r.optional_string(spec, "serviceAccount", path)
        account_field = "serviceAccount"
    if account is not None:
        r.check(sub(path, account_field), account, check_dns1123_subdomain)
    node_name = r.optional_string(spec, "nodeName", path)
    if node_name is not None:
        r.check(sub(path, "nodeName"), node_name, check_dns1123_subdomain)
    grace = r.optional_integer(spec, "terminationGracePeriodSeconds", path, 0, MAX_INT64, 30)
    return PodSpec(
        containers=tuple(containers),
        service_account_name=account or "default",
        node_name=node_name,
        restart_policy=restart_policy,
        termination_grace_period_seconds=grace,
    )


def read_port_ref(r: Reader, value: object, path: str) -> int | str:
    """An int-or-string port: a number 1-65535, or an IANA service name (a port's name)."""
    if isinstance(value, str):
        if value.isdigit():
            r.fail(path, "must be a port number (without quotes) or a port name", value)
        return r.check(path, value, check_iana_svc_name)
    if isinstance(value, bool) or not isinstance(value, int):
        r.fail(path, f"must be a port number between 1 and {MAX_PORT} or a port name", value)
    return r.integer(value, path, 1, MAX_PORT)


def _read_container(r: Reader, value: object, path: str, port_names: dict[str, str]) -> Container:
    if value is None:
        r.fail(path, "must be a mapping describing a container")
    container = r.mapping(value, path, "Container")
    name = r.check(
        sub(path, "name"), r.required_string(container, "name", path), check_dns1123_label
    )
    image = r.required_string(container, "image", path)
    if image != image.strip():
        r.fail(sub(path, "image"), "must not have leading or trailing whitespace", image)

    env_path = sub(path, "env")
    env = tuple(
        _read_env(r, entry, item(env_path, index))
        for index, entry in enumerate(r.sequence(container.get("env"), env_path))
    )

    ports_path = sub(path, "ports")
    ports: list[ContainerPort] = []
    for index, entry in enumerate(r.sequence(container.get("ports"), ports_path)):
        port_path = item(ports_path, index)
        port = _read_container_port(r, entry, port_path)
        if port.name is not None:
            if port.name in port_names:
                r.fail(
                    sub(port_path, "name"),
                    f"must be unique within the pod ({port_names[port.name]} has the same name)",
                    port.name,
                )
            port_names[port.name] = port_path
        ports.append(port)

    readiness = container.get("readinessProbe")
    declared = tuple(port.name for port in ports if port.name is not None)
    probe = (
        None
        if readiness is None
        else _read_probe(r, readiness, sub(path, "readinessProbe"), declared)
    )
    return Container(
        name=name,
        image=image,
        command=r.strings(container.get("command"), sub(path, "command")),
        args=r.strings(container.get("args"), sub(path, "args")),
        env=env,
        ports=tuple(ports),
        readiness_probe=probe,
        working_dir=r.optional_string(container, "workingDir", path),
    )


def _read_container_port(r: Reader, value: object, path: str) -> ContainerPort:
    if value is None:
        r.fail(path, "must be a mapping with containerPort")
    port = r.mapping(value, path, "ContainerPort")
    number = r.integer(
        r.required(port, "containerPort", path), sub(path, "containerPort"), 1, MAX_PORT
    )
    name = r.optional_string(port, "name", path)
    if name is not None:
        r.check(sub(path, "name"), name, check_iana_svc_name)
    protocol = r.choice(port, "protocol", path, PROTOCOLS, "TCP")
    return ContainerPort(name=name, container_port=number, protocol=protocol)


def _read_env(r: Reader, value: object, path: str) -> EnvVar:
    if value is None:
        r.fail(path, "must be a mapping with name and value")
    env = r.mapping(value, path, "EnvVar")
    name = r.check(sub(path, "name"), r.required_string(env, "name", path), check_env_var_name)
    raw_value = env.get("value")
    text = "" if raw_value is None else r.string(raw_value, sub(path, "value"))
    value_from = env.get("valueFrom")
    if value_from is None:
        return EnvVar(name=name, value=text)
    from_path = sub(path, "valueFrom")
    if text:
        r.fail(from_path, "may not be set when value is not empty")
    source = r.mapping(value_from, from_path, "EnvVarSource")
    kinds = [key for key in _ENV_SOURCES if source.get(key) is not None]
    if not kinds:
        r.fail(from_path, f"must set one of {', '.join(_ENV_SOURCES)}")
    if len(kinds) > 1:
        r.fail(from_path, f"may set only one of {', '.join(_ENV_SOURCES)}, got {', '.join(kinds)}")
    if kinds[0] != "fieldRef":
        r.warn(f"{from_path}.{kinds[0]} is not supported here; {name} is set to an empty string")
        return EnvVar(name=name, value="")
    ref_path = sub(from_path, "fieldRef")
    ref = r.mapping(source["fieldRef"], ref_path, "ObjectFieldSelector")
    field_path = r.required_string(ref, "fieldPath", ref_path)
    if field_path in FIELD_REFS:
        return EnvVar(name=name, value=None, field_ref=field_path)
    if field_path in _OTHER_FIELD_REFS or _MAP_FIELD_REF.fullmatch(field_path):
        r.warn(
            f"{ref_path}.fieldPath {field_path} is not supported here; {name} is set to an empty string"
        )
        return EnvVar(name=name, value="")
    r.fail(
        sub(ref_path, "fieldPath"),
        "is not a pod field Kubernetes can expose (e.g. metadata.name, metadata.namespace, "
        "spec.nodeName, spec.serviceAccountName, status.podIP)",
        field_path,
    )


def _read_probe(r: Reader, value: object, path: str, port_names: tuple[str, ...]) -> Probe:
    probe = r.mapping(value, path, "Probe")
    handlers = [key for key in _PROBE_HANDLERS if probe.get(key) is not None]
    if not handlers:
        r.fail(path, f"must specify a handler: one of {', '.join(_PROBE_HANDLERS)}")
    if len(handlers) > 1:
        r.fail(path, f"may specify only one handler, got {', '.join(handlers)}")
    handler = handlers[0]
    action = _read_probe_action(r, handler, probe[handler], sub(path, handler), port_names)

    def seconds(key: str, default: int, minimum: int = 0) -> int:
        number = r.optional_integer(probe, key, path, minimum, MAX_INT32, default)
        return number or default  # 0 means "use the default", as in Kubernetes

    return Probe(
        action=action,
        initial_delay_seconds=seconds("initialDelaySeconds", 0),
        period_seconds=seconds("periodSeconds", 10),
        timeout_seconds=seconds("timeoutSeconds", 1),
        failure_threshold=seconds("failureThreshold", 3),
        success_threshold=seconds("successThreshold", 1),
    )


def _read_probe_action(
    r: Reader, handler: str, value: object, path: str, port_names: tuple[str, ...]
) -> ProbeAction:
    if handler == "exec":
        action = r.mapping(value, path, "ExecAction")
        command = r.strings(action.get("command"), sub(path, "command"))
        if not command:
            r.fail(sub(path, "command"), "is required (a non-empty list)")
        return ExecAction(command=command)
    if handler == "grpc":
        action = r.mapping(value, path, "GRPCAction")
        port_value = r.required(action, "port", path)
        port = r.integer(port_value, sub(path, "port"), 1, MAX_PORT)
        return GRPCAction(port=port, service=r.optional_string(action, "service", path))
    if handler == "tcpSocket":
        action = r.mapping(value, path, "TCPSocketAction")
        return TCPSocketAction(
            port=_read_probe_port(r, action, path, port_names),
            host=r.optional_string(action, "host", path),
        )
    action = r.mapping(value, path, "HTTPGetAction")
    headers_path = sub(path, "httpHeaders")
    headers: list[tuple[str, str]] = []
    for index, entry in enumerate(r.sequence(action.get("httpHeaders"), headers_path)):
        header_path = item(headers_path, index)
        header = r.mapping(entry, header_path, "HTTPHeader")
        header_value = header.get("value")
        headers.append(
            (
                r.required_string(header, "name", header_path),
                "" if header_value is None else r.string(header_value, sub(header_path, "value")),
            )
        )
    return HTTPGetAction(
        port=_read_probe_port(r, action, path, port_names),
        path=r.optional_string(action, "path", path) or "/",
        host=r.optional_string(action, "host", path),
        scheme=r.choice(action, "scheme", path, ("HTTP", "HTTPS"), "HTTP"),
        http_headers=tuple(headers),
    )


def _read_probe_port(
    r: Reader, action: Mapping[str, object], path: str, port_names: tuple[str, ...]
) -> int | str:
    port_path = sub(path, "port")
    port = read_port_ref(r, r.required(action, "port", path), port_path)
    if isinstance(port, str) and port not in port_names:
        declared = ", ".join(port_names) if port_names else "none"
        r.fail(
            port_path,
            f"must be a port number or the name of one of this container's ports "
            f"(named ports: {declared})",
            port,
        )
    return port
