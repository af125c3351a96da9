"""Istio's rules, one broken at a time: each invalid variant of a sample fails with a message
naming the object, the field path, the rule and the bad value."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from controlplane.istio import parse_mesh_object
from controlplane.k8s import ALL_KINDS, InvalidObject, load_documents

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100.0}}
      abort: {httpStatus: 500, percentage: {value: 10}}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
"""

DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms}
      http: {http1MaxPendingRequests: 10, idleTimeout: 1h2m}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 50}
    tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: v1
    labels: {version: v1}
"""

PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9080: {mode: PERMISSIVE}
"""

AP = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings}
spec:
  selector: {matchLabels: {app: ratings}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/bookinfo-reviews]
        ipBlocks: [10.0.0.0/8]
    to:
    - operation: {methods: [GET], ports: ["9080"]}
    when:
    - key: request.headers[x-user]
      values: [jason]
"""

RA = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  selector: {matchLabels: {app: productpage}}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwksUri: https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json
    fromHeaders: [{name: x-jwt, prefix: "Bearer "}]
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
"""

GW = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo/bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
"""

SE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  addresses: [192.0.2.0/24]
  ports: [{number: 443, name: https, protocol: TLS}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 192.0.2.10}]
"""

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-user, value: jason}]}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: b}]}}]
    backendRefs:
    - {name: reviews-v1, port: 9080, weight: 90}
    - {name: reviews-v2, port: 9080, weight: 10}
    timeouts: {request: 10s, backendRequest: 2s}
"""

KGW = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"""

SAMPLES = {"VS": VS, "DR": DR, "PA": PA, "AP": AP, "RA": RA, "GW": GW, "SE": SE,
           "ROUTE": ROUTE, "KGW": KGW}  # fmt: skip

Edit = Callable[[dict[str, Any]], None]


def setter(path: str, value: object) -> Edit:
    """``spec.http[0].route[1].weight`` = value (``None`` deletes)."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        for index in rest.split("[") if rest else ():
            steps.append(int(index.rstrip("]")))

    def edit(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in steps[:-1]:
            target = target[step]
        if value is None:
            del target[steps[-1]]
        else:
            target[steps[-1]] = value

    return edit


def check(sample: str, edits: list[Edit]) -> InvalidObject:
    doc = copy.deepcopy(yaml.safe_load(SAMPLES[sample]))
    for edit in edits:
        edit(doc)
    result = load_documents(yaml.safe_dump(doc), "bad.yaml", kinds=ALL_KINDS)
    assert len(result.failures) == 1, [str(e) for e in result.errors]
    error = result.failures[0]
    assert isinstance(error, InvalidObject)
    return error


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_base_samples_are_valid(sample: str) -> None:
    result = load_documents(SAMPLES[sample], "ok.yaml", kinds=ALL_KINDS)
    assert result.ok, [str(e) for e in result.errors]
    assert result.warnings == []


S = setter
CASES: list[tuple[str, str, list[Edit], str, str]] = [
    # (id, sample, edits, field path, rule)
    ("weights-sum", "VS", [S("spec.http[0].route[1].weight", 30)],
     "spec.http[0].route[1].weight", "weights of the route's destinations must add up to 100, got 110"),
    ("weight-range", "VS", [S("spec.http[0].route[1].weight", 120)],
     "spec.http[0].route[1].weight", "must be an integer between 0 and 100, got 120"),
    ("destination-host-missing", "VS", [S("spec.http[0].route[0].destination.host", None)],
     "spec.http[0].route[0].destination.host", "is required"),
    ("destination-host-star", "VS", [S("spec.http[0].route[0].destination.host", "*")],
     "spec.http[0].route[0].destination.host", "must name a service"),
    ("destination-port", "VS", [S("spec.http[0].route[0].destination.port", {"number": 70000})],
     "spec.http[0].route[0].destination.port.number", "must be an integer between 1 and 65535"),
    ("bad-subset-name-in-route", "VS", [S("spec.http[0].route[0].destination.subset", "V_1")],
     "spec.http[0].route[0].destination.subset", "subset name must be a DNS-1123 label"),
    ("bad-duration", "VS", [S("spec.http[0].fault.delay.fixedDelay", "7 seconds")],
     "spec.http[0].fault.delay.fixedDelay", 'must be a duration such as "1.5s"'),
    ("duration-below-1ms", "VS", [S("spec.http[0].retries.perTryTimeout", "500us")],
     "spec.http[0].retries.perTryTimeout", "duration must be at least 1ms"),
    ("duration-precision", "VS", [S("spec.http[0].timeout", "1500us")],
     "spec.http[0].timeout", "millisecond precision"),
    ("bad-percentage", "VS", [S("spec.http[0].fault.abort.percentage.value", 150)],
     "spec.http[0].fault.abort.percentage.value", "must be a number between 0 and 100, got 150"),
    ("both-delays", "VS", [S("spec.http[0].fault.delay.exponentialDelay", "1s")],
     "spec.http[0].fault.delay.exponentialDelay", "only one of fixedDelay, exponentialDelay may be set"),
    ("http-status-700", "VS", [S("spec.http[0].fault.abort.httpStatus", 700)],
     "spec.http[0].fault.abort.httpStatus", "must be an integer between 200 and 599, got 700"),
    ("http-and-grpc-status", "VS", [S("spec.http[0].fault.abort.grpcStatus", "UNAVAILABLE")],
     "spec.http[0].fault.abort.grpcStatus", "only one of httpStatus, grpcStatus, http2Error may be set"),
    ("bad-grpc-status", "VS", [S("spec.http[0].fault.abort", {"grpcStatus": "NOPE"})],
     "spec.http[0].fault.abort.grpcStatus", "must be one of OK, CANCELLED"),
    ("empty-fault", "VS", [S("spec.http[0].fault", {"foo": 1})],
     "spec.http[0].fault", "fault injection must have an abort and/or a delay"),
    ("bad-regex", "VS", [S("spec.http[0].match[0].headers.end-user", {"regex": "([a-z"})],
     "spec.http[0].match[0].headers[end-user].regex", "regex does not compile"),
    ("regex-lookahead", "VS", [S("spec.http[0].match[0].headers.end-user", {"regex": "(?=x)y"})],
     "spec.http[0].match[0].headers[end-user].regex", "RE2 does not support"),
    ("two-string-matches", "VS", [S("spec.http[0].match[0].headers.end-user", {"exact": "a", "prefix": "b"})],
     "spec.http[0].match[0].headers[end-user].prefix", "only one of exact, prefix, regex may be set"),
    ("uppercase-header", "VS", [S("spec.http[0].match[0].headers", {"End-User": {"exact": "jason"}})],
     "spec.http[0].match[0].headers[End-User]", "header names must be lowercase"),
    ("match-port", "VS", [S("spec.http[0].match[0].port", 0)],
     "spec.http[0].match[0].port", "must be an integer between 1 and 65535, got 0"),
    ("route-and-redirect", "VS", [S("spec.http[0].redirect", {"uri": "/x"})],
     "spec.http[0].redirect", "only one of route, redirect, directResponse and delegate may be set"),
    ("no-destination", "VS", [S("spec.http[0].route", None)],
     "spec.http[0]", "must have one of route, redirect, directResponse or delegate"),
    ("direct-response-status", "VS", [S("spec.http[0].route", None), S("spec.http[0].fault", None),
                                      S("spec.http[0].directResponse", {"status": 700})],
     "spec.http[0].directResponse.status", "must be an integer between 200 and 599"),
    ("redirect-code", "VS", [S("spec.http[0].route", None), S("spec.http[0].fault", None),
                             S("spec.http[0].redirect", {"uri": "/v2", "redirectCode": 200})],
     "spec.http[0].redirect.redirectCode", "must be an integer between 300 and 399, got 200"),
    ("attempts-negative", "VS", [S("spec.http[0].retries.attempts", -1)],
     "spec.http[0].retries.attempts", "must be an integer >= 0, got -1"),
    ("retry-on", "VS", [S("spec.http[0].retries.retryOn", "5xx,sometimes")],
     "spec.http[0].retries.retryOn", 'is not a valid retryOn policy'),
    ("mirror-and-mirrors", "VS", [S("spec.http[0].mirror", {"host": "a"}),
                                  S("spec.http[0].mirrors", [{"destination": {"host": "b"}}])],
     "spec.http[0].mirrors", "only one of mirror, mirrors may be set"),
    ("mirror-percentage", "VS", [S("spec.http[0].mirror", {"host": "a"}),
                                 S("spec.http[0].mirrorPercentage", {"value": 101})],
     "spec.http[0].mirrorPercentage.value", "must be a number between 0 and 100"),
    ("rewrite-uri-and-regex", "VS", [S("spec.http[0].rewrite", {"uri": "/", "uriRegexRewrite": {"match": "a", "rewrite": "b"}})],
     "spec.http[0].rewrite.uriRegexRewrite", "only one of uri and uriRegexRewrite"),
    ("no-hosts-with-gateways", "VS", [S("spec.hosts", None), S("spec.gateways", ["gw"])],
     "spec.gateways", "must be empty in a delegate VirtualService"),
    ("no-routes", "VS", [S("spec.http", None)],
     "spec", "at least one of http, tcp or tls routes must be provided"),
    ("star-host-mesh", "VS", [S("spec.hosts", ["*"])],
     "spec.hosts[0]", "wildcard host * is not allowed for virtual services bound to the mesh gateway"),
    ("bad-wildcard-host", "VS", [S("spec.hosts", ["foo.*.com"])],
     "spec.hosts[0]", "may only use '*' as the whole first label"),
    ("numeric-tld", "VS", [S("spec.hosts", ["reviews.123"])],
     "spec.hosts[0]", "cannot be all digits"),
    ("bad-gateway-name", "VS", [S("spec.gateways", ["ns/Bad_Name"])],
     "spec.gateways[0]", "the gateway name after '/' must be a DNS-1123 label"),
    ("export-to", "VS", [S("spec.exportTo", ["*", "shop"])],
     "spec.exportTo", "'*' and '~' must be the only entry"),
    ("tcp-subnet", "VS", [S("spec.tcp", [{"match": [{"destinationSubnets": ["10.0.0.0/40"]}],
                                           "route": [{"destination": {"host": "db"}}]}])],
     "spec.tcp[0].match[0].destinationSubnets[0]", "must be an IP address or a CIDR range"),
    ("bad-api-version", "VS", [S("apiVersion", "networking.istio.io/v2")],
     "apiVersion", 'must be one of networking.istio.io/v1, networking.istio.io/v1beta1, '
     'networking.istio.io/v1alpha3 for a VirtualService, got "networking.istio.io/v2"'),
    # DestinationRule
    ("dr-host-missing", "DR", [S("spec.host", None)], "spec.host", "is required"),
    ("dr-bad-subset", "DR", [S("spec.subsets[0].name", "V_1")],
     "spec.subsets[0].name", "subset name must be a DNS-1123 label"),
    ("dr-duplicate-subset", "DR", [S("spec.subsets", [{"name": "v1"}, {"name": "v1"}])],
     "spec.subsets[1].name", "subset names must be unique"),
    ("dr-simple-and-hash", "DR", [S("spec.trafficPolicy.loadBalancer.consistentHash", {"useSourceIp": True})],
     "spec.trafficPolicy.loadBalancer.consistentHash", "only one of simple, consistentHash may be set"),
    ("dr-bad-lb", "DR", [S("spec.trafficPolicy.loadBalancer.simple", "FASTEST")],
     "spec.trafficPolicy.loadBalancer.simple", "must be one of UNSPECIFIED, RANDOM"),
    ("dr-connect-timeout", "DR", [S("spec.trafficPolicy.connectionPool.tcp.connectTimeout", "0s")],
     "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "duration must be at least 1ms"),
    ("dr-max-connections", "DR", [S("spec.trafficPolicy.connectionPool.tcp.maxConnections", -1)],
     "spec.trafficPolicy.connectionPool.tcp.maxConnections", "must be an integer >= 0"),
    ("dr-ejection-percent", "DR", [S("spec.trafficPolicy.outlierDetection.maxEjectionPercent", 150)],
     "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "must be an integer between 0 and 100, got 150"),
    ("dr-tls-mode", "DR", [S("spec.trafficPolicy.tls.mode", "MAYBE")],
     "spec.trafficPolicy.tls.mode", "must be one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"),
    ("dr-mutual-needs-cert", "DR", [S("spec.trafficPolicy.tls.mode", "MUTUAL")],
     "spec.trafficPolicy.tls.clientCertificate", "is required for MUTUAL mode"),
    ("dr-maglev-prime", "DR", [S("spec.trafficPolicy.loadBalancer", {"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 1000}}})],
     "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "must be a prime number"),
    ("dr-port-level-port", "DR", [S("spec.trafficPolicy.portLevelSettings", [{"tls": {"mode": "SIMPLE"}}])],
     "spec.trafficPolicy.portLevelSettings[0].port", "is required"),
    ("dr-selector-wildcard", "DR", [S("spec.workloadSelector", {"matchLabels": {"app": "a*"}})],
     "spec.workloadSelector.matchLabels[app]", "must be empty or consist of"),
    # PeerAuthentication
    ("pa-bad-mode", "PA", [S("spec.mtls.mode", "STRICTER")],
     "spec.mtls.mode", 'must be one of UNSET, DISABLE, PERMISSIVE, STRICT, got "STRICTER"'),
    ("pa-port-level-needs-selector", "PA", [S("spec.selector", None)],
     "spec.portLevelMtls", "port level mTLS needs a selector"),
    ("pa-port-range", "PA", [S("spec.portLevelMtls", {70000: {"mode": "DISABLE"}})],
     "spec.portLevelMtls[70000]", "port must be an integer between 1 and 65535"),
    ("pa-bad-api-version", "PA", [S("apiVersion", "security.istio.io/v1alpha1")],
     "apiVersion", "must be one of security.istio.io/v1, security.istio.io/v1beta1 for a PeerAuthentication"),
    # AuthorizationPolicy
    ("ap-custom-without-provider", "AP", [S("spec.action", "CUSTOM"),
                                          S("spec.rules[0].from", None),
                                          S("spec.rules[0].when", None)],
     "spec.provider.name", "is required with action CUSTOM"),
    ("ap-provider-with-allow", "AP", [S("spec.provider", {"name": "ext-authz"})],
     "spec.provider", "can only be set with action CUSTOM"),
    ("ap-deny-without-rules", "AP", [S("spec.action", "DENY"), S("spec.rules", None)],
     "spec.rules", "a DENY policy without rules never triggers"),
    ("ap-bad-action", "AP", [S("spec.action", "PERMIT")],
     "spec.action", "must be one of ALLOW, DENY, AUDIT, CUSTOM"),
    ("ap-unknown-when-key", "AP", [S("spec.rules[0].when[0].key", "request.foo")],
     "spec.rules[0].when[0].key", "is not a supported key"),
    ("ap-when-map-key", "AP", [S("spec.rules[0].when[0].key", "request.headers")],
     "spec.rules[0].when[0].key", "must have the form name[key]"),
    ("ap-when-no-values", "AP", [S("spec.rules[0].when[0].values", None)],
     "spec.rules[0].when[0]", "at least one of values and notValues must be set"),
    ("ap-when-bad-ip", "AP", [S("spec.rules[0].when[0]", {"key": "source.ip", "values": ["10.1.2.300"]})],
     "spec.rules[0].when[0].values[0]", "must be an IP address or a CIDR range"),
    ("ap-bad-cidr", "AP", [S("spec.rules[0].from[0].source.ipBlocks", ["10.0.0.0/33"])],
     "spec.rules[0].from[0].source.ipBlocks[0]", 'must be an IP address or a CIDR range (the prefix length is out of range), got "10.0.0.0/33"'),
    ("ap-bad-port", "AP", [S("spec.rules[0].to[0].operation.ports", ["http"])],
     "spec.rules[0].to[0].operation.ports[0]", "must be a port number"),
    ("ap-empty-source", "AP", [S("spec.rules[0].from[0].source", {"principals": []})],
     "spec.rules[0].from[0].source", "must set at least one field"),
    ("ap-empty-principal", "AP", [S("spec.rules[0].from[0].source.principals", [""])],
     "spec.rules[0].from[0].source.principals[0]", "must not be empty"),
    ("ap-selector-and-target-ref", "AP", [S("spec.targetRef", {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"})],
     "spec.targetRef", "only one of selector, targetRef and targetRefs may be set"),
    ("ap-custom-principals", "AP", [S("spec.action", "CUSTOM"), S("spec.provider", {"name": "ext"}),
                                    S("spec.rules[0].when", None)],
     "spec.rules[0].from[0].source.principals", "is not supported with action CUSTOM"),
    # RequestAuthentication
    ("ra-no-issuer", "RA", [S("spec.jwtRules[0].issuer", None), S("spec.jwtRules[0].jwksUri", None)],
     "spec.jwtRules[0].issuer", "issuer or jwksUri must be set"),
    ("ra-bad-jwks-uri", "RA", [S("spec.jwtRules[0].jwksUri", "ftp://example.com/jwks")],
     "spec.jwtRules[0].jwksUri", "must be an http:// or https:// URL"),
    ("ra-header-name", "RA", [S("spec.jwtRules[0].outputClaimToHeaders[0].header", "x sub")],
     "spec.jwtRules[0].outputClaimToHeaders[0].header", "must be a valid HTTP header name"),
    # Gateway
    ("gw-no-servers", "GW", [S("spec.servers", [])], "spec.servers", "a gateway must have at least one server"),
    ("gw-https-without-tls", "GW", [S("spec.servers[0].tls", None)],
     "spec.servers[0].tls", "is required for HTTPS servers"),
    ("gw-bad-protocol", "GW", [S("spec.servers[0].port.protocol", "SMTP")],
     "spec.servers[0].port.protocol", "must be one of HTTP, HTTPS"),
    ("gw-bad-host-namespace", "GW", [S("spec.servers[0].hosts", ["Book_Info/x.example.com"])],
     "spec.servers[0].hosts[0]", "the namespace before '/' must be"),
    ("gw-simple-needs-cert", "GW", [S("spec.servers[0].tls", {"mode": "SIMPLE"})],
     "spec.servers[0].tls.serverCertificate", "SIMPLE TLS requires credentialName"),
    # ServiceEntry
    ("se-no-hosts", "SE", [S("spec.hosts", None)], "spec.hosts", "at least one host"),
    ("se-bad-address", "SE", [S("spec.addresses", ["192.0.2.0/99"])],
     "spec.addresses[0]", "must be an IP address or a CIDR range"),
    ("se-bad-resolution", "SE", [S("spec.resolution", "MAGIC")],
     "spec.resolution", "must be one of NONE, STATIC, DNS"),
    ("se-static-endpoint", "SE", [S("spec.endpoints", [{"address": "api.example.com"}])],
     "spec.endpoints[0].address", "must be an IP address with STATIC resolution"),
    ("se-port-name", "SE", [S("spec.ports", [{"number": 443, "protocol": "TLS"}])],
     "spec.ports[0].name", "is required"),
    ("se-endpoints-and-selector", "SE", [S("spec.workloadSelector", {"matchLabels": {"app": "x"}})],
     "spec.workloadSelector", "only one of endpoints and workloadSelector may be set"),
    # Gateway API
    ("route-backend-port", "ROUTE", [S("spec.rules[0].backendRefs[0].port", None)],
     "spec.rules[0].backendRefs[0].port", "is required for a Service backend"),
    ("route-path-absolute", "ROUTE", [S("spec.rules[0].matches[0].path.value", "api")],
     "spec.rules[0].matches[0].path.value", "must be an absolute path"),
    ("route-path-type", "ROUTE", [S("spec.rules[0].matches[0].path.type", "Glob")],
     "spec.rules[0].matches[0].path.type", "must be one of Exact, PathPrefix, RegularExpression"),
    ("route-weight", "ROUTE", [S("spec.rules[0].backendRefs[0].weight", 1000001)],
     "spec.rules[0].backendRefs[0].weight", "must be an integer between 0 and 1000000"),
    ("route-timeout", "ROUTE", [S("spec.rules[0].timeouts.request", "1.5s")],
     "spec.rules[0].timeouts.request", "must be a Gateway API duration"),
    ("route-backend-timeout", "ROUTE", [S("spec.rules[0].timeouts.backendRequest", "20s")],
     "spec.rules[0].timeouts.backendRequest", "must not be longer than timeouts.request"),
    ("route-filter-mismatch", "ROUTE", [S("spec.rules[0].filters[0].type", "URLRewrite")],
     "spec.rules[0].filters[0].requestHeaderModifier", "must not be set for filter type URLRewrite"),
    ("route-header-regex", "ROUTE", [S("spec.rules[0].matches[0].headers[0]", {"type": "RegularExpression", "name": "x", "value": "(("})],
     "spec.rules[0].matches[0].headers[0].value", "regex does not compile"),
    ("route-bad-api-version", "ROUTE", [S("apiVersion", "gateway.networking.k8s.io/v1alpha1")],
     "apiVersion", "must be one of gateway.networking.k8s.io/v1, gateway.networking.k8s.io/v1beta1 for a HTTPRoute"),
    ("kgw-no-listeners", "KGW", [S("spec.listeners", [])],
     "spec.listeners", "a Gateway must have at least one listener"),
    ("kgw-listener-name", "KGW", [S("spec.listeners[0].name", "Mesh_1")],
     "spec.listeners[0].name", "must be a lowercase DNS subdomain"),
    ("kgw-class-required", "KGW", [S("spec.gatewayClassName", None)],
     "spec.gatewayClassName", "is required"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("sample", "edits", "field", "rule"),
    [pytest.param(s, e, f, r, id=i) for i, s, e, f, r in CASES],
)
def test_invalid_variant(sample: str, edits: list[Edit], field: str, rule: str) -> None:
    error = check(sample, edits)
    assert error.field == field, str(error)
    assert rule in str(error)
    assert f"{field}: " in str(error) and "(bad.yaml, document 1)" in str(error)


def test_message_names_object_field_rule_and_value() -> None:
    error = check("VS", [S("spec.http[0].route[1].weight", 30)])
    assert str(error) == (
        "VirtualService default/reviews (bad.yaml, document 1): spec.http[0].route[1].weight: "
        "weights of the route's destinations must add up to 100, got 110"
    )
    gateway_api = check("KGW", [S("spec.listeners[0].port", 0)])
    assert str(gateway_api).startswith(
        "gateway.networking.k8s.io/Gateway default/waypoint (bad.yaml, document 1): "
        "spec.listeners[0].port: must be an integer between 1 and 65535, got 0"
    )


def test_single_destination_needs_no_weight_and_zero_sum_is_refused() -> None:
    ok = check_ok("VS", [S("spec.http[0].route", [{"destination": {"host": "reviews"}}])])
    assert ok
    error = check(
        "VS", [S("spec.http[0].route[0].weight", 0), S("spec.http[0].route[1].weight", 0)]
    )
    assert "got 0" in str(error)


def check_ok(sample: str, edits: list[Edit]) -> bool:
    doc = copy.deepcopy(yaml.safe_load(SAMPLES[sample]))
    for edit in edits:
        edit(doc)
    result = load_documents(yaml.safe_dump(doc), "ok.yaml", kinds=ALL_KINDS)
    return result.ok


@pytest.mark.parametrize(
    ("sample", "edits"),
    [
        ("VS", [S("spec.hosts", None)]),  # a delegate VirtualService
        ("VS", [S("spec.hosts", ["*"]), S("spec.gateways", ["istio-system/gw"])]),
        ("VS", [S("spec.timeout", "0s")]),
        ("VS", [S("spec.http[0].match[0].headers.end-user", {})]),
        ("VS", [S("spec.hosts", ["*.example.com", "10.0.0.1"])]),
        ("DR", [S("spec.trafficPolicy.loadBalancer", {"consistentHash": {"httpCookie": {"name": "u", "ttl": "0s"}}})]),
        ("AP", [S("spec.rules", [{}])]),
        ("AP", [S("spec.rules[0].when[0].key", "experimental.envoy.filters.network.mysql_proxy[db.table]")]),
        ("AP", [S("spec.selector", None), S("spec.targetRefs", [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}])]),
        ("PA", [S("spec.portLevelMtls", {"9080": {"mode": "DISABLE"}})]),
        ("SE", [S("spec.resolution", "DNS"), S("spec.endpoints", [{"address": "api.example.com"}])]),
        ("ROUTE", [S("spec.rules[0].timeouts", {"request": "0s", "backendRequest": "5s"})]),
    ],
)  # fmt: skip
def test_valid_variants(sample: str, edits: list[Edit]) -> None:
    assert check_ok(sample, edits)


def test_parse_mesh_object_raises_for_bad_documents() -> None:
    doc = yaml.safe_load(textwrap.dedent(VS))
    doc["spec"]["http"][0]["fault"]["abort"]["httpStatus"] = 700
    with pytest.raises(InvalidObject) as caught:
        parse_mesh_object(doc, "x.yaml, document 1")
    assert caught.value.field == "spec.http[0].fault.abort.httpStatus"
    assert caught.value.value == 700
