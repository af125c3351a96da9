"""Pure rules of the lab's runtime: which program a container runs, kubelet's back-off, and
how the demo reads a productpage page."""

from __future__ import annotations

import sys

import pytest

from controlplane.k8s.objects import Container
from meshctl.lab.config import LabConfig
from meshctl.lab.demo import classify
from meshctl.lab.images import ImageError, argv_for, builtin_for
from meshctl.lab.runtime import backoff_delay


@pytest.mark.parametrize(
    ("image", "module", "env"),
    [
        ("docker.io/istio/examples-bookinfo-productpage-v1:1.20.1", "productpage", {}),
        ("istio/examples-bookinfo-details-v1", "details", {}),
        ("docker.io/istio/examples-bookinfo-reviews-v1:1.20.1", "reviews", {"ENABLE_RATINGS": "false"}),
        ("docker.io/istio/examples-bookinfo-reviews-v2:1.20.1", "reviews", {"ENABLE_RATINGS": "true", "STAR_COLOR": "black"}),
        ("docker.io/istio/examples-bookinfo-reviews-v3@sha256:abc", "reviews", {"ENABLE_RATINGS": "true", "STAR_COLOR": "red"}),
        ("docker.io/istio/examples-bookinfo-ratings-v1:1.20.1", "ratings", {}),
    ],
)
def test_bookinfo_images_map_to_builtin_apps(image: str, module: str, env: dict[str, str]) -> None:
    builtin = builtin_for(image)
    assert builtin is not None
    assert builtin.module == f"meshctl.apps.bookinfo.{module}" and dict(builtin.env) == env
    argv, extra_env, used = argv_for(Container(name="c", image=image, args=("--port", "9080")))
    assert argv == [sys.executable, "-m", builtin.module, "--port", "9080"]
    assert extra_env == env and used == builtin


def test_command_replaces_the_image_entrypoint_and_unknown_images_need_one() -> None:
    c = Container(name="curl", image="curlimages/curl", command=("/bin/sleep",), args=("infinity",))
    assert argv_for(c) == (["/bin/sleep", "infinity"], {}, None)
    assert builtin_for("docker.io/istio/examples-bookinfo-ratings-v2-mysql:1.0") is None
    with pytest.raises(ImageError, match="image 'nginx' has no command"):
        argv_for(Container(name="web", image="nginx"))


def test_backoff_follows_kubelet() -> None:
    cfg = LabConfig()
    assert [backoff_delay(cfg, n) for n in range(1, 8)] == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0]
    assert backoff_delay(cfg, 50) == 300.0


def test_demo_reads_the_reviews_pod_and_stars() -> None:
    head = "<dt>Reviews served by:</dt>\n<dd><u>reviews-v3-abcdefghij-klmno</u></dd>"
    assert classify(head + '<font color="red">') == ("reviews-v3-abcdefghij-klmno", "red stars")
    assert classify(head.replace("v3", "v1")) == ("reviews-v1-abcdefghij-klmno", "no stars")
    assert classify("<html>Sorry</html>") is None
