"""The peers and servers the lab benchmarks run next to the mesh: an nginx HTTP server and an nginx
L7 reverse proxy, a stunnel mutual-TLS pair and an haproxy mutual-TLS pair, with the certificates
the pairs use. Each function writes its configuration under a folder it is given and returns the
command line to run as a lab pod's container."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

SMALL_FILE = "small.html"
SMALL_FILE_BYTES = 1024

_NGINX_COMMON = """\
worker_processes 1;
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_timeout 600;
  keepalive_requests 1000000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{status};
    location = /status {{ stub_status; }}
  }}
"""

# The HTTP server: a 1 KiB static file; HTTP/1.1, plus HTTP/2 prior knowledge when h2 is set.
NGINX_SERVER = _NGINX_COMMON + """\
  server {{
    listen {http};
{h2_listen}    root {dir}/www;
  }}
}}
"""

# The L7 reverse proxy: keep-alive HTTP/1.1 out (nginx has no HTTP/2 upstream) to the upstream.
NGINX_PROXY = _NGINX_COMMON + """\
  upstream backend {{
    server {upstream}:{http};
    keepalive 64;
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
  }}
  server {{
    listen {http};
{h2_listen}    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host {host};
    }}
  }}
}}
"""


def _nginx_dir(base: Path, name: str) -> Path:
    d = base / name
    for sub in ("www", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(parents=True)
    return d


def _nginx_argv(d: Path) -> list[str]:
    return ["nginx", "-p", str(d), "-e", str(d / "nginx-error.log"), "-c", str(d / "nginx.conf"), "-g", "daemon off;"]


def _h2_listen(h2: int | None) -> str:
    return f"    listen {h2} http2;\n" if h2 else ""


def nginx_server(base: Path, name: str, http: int, status: int, h2: int | None = None) -> list[str]:
    """One worker, no access log, keep-alive without a request limit, serving ``SMALL_FILE``."""
    d = _nginx_dir(base, name)
    (d / "www" / SMALL_FILE).write_bytes(b"x" * (SMALL_FILE_BYTES - 1) + b"\n")
    (d / "nginx.conf").write_text(NGINX_SERVER.format(dir=d, http=http, status=status, h2_listen=_h2_listen(h2)))
    return _nginx_argv(d)


def nginx_proxy(base: Path, name: str, http: int, status: int, upstream: str, host: str,
                h2: int | None = None) -> list[str]:
    """One worker, ``proxy_pass`` to ``upstream:http`` with a keep-alive pool and ``Host: host``."""
    d = _nginx_dir(base, name)
    (d / "nginx.conf").write_text(NGINX_PROXY.format(dir=d, http=http, status=status, upstream=upstream, host=host,
                                                     h2_listen=_h2_listen(h2)))
    return _nginx_argv(d)


# --- certificates ---------------------------------------------------------------------------


def make_certificates(d: Path, ca_name: str = "bench CA") -> None:
    """ca.pem, and for ``bench-server`` and ``bench-client`` an ECDSA P-256 key
    (``server.key``/``client.key``, mode 0600) and a leaf with that DNS name signed by the CA
    (``server.pem``/``client.pem``), plus ``server-bundle.pem``/``client-bundle.pem`` (leaf then
    key, the form haproxy's ``crt`` takes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    d.mkdir(mode=0o700)

    def key_usage(*, cert_sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                             crl_sign=cert_sign, encipher_only=False, decipher_only=False)

    def write_secret(data: bytes, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (x509.CertificateBuilder().subject_name(issuer).issuer_name(issuer)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(key_usage(cert_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, usage in (("bench-server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("bench-client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(key_usage(cert_sign=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        short = name.removeprefix("bench-")
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        (d / f"{short}.pem").write_bytes(cert_pem)
        write_secret(key_pem, d / f"{short}.key")
        write_secret(cert_pem + key_pem, d / f"{short}-bundle.pem")


# --- stunnel --------------------------------------------------------------------------------

# Both sides: TLS 1.3 only, the peer's certificate required, verified against the bench CA and its
# name checked, TCP_NODELAY on both sockets (trio, hence ztunnel, sets it too). The log goes to
# stderr only: with syslog on and no /dev/log (a lab pod, a container) stunnel managed ~35 new
# connections/s instead of ~800.
STUNNEL_COMMON = """\
foreground = yes
syslog = no
pid =
debug = {debug}
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
sslVersionMin = TLSv1.3
CAfile = {certs}/ca.pem
verifyChain = yes
requireCert = yes
cert = {certs}/{me}.pem
key = {certs}/{me}.key
checkHost = {peer}
"""


def _sections(routes: dict[str, tuple[str, str]]) -> str:
    return "".join(f"\n[{name}]\naccept = {accept}\nconnect = {connect}\n" for name, (accept, connect) in routes.items())


def stunnel_server(base: Path, certs: Path, routes: dict[str, tuple[str, str]], debug: str = "info") -> list[str]:
    """``routes``: section -> (accept address, plaintext backend), e.g.
    ``{"http": ("0.0.0.0:15444", "127.0.0.1:8080")}``. ``debug``: stunnel's log level (``info``
    logs the TLS version and each certificate check; ``notice`` is stunnel's default)."""
    path = base / "stunnel-server.conf"
    path.write_text(STUNNEL_COMMON.format(certs=certs, me="server", peer="bench-client", debug=debug)
                    + _sections(routes))
    return ["stunnel", str(path)]


def stunnel_client(base: Path, certs: Path, routes: dict[str, tuple[str, str]], debug: str = "info") -> list[str]:
    """``routes``: section -> (local plaintext address, the server stunnel's TLS address)."""
    path = base / "stunnel-client.conf"
    path.write_text(STUNNEL_COMMON.format(certs=certs, me="client", peer="bench-server", debug=debug)
                    + "\nclient = yes\n"
                    + _sections(routes))
    return ["stunnel", str(path)]


# --- haproxy --------------------------------------------------------------------------------

# One thread (like the one-process ztunnel and the one-worker nginx), TCP mode, TLS 1.3 only; the
# server requires and verifies the client's certificate, the client verifies the server's chain
# and name.
HAPROXY_COMMON = """\
global
  nbthread 1
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  option tcp-smart-accept
  timeout connect 5s
  timeout client 600s
  timeout server 600s
"""


def haproxy_server(base: Path, certs: Path, routes: dict[str, tuple[str, str]]) -> list[str]:
    """``routes``: name -> (TLS bind address, plaintext backend)."""
    text = HAPROXY_COMMON
    for name, (bind, backend) in routes.items():
        text += (f"frontend {name}\n  bind {bind} ssl crt {certs}/server-bundle.pem ca-file {certs}/ca.pem "
                 f"verify required\n  default_backend {name}\nbackend {name}\n  server s {backend}\n")
    path = base / "haproxy-server.cfg"
    path.write_text(text)
    return ["haproxy", "-db", "-f", str(path)]


def haproxy_client(base: Path, certs: Path, routes: dict[str, tuple[str, str]]) -> list[str]:
    """``routes``: name -> (local plaintext bind address, the server haproxy's TLS address)."""
    text = HAPROXY_COMMON
    for name, (bind, server) in routes.items():
        text += (f"frontend {name}\n  bind {bind}\n  default_backend {name}\nbackend {name}\n"
                 f"  server s {server} ssl crt {certs}/client-bundle.pem ca-file {certs}/ca.pem verify required "
                 f"verifyhost bench-server sni str(bench-server)\n")
    path = base / "haproxy-client.cfg"
    path.write_text(text)
    return ["haproxy", "-db", "-f", str(path)]
