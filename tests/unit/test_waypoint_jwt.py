"""RequestAuthentication's JWT checks, with tokens signed here by real RSA and EC keys."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from waypoint.jwt import (
    Authenticated,
    JwksError,
    JwtError,
    JwtRule,
    authenticate,
    parse_jwks,
    verify,
)

ISS = "testing@secure.istio.io"
NOW = 1_800_000_000.0
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def num(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def jwks() -> str:
    r = RSA_KEY.public_key().public_numbers()
    e = EC_KEY.public_key().public_numbers()
    return json.dumps({"keys": [
        {"kty": "RSA", "kid": "rsa1", "n": num(r.n), "e": num(r.e), "alg": "RS256"},
        {"kty": "EC", "kid": "ec1", "crv": "P-256", "x": num(e.x), "y": num(e.y)},
    ]})


def sign(claims: dict[str, Any], alg: str = "RS256", kid: str | None = "rsa1", key: Any = None) -> str:
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if alg.startswith("RS"):
        sig = (key or RSA_KEY).sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    elif alg.startswith("PS"):
        sig = (key or RSA_KEY).sign(signed.encode(), padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                                   salt_length=32), hashes.SHA256())
    else:
        r, s = decode_dss_signature((key or EC_KEY).sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signed}.{b64(sig)}"


RULE = JwtRule(issuer=ISS, keys=parse_jwks(jwks()))
GOOD = {"iss": ISS, "sub": "testing@secure.istio.io", "exp": NOW + 3600, "groups": ["group1"]}


@pytest.mark.parametrize(("alg", "kid"), [("RS256", "rsa1"), ("ES256", "ec1"), ("RS256", None), ("ES256", None)])
def test_valid_tokens_give_the_request_principal_and_claims(alg: str, kid: str | None) -> None:
    got = verify(sign(GOOD, alg, kid), [RULE], NOW)
    assert got == Authenticated(principal=f"{ISS}/testing@secure.istio.io", claims=GOOD)


@pytest.mark.parametrize(("claims", "why"), [
    ({**GOOD, "exp": NOW - 61}, "Jwt is expired"),
    ({**GOOD, "nbf": NOW + 61}, "Jwt not yet valid"),
    ({**GOOD, "iss": "someone-else"}, "Jwt issuer is not configured"),
])
def test_claims_are_checked_with_envoys_messages(claims: dict[str, Any], why: str) -> None:
    with pytest.raises(JwtError, match=f"^{why}$"):
        verify(sign(claims), [RULE], NOW)


def test_clock_skew_of_60_seconds_is_allowed() -> None:
    assert verify(sign({**GOOD, "exp": NOW - 59, "nbf": NOW + 59}), [RULE], NOW).principal.endswith("istio.io")


def test_audiences() -> None:
    rule = JwtRule(issuer=ISS, keys=RULE.keys, audiences=("bookinfo",))
    assert verify(sign({**GOOD, "aud": ["other", "bookinfo"]}), [rule], NOW)
    assert verify(sign({**GOOD, "aud": "bookinfo"}), [rule], NOW)
    with pytest.raises(JwtError, match="Audiences in Jwt are not allowed"):
        verify(sign({**GOOD, "aud": "other"}), [rule], NOW)
    with pytest.raises(JwtError, match="Audiences in Jwt are not allowed"):
        verify(sign(GOOD), [rule], NOW)


def test_signatures_must_verify_with_the_jwks() -> None:
    token = sign(GOOD)
    head, _body, sig = token.split(".")
    forged = b64(json.dumps({**GOOD, "sub": "admin"}).encode())
    with pytest.raises(JwtError, match=r"^Jwt verification fails$"):
        verify(f"{head}.{forged}.{sig}", [RULE], NOW)
    with pytest.raises(JwtError, match=r"^Jwt verification fails$"):
        verify(sign(GOOD, key=OTHER_RSA), [RULE], NOW)
    with pytest.raises(JwtError, match="Jwks doesn't have key"):
        verify(sign(GOOD, kid="unknown"), [RULE], NOW)


@pytest.mark.parametrize(("token", "why"), [
    ("abc", "two dots and 3 sections"),
    ("a.b.c.d", "two dots and 3 sections"),
    (f"{b64(b'not json')}.{b64(b'{}')}.{b64(b'x')}", "Jwt header is an invalid JSON"),
    (f"{b64(json.dumps({'alg': 'RS256'}).encode())}.%%%.{b64(b'x')}", "Jwt payload is an invalid JSON"),
    (f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(GOOD).encode())}.{b64(b'x')}",
     "alg] is not supported"),
    (f"{b64(json.dumps({'alg': 'HS256'}).encode())}.{b64(json.dumps(GOOD).encode())}.{b64(b'x')}",
     "alg] is not supported"),
])
def test_malformed_tokens_are_refused_without_echoing_them(token: str, why: str) -> None:
    with pytest.raises(JwtError) as info:
        verify(token, [RULE], NOW)
    assert why in str(info.value)
    assert token not in str(info.value)


def test_token_locations_default_and_configured() -> None:
    token = sign(GOOD)
    assert authenticate([RULE], {}, {}, {}, NOW) is None  # no token: passes, no principal
    assert authenticate([RULE], {"authorization": f"Bearer {token}"}, {}, {}, NOW) is not None
    assert authenticate([RULE], {}, {"access_token": token}, {}, NOW) is not None
    assert authenticate([RULE], {"authorization": f"Basic {token}"}, {}, {}, NOW) is None  # not the prefix
    custom = JwtRule(issuer=ISS, keys=RULE.keys, from_headers=(("x-jwt-assertion", ""),), from_cookies=("session",))
    assert authenticate([custom], {"x-jwt-assertion": token}, {}, {}, NOW) is not None
    assert authenticate([custom], {}, {}, {"session": token}, NOW) is not None
    assert authenticate([custom], {"authorization": f"Bearer {token}"}, {}, {}, NOW) is None  # not configured there
    with pytest.raises(JwtError, match="expired"):
        authenticate([RULE], {"authorization": f"Bearer {sign({**GOOD, 'exp': NOW - 3600})}"}, {}, {}, NOW)


def test_the_issuer_picks_the_rule() -> None:
    other = JwtRule(issuer="other-issuer", keys=parse_jwks(json.dumps({"keys": []})))
    assert verify(sign(GOOD), [other, RULE], NOW).principal.startswith(ISS)


@pytest.mark.parametrize(("doc", "why"), [
    ("not json", "not JSON"),
    ('{"keys": 1}', '"keys" list'),
    ('{"keys": [{"kty": "oct", "k": "abc"}]}', "not supported"),
    ('{"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB"}]}', "missing or unknown 'e'"),
    ('{"keys": [{"kty": "EC", "crv": "P-999", "x": "AQ", "y": "AQ"}]}', "missing or unknown 'P-999'"),
    ('{"keys": [{"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}]}', "not a valid EC public key"),
])
def test_bad_jwks_are_reported_by_key(doc: str, why: str) -> None:
    with pytest.raises(JwksError, match=why):
        parse_jwks(doc)


def test_istios_sample_jwks_parses() -> None:
    # the public key of Istio's security/tools/jwt/samples/jwks.json (kid DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ)
    doc = {"keys": [{"e": "AQAB", "kid": "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ", "kty": "RSA",
                     "n": "xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He"
                          "95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpm"
                          "W6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD"
                          "8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}
    (key,) = parse_jwks(json.dumps(doc))
    assert key.kty == "RSA" and key.kid.startswith("DHFb")


def test_a_key_declaring_its_alg_is_used_for_that_alg_only() -> None:
    with pytest.raises(JwtError, match="Jwks doesn't have key"):
        verify(sign(GOOD, "PS256", "rsa1"), [RULE], NOW)  # rsa1 says "alg": "RS256"
    r = RSA_KEY.public_key().public_numbers()
    undeclared = JwtRule(issuer=ISS, keys=parse_jwks(json.dumps({"keys": [{"kty": "RSA", "n": num(r.n), "e": num(r.e)}]})))
    assert verify(sign(GOOD, "PS256", None), [undeclared], NOW).principal == f"{ISS}/testing@secure.istio.io"
