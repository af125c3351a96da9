"""The control plane process: the store, the index and the gRPC push server (``grpc.aio``).

- Changes (applies, deletes, pod reports, watched files) are debounced: a snapshot is built
  once the changes stop for ``DEBOUNCE_QUIET_S``, and at the latest ``DEBOUNCE_MAX_S`` after
  the first one, so a burst yields few pushes and a single change arrives quickly.
- After a start, ztunnels and waypoints get their first push only once the kubelet has
  reported its pods (or ``SYNC_GRACE_S`` passed), so a restarted control plane never pushes an
  empty mesh to subscribers that are holding their last good config.
- Applied objects are persisted in the state folder and re-validated on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from controlplane.api import mesh_pb2 as pb
from controlplane.ca.authority import CertificateAuthority
from controlplane.caserver import CertificateService
from controlplane.index import Index
from controlplane.k8s.loader import ALL_KINDS, load_documents
from controlplane.push import PushBook, SubscriberState, views_for
from controlplane.store import ConfigStore, ObjectKey, ReportedPod, StoreSnapshot, object_key

log = logging.getLogger("controlplane.server")

DEBOUNCE_QUIET_S = 0.01
DEBOUNCE_MAX_S = 0.05
SYNC_GRACE_S = 3.0
# gRPC keeps a copy of every message per stream until it is sent: without a cap, 1000 nodes
# re-syncing a 2.7 MB config at once peak at 1.6 GB. Large full pushes take a slot each.
FULL_PUSH_SLOTS = 16
LARGE_PUSH_BYTES = 256 * 1024
WATCH_INTERVAL_S = 0.5
SERVICE = "mesh.v1.MeshConfig"


class FilePersistence:
    """One JSON file per applied object under ``<state>/objects``, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: ObjectKey) -> Path:
        safe = "~".join(part.replace("/", "_") for part in key)
        return self.folder / f"{safe}.json"

    def save(self, key: ObjectKey, document: Mapping[str, Any], source: str) -> None:
        path = self._path(key)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"document": document, "source": source}))
        os.replace(tmp, path)

    def remove(self, key: ObjectKey) -> None:
        self._path(key).unlink(missing_ok=True)

    def load(self) -> list[tuple[Mapping[str, Any], str]]:
        out = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                out.append((data["document"], data["source"]))
            except (OSError, ValueError, KeyError) as exc:
                log.error("ignoring unreadable persisted object %s: %s", path, exc)
        return out


class ControlPlane:
    """Owns the store and every subscriber stream; runs on one asyncio loop."""

    def __init__(
        self, store: ConfigStore, *, index: Index | None = None, sync_grace_s: float = SYNC_GRACE_S,
        certificates: CertificateService | None = None,
    ) -> None:
        self.store = store
        self.certificates = certificates
        self.index = index or default_index(certificates.ca if certificates else None)
        self.book = PushBook()
        self.subscribers: dict[str, SubscriberState] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._dirty = asyncio.Event()
        self._first_change = 0.0
        self._pods_synced = asyncio.Event()
        self._sync_grace_s = sync_grace_s
        self._full_push_slots = asyncio.Semaphore(FULL_PUSH_SLOTS)
        self.builds = 0
        self.started_at = time.time()
        self.publish_now()

    # --- snapshots --------------------------------------------------------------------

    def changed(self) -> None:
        if not self._dirty.is_set():
            self._first_change = time.monotonic()
            self._dirty.set()

    def publish_now(self) -> None:
        snapshot = self.index.build(self.store.snapshot())
        self.book.publish(snapshot)
        self.builds += 1
        for event in self._wakers.values():
            event.set()

    async def debounce_loop(self) -> None:
        while True:
            await self._dirty.wait()
            while True:
                revision = self.store.revision
                await asyncio.sleep(DEBOUNCE_QUIET_S)
                quiet = self.store.revision == revision
                if quiet or time.monotonic() - self._first_change >= DEBOUNCE_MAX_S:
                    break
            self._dirty.clear()
            self.publish_now()

    async def sync_gate(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._pods_synced.wait(), self._sync_grace_s)
        self._pods_synced.set()

    # --- RPCs ------------------------------------------------------------------------------

    async def subscribe(self, requests: AsyncIterator[pb.SubscribeRequest], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message of a subscription must be a Hello")
            return
        hello = first.hello
        if not hello.subscriber_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Hello.subscriber_id is empty")
        sub = SubscriberState(hello=hello, views=views_for(hello))
        sid = hello.subscriber_id
        self.subscribers[sid] = sub
        wake = asyncio.Event()
        self._wakers[sid] = wake
        log.info("subscriber %s connected (type %s, node %s, holds version %d)",
                 sid, pb.SubscriberType.Name(hello.type), hello.node or "-", hello.last_version)

        async def read_acks() -> None:
            async for req in requests:
                if req.WhichOneof("kind") != "ack":
                    continue
                if self.book.on_ack(sub, req.ack) and req.ack.error:
                    log.warning("subscriber %s refused version %d (NACK): %s", sid, sub.sent_version, req.ack.error)
                wake.set()

        reader = asyncio.create_task(read_acks())
        try:
            if hello.type != pb.KUBELET:
                await self._pods_synced.wait()
            while not reader.done():
                push = self.book.next_push(sub)
                if push is not None:
                    data, full = push
                    if full and len(data) > LARGE_PUSH_BYTES:
                        async with self._full_push_slots:
                            yield data
                    else:
                        yield data
                    continue
                wake.clear()
                waiter = asyncio.create_task(wake.wait())
                try:
                    await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
        finally:
            reader.cancel()
            sub.connected = False
            if self._wakers.get(sid) is wake:
                del self._wakers[sid]
            log.info("subscriber %s disconnected", sid)

    async def apply(self, request: pb.ApplyRequest, context: grpc.aio.ServicerContext, *, delete: bool = False) -> pb.ApplyResponse:
        results = []
        for doc in request.documents:
            for res in self.store.apply_text(doc.text, doc.source or "<api>", delete=delete, dry_run=request.dry_run):
                results.append(pb.ObjectResult(**res.as_dict()))
        self.changed()
        return pb.ApplyResponse(results=results, version=self.store.revision)

    async def delete(self, request: pb.ApplyRequest, context: grpc.aio.ServicerContext) -> pb.ApplyResponse:
        return await self.apply(request, context, delete=True)

    async def report_pods(self, request: pb.PodReport, context: grpc.aio.ServicerContext) -> pb.Empty:
        pods = [
            ReportedPod(
                uid=p.uid, namespace=p.namespace, name=p.name, node=p.node, ip=p.ip,
                labels=dict(p.labels), annotations=dict(p.annotations), service_account=p.service_account,
                owner=p.owner, ready=p.ready, phase=p.phase,
                ports=tuple((cp.name, cp.port) for cp in p.ports), reporter=request.reporter,
            )
            for p in request.pods
        ]
        removed = [(r.split("/", 1)[0], r.split("/", 1)[1]) for r in request.removed if "/" in r]
        if self.store.report_pods(request.reporter, pods, removed, full=request.full):
            self.changed()
        if request.full:
            self._pods_synced.set()
        return pb.Empty()

    async def proxy_status(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.ProxyStatusResponse:
        latest = self.book.latest.version if self.book.latest else 0
        return pb.ProxyStatusResponse(version=latest, subscribers=[s.status() for s in self.subscribers.values()])

    async def debug(self, request: pb.DebugRequest, context: grpc.aio.ServicerContext) -> pb.DebugResponse:
        return pb.DebugResponse(json=json.dumps(self.debug_dump(request.what or "config"), sort_keys=True, default=str))

    def debug_dump(self, what: str) -> dict[str, Any]:
        from google.protobuf import json_format

        if what == "config":
            return {"revision": self.store.revision, "objects": [
                {"key": list(k), "source": s.source, "revision": s.revision, "document": s.document}
                for k, s in sorted(self.store.objects.items())
            ], "pods": [_pod_dict(p) for p in self.store.pods.values()]}
        if what == "index":
            latest = self.book.latest
            out: dict[str, Any] = {"version": latest.version if latest else 0, "views": {}}
            if latest:
                for view, resources in latest.views.items():
                    out["views"][view] = {
                        name: json_format.MessageToDict(pb.Resource.FromString(data))
                        for name, data in sorted(resources.items())
                    }
            return out
        if what == "subscribers":
            return {"subscribers": [json_format.MessageToDict(s.status()) for s in self.subscribers.values()],
                    "builds": self.builds}
        if what.startswith("view:"):
            return self.view_dump(what.removeprefix("view:"))
        return {"error": f"unknown dump {what!r}; choose config, index, subscribers or view:<view name>"}

    def view_dump(self, view: str) -> dict[str, Any]:
        """One view of the latest snapshot (``ztunnel``, ``kubelet``, ``waypoint/<ns>/<name>``):
        its resources as JSON (as ``index`` shows them), with the config version it reflects."""
        from google.protobuf import json_format

        latest = self.book.latest
        version = latest.version if latest else 0
        resources = latest.views.get(view) if latest else None
        if resources is None:
            return {"error": f"no view {view!r} at config version {version}", "version": version,
                    "views": sorted(latest.views) if latest else []}
        return {"version": version, "view": view, "resources": {
            name: json_format.MessageToDict(pb.Resource.FromString(data)) for name, data in sorted(resources.items())
        }}

    # --- watched folders -------------------------------------------------------------------

    async def watch_folders(self, folders: list[Path]) -> None:
        """Apply YAML files under ``folders`` and follow their changes (polling mtimes):
        a changed file is re-applied, objects gone from a file or with a deleted file are
        deleted."""
        seen: dict[Path, tuple[float, int]] = {}
        owned: dict[Path, set[ObjectKey]] = {}
        while True:
            current: dict[Path, tuple[float, int]] = {}
            for folder in folders:
                for path in sorted(folder.rglob("*")):
                    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
                        with contextlib.suppress(OSError):
                            st = path.stat()
                            current[path] = (st.st_mtime, st.st_size)
            for path in set(seen) | set(current):
                if seen.get(path) == current.get(path):
                    continue
                text = ""
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    text = path.read_text() if path in current else ""
                self._sync_file(path, text, owned)
            seen = current
            await asyncio.sleep(WATCH_INTERVAL_S)

    def _sync_file(self, path: Path, text: str, owned: dict[Path, set[ObjectKey]]) -> None:
        """Apply a watched file's objects and delete those it held before but no longer does."""
        source = str(path)
        for res in self.store.apply_text(text, source) if text else []:
            if res.error:
                log.error("%s: %s", source, res.error)
            elif res.warning:
                log.warning("%s: %s", source, res.warning)
        in_file = {object_key(item.obj) for item in load_documents(text, source, kinds=ALL_KINDS).items} if text else set()
        for key in owned.get(path, set()) - in_file:
            stored = self.store.objects.get(key)
            if stored is not None and stored.source == source:
                self.store.delete(stored.obj)
        owned[path] = in_file
        self.changed()


def _pod_dict(p: ReportedPod) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(p)


def default_index(ca: CertificateAuthority | None = None) -> Index:
    from controlplane import translate

    converters: list[Callable[[StoreSnapshot, dict[str, dict[str, bytes]], Index], None]] = [translate.convert]
    if ca is not None:
        bundle = pb.Resource(name="ca/trust-bundle", trust_bundle=pb.TrustBundle(
            trust_domain=ca.trust_domain, roots_pem=[ca.root_pem.decode()]))
        data = bundle.SerializeToString(deterministic=True)

        def trust_bundle(store: StoreSnapshot, views: dict[str, dict[str, bytes]], index: Index) -> None:
            views["ztunnel"]["ca/trust-bundle"] = data

        converters.append(trust_bundle)
    return Index(converters=converters)


def make_server(cp: ControlPlane) -> grpc.aio.Server:
    server = grpc.aio.server(options=[
        ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        # clients ping every 10 s (controlplane/api/client.py) on streams that may carry no
        # data for minutes; the server's default (5 min between data-less pings) answered them
        # with GOAWAY "too_many_pings" and every subscriber reconnected for a full push
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
    ])
    handlers = {
        "Subscribe": grpc.stream_stream_rpc_method_handler(
            cp.subscribe, request_deserializer=pb.SubscribeRequest.FromString,
            response_serializer=lambda data: data,  # pushes are serialized once, shared
        ),
        "Apply": grpc.unary_unary_rpc_method_handler(
            cp.apply, request_deserializer=pb.ApplyRequest.FromString,
            response_serializer=pb.ApplyResponse.SerializeToString),
        "Delete": grpc.unary_unary_rpc_method_handler(
            cp.delete, request_deserializer=pb.ApplyRequest.FromString,
            response_serializer=pb.ApplyResponse.SerializeToString),
        "ReportPods": grpc.unary_unary_rpc_method_handler(
            cp.report_pods, request_deserializer=pb.PodReport.FromString,
            response_serializer=pb.Empty.SerializeToString),
        "ProxyStatus": grpc.unary_unary_rpc_method_handler(
            cp.proxy_status, request_deserializer=pb.Empty.FromString,
            response_serializer=pb.ProxyStatusResponse.SerializeToString),
        "Debug": grpc.unary_unary_rpc_method_handler(
            cp.debug, request_deserializer=pb.DebugRequest.FromString,
            response_serializer=pb.DebugResponse.SerializeToString),
    }
    if cp.certificates is not None:
        handlers["CreateCertificate"] = grpc.unary_unary_rpc_method_handler(
            cp.certificates.create_certificate, request_deserializer=pb.CertificateRequest.FromString,
            response_serializer=pb.CertificateResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return server


async def serve(
    cp: ControlPlane, address: str, *, folders: list[Path] | None = None,
    started: asyncio.Event | None = None, stop: asyncio.Event | None = None,
) -> None:
    """Serve on ``address`` (``unix:///path`` or ``host:port``) until ``stop`` is set."""
    server = make_server(cp)
    if address.startswith("unix://"):
        Path(address.removeprefix("unix://")).unlink(missing_ok=True)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    tasks = [asyncio.create_task(cp.debounce_loop()), asyncio.create_task(cp.sync_gate())]
    if folders:
        tasks.append(asyncio.create_task(cp.watch_folders(folders)))
    log.info("control plane serving on %s", address)
    if started is not None:
        started.set()
    try:
        await (stop.wait() if stop is not None else server.wait_for_termination())
    finally:
        for t in tasks:
            t.cancel()
        await server.stop(grace=0.5)
