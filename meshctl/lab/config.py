"""The lab's settings: one typed, immutable value with every default named here.

Raises :class:`LabConfigError` for a setting that is out of range, naming the setting,
the value and the rule.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LAB_NAME = "mlab"
DEFAULT_NODES = 2
MAX_NODES = 16
DEFAULT_POD_CIDR = "10.244.0.0/16"  # node i (1-based) gets 10.244.i.0/24, as kind does
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_DNS_IP = "10.96.0.10"  # kube-dns' address in kind and kubeadm clusters
DEFAULT_UNDERLAY_CIDR = "172.18.0.0/24"  # node i gets .(10+i), like kind's docker network
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
DEFAULT_STATE_ROOT = Path("/run/meshlab")
# kubelet's crash-loop back-off: 10 s doubling to 5 min, reset after 10 min of running.
DEFAULT_RESTART_BACKOFF_S = 10.0
DEFAULT_RESTART_BACKOFF_MAX_S = 300.0
DEFAULT_RESTART_RESET_S = 600.0
# The lab caps terminationGracePeriodSeconds so `lab down` never waits for long.
MAX_GRACE_PERIOD_S = 10.0

_LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class LabConfigError(ValueError):
    """A lab setting is invalid; the message names the setting, the value and the rule."""


@dataclass(frozen=True, slots=True)
class LabConfig:
    """Every setting of one lab; paths and network names derive from ``name``."""

    name: str = DEFAULT_LAB_NAME
    nodes: int = DEFAULT_NODES
    pod_cidr: str = DEFAULT_POD_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    dns_ip: str = DEFAULT_DNS_IP
    underlay_cidr: str = DEFAULT_UNDERLAY_CIDR
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    state_root: Path = DEFAULT_STATE_ROOT
    restart_backoff_s: float = DEFAULT_RESTART_BACKOFF_S
    restart_backoff_max_s: float = DEFAULT_RESTART_BACKOFF_MAX_S
    restart_reset_s: float = DEFAULT_RESTART_RESET_S

    def __post_init__(self) -> None:
        if not _LAB_NAME.match(self.name):
            raise LabConfigError(
                f"lab name {self.name!r}: must be 1-8 lowercase letters or digits, starting "
                "with a letter (it prefixes network namespace names)"
            )
        if not 1 <= self.nodes <= MAX_NODES:
            raise LabConfigError(f"nodes: must be between 1 and {MAX_NODES}, got {self.nodes}")
        pods = _net("pod_cidr", self.pod_cidr)
        if pods.prefixlen > 16:
            raise LabConfigError(f"pod_cidr: needs a /16 or larger (a /24 per node), got {pods}")
        svc = _net("service_cidr", self.service_cidr)
        if ipaddress.ip_address(self.dns_ip) not in svc:
            raise LabConfigError(f"dns_ip: {self.dns_ip} is not inside service_cidr {svc}")
        under = _net("underlay_cidr", self.underlay_cidr)
        if under.num_addresses < 16 + self.nodes:
            raise LabConfigError(f"underlay_cidr: {under} is too small for {self.nodes} nodes")
        if pods.overlaps(svc) or pods.overlaps(under) or svc.overlaps(under):
            raise LabConfigError(
                f"pod_cidr {pods}, service_cidr {svc} and underlay_cidr {under} must not overlap"
            )
        if self.restart_backoff_s <= 0 or self.restart_backoff_max_s < self.restart_backoff_s:
            raise LabConfigError(
                "restart_backoff_s must be > 0 and <= restart_backoff_max_s, got "
                f"{self.restart_backoff_s} and {self.restart_backoff_max_s}"
            )

    @property
    def state_dir(self) -> Path:
        """Where this lab keeps its socket, logs and state; removed by ``lab down``."""
        return self.state_root / self.name

    def replace(self, **changes: object) -> LabConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _net(setting: str, value: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value)
    except ValueError as exc:
        raise LabConfigError(f"{setting}: {value!r} is not a network: {exc}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise LabConfigError(f"{setting}: only IPv4 is supported by the lab, got {value!r}")
    return net
