"""``meshctl apply|delete|analyze|proxy-status|debug``: configuration and the control plane's
view of it, like istioctl's and kubectl's.

``analyze`` works offline (no control plane needed) and exits 1 when any object is invalid;
``apply`` refuses invalid objects the same way, one by one, and leaves the rest applied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable

import grpc

from controlplane.api import mesh_pb2 as pb
from controlplane.api.client import Stub
from controlplane.k8s.loader import ALL_KINDS, load_documents
from meshctl.lab.config import DEFAULT_LAB_NAME, LabConfig
from meshctl.lab.files import read_documents
from meshctl.lab.kubelet import controlplane_target


def default_target() -> str:
    """The control plane to talk to: $MESH_CONTROLPLANE, else the default lab's."""
    env = os.environ.get("MESH_CONTROLPLANE")
    if env:
        return env
    return controlplane_target(LabConfig(name=os.environ.get("MESHLAB_NAME", DEFAULT_LAB_NAME)))


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb in ("apply", "delete"):
        p = sub.add_parser(verb, help=f"{verb} configuration (Kubernetes, Istio and Gateway API kinds)")
        p.add_argument("-f", "--filename", action="append", required=True, help="YAML file, folder or -")
        p.add_argument("--dry-run", action="store_true", help="validate against the running config only")
        p.add_argument("--controlplane", default=None, help="address (default: the lab's socket)")
    an = sub.add_parser("analyze", help="validate YAML offline; exit 1 on errors")
    an.add_argument("-f", "--filename", action="append", required=True)
    ps = sub.add_parser("proxy-status", help="who is connected, at which version, ACKed or not")
    ps.add_argument("--controlplane", default=None)
    ps.add_argument("-o", "--output", choices=["table", "json"], default="table")
    dbg = sub.add_parser("debug", help="dump the control plane's view (config, index, subscribers)")
    dbg.add_argument("what", choices=["config", "index", "subscribers"], nargs="?", default="config")
    dbg.add_argument("--controlplane", default=None)


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "analyze":
            return analyze(args.filename)
        stub = Stub(args.controlplane or default_target())
        try:
            if args.command in ("apply", "delete"):
                return apply(stub, args.filename, delete=args.command == "delete", dry_run=args.dry_run)
            if args.command == "proxy-status":
                return proxy_status(stub, args.output)
            if args.command == "debug":
                print(json.dumps(json.loads(stub.debug(pb.DebugRequest(what=args.what), timeout=30).json), indent=2))
                return 0
        finally:
            stub.close()
    except grpc.RpcError as exc:
        target = args.controlplane or default_target()
        print(f"meshctl {args.command}: the control plane at {target} did not answer "
              f"({exc.code().name}: {exc.details()}); is the lab up (`meshctl lab up`)?", file=sys.stderr)
        return 1
    except ValueError as exc:  # unreadable files
        print(f"meshctl {args.command}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)


def analyze(paths: Iterable[str]) -> int:
    errors = warnings = objects = 0
    for doc in read_documents(paths):
        loaded = load_documents(doc["text"], doc["source"], kinds=ALL_KINDS)
        objects += len(loaded.items)
        for w in loaded.warnings:
            warnings += 1
            print(f"Warning: {w}")
        for s in loaded.skipped:
            print(f"Info: skipped: {s}")
        for e in loaded.failures:
            errors += 1
            print(f"Error: {e}")
    verdict = "no validation issues found" if not errors else f"{errors} error(s)"
    print(f"\u2714 {objects} objects analyzed, {verdict}, {warnings} warning(s)" if not errors
          else f"\u2718 {objects} valid objects, {verdict}, {warnings} warning(s)", file=sys.stderr)
    return 1 if errors else 0


def apply(stub: Stub, paths: Iterable[str], *, delete: bool, dry_run: bool) -> int:
    req = pb.ApplyRequest(documents=[pb.Document(**d) for d in read_documents(paths)], dry_run=dry_run)
    resp = (stub.delete if delete else stub.apply)(req, timeout=stub.timeout)
    return print_results(resp.results, dry_run)


def print_results(results: Iterable[pb.ObjectResult], dry_run: bool = False) -> int:
    code = 0
    suffix = " (dry run)" if dry_run else ""
    for r in results:
        if r.error:
            print(f"error: {r.error}", file=sys.stderr)
            code = 1
        elif r.warning:
            print(f"warning: {r.warning}", file=sys.stderr)
        elif r.skipped:
            print(f"skipped: {r.skipped}", file=sys.stderr)
        else:
            print(f"{r.object} {r.result}{suffix}")
    return code


def proxy_status(stub: Stub, output: str) -> int:
    resp = stub.proxy_status(pb.Empty(), timeout=10)
    if output == "json":
        from google.protobuf import json_format

        print(json.dumps(json_format.MessageToDict(resp), indent=2))
        return 0
    rows = [["NAME", "TYPE", "NODE", "CONNECTED", "SENT", "ACKED", "STATUS", "PUSHES"]]
    for s in sorted(resp.subscribers, key=lambda s: (s.type, s.subscriber_id)):
        if s.last_nack:
            state = f"NACK: {s.last_nack}"
        elif s.acked_version == resp.version:
            state = "SYNCED"
        elif s.sent_version > s.acked_version:
            state = "NOT ACKED"
        else:
            state = "STALE"
        since = time.strftime("%H:%M:%S", time.localtime(s.connected_at)) if s.connected else "no"
        rows.append([s.subscriber_id, pb.SubscriberType.Name(s.type), s.node or "-", since,
                     str(s.sent_version), str(s.acked_version), state, str(s.pushes)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"control plane config version {resp.version}")
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
