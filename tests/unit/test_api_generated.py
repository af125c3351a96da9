"""The generated protobuf code is what `scripts/genproto` makes from mesh.proto today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("mesh_pb2.py", "mesh_pb2.pyi", "mesh_pb2_grpc.py")


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "genproto"), str(tmp_path)],
        check=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}, capture_output=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "controlplane" / "api" / name).read_text()
        committed = (ROOT / "controlplane" / "api" / name).read_text()
        assert fresh == committed, f"controlplane/api/{name} is stale: run scripts/genproto and commit"


def test_contract_round_trips() -> None:
    from controlplane.api import mesh_pb2 as pb

    w = pb.Workload(uid="u1", name="p", namespace="default", addresses=[bytes([10, 244, 1, 2])],
                    tunnel_protocol=pb.HBONE, labels={"app": "x"})
    push = pb.ConfigPush(version=3, nonce="n", upserts=[pb.Resource(name="workload/u1", address=pb.Address(workload=w))])
    again = pb.ConfigPush.FromString(push.SerializeToString())
    assert again.upserts[0].address.workload.labels["app"] == "x"
    assert again.upserts[0].WhichOneof("kind") == "address"
