"""Runs one pod like a kubelet would: its network namespace, its containers as processes inside
it (restarted with kubelet's crash-loop back-off), per-container logs, readiness probes, and a
graceful stop (SIGTERM, then SIGKILL after the grace period).

Status goes into the pod's :class:`~meshctl.lab.cluster.PodRecord`; ``on_change`` is called
whenever readiness or phase changes so the daemon can recompute endpoints.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import trio

from controlplane.k8s.objects import Container, ExecAction, HTTPGetAction, Probe
from meshctl.lab import netlab
from meshctl.lab.cluster import ContainerStatus, PodRecord
from meshctl.lab.config import MAX_GRACE_PERIOD_S, LabConfig
from meshctl.lab.images import BuiltinImage, ImageError, argv_for
from meshctl.lab.kubelet import controlplane_target, node_credential_file
from meshctl.lab.naming import NodeAddressing

log = logging.getLogger("meshctl.lab.runtime")

IMPLICIT_PROBE_PERIOD_S = 0.5
LOG_LIMIT_BYTES = 16 * 1024 * 1024  # a container's log is cut back to its tail past this


def backoff_delay(cfg: LabConfig, restarts: int) -> float:
    """kubelet's delay before restart number ``restarts`` (1-based): the first restart is
    immediate, then 10 s doubling up to 5 min."""
    if restarts <= 1:
        return 0.0
    delay: float = cfg.restart_backoff_s * 2.0 ** (restarts - 2)
    return min(delay, cfg.restart_backoff_max_s)


def lab_environment(cfg: LabConfig, node: str, builtin: BuiltinImage | None) -> dict[str, str]:
    """What the lab adds to a built-in image's environment: for the waypoint, the control
    plane's address and the credential file of the pod's node (the container's own ``env``
    still wins)."""
    if builtin is None or not builtin.controlplane_access:
        return {}
    return {"MESH_CONTROLPLANE": controlplane_target(cfg),
            "MESH_CREDENTIAL_FILE": str(node_credential_file(cfg, node))}


def log_dir(cfg: LabConfig, pod: PodRecord) -> Path:
    return cfg.state_dir / "logs" / f"{pod.namespace}_{pod.name}_{pod.uid}"


class PodRuntime:
    """One pod's lifetime; :meth:`run` returns once the pod is fully gone."""

    def __init__(
        self, cfg: LabConfig, pod: PodRecord, node: NodeAddressing, on_change: Callable[[], None]
    ) -> None:
        self.cfg = cfg
        self.pod = pod
        self.node = node
        self._on_change = on_change
        self._stop = trio.Event()
        self._procs: dict[str, trio.Process] = {}
        self.netns = pod.netns(cfg)
        self.logs = log_dir(cfg, pod)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        pod = self.pod
        try:
            await trio.to_thread.run_sync(
                netlab.create_pod_network, self.cfg, self.node, self.netns, pod.uid, pod.ip,
                pod.name, pod.namespace,
            )
        except netlab.NetlabError as exc:
            log.error("pod %s/%s: network set-up failed: %s", pod.namespace, pod.name, exc)
            pod.phase, pod.message = "Failed", str(exc)
            self._on_change()
            await self._stop.wait()
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            async with trio.open_nursery() as nursery:
                for container in pod.spec.containers:
                    nursery.start_soon(self._run_container, container)
                await self._stop.wait()
                await self._terminate_all()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._teardown)

    def _teardown(self) -> None:
        left = netlab.kill_netns_processes(self.netns, grace_s=0.5)
        if left:
            log.error("pod %s/%s: %d processes survived SIGKILL", self.pod.namespace, self.pod.name, left)
        netlab.remove_netns(self.netns)

    # --- containers ---------------------------------------------------------------------

    async def _run_container(self, container: Container) -> None:
        pod = self.pod
        status = pod.containers[container.name]
        try:
            argv, image_env, builtin = argv_for(container)
        except ImageError as exc:
            status.state, status.reason = "waiting", "InvalidImageName"
            pod.message = str(exc)
            log.error("pod %s/%s: %s", pod.namespace, pod.name, exc)
            self._on_change()
            return
        probe = container.readiness_probe
        implicit_port = builtin.port if (builtin and probe is None) else None
        env = self._environment(container, image_env, builtin)
        path = self.logs / f"{container.name}.log"
        async with trio.open_nursery() as nursery:
            if probe is not None or implicit_port is not None:
                nursery.start_soon(self._probe_loop, container, status, probe, implicit_port)
            while not self._stop.is_set():
                if path.exists():
                    path.replace(self.logs / f"{container.name}.previous.log")
                started = time.monotonic()
                code = await self._run_once(container, status, argv, env, path, probe, implicit_port)
                if self._stop.is_set():
                    break
                policy = pod.spec.restart_policy
                if policy == "Never" or (policy == "OnFailure" and code == 0):
                    self._update_phase()
                    break
                if time.monotonic() - started > self.cfg.restart_reset_s:
                    status.restart_count = 0
                status.restart_count += 1
                delay = backoff_delay(self.cfg, status.restart_count)
                if delay:
                    status.state, status.reason = "waiting", "CrashLoopBackOff"
                    log.info(
                        "pod %s/%s container %s exited with %s; back-off %.0fs before restart %d",
                        pod.namespace, pod.name, container.name, code, delay, status.restart_count,
                    )
                    self._on_change()
                    with trio.move_on_after(delay):
                        await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _run_once(
        self, container: Container, status: ContainerStatus, argv: list[str],
        env: dict[str, str], path: Path, probe: Probe | None, implicit_port: int | None,
    ) -> int:
        cmd = ["ip", "netns", "exec", self.netns, *argv]
        with path.open("ab") as out:
            try:
                proc = await trio.lowlevel.open_process(
                    cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                    start_new_session=True, cwd=container.working_dir or "/",
                )
            except OSError as exc:
                out.write(f"meshctl lab: cannot start {argv[0]!r}: {exc}\n".encode())
                status.state, status.reason, status.exit_code = "terminated", "StartError", 128
                self._on_change()
                return 128
        self._procs[container.name] = proc
        status.state, status.reason, status.pid = "running", "", proc.pid
        status.started_at, status.exit_code = time.time(), None
        status.ready = probe is None and implicit_port is None
        self._update_phase()
        try:
            code = await proc.wait()
        finally:
            self._procs.pop(container.name, None)
        status.state, status.ready, status.pid = "terminated", False, None
        status.exit_code = code
        status.reason = "Completed" if code == 0 else "Error"
        self._truncate(path)
        self._update_phase()
        return code

    def _environment(
        self, container: Container, image_env: dict[str, str], builtin: BuiltinImage | None = None
    ) -> dict[str, str]:
        pod = self.pod
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOSTNAME": pod.name,
            "HOME": "/root",
            "PYTHONUNBUFFERED": "1",
            "KUBERNETES_SERVICE_HOST": "",
            **image_env,
            **lab_environment(self.cfg, pod.node, builtin),
        }
        fields = {
            "metadata.name": pod.name,
            "metadata.namespace": pod.namespace,
            "spec.nodeName": pod.node,
            "spec.serviceAccountName": pod.spec.service_account_name or "default",
            "status.podIP": pod.ip,
            "status.hostIP": self.node.underlay_ip,
        }
        for var in container.env:
            if var.field_ref is not None:
                env[var.name] = fields.get(var.field_ref, "")
            else:
                env[var.name] = var.value or ""
        env.pop("KUBERNETES_SERVICE_HOST")
        return env

    def _update_phase(self) -> None:
        pod = self.pod
        states = [c.state for c in pod.containers.values()]
        if pod.phase == "Terminating":
            pass
        elif all(s == "running" for s in states) or (
            pod.spec.restart_policy == "Always" and any(s == "running" for s in states)
        ):
            pod.phase = "Running"
        elif pod.spec.restart_policy != "Always" and all(s == "terminated" for s in states):
            ok = all(c.exit_code == 0 for c in pod.containers.values())
            pod.phase = "Succeeded" if ok else "Failed"
        self._on_change()

    def _truncate(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            if path.stat().st_size > LOG_LIMIT_BYTES:
                data = path.read_bytes()[-LOG_LIMIT_BYTES // 2 :]
                path.write_bytes(data)

    async def _terminate_all(self) -> None:
        grace = min(float(self.pod.spec.termination_grace_period_seconds), MAX_GRACE_PERIOD_S)
        procs = list(self._procs.values())
        for proc in procs:
            _signal_group(proc.pid, signal.SIGTERM)
        with trio.move_on_after(grace):
            for proc in procs:
                await proc.wait()
        for proc in procs:
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGKILL)
        with trio.move_on_after(5):
            for proc in procs:
                await proc.wait()

    # --- readiness ------------------------------------------------------------------------

    async def _probe_loop(
        self, container: Container, status: ContainerStatus, probe: Probe | None,
        implicit_port: int | None,
    ) -> None:
        period: float
        timeout: float
        if probe is not None:
            period, timeout = probe.period_seconds, probe.timeout_seconds
            ok_needed, fail_needed = probe.success_threshold, probe.failure_threshold
            await trio.sleep(probe.initial_delay_seconds)
        else:
            period, timeout, ok_needed, fail_needed = IMPLICIT_PROBE_PERIOD_S, 1.0, 1, 1
        oks = fails = 0
        while True:
            if status.state == "running":
                ok = await self._probe_once(container, probe, implicit_port, timeout)
                oks, fails = (oks + 1, 0) if ok else (0, fails + 1)
                if not status.ready and oks >= ok_needed:
                    status.ready = True
                    self._on_change()
                elif status.ready and fails >= fail_needed:
                    status.ready = False
                    self._on_change()
            else:
                oks = fails = 0
            await trio.sleep(period)

    async def _probe_once(
        self, container: Container, probe: Probe | None, implicit_port: int | None, timeout: float
    ) -> bool:
        action = probe.action if probe is not None else None
        if isinstance(action, ExecAction):
            with trio.move_on_after(timeout):
                proc = await trio.run_process(
                    ["ip", "netns", "exec", self.netns, *action.command],
                    check=False, capture_stdout=True, capture_stderr=True,
                )
                return proc.returncode == 0
            return False
        # gRPC probes are approximated by a TCP connect (the lab has no gRPC health client).
        port_ref: int | str | None = implicit_port if action is None else action.port
        port = _container_port(container, port_ref) if port_ref is not None else None
        if port is None:
            return False
        http_path = action.path if isinstance(action, HTTPGetAction) else None
        with trio.move_on_after(timeout):
            return await self._connect_probe(port, http_path)
        return False

    async def _connect_probe(self, port: int, http_path: str | None) -> bool:
        # Probes come from the node, as kubelet's do.
        raw = netlab.unbound_socket_in(self.node.netns, socket.AF_INET, socket.SOCK_STREAM)
        sock = trio.socket.from_stdlib_socket(raw)
        with sock:
            try:
                await sock.connect((self.pod.ip, port))
                if http_path is None:
                    return True
                req = (
                    f"GET {http_path} HTTP/1.1\r\nHost: {self.pod.ip}:{port}\r\n"
                    "User-Agent: kube-probe/1.31\r\nConnection: close\r\n\r\n"
                )
                await sock.send(req.encode())
                head = await sock.recv(128)
            except OSError:
                return False
        parts = head.split(b" ", 2)
        return len(parts) > 1 and parts[1].isdigit() and 200 <= int(parts[1]) < 400


def _container_port(container: Container, ref: int | str) -> int | None:
    if isinstance(ref, int):
        return ref
    for p in container.ports:
        if p.name == ref:
            return p.container_port
    return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
