"""Istio's Gateway and ServiceEntry: reading ``spec`` with Istio's rules for servers, ports and
protocols, server TLS, hosts (``[namespace/]host``), addresses, locations, resolutions and
endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from controlplane.istio.checks import check_cidr_or_ip, check_wildcard_domain, is_ip
from controlplane.istio.frozendict import FrozenDict
from controlplane.istio.networking import (
    Gateway,
    Port,
    Server,
    ServerTLSSettings,
    ServiceEntry,
    WorkloadEntry,
)
from controlplane.istio.parse_common import (
    read_export_to,
    read_hosts,
    read_meta,
    read_port,
    read_workload_selector,
)
from controlplane.istio.reader import IstioReader, item, sub
from controlplane.k8s.names import check_dns1123_label

__all__ = [
    "PROTOCOLS",
    "SERVER_TLS_MODES",
    "SE_LOCATIONS",
    "SE_RESOLUTIONS",
    "read_gateway",
    "read_service_entry",
]

PROTOCOLS: Final = (
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "MONGO",
    "REDIS",
    "MYSQL",
    "TCP",
    "TLS",
    "UDP",
    "HBONE",
)
"""Istio's port protocols (case-insensitive in manifests; stored upper-case)."""

SERVER_TLS_MODES: Final = (
    "PASSTHROUGH",
    "SIMPLE",
    "MUTUAL",
    "AUTO_PASSTHROUGH",
    "ISTIO_MUTUAL",
    "OPTIONAL_MUTUAL",
)
TLS_VERSIONS: Final = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")
SE_LOCATIONS: Final = ("MESH_EXTERNAL", "MESH_INTERNAL")
SE_RESOLUTIONS: Final = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")
_TLS_PROTOCOLS: Final = frozenset({"HTTPS", "TLS"})


def _port(r: IstioReader, value: object, path: str, *, name_required: bool) -> Port:
    if value is None:
        r.fail(path, "is required")
    f = r.mapping(value, path, "Port")
    number = read_port(r, r.required(f, "number", path), sub(path, "number"))
    protocol_text = r.required_string(f, "protocol", path)
    protocol = protocol_text.upper()
    if protocol not in PROTOCOLS:
        r.fail(sub(path, "protocol"), f"must be one of {', '.join(PROTOCOLS)}", protocol_text)
    name = r.opt_str(f, "name", path)
    if name_required and name is None:
        r.fail(sub(path, "name"), "is required")
    target = (
        None
        if f.get("targetPort") is None
        else read_port(r, f["targetPort"], sub(path, "targetPort"))
    )
    return Port(number=number, protocol=protocol, name=name, target_port=target)


# --- Gateway --------------------------------------------------------------------------------
def read_gateway(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> Gateway:
    meta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "Gateway")
    selector = r.labels(spec.get("selector"), "spec.selector")
    servers_path = "spec.servers"
    entries = r.sequence(spec.get("servers"), servers_path)
    if not entries:
        r.fail(servers_path, "a gateway must have at least one server")
    servers: list[Server] = []
    names: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = item(servers_path, index)
        server = _server(r, entry, where)
        if server.port.name is not None:
            other = names.get(server.port.name)
            if other is not None and other != f"{server.port.number}/{server.port.protocol}":
                r.fail(
                    sub(where, "port.name"),
                    "port names in servers must be unique",
                    server.port.name,
                )
            names[server.port.name] = f"{server.port.number}/{server.port.protocol}"
        servers.append(server)
    return Gateway(meta=meta, api_version=api_version, selector=selector, servers=tuple(servers))


def _server(r: IstioReader, value: object, path: str) -> Server:
    if value is None:
        r.fail(path, "must be a mapping with port and hosts")
    f = r.mapping(value, path, "Server")
    port = _port(r, f.get("port"), sub(path, "port"), name_required=False)
    hosts_path = sub(path, "hosts")
    hosts = r.string_list(f, "hosts", path)
    if not hosts:
        r.fail(hosts_path, "a server must list at least one host")
    for index, host in enumerate(hosts):
        namespace, slash, name = host.partition("/")
        if not slash:
            namespace, name = "", host
        elif namespace not in (".", "*") and check_dns1123_label(namespace) is not None:
            r.fail(
                item(hosts_path, index),
                "the namespace before '/' must be '.', '*' or a DNS-1123 label",
                host,
            )
        r.check(item(hosts_path, index), name, check_wildcard_domain)
    tls = _server_tls(r, f.get("tls"), sub(path, "tls"), port)
    bind = r.opt_str(f, "bind", path)
    if bind is not None and not bind.startswith("unix://") and not is_ip(bind):
        r.fail(sub(path, "bind"), "must be an IP address or a unix:// socket path", bind)
    return Server(port=port, hosts=hosts, tls=tls, name=r.opt_str(f, "name", path), bind=bind)


def _server_tls(r: IstioReader, value: object, path: str, port: Port) -> ServerTLSSettings | None:
    if value is None:
        if port.protocol in _TLS_PROTOCOLS:
            r.fail(path, f"is required for {port.protocol} servers")
        return None
    f = r.mapping(value, path, "ServerTLSSettings")
    redirect = r.boolean(f, "httpsRedirect", path) or False
    mode = r.choice(f, "mode", path, SERVER_TLS_MODES, "PASSTHROUGH")
    if port.protocol not in _TLS_PROTOCOLS and not redirect and port.protocol != "HBONE":
        r.fail(path, f"a {port.protocol} server cannot have TLS settings (only httpsRedirect)")
    credential = r.opt_str(f, "credentialName", path)
    credentials = r.string_list(f, "credentialNames", path)
    cert = r.opt_str(f, "serverCertificate", path)
    key = r.opt_str(f, "privateKey", path)
    ca = r.opt_str(f, "caCertificates", path)
    if credential is not None and credentials:
        r.fail(
            sub(path, "credentialNames"),
            "only one of credentialName and credentialNames may be set",
        )
    has_credential = credential is not None or bool(credentials)
    if port.protocol in _TLS_PROTOCOLS and mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
        if not has_credential and f.get("tlsCertificates") is None:
            if cert is None:
                r.fail(
                    sub(path, "serverCertificate"),
                    f"{mode} TLS requires credentialName or serverCertificate and privateKey",
                )
            if key is None:
                r.fail(
                    sub(path, "privateKey"),
                    f"{mode} TLS requires credentialName or serverCertificate and privateKey",
                )
        if mode in ("MUTUAL", "OPTIONAL_MUTUAL") and not has_credential and ca is None:
            r.fail(
                sub(path, "caCertificates"),
                f"{mode} TLS requires caCertificates (or credentialName)",
            )
    if mode == "ISTIO_MUTUAL" and (has_credential or cert or key or ca):
        r.fail(path, "ISTIO_MUTUAL mode must not set certificates or credentialName")
    minimum = r.choice(f, "minProtocolVersion", path, TLS_VERSIONS, "") or None
    maximum = r.choice(f, "maxProtocolVersion", path, TLS_VERSIONS, "") or None
    if minimum and maximum and "TLS_AUTO" not in (minimum, maximum) and maximum < minimum:
        r.fail(
            sub(path, "maxProtocolVersion"), "must not be lower than minProtocolVersion", maximum
        )
    return ServerTLSSettings(
        https_redirect=redirect,
        mode=mode,
        server_certificate=cert,
        private_key=key,
        ca_certificates=ca,
        credential_name=credential,
        credential_names=credentials,
        subject_alt_names=r.string_list(f, "subjectAltNames", path),
        min_protocol_version=minimum,
        max_protocol_version=maximum,
        cipher_suites=r.string_list(f, "cipherSuites", path),
    )


# --- ServiceEntry ---------------------------------------------------------------------------
def read_service_entry(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> ServiceEntry:
    meta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "ServiceEntry")
    hosts = read_hosts(r, spec, "hosts", "spec")
    if not hosts:
        r.fail("spec.hosts", "a ServiceEntry must list at least one host")
    for index, host in enumerate(hosts):
        if host == "*":
            r.fail(item("spec.hosts", index), "must not be '*' alone", host)
    addresses = r.string_list(spec, "addresses", "spec")
    for index, address in enumerate(addresses):
        r.check(item("spec.addresses", index), address, check_cidr_or_ip)
    ports_path = "spec.ports"
    ports: list[Port] = []
    for index, entry in enumerate(r.sequence(spec.get("ports"), ports_path)):
        where = item(ports_path, index)
        port = _port(r, entry, where, name_required=True)
        assert port.name is not None
        r.check(sub(where, "name"), port.name, _port_name_rule)
        for other in ports:
            if other.number == port.number:
                r.fail(sub(where, "number"), "port numbers must be unique", port.number)
            if other.name == port.name:
                r.fail(sub(where, "name"), "port names must be unique", port.name)
        ports.append(port)
    location = r.choice(spec, "location", "spec", SE_LOCATIONS, "MESH_EXTERNAL")
    resolution = r.choice(spec, "resolution", "spec", SE_RESOLUTIONS, "NONE")
    selector = read_workload_selector(r, spec.get("workloadSelector"), "spec.workloadSelector")
    endpoints_path = "spec.endpoints"
    endpoint_entries = r.sequence(spec.get("endpoints"), endpoints_path)
    if endpoint_entries and selector is not None:
        r.fail("spec.workloadSelector", "only one of endpoints and workloadSelector may be set")
    if selector is not None and resolution not in ("NONE", "STATIC"):
        r.fail("spec.resolution", "must be NONE or STATIC with a workloadSelector", resolution)
    port_names = {p.name for p in ports}
    endpoints = tuple(
        _endpoint(r, entry, item(endpoints_path, i), resolution, port_names)
        for i, entry in enumerate(endpoint_entries)
    )
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and not endpoints:
        for index, host in enumerate(hosts):
            if host.startswith("*"):
                r.fail(
                    item("spec.hosts", index),
                    f"wildcard hosts cannot be resolved with "
                    f"{resolution} resolution when there are no endpoints",
                    host,
                )
    if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
        r.fail(
            endpoints_path, "DNS_ROUND_ROBIN resolution allows at most one endpoint", len(endpoints)
        )
    if resolution == "NONE" and endpoints:
        r.fail(endpoints_path, "endpoints need STATIC or DNS resolution (resolution is NONE)")
    return ServiceEntry(
        meta=meta,
        api_version=api_version,
        hosts=hosts,
        addresses=addresses,
        ports=tuple(ports),
        location=location,
        resolution=resolution,
        endpoints=endpoints,
        workload_selector=selector,
        export_to=read_export_to(r, spec, "spec"),
        subject_alt_names=r.string_list(spec, "subjectAltNames", "spec"),
    )


def _port_name_rule(name: str) -> str | None:
    rule = check_dns1123_label(name.lower())
    return None if rule is None else f"port name {rule}"


def _endpoint(
    r: IstioReader, value: object, path: str, resolution: str, port_names: set[str | None]
) -> WorkloadEntry:
    if value is None:
        r.fail(path, "must be a mapping with an address")
    f = r.mapping(value, path, "WorkloadEntry")
    address = r.opt_str(f, "address", path)
    network = r.opt_str(f, "network", path)
    if address is None and network is None:
        r.fail(sub(path, "address"), "is required")
    if address is not None and not address.startswith("unix://"):
        if resolution == "STATIC" and not is_ip(address):
            r.fail(sub(path, "address"), "must be an IP address with STATIC resolution", address)
        if resolution != "STATIC" and not is_ip(address):
            r.check(sub(path, "address"), address, check_wildcard_domain)
    ports_path = sub(path, "ports")
    ports: dict[str, int] = {}
    for name, number in r.string_keyed(f.get("ports"), ports_path):
        if name not in port_names:
            r.fail(item(ports_path, name), "must name one of the ServiceEntry's ports", name)
        ports[name] = read_port(r, number, item(ports_path, name))
    return WorkloadEntry(
        address=address,
        ports=FrozenDict(ports),
        labels=r.labels(f.get("labels"), sub(path, "labels")),
        network=network,
        locality=r.opt_str(f, "locality", path),
        weight=r.opt_int(f, "weight", path, 0, 2**32 - 1),
        service_account=r.opt_str(f, "serviceAccount", path),
    )
