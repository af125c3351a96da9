"""``meshctl lab …``: bring a lab up and down, apply and delete YAML, look at it, and run
commands inside its pods and nodes.

Each command returns a process exit code; messages for the operator go to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import grpc

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import Stub
from meshctl.configcmds import print_results
from meshctl.lab import api, cleanup
from meshctl.lab.config import DEFAULT_LAB_NAME, DEFAULT_NODES, LabConfig
from meshctl.lab.daemon import config_to_json
from meshctl.lab.files import read_documents
from meshctl.lab.kubelet import controlplane_target

DAEMON_START_TIMEOUT_S = 30.0
DEFAULT_WAIT_S = 120.0
REQUIRED_TOOLS = ("ip", "nft", "umount")


class CommandError(RuntimeError):
    """A lab command failed; the message says what and what to do."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="the one-host lab: a cluster made of network namespaces")
    lab.add_argument("--lab", default=os.environ.get("MESHLAB_NAME", DEFAULT_LAB_NAME),
                     help="which lab (default %(default)s; env MESHLAB_NAME)")
    cmds = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")

    up = cmds.add_parser("up", help="create the lab (nodes, underlay, DNS, kube-proxy) and apply files")
    up.add_argument("-f", "--filename", action="append", default=[], help="YAML file, folder or -")
    up.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="number of nodes (default %(default)s)")
    up.add_argument("--timeout", type=float, default=DEFAULT_WAIT_S, help="seconds to wait for pods to be ready")
    up.add_argument("--no-wait", action="store_true", help="do not wait for pods to be ready")
    up.add_argument("--restart-backoff", type=float, default=None,
                    help="first crash-loop back-off in seconds (kubelet: 10)")

    cmds.add_parser("down", help="stop the lab and remove everything it made")
    st = cmds.add_parser("status", help="nodes, pods and services")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table")

    for verb in ("apply", "delete"):
        p = cmds.add_parser(verb, help=f"{verb} Kubernetes objects from YAML")
        p.add_argument("-f", "--filename", action="append", required=True, help="YAML file, folder or -")
        if verb == "apply":
            p.add_argument("--wait", action="store_true", help="wait for pods to be ready")
            p.add_argument("--timeout", type=float, default=DEFAULT_WAIT_S)

    ex = cmds.add_parser("exec", help="run a command in a pod's (or node/NAME's) network namespace")
    ex.add_argument("pod", help="ns/name, name, deployment name, deploy/name or node/NAME")
    ex.add_argument("-n", "--namespace", default=None)
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS…]")

    lg = cmds.add_parser("logs", help="a pod's container logs")
    lg.add_argument("pod")
    lg.add_argument("-n", "--namespace", default=None)
    lg.add_argument("-c", "--container", default=None)
    lg.add_argument("-p", "--previous", action="store_true", help="the previous (crashed) run")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = LabConfig(name=args.lab, **({"nodes": args.nodes} if args.lab_command == "up" else {}))
        if args.lab_command == "up" and args.restart_backoff is not None:
            cfg = cfg.replace(restart_backoff_s=args.restart_backoff)
        handler = {
            "up": cmd_up, "down": cmd_down, "status": cmd_status, "apply": cmd_apply,
            "delete": cmd_delete, "exec": cmd_exec, "logs": cmd_logs,
        }[args.lab_command]
        return handler(cfg, args)
    except (CommandError, ValueError, api.LabApiError) as exc:
        print(f"meshctl lab {args.lab_command}: {exc}", file=sys.stderr)
        return 1


# --- up / down ---------------------------------------------------------------------------


def check_prerequisites() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("it must run as root (network namespaces, veths and nftables need it)")
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"the `{tool}` command is missing (run scripts/setup)")
    if problems:
        raise CommandError("the lab cannot run here: " + "; ".join(problems))


def cmd_up(cfg: LabConfig, args: argparse.Namespace) -> int:
    check_prerequisites()
    documents = read_documents(args.filename)
    if cleanup.daemon_pid(cfg) is not None:
        print(f"lab {cfg.name} is already up", file=sys.stderr)
    else:
        left = cleanup.leftovers(cfg)
        if left:
            print(f"removing leftovers of an earlier lab {cfg.name}: {', '.join(left)}", file=sys.stderr)
            cleanup.sweep(cfg)
        start_daemon(cfg)
        print(f"lab {cfg.name} is up: {cfg.nodes} nodes", file=sys.stderr)
    code = 0
    if documents:
        code = apply_documents(cfg, documents, delete=False)
    if not args.no_wait:
        code = max(code, wait_ready(cfg, args.timeout))
    print_status(api.request(cfg, {"op": "status"}))
    return code


def start_daemon(cfg: LabConfig) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = cfg.state_dir / "daemon.log"
    with log_path.open("ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshctl.lab.daemon", "--config", config_to_json(cfg)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            cleanup.sweep(cfg)
            raise CommandError(
                f"the lab daemon exited with code {proc.returncode} while starting; its log:\n  "
                + "\n  ".join(tail)
            )
        try:
            api.request(cfg, {"op": "status"}, timeout=2)
            return
        except api.LabNotRunning:
            time.sleep(0.05)
    proc.kill()
    cleanup.sweep(cfg)
    raise CommandError(f"the lab daemon did not answer within {DAEMON_START_TIMEOUT_S:.0f}s (log: {log_path})")


def cmd_down(cfg: LabConfig, args: argparse.Namespace) -> int:
    check_prerequisites()
    pid = cleanup.daemon_pid(cfg)
    if pid is not None:
        try:
            api.request(cfg, {"op": "shutdown"}, timeout=10)
            deadline = time.monotonic() + 90
            while cleanup.daemon_pid(cfg) == pid and time.monotonic() < deadline:
                time.sleep(0.05)
        except api.LabApiError as exc:
            print(f"the lab daemon did not take the shutdown request ({exc}); killing it", file=sys.stderr)
    cleanup.kill_daemon(cfg)
    removed = cleanup.sweep(cfg)
    left = cleanup.leftovers(cfg)
    if left:
        raise CommandError(f"could not remove: {', '.join(left)}")
    extra = f" (also removed leftovers: {', '.join(r for r in removed if 'namespace' in r)})" if any(
        "namespace" in r for r in removed) else ""
    print(f"lab {cfg.name} is down{extra}", file=sys.stderr)
    return 0


# --- apply / delete / status -----------------------------------------------------------------


def apply_documents(cfg: LabConfig, docs: list[dict[str, str]], *, delete: bool) -> int:
    """Send the documents to the lab's control plane (the lab's API server), print kubectl-style
    results, and wait until the lab's kubelet has taken the resulting config."""
    stub = Stub(controlplane_target(cfg))
    try:
        req = pb.ApplyRequest(documents=[pb.Document(**d) for d in docs])
        resp = (stub.delete if delete else stub.apply)(req, timeout=stub.timeout)
    except grpc.RpcError as exc:
        raise CommandError(
            f"the lab's control plane did not answer ({exc.code().name}: {exc.details()}); "
            "is the lab up? (`meshctl lab status`)"
        ) from None
    finally:
        stub.close()
    code = print_results(resp.results)
    wait_config(cfg, resp.version)
    return code


def wait_config(cfg: LabConfig, version: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while api.request(cfg, {"op": "status"})["config_version"] < version:
        if time.monotonic() > deadline:
            raise CommandError(f"the lab did not take config version {version} within {timeout:.0f}s")
        time.sleep(0.02)


def cmd_apply(cfg: LabConfig, args: argparse.Namespace) -> int:
    code = apply_documents(cfg, read_documents(args.filename), delete=False)
    if args.wait:
        code = max(code, wait_ready(cfg, args.timeout))
    return code


def cmd_delete(cfg: LabConfig, args: argparse.Namespace) -> int:
    return apply_documents(cfg, read_documents(args.filename), delete=True)


def wait_ready(cfg: LabConfig, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        status = api.request(cfg, {"op": "status"})
        waiting = [p for p in status["pods"] if not _settled(p)]
        if not waiting:
            return 0
        if time.monotonic() > deadline:
            for p in waiting:
                why = f": {p['message']}" if p["message"] else ""
                print(f"pod {p['namespace']}/{p['name']} not ready after {timeout:.0f}s "
                      f"({p['status']}, {p['ready']} ready){why}", file=sys.stderr)
            return 1
        time.sleep(0.1)


def _settled(pod: dict[str, Any]) -> bool:
    ready, total = pod["ready"].split("/")
    return pod["status"] in ("Succeeded",) or (pod["status"] == "Running" and ready == total)


def cmd_status(cfg: LabConfig, args: argparse.Namespace) -> int:
    status = api.request(cfg, {"op": "status"})
    if args.output == "json":
        import json

        status.pop("ok", None)
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print_status(status)
    return 0


def print_status(status: dict[str, Any]) -> None:
    rows = [["NODE", "NETNS", "UNDERLAY-IP", "POD-CIDR"]]
    rows += [[n["name"], n["netns"], n["underlay_ip"], n["pod_cidr"]] for n in status["nodes"]]
    _table(rows)
    print()
    rows = [["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]]
    rows += [
        [p["namespace"], p["name"], p["ready"], p["status"], str(p["restarts"]),
         _age(p["age_s"]), p["ip"], p["node"]]
        for p in status["pods"]
    ]
    _table(rows)
    print()
    rows = [["NAMESPACE", "NAME", "CLUSTER-IP", "PORT(S)", "ENDPOINTS"]]
    rows += [
        [s["namespace"], s["name"], s["cluster_ip"] or "<none>", ",".join(s["ports"]),
         ",".join(s["endpoints"]) or "<none>"]
        for s in status["services"]
    ]
    _table(rows)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


# --- exec / logs -----------------------------------------------------------------------------


def _pod_ref(args: argparse.Namespace) -> str:
    ref: str = args.pod
    if args.namespace and "/" not in ref:
        return f"{args.namespace}/{ref}"
    if args.namespace and ref.split("/", 1)[0] in ("deploy", "deployment", "pod"):
        return f"{args.namespace}/{ref}"
    return ref


def find_pod(cfg: LabConfig, args: argparse.Namespace) -> dict[str, Any]:
    ref = _pod_ref(args)
    pods = api.request(cfg, {"op": "pods", "ref": ref})["pods"]
    if not pods:
        raise CommandError(f"pod {ref!r} not found (try `meshctl lab status`)")
    pod: dict[str, Any] = pods[0]
    return pod


def cmd_exec(cfg: LabConfig, args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CommandError("no command given; usage: meshctl lab exec POD -- COMMAND [ARGS…]")
    env = dict(os.environ)
    if args.pod.startswith("node/"):
        node = args.pod.split("/", 1)[1]
        nodes = {n["name"]: n for n in api.request(cfg, {"op": "status"})["nodes"]}
        if node not in nodes:
            raise CommandError(f"node {node!r} not found; the lab has {', '.join(sorted(nodes))}")
        netns = nodes[node]["netns"]
        env["HOSTNAME"] = node
    else:
        pod = find_pod(cfg, args)
        netns = pod["netns"]
        env["HOSTNAME"] = pod["name"]
    sys.stdout.flush()
    os.execvpe("ip", ["ip", "netns", "exec", netns, *cmd], env)


def cmd_logs(cfg: LabConfig, args: argparse.Namespace) -> int:
    pod = find_pod(cfg, args)
    containers: list[str] = pod["containers"]
    container = args.container or containers[0]
    if container not in containers:
        raise CommandError(
            f"container {container!r} is not in pod {pod['name']}; choose one of {', '.join(containers)}"
        )
    if args.container is None and len(containers) > 1:
        print(f'Defaulted container "{container}" out of: {", ".join(containers)}', file=sys.stderr)
    name = f"{container}.previous.log" if args.previous else f"{container}.log"
    path = cfg.state_dir / "logs" / f"{pod['namespace']}_{pod['name']}_{pod['uid']}" / name
    if not path.exists():
        what = "previous terminated container" if args.previous else "container"
        raise CommandError(f'{what} "{container}" in pod "{pod["name"]}" has no log yet')
    sys.stdout.buffer.write(path.read_bytes())
    return 0
