"""The import rules of ARCHITECTURE.md, checked on the source: the data plane imports only the
control plane's contract, the control plane never imports the data plane or the CLI, and the
protocol/decision cores stay free of I/O libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = {"trio", "socket", "grpc", "bcc", "pyroute2", "asyncio", "subprocess"}
SANS_IO = [
    "controlplane/k8s", "controlplane/istio", "controlplane/index.py", "controlplane/push.py",
    "controlplane/translate.py", "controlplane/store.py", "meshctl/lab/cluster.py",
    "meshctl/lab/kubeproxy.py", "meshctl/lab/naming.py", "ztunnel/state.py", "ztunnel/policy.py",
    "ztunnel/identity_core.py", "ztunnel/dump.py", "controlplane/ca/identity.py", "controlplane/ca/csr.py",
    "controlplane/ca/signer.py", "waypoint/routes.py",
    "waypoint/jwt.py", "waypoint/destinations.py", "waypoint/authz.py", "waypoint/state.py",
    "controlplane/gatewaydeploy.py",
]


def modules(rel: str) -> list[Path]:
    path = ROOT / rel
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", ["ztunnel", "waypoint", "bpf"])
def test_the_data_plane_imports_only_the_contract(package: str) -> None:
    for path in modules(package):
        for name in imports(path):
            if name.startswith("controlplane"):
                assert name == "controlplane.api" or name.startswith("controlplane.api."), f"{path}: imports {name}"
            assert not name.startswith("meshctl"), f"{path}: imports {name}"


def test_the_control_plane_never_imports_the_data_plane_or_the_cli() -> None:
    for path in modules("controlplane"):
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in {"ztunnel", "waypoint", "bpf", "meshctl"}, f"{path}: imports {name}"


@pytest.mark.parametrize("rel", SANS_IO)
def test_cores_are_sans_io(rel: str) -> None:
    for path in modules(rel):
        bad = {n for n in imports(path) if n.split(".")[0] in IO_LIBRARIES}
        assert not bad, f"{path} imports I/O libraries {bad}"
