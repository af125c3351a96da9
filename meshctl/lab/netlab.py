"""Privileged network plumbing for the lab, all in one place: network namespaces, veths,
addresses, routes, sysctls, nftables and sockets opened inside a namespace.

Nothing here ever adds an address or a route to the host's own namespace: every veth is
created from inside a lab namespace with its peer placed directly in another lab namespace.

Raises :class:`NetlabError` with the operation, the namespace and the kernel's reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import IPRoute

from meshctl.lab.config import LabConfig
from meshctl.lab.naming import (
    NODE_UPLINK,
    POD_IFACE,
    UNDERLAY_BRIDGE,
    NodeAddressing,
    node_underlay_port,
    nodes,
    pod_host_veth,
    underlay_netns,
)

log = logging.getLogger("meshctl.lab.netlab")

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
RT_SCOPE_LINK = 253


class NetlabError(RuntimeError):
    """A network operation failed; the message names the operation, namespace and cause."""


# --- namespaces ------------------------------------------------------------------------


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def _ip(*args: str) -> None:
    """Run an ``ip`` command (spawned, never forked from this process: the lab daemon runs
    gRPC threads, and forking such a process can deadlock)."""
    proc = subprocess.run(["ip", *args], capture_output=True, check=False, timeout=30)
    if proc.returncode != 0:
        raise NetlabError(f"`ip {' '.join(args)}` failed: {proc.stderr.decode(errors='replace').strip()}")


def create_netns(name: str) -> None:
    if name in list_netns():
        raise NetlabError(f"network namespace {name} already exists (a leftover? run `meshctl lab down`)")
    _ip("netns", "add", name)
    with netns_route(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def remove_netns(name: str) -> None:
    """Remove a namespace's mount point and its /etc/netns folder; missing is fine."""
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
    if (NETNS_DIR / name).exists():
        _ip("netns", "del", name)


@contextlib.contextmanager
def netns_route(name: str) -> Iterator[IPRoute]:
    """A pyroute2 ``IPRoute`` whose netlink socket lives in namespace ``name`` (opened from a
    thread that entered it; pyroute2's own NetNS would fork a helper process)."""
    with entered(name):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


@contextlib.contextmanager
def netns_fd(name: str) -> Iterator[int]:
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the calling thread inside namespace ``name`` for the duration of the block.

    Sockets created inside stay in that namespace after the block ends. Must not span an
    ``await``: setns applies to the calling thread only.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
    except FileNotFoundError:
        os.close(own)
        raise NetlabError(f"network namespace {name} does not exist") from None
    try:
        if _libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetlabError(f"entering network namespace {name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - cannot fail as root
                raise NetlabError("returning to the lab daemon's own network namespace failed")
    finally:
        os.close(target)
        os.close(own)


def socket_in(name: str, family: int, kind: int, address: tuple[str, int]) -> socket.socket:
    """A socket created in namespace ``name`` and bound to ``address`` there."""
    with entered(name):
        sock = socket.socket(family, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise NetlabError(f"binding {address[0]}:{address[1]} in {name}: {exc}") from exc
    return sock


def unbound_socket_in(name: str, family: int, kind: int) -> socket.socket:
    """A socket created in namespace ``name`` (connect it from anywhere; it stays there)."""
    with entered(name):
        return socket.socket(family, kind)


def sysctl(name: str, key: str, value: str) -> None:
    """Write a net.* sysctl inside namespace ``name`` (per-namespace values)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    with entered(name):
        try:
            path.write_text(value)
        except OSError as exc:
            raise NetlabError(f"sysctl {key}={value} in {name}: {exc}") from exc


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (found through /proc, so it also finds
    the processes of a lab whose daemon was killed)."""
    try:
        target = os.stat(NETNS_DIR / name)
    except FileNotFoundError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev) and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def kill_netns_processes(name: str, grace_s: float = 2.0) -> int:
    """SIGTERM, then SIGKILL after ``grace_s``, every process in namespace ``name``."""
    pids = pids_in_netns(name)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if not pids:
                return 0
            time.sleep(0.05)
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# --- nodes and the underlay --------------------------------------------------------------


def create_underlay(cfg: LabConfig) -> None:
    name = underlay_netns(cfg)
    create_netns(name)
    with netns_route(name) as ns:
        ns.link("add", ifname=UNDERLAY_BRIDGE, kind="bridge")
        ns.link("set", index=ns.link_lookup(ifname=UNDERLAY_BRIDGE)[0], state="up")


def create_node(cfg: LabConfig, node: NodeAddressing) -> None:
    """A node namespace with its uplink on the underlay bridge, routes to the other nodes'
    pod ranges, forwarding on, and the cluster DNS address on its loopback."""
    create_netns(node.netns)
    under = underlay_netns(cfg)
    port = node_underlay_port(node.index)
    with netns_route(under) as u, netns_fd(node.netns) as peer_ns:
        u.link("add", ifname=port, kind="veth", peer={"ifname": NODE_UPLINK, "net_ns_fd": peer_ns})
        idx = u.link_lookup(ifname=port)[0]
        u.link("set", index=idx, master=u.link_lookup(ifname=UNDERLAY_BRIDGE)[0])
        u.link("set", index=idx, state="up")
    with netns_route(node.netns) as ns:
        up = ns.link_lookup(ifname=NODE_UPLINK)[0]
        ns.addr("add", index=up, address=node.underlay_ip, prefixlen=node.underlay_prefixlen)
        ns.link("set", index=up, state="up")
        lo = ns.link_lookup(ifname="lo")[0]
        ns.addr("add", index=lo, address=cfg.dns_ip, prefixlen=32)
        for other in nodes(cfg):
            if other.index != node.index:
                ns.route("add", dst=str(other.pod_cidr), gateway=other.underlay_ip, oif=up)
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
    ):
        sysctl(node.netns, key, value)


# --- pods --------------------------------------------------------------------------------


def create_pod_network(
    cfg: LabConfig, node: NodeAddressing, netns_name: str, uid: str, ip: str, hostname: str,
    namespace: str,
) -> str:
    """A pod namespace behind a veth to its node, with ``ip``/32 and a default route via the
    node, plus its resolv.conf and hosts under /etc/netns. Returns the node-side veth name."""
    create_netns(netns_name)
    host_if = pod_host_veth(uid)
    try:
        wire_pod(node.netns, netns_name, host_if, ip, node.gateway_ip)
    except Exception:
        remove_netns(netns_name)
        raise
    etc = ETC_NETNS / netns_name
    etc.mkdir(parents=True, exist_ok=True)
    domain = cfg.cluster_domain
    (etc / "resolv.conf").write_text(
        f"# written by meshctl lab for pod {namespace}/{hostname}\n"
        f"search {namespace}.svc.{domain} svc.{domain} {domain}\n"
        f"nameserver {cfg.dns_ip}\n"
        "options ndots:5\n"
    )
    (etc / "hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{ip}\t{hostname}\n"
    )
    return host_if


def wire_pod(node_netns: str, pod_netns: str, host_if: str, ip: str, gateway_ip: str) -> None:
    """Put namespace ``pod_netns`` behind a veth to ``node_netns``: the pod gets ``ip``/32 on
    ``eth0`` with an on-link route to the gateway and a default route through it; the node side
    (``host_if``) carries the gateway address and a /32 route to the pod, rp_filter off."""
    with netns_route(node_netns) as ns, netns_fd(pod_netns) as peer_ns:
        ns.link("add", ifname=host_if, kind="veth", peer={"ifname": POD_IFACE, "net_ns_fd": peer_ns})
        idx = ns.link_lookup(ifname=host_if)[0]
        ns.addr("add", index=idx, address=gateway_ip, prefixlen=32)
        ns.link("set", index=idx, state="up")
        ns.route("add", dst=f"{ip}/32", oif=idx, scope=RT_SCOPE_LINK)
    with netns_route(pod_netns) as ns:
        idx = ns.link_lookup(ifname=POD_IFACE)[0]
        ns.addr("add", index=idx, address=ip, prefixlen=32)
        ns.link("set", index=idx, state="up")
        ns.route("add", dst=f"{gateway_ip}/32", oif=idx, scope=RT_SCOPE_LINK)
        ns.route("add", dst="0.0.0.0/0", gateway=gateway_ip, oif=idx)
    sysctl(node_netns, f"net.ipv4.conf.{host_if}.rp_filter", "0")


def load_nft(name: str, script: str) -> None:
    """Load an nft script into namespace ``name`` (one atomic transaction)."""
    proc = subprocess.run(
        ["ip", "netns", "exec", name, "nft", "-f", "-"],
        input=script.encode(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    if proc.returncode != 0:
        raise NetlabError(
            f"loading nftables rules into {name} failed: {proc.stderr.decode(errors='replace').strip()}"
        )
