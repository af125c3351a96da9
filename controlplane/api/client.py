"""Subscribing to the control plane: the client side of the push protocol.

:class:`Subscription` keeps one stream open (reconnecting with jittered back-off when the
control plane goes away), turns each push into the complete new set of resources, hands it to
the subscriber's ``apply`` callback, and answers ACK — or NACK with the callback's error, in
which case the subscriber stays on its last good config. The config held survives
disconnects: a restarted control plane is simply re-synced with a full push.

Blocking (grpc's sync API); run :meth:`Subscription.run` in a thread of its own. The callback
runs on that thread.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import grpc

from controlplane.api import mesh_pb2 as pb

log = logging.getLogger("controlplane.api.client")

SERVICE = "/mesh.v1.MeshConfig/"
BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 2.0


class ConfigRejected(Exception):
    """Raised by an ``apply`` callback to NACK a push; the message goes to the control plane."""


@dataclass(frozen=True, slots=True)
class Update:
    """A push as the subscriber sees it: the complete resource set after it, and the change."""

    version: int
    full: bool
    resources: Mapping[str, pb.Resource]
    changed: frozenset[str]
    removed: frozenset[str]


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=[
        ("grpc.max_receive_message_length", 256 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ])


class Stub:
    """Unary calls to the control plane (apply, delete, pod reports, status, debug)."""

    def __init__(self, target: str, timeout: float = 30.0) -> None:
        self._channel = channel(target)
        self.timeout = timeout
        unary = self._channel.unary_unary
        self.apply = unary(SERVICE + "Apply", request_serializer=pb.ApplyRequest.SerializeToString,
                           response_deserializer=pb.ApplyResponse.FromString)
        self.delete = unary(SERVICE + "Delete", request_serializer=pb.ApplyRequest.SerializeToString,
                            response_deserializer=pb.ApplyResponse.FromString)
        self.report_pods = unary(SERVICE + "ReportPods", request_serializer=pb.PodReport.SerializeToString,
                                 response_deserializer=pb.Empty.FromString)
        self.proxy_status = unary(SERVICE + "ProxyStatus", request_serializer=pb.Empty.SerializeToString,
                                  response_deserializer=pb.ProxyStatusResponse.FromString)
        self.debug = unary(SERVICE + "Debug", request_serializer=pb.DebugRequest.SerializeToString,
                           response_deserializer=pb.DebugResponse.FromString)

    def close(self) -> None:
        self._channel.close()


class Subscription:
    """One subscriber's stream; :attr:`resources` and :attr:`version` are its last good config."""

    def __init__(
        self, target: str, hello: pb.Hello, apply: Callable[[Update], None],
        *, backoff_start_s: float = BACKOFF_START_S, backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.target = target
        self.hello = hello
        self._apply = apply
        self.resources: dict[str, pb.Resource] = {}
        self.version = 0
        self.connected = threading.Event()
        self.connects = 0
        self.nacks = 0
        self._stop = threading.Event()
        self._call: grpc.Future | None = None
        self._backoff = (backoff_start_s, backoff_max_s)

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()

    def run(self) -> None:
        """Subscribe until :meth:`stop`; reconnects after any failure."""
        delay = self._backoff[0]
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._stream()
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                code = exc.code() if hasattr(exc, "code") else None
                log.warning("subscription to %s lost (%s); holding version %d, reconnecting",
                            self.target, code.name if code else exc, self.version)
            self.connected.clear()
            if time.monotonic() - started > 10:
                delay = self._backoff[0]
            self._stop.wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff[1])

    def _stream(self) -> None:
        outbox: queue.Queue[pb.SubscribeRequest | None] = queue.Queue()
        hello = pb.Hello()
        hello.CopyFrom(self.hello)
        hello.last_version = self.version
        outbox.put(pb.SubscribeRequest(hello=hello))

        def requests() -> Iterator[pb.SubscribeRequest]:
            while True:
                item = outbox.get()
                if item is None:
                    return
                yield item

        with channel(self.target) as chan:
            call = chan.stream_stream(
                SERVICE + "Subscribe", request_serializer=pb.SubscribeRequest.SerializeToString,
                response_deserializer=pb.ConfigPush.FromString,
            )(requests())
            self._call = call
            try:
                for push in call:
                    if not self.connected.is_set():
                        self.connects += 1
                        self.connected.set()
                    outbox.put(pb.SubscribeRequest(ack=self._handle(push)))
                    if self._stop.is_set():
                        break
            finally:
                outbox.put(None)
                self._call = None

    def _handle(self, push: pb.ConfigPush) -> pb.Ack:
        new = {} if push.full else dict(self.resources)
        removed = frozenset(n for n in push.removals if n in new or not push.full)
        for name in push.removals:
            new.pop(name, None)
        changed = set()
        for res in push.upserts:
            new[res.name] = res
            changed.add(res.name)
        if push.full:
            removed = frozenset(n for n in self.resources if n not in new)
        update = Update(push.version, push.full, new, frozenset(changed), removed)
        try:
            self._apply(update)
        except ConfigRejected as exc:
            self.nacks += 1
            log.warning("refused config version %d (NACK): %s", push.version, exc)
            return pb.Ack(nonce=push.nonce, version=push.version, error=str(exc) or "rejected")
        self.resources = new
        self.version = push.version
        return pb.Ack(nonce=push.nonce, version=push.version)
