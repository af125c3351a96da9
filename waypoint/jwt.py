"""RequestAuthentication: JWT validation against a JWKS, sans-I/O (the waypoint fetches JWKS and
calls :func:`authenticate` per request).

Istio's semantics (https://istio.io/latest/docs/reference/config/security/request_authentication/,
carried out by Envoy's jwt_authn filter):

- A request without a token passes, with no request principal (an AuthorizationPolicy can
  require one). A request with a token that fails validation is refused (401); the reason is
  one of Envoy's messages, e.g. ``Jwt is expired``, and never contains the token.
- Token locations: the rule's ``fromHeaders`` (name and prefix), ``fromParams`` and
  ``fromCookies``; with none configured, ``Authorization: Bearer <token>`` and the
  ``access_token`` query parameter.
- The token's ``iss`` selects the rule; ``aud`` must contain one of the rule's audiences when it
  lists any; ``exp``/``nbf`` are checked with Envoy's 60 s clock skew.
- The request principal is ``<iss>/<sub>``; the claims are kept for ``request.auth.claims``.

Signatures: RS256/384/512, PS256/384/512, ES256/384/512 with RSA and EC (P-256/384/521) keys of
the JWKS (``kid`` selects the key when the token names one; otherwise every key of a matching
type is tried). ``alg: none`` and symmetric (``oct``) keys are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

CLOCK_SKEW_S = 60
DEFAULT_HEADER = ("authorization", "Bearer ")
DEFAULT_PARAM = "access_token"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48), "P-521": (ec.SECP521R1(), 66),
}


class JwtError(Exception):
    """A token was present and is not acceptable; ``str()`` is Envoy's reason (no token in it)."""


class JwksError(ValueError):
    """A JWKS document cannot be used; the message says which key and why."""


@dataclass(frozen=True, slots=True)
class Key:
    kid: str
    kty: str  # RSA | EC
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    alg: str = ""


def parse_jwks(text: str) -> tuple[Key, ...]:
    """The usable public keys of a JWKS document (``{"keys": [...]}``). Raises :class:`JwksError`."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JwksError(f"the JWKS is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError('the JWKS must be an object with a "keys" list')
    keys = []
    for i, k in enumerate(doc["keys"]):
        if not isinstance(k, dict):
            raise JwksError(f"keys[{i}] is not an object")
        kid, kty = str(k.get("kid", "")), k.get("kty")
        where = f"keys[{i}] (kid {kid!r})" if kid else f"keys[{i}]"
        try:
            if kty == "RSA":
                n, e = _b64_int(k["n"]), _b64_int(k["e"])
                public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = rsa.RSAPublicNumbers(e, n).public_key()
            elif kty == "EC":
                curve, _ = _CURVES[str(k["crv"])]
                public = ec.EllipticCurvePublicNumbers(_b64_int(k["x"]), _b64_int(k["y"]), curve).public_key()
            else:
                raise JwksError(f"{where}: key type {kty!r} is not supported (RSA and EC only)")
        except KeyError as exc:
            raise JwksError(f"{where}: missing or unknown {exc.args[0]!r}") from None
        except (ValueError, binascii.Error) as exc:
            raise JwksError(f"{where}: not a valid {kty} public key: {exc}") from None
        keys.append(Key(kid=kid, kty=str(kty), public=public, alg=str(k.get("alg", ""))))
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class JwtRule:
    issuer: str
    keys: tuple[Key, ...]
    audiences: tuple[str, ...] = ()
    from_headers: tuple[tuple[str, str], ...] = ()  # (lower-case header name, prefix)
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()

    def locations(self) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]:
        if self.from_headers or self.from_params or self.from_cookies:
            return self.from_headers, self.from_params, self.from_cookies
        return (DEFAULT_HEADER,), (DEFAULT_PARAM,), ()


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: str                     # "<iss>/<sub>"
    claims: Mapping[str, Any] = field(default_factory=dict)


def authenticate(rules: Sequence[JwtRule], headers: Mapping[str, str], query: Mapping[str, str],
                 cookies: Mapping[str, str], now: float) -> Authenticated | None:
    """The request principal, ``None`` when the request carries no token in any rule's
    locations. Raises :class:`JwtError` when a token is present and not valid.
    ``headers`` have lower-case names."""
    tokens = []
    for rule in rules:
        hdrs, params, cookie_names = rule.locations()
        for name, prefix in hdrs:
            value = headers.get(name)
            if value is not None and value.startswith(prefix):
                tokens.append(value[len(prefix):].strip())
        tokens += [query[p] for p in params if p in query]
        tokens += [cookies[c] for c in cookie_names if c in cookies]
    if not tokens:
        return None
    return verify(tokens[0], rules, now)


def verify(token: str, rules: Sequence[JwtRule], now: float) -> Authenticated:
    """Validate one token against the rule of its issuer. Raises :class:`JwtError`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")
    header = _json_part(parts[0], "Jwt header is an invalid JSON")
    payload = _json_part(parts[1], "Jwt payload is an invalid JSON")
    try:
        signature = _b64(parts[2])
    except (binascii.Error, ValueError):
        raise JwtError("Jwt signature is an invalid Base64url encoded") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg[:2] not in ("RS", "PS", "ES") or alg[2:] not in _HASHES:
        raise JwtError("Jwt header [alg] is not supported")
    issuer = payload.get("iss")
    rule = next((r for r in rules if r.issuer == issuer), None)
    if rule is None:
        raise JwtError("Jwt issuer is not configured")
    exp, nbf = payload.get("exp"), payload.get("nbf")
    if isinstance(exp, int | float) and now > exp + CLOCK_SKEW_S:
        raise JwtError("Jwt is expired")
    if isinstance(nbf, int | float) and now < nbf - CLOCK_SKEW_S:
        raise JwtError("Jwt not yet valid")
    if rule.audiences:
        aud = payload.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
        if not any(a in rule.audiences for a in auds):
            raise JwtError("Audiences in Jwt are not allowed")
    kid = header.get("kid")
    want = "RSA" if alg[:2] in ("RS", "PS") else "EC"
    candidates = [k for k in rule.keys if k.kty == want and (not kid or k.kid == kid) and (not k.alg or k.alg == alg)]
    if not candidates:
        raise JwtError("Jwks doesn't have key to match kid or alg from Jwt")
    signed = f"{parts[0]}.{parts[1]}".encode("ascii")
    if not any(_check(k, alg, signed, signature) for k in candidates):
        raise JwtError("Jwt verification fails")
    sub = payload.get("sub", "")
    return Authenticated(principal=f"{issuer}/{sub}", claims=payload)


def _check(key: Key, alg: str, signed: bytes, signature: bytes) -> bool:
    digest = _HASHES[alg[2:]]()
    try:
        if isinstance(key.public, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = padding.PKCS1v15() if alg.startswith("RS") else padding.PSS(
                mgf=padding.MGF1(_HASHES[alg[2:]]()), salt_length=padding.PSS.DIGEST_LENGTH)
            key.public.verify(signature, signed, pad, digest)
            return True
        size = (key.public.curve.key_size + 7) // 8
        if len(signature) != 2 * size:
            return False
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        key.public.verify(encode_dss_signature(r, s), signed, ec.ECDSA(digest))
        return True
    except InvalidSignature:
        return False


def _b64(text: str) -> bytes:
    if not text or any(c in text for c in "+/="):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64_int(text: object) -> int:
    return int.from_bytes(_b64(str(text).rstrip("=")), "big")  # some JWKS pad their values


def _json_part(text: str, error: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64(text))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise JwtError(error) from None
    if not isinstance(value, dict):
        raise JwtError(error)
    return value
