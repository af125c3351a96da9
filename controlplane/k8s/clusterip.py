"""ClusterIP allocation for Services, as the API server does it (pure).

Raises :class:`ClusterIPError` with the API server's words when a wanted address is outside
the range or taken, or when the range is full.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Collection


class ClusterIPError(ValueError):
    """A ClusterIP cannot be given; the message is the API server's."""


def allocate(
    namespace: str, name: str, wanted: str | None, taken: Collection[str], cidr: str,
    reserved: Collection[str] = (),
) -> str:
    """The ClusterIP for Service ``namespace/name``: ``wanted`` if given and free, else an
    address that is stable for the name (the same service gets the same VIP every time it is
    created in an empty cluster), probing on from there."""
    net = ipaddress.IPv4Network(cidr)
    unavailable = set(taken) | set(reserved) | {str(net.network_address + 1)}
    if wanted:
        try:
            ip = ipaddress.IPv4Address(wanted)
        except ValueError:
            raise ClusterIPError(f'spec.clusterIP: Invalid value: "{wanted}": must be a valid IP address') from None
        if ip not in net:
            raise ClusterIPError(
                f'spec.clusterIP: Invalid value: "{wanted}": provided IP is not in the valid '
                f"range. The range of valid IPs is {net}"
            )
        if wanted in unavailable:
            raise ClusterIPError(f'spec.clusterIP: Invalid value: "{wanted}": provided IP is already allocated')
        return wanted
    size = net.num_addresses - 2
    start = int.from_bytes(hashlib.sha256(f"{namespace}/{name}".encode()).digest()[:4]) % size
    for i in range(size):
        ip_text = str(net.network_address + 1 + (start + i) % size)
        if ip_text not in unavailable and not ip_text.endswith((".0", ".255")):
            return ip_text
    raise ClusterIPError(f"no free ClusterIP left in {net}")
