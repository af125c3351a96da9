"""PeerAuthentication through the store and the index: the effective mTLS mode of each workload
in the ztunnel view, with Istio's precedence, inheritance, port overrides and oldest-wins rule,
and workloads re-encoded exactly when a PeerAuthentication affecting them changes."""

from __future__ import annotations

import pytest

from controlplane.api import mesh_pb2 as pb
from controlplane.index import Index
from controlplane.store import ConfigStore, ReportedPod
from controlplane.translate import convert
from ztunnel.state import from_resources

NAMESPACES = """
apiVersion: v1
kind: Namespace
metadata: {name: foo}
---
apiVersion: v1
kind: Namespace
metadata: {name: bar}
"""


def pa(namespace: str, name: str, spec: str, created: str | None = None) -> str:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}{stamp}}}
spec: {spec}
"""


def pod(name: str, namespace: str = "foo", labels: dict[str, str] | None = None) -> ReportedPod:
    return ReportedPod(uid=f"{namespace}-{name}", namespace=namespace, name=name, node="node1",
                       ip=f"10.244.1.{len(name) + (10 if namespace == 'foo' else 50)}",
                       labels=labels if labels is not None else {"app": name}, annotations={},
                       service_account="default", owner="", ready=True, phase="Running", ports=(), reporter="lab")


PODS = [pod("web"), pod("db"), pod("web", "bar")]


def store_with(*documents: str) -> ConfigStore:
    store = ConfigStore()
    for text in (NAMESPACES, *documents):
        results = store.apply_text(text, "test.yaml")
        assert not [r for r in results if r.error], results
    store.report_pods("lab", PODS, [], full=True)
    return store


MODE = {pb.MTLS_STRICT: "STRICT", pb.MTLS_PERMISSIVE: "PERMISSIVE"}


def modes(store: ConfigStore, index: Index | None = None) -> dict[str, tuple[str, dict[int, str]]]:
    """uid -> (mode, port overrides), read back from the ztunnel view."""
    view = (index or Index(converters=[convert])).build(store.snapshot()).views["ztunnel"]
    out = {}
    for name, data in view.items():
        if name.startswith("workload/"):
            w = pb.Resource.FromString(data).address.workload
            out[w.uid] = (MODE[w.mtls_mode], {p: MODE[m] for p, m in w.port_mtls.items()})
    return out


MESH_STRICT = pa("istio-system", "default", "{mtls: {mode: STRICT}}")
P, S = "PERMISSIVE", "STRICT"


@pytest.mark.parametrize(("documents", "expected"), [
    ((), {"foo-web": (P, {}), "foo-db": (P, {}), "bar-web": (P, {})}),
    ((MESH_STRICT,), {"foo-web": (S, {}), "foo-db": (S, {}), "bar-web": (S, {})}),
    # namespace beats mesh; UNSET (no mtls, or mode UNSET) inherits
    ((MESH_STRICT, pa("foo", "ns", "{mtls: {mode: PERMISSIVE}}")),
     {"foo-web": (P, {}), "foo-db": (P, {}), "bar-web": (S, {})}),
    ((MESH_STRICT, pa("foo", "ns", "{}")), {"foo-web": (S, {}), "foo-db": (S, {}), "bar-web": (S, {})}),
    ((MESH_STRICT, pa("foo", "ns", "{mtls: {mode: UNSET}}")),
     {"foo-web": (S, {}), "foo-db": (S, {}), "bar-web": (S, {})}),
    ((pa("istio-system", "default", "{mtls: {mode: UNSET}}"), pa("foo", "ns", "{}")),
     {"foo-web": (P, {}), "foo-db": (P, {}), "bar-web": (P, {})}),
    # DISABLE is PERMISSIVE to ztunnel, at every level
    ((MESH_STRICT, pa("foo", "ns", "{mtls: {mode: DISABLE}}")),
     {"foo-web": (P, {}), "foo-db": (P, {}), "bar-web": (S, {})}),
    ((pa("istio-system", "default", "{mtls: {mode: DISABLE}}"),),
     {"foo-web": (P, {}), "foo-db": (P, {}), "bar-web": (P, {})}),
    # a workload policy beats its namespace's, only for the workloads it selects
    ((pa("foo", "ns", "{mtls: {mode: STRICT}}"), pa("foo", "web", "{selector: {matchLabels: {app: web}}, mtls: {mode: PERMISSIVE}}")),
     {"foo-web": (P, {}), "foo-db": (S, {}), "bar-web": (P, {})}),
    ((pa("foo", "web", "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}"),),
     {"foo-web": (S, {}), "foo-db": (P, {}), "bar-web": (P, {})}),
    ((MESH_STRICT, pa("foo", "web", "{selector: {matchLabels: {app: web}}}")),
     {"foo-web": (S, {}), "foo-db": (S, {}), "bar-web": (S, {})}),
    ((MESH_STRICT, pa("foo", "web", "{selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}}")),
     {"foo-web": (P, {}), "foo-db": (S, {}), "bar-web": (S, {})}),
    # port-level modes override the workload's mode for that workload port; UNSET inherits
    ((pa("foo", "web", "{selector: {matchLabels: {app: web}}, portLevelMtls: {8080: {mode: STRICT}}}"),),
     {"foo-web": (P, {8080: S}), "foo-db": (P, {}), "bar-web": (P, {})}),
    ((MESH_STRICT, pa("foo", "web", "{selector: {matchLabels: {app: web}}, "
                                    "portLevelMtls: {8080: {mode: PERMISSIVE}, 9090: {mode: DISABLE}, 7070: {mode: UNSET}}}")),
     {"foo-web": (S, {8080: P, 9090: P}), "foo-db": (S, {}), "bar-web": (S, {})}),
    ((pa("foo", "web", "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}, "
                       "portLevelMtls: {8080: {mode: STRICT}, 9090: {mode: PERMISSIVE}}}"),),
     {"foo-web": (S, {9090: P}), "foo-db": (P, {}), "bar-web": (P, {})}),
    # selector policies in the root namespace are not used (istiod's ambient index); a
    # namespace's policies do not reach other namespaces
    ((pa("istio-system", "sel", "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}"),),
     {"foo-web": (P, {}), "foo-db": (P, {}), "bar-web": (P, {})}),
    ((pa("bar", "ns", "{mtls: {mode: STRICT}}"),), {"foo-web": (P, {}), "foo-db": (P, {}), "bar-web": (S, {})}),
], ids=["default", "mesh strict", "namespace beats mesh", "namespace unset inherits", "namespace UNSET inherits",
        "mesh unset", "namespace disable", "mesh disable", "workload beats namespace", "workload strict",
        "workload unset inherits", "workload disable", "port strict", "ports permissive/disable/unset",
        "port same as workload", "root selector ignored", "other namespace"])
def test_effective_modes(documents: tuple[str, ...], expected: dict[str, tuple[str, dict[int, str]]]) -> None:
    assert modes(store_with(*documents)) == expected


def test_the_oldest_namespace_policy_wins() -> None:
    first = pa("foo", "zz-first", "{mtls: {mode: STRICT}}")
    second = pa("foo", "aa-second", "{mtls: {mode: PERMISSIVE}}")
    assert modes(store_with(first, second))["foo-web"] == (S, {})
    assert modes(store_with(second, first))["foo-web"] == (P, {})


def test_the_oldest_selecting_policy_wins_and_creation_timestamps_count() -> None:
    strict = pa("foo", "strict", "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}",
                created="2024-05-01T00:00:00Z")
    permissive = pa("foo", "permissive", "{selector: {matchLabels: {app: web}}, mtls: {mode: PERMISSIVE}}",
                    created="2024-01-01T00:00:00Z")
    assert modes(store_with(strict, permissive))["foo-web"] == (P, {})  # applied later, created earlier
    same = "2024-01-01T00:00:00Z"
    a = pa("foo", "a", "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}", created=same)
    b = pa("foo", "b", "{selector: {matchLabels: {app: web}}, mtls: {mode: PERMISSIVE}}", created=same)
    assert modes(store_with(b, a))["foo-web"] == (S, {})  # same age: by name


def test_an_update_does_not_make_a_policy_younger() -> None:
    store = store_with(pa("foo", "zz-first", "{mtls: {mode: STRICT}}"), pa("foo", "aa-second", "{mtls: {mode: PERMISSIVE}}"))
    index = Index(converters=[convert])
    assert modes(store, index)["foo-web"] == (S, {})
    store.apply_text(pa("foo", "zz-first", "{mtls: {mode: DISABLE}}"), "update.yaml")
    store.apply_text(pa("foo", "zz-first", "{mtls: {mode: STRICT}}"), "update.yaml")
    assert modes(store, index)["foo-web"] == (S, {})


def test_workloads_are_re_encoded_exactly_when_a_peer_authentication_affecting_them_changes() -> None:
    store = store_with()
    index = Index(converters=[convert])

    def views() -> dict[str, bytes]:
        return dict(index.build(store.snapshot()).views["ztunnel"])

    before = views()
    assert views()["workload/foo-web"] is before["workload/foo-web"]  # nothing changed: same bytes
    assert not [r for r in store.apply_text(pa("foo", "ns", "{mtls: {mode: STRICT}}"), "x.yaml") if r.error]
    after = views()
    assert after["workload/bar-web"] is before["workload/bar-web"]  # another namespace
    assert after["workload/foo-web"] is not before["workload/foo-web"]
    assert modes(store, index)["foo-web"] == (S, {})
    # a newer object in the namespace must not hide the deletion of an older one
    svc = "{apiVersion: v1, kind: Service, metadata: {name: s, namespace: foo}, spec: {ports: [{port: 80}]}}"
    assert not [r for r in store.apply_text(svc, "svc.yaml") if r.error]
    views()
    assert store.apply_text(pa("foo", "ns", "{mtls: {mode: STRICT}}"), "x.yaml", delete=True)[0].result == "deleted"
    assert modes(store, index)["foo-web"] == (P, {})
    # a mesh-wide policy reaches every namespace
    store.apply_text(MESH_STRICT, "mesh.yaml")
    assert {uid: m for uid, (m, _) in modes(store, index).items()} == {"foo-web": S, "foo-db": S, "bar-web": S}


def test_ztunnel_reads_the_effective_mode() -> None:
    store = store_with(MESH_STRICT, pa("foo", "web", "{selector: {matchLabels: {app: web}}, "
                                                     "portLevelMtls: {8080: {mode: PERMISSIVE}}}"))
    view = Index(converters=[convert]).build(store.snapshot()).views["ztunnel"]
    state = from_resources(1, {name: pb.Resource.FromString(data) for name, data in view.items()})
    web = state.workloads["foo-web"]
    assert (state.mtls_mode(web, 8080), state.mtls_mode(web, 9080)) == ("PERMISSIVE", "STRICT")
    assert state.mtls_mode(state.workloads["foo-db"], 8080) == "STRICT"
