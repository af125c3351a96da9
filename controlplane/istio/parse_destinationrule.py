"""DestinationRule: reading ``spec`` with Istio's rules for the host, subsets, and traffic
policies (load balancer, connection pool, outlier detection, client TLS, per-port settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from controlplane.istio.checks import check_wildcard_domain
from controlplane.istio.frozendict import freeze_json
from controlplane.istio.networking import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    ConsistentHashLB,
    DestinationRule,
    HTTPCookie,
    HTTPSettings,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    Subset,
    TCPKeepalive,
    TCPSettings,
    TrafficPolicy,
)
from controlplane.istio.parse_common import (
    read_export_to,
    read_meta,
    read_port,
    read_workload_selector,
)
from controlplane.istio.reader import IstioReader, item, sub
from controlplane.k8s.names import check_dns1123_label

__all__ = ["CLIENT_TLS_MODES", "SIMPLE_LB", "read_destination_rule", "read_traffic_policy"]

SIMPLE_LB: Final = (
    "UNSPECIFIED",
    "RANDOM",
    "PASSTHROUGH",
    "ROUND_ROBIN",
    "LEAST_REQUEST",
    "LEAST_CONN",
)
CLIENT_TLS_MODES: Final = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
H2_UPGRADE: Final = ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")
_INT32: Final = 2**31 - 1


def read_destination_rule(
    r: IstioReader, doc: Mapping[str, object], default_namespace: str, api_version: str
) -> DestinationRule:
    meta = read_meta(r, doc, default_namespace)
    spec = r.mapping(doc.get("spec"), "spec", "DestinationRule")
    host = r.check("spec.host", r.required_string(spec, "host", "spec"), check_wildcard_domain)
    subsets_path = "spec.subsets"
    subsets: list[Subset] = []
    for index, entry in enumerate(r.sequence(spec.get("subsets"), subsets_path)):
        where = item(subsets_path, index)
        if entry is None:
            r.fail(where, "must be a mapping with a name")
        f = r.mapping(entry, where, "Subset")
        name = r.required_string(f, "name", where)
        rule = check_dns1123_label(name)
        if rule is not None:
            r.fail(sub(where, "name"), f"subset name {rule}", name)
        if any(s.name == name for s in subsets):
            r.fail(sub(where, "name"), "subset names must be unique", name)
        subsets.append(
            Subset(
                name=name,
                labels=r.labels(f.get("labels"), sub(where, "labels")),
                traffic_policy=read_traffic_policy(
                    r, f.get("trafficPolicy"), sub(where, "trafficPolicy")
                ),
            )
        )
    return DestinationRule(
        meta=meta,
        api_version=api_version,
        host=host,
        traffic_policy=read_traffic_policy(r, spec.get("trafficPolicy"), "spec.trafficPolicy"),
        subsets=tuple(subsets),
        export_to=read_export_to(r, spec, "spec"),
        workload_selector=read_workload_selector(
            r, spec.get("workloadSelector"), "spec.workloadSelector"
        ),
    )


def read_traffic_policy(r: IstioReader, value: object, path: str) -> TrafficPolicy | None:
    if value is None:
        return None
    f = r.mapping(value, path, "TrafficPolicy")
    if not f:
        r.fail(
            path,
            "must set at least one of loadBalancer, connectionPool, outlierDetection, "
            "tls, portLevelSettings",
        )
    ports_path = sub(path, "portLevelSettings")
    ports: list[PortTrafficPolicy] = []
    for index, entry in enumerate(r.sequence(f.get("portLevelSettings"), ports_path)):
        where = item(ports_path, index)
        if entry is None:
            r.fail(where, "must be a mapping with a port")
        pf = r.mapping(entry, where, "PortTrafficPolicy")
        port_path = sub(where, "port")
        if pf.get("port") is None:
            r.fail(port_path, "is required (port level settings must name a port)")
        selector = r.mapping(pf["port"], port_path, "PortSelector")
        if selector.get("number") is None:
            r.fail(sub(port_path, "number"), "is required")
        number = read_port(r, selector["number"], sub(port_path, "number"))
        if any(p.port == number for p in ports):
            r.fail(sub(port_path, "number"), "must not repeat a port", number)
        lb, pool, outlier, tls = _policy_parts(r, pf, where)
        ports.append(PortTrafficPolicy(number, lb, pool, outlier, tls))
    lb, pool, outlier, tls = _policy_parts(r, f, path)
    return TrafficPolicy(lb, pool, outlier, tls, tuple(ports))


def _policy_parts(
    r: IstioReader, f: Mapping[str, object], path: str
) -> tuple[
    LoadBalancerSettings | None,
    ConnectionPoolSettings | None,
    OutlierDetection | None,
    ClientTLSSettings | None,
]:
    return (
        _load_balancer(r, f.get("loadBalancer"), sub(path, "loadBalancer")),
        _connection_pool(r, f.get("connectionPool"), sub(path, "connectionPool")),
        _outlier(r, f.get("outlierDetection"), sub(path, "outlierDetection")),
        _tls(r, f.get("tls"), sub(path, "tls")),
    )


def _load_balancer(r: IstioReader, value: object, path: str) -> LoadBalancerSettings | None:
    if value is None:
        return None
    f = r.mapping(value, path, "LoadBalancerSettings")
    r.one_of(f, ("simple", "consistentHash"), path)
    simple = r.choice(f, "simple", path, SIMPLE_LB, "") or None
    consistent = None
    if f.get("consistentHash") is not None:
        consistent = _consistent_hash(r, f["consistentHash"], sub(path, "consistentHash"))
    locality = f.get("localityLbSetting")
    if locality is not None and not isinstance(locality, Mapping):
        r.fail(sub(path, "localityLbSetting"), "must be a mapping", locality)
    return LoadBalancerSettings(
        simple=simple,
        consistent_hash=consistent,
        locality_lb_setting=freeze_json(locality),
        warmup_duration=r.duration(f, "warmupDurationSecs", path),
    )


def _is_prime(number: int) -> bool:
    if number < 2:
        return False
    divisor = 2
    while divisor * divisor <= number:
        if number % divisor == 0:
            return False
        divisor += 1
    return True


def _consistent_hash(r: IstioReader, value: object, path: str) -> ConsistentHashLB:
    f = r.mapping(value, path, "ConsistentHashLB")
    keys = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
    present = [k for k in keys if f.get(k) is not None and f.get(k) is not False]
    if not present:
        r.fail(path, f"must set one of {', '.join(keys)}")
    if len(present) > 1:
        r.fail(
            sub(path, present[1]),
            f"only one of {', '.join(keys)} may be set (found {' and '.join(present)})",
        )
    r.one_of(f, ("ringHash", "maglev", "minimumRingSize"), path)
    cookie = None
    if f.get("httpCookie") is not None:
        cookie_path = sub(path, "httpCookie")
        c = r.mapping(f["httpCookie"], cookie_path, "HTTPCookie")
        cookie = HTTPCookie(
            name=r.required_string(c, "name", cookie_path),
            path=r.opt_str(c, "path", cookie_path),
            ttl=r.duration(c, "ttl", cookie_path, allow_zero=True),
        )
    ring: int | None = r.opt_int(f, "minimumRingSize", path, 0, 2**63 - 1)
    if f.get("ringHash") is not None:
        ring_path = sub(path, "ringHash")
        rf = r.mapping(f["ringHash"], ring_path, "RingHash")
        ring = r.opt_int(rf, "minimumRingSize", ring_path, 0, 2**63 - 1) or 0
    table: int | None = None
    if f.get("maglev") is not None:
        maglev_path = sub(path, "maglev")
        mf = r.mapping(f["maglev"], maglev_path, "MagLev")
        table = r.opt_int(mf, "tableSize", maglev_path, 0, 2**63 - 1)
        if table is not None and table != 0 and not _is_prime(table):
            r.fail(sub(maglev_path, "tableSize"), "must be a prime number", table)
    header = r.opt_str(f, "httpHeaderName", path)
    return ConsistentHashLB(
        http_header_name=header,
        http_cookie=cookie,
        use_source_ip=r.boolean(f, "useSourceIp", path) or False,
        http_query_parameter_name=r.opt_str(f, "httpQueryParameterName", path),
        ring_hash_minimum_ring_size=ring,
        maglev_table_size=table,
        maglev=f.get("maglev") is not None,
    )


def _connection_pool(r: IstioReader, value: object, path: str) -> ConnectionPoolSettings | None:
    if value is None:
        return None
    f = r.mapping(value, path, "ConnectionPoolSettings")
    if f.get("tcp") is None and f.get("http") is None:
        r.fail(path, "must set tcp or http settings")
    tcp = http = None
    if f.get("tcp") is not None:
        tcp_path = sub(path, "tcp")
        t = r.mapping(f["tcp"], tcp_path, "TCPSettings")
        keepalive = None
        if t.get("tcpKeepalive") is not None:
            ka_path = sub(tcp_path, "tcpKeepalive")
            k = r.mapping(t["tcpKeepalive"], ka_path, "TcpKeepalive")
            keepalive = TCPKeepalive(
                probes=r.opt_int(k, "probes", ka_path, 0, 2**32 - 1),
                time=r.duration(k, "time", ka_path),
                interval=r.duration(k, "interval", ka_path),
            )
        tcp = TCPSettings(
            max_connections=r.opt_int(t, "maxConnections", tcp_path, 0, _INT32),
            connect_timeout=r.duration(t, "connectTimeout", tcp_path),
            tcp_keepalive=keepalive,
            max_connection_duration=r.duration(t, "maxConnectionDuration", tcp_path),
            idle_timeout=r.duration(t, "idleTimeout", tcp_path, allow_zero=True),
        )
    if f.get("http") is not None:
        http_path = sub(path, "http")
        h = r.mapping(f["http"], http_path, "HTTPSettings")
        http = HTTPSettings(
            http1_max_pending_requests=r.opt_int(
                h, "http1MaxPendingRequests", http_path, 0, _INT32
            ),
            http2_max_requests=r.opt_int(h, "http2MaxRequests", http_path, 0, _INT32),
            max_requests_per_connection=r.opt_int(
                h, "maxRequestsPerConnection", http_path, 0, _INT32
            ),
            max_retries=r.opt_int(h, "maxRetries", http_path, 0, _INT32),
            idle_timeout=r.duration(h, "idleTimeout", http_path),
            h2_upgrade_policy=r.choice(h, "h2UpgradePolicy", http_path, H2_UPGRADE, "") or None,
            use_client_protocol=r.boolean(h, "useClientProtocol", http_path),
            max_concurrent_streams=r.opt_int(h, "maxConcurrentStreams", http_path, 0, _INT32),
        )
    return ConnectionPoolSettings(tcp=tcp, http=http)


def _outlier(r: IstioReader, value: object, path: str) -> OutlierDetection | None:
    if value is None:
        return None
    f = r.mapping(value, path, "OutlierDetection")
    consecutive_5xx = r.opt_int(f, "consecutive5xxErrors", path, 0, 2**32 - 1)
    if consecutive_5xx is None:
        consecutive_5xx = r.opt_int(f, "consecutiveErrors", path, 0, _INT32)
    split = r.boolean(f, "splitExternalLocalOriginErrors", path) or False
    local_origin = r.opt_int(f, "consecutiveLocalOriginFailures", path, 0, 2**32 - 1)
    if local_origin is not None and not split:
        r.fail(
            sub(path, "consecutiveLocalOriginFailures"),
            "is only used when splitExternalLocalOriginErrors is true",
            local_origin,
        )
    return OutlierDetection(
        consecutive_5xx_errors=consecutive_5xx,
        consecutive_gateway_errors=r.opt_int(f, "consecutiveGatewayErrors", path, 0, 2**32 - 1),
        consecutive_local_origin_failures=local_origin,
        split_external_local_origin_errors=split,
        interval=r.duration(f, "interval", path),
        base_ejection_time=r.duration(f, "baseEjectionTime", path),
        max_ejection_percent=r.opt_int(f, "maxEjectionPercent", path, 0, 100),
        min_health_percent=r.opt_int(f, "minHealthPercent", path, 0, 100),
    )


def _tls(r: IstioReader, value: object, path: str) -> ClientTLSSettings | None:
    if value is None:
        return None
    f = r.mapping(value, path, "ClientTLSSettings")
    mode = r.choice(f, "mode", path, CLIENT_TLS_MODES, "DISABLE")
    credential = r.opt_str(f, "credentialName", path)
    cert = r.opt_str(f, "clientCertificate", path)
    key = r.opt_str(f, "privateKey", path)
    ca = r.opt_str(f, "caCertificates", path)
    if mode == "ISTIO_MUTUAL":
        for name, present in (
            ("credentialName", credential),
            ("clientCertificate", cert),
            ("privateKey", key),
            ("caCertificates", ca),
        ):
            if present is not None:
                r.fail(
                    sub(path, name),
                    "must not be set when mode is ISTIO_MUTUAL (Istio provides the certificates)",
                    present,
                )
    if mode == "MUTUAL" and credential is None:
        if cert is None:
            r.fail(
                sub(path, "clientCertificate"),
                "is required for MUTUAL mode unless credentialName is set",
            )
        if key is None:
            r.fail(
                sub(path, "privateKey"), "is required for MUTUAL mode unless credentialName is set"
            )
    return ClientTLSSettings(
        mode=mode,
        client_certificate=cert,
        private_key=key,
        ca_certificates=ca,
        credential_name=credential,
        subject_alt_names=r.string_list(f, "subjectAltNames", path),
        sni=r.opt_str(f, "sni", path),
        insecure_skip_verify=r.boolean(f, "insecureSkipVerify", path),
    )
