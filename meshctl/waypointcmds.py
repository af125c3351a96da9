"""``meshctl waypoint generate|apply|delete|list|routes``: waypoints, like ``istioctl waypoint``.

- ``generate`` prints the Gateway (class ``istio-waypoint``, listener ``mesh`` 15008 HBONE,
  label ``istio.io/waypoint-for``) that declares a waypoint; it is checked offline first, with
  the objects the control plane's waypoint controller would make for it.
- ``apply`` applies that Gateway through the control plane (as ``meshctl apply`` does); the
  control plane then creates the waypoint's ServiceAccount, Deployment and Service.
  ``--enroll-namespace`` also labels the namespace ``istio.io/use-waypoint=<name>`` (its other
  labels kept).
- ``delete`` deletes waypoint Gateways (and so their objects); a Gateway that is not a
  waypoint is refused.
- ``list`` shows each waypoint: traffic type, address (its Service's ClusterIP), whether the
  controller made its objects (PROGRAMMED), ready pods, and the services bound to it.
- ``routes`` shows what the control plane sends the waypoint: routes per service host and the
  destination policies (``Debug`` ``view:waypoint/<ns>/<name>``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import yaml
from google.protobuf import json_format

from controlplane import gatewaydeploy
from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import Stub
from controlplane.istio.gatewayapi import WAYPOINT_CLASS
from controlplane.k8s.loader import ALL_KINDS, load_documents
from meshctl import table
from meshctl.configcmds import default_target

DEFAULT_NAME = "waypoint"
TRAFFIC_TYPES = ("service", "workload", "all", "none")
WAYPOINT_FOR = "istio.io/waypoint-for"
USE_WAYPOINT = "istio.io/use-waypoint"
GATEWAY_KEY = "gateway.networking.k8s.io/Gateway"
CLUSTER_DOMAIN = "cluster.local"
Json = dict[str, Any]


class WaypointError(Exception):
    """A waypoint command cannot do what was asked; the message says what and why."""


# --- arguments ----------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    namespace = argparse.ArgumentParser(add_help=False)
    namespace.add_argument("-n", "--namespace", default="default", help="the waypoint's namespace (default %(default)s)")
    controlplane = argparse.ArgumentParser(add_help=False)
    controlplane.add_argument("--controlplane", default=None, help="address (default: the lab's socket)")
    shape = argparse.ArgumentParser(add_help=False)
    shape.add_argument("--name", default=DEFAULT_NAME, help="the waypoint's name (default %(default)s)")
    shape.add_argument("--for", dest="traffic_type", choices=TRAFFIC_TYPES, default="service",
                       help="the traffic it handles (label istio.io/waypoint-for; default %(default)s)")

    wp = sub.add_parser("waypoint", help="waypoints: generate, apply, delete, list, routes",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = wp.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("generate", parents=[namespace, shape], help="print the Gateway that declares a waypoint")
    ap = verbs.add_parser("apply", parents=[namespace, shape, controlplane],
                          help="apply a waypoint through the control plane")
    ap.add_argument("--enroll-namespace", action="store_true",
                    help="also label the namespace istio.io/use-waypoint=NAME")
    de = verbs.add_parser("delete", parents=[namespace, controlplane], help="delete waypoints")
    de.add_argument("names", nargs="+", metavar="NAME")
    ls = verbs.add_parser("list", parents=[controlplane], help="the waypoints, their addresses and bound services")
    scope = ls.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default="default", help="namespace (default %(default)s)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    ls.add_argument("-o", "--output", choices=["table", "json"], default="table")
    ro = verbs.add_parser("routes", parents=[namespace, controlplane],
                          help="a waypoint's routes and destination policies, as the control plane sends them")
    ro.add_argument("name", metavar="NAME")
    ro.add_argument("-o", "--output", choices=["table", "json"], default="table")


def run(args: argparse.Namespace) -> int:
    verb = args.verb
    try:
        if verb == "generate":
            print(generate(args.namespace, args.name, args.traffic_type), end="")
            return 0
        target = args.controlplane or default_target()
        stub = Stub(target)
        try:
            if verb == "apply":
                return apply(stub, args.namespace, args.name, args.traffic_type, enroll=args.enroll_namespace)
            if verb == "delete":
                return delete(stub, args.namespace, args.names)
            if verb == "list":
                print(list_waypoints(stub, None if args.all_namespaces else args.namespace, args.output))
                return 0
            if verb == "routes":
                print(routes(stub, args.namespace, args.name, args.output))
                return 0
        finally:
            stub.close()
    except grpc.RpcError as exc:
        print(f"meshctl waypoint {verb}: the control plane at {args.controlplane or default_target()} did not "
              f"answer ({exc.code().name}: {exc.details()}); is the lab up (`meshctl lab up`)?", file=sys.stderr)
        return 1
    except WaypointError as exc:
        print(f"meshctl waypoint {verb}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(verb)


# --- generate and apply ---------------------------------------------------------------------


def gateway_document(namespace: str, name: str, traffic_type: str = "service") -> Json:
    """The Gateway ``istioctl waypoint generate`` writes."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace, "labels": {WAYPOINT_FOR: traffic_type}},
        "spec": {
            "gatewayClassName": WAYPOINT_CLASS,
            "listeners": [{"name": "mesh", "port": gatewaydeploy.HBONE_PORT, "protocol": "HBONE"}],
        },
    }


def generate(namespace: str, name: str, traffic_type: str = "service") -> str:
    """The Gateway as YAML, after checking it (and the objects it leads to) offline; raises
    :class:`WaypointError` with the rule broken."""
    text: str = yaml.safe_dump(gateway_document(namespace, name, traffic_type), sort_keys=True)
    loaded = load_documents(text, "meshctl waypoint", kinds=ALL_KINDS)
    if loaded.errors:
        raise WaypointError("; ".join(str(e) for e in loaded.errors))
    gateway = loaded.items[0].obj
    assert gatewaydeploy.is_waypoint(gateway)
    try:
        gatewaydeploy.waypoint_objects(gateway)  # type: ignore[arg-type]
    except gatewaydeploy.WaypointDeployError as exc:
        raise WaypointError(f"waypoint {namespace}/{name} cannot be deployed: {exc}") from None
    return text


def apply(stub: Stub, namespace: str, name: str, traffic_type: str, *, enroll: bool) -> int:
    text = generate(namespace, name, traffic_type)
    resp = stub.apply(pb.ApplyRequest(documents=[pb.Document(text=text, source="meshctl waypoint apply")]),
                      timeout=stub.timeout)
    if not _report(resp.results, f"waypoint {namespace}/{name}"):
        return 1
    if enroll:
        enroll_namespace(stub, namespace, name)
        print(f'namespace {namespace} labeled with "{USE_WAYPOINT}: {name}"')
    return 0


def enroll_namespace(stub: Stub, namespace: str, name: str) -> None:
    """Label the namespace ``istio.io/use-waypoint=<name>``, keeping the rest of it as applied."""
    stored = _find(_config(stub), "Namespace", "", namespace)
    if stored is None:
        raise WaypointError(f'namespace {namespace} was not labeled: namespaces "{namespace}" not found')
    document = copy.deepcopy(stored["document"])
    metadata = document.setdefault("metadata", {})
    labels = metadata.get("labels") or {}
    metadata["labels"] = {**labels, USE_WAYPOINT: name}
    resp = stub.apply(pb.ApplyRequest(documents=[pb.Document(
        text=json.dumps(document), source="meshctl waypoint apply --enroll-namespace")]), timeout=stub.timeout)
    problems = [r.error for r in resp.results if r.error]
    if problems:
        raise WaypointError(f"namespace {namespace} was not labeled: {'; '.join(problems)}")


def _report(results: Iterable[pb.ObjectResult], what: str) -> bool:
    ok = True
    for r in results:
        if r.error:
            print(f"meshctl waypoint: {what} was refused: {r.error}", file=sys.stderr)
            ok = False
        elif r.warning:
            print(f"warning: {r.warning}", file=sys.stderr)
        elif r.skipped:
            print(f"skipped: {r.skipped}", file=sys.stderr)
        else:
            print(f"{what} {'applied' if r.result in ('created', 'configured') else r.result}")
    return ok


# --- delete ------------------------------------------------------------------------------------------


def delete(stub: Stub, namespace: str, names: Iterable[str]) -> int:
    config = _config(stub)
    code = 0
    for name in names:
        stored = _find(config, GATEWAY_KEY, namespace, name)
        if stored is None:
            print(f"meshctl waypoint delete: waypoint {namespace}/{name} not found", file=sys.stderr)
            code = 1
            continue
        spec = stored["document"].get("spec") or {}
        if spec.get("gatewayClassName") != WAYPOINT_CLASS:
            print(f"meshctl waypoint delete: Gateway {namespace}/{name} is not a waypoint (class "
                  f"{spec.get('gatewayClassName')!r}, not {WAYPOINT_CLASS!r}); delete it with `meshctl delete`",
                  file=sys.stderr)
            code = 1
            continue
        text = yaml.safe_dump(gateway_document(namespace, name))
        resp = stub.delete(pb.ApplyRequest(documents=[pb.Document(text=text, source="meshctl waypoint delete")]),
                           timeout=stub.timeout)
        if not _report(resp.results, f"waypoint {namespace}/{name}"):
            code = 1
    return code


# --- list ----------------------------------------------------------------------------------------------


def list_waypoints(stub: Stub, namespace: str | None, output: str = "table") -> str:
    """Every waypoint (of ``namespace``, or all with ``None``) as a table or JSON."""
    rows = waypoint_rows(_config(stub), _debug(stub, "view:ztunnel"), namespace)
    if output == "json":
        return json.dumps(rows, indent=2)
    if not rows:
        return "No waypoints found."
    return table.render(
        ["NAMESPACE", "NAME", "TRAFFIC TYPE", "ADDRESS", "PROGRAMMED", "READY", "SERVICES"],
        [[r["namespace"], r["name"], r["traffic_type"], r["address"] or "-", "True" if r["programmed"] else "False",
          r["ready"], ",".join(r["services"]) or "-"] for r in rows])


def waypoint_rows(config: Json, ztunnel_view: Json, namespace: str | None) -> list[Json]:
    """One entry per waypoint Gateway, from the control plane's config and ztunnel view."""
    objects = {tuple(o["key"]): o for o in config.get("objects", [])}
    bound: dict[str, list[str]] = {}
    for resource in (ztunnel_view.get("resources") or {}).values():
        svc = (resource.get("address") or {}).get("service") or {}
        hostname = (svc.get("waypoint") or {}).get("hostname")
        if hostname:
            bound.setdefault(hostname, []).append(f"{svc.get('namespace', '')}/{svc.get('name', '')}")
    rows = []
    for key, stored in sorted(objects.items()):
        kind, ns, name = key
        document = stored.get("document") or {}
        if kind != GATEWAY_KEY or (namespace is not None and ns != namespace):
            continue
        if (document.get("spec") or {}).get("gatewayClassName") != WAYPOINT_CLASS:
            continue
        labels = (document.get("metadata") or {}).get("labels") or {}
        service = objects.get(("Service", ns, name))
        address = ((service or {}).get("document") or {}).get("spec", {}).get("clusterIP", "")
        managed = service is not None and service.get("source") == gatewaydeploy.controller_source(ns, name)
        pods = [p for p in config.get("pods", []) if p.get("namespace") == ns
                and (p.get("labels") or {}).get(gatewaydeploy.GATEWAY_NAME_LABEL) == name]
        services = sorted(bound.get(f"{name}.{ns}.svc.{CLUSTER_DOMAIN}", []))
        rows.append({
            "namespace": ns, "name": name, "traffic_type": labels.get(WAYPOINT_FOR, "service"),
            "address": address, "programmed": bool(managed and address),
            "ready": f"{sum(1 for p in pods if p.get('ready'))}/{len(pods)}",
            "services": [s.removeprefix(f"{ns}/") for s in services],
        })
    return rows


# --- routes --------------------------------------------------------------------------------------------


def routes(stub: Stub, namespace: str, name: str, output: str = "table") -> str:
    view = f"waypoint/{namespace}/{name}"
    dump = stub.debug(pb.DebugRequest(what=f"view:{view}"), timeout=stub.timeout)
    data: Json = json.loads(dump.json)
    if "error" in data:
        raise WaypointError(
            f"the control plane has no waypoint {namespace}/{name} (config version {data.get('version', '?')}; "
            f"no Gateway of class {WAYPOINT_CLASS} with that name, or it was just applied); "
            f"`meshctl waypoint list -n {namespace}` shows the waypoints")
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    return render_routes(data.get("resources") or {})


def render_routes(resources: Mapping[str, Json]) -> str:
    """Two tables: per service host, what configures it (routes from, destination rule, subsets,
    traffic policy); then every route in order (match, destination, options)."""
    route_configs: dict[str, pb.RouteConfig] = {}
    policies: dict[str, pb.DestinationPolicy] = {}
    for entry in resources.values():
        res = json_format.ParseDict(entry, pb.Resource(), ignore_unknown_fields=True)
        kind = res.WhichOneof("kind")
        if kind == "route":
            route_configs[res.route.host] = res.route
        elif kind == "destination":
            policies[res.destination.host] = res.destination
    hosts = []
    for host in sorted(set(route_configs) | set(policies)):
        rc, dp = route_configs.get(host), policies.get(host)
        hosts.append([
            host, ", ".join(rc.sources) if rc is not None and rc.sources else "-",
            dp.source if dp is not None and dp.source else "-",
            ", ".join(_subset(s) for s in dp.subsets) if dp is not None and dp.subsets else "-",
            _traffic_policy(dp.traffic_policy) if dp is not None and dp.HasField("traffic_policy") else "-",
        ])
    rows = []
    for host in sorted(route_configs):
        for index, route in enumerate(route_configs[host].http):
            rows.append([host, route.name or str(index), _matches(route.match), _action(route), _options(route)])
    return "\n\n".join([
        table.render(["HOST", "ROUTES FROM", "DESTINATION RULE", "SUBSETS", "TRAFFIC POLICY"], hosts),
        table.render(["HOST", "ROUTE", "MATCH", "DESTINATION", "OPTIONS"], rows),
    ])


def _string_match(what: str, m: pb.StringMatchRegex) -> str:
    kind = m.WhichOneof("match_type")
    return f"{what} {kind} {getattr(m, kind)}" if kind else f"{what} present"


def _matches(matches: Iterable[pb.HTTPMatchRequest]) -> str:
    alternatives = []
    for m in matches:
        parts = [_string_match(field, getattr(m, field))
                 for field in ("uri", "scheme", "method", "authority") if m.HasField(field)]
        parts += [_string_match(f"header {k}", v) for k, v in sorted(m.headers.items())]
        parts += [_string_match(f"without header {k}", v) for k, v in sorted(m.without_headers.items())]
        parts += [_string_match(f"query {k}", v) for k, v in sorted(m.query_params.items())]
        if m.ignore_uri_case:
            parts.append("uri case ignored")
        if m.port:
            parts.append(f"port {m.port}")
        if m.source_labels:
            parts.append("source labels " + ",".join(f"{k}={v}" for k, v in sorted(m.source_labels.items())))
        if m.source_namespace:
            parts.append(f"source namespace {m.source_namespace}")
        alternatives.append(" and ".join(parts) or "any")
    return " or ".join(alternatives) or "any"


def _destination(d: pb.Destination) -> str:
    text = d.host + (f":{d.port}" if d.port else "")
    return text + (f" subset {d.subset}" if d.subset else "")


def _action(route: pb.HTTPRoute) -> str:
    if route.HasField("redirect"):
        r = route.redirect
        target = (f"{r.scheme}://" if r.scheme else "") + r.authority + (f":{r.port}" if r.port else "") + r.uri
        return f"redirect {r.redirect_code or 301} to {target or '(same)'}"
    if route.HasField("direct_response"):
        return f"respond {route.direct_response.status}"
    several = len(route.route) > 1
    return ", ".join(_destination(d.destination) + (f" {d.weight}%" if several or d.weight not in (0, 100) else "")
                     for d in route.route) or "-"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _options(route: pb.HTTPRoute) -> str:
    out = []
    if route.timeout_seconds:
        out.append(f"timeout {_seconds(route.timeout_seconds)}")
    if route.HasField("retries"):
        r = route.retries
        text = f"retries {r.attempts}"
        if r.per_try_timeout_seconds:
            text += f" per try {_seconds(r.per_try_timeout_seconds)}"
        out.append(text + (f" on {r.retry_on}" if r.retry_on else ""))
    if route.HasField("fault"):
        f = route.fault
        if f.has_delay:
            out.append(f"fault delay {_seconds(f.delay_seconds)} {f.delay_percent:g}%")
        if f.has_abort:
            out.append(f"fault abort {f.abort_http_status} {f.abort_percent:g}%")
    if route.HasField("rewrite"):
        w = route.rewrite
        parts = [f"uri {w.uri}" if w.uri else "", f"authority {w.authority}" if w.authority else "",
                 f"uri regex {w.uri_regex} -> {w.uri_regex_substitution}" if w.uri_regex else ""]
        out.append("rewrite " + " ".join(p for p in parts if p))
    out += [f"mirror {_destination(m.destination)} {m.percent:g}%" for m in route.mirrors]
    if route.HasField("headers"):
        out += _header_ops("request", route.headers.request) + _header_ops("response", route.headers.response)
    return "; ".join(out) or "-"


def _header_ops(direction: str, ops: pb.HeaderOperations) -> list[str]:
    out = [f"{direction} header set {k}={v}" for k, v in sorted(ops.set.items())]
    out += [f"{direction} header add {k}={v}" for k, v in sorted(ops.add.items())]
    out += [f"{direction} header remove {k}" for k in ops.remove]
    return out


def _subset(s: pb.Subset) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
    text = f"{s.name} {{{labels}}}" if labels else s.name
    if s.HasField("traffic_policy"):
        text += f" ({_traffic_policy(s.traffic_policy)})"
    return text


def _traffic_policy(tp: pb.TrafficPolicy) -> str:
    out = []
    if tp.HasField("load_balancer"):
        lb = tp.load_balancer
        if lb.hash_header:
            out.append(f"hash header {lb.hash_header}")
        elif lb.hash_cookie:
            out.append(f"hash cookie {lb.hash_cookie}")
        elif lb.hash_source_ip:
            out.append("hash source ip")
        elif lb.hash_query_parameter:
            out.append(f"hash query {lb.hash_query_parameter}")
        elif lb.simple:
            out.append(f"lb {pb.LoadBalancer.Simple.Name(lb.simple)}")
    if tp.HasField("connection_pool"):
        cp = tp.connection_pool
        limits = [("maxConnections", cp.max_connections), ("http1MaxPendingRequests", cp.http1_max_pending_requests),
                  ("http2MaxRequests", cp.http2_max_requests),
                  ("maxRequestsPerConnection", cp.max_requests_per_connection), ("maxRetries", cp.max_retries)]
        out += [f"{k} {v}" for k, v in limits if v]
        if cp.connect_timeout_seconds:
            out.append(f"connectTimeout {_seconds(cp.connect_timeout_seconds)}")
        if cp.idle_timeout_seconds:
            out.append(f"idleTimeout {_seconds(cp.idle_timeout_seconds)}")
    if tp.HasField("outlier_detection"):
        od = tp.outlier_detection
        text = "outlier detection"
        details = [("consecutive5xxErrors", od.consecutive_5xx_errors),
                   ("consecutiveGatewayErrors", od.consecutive_gateway_errors),
                   ("maxEjectionPercent", od.max_ejection_percent), ("minHealthPercent", od.min_health_percent)]
        parts = [f"{k} {v}" for k, v in details if v]
        if od.interval_seconds:
            parts.append(f"interval {_seconds(od.interval_seconds)}")
        if od.base_ejection_time_seconds:
            parts.append(f"baseEjectionTime {_seconds(od.base_ejection_time_seconds)}")
        out.append(text + (f" ({', '.join(parts)})" if parts else ""))
    return ", ".join(out) or "-"


# --- the control plane's config ---------------------------------------------------------------------


def _debug(stub: Stub, what: str) -> Json:
    data: Json = json.loads(stub.debug(pb.DebugRequest(what=what), timeout=stub.timeout).json)
    if "error" in data:
        raise WaypointError(f"the control plane could not show {what!r}: {data['error']}")
    return data


def _config(stub: Stub) -> Json:
    return _debug(stub, "config")


def _find(config: Json, kind: str, namespace: str, name: str) -> Json | None:
    for entry in config.get("objects", []):
        if entry.get("key") == [kind, namespace, name]:
            found: Json = entry
            return found
    return None
