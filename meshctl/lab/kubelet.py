"""The lab daemon's link to the control plane, which is the lab's API server: it runs the
control-plane process, follows the Kubernetes objects the control plane holds (subscribing as
the ``KUBELET``), and reports the pods it runs back (name, node, IP, readiness), the way the
kubelet writes pod status.

Objects reach the cluster model only from the control plane, already validated and with
ClusterIPs allocated; a push the cluster cannot take is NACKed and the lab keeps its last good
state.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import trio

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import ConfigRejected, Stub, Subscription, Update
from controlplane.k8s.loader import load_documents
from meshctl.lab.cluster import ApplyError, Cluster
from meshctl.lab.config import LabConfig
from meshctl.lab.supervise import supervise

log = logging.getLogger("meshctl.lab.kubelet")

APPLY_ORDER = ("Namespace", "ServiceAccount", "Service", "Deployment", "Pod")
REPORT_RETRY_S = 0.5
PROCESS_MARKER = "--lab-controlplane"


def controlplane_socket(cfg: LabConfig) -> Path:
    return cfg.state_dir / "controlplane.sock"


def controlplane_target(cfg: LabConfig) -> str:
    return f"unix://{controlplane_socket(cfg)}"


def controlplane_pid_file(cfg: LabConfig) -> Path:
    return cfg.state_dir / "controlplane.pid"


def node_credential_file(cfg: LabConfig, node: str) -> Path:
    return cfg.state_dir / "credentials" / node


def ztunnel_log_file(cfg: LabConfig, node: str) -> Path:
    """The node's ztunnel output (logs and access lines), appended across restarts."""
    return cfg.state_dir / f"ztunnel-{node}.log"


def node_credentials_file(cfg: LabConfig) -> Path:
    return cfg.state_dir / "credentials" / "controlplane.json"


def provision_node_credentials(cfg: LabConfig, node_names: list[str]) -> None:
    """One random bearer credential per node (files mode 600): the node's ztunnel presents it
    to the CA, which maps it back to the node."""
    creds = {node: secrets.token_urlsafe(32) for node in node_names}
    folder = node_credentials_file(cfg).parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for node, cred in creds.items():
        _write_private(node_credential_file(cfg, node), cred)
    _write_private(node_credentials_file(cfg), json.dumps(creds))


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class ControlPlaneLink:
    def __init__(self, cfg: LabConfig, cluster: Cluster) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.config_version = 0
        self._report_wanted = trio.Event()
        self._reported: list[bytes] | None = None
        self._subscription: Subscription | None = None
        self._stopping = False
        self.on_change: Callable[[], None] = lambda: None

    # --- the control-plane process -----------------------------------------------------

    async def run_process(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run ``python -m controlplane`` for this lab (with the CA for the nodes' ztunnels),
        restarting it if it dies."""
        cfg = self.cfg
        cmd = [
            sys.executable, "-m", "controlplane", PROCESS_MARKER, str(cfg.state_dir),
            "--listen", controlplane_target(cfg), "--state-dir", str(cfg.state_dir / "controlplane"),
            "--service-cidr", cfg.service_cidr, "--reserved-ip", cfg.dns_ip,
            "--node-credentials", str(node_credentials_file(cfg)),
        ]

        async def listening(proc: trio.Process) -> None:
            sock = controlplane_socket(cfg)
            while not sock.exists():
                if proc.returncode is not None:
                    raise RuntimeError(
                        f"the control plane exited with code {proc.returncode} while starting; "
                        f"see {cfg.state_dir / 'controlplane.log'}"
                    )
                await trio.sleep(0.02)

        await supervise("the control plane", cmd, cfg.state_dir / "controlplane.log",
                        controlplane_pid_file(cfg), listening, task_status=task_status)

    async def run_ztunnel(self, node: str, netns: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node's ztunnel inside the node's network namespace (as a DaemonSet pod with
        hostNetwork would), restarting it if it dies."""
        cfg = self.cfg
        # nsenter, not `ip netns exec`: the latter remounts /sys, which hides bpffs (pinned maps).
        cmd = [
            "nsenter", f"--net=/run/netns/{netns}", sys.executable, "-m", "ztunnel", "--node", node,
            "--controlplane", controlplane_target(cfg), "--credential-file", str(node_credential_file(cfg, node)),
            "--capture", "--bpf-prefix", f"{cfg.name}-{node}", "--uplink", "eth0",
        ]

        async def running(proc: trio.Process) -> None:
            await trio.sleep(0)

        await supervise(f"ztunnel on {node}", cmd, ztunnel_log_file(cfg, node),
                        cfg.state_dir / f"ztunnel-{node}.pid", running, task_status=task_status)

    # --- following objects ----------------------------------------------------------------

    async def subscribe(self) -> None:
        """Follow the control plane's Kubernetes objects until cancelled."""
        token = trio.lowlevel.current_trio_token()

        def apply(update: Update) -> None:
            trio.from_thread.run_sync(self._apply_update, update, trio_token=token)

        sub = Subscription(
            controlplane_target(self.cfg),
            pb.Hello(subscriber_id=f"kubelet~{self.cfg.name}~{os.getpid()}", type=pb.KUBELET),
            apply,
        )
        self._subscription = sub
        try:
            await trio.to_thread.run_sync(sub.run, abandon_on_cancel=True)
        finally:
            sub.stop()

    def stop(self) -> None:
        self._stopping = True
        if self._subscription is not None:
            self._subscription.stop()

    def _apply_update(self, update: Update) -> None:
        if self._stopping:
            raise ConfigRejected("the lab is shutting down")
        parsed = {}
        for name in (update.resources if update.full else update.changed):
            res = update.resources[name]
            if res.WhichOneof("kind") != "kube":
                continue
            loaded = load_documents(res.kube.json, f"control plane {name}")
            if loaded.failures or len(loaded.objects) != 1:
                problems = "; ".join(str(e) for e in loaded.failures) or "no object"
                raise ConfigRejected(f"{name}: {problems}")
            parsed[name] = loaded.objects[0]
        if update.full:
            current = {_resource_name(o) for o in self.cluster.applied_objects()}
            removed = current - set(parsed)
        else:
            removed = set(update.removed)
        for name in sorted(removed, key=lambda n: -_order(n)):
            kind, ns, obj_name = name.split("/", 3)[1:]
            try:
                self.cluster.delete(kind, ns, obj_name)
            except ApplyError:
                pass  # already gone with its namespace
        for name in sorted(parsed, key=_order):
            try:
                self.cluster.apply(parsed[name])
            except ApplyError as exc:
                log.error("the lab cannot run %s: %s", name, exc)
        self.config_version = update.version
        self.want_report()
        self.on_change()

    # --- reporting pods ------------------------------------------------------------------------

    def want_report(self) -> None:
        self._report_wanted.set()

    async def report_loop(self) -> None:
        """Send a full pod report whenever the pods changed or the control plane reconnected."""
        stub = Stub(controlplane_target(self.cfg), timeout=5)
        connects = 0
        try:
            while True:
                with trio.move_on_after(1.0):
                    await self._report_wanted.wait()
                self._report_wanted = trio.Event()
                sub = self._subscription
                reconnected = sub is not None and sub.connects != connects
                report = self._pod_report()
                encoded = sorted(p.SerializeToString(deterministic=True) for p in report.pods)
                if encoded == self._reported and not reconnected:
                    continue
                try:
                    await trio.to_thread.run_sync(functools.partial(stub.report_pods, report, timeout=5))
                    self._reported = encoded
                    connects = sub.connects if sub is not None else 0
                except grpc.RpcError as exc:
                    log.warning("pod report not delivered (%s); retrying", exc.code().name)
                    await trio.sleep(REPORT_RETRY_S)
                    self._report_wanted.set()
        finally:
            stub.close()

    def _pod_report(self) -> pb.PodReport:
        pods = []
        for p in self.cluster.pods.values():
            if p.phase == "Terminating":
                continue
            ports = [pb.ContainerPortStatus(name=cp.name, port=cp.container_port)
                     for c in p.spec.containers for cp in c.ports if cp.name]
            pods.append(pb.PodStatus(
                uid=p.uid, namespace=p.namespace, name=p.name, node=p.node, ip=p.ip,
                labels=dict(p.labels), annotations=dict(p.annotations),
                service_account=p.spec.service_account_name or "default",
                owner=p.owner[0] if p.owner else "", ready=p.ready, phase=p.phase, ports=ports,
            ))
        return pb.PodReport(reporter=f"lab/{self.cfg.name}", full=True, pods=pods)


def _resource_name(obj: object) -> str:
    kind, ns, name = obj.key  # type: ignore[attr-defined]
    return f"kube/{kind}/{ns}/{name}"


def _order(name: str) -> int:
    kind = name.split("/")[1]
    return APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)
