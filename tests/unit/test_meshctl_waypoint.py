"""``meshctl waypoint generate|apply|delete|list|routes`` against an in-process control plane on
a unix socket: the printed output, what lands in the store, and the operator's errors."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import Stub
from controlplane.server import ControlPlane, serve
from controlplane.store import GATEWAY_KEY, ConfigStore
from meshctl import cli, waypointcmds

GENERATED = textwrap.dedent("""\
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata:
      labels:
        istio.io/waypoint-for: service
      name: waypoint
      namespace: default
    spec:
      gatewayClassName: istio-waypoint
      listeners:
      - name: mesh
        port: 15008
        protocol: HBONE
    """)

BOOKINFO = textwrap.dedent("""\
    apiVersion: v1
    kind: Service
    metadata: {name: reviews, labels: {istio.io/use-waypoint: waypoint}}
    spec:
      selector: {app: reviews}
      ports: [{name: http, port: 9080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: ratings}
    spec:
      selector: {app: ratings}
      ports: [{name: http, port: 9080}]
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews}
    spec:
      hosts: [reviews]
      http:
      - match: [{headers: {end-user: {exact: jason}}}]
        route: [{destination: {host: reviews, subset: v2}}]
        timeout: 2s
      - route:
        - {destination: {host: reviews, subset: v1}, weight: 80}
        - {destination: {host: reviews, subset: v3}, weight: 20}
    ---
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews}
    spec:
      host: reviews
      trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v2, labels: {version: v2}}
      - {name: v3, labels: {version: v3}}
    """)


@dataclass
class Running:
    target: str
    cp: ControlPlane
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    thread: threading.Thread

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the latest snapshot reflects every change to the store."""
        deadline = time.monotonic() + timeout
        while True:
            latest = self.cp.book.latest
            if latest is not None and latest.version == self.cp.store.revision:
                return
            assert time.monotonic() < deadline, "the control plane did not publish a snapshot"
            time.sleep(0.01)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    target = f"unix://{tmp_path}/cp.sock"
    cp = ControlPlane(ConfigStore(), sync_grace_s=0.1)
    ready = threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        holder.update(loop=loop, stop=stop)

        async def main() -> None:
            started = asyncio.Event()
            task = asyncio.create_task(serve(cp, target, started=started, stop=stop))
            await started.wait()
            ready.set()
            await task

        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "control plane did not start"
    running = Running(target, cp, holder["loop"], holder["stop"], thread)  # type: ignore[arg-type]
    yield running
    running.loop.call_soon_threadsafe(running.stop.set)
    thread.join(timeout=10)
    assert not thread.is_alive()


def meshctl(server: Running, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["waypoint", *argv, "--controlplane", server.target])
    out, err = capsys.readouterr()
    return code, out, err


def apply(server: Running, text: str) -> None:
    stub = Stub(server.target)
    try:
        resp = stub.apply(pb.ApplyRequest(documents=[pb.Document(text=text, source="test.yaml")]), timeout=10)
    finally:
        stub.close()
    assert not [r.error for r in resp.results if r.error]


def cells(text: str) -> list[list[str]]:
    return [re.split(r"\s{3,}", line) for line in text.splitlines()]


# --- generate -------------------------------------------------------------------------------------


def test_generate_prints_istioctls_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["waypoint", "generate"]) == 0
    assert capsys.readouterr().out == GENERATED
    assert cli.main(["waypoint", "generate", "-n", "shop", "--name", "wp", "--for", "all"]) == 0
    out = capsys.readouterr().out
    assert "  name: wp\n  namespace: shop\n" in out and "istio.io/waypoint-for: all" in out


def test_generate_refuses_names_that_cannot_be_deployed(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["waypoint", "generate", "--name", "my.waypoint"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("meshctl waypoint generate: waypoint default/my.waypoint cannot be deployed: "
                          "Service default/my.waypoint")
    assert "must be a DNS-1035 label" in err
    assert cli.main(["waypoint", "generate", "--name", "Bad_Name"]) == 1
    assert "metadata.name" in capsys.readouterr().err


def test_arguments() -> None:
    args = cli.build_parser().parse_args(["waypoint", "list", "-A"])
    assert (args.command, args.verb, args.all_namespaces, args.output) == ("waypoint", "list", True, "table")
    args = cli.build_parser().parse_args(["waypoint", "delete", "-n", "x", "a", "b"])
    assert (args.namespace, args.names) == ("x", ["a", "b"])
    for argv in (["waypoint", "list", "-A", "-n", "x"], ["waypoint", "routes"], ["waypoint", "generate", "--for", "pod"],
                 ["waypoint", "delete"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(argv)


# --- apply and delete ----------------------------------------------------------------------------


def test_apply_creates_the_waypoint_and_its_objects(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    assert meshctl(server, capsys, "apply") == (0, "waypoint default/waypoint applied\n", "")
    objects = server.cp.store.objects
    assert objects[(GATEWAY_KEY, "default", "waypoint")].source == "meshctl waypoint apply"
    for kind in ("ServiceAccount", "Deployment", "Service"):
        assert objects[(kind, "default", "waypoint")].source == "waypoint controller (Gateway default/waypoint)"
    assert meshctl(server, capsys, "apply") == (0, "waypoint default/waypoint unchanged\n", "")
    assert meshctl(server, capsys, "apply", "--for", "workload") == (0, "waypoint default/waypoint applied\n", "")
    assert objects[(GATEWAY_KEY, "default", "waypoint")].obj.meta.labels["istio.io/waypoint-for"] == "workload"


def test_apply_enrolls_the_namespace_keeping_its_labels(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    apply(server, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a, "
                  "istio.io/dataplane-mode: ambient}}\n")
    code, out, err = meshctl(server, capsys, "apply", "-n", "shop", "--name", "wp", "--enroll-namespace")
    assert (code, err) == (0, "")
    assert out == 'waypoint shop/wp applied\nnamespace shop labeled with "istio.io/use-waypoint: wp"\n'
    ns = server.cp.store.objects[("Namespace", "", "shop")].obj
    assert dict(ns.meta.labels) == {"team": "a", "istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "wp"}
    # the built-in default namespace can be enrolled too
    assert meshctl(server, capsys, "apply", "--enroll-namespace")[0] == 0
    labels = server.cp.store.objects[("Namespace", "", "default")].obj.meta.labels
    assert dict(labels) == {"istio.io/use-waypoint": "waypoint"}


def test_apply_into_a_missing_namespace_fails_and_enrolls_nothing(
    server: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = meshctl(server, capsys, "apply", "-n", "nope", "--enroll-namespace")
    assert (code, out) == (1, "")
    assert err == ('meshctl waypoint: waypoint nope/waypoint was refused: nope/gateway.gateway.networking.k8s.io/'
                   'waypoint: namespaces "nope" not found\n')


def test_delete_removes_waypoints_and_refuses_what_is_not_one(
    server: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    meshctl(server, capsys, "apply")
    apply(server, "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: ingress}\n"
                  "spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}\n")
    code, out, err = meshctl(server, capsys, "delete", "waypoint", "ingress", "ghost")
    assert code == 1
    assert out == "waypoint default/waypoint deleted\n"
    assert err.splitlines() == [
        "meshctl waypoint delete: Gateway default/ingress is not a waypoint (class 'istio', not 'istio-waypoint'); "
        "delete it with `meshctl delete`",
        "meshctl waypoint delete: waypoint default/ghost not found",
    ]
    objects = server.cp.store.objects
    assert not [k for k in objects if k[2] == "waypoint"]
    assert (GATEWAY_KEY, "default", "ingress") in objects


def test_an_absent_control_plane_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = f"unix://{tmp_path}/none.sock"
    assert cli.main(["waypoint", "list", "--controlplane", target]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"meshctl waypoint list: the control plane at {target} did not answer (UNAVAILABLE")
    assert err.count("\n") == 1


# --- list and routes ---------------------------------------------------------------------------------


def test_list_shows_address_readiness_and_bound_services(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    assert meshctl(server, capsys, "list") == (0, "No waypoints found.\n", "")
    meshctl(server, capsys, "apply")
    apply(server, BOOKINFO)
    apply(server, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
    meshctl(server, capsys, "apply", "-n", "shop", "--name", "wp", "--for", "workload")
    stub = Stub(server.target)
    try:
        stub.report_pods(pb.PodReport(reporter="lab", full=True, pods=[pb.PodStatus(
            uid="u1", namespace="default", name="waypoint-abc-x", node="node1", ip="10.244.1.9", ready=True,
            phase="Running", labels={"gateway.networking.k8s.io/gateway-name": "waypoint"})]), timeout=10)
    finally:
        stub.close()
    server.settle()
    vip = server.cp.store.objects[("Service", "default", "waypoint")].obj.cluster_ip
    code, out, _ = meshctl(server, capsys, "list")
    assert code == 0
    assert cells(out) == [
        ["NAMESPACE", "NAME", "TRAFFIC TYPE", "ADDRESS", "PROGRAMMED", "READY", "SERVICES"],
        ["default", "waypoint", "service", vip, "True", "1/1", "reviews"],
    ]
    code, out, _ = meshctl(server, capsys, "list", "-A")
    assert [row[:3] + row[4:] for row in cells(out)[1:]] == [
        ["default", "waypoint", "service", "True", "1/1", "reviews"],
        ["shop", "wp", "workload", "True", "0/0", "-"],
    ]
    code, out, _ = meshctl(server, capsys, "list", "-n", "shop", "-o", "json")
    (row,) = json.loads(out)
    assert ipaddress.ip_address(row["address"]) and row["traffic_type"] == "workload" and row["services"] == []


def test_routes_show_what_the_control_plane_sends_the_waypoint(
    server: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    meshctl(server, capsys, "apply")
    apply(server, BOOKINFO)
    server.settle()
    code, out, err = meshctl(server, capsys, "routes", "waypoint")
    assert (code, err) == (0, "")
    hosts, routes = out.rstrip("\n").split("\n\n")
    host = "reviews.default.svc.cluster.local"
    assert cells(hosts) == [
        ["HOST", "ROUTES FROM", "DESTINATION RULE", "SUBSETS", "TRAFFIC POLICY"],
        [host, "VirtualService default/reviews", "DestinationRule default/reviews",
         "v1 {version=v1}, v2 {version=v2}, v3 {version=v3}", "lb ROUND_ROBIN"],
    ]
    assert cells(routes) == [
        ["HOST", "ROUTE", "MATCH", "DESTINATION", "OPTIONS"],
        [host, "0", "header end-user exact jason", f"{host} subset v2", "timeout 2s"],
        [host, "1", "any", f"{host} subset v1 80%, {host} subset v3 20%", "-"],
    ]
    code, out, _ = meshctl(server, capsys, "routes", "waypoint", "-o", "json")
    data = json.loads(out)
    assert data["view"] == "waypoint/default/waypoint"
    assert set(data["resources"]) == {f"route/{host}", f"destination/{host}"}
    assert data["resources"][f"route/{host}"]["route"]["sources"] == ["VirtualService default/reviews"]


def test_routes_of_an_unknown_waypoint_say_so(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = meshctl(server, capsys, "routes", "-n", "shop", "ghost")
    assert (code, out) == (1, "")
    assert err.startswith("meshctl waypoint routes: the control plane has no waypoint shop/ghost (config version ")
    assert err.endswith("`meshctl waypoint list -n shop` shows the waypoints\n")


def test_debug_views_leave_the_other_dumps_alone(server: Running) -> None:
    cp = server.cp
    assert set(cp.debug_dump("config")) == {"revision", "objects", "pods"}
    assert cp.debug_dump("nonsense")["error"].startswith("unknown dump 'nonsense'")
    missing = cp.debug_dump("view:waypoint/default/ghost")
    assert missing["error"].startswith("no view 'waypoint/default/ghost' at config version")
    assert "ztunnel" in missing["views"] and "kubelet" in missing["views"]
    ztunnel = cp.debug_dump("view:ztunnel")
    assert ztunnel["view"] == "ztunnel" and isinstance(ztunnel["resources"], dict)


def test_render_routes_words() -> None:
    route = pb.Resource(name="route/r", route=pb.RouteConfig(host="r.default.svc.cluster.local", http=[pb.HTTPRoute(
        name="canary",
        match=[pb.HTTPMatchRequest(uri=pb.StringMatchRegex(prefix="/api"), method=pb.StringMatchRegex(exact="GET")),
               pb.HTTPMatchRequest(port=8080, source_namespace="ops")],
        redirect=pb.HTTPRedirect(uri="/v2", authority="new", redirect_code=302),
        retries=pb.HTTPRetry(attempts=3, per_try_timeout_seconds=0.5, retry_on="5xx"),
        fault=pb.HTTPFaultInjection(has_abort=True, abort_http_status=503, abort_percent=10),
        mirrors=[pb.Mirror(destination=pb.Destination(host="m", port=80), percent=50)],
        headers=pb.Headers(request=pb.HeaderOperations(set={"x": "1"}, remove=["y"])),
    )]))
    from google.protobuf import json_format

    text = waypointcmds.render_routes({"route/r": json_format.MessageToDict(route)})
    row = cells(text.split("\n\n")[1])[1]
    assert row == ["r.default.svc.cluster.local", "canary",
                   "uri prefix /api and method exact GET or port 8080 and source namespace ops",
                   "redirect 302 to new/v2",
                   "retries 3 per try 0.5s on 5xx; fault abort 503 10%; mirror m:80 50%; "
                   "request header set x=1; request header remove y"]
