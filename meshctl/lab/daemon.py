"""The lab daemon: builds the lab's network, runs its pods, serves cluster DNS on every node,
keeps each node's kube-proxy rules in step with the endpoints, and answers the local API.

Started detached by ``meshctl lab up`` (``python -m meshctl.lab.daemon``); it writes its log
to ``<state dir>/daemon.log``. On SIGTERM or an API ``shutdown`` it stops every pod and
removes everything the lab made.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import trio

from meshctl.lab import cleanup, dns, kubeproxy, netlab
from meshctl.lab.api import MAX_MESSAGE_BYTES, socket_path
from meshctl.lab.cluster import Cluster, PodRecord, StartPod, StopPod, pod_summary
from meshctl.lab.config import LabConfig
from meshctl.lab.kubelet import ControlPlaneLink, controlplane_target, provision_node_credentials
from meshctl.lab.naming import nodes, underlay_netns
from meshctl.lab.runtime import PodRuntime

log = logging.getLogger("meshctl.lab.daemon")

SYNC_DEBOUNCE_S = 0.02
API_READ_TIMEOUT_S = 30.0


class LabDaemon:
    """Owns one lab while it runs; everything happens on one trio thread."""

    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        self.cluster = Cluster(cfg)
        self._dirty = trio.Event()
        self._shutdown = trio.Event()
        self._runtimes: dict[str, PodRuntime] = {}
        self._zone = self.cluster.zone()
        self._rules_text = ""
        self._nursery: trio.Nursery | None = None
        self._sync_lock = trio.Lock()
        self.started_at = time.time()
        self.link = ControlPlaneLink(cfg, self.cluster)
        self.link.on_change = self.changed
        self.synced_version = 0

    # --- lifetime -----------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        cleanup.record_created(cfg)
        try:
            await trio.to_thread.run_sync(self._build_network)
            dns_socks = await trio.to_thread.run_sync(self._dns_sockets)
            listener = self._api_listener()
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._remove_network)
            raise
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for udp, tcp in dns_socks:
                    await nursery.start(dns.serve_udp, udp, self._get_zone)
                    await nursery.start(dns.serve_tcp, tcp, self._get_zone)
                nursery.start_soon(self._sync_loop)
                await nursery.start(self.link.run_process)
                for node in nodes(cfg):
                    await nursery.start(self.link.run_ztunnel, node.name, node.netns)
                nursery.start_soon(self.link.subscribe)
                nursery.start_soon(self.link.report_loop)
                nursery.start_soon(self._api_loop, listener)
                log.info("lab %s up with %d nodes; API on %s", cfg.name, cfg.nodes, socket_path(cfg))
                task_status.started()
                await self._shutdown.wait()
                self.link.stop()  # no more objects: stopped pods must not be replaced
                await self._stop_all_pods()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
                await trio.to_thread.run_sync(self._remove_network)
                log.info("lab %s is down", cfg.name)

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def _build_network(self) -> None:
        cfg = self.cfg
        netlab.create_underlay(cfg)
        for node in nodes(cfg):
            netlab.create_node(cfg, node)
            netlab.load_nft(node.netns, kubeproxy.render([]))
        cleanup.write_state(cfg, {"pid": os.getpid(), "nodes": [n.name for n in nodes(cfg)]})
        provision_node_credentials(cfg, [n.name for n in nodes(cfg)])

    def _remove_network(self) -> None:
        cleanup.sweep(self.cfg, keep_state_dir=True)

    def _dns_sockets(self) -> list[tuple[socket.socket, socket.socket]]:
        out = []
        for node in nodes(self.cfg):
            udp = netlab.socket_in(node.netns, socket.AF_INET, socket.SOCK_DGRAM, (self.cfg.dns_ip, 53))
            tcp = netlab.socket_in(node.netns, socket.AF_INET, socket.SOCK_STREAM, (self.cfg.dns_ip, 53))
            tcp.listen(128)
            out.append((udp, tcp))
        return out

    def _get_zone(self) -> dns.Zone:
        return self._zone

    # --- reconciling --------------------------------------------------------------------

    def changed(self) -> None:
        self._dirty.set()

    async def _sync_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await trio.sleep(SYNC_DEBOUNCE_S)
            self._dirty = trio.Event()
            await self._sync()

    async def _sync(self) -> None:
        async with self._sync_lock:
            await self._sync_locked()

    async def _sync_locked(self) -> None:
        assert self._nursery is not None
        if self._shutdown.is_set():
            return  # pods are being stopped for good; replacing them would never finish
        version = self.link.config_version
        for action in self.cluster.reconcile():
            if isinstance(action, StartPod):
                self._nursery.start_soon(self._run_pod, action.pod)
            elif isinstance(action, StopPod):
                runtime = self._runtimes.get(action.pod.uid)
                if runtime is not None:
                    runtime.stop()
                else:
                    self.cluster.pod_gone(action.pod)
        self.synced_version = version  # pods exist for every object of this version
        self._zone = self.cluster.zone()
        self.link.want_report()
        text = kubeproxy.render(self.cluster.service_rules())
        if text != self._rules_text:
            for node in nodes(self.cfg):
                try:
                    await trio.to_thread.run_sync(netlab.load_nft, node.netns, text)
                except netlab.NetlabError as exc:
                    log.error("kube-proxy rules for %s not updated: %s", node.name, exc)
                    return
            self._rules_text = text

    async def _run_pod(self, pod: PodRecord) -> None:
        runtime = PodRuntime(self.cfg, pod, self.cluster.nodes[pod.node], self.changed)
        self._runtimes[pod.uid] = runtime
        log.info("starting pod %s/%s on %s with IP %s", pod.namespace, pod.name, pod.node, pod.ip)
        try:
            await runtime.run()
        except Exception:
            # One pod's failure must not take the lab down; say what happened and go on.
            log.exception("pod %s/%s failed unexpectedly", pod.namespace, pod.name)
        finally:
            del self._runtimes[pod.uid]
            self.cluster.pod_gone(pod)
            log.info("pod %s/%s removed", pod.namespace, pod.name)
            self.changed()

    async def _stop_all_pods(self) -> None:
        for pod in list(self.cluster.pods.values()):
            self.cluster.stop_pod(pod)
        for runtime in list(self._runtimes.values()):
            runtime.stop()
        with trio.move_on_after(60):
            while self._runtimes:
                await trio.sleep(0.05)

    # --- API ----------------------------------------------------------------------------

    def _api_listener(self) -> trio.SocketListener:
        path = socket_path(self.cfg)
        path.unlink(missing_ok=True)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.bind(str(path))
        os.chmod(path, 0o600)
        raw.listen(64)
        return trio.SocketListener(trio.socket.from_stdlib_socket(raw))

    async def _api_loop(self, listener: trio.SocketListener) -> None:
        await trio.serve_listeners(self._handle, [listener])

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            buf = bytearray()
            with trio.move_on_after(API_READ_TIMEOUT_S):
                while not buf.endswith(b"\n") and len(buf) <= MAX_MESSAGE_BYTES:
                    chunk = await stream.receive_some(1 << 20)
                    if not chunk:
                        break
                    buf += chunk
            try:
                req = json.loads(buf)
                if not isinstance(req, dict):
                    raise ValueError("request is not a JSON object")
                resp = await self._dispatch(req)
            except (ValueError, KeyError, TypeError) as exc:
                resp = {"ok": False, "error": f"bad request: {exc}"}
            try:
                await stream.send_all(json.dumps(resp).encode() + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _dispatch(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "status":
            return {"ok": True, **self.status()}
        if op == "pods":
            now = time.time()
            found = self.cluster.find_pods(str(req["ref"]))
            return {"ok": True, "pods": [pod_summary(self.cfg, p, now) for p in found]}
        if op == "shutdown":
            self.request_shutdown()
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def status(self) -> dict[str, Any]:
        cfg, cl = self.cfg, self.cluster
        now = time.time()
        services = []
        for key, svc in sorted(cl.services.items()):
            services.append({
                "namespace": key[0], "name": key[1], "cluster_ip": cl.cluster_ips.get(key),
                "ports": [f"{p.port}/{p.protocol}" for p in svc.ports],
                "endpoints": [p.ip for p, _ in cl.endpoints(key)],
            })
        return {
            "lab": cfg.name,
            "pid": os.getpid(),
            "config_version": self.synced_version,
            "controlplane": controlplane_target(cfg),
            "uptime_s": round(now - self.started_at, 1),
            "nodes": [
                {"name": n.name, "netns": n.netns, "underlay_ip": n.underlay_ip,
                 "pod_cidr": str(n.pod_cidr)}
                for n in nodes(cfg)
            ],
            "underlay_netns": underlay_netns(cfg),
            "namespaces": sorted(cl.namespaces),
            "pods": [pod_summary(cfg, p, now) for p in sorted(cl.pods.values(), key=lambda p: p.key)],
            "services": services,
        }


async def _run(cfg: LabConfig) -> None:
    daemon = LabDaemon(cfg)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            async def watch_signals() -> None:
                async for sig in signals:
                    log.info("received %s; stopping the lab", signal.Signals(sig).name)
                    daemon.request_shutdown()

            nursery.start_soon(watch_signals)
            await daemon.serve()
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshctl.lab.daemon")
    parser.add_argument("--config", required=True, help="the lab's config as JSON")
    args = parser.parse_args(argv)
    cfg = config_from_json(args.config)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    other = cleanup.daemon_pid(cfg)
    if other is not None:
        log.error("lab %s already has a running daemon (pid %d); not starting another", cfg.name, other)
        return 1
    failures: list[BaseException] = []
    try:
        trio.run(_run, cfg)
    except* netlab.NetlabError as group:
        failures.extend(group.exceptions)
    for exc in failures:
        log.error("the lab could not start: %s", exc)
    return 1 if failures else 0


def config_to_json(cfg: LabConfig) -> str:
    return json.dumps({
        "name": cfg.name, "nodes": cfg.nodes, "pod_cidr": cfg.pod_cidr,
        "service_cidr": cfg.service_cidr, "dns_ip": cfg.dns_ip,
        "underlay_cidr": cfg.underlay_cidr, "cluster_domain": cfg.cluster_domain,
        "state_root": str(cfg.state_root), "restart_backoff_s": cfg.restart_backoff_s,
        "restart_backoff_max_s": cfg.restart_backoff_max_s, "restart_reset_s": cfg.restart_reset_s,
    })


def config_from_json(text: str) -> LabConfig:
    data = json.loads(text)
    data["state_root"] = Path(data["state_root"])
    return LabConfig(**data)


if __name__ == "__main__":
    sys.exit(main())
