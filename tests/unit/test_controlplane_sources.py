"""Config sources other than the API: watched folders, and offline `meshctl analyze`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from controlplane.server import ControlPlane
from controlplane.store import ConfigStore

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "istio"

SVC = textwrap.dedent("""\
    apiVersion: v1
    kind: Service
    metadata: {{name: {name}}}
    spec:
      selector: {{app: {name}}}
      ports: [{{name: http, port: {port}}}]
    """)


async def _until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


def test_watched_folder_applies_follows_changes_and_deletes(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "a.yaml").write_text(SVC.format(name="alpha", port=80) + "---\n" + SVC.format(name="beta", port=81))
    store = ConfigStore()
    cp = ControlPlane(store)

    def port(name: str) -> int | None:
        stored = store.objects.get(("Service", "default", name))
        return stored.obj.ports[0].port if stored else None

    async def scenario() -> None:
        task = asyncio.create_task(cp.watch_folders([folder]))
        try:
            await _until(lambda: port("alpha") == 80 and port("beta") == 81)
            # a changed file is re-applied; an object gone from it is deleted
            (folder / "a.yaml").write_text(SVC.format(name="alpha", port=8080))
            await _until(lambda: port("alpha") == 8080 and port("beta") is None)
            # an invalid file is refused without touching what is running
            (folder / "b.yaml").write_text(SVC.format(name="Bad_Name", port=1))
            await asyncio.sleep(1.2)
            assert port("alpha") == 8080
            # a deleted file takes its objects with it
            (folder / "a.yaml").unlink()
            await _until(lambda: port("alpha") is None)
        finally:
            task.cancel()

    asyncio.run(scenario())


def run_meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshctl.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)


def test_analyze_accepts_istio_samples_and_refuses_invalid_ones(tmp_path: Path) -> None:
    good = run_meshctl("analyze", "-f", str(FIXTURES / "networking"), "-f", str(FIXTURES / "bookinfo.yaml"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Error" not in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text((FIXTURES / "networking" / "virtual-service-reviews-50-v3.yaml").read_text()
                   .replace("weight: 50", "weight: 70", 1))
    out = run_meshctl("analyze", "-f", str(bad))
    assert out.returncode == 1
    assert "spec.http[0].route" in out.stdout and "100" in out.stdout, out.stdout
    missing = run_meshctl("analyze", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
