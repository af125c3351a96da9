"""ztunnel's settings: one frozen value, every default named here.

Raises :class:`ConfigError` naming the setting, the value and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_ADMIN_ADDRESS = ("127.0.0.1", 15000)
DEFAULT_METRICS_ADDRESS = ("0.0.0.0", 15020)
DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_CERT_TTL_S = 24 * 3600.0


class ConfigError(ValueError):
    """A ztunnel setting is invalid."""


@dataclass(frozen=True, slots=True)
class Config:
    node: str
    controlplane: str                 # gRPC target, e.g. unix:///run/meshlab/mlab/controlplane.sock
    credential_file: Path             # the node's bearer credential for the CA (mode 600)
    admin_address: tuple[str, int] = DEFAULT_ADMIN_ADDRESS
    metrics_address: tuple[str, int] = DEFAULT_METRICS_ADDRESS
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    cert_ttl_s: float = DEFAULT_CERT_TTL_S
    capture: bool = False             # load the tc capture and serve 15001/15006
    bpf_prefix: str = ""              # pin folder under /sys/fs/bpf (default mesh-<node>)
    uplink: str = "eth0"              # the node's interface towards other nodes
    cleanup: bool = False             # on shutdown remove the capture (default: keep it for a restart)

    def __post_init__(self) -> None:
        if not self.node:
            raise ConfigError("node: must name this ztunnel's node")
        if not self.controlplane:
            raise ConfigError("controlplane: must be a gRPC target")
        if self.cert_ttl_s <= 0:
            raise ConfigError(f"cert_ttl_s: must be > 0, got {self.cert_ttl_s}")

    def credential(self) -> str:
        """The node credential (read when needed, never logged)."""
        try:
            mode = self.credential_file.stat().st_mode
            if mode & 0o077:
                raise ConfigError(
                    f"credential_file {self.credential_file} is readable by group or others; chmod 600 it"
                )
            return self.credential_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"credential_file {self.credential_file}: {exc.strerror}") from None
