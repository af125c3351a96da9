"""Push bookkeeping, without I/O: which snapshot each subscriber holds, what to send it next,
and what its ACKs and NACKs mean.

Rules (as xDS does them):

- A new stream always starts with a *full* push of the current snapshot (resync after a
  reconnect needs nothing else from the subscriber).
- At most one push is outstanding per subscriber; changes made meanwhile are coalesced into
  the next push, sent once the outstanding one is answered.
- An ACK moves the subscriber to the pushed version. A NACK leaves it on its last good
  version (it keeps its old config); the next push is computed from that version.
- Incremental pushes are diffs between retained snapshots, computed once per
  (views, from, to) and shared by every subscriber making the same step.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.api import mesh_pb2 as pb
from controlplane.index import Snapshot, diff

RETAINED_SNAPSHOTS = 16
DIFF_CACHE_SIZE = 64


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_push(version: int, nonce: str, full: bool, upserts: Sequence[bytes], removals: Sequence[str]) -> bytes:
    """A serialized ``mesh.v1.ConfigPush`` built from already serialized resources (protobuf
    wire format: field 1 varint, 2 and 5 strings, 3 bool, 4 embedded messages)."""
    parts = [b"\x08", _varint(version)]
    nonce_b = nonce.encode()
    parts += [b"\x12", _varint(len(nonce_b)), nonce_b]
    if full:
        parts.append(b"\x18\x01")
    for data in upserts:
        parts += [b"\x22", _varint(len(data)), data]
    for name in removals:
        name_b = name.encode()
        parts += [b"\x2a", _varint(len(name_b)), name_b]
    return b"".join(parts)


def views_for(hello: pb.Hello) -> tuple[str, ...]:
    if hello.type == pb.KUBELET:
        return ("kubelet",)
    if hello.type == pb.WAYPOINT:
        return ("ztunnel", f"waypoint/{hello.namespace}/{hello.name}")
    return ("ztunnel",)


@dataclass(slots=True)
class SubscriberState:
    """One connected subscriber, as the server sees it."""

    hello: pb.Hello
    views: tuple[str, ...]
    connected_at: float = field(default_factory=time.time)
    connected: bool = True
    sent_version: int = 0
    acked_version: int = 0
    outstanding: str | None = None  # nonce of the unanswered push
    last_nack: str = ""
    pushes: int = 0
    acks: int = 0
    nacks: int = 0
    _base: int | None = None  # the version its config is built on (None: nothing yet)

    @property
    def subscriber_id(self) -> str:
        return self.hello.subscriber_id

    def status(self) -> pb.SubscriberStatus:
        return pb.SubscriberStatus(
            subscriber_id=self.hello.subscriber_id, type=self.hello.type, node=self.hello.node,
            connected=self.connected, sent_version=self.sent_version, acked_version=self.acked_version,
            last_nack=self.last_nack, connected_at=self.connected_at, pushes=self.pushes,
            name=self.hello.name, namespace=self.hello.namespace,
        )


class PushBook:
    """Retained snapshots and the shared diff cache; decides pushes for subscribers."""

    def __init__(self) -> None:
        self.snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._diffs: OrderedDict[tuple[tuple[str, ...], int | None, int], tuple[bytes, int, int]] = OrderedDict()
        self.latest: Snapshot | None = None

    def publish(self, snapshot: Snapshot) -> None:
        self.latest = snapshot
        self.snapshots[snapshot.version] = snapshot
        while len(self.snapshots) > RETAINED_SNAPSHOTS:
            self.snapshots.popitem(last=False)

    def next_push(self, sub: SubscriberState) -> tuple[bytes, bool] | None:
        """The push to send now and whether it is a full one, or None (nothing new, or one
        is still outstanding)."""
        latest = self.latest
        if latest is None or sub.outstanding is not None:
            return None
        if sub.pushes and latest.version <= sub.sent_version:
            return None  # it has (or refused) this version already
        base = sub._base if sub._base in self.snapshots else None
        data = self._push_bytes(sub.views, base, latest)
        sub.outstanding = str(latest.version)
        sub.sent_version = latest.version
        sub.pushes += 1
        return data, base is None

    def _push_bytes(self, views: tuple[str, ...], base: int | None, latest: Snapshot) -> bytes:
        key = (views, base, latest.version)
        hit = self._diffs.get(key)
        if hit is not None:
            self._diffs.move_to_end(key)
            return hit[0]
        new = _merged(latest, views)
        old = _merged(self.snapshots[base], views) if base is not None else None
        upserts, removals = diff(old, new)
        data = encode_push(latest.version, str(latest.version), base is None, upserts, removals)
        self._diffs[key] = (data, len(upserts), len(removals))
        while len(self._diffs) > DIFF_CACHE_SIZE:
            self._diffs.popitem(last=False)
        return data

    @staticmethod
    def on_ack(sub: SubscriberState, ack: pb.Ack) -> bool:
        """Record an ACK/NACK; returns False for a stale or unknown nonce (ignored)."""
        if sub.outstanding is None or ack.nonce != sub.outstanding:
            return False
        sub.outstanding = None
        if ack.error:
            sub.nacks += 1
            sub.last_nack = ack.error
            return True
        sub.acks += 1
        sub.acked_version = ack.version
        sub._base = ack.version
        sub.last_nack = ""
        return True


def _merged(snapshot: Snapshot, views: tuple[str, ...]) -> Mapping[str, bytes]:
    if len(views) == 1:
        return snapshot.views.get(views[0], {})
    out: dict[str, bytes] = {}
    for v in views:
        out.update(snapshot.views.get(v, {}))
    return out
