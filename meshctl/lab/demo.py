"""The README's demo: ask productpage for its page from the curl pod until answers from all
three reviews versions were seen, printing who served each request.

Exits 0 once v1, v2 and v3 have all answered, 1 if they did not within the time limit. With
``--only VERSION`` (a VirtualService sends everything to one version): exits 0 once ten pages in
a row came from that version, 1 when another version answers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from meshctl.lab import api
from meshctl.lab.config import LabConfig

URL = "http://productpage:9080/productpage"
MAX_REQUESTS = 200
TIME_LIMIT_S = 120.0
_SERVED_BY = re.compile(r"Reviews served by:.*?(reviews-v\d[\w-]*)", re.S)


def classify(page: str) -> tuple[str, str] | None:
    """(reviews pod name, what the stars look like) from a productpage page."""
    m = _SERVED_BY.search(page)
    if m is None:
        return None
    if 'color="red"' in page:
        stars = "red stars"
    elif 'color="black"' in page:
        stars = "black stars"
    else:
        stars = "no stars"
    return m.group(1), stars


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    only = args[1] if len(args) == 2 and args[0] == "--only" else None
    cfg = LabConfig()
    pods = api.request(cfg, {"op": "pods", "ref": "curl"})["pods"]
    if not pods:
        print("demo: no curl pod in the lab", file=sys.stderr)
        return 1
    curl = pods[0]
    status = api.request(cfg, {"op": "status"})
    node_of = {p["name"]: p["node"] for p in status["pods"]}
    page_pod = [n for n in node_of if n.startswith("productpage-")]
    where = f" (productpage on {node_of[page_pod[0]]})" if page_pod else ""
    print(f"client: pod {curl['name']} on {curl['node']}{where}")
    seen: dict[str, str] = {}
    good = 0
    deadline = time.monotonic() + TIME_LIMIT_S
    for i in range(1, MAX_REQUESTS + 1):
        if time.monotonic() > deadline:
            break
        proc = subprocess.run(
            ["ip", "netns", "exec", curl["netns"], "curl", "-s", "-m", "10", "-w", "\n%{http_code}", URL],
            capture_output=True, text=True, check=False,
        )
        page, _, code = proc.stdout.rpartition("\n")
        found = classify(page) if proc.returncode == 0 and code == "200" else None
        if found is None:
            print(f"request {i}: no page yet (curl exit {proc.returncode}, HTTP {code or '-'}); retrying")
            time.sleep(0.5)
            continue
        pod, stars = found
        version = pod.split("-")[1]
        print(f"request {i}: HTTP {code}, reviews served by {pod} on {node_of.get(pod, '?')} ({stars})")
        seen[version] = pod
        if only is not None:
            if version != only:
                print(f"demo: expected only reviews {only}, got {pod}", file=sys.stderr)
                return 1
            good += 1
            if good >= 10:
                print(f"ten pages in a row from reviews {only}, as the VirtualService says")
                return 0
            continue
        if {"v1", "v2", "v3"} <= seen.keys():
            print("productpage answered through the lab with all three reviews versions:")
            for v in sorted(seen):
                print(f"  {v}: {seen[v]}")
            print("the lab stays up: try `.venv/bin/meshctl lab status`; remove it with "
                  "`.venv/bin/meshctl lab down`")
            return 0
    print(f"demo: saw only {sorted(seen)} within {TIME_LIMIT_S:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
