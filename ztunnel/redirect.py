"""Which pods this node's ztunnel captures, decided from the config alone (pure).

A pod is captured when it runs on this node and is enrolled (``istio.io/dataplane-mode=ambient``
on its namespace or itself, ``none`` opting it out — the control plane computes this as the
workload's HBONE tunnel protocol). The redirect manager turns the difference between two plans
into attach/detach/enroll/unenroll calls on ``bpf``; open connections of a pod that leaves the
mesh finish on the path they started on, new ones go direct.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ztunnel.state import ProxyState


@dataclass(frozen=True, slots=True)
class Captured:
    uid: str
    ip: str
    pod_id: int  # a small stable number for the bpf maps and counters


@dataclass(frozen=True, slots=True)
class PlanChange:
    enroll: tuple[Captured, ...]
    unenroll: tuple[Captured, ...]


def plan(state: ProxyState, node: str) -> dict[str, Captured]:
    """Pod IP → capture entry for every enrolled workload on ``node``."""
    out: dict[str, Captured] = {}
    for w in sorted(state.workloads.values(), key=lambda w: w.uid):
        if w.node != node or not w.enrolled:
            continue
        for ip in w.addresses:
            if ":" not in ip:  # IPv4 only, as the tc programs
                out[ip] = Captured(uid=w.uid, ip=ip, pod_id=pod_id(w.uid))
    return out


def diff(old: Mapping[str, Captured], new: Mapping[str, Captured]) -> PlanChange:
    enroll = tuple(c for ip, c in sorted(new.items()) if old.get(ip) != c)
    unenroll = tuple(c for ip, c in sorted(old.items()) if ip not in new or new[ip] != c)
    return PlanChange(enroll=enroll, unenroll=unenroll)


def pod_id(uid: str) -> int:
    """A stable 31-bit id for a pod uid (counters are keyed by it)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4], "big") & 0x7FFFFFFF
