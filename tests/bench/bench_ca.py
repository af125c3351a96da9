"""CA signing benchmark: ``CertificateAuthority.sign`` against the floor of its raw operations.

Run ``.venv/bin/python tests/bench/bench_ca.py [--quick] [--json PATH]``, or call :func:`run`.
In one run, on one thread, with the same CA key (EC P-256, self-signed root); phases 1-3 run
interleaved, 100 calls of each in turn, so they meet the same machine:

1. ``sign()``: N signatures (2000; ``--quick`` 200), each of a different, freshly generated
   P-256 CSR for its own identity (the CSRs are made before the clock starts: generating the
   workload's key is the workload's cost, not the CA's). Each call is timed alone.
2. floor, ECDSA: N bare ECDSA P-256/SHA-256 signatures of 1 KB with cryptography and the CA's
   key — the one public-key operation a certificate cannot avoid.
3. floor, CSR: N CSR parses + signature verifications (the other half of the unavoidable
   work); floor, builder: N leaves with the same profile built by cryptography's
   ``CertificateBuilder`` from already-parsed keys, no checks — what is left of ``sign()``
   without CSR parsing, signature verification and the identity rules.
4. floor, openssl CLI: 50 certificates, one ``openssl x509 -req`` process each, from the same
   CSRs and CA files, with the same extensions — what a CA shelling out to openssl would cost.

Prints certificates per second and p50/p99 latency for each, and ratios to the floors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import __version__ as cryptography_version
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane.ca import CertificateAuthority, SpiffeId
from controlplane.ca.testing import make_csr

__all__ = ["BenchError", "format_report", "run"]

FULL_SIGNATURES = 2000
QUICK_SIGNATURES = 200
OPENSSL_CERTS = 50
CHUNK = 100

_EXTFILE = """\
subjectAltName = critical, URI:{uri}
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
basicConstraints = critical, CA:FALSE
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
"""


class BenchError(RuntimeError):
    """A phase failed; the message names it."""


def _stats(samples_ns: list[int], wall_s: float) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] / 1e6

    return {
        "count": len(ordered),
        "per_second": len(ordered) / wall_s,
        "mean_ms": statistics.fmean(ordered) / 1e6,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": ordered[-1] / 1e6,
        "wall_s": wall_s,
    }


def _timed(count: int, op: Callable[[int], object]) -> dict[str, float]:
    return _interleaved(count, {"op": op})["op"]


def _interleaved(
    count: int, ops: Mapping[str, Callable[[int], object]], chunk: int = CHUNK
) -> dict[str, dict[str, float]]:
    """Run each op ``count`` times, in turns of ``chunk`` calls, so that every op meets the
    same machine (CPU frequency, neighbours' load); each call is timed alone."""
    samples: dict[str, list[int]] = {name: [] for name in ops}
    walls = dict.fromkeys(ops, 0.0)
    for first in range(0, count, chunk):
        for name, op in ops.items():
            start = time.perf_counter()
            for i in range(first, min(first + chunk, count)):
                t0 = time.perf_counter_ns()
                op(i)
                samples[name].append(time.perf_counter_ns() - t0)
            walls[name] += time.perf_counter() - start
    return {name: _stats(samples[name], walls[name]) for name in ops}


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "cryptography": cryptography_version,
        "openssl_cli": openssl.stdout.strip(),
    }


def run(signatures: int = FULL_SIGNATURES, openssl_certs: int = OPENSSL_CERTS) -> dict[str, Any]:
    """Run every phase; returns the numbers as a dict. Raises :class:`BenchError`."""
    result: dict[str, Any] = {"machine": _machine(), "signatures": signatures}
    with tempfile.TemporaryDirectory(prefix="bench-ca-") as tmp_name:
        tmp = Path(tmp_name)
        ca = CertificateAuthority.load_or_create(tmp / "state")
        identities = [
            SpiffeId("cluster.local", f"ns{i % 50}", f"sa-{i}") for i in range(signatures)
        ]
        t0 = time.perf_counter()
        keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(signatures)]
        csrs = [make_csr(ident, key) for ident, key in zip(identities, keys, strict=True)]
        result["prepare_csrs_s"] = time.perf_counter() - t0

        # 1. the CA
        issued: list[bytes] = []

        def sign(i: int) -> None:
            issued.append(ca.sign(csrs[i], identities[i]).cert_pem)

        root = x509.load_pem_x509_certificate(ca.root_pem)

        # 2. floor: one bare ECDSA signature of 1 KB with the CA's key
        ca_key = serialization.load_pem_private_key(
            (tmp / "state" / "ca-key.pem").read_bytes(), None
        )
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise BenchError("setup: the CA key is not an EC key")
        message = secrets.token_bytes(1024)
        algorithm = ec.ECDSA(hashes.SHA256())

        def ecdsa(_i: int) -> None:
            ca_key.sign(message, algorithm)

        # 2b. the other half of the unavoidable work: parse the CSR and verify its signature
        def verify(i: int) -> None:
            if not x509.load_pem_x509_csr(csrs[i]).is_signature_valid:
                raise BenchError(f"verify floor: CSR {i} does not verify")

        # 3. floor: the same leaf profile built by cryptography, no parsing or checks
        ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
        eku = x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        now = datetime.now(UTC)
        publics = [k.public_key() for k in keys]

        def build(i: int) -> None:
            (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(root.subject)
                .public_key(publics[i])
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=1))
                .not_valid_after(now + timedelta(hours=24))
                .add_extension(
                    x509.SubjectAlternativeName(
                        [x509.UniformResourceIdentifier(identities[i].uri)]
                    ),
                    critical=True,
                )
                .add_extension(usage, critical=True)
                .add_extension(eku, critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(aki, critical=False)
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(publics[i]), critical=False
                )
                .sign(ca_key, hashes.SHA256())
                .public_bytes(serialization.Encoding.PEM)
            )

        ops = {"sign": sign, "ecdsa": ecdsa, "csr_verify": verify, "builder": build}
        result.update(_interleaved(signatures, ops))
        for pem in (issued[0], issued[-1]):
            x509.load_pem_x509_certificate(pem).verify_directly_issued_by(root)

        # 4. floor: openssl x509 -req, one process per certificate
        count = min(openssl_certs, signatures)
        work = tmp / "openssl"
        work.mkdir()
        for i in range(count):
            (work / f"{i}.csr").write_bytes(csrs[i])
            (work / f"{i}.ext").write_text(_EXTFILE.format(uri=identities[i].uri))
        state = tmp / "state"

        def openssl(i: int) -> None:
            done = subprocess.run(
                [
                    "openssl", "x509", "-req", "-in", f"{i}.csr",
                    "-CA", str(state / "root-cert.pem"), "-CAkey", str(state / "ca-key.pem"),
                    "-set_serial", str(secrets.randbits(127)), "-days", "1", "-sha256",
                    "-extfile", f"{i}.ext", "-out", f"{i}.pem",
                ],
                cwd=work, capture_output=True, check=False, timeout=30,
            )  # fmt: skip
            if done.returncode != 0:
                raise BenchError(
                    f"openssl floor: certificate {i}: {done.stderr.decode(errors='replace')}"
                )

        result["openssl"] = _timed(count, openssl)
        sample = x509.load_pem_x509_certificate((work / "0.pem").read_bytes())
        sample.verify_directly_issued_by(root)
        san = sample.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if list(san) != [x509.UniformResourceIdentifier(identities[0].uri)]:
            raise BenchError(f"openssl floor: unexpected SAN {san}")

    s, e, b, o = result["sign"], result["ecdsa"], result["builder"], result["openssl"]
    v = result["csr_verify"]
    result["ratios"] = {
        "sign_vs_verify_plus_builder": s["mean_ms"] / (v["mean_ms"] + b["mean_ms"]),
        "sign_vs_ecdsa": s["mean_ms"] / e["mean_ms"],
        "sign_vs_builder": s["mean_ms"] / b["mean_ms"],
        "openssl_vs_sign": o["mean_ms"] / s["mean_ms"],
    }
    return result


def format_report(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"cryptography {m['cryptography']}, {m['openssl_cli']}",
        f"CSRs prepared (not timed): {res['signatures']} in {res['prepare_csrs_s']:.2f} s",
        "",
        f"{'operation':<44} {'n':>5} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}",
    ]
    rows = [
        ("CertificateAuthority.sign()", "sign"),
        ("floor: ECDSA P-256 sign of 1 KB", "ecdsa"),
        ("floor: CSR parse + signature verify", "csr_verify"),
        ("floor: CertificateBuilder leaf, no checks", "builder"),
        ("floor: openssl x509 -req, 1 process each", "openssl"),
    ]
    for label, key in rows:
        r = res[key]
        lines.append(
            f"{label:<44} {r['count']:>5} {r['per_second']:>9.0f} {r['p50_ms']:>8.3f} "
            f"{r['p99_ms']:>8.3f} {r['mean_ms']:>8.3f}"
        )
    ratios = res["ratios"]
    lines += [
        "",
        f"sign() / bare ECDSA sign:        {ratios['sign_vs_ecdsa']:.1f}x",
        f"sign() / CertificateBuilder:     {ratios['sign_vs_builder']:.1f}x",
        f"sign() / (CSR verify + builder): {ratios['sign_vs_verify_plus_builder']:.2f}x",
        f"openssl CLI per cert / sign():   {ratios['openssl_vs_sign']:.1f}x",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIGNATURES} signatures")
    parser.add_argument("--signatures", type=int, help="override the number of signatures")
    parser.add_argument("--openssl", type=int, default=OPENSSL_CERTS, help="openssl processes")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    count = args.signatures or (QUICK_SIGNATURES if args.quick else FULL_SIGNATURES)
    try:
        result = run(signatures=count, openssl_certs=args.openssl)
    except BenchError as err:
        print(f"bench_ca: {err}", file=sys.stderr)
        return 1
    print(format_report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
