"""Loading, attaching and reading the eBPF/tc capture programs (``capture.c``), and the policy
routing that delivers the packets they assign. Every privileged call of the capture lives here
(bcc, pyroute2 tc/rule/route).

One :class:`Capture` per node network namespace. The programs are compiled by bcc at run time
(once per pin folder per process); their maps are pinned under ``/sys/fs/bpf/<prefix>/`` and a
restarted loader adopts them (bcc's ``BPF_TABLE_PINNED`` opens a pinned map when the path exists
and creates and pins it otherwise), so enrolments and counters survive a ztunnel restart. Filters
already attached keep running the old program, on the same maps, until re-attached.

Interfaces are always those of the network namespace the *calling thread* is in: bpf_sk_assign
only works at tc ingress and only for sockets in the device's own namespace, so ztunnel's
listeners and the attachments both live in the node's namespace.

Raises :class:`CaptureError` with one sentence naming the operation, the interface, the network
namespace and the kernel's reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import ipaddress
import os
import re
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

SOURCE = Path(__file__).with_name("capture.c")
PIN_ROOT = Path("/sys/fs/bpf")
NETNS_DIR = Path("/run/netns")

ZTUNNEL_MARK = 0x539
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
HBONE_PORT = 15008
LISTEN_ADDR = "0.0.0.0"
ROUTING_TABLE = 100
RULE_PRIORITY = 100

OUTBOUND_FILTER = "mesh_outbound"
INBOUND_FILTER = "mesh_inbound"
FILTER_PRIO = 1337  # our tc filter's priority (and handle 1) at clsact ingress
FILTER_HANDLE = 1
CLSACT_INGRESS = 0xFFFFFFF2  # "ffff:fff2"
ETH_P_ALL = 0x0003
# include/uapi/linux/bpf.h (bcc 0.26's Python module has no names for these)
BPF_PROG_TYPE_SK_LOOKUP = 30
BPF_SK_LOOKUP = 36
_BPF_MAP_UPDATE_ELEM = 2
_BPF_OBJ_PIN = 6
_BPF_LINK_CREATE = 28
_SYS_BPF = 321  # x86_64
TW_LINK_PIN = "tw_lookup_link"
LISTENER_SLOTS = {"outbound": 0, "inbound": 1, "hbone": 2}
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class CaptureError(RuntimeError):
    """A capture operation failed; the message names what, where, and the kernel's reason."""


class Decision(enum.StrEnum):
    """Counter decisions, in the order of the ``D_*`` numbers in ``capture.c``."""

    ESTABLISHED_ASSIGNED = "established_assigned"
    SYN_TO_OUTBOUND = "syn_to_outbound"
    SYN_TO_INBOUND = "syn_to_inbound"
    SYN_TO_HBONE = "syn_to_hbone"
    PASSED = "passed"
    LOOKUP_FAILED = "lookup_failed"
    NOT_TCP = "not_tcp"
    SYN_TIME_WAIT = "syn_time_wait"


DECISIONS: tuple[Decision, ...] = tuple(Decision)


@dataclass(frozen=True)
class ProgramFds:
    """File descriptors of the loaded programs (owned by the process's cached BPF object)."""

    outbound: int
    inbound: int
    tw_lookup: int


# --- the network namespace of the calling thread (for error messages) --------------------


def current_netns() -> str:
    """A name for the calling thread's network namespace: its /run/netns name if it has one."""
    try:
        own = os.stat("/proc/thread-self/ns/net")
    except OSError:
        return "an unknown network namespace"
    with contextlib.suppress(OSError):
        for entry in os.scandir(NETNS_DIR):
            with contextlib.suppress(OSError):
                st = os.stat(entry.path)
                if (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev):
                    return f"network namespace {entry.name}"
    return f"network namespace net:[{own.st_ino}]"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NetlinkError):
        return os.strerror(exc.code) if exc.code else str(exc)
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --- compiling (cached per process) ------------------------------------------------------


class _Compiled:
    """bcc's BPF object for one pin folder with its two programs loaded."""

    def __init__(self, pin_dir: Path | None) -> None:
        try:
            from bcc import BPF
        except ImportError as exc:
            raise CaptureError(
                f"the bcc Python module is not importable ({exc}); install python3-bpfcc (run scripts/setup)"
            ) from exc
        cflags = ["-Wno-unused-function"]
        if pin_dir is not None:
            cflags.append(f'-DMESH_PIN_DIR="{pin_dir}"')
        where = f"with maps pinned under {pin_dir}" if pin_dir else "without pinned maps"
        try:
            self.bpf: Any = BPF(text=SOURCE.read_bytes(), cflags=cflags)
        except Exception as exc:
            raise CaptureError(
                f"compiling {SOURCE.name} {where} failed: {_reason(exc)} (bcc printed the compiler's "
                f"errors above; are the kernel headers at /lib/modules/{os.uname().release}/build?)"
            ) from exc
        try:
            out = self.bpf.load_func(b"outbound", BPF.SCHED_CLS)
            inb = self.bpf.load_func(b"inbound", BPF.SCHED_CLS)
            tw = self.bpf.load_func(b"tw_lookup", BPF_PROG_TYPE_SK_LOOKUP, attach_type=BPF_SK_LOOKUP)
        except Exception as exc:
            self.bpf.cleanup()
            raise CaptureError(
                f"the kernel refused to load the capture programs {where}: {_reason(exc)} "
                "(if the pinned maps were made by another version, remove them with remove_pins())"
            ) from exc
        self.fds = ProgramFds(outbound=int(out.fd), inbound=int(inb.fd), tw_lookup=int(tw.fd))

    def close(self) -> None:
        self.bpf.cleanup()


_cache: dict[Path | None, _Compiled] = {}
_cache_lock = threading.Lock()


def compile_programs(pin_dir: Path | None) -> ProgramFds:
    """Compile and load the programs (once per pin folder per process). ``None``: maps are not
    pinned (the environment check's compile test).

    Raises CaptureError when bcc cannot compile or the kernel refuses the programs.
    """
    with _cache_lock:
        compiled = _cache.get(pin_dir)
        if compiled is None:
            compiled = _cache[pin_dir] = _Compiled(pin_dir)
        return compiled.fds


def _compiled(pin_dir: Path) -> _Compiled:
    compile_programs(pin_dir)
    return _cache[pin_dir]


def _forget(pin_dir: Path) -> None:
    with _cache_lock:
        compiled = _cache.pop(pin_dir, None)
    if compiled is not None:
        compiled.close()


# --- the capture of one node -------------------------------------------------------------


def _ip_key(ip: str) -> int:
    """An IPv4 address as the u32 the programs read from the packet (network byte order)."""
    try:
        packed = ipaddress.IPv4Address(ip).packed
    except ValueError as exc:
        raise CaptureError(f"{ip!r} is not an IPv4 address (capture handles IPv4 only)") from exc
    return int.from_bytes(packed, sys.byteorder)


def _ip_from_key(key: int) -> str:
    return str(ipaddress.IPv4Address(key.to_bytes(4, sys.byteorder)))


class Capture:
    """The capture programs and maps of one node (``prefix``, e.g. ``mesh-node1``, names the pin
    folder ``/sys/fs/bpf/<prefix>``)."""

    def __init__(
        self,
        prefix: str,
        *,
        ztunnel_mark: int = ZTUNNEL_MARK,
        outbound_port: int = OUTBOUND_PORT,
        inbound_port: int = INBOUND_PORT,
        hbone_port: int = HBONE_PORT,
        outbound_addr: str = LISTEN_ADDR,
        inbound_addr: str = LISTEN_ADDR,
        hbone_addr: str = LISTEN_ADDR,
        fail_open: bool = False,
        pin_root: Path = PIN_ROOT,
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise CaptureError(
                f"capture prefix {prefix!r} must be 1-64 letters, digits, '.', '_' or '-' (it names a bpffs folder)"
            )
        if not 0 < ztunnel_mark < 2**32:
            raise CaptureError(f"ztunnel_mark {ztunnel_mark:#x} must be a non-zero 32-bit value")
        for name, port in (("outbound_port", outbound_port), ("inbound_port", inbound_port), ("hbone_port", hbone_port)):
            if not 0 < port < 65536:
                raise CaptureError(f"{name} {port} must be between 1 and 65535")
        self.prefix = prefix
        self.pin_dir = pin_root / prefix
        self.mark = ztunnel_mark
        self._config = {
            "mark": ztunnel_mark,
            "outbound_addr": _ip_key(outbound_addr),
            "inbound_addr": _ip_key(inbound_addr),
            "hbone_addr": _ip_key(hbone_addr),
            "outbound_port": outbound_port,
            "inbound_port": inbound_port,
            "hbone_port": hbone_port,
            "fail_open": int(fail_open),
        }

    # -- programs and maps --

    def load(self) -> ProgramFds:
        """Compile (cached per process), adopt or create the pinned maps, write the config.

        Raises CaptureError (bpffs missing, compile or load failure)."""
        if not self.pin_dir.parent.is_dir() or not _is_bpffs(self.pin_dir.parent):
            raise CaptureError(
                f"{self.pin_dir.parent} is not a mounted bpf filesystem; mount it with "
                f"`mount -t bpf bpf {self.pin_dir.parent}` (or run scripts/setup)"
            )
        try:
            self.pin_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CaptureError(f"creating the pin folder {self.pin_dir}: {_reason(exc)}") from exc
        compiled = _compiled(self.pin_dir)
        table = compiled.bpf[b"config"]
        leaf = table.Leaf()
        for field, value in self._config.items():
            setattr(leaf, field, value)
        try:
            table[table.Key(0)] = leaf
        except Exception as exc:
            raise CaptureError(f"writing the capture config into {self.pin_dir}/config: {_reason(exc)}") from exc
        return compiled.fds

    def attach_time_wait_lookup(self) -> None:
        """Attach ``tw_lookup`` to the calling thread's network namespace as an sk_lookup
        program, through a BPF link pinned at ``<pin folder>/tw_lookup_link`` (it outlives the
        process like the maps; a newer one replaces it). Idempotent."""
        fds = self.load()
        pin = self.pin_dir / TW_LINK_PIN
        with contextlib.suppress(FileNotFoundError):
            pin.unlink()  # the old link detaches when its pin, its last reference, goes
        netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            link = _bpf_link_create(fds.tw_lookup, netns, BPF_SK_LOOKUP)
        except OSError as exc:
            raise CaptureError(
                f"attaching the sk_lookup program tw_lookup to {current_netns()}: {_reason(exc)}") from exc
        finally:
            os.close(netns)
        try:
            _bpf_obj_pin(link, pin)
        except OSError as exc:
            raise CaptureError(f"pinning the tw_lookup link at {pin}: {_reason(exc)}") from exc
        finally:
            os.close(link)

    def set_listener(self, which: str, fd: int) -> None:
        """Tell ``tw_lookup`` which socket (descriptor ``fd``) is ztunnel's ``which`` listener
        (outbound, inbound or hbone); the map drops it by itself when the socket closes."""
        self._table("enrolled")  # compiled and loaded
        with _cache_lock:
            compiled = _cache[self.pin_dir]
        from bcc.libbcc import lib  # bcc 0.26's Table() has no sockmap type: use the map's fd
        map_fd = int(lib.bpf_table_fd(compiled.bpf.module, b"listeners"))
        try:
            if map_fd < 0:
                raise OSError(errno.ENOENT, "no map named listeners in the loaded program")
            _bpf_map_update(map_fd, LISTENER_SLOTS[which], fd)
        except Exception as exc:
            raise CaptureError(f"registering the {which} listener in {self.pin_dir}/listeners: {_reason(exc)}") from exc

    def close(self) -> None:
        """Release this process's BPF object (attached filters and pinned maps stay)."""
        _forget(self.pin_dir)

    def remove_pins(self) -> None:
        """Close the maps and delete ``/sys/fs/bpf/<prefix>`` (missing is fine). Programs still
        attached keep their maps until they are detached."""
        _forget(self.pin_dir)
        if not self.pin_dir.exists():
            return
        try:
            for entry in self.pin_dir.iterdir():
                entry.unlink()
            self.pin_dir.rmdir()
        except OSError as exc:
            raise CaptureError(f"removing the pinned maps under {self.pin_dir}: {_reason(exc)}") from exc

    def _table(self, name: str) -> Any:
        with _cache_lock:
            compiled = _cache.get(self.pin_dir)
        if compiled is None:
            self.load()
            compiled = _compiled(self.pin_dir)
        return compiled.bpf[name.encode()]

    def enroll(self, pod_ip: str, pod_id: int) -> None:
        """Mark ``pod_ip`` as a local enrolled pod (``pod_id`` 1..2**32-1 labels its counters)."""
        if not 0 < pod_id < 2**32:
            raise CaptureError(f"pod id {pod_id} must be between 1 and 2**32-1 (0 means unknown)")
        table = self._table("enrolled")
        try:
            table[table.Key(_ip_key(pod_ip))] = table.Leaf(pod_id)
        except Exception as exc:
            raise CaptureError(f"enrolling {pod_ip} in {self.pin_dir}/enrolled: {_reason(exc)}") from exc

    def unenroll(self, pod_ip: str) -> None:
        """Forget ``pod_ip`` (idempotent)."""
        table = self._table("enrolled")
        with contextlib.suppress(KeyError):
            del table[table.Key(_ip_key(pod_ip))]

    def enrolled(self) -> dict[str, int]:
        """Enrolled pod IPs and their ids."""
        return {_ip_from_key(int(k.value)): int(v.value) for k, v in self._table("enrolled").items()}

    def counters(self) -> dict[tuple[int, Decision], int]:
        """Packets per (pod id, decision), summed over CPUs (pod id 0: source not enrolled)."""
        table = self._table("counters")
        result: dict[tuple[int, Decision], int] = {}
        for key in table.keys():
            try:
                decision = DECISIONS[key.decision]
            except IndexError:
                continue  # written by a newer program version
            with contextlib.suppress(KeyError):
                result[(int(key.pod_id), decision)] = int(table.sum(key).value)
        return result

    # -- tc attachments (in the calling thread's network namespace) --

    def attach_outbound(self, ifname: str) -> None:
        """Run ``outbound`` at tc ingress of ``ifname`` (host side of a pod's veth). Idempotent."""
        self._attach(ifname, self.load().outbound, OUTBOUND_FILTER)

    def detach_outbound(self, ifname: str) -> None:
        """Remove our outbound filter from ``ifname`` (idempotent; a missing interface is fine)."""
        _detach(ifname, OUTBOUND_FILTER)

    def attach_inbound(self, ifname: str) -> None:
        """Run ``inbound`` at tc ingress of ``ifname`` (the node's uplink). Idempotent."""
        self._attach(ifname, self.load().inbound, INBOUND_FILTER)

    def detach_inbound(self, ifname: str) -> None:
        """Remove our inbound filter from ``ifname`` (idempotent)."""
        _detach(ifname, INBOUND_FILTER)

    def _attach(self, ifname: str, fd: int, name: str) -> None:
        what = f"the capture program {name} to tc ingress of {ifname} in {current_netns()}"
        with _ipr(f"attaching {what}") as ipr:
            index = _link_index(ipr, ifname)
            if index is None:
                raise CaptureError(f"attaching {what}: no such interface")
            try:
                ipr.tc("add", "clsact", index)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise CaptureError(f"adding a clsact qdisc for {what}: {_reason(exc)}") from exc
            try:
                present = _filters(ipr, index)
            except NetlinkError as exc:
                raise CaptureError(f"listing the tc filters for {what}: {_reason(exc)}") from exc
            for other in present:
                if other.prio == FILTER_PRIO and other.name != name:
                    raise CaptureError(
                        f"attaching {what}: tc priority {FILTER_PRIO} there is taken by "
                        f"{other.name or other.kind} (an interface carries one capture program; detach it first)"
                    )
            try:
                ipr.tc(
                    "replace-filter", "bpf", index, FILTER_HANDLE, fd=fd, name=name,
                    parent=CLSACT_INGRESS, classid=1, direct_action=True, prio=FILTER_PRIO,
                    protocol=ETH_P_ALL,
                )
            except NetlinkError as exc:
                raise CaptureError(f"attaching {what}: {_reason(exc)}") from exc

    def filters(self, ifname: str) -> list[str]:
        """Names of the bpf filters at tc ingress of ``ifname`` (for checks and status)."""
        return attached_filters(ifname)


# --- tc helpers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Filter:
    kind: str
    name: str
    prio: int
    handle: int
    protocol: int


@contextlib.contextmanager
def _ipr(doing: str) -> Iterator[Any]:
    try:
        ipr = IPRoute()
    except OSError as exc:
        raise CaptureError(f"{doing}: opening a netlink socket: {_reason(exc)}") from exc
    try:
        yield ipr
    finally:
        ipr.close()


def _link_index(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _filters(ipr: Any, index: int) -> list[_Filter]:
    try:
        msgs = list(ipr.get_filters(index=index, parent=CLSACT_INGRESS))
    except NetlinkError as exc:
        if exc.code in (errno.EINVAL, errno.ENOENT, errno.ENODEV):
            return []  # no clsact qdisc, or the interface went away
        raise
    found = []
    for msg in msgs:
        kind = msg.get_attr("TCA_KIND")
        opts = msg.get_attr("TCA_OPTIONS")
        if kind is None or opts is None:
            continue  # the chain's head entry, not a filter
        name = opts.get_attr("TCA_BPF_NAME") if kind == "bpf" else None
        info = int(msg["info"])
        found.append(_Filter(kind=str(kind), name=str(name or ""), prio=info >> 16,
                             handle=int(msg["handle"]), protocol=socket.ntohs(info & 0xFFFF)))
    return found


def attached_filters(ifname: str) -> list[str]:
    """Names (or kinds) of the filters at tc ingress of ``ifname`` in the calling thread's
    namespace; empty when the interface or its clsact qdisc is missing."""
    with _ipr(f"listing the tc filters of {ifname} in {current_netns()}") as ipr:
        index = _link_index(ipr, ifname)
        if index is None:
            return []
        try:
            return [f.name or f.kind for f in _filters(ipr, index)]
        except NetlinkError as exc:
            raise CaptureError(f"listing the tc filters of {ifname} in {current_netns()}: {_reason(exc)}") from exc


def _detach(ifname: str, name: str) -> None:
    doing = f"detaching the capture program {name} from {ifname} in {current_netns()}"
    with _ipr(doing) as ipr:
        index = _link_index(ipr, ifname)
        if index is None:
            return
        try:
            for f in _filters(ipr, index):
                if f.kind == "bpf" and f.name == name:
                    ipr.tc("del-filter", "bpf", index, f.handle, parent=CLSACT_INGRESS,
                           prio=f.prio, protocol=f.protocol)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.ENODEV):
                raise CaptureError(f"{doing}: {_reason(exc)}") from exc


def _is_bpffs(path: Path) -> bool:
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return False
    return any(
        len(parts) > 2 and parts[1] == str(path) and parts[2] == "bpf"
        for parts in (line.split() for line in mounts.splitlines())
    )


def bpffs_mounted(path: Path = PIN_ROOT) -> bool:
    """Whether a bpf filesystem is mounted at ``path``."""
    return _is_bpffs(path)


# --- routing for assigned packets --------------------------------------------------------


def install_local_routing(mark: int = ZTUNNEL_MARK, table: int = ROUTING_TABLE, priority: int = RULE_PRIORITY) -> None:
    """In the calling thread's namespace: ``ip rule add fwmark <mark> lookup <table>`` and
    ``ip route add local 0.0.0.0/0 dev lo table <table>``, so packets the programs assigned (and
    marked) are delivered locally. Idempotent. Raises CaptureError."""
    doing = f"installing local routing for mark {mark:#x} (table {table}) in {current_netns()}"
    with _ipr(doing) as ipr:
        try:
            if not _our_rules(ipr, mark, table):
                ipr.rule("add", table=table, fwmark=mark, priority=priority, family=socket.AF_INET)
            lo = _link_index(ipr, "lo")
            ipr.route("replace", dst="0.0.0.0", dst_len=0, type="local", oif=lo, table=table,
                      scope=254, family=socket.AF_INET)
        except NetlinkError as exc:
            raise CaptureError(f"{doing}: {_reason(exc)}") from exc


def remove_local_routing(mark: int = ZTUNNEL_MARK, table: int = ROUTING_TABLE) -> None:
    """Undo :func:`install_local_routing` (idempotent). Raises CaptureError."""
    doing = f"removing local routing for mark {mark:#x} (table {table}) in {current_netns()}"
    with _ipr(doing) as ipr:
        try:
            for rule in _our_rules(ipr, mark, table):
                ipr.rule("del", table=table, fwmark=mark, priority=rule.get_attr("FRA_PRIORITY"),
                         family=socket.AF_INET)
            with contextlib.suppress(NetlinkError):
                ipr.route("del", dst="0.0.0.0", dst_len=0, type="local", table=table, family=socket.AF_INET)
        except NetlinkError as exc:
            raise CaptureError(f"{doing}: {_reason(exc)}") from exc


def _our_rules(ipr: Any, mark: int, table: int) -> list[Any]:
    found = []
    for rule in ipr.get_rules(family=socket.AF_INET):
        rule_table = rule.get_attr("FRA_TABLE") or rule["table"]
        if rule.get_attr("FRA_FWMARK") == mark and rule_table == table:
            found.append(rule)
    return found


def tools_missing() -> list[str]:
    """Command-line tools the capture's operators rely on (``ip``, ``tc``) that are absent."""
    return [tool for tool in ("ip", "tc") if shutil.which(tool) is None]


# --- bpf(2) commands bcc 0.26 does not wrap ---------------------------------------------------


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    ret = int(libc.syscall(_SYS_BPF, cmd, attr, len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _bpf_link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """BPF_LINK_CREATE: ``union bpf_attr { u32 prog_fd, target_fd, attach_type, flags; ... }``."""
    attr = ctypes.create_string_buffer(64)
    ctypes.memmove(attr, (ctypes.c_uint32 * 4)(prog_fd, target_fd, attach_type, 0), 16)
    return _bpf(_BPF_LINK_CREATE, attr)


def _bpf_obj_pin(fd: int, path: Path) -> None:
    """BPF_OBJ_PIN: ``{ u64 pathname; u32 bpf_fd; u32 file_flags; }``."""
    name = ctypes.create_string_buffer(os.fsencode(str(path)))
    attr = ctypes.create_string_buffer(64)
    ctypes.memmove(attr, ctypes.byref(ctypes.c_uint64(ctypes.addressof(name))), 8)
    ctypes.memmove(ctypes.byref(attr, 8), ctypes.byref(ctypes.c_uint32(fd)), 4)
    _bpf(_BPF_OBJ_PIN, attr)


def _bpf_map_update(map_fd: int, key: int, value: int) -> None:
    """BPF_MAP_UPDATE_ELEM of u32 -> u32: ``{ u32 map_fd; u64 key; u64 value; u64 flags; }``."""
    k, v = ctypes.c_uint32(key), ctypes.c_uint32(value)
    attr = ctypes.create_string_buffer(64)
    ctypes.memmove(attr, ctypes.byref(ctypes.c_uint32(map_fd)), 4)
    ctypes.memmove(ctypes.byref(attr, 8), ctypes.byref(ctypes.c_uint64(ctypes.addressof(k))), 8)
    ctypes.memmove(ctypes.byref(attr, 16), ctypes.byref(ctypes.c_uint64(ctypes.addressof(v))), 8)
    _bpf(_BPF_MAP_UPDATE_ELEM, attr)
