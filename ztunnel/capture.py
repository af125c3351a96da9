"""The redirect manager: keeps the node's tc capture in step with enrolment.

At start it checks the machine (one clear message if capture cannot run), installs the local
routing the assignment needs and attaches ``inbound`` to the node's uplink. On every config
change it attaches ``outbound`` to the host-side veth of every local pod (found by routing:
the interface the node routes the pod's address to), and puts exactly the enrolled pods'
addresses in the ``enrolled`` map — only their new connections are captured; the program on
other pods' veths only returns replies to ztunnel's own connections. Pods are never restarted.
"""

from __future__ import annotations

import logging

from pyroute2 import IPRoute

from bpf import checks
from bpf.loader import Capture, CaptureError, install_local_routing, remove_local_routing
from ztunnel.redirect import plan
from ztunnel.sockets import ZTUNNEL_MARK
from ztunnel.state import ProxyState

log = logging.getLogger("ztunnel.capture")


class CaptureUnavailable(RuntimeError):
    """This machine cannot run the capture; the message says what is missing and how to fix it."""


class RedirectManager:
    def __init__(self, node: str, prefix: str, uplink: str) -> None:
        self.node = node
        self.uplink = uplink
        self.capture = Capture(prefix, ztunnel_mark=ZTUNNEL_MARK)
        self._attached: dict[str, str] = {}  # pod IP -> host-side interface
        self._enrolled: dict[str, int] = {}

    def start(self) -> None:
        problems = checks.check_environment(compile_test=False)
        if problems:
            raise CaptureUnavailable(checks.describe(problems))
        install_local_routing(ZTUNNEL_MARK)
        self.capture.load()
        self._enrolled = dict(self.capture.enrolled())  # adopted from the pinned map after a restart
        self.capture.attach_inbound(self.uplink)
        self.capture.attach_time_wait_lookup()
        log.info("capture ready on %s (uplink %s, %d pods already enrolled)", self.node, self.uplink, len(self._enrolled))

    def set_listeners(self, listeners: dict[str, int]) -> None:
        """Register ztunnel's listeners (outbound, inbound, hbone: descriptors) for the
        TIME_WAIT lookup."""
        for which, fd in listeners.items():
            self.capture.set_listener(which, fd)

    def update(self, state: ProxyState) -> None:
        local = {ip for w in state.workloads.values() if w.node == self.node for ip in w.addresses if ":" not in ip}
        with IPRoute() as ipr:
            for ip in sorted(local - set(self._attached)):
                ifname = _route_interface(ipr, ip)
                if ifname is None or ifname == self.uplink:
                    continue  # no route yet: retried on the next change
                try:
                    self.capture.attach_outbound(ifname)
                    self._attached[ip] = ifname
                except CaptureError as exc:
                    log.error("cannot capture pod %s on %s: %s", ip, ifname, exc)
        for ip in sorted(set(self._attached) - local):
            ifname = self._attached.pop(ip)
            try:
                self.capture.detach_outbound(ifname)
            except CaptureError as exc:
                log.debug("detach from %s (pod %s gone): %s", ifname, ip, exc)
        wanted = {ip: c.pod_id for ip, c in plan(state, self.node).items()}
        for ip in sorted(set(self._enrolled) - set(wanted)):
            self.capture.unenroll(ip)
            del self._enrolled[ip]
            log.info("pod %s left the mesh: its new connections go direct", ip)
        for ip, pod_id in sorted(wanted.items()):
            if self._enrolled.get(ip) != pod_id:
                self.capture.enroll(ip, pod_id)
                self._enrolled[ip] = pod_id
                log.info("pod %s enrolled: its new connections go through ztunnel", ip)


    def cleanup(self) -> None:
        """Remove the capture entirely (``ztunnel --cleanup`` on shutdown): pods then talk
        directly. Without it a stopping ztunnel leaves capture in place, so a restarted one
        takes over the pinned state and no enrolled pod slips out of the mesh."""
        for ifname in sorted(set(self._attached.values())):
            try:
                self.capture.detach_outbound(ifname)
            except CaptureError as exc:
                log.debug("detach from %s: %s", ifname, exc)
        self._attached.clear()
        try:
            self.capture.detach_inbound(self.uplink)
        except CaptureError as exc:
            log.debug("detach from %s: %s", self.uplink, exc)
        remove_local_routing(ZTUNNEL_MARK)
        self.capture.close()
        self.capture.remove_pins()
        self._enrolled.clear()
        log.info("capture removed on %s (--cleanup)", self.node)


def _route_interface(ipr: IPRoute, ip: str) -> str | None:
    try:
        routes = ipr.route("get", dst=ip)
    except Exception:  # noqa: BLE001 - pyroute2 raises NetlinkError subclasses freely
        return None
    for route in routes:
        oif = route.get_attr("RTA_OIF")
        if oif:
            links = ipr.link("get", index=oif)
            return str(links[0].get_attr("IFLA_IFNAME")) if links else None
    return None
