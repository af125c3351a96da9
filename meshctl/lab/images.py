"""Which program the lab runs for a container: its own ``command``/``args``, or a built-in
app standing in for a well-known image (Istio's Bookinfo images, and the waypoint image the
control plane's waypoint controller deploys: ``python -m waypoint``), as a container runtime
would run the image's entrypoint.

Raises :class:`ImageError` for a container with no command whose image the lab does not know.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from controlplane.gatewaydeploy import HBONE_PORT, WAYPOINT_IMAGE
from controlplane.k8s.objects import Container


class ImageError(ValueError):
    """The lab cannot run this container; the message names the image and what to do."""


@dataclass(frozen=True, slots=True)
class BuiltinImage:
    module: str
    env: Mapping[str, str] = field(default_factory=dict)
    # Built-in apps listen on this port; the lab probes it for readiness (like an image's
    # HEALTHCHECK) when the manifest declares no readinessProbe.
    port: int | None = None
    # The lab gives the container the control plane's address and its node's credential
    # (MESH_CONTROLPLANE, MESH_CREDENTIAL_FILE): the waypoint follows the control plane and
    # gets its certificate from the CA with the node's credential, as the node's ztunnel does.
    controlplane_access: bool = False


_BOOKINFO = re.compile(r"(^|/)examples-bookinfo-(productpage|details|reviews|ratings)-(v\d+)(:[^/]*)?$")
_REVIEWS_ENV = {
    "v1": {"ENABLE_RATINGS": "false"},
    "v2": {"ENABLE_RATINGS": "true", "STAR_COLOR": "black"},
    "v3": {"ENABLE_RATINGS": "true", "STAR_COLOR": "red"},
}


WAYPOINT = BuiltinImage(module="waypoint", port=HBONE_PORT, controlplane_access=True)


def builtin_for(image: str) -> BuiltinImage | None:
    """The built-in app that stands in for ``image``, if any."""
    if image.split("@", 1)[0] == WAYPOINT_IMAGE:
        return WAYPOINT
    m = _BOOKINFO.search(image.split("@", 1)[0])
    if m is None:
        return None
    app, version = m.group(2), m.group(3)
    env = dict(_REVIEWS_ENV.get(version, {})) if app == "reviews" else {}
    return BuiltinImage(module=f"meshctl.apps.bookinfo.{app}", env=env, port=9080)


def argv_for(container: Container) -> tuple[list[str], dict[str, str], BuiltinImage | None]:
    """The argv, the extra environment and the built-in image (if one is used).

    Kubernetes rules: ``command`` replaces the image's entrypoint and ``args`` its arguments;
    ``args`` alone are appended to the image's entrypoint.
    """
    builtin = builtin_for(container.image)
    if container.command:
        return [*container.command, *container.args], {}, None
    if builtin is None:
        raise ImageError(
            f"container {container.name!r}: image {container.image!r} has no command and is "
            "not one the lab knows; give the container a `command` (it runs on this host "
            "inside the pod's network namespace)"
        )
    return [sys.executable, "-m", builtin.module, *container.args], dict(builtin.env), builtin
