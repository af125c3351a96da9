"""SPIFFE identities (controlplane.ca.identity): one table row per accepted or refused URI; a
refused one raises InvalidIdentity naming the value and what is wrong with it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.ca import CAError, InvalidIdentity, SpiffeId

GOOD = [
    ("spiffe://cluster.local/ns/default/sa/default", "cluster.local", "default", "default"),
    (
        "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews",
        "cluster.local",
        "bookinfo",
        "bookinfo-reviews",
    ),
    ("spiffe://example.org/ns/a-b/sa/sa.with.dots", "example.org", "a-b", "sa.with.dots"),
    ("spiffe://td/ns/x/sa/y", "td", "x", "y"),
    ("spiffe://1.2.3/ns/0/sa/9", "1.2.3", "0", "9"),
    (
        "spiffe://my-mesh.corp.example.com/ns/" + "n" * 63 + "/sa/s",
        "my-mesh.corp.example.com",
        "n" * 63,
        "s",
    ),
]


@pytest.mark.parametrize(("uri", "td", "ns", "sa"), GOOD)
def test_good_identities_parse_and_print_back(uri: str, td: str, ns: str, sa: str) -> None:
    identity = SpiffeId.parse(uri)
    assert identity == SpiffeId(td, ns, sa)
    assert str(identity) == uri
    assert identity.uri == uri
    assert identity.principal == f"{td}/ns/{ns}/sa/{sa}"


BAD = [
    ("", "must start with 'spiffe://'"),
    ("http://cluster.local/ns/a/sa/b", "must start with 'spiffe://'"),
    ("SPIFFE://cluster.local/ns/a/sa/b", "must start with 'spiffe://'"),
    ("spiffe://", "the trust domain is empty"),
    ("spiffe:///ns/a/sa/b", "the trust domain is empty"),
    ("spiffe://cluster.local", "has no path"),
    ("spiffe://Cluster.local/ns/a/sa/b", 'trust domain label "Cluster" must be a DNS-1123 label'),
    ("spiffe://cluster..local/ns/a/sa/b", "empty label"),
    ("spiffe://cluster.local./ns/a/sa/b", "empty label"),
    ("spiffe://-cluster.local/ns/a/sa/b", 'trust domain label "-cluster"'),
    ("spiffe://under_score/ns/a/sa/b", 'trust domain label "under_score"'),
    ("spiffe://" + "a" * 64 + "/ns/a/sa/b", "no more than 63 characters"),
    ("spiffe://" + ".".join(["a" * 60] * 5) + "/ns/a/sa/b", "no more than 255 characters"),
    ("spiffe://cluster.local:8080/ns/a/sa/b", "must not contain a port (':')"),
    ("spiffe://user@cluster.local/ns/a/sa/b", "must not contain user info ('@')"),
    ("spiffe://cluster.local/ns/a/sa/b?x=1", "must not contain a query ('?')"),
    ("spiffe://cluster.local/ns/a/sa/b#frag", "must not contain a fragment ('#')"),
    ("spiffe://cluster.local/ns/a/sa/%62", "must not contain percent-encoding ('%')"),
    ("spiffe://cluster.local/ns/a/sa/b c", "must not contain whitespace"),
    ("spiffe://cluster.local/ns/a/sa/b\n", "must not contain whitespace"),
    ("spiffe://cluster.local/", 'the path must be /ns/<namespace>/sa/<service account>, got "/"'),
    ("spiffe://cluster.local/ns/a/sa/b/", 'got "/ns/a/sa/b/"'),
    ("spiffe://cluster.local/ns/a", 'got "/ns/a"'),
    ("spiffe://cluster.local/sa/b/ns/a", 'got "/sa/b/ns/a"'),
    ("spiffe://cluster.local/namespace/a/sa/b", 'got "/namespace/a/sa/b"'),
    ("spiffe://cluster.local//ns/a/sa/b", 'got "//ns/a/sa/b"'),
    ("spiffe://cluster.local/ns//sa/b", "the namespace is empty"),
    ("spiffe://cluster.local/ns/a/sa/", "the service account is empty"),
    ("spiffe://cluster.local/ns/Default/sa/b", 'the namespace "Default" must be a DNS-1123 label'),
    ("spiffe://cluster.local/ns/a.b/sa/b", 'the namespace "a.b" must be a DNS-1123 label'),
    ("spiffe://cluster.local/ns/" + "n" * 64 + "/sa/b", "no more than 63 characters (it has 64)"),
    ("spiffe://cluster.local/ns/a/sa/B", 'the service account "B" must be a DNS-1123 subdomain'),
    ("spiffe://cluster.local/ns/a/sa/-b", 'the service account "-b" must be a DNS-1123 subdomain'),
    (
        "spiffe://cluster.local/ns/a/sa/b_c",
        'the service account "b_c" must be a DNS-1123 subdomain',
    ),
    ("spiffe://cluster.local/ns/a/sa/" + "s" * 254, "no more than 253 characters"),
    ("spiffe://td/ns/a/sa/" + "s" * 2040, "longer than 2048 characters"),
]


@pytest.mark.parametrize(("uri", "problem"), BAD)
def test_bad_identities_are_refused_naming_value_and_problem(uri: str, problem: str) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        SpiffeId.parse(uri)
    message = str(caught.value)
    assert problem in message
    assert message.startswith("invalid SPIFFE ID ")
    if len(uri) <= 80:  # longer values are shortened with "..."
        assert json.dumps(uri) in message


def test_invalid_identity_is_a_ca_error_and_a_value_error() -> None:
    with pytest.raises(CAError):
        SpiffeId.parse("nope")
    with pytest.raises(ValueError):
        SpiffeId.parse("nope")


@pytest.mark.parametrize(
    ("parts", "problem"),
    [
        (("", "a", "b"), "the trust domain is empty"),
        (("td", "A", "b"), 'the namespace "A"'),
        (("td", "a", "b/c"), 'the service account "b/c"'),
        (("td", "a/sa/x", "b"), 'the namespace "a/sa/x"'),
    ],
)
def test_direct_construction_is_validated_too(parts: tuple[str, str, str], problem: str) -> None:
    with pytest.raises(InvalidIdentity, match="invalid SPIFFE ID") as caught:
        SpiffeId(*parts)
    assert problem in str(caught.value)


def test_identity_is_a_frozen_hashable_value() -> None:
    a = SpiffeId.parse("spiffe://cluster.local/ns/a/sa/b")
    assert a == SpiffeId("cluster.local", "a", "b")
    assert len({a, SpiffeId("cluster.local", "a", "b")}) == 1
    with pytest.raises(AttributeError):
        a.namespace = "x"  # type: ignore[misc]


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(
    td=st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    ns=_LABEL,
    sa=st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
)
def test_every_valid_identity_round_trips(td: str, ns: str, sa: str) -> None:
    identity = SpiffeId(td, ns, sa)
    assert SpiffeId.parse(str(identity)) == identity


@given(st.text(max_size=120))
def test_parse_raises_only_invalid_identity(text: str) -> None:
    try:
        identity = SpiffeId.parse(text)
    except InvalidIdentity:
        return
    assert str(identity) == text
