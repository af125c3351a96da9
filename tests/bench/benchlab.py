"""What the lab benchmarks share: phase-named failures and logging, driving one lab through
``meshctl lab``, checking that taking it down left the host as it was, and reading wrk's
latencies. Each benchmark makes one :class:`BenchLab` for its own lab name."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from meshctl.lab import cleanup  # noqa: E402
from meshctl.lab.config import LabConfig  # noqa: E402

WAIT_S = 30.0
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


class BenchError(RuntimeError):
    """A phase failed; main() names the phase."""


def host_network_snapshot() -> dict[str, Any]:
    """The host namespace's addresses, routes and links (the lab must not change them)."""
    def ip_json(*args: str) -> Any:
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True,
                                         timeout=10).stdout)
    return {"addrs": sorted((link["ifname"], a["local"], a["prefixlen"]) for link in ip_json("addr")
                            for a in link.get("addr_info", [])),
            "routes": sorted(json.dumps(r, sort_keys=True) for r in ip_json("route", "show", "table", "all")),
            "links": sorted(link["ifname"] for link in ip_json("link"))}


def mounts() -> list[str]:
    return sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())


def wrk_ms(text: str) -> float:
    """A wrk latency (``612.00us``, ``1.25ms``, ``2.01s``, ``1.5m``) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def is_problem_line(line: str) -> bool:
    """A WARNING or ERROR log line, or a traceback, in the components' logs."""
    return " WARNING " in line or " ERROR " in line or "Traceback" in line


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so the lab is taken down."""
    raise KeyboardInterrupt


class BenchLab:
    """One benchmark's lab (``lab``) and its log prefix (``bench``)."""

    def __init__(self, bench: str, lab: str) -> None:
        self.bench = bench
        self.lab = lab
        self.state_dir = Path("/run/meshlab") / lab
        self.meshctl_argv = [sys.executable, "-m", "meshctl.cli", "lab", "--lab", lab]
        self._t0 = time.monotonic()
        self._phase = "start"

    # --- phases -----------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        print(f"[{self.bench} {time.monotonic() - self._t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def current_phase(self) -> str:
        return self._phase

    def set_phase(self, name: str) -> None:
        """Name what runs now, without logging it."""
        self._phase = name

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Name what runs now (for the failure message); unexpected OS-level failures become
        :class:`BenchError`."""
        self._phase = name
        self.log(name)
        try:
            yield
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"`{' '.join(map(str, exc.cmd))[:200]}` did not finish within {exc.timeout:.0f} s") from exc
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(f"{exc.__class__.__name__}: {exc}") from exc

    # --- the lab ----------------------------------------------------------------------------

    def meshctl(self, *args: str, timeout: float, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.meshctl_argv, *args], capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=ROOT, input=input)
        if check and proc.returncode != 0:
            raise BenchError(f"`meshctl lab {' '.join(args)}` exited {proc.returncode}: "
                             f"{(proc.stderr.strip() or proc.stdout.strip())[-1500:]}")
        return proc

    def lab_exec(self, pod: str, *cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return self.meshctl("exec", pod, "--", *cmd, timeout=timeout, check=False)

    def lab_status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.meshctl("status", "-o", "json", timeout=30).stdout)
        return data

    def other_labs(self) -> list[str]:
        """Labs other than ours whose daemon is alive."""
        found = []
        for pid_file in sorted(Path("/run/meshlab").glob("*/daemon.pid")):
            if pid_file.parent.name == self.lab:
                continue
            with contextlib.suppress(OSError, ValueError):
                if b"meshctl.lab.daemon" in Path(f"/proc/{int(pid_file.read_text())}/cmdline").read_bytes():
                    found.append(pid_file.parent.name)
        return found

    def lab_down_and_check(self, before_net: dict[str, Any], before_mounts: list[str]) -> list[str]:
        """Take the lab down; return what is wrong afterwards (empty: clean)."""
        problems = []
        down = self.meshctl("down", timeout=180, check=False)
        if down.returncode != 0:
            problems.append(f"`meshctl lab down` exited {down.returncode}: {down.stderr.strip()[-500:]}")
        left = cleanup.leftovers(LabConfig(name=self.lab))
        if left:
            problems.append(f"left behind: {', '.join(left)}")
        if host_network_snapshot() != before_net:
            problems.append("the host namespace's addresses, routes or links changed")
        if mounts() != before_mounts:
            problems.append("mounts changed across lab up/down")
        return problems

    def component_logs(self) -> dict[str, Path]:
        """The logs of both ztunnels and the control plane, by name."""
        return {name: self.state_dir / f"{name}.log" for name in ("ztunnel-node1", "ztunnel-node2", "controlplane")}

    def log_problems(self, extra: dict[str, Path] | None = None) -> dict[str, list[str]]:
        """WARNING/ERROR lines of the components' logs (and ``extra`` ones), counted by message
        shape (digits ignored), with one example each, most frequent first."""
        out: dict[str, list[str]] = {}
        for name, path in {**self.component_logs(), **(extra or {})}.items():
            if not path.exists():
                continue
            shapes: collections.Counter[str] = collections.Counter()
            example: dict[str, str] = {}
            for line in path.read_text(errors="replace").splitlines():
                if is_problem_line(line):
                    body = line.split(" ", 2)[-1]
                    shape = re.sub(r"\d+", "N", body)[:160]
                    shapes[shape] += 1
                    example.setdefault(shape, body[:400])
            out[name] = [f"{n}x {example[s]}" for s, n in shapes.most_common(20)]
        return out

    def wait_listening(self, netns: str, port: int, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            out = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "ss", "-Hltn", f"sport = :{port}"],
                                 capture_output=True, text=True, timeout=10, check=False)
            if out.stdout.strip():
                return
            time.sleep(0.2)
        raise BenchError(f"{what} does not listen on :{port} within {WAIT_S:.0f} s "
                         f"(container logs: {self.state_dir}/logs)")

    def ztunnel_pid(self, node: str, gone_detail: Callable[[str], str] = lambda node: "") -> int:
        """The pid of ``node``'s ztunnel; ``gone_detail(node)`` is added when it is not running."""
        pid = int((self.state_dir / f"ztunnel-{node}.pid").read_text())
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            detail = gone_detail(node)
            raise BenchError(f"the ztunnel on {node} is not running (pid {pid} is gone)"
                             + (f"; {detail}" if detail else "")) from None
        if b"ztunnel" not in cmdline:
            argv = cmdline.split(b"\0")[:6]
            raise BenchError(f"pid {pid} from ztunnel-{node}.pid is not a ztunnel: {argv!r}")
        return pid

    @contextlib.contextmanager
    def session(self, before_down: Callable[[bool], list[str]] | None = None) -> Iterator[None]:
        """Around a benchmark's lab: remove an earlier lab of the same name first; afterwards take
        the lab down in every case (a second Ctrl-C or a SIGTERM cannot stop the teardown) and
        check it left nothing behind. ``before_down(failed)`` runs just before the teardown (the
        lab's logs still exist) and returns lines to log when the run failed."""
        before_net, before_mounts = host_network_snapshot(), mounts()
        if cleanup.leftovers(LabConfig(name=self.lab)):
            with self.phase(f"removing an earlier lab {self.lab}"):
                self.meshctl("down", timeout=180)
        failed = True
        try:
            yield
            failed = False
        finally:
            failed_phase = self._phase
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
            notes: list[str] = []
            try:
                if before_down is not None:
                    with contextlib.suppress(OSError, BenchError):
                        notes = before_down(failed)
                self.set_phase("lab down")
                self.log("lab down")
                try:
                    problems = self.lab_down_and_check(before_net, before_mounts)
                except (BenchError, OSError, ValueError, subprocess.SubprocessError) as exc:
                    problems = [f"lab down failed: {exc}"]
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            if failed:
                self.set_phase(failed_phase)
                for line in notes:
                    self.log(line)
                if problems:
                    self.log(f"lab down after the failure: {'; '.join(problems)}")
            elif problems:
                raise BenchError("; ".join(problems))
