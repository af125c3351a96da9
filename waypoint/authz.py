"""The waypoint's L7 security, pure (no I/O): RequestAuthentication (JWT) and AuthorizationPolicy
with Istio's semantics as Envoy enforces them in a waypoint.

Inputs are the ``request_authn`` and ``waypoint_authorization`` resources of the waypoint's view
(controlplane/translate.py: policies attached by ``targetRefs`` to this waypoint, to a Service
bound to it, or to the istio-waypoint GatewayClass). ``authorization`` resources (the ztunnel
view, which a waypoint also receives) are ztunnel's and ignored here: istiod never applies
selector-based policies to a waypoint (pilot/pkg/model/policyattachment.go ``ShouldAttachPolicy``).
A policy with ``target_hosts`` applies only to requests for those services (istiod builds the
filters per service chain, pilot/pkg/networking/core/listener_waypoint.go
``buildWaypointHTTPFilters``); one without applies to everything the waypoint serves.

Authentication (:meth:`L7Policies.authenticate`; Envoy's jwt_authn filter, as Istio configures
it: ``requires_any`` of the providers or ``allow_missing``): no token → no request principal; a
token that fails → a local reply whose body is Envoy's status string (e.g. ``Jwt is expired``,
``Jwt verification fails``), status 401, or 403 for ``Audiences in Jwt are not allowed``
(envoy source/extensions/filters/http/jwt_authn/filter.cc ``onComplete``), response code details
``jwt_authn_access_denied{Jwt_is_expired}`` and ``www-authenticate: Bearer realm="<uri>",
error="invalid_token"``. Validation itself is :mod:`waypoint.jwt`. Tokens never appear in any
message. ``jwksUri`` is fetched by the waypoint (:attr:`L7Policies.jwks_uris`,
:meth:`L7Policies.with_jwks`); until then tokens of that issuer fail, like istiod's placeholder
JWKS when its own fetch fails.

Authorization (:meth:`L7Policies.check`; https://istio.io/latest/docs/reference/config/security/authorization-policy/):

1. CUSTOM: no extension provider exists here, so Istio's rule for an unknown provider applies:
   the requests the policy matches are denied (pilot/pkg/security/authz/builder, test data
   ``custom-bad-out.yaml``: policy ``istio-ext-authz-ns[..]-policy[..]-rule[..]-deny-due-to-bad-CUSTOM-action``).
2. DENY: any match denies.
3. ALLOW: if any ALLOW policy applies to the request's service, one must match.
4. AUDIT never changes the decision (matches are reported); dry-run policies
   (``istio.io/dry-run``) are not enforced: their would-be result is the verdict's shadow.

A denial answers 403 ``RBAC: access denied`` with Envoy's response code details
``rbac_access_denied_matched_policy[ns[<ns>]-policy[<name>]-rule[<i>]]`` (the first matching
rule in Envoy's policy-map order, i.e. sorted by that id), or ``...[none]`` when ALLOW policies
apply and none matched.

Matching (pilot/pkg/security/authz/model/model.go, generator.go, matcher/*.go): a policy matches
when any rule does (none: nothing); a rule when all its clauses do; a clause when any entry does;
an entry when each field's values match (any of them) and none of its ``not`` values does. An
attribute the request does not have (no peer principal, no JWT, no such header or claim) matches
no value, so every ``not`` value list is satisfied. Per attribute:

- ``principals``/``source.principal``: the peer's SPIFFE id without ``spiffe://``; ``namespaces``
  /``source.namespace``: the namespace in it. ``x`` exact, ``x*`` prefix, ``*x`` suffix, ``*``
  any non-empty value (Envoy regex ``.+``); case-sensitive.
- ``ipBlocks``/``source.ip``: the source address; ``remoteIpBlocks``/``remote.ip``: the client
  address from ``X-Forwarded-For``: the waypoint's HTTP connection manager has
  ``use_remote_address: false``, so Envoy takes the rightmost XFF entry after skipping
  ``numTrustedProxies`` (default 0), else the source address (:func:`remote_ip`).
- ``destination.ip``: the address dialled (service VIP or pod IP); ``ports``/``destination.port``:
  the service port dialled (istiod's ``AmbientDestinationPortAdapations``).
- ``requestPrincipals``/``request.auth.principal``: matched on the token's ``iss`` and ``sub``
  claims split at the last ``/`` (generator.go ``requestPrincipalGenerator``): ``*`` needs both
  present; ``*x`` without ``/`` is a ``sub`` suffix, with one an ``iss`` suffix and exact ``sub``;
  ``x*`` without ``/`` an ``iss`` prefix, with one an exact ``iss`` and ``sub`` prefix (``iss/*``:
  any ``sub``).
- ``request.auth.audiences`` (``aud``), ``request.auth.presenter`` (``azp``) and
  ``request.auth.claims[a][b]`` (nested): a string claim must match, a list claim matches when
  an element does; other types never match.
- ``hosts``: the ``:authority`` as sent (with any port), case-insensitive, ``*``: present.
- ``methods``: case-sensitive, ``*``: present.
- ``paths``: the URL path without query and fragment (Envoy ``PathMatcher``), dot segments
  removed as Envoy's default RFC 3986 normalisation does (:func:`url_path`); ``{*}`` matches one
  segment, ``{**}`` the rest (Envoy uri_template).
- ``request.headers[name]``: the value (repeated headers joined with ``,``), case-sensitive;
  ``*``: present.
- ``connection.sni``: the SNI the waypoint saw; inside HBONE it terminates no TLS, so it is "".
- ``experimental.envoy.filters.*``: metadata of Envoy filters that do not exist here: absent.

TCP (a connection the waypoint proxies without HTTP, :attr:`L7Request.tcp`) is checked as Istio's
network RBAC filter does (model.go ``checkError``; istio.io docs/tasks/security/authorization/
authz-tcp): an ALLOW rule using an HTTP-only attribute (requestPrincipals, hosts, methods, paths,
request.headers, request.auth.*) never matches; in DENY, AUDIT and CUSTOM rules those attributes
are dropped, which makes the rule wider (an entry left empty matches everything).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Protocol

from controlplane.api import mesh_pb2 as pb
from waypoint.jwt import Authenticated, JwksError, JwtError, JwtRule, Key, authenticate, parse_jwks

DENIED_STATUS: Final = 403
DENIED_BODY: Final = "RBAC: access denied"
DENIED_DETAILS: Final = "rbac_access_denied_matched_policy"
JWT_DETAILS: Final = "jwt_authn_access_denied"
AUDIENCE_NOT_ALLOWED: Final = "Audiences in Jwt are not allowed"
MAX_URI_PATH: Final = 256  # Envoy's buildOriginalUri limit for www-authenticate

_SPIFFE = "spiffe://"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- the request --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class L7Request:
    """What authorization sees of one request. Header names are stored lower-case; a
    ``source_principal`` may be given with or without ``spiffe://`` (stored without). An empty
    ``source_namespace`` means the namespace in the principal, an empty ``remote_ip`` the
    ``source_ip`` (both resolved again by :func:`dataclasses.replace`)."""

    source_principal: str | None = None  # the peer's identity; None: not authenticated
    source_ip: str = ""
    remote_ip: str = ""              # the client per X-Forwarded-For (see remote_ip())
    source_namespace: str = ""
    destination_ip: str = ""         # the address dialled: service VIP or pod IP
    destination_port: int = 0        # the service port dialled
    host: str = ""                   # :authority as sent
    method: str = ""
    path: str = ""                   # URL path without query (see url_path())
    headers: Mapping[str, str] = field(default_factory=dict)
    request_principal: str | None = None  # "<iss>/<sub>" of a valid JWT
    claims: Mapping[str, Any] = field(default_factory=dict)
    target_host: str = ""            # FQDN of the service the request is for
    sni: str = ""
    tcp: bool = False                # not HTTP: HTTP-only attributes as Istio's TCP filter treats them
    _namespace: str = field(default="", init=False, repr=False, compare=False)
    _source: Address | None = field(default=None, init=False, repr=False, compare=False)
    _remote: Address | None = field(default=None, init=False, repr=False, compare=False)
    _destination: Address | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        principal = self.source_principal or None
        if principal is not None and principal.startswith(_SPIFFE):
            principal = principal[len(_SPIFFE):]
        object.__setattr__(self, "source_principal", principal)
        namespace = self.source_namespace or (namespace_of(principal) if principal is not None else "")
        object.__setattr__(self, "_namespace", namespace)
        object.__setattr__(self, "headers", MappingProxyType({k.lower(): v for k, v in self.headers.items()}))
        object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))
        object.__setattr__(self, "_source", _address(self.source_ip))
        object.__setattr__(self, "_remote", _address(self.remote_ip or self.source_ip))
        object.__setattr__(self, "_destination", _address(self.destination_ip))


class HttpRequest(Protocol):
    """The parts of the waypoint's HTTP request :func:`l7_request` reads."""

    method: str
    authority: str
    path: str

    def header_map(self) -> dict[str, str]: ...


def l7_request(*, source_principal: str | None, source_ip: str, destination_ip: str, destination_port: int,
               host: str, request: HttpRequest | None, authn: object = None, source_namespace: str = "",
               trusted_proxies: int = 0, sni: str = "") -> L7Request:
    """An :class:`L7Request` for ``request`` to the service ``host`` (its FQDN: the policies'
    target), from the peer ``source_principal`` at ``source_ip``; ``authn`` is what
    :meth:`L7Policies.authenticate` returned (only an :class:`Authenticated` counts). Without a
    ``request`` it describes a TCP connection (``tcp``)."""
    headers = request.header_map() if request is not None else {}
    headers = {k.lower(): v for k, v in headers.items()}
    principal, claims = (authn.principal, authn.claims) if isinstance(authn, Authenticated) else (None, {})
    return L7Request(
        source_principal=source_principal, source_ip=source_ip,
        remote_ip=remote_ip(source_ip, headers.get("x-forwarded-for"), trusted_proxies),
        source_namespace=source_namespace, destination_ip=destination_ip, destination_port=destination_port,
        host=request.authority if request is not None else "", method=request.method if request is not None else "",
        path=url_path(request.path) if request is not None else "", headers=headers,
        request_principal=principal, claims=claims, target_host=host, sni=sni, tcp=request is None,
    )


def namespace_of(principal: str) -> str:
    """The namespace of ``<td>/ns/<ns>/sa/<sa>`` (with or without ``spiffe://``), else ""."""
    parts = principal.split("/")
    for i in range(len(parts) - 2):
        if parts[i] == "ns" and i > 0:
            return parts[i + 1]
    return ""


def remote_ip(source_ip: str, x_forwarded_for: str | None, trusted_proxies: int = 0) -> str:
    """Envoy's downstream remote address with ``use_remote_address: false`` (istiod's setting
    for a waypoint's inbound HTTP): the XFF entry ``trusted_proxies`` places from the right
    (``numTrustedProxies``, default 0: the rightmost), when it is a valid IP; else the source."""
    if x_forwarded_for:
        entries = [e.strip() for e in x_forwarded_for.split(",")]
        if len(entries) > trusted_proxies:
            candidate = entries[len(entries) - 1 - trusted_proxies]
            if _address(candidate) is not None:
                return candidate
    return source_ip


_ENCODED_DOT = re.compile(r"%2e", re.IGNORECASE)


def url_path(path: str) -> str:
    """The path of ``:path`` as authorization matches it: query and fragment removed, dot
    segments (``.``, ``..``, also percent-encoded) resolved as RFC 3986 section 5.2.4 does."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return path  # "*" (OPTIONS *) or an absolute form the HTTP layer did not reduce
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        plain = _ENCODED_DOT.sub(".", seg)
        last = i == len(segments) - 1
        if plain == ".":
            if last:
                out.append("")
        elif plain == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _address(text: str) -> Address | None:
    """An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as IPv4."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# --- outcomes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JwtFailure:
    """A token was present and failed; answer with :attr:`status`, :attr:`body`, the
    ``www-authenticate`` header of :meth:`www_authenticate`; log :attr:`details`."""

    reason: str  # Envoy's status string, never the token

    @property
    def status(self) -> int:
        return 403 if self.reason == AUDIENCE_NOT_ALLOWED else 401

    @property
    def body(self) -> str:
        return self.reason

    @property
    def details(self) -> str:
        return f"{JWT_DETAILS}{{{'_'.join(self.reason.split())}}}"

    def www_authenticate(self, scheme: str, authority: str, path: str) -> str:
        """Envoy's value: the original URI (the path cut at 256 characters)."""
        return f'Bearer realm="{scheme}://{authority}{path[:MAX_URI_PATH]}", error="invalid_token"'


@dataclass(frozen=True, slots=True)
class Verdict:
    """``policy``: ``ns/name`` of the policy that decided, ``none`` when ALLOW policies apply and
    none matched, "" when no policy decided (allowed). ``details``: Envoy's response code details
    of a denial. ``audited``: the AUDIT policies that matched. ``shadow_result`` ("allowed" |
    "denied", "" when no dry-run policy applies) and ``shadow_policy``: the decision had the
    dry-run policies been enforced (Envoy's shadow_engine_result / shadow_effective_policy_id)."""

    allowed: bool
    policy: str
    reason: str
    details: str = ""
    audited: tuple[str, ...] = ()
    shadow_result: str = ""
    shadow_policy: str = ""

    @property
    def status(self) -> int:
        return 200 if self.allowed else DENIED_STATUS

    @property
    def body(self) -> str:
        return "" if self.allowed else DENIED_BODY


@dataclass(frozen=True, slots=True)
class HeaderChanges:
    """What jwt_authn changes in a request it accepted: headers to remove (the token's, unless
    ``forwardOriginalToken``), then headers to set (``outputPayloadToHeader``,
    ``outputClaimToHeaders``)."""

    remove: tuple[str, ...] = ()
    set: tuple[tuple[str, str], ...] = ()


# --- compiled policies ----------------------------------------------------------------------------

Pred = Callable[[L7Request], bool]


@dataclass(frozen=True, slots=True)
class _Check:
    """One attribute of an entry: any of ``values`` (when given) and none of ``not_values``."""

    values: tuple[Pred, ...]
    not_values: tuple[Pred, ...]
    http: bool = False  # an HTTP-only attribute

    def __call__(self, req: L7Request) -> bool:
        return (not self.values or any(p(req) for p in self.values)) and not any(p(req) for p in self.not_values)


_Entry = tuple[_Check, ...]   # all
_Clause = tuple[_Entry, ...]  # any; none: matches
_Rule = tuple[_Clause, ...]   # all; none: matches


def _rule_matches(rule: _Rule, req: L7Request, action: str) -> bool:
    if not req.tcp:
        return all(not clause or any(all(c(req) for c in entry) for entry in clause) for clause in rule)
    if action == "ALLOW" and any(c.http for clause in rule for entry in clause for c in entry):
        return False
    return all(not clause or any(all(c(req) for c in entry if not c.http) for entry in clause) for clause in rule)


@dataclass(frozen=True, slots=True)
class _Policy:
    name: str
    namespace: str
    action: str  # ALLOW | DENY | AUDIT | CUSTOM
    rules: tuple[_Rule, ...]
    dry_run: bool = False
    target_hosts: frozenset[str] = frozenset()
    provider: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def applies(self, target_host: str) -> bool:
        return not self.target_hosts or target_host in self.target_hosts

    def rule_id(self, index: int) -> str:
        """Istio's Envoy RBAC policy name for rule ``index``."""
        base = f"ns[{self.namespace}]-policy[{self.name}]-rule[{index}]"
        return f"istio-ext-authz-{base}-deny-due-to-bad-CUSTOM-action" if self.action == "CUSTOM" else base


@dataclass(frozen=True, slots=True)
class _RuleRef:
    id: str
    policy: _Policy
    rule: _Rule


@dataclass(frozen=True, slots=True)
class _JwtMeta:
    """A jwtRules entry beyond what :class:`waypoint.jwt.JwtRule` validates with."""

    jwks_uri: str = ""
    forward_original_token: bool = False
    output_payload_to_header: str = ""
    output_claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, claim)


@dataclass(frozen=True, slots=True)
class _Authn:
    name: str
    namespace: str
    rules: tuple[tuple[JwtRule, _JwtMeta], ...]
    target_hosts: frozenset[str] = frozenset()

    def applies(self, target_host: str) -> bool:
        return not self.target_hosts or target_host in self.target_hosts


_ACTIONS: Final[Mapping[int, str]] = {pb.ALLOW: "ALLOW", pb.DENY: "DENY", pb.AUDIT: "AUDIT", pb.CUSTOM: "CUSTOM"}


@dataclass(frozen=True, slots=True)
class L7Policies:
    """A waypoint's RequestAuthentications and AuthorizationPolicies, compiled once per push."""

    policies: tuple[_Policy, ...] = ()
    authns: tuple[_Authn, ...] = ()
    problems: tuple[str, ...] = ()  # e.g. an unusable inline JWKS (its issuer's tokens then fail)
    _ordered: Mapping[str, tuple[_RuleRef, ...]] = field(default_factory=dict, init=False, repr=False,
                                                         compare=False)

    def __post_init__(self) -> None:
        ordered: dict[str, list[_RuleRef]] = {}
        for pol in self.policies:
            kind = ("DRY_" if pol.dry_run else "") + ("DENY" if pol.action == "CUSTOM" else pol.action)
            for i, rule in enumerate(pol.rules):
                ordered.setdefault(kind, []).append(_RuleRef(pol.rule_id(i), pol, rule))
        object.__setattr__(self, "_ordered", {k: tuple(sorted(v, key=lambda r: r.id)) for k, v in ordered.items()})

    @classmethod
    def from_resources(cls, resources: Mapping[str, pb.Resource] | Iterable[pb.Resource],
                       jwks: Mapping[str, str] | None = None) -> L7Policies:
        """From a waypoint's resources (a mapping by name or resources): its
        ``waypoint_authorization`` and ``request_authn`` ones; everything else is ignored.
        ``jwks``: fetched JWKS documents by ``jwksUri``. Raises ValueError naming an unusable
        resource."""
        items = resources.values() if isinstance(resources, Mapping) else resources
        policies: list[_Policy] = []
        authns: list[_Authn] = []
        problems: list[str] = []
        for res in sorted(items, key=lambda r: r.name):
            kind = res.WhichOneof("kind")
            if kind == "waypoint_authorization":
                policies.append(_policy(res.name, res.waypoint_authorization))
            elif kind == "request_authn":
                authns.append(_authn(res.name, res.request_authn, jwks or {}, problems))
        return cls(tuple(policies), tuple(authns), tuple(problems))

    # --- authentication -------------------------------------------------------------------------

    @property
    def jwks_uris(self) -> frozenset[str]:
        """The ``jwksUri`` values the waypoint has to fetch (rules without an inline JWKS)."""
        return frozenset(meta.jwks_uri for a in self.authns for _, meta in a.rules if meta.jwks_uri)

    def with_jwks(self, documents: Mapping[str, str]) -> L7Policies:
        """A copy using the fetched JWKS ``documents`` (by URI) for the rules that name them."""
        problems: list[str] = []
        authns = []
        for a in self.authns:
            rules = []
            for rule, meta in a.rules:
                if meta.jwks_uri and meta.jwks_uri in documents:
                    rule = replace(rule, keys=_keys(documents[meta.jwks_uri],
                                                    f"authn/{a.namespace}/{a.name}: {meta.jwks_uri}", problems))
                rules.append((rule, meta))
            authns.append(replace(a, rules=tuple(rules)))
        kept = tuple(p for p in self.problems if not any(uri in p for uri in documents))
        return replace(self, authns=tuple(authns), problems=kept + tuple(problems))

    def jwt_rules(self, host: str) -> tuple[JwtRule, ...]:
        """The JWT rules of the RequestAuthentications that apply to the service ``host``."""
        return tuple(rule for a in self.authns if a.applies(host) for rule, _ in a.rules)

    def authenticate(self, host: str, headers: Mapping[str, str], query: Mapping[str, str],
                     now: float | None = None, *, method: str = "") -> Authenticated | JwtFailure | None:
        """The request principal of a request for the service ``host``: ``None`` without a token
        (or when no RequestAuthentication applies), :class:`JwtFailure` when a token fails.
        ``headers`` have lower-case names; cookies are read from ``cookie``. With ``method``
        given, a CORS preflight (OPTIONS with ``origin`` and ``access-control-request-method``)
        is not checked, as Istio configures jwt_authn (``bypass_cors_preflight``)."""
        rules = self.jwt_rules(host)
        if not rules:
            return None
        if method == "OPTIONS" and headers.get("origin") and headers.get("access-control-request-method"):
            return None
        try:
            return authenticate(rules, headers, query, cookies(headers.get("cookie", "")),
                                time.time() if now is None else now)
        except JwtError as exc:
            return JwtFailure(str(exc))

    def header_changes(self, host: str, headers: Mapping[str, str], query: Mapping[str, str],
                       authn: Authenticated) -> HeaderChanges:
        """What to change in a request :meth:`authenticate` accepted as ``authn`` before it is
        forwarded (Envoy jwt_authn ``forward``, ``forward_payload_header``, ``claim_to_headers``):
        the header the token came from is removed unless ``forwardOriginalToken`` (tokens in
        query parameters or cookies stay)."""
        found = _locate([(r, m) for a in self.authns if a.applies(host) for r, m in a.rules],
                        headers, query, cookies(headers.get("cookie", "")))
        if found is None:
            return HeaderChanges()
        token, header = found
        issuer = authn.claims.get("iss")
        meta = next((m for a in self.authns if a.applies(host) for r, m in a.rules if r.issuer == issuer), None)
        if meta is None:
            return HeaderChanges()
        remove = (header,) if header and not meta.forward_original_token else ()
        out: list[tuple[str, str]] = []
        if meta.output_payload_to_header:
            out.append((meta.output_payload_to_header.lower(), token.split(".")[1]))
        for name, claim in meta.output_claim_to_headers:
            value = authn.claims.get(claim)
            if isinstance(value, bool):
                out.append((name.lower(), "true" if value else "false"))
            elif isinstance(value, str | int):  # Envoy: string, integer and boolean claims only
                out.append((name.lower(), str(value)))
        return HeaderChanges(remove, tuple(out))

    # --- authorization --------------------------------------------------------------------------

    @property
    def custom(self) -> tuple[str, ...]:
        """``ns/name (provider)`` of the CUSTOM policies (for the caller to log once)."""
        return tuple(f"{p.key} ({p.provider or 'no provider'})" for p in self.policies if p.action == "CUSTOM")

    def check(self, req: L7Request) -> Verdict:
        """Whether ``req`` may proceed (see the module docstring for the order and matching)."""
        verdict, _ = self._decide(req, dry_run=False)
        audited = tuple(dict.fromkeys(r.policy.key for r in self._ordered.get("AUDIT", ())
                                      if r.policy.applies(req.target_host) and _rule_matches(r.rule, req, "AUDIT")))
        shadow_result = shadow_policy = ""
        if any(p.dry_run and p.applies(req.target_host) for p in self.policies):
            shadow, shadow_policy = self._decide(req, dry_run=True)
            shadow_result = "allowed" if shadow.allowed else "denied"
        return replace(verdict, audited=audited, shadow_result=shadow_result, shadow_policy=shadow_policy)

    def _decide(self, req: L7Request, dry_run: bool) -> tuple[Verdict, str]:
        """The verdict and Envoy's effective policy id ("" when none); ``dry_run``: with the
        dry-run policies enforced too."""
        host = req.target_host

        def rules(kind: str) -> list[_RuleRef]:
            refs = list(self._ordered.get(kind, ()))
            if dry_run:
                refs = sorted(refs + list(self._ordered.get("DRY_" + kind, ())), key=lambda r: r.id)
            return [r for r in refs if r.policy.applies(host)]

        for ref in rules("DENY"):
            if _rule_matches(ref.rule, req, "DENY"):
                pol = ref.policy
                why = (f"CUSTOM policy {pol.key}: extension provider {pol.provider or '(none)'!r} is not supported"
                       if pol.action == "CUSTOM" else f"DENY policy {pol.key}")
                return Verdict(False, pol.key, f"denied by {why}", f"{DENIED_DETAILS}[{ref.id}]"), ref.id
        # an ALLOW policy without rules applies (and matches nothing): it has no rule refs
        allow_keys = sorted({p.key for p in self.policies if p.action == "ALLOW" and p.applies(host)
                             and (dry_run or not p.dry_run)})
        if not allow_keys:
            return Verdict(True, "", "no ALLOW policy applies"), ""
        for ref in rules("ALLOW"):
            if _rule_matches(ref.rule, req, "ALLOW"):
                return Verdict(True, ref.policy.key, f"allowed by ALLOW policy {ref.policy.key}"), ref.id
        count = f"{len(allow_keys)} ALLOW {'policy applies' if len(allow_keys) == 1 else 'policies apply'}"
        return Verdict(False, "none", f"no ALLOW policy matched ({count}: {', '.join(allow_keys)})",
                       f"{DENIED_DETAILS}[none]"), "none"


def cookies(header: str) -> dict[str, str]:
    """The ``Cookie`` header's name=value pairs (the first of a repeated name)."""
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


def _locate(rules: Iterable[tuple[JwtRule, _JwtMeta]], headers: Mapping[str, str], query: Mapping[str, str],
            cookie_map: Mapping[str, str]) -> tuple[str, str] | None:
    """(token, header it came from or "") as waypoint.jwt.authenticate finds it."""
    for rule, _ in rules:
        hdrs, params, names = rule.locations()
        for name, prefix in hdrs:
            value = headers.get(name)
            if value is not None and value.startswith(prefix):
                return value[len(prefix):].strip(), name
        for p in params:
            if p in query:
                return query[p], ""
        for c in names:
            if c in cookie_map:
                return cookie_map[c], ""
    return None


# --- conversion ------------------------------------------------------------------------------------


def _keys(text: str, where: str, problems: list[str]) -> tuple[Key, ...]:
    try:
        return parse_jwks(text)
    except JwksError as exc:
        problems.append(f"{where}: {exc}")
        return ()


def _authn(name: str, ra: pb.RequestAuthn, jwks: Mapping[str, str], problems: list[str]) -> _Authn:
    if not ra.name or not ra.namespace:
        raise ValueError(f"{name}: a RequestAuthentication needs name and namespace")
    rules = []
    for i, r in enumerate(ra.rules):
        where = f"{name}: rules[{i}]"
        keys: tuple[Key, ...] = ()
        if r.jwks:
            keys = _keys(r.jwks, f"{where}.jwks", problems)
        elif r.jwks_uri in jwks:
            keys = _keys(jwks[r.jwks_uri], f"{where}: {r.jwks_uri}", problems)
        elif r.jwks_uri:
            problems.append(f"{where}: JWKS {r.jwks_uri} not fetched yet")
        rule = JwtRule(
            issuer=r.issuer, keys=keys, audiences=tuple(r.audiences),
            from_headers=tuple((h.name.lower(), h.prefix) for h in r.from_headers),
            from_params=tuple(r.from_params), from_cookies=tuple(r.from_cookies),
        )
        meta = _JwtMeta(
            jwks_uri="" if r.jwks else r.jwks_uri, forward_original_token=r.forward_original_token,
            output_payload_to_header=r.output_payload_to_header,
            output_claim_to_headers=tuple((c.header, c.claim) for c in r.output_claim_to_headers),
        )
        rules.append((rule, meta))
    return _Authn(ra.name, ra.namespace, tuple(rules), frozenset(ra.target_hosts))


def _policy(name: str, a: pb.Authorization) -> _Policy:
    if not a.name or not a.namespace:
        raise ValueError(f"{name}: an authorization policy needs name and namespace")
    action = _ACTIONS.get(a.action)
    if action is None:
        raise ValueError(f"{name}: unknown action {a.action}")
    rules = tuple(
        tuple(tuple(_entry(f"{name}: rules[{r}].clauses[{c}].matches[{m}]", match)
                    for m, match in enumerate(clause.matches))
              for c, clause in enumerate(rule.clauses))
        for r, rule in enumerate(a.rules)
    )
    return _Policy(a.name, a.namespace, action, rules, a.dry_run, frozenset(a.target_hosts), a.provider)


@dataclass(frozen=True, slots=True)
class _Str:
    """An Envoy StringMatcher as Istio builds it from ``x`` / ``x*`` / ``*x`` / ``*``, or a path
    template. ``presence``: any non-empty value (``.+``)."""

    kind: str
    value: str = ""
    ignore_case: bool = False
    regex: re.Pattern[str] | None = None

    def __call__(self, text: str | None) -> bool:
        if text is None:
            return False
        value = self.value
        if self.ignore_case:
            text, value = text.lower(), value.lower()
        if self.kind == "exact":
            return text == value
        if self.kind == "prefix":
            return text.startswith(value)
        if self.kind == "suffix":
            return text.endswith(value)
        if self.kind == "template":
            return self.regex is not None and self.regex.fullmatch(text) is not None
        return text != ""

    @property
    def istio(self) -> str:
        """The value as written in the policy."""
        return {"exact": self.value, "prefix": f"{self.value}*", "suffix": f"*{self.value}"}.get(self.kind, "*")


# Envoy's uri_template: "*" is one or more path characters, "**" any characters including "/"
_PCHAR = r"a-zA-Z0-9\-._~%!$&'()+,;:@="
_TEMPLATE_PARTS = re.compile(r"\{\*\*\}|\{\*\}")


def _template(value: str, where: str) -> re.Pattern[str]:
    out: list[str] = []
    pos = 0
    for m in _TEMPLATE_PARTS.finditer(value):
        out.append(re.escape(value[pos:m.start()]))
        out.append(f"[{_PCHAR}/]*" if m.group() == "{**}" else f"[{_PCHAR}]+")
        pos = m.end()
    out.append(re.escape(value[pos:]))
    try:
        return re.compile("".join(out))
    except re.error as exc:  # pragma: no cover - the pieces are escaped
        raise ValueError(f"{where}: bad path template {value!r}: {exc}") from None


def _str(sm: pb.StringMatch, where: str, *, ignore_case: bool = False) -> _Str:
    kind = sm.WhichOneof("match_type")
    if kind is None:
        raise ValueError(f"{where}: no exact, prefix, suffix, presence or template")
    if kind == "presence":
        return _Str("presence")
    value = str(getattr(sm, kind))
    if kind == "template":
        return _Str("template", value, regex=_template(value, where))
    return _Str(kind, value, ignore_case)


def _istio_str(value: str, *, ignore_case: bool = False) -> _Str:
    """Istio's matcher.StringMatcher for a raw value (``when`` values)."""
    if value == "*":
        return _Str("presence")
    if value.startswith("*"):
        return _Str("suffix", value[1:], ignore_case)
    if value.endswith("*"):
        return _Str("prefix", value[:-1], ignore_case)
    return _Str("exact", value, ignore_case)


def _network(c: pb.Cidr, where: str) -> Network:
    try:
        return ipaddress.ip_network((ipaddress.ip_address(c.address), c.length), strict=False)
    except ValueError as exc:
        raise ValueError(f"{where}: bad CIDR: {exc}") from None


def _in(net: Network, getter: Callable[[L7Request], Address | None]) -> Pred:
    return lambda req: (ip := getter(req)) is not None and ip in net


def _port(port: int) -> Pred:
    return lambda req: req.destination_port == port


def _on(match: _Str, getter: Callable[[L7Request], str | None]) -> Pred:
    return lambda req: match(getter(req))


def _header_pred(name: str, value: str) -> Pred:
    """Istio's HeaderMatcher: ``*`` is presence (even empty), else a string match."""
    if value == "*":
        return lambda req: name in req.headers
    match = _istio_str(value)
    return lambda req: match(req.headers.get(name))


def _host_pred(match: _Str) -> Pred:
    if match.kind == "presence":
        return lambda req: req.host != ""
    return lambda req: match(req.host or None)


def _method_pred(match: _Str) -> Pred:
    if match.kind == "presence":
        return lambda req: req.method != ""
    return lambda req: match(req.method or None)


def _claim(claims: Mapping[str, Any], path: Iterable[str]) -> Any:
    value: Any = claims
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _claim_pred(path: tuple[str, ...], value: str) -> Pred:
    """Istio's MetadataListValueMatcher on the JWT payload: a string claim matches, a list claim
    when an element does."""
    match = _istio_str(value)

    def pred(req: L7Request) -> bool:
        if req.request_principal is None:
            return False
        claim = _claim(req.claims, path)
        if isinstance(claim, str):
            return match(claim)
        if isinstance(claim, list):
            return any(isinstance(v, str) and match(v) for v in claim)
        return False

    return pred


_ANY = _Str("presence")


def _request_principal_pred(value: str) -> Pred:
    """generator.go ``requestPrincipalGenerator``: ``iss`` and ``sub`` matched apart."""
    idx = value.rfind("/")
    found = idx >= 0
    iss, sub = (value[:idx], value[idx + 1:]) if found else (value, "")
    if value == "*":
        m_iss, m_sub = _ANY, _ANY
    elif value.startswith("*"):
        if found:
            m_iss = _ANY if iss == "*" else _Str("suffix", iss[1:])
            m_sub = _Str("exact", sub)
        else:
            m_iss, m_sub = _ANY, _Str("suffix", value[1:])
    elif value.endswith("*"):
        if found:
            m_iss = _Str("exact", iss)
            m_sub = _ANY if sub == "*" else _Str("prefix", sub[:-1])
        else:
            m_iss, m_sub = _Str("prefix", value[:-1]), _ANY
    else:
        m_iss, m_sub = _Str("exact", iss), _Str("exact", sub)

    def pred(req: L7Request) -> bool:
        if req.request_principal is None:
            return False
        c_iss, c_sub = req.claims.get("iss"), req.claims.get("sub")
        if not isinstance(c_iss, str) or not isinstance(c_sub, str):
            if "iss" in req.claims:
                return False
            c_iss, _, c_sub = req.request_principal.rpartition("/")
        return m_iss(c_iss) and m_sub(c_sub)

    return pred


_HTTP_KEYS = ("request.",)  # request.headers[..], request.auth.*: HTTP-only ``when`` keys
_CLAIMS = "request.auth.claims"
_HEADERS = "request.headers"
_NESTED = re.compile(r"\[([^\[\]]+)\]")


def _bracketed(rest: str) -> tuple[str, ...] | None:
    """``[a][b]`` -> (a, b); None when malformed."""
    parts = _NESTED.findall(rest)
    return tuple(parts) if parts and "".join(f"[{p}]" for p in parts) == rest else None


def _condition_pred(key: str, value: str) -> Pred:
    if key.startswith(_HEADERS):
        names = _bracketed(key[len(_HEADERS):])
        if names is not None and len(names) == 1:
            return _header_pred(names[0].lower(), value)
    elif key.startswith(_CLAIMS):
        path = _bracketed(key[len(_CLAIMS):])
        if path is not None:
            return _claim_pred(path, value)
    elif key == "request.auth.principal":
        return _request_principal_pred(value)
    elif key == "request.auth.audiences":
        return _claim_pred(("aud",), value)
    elif key == "request.auth.presenter":
        return _claim_pred(("azp",), value)
    elif key == "connection.sni":
        return _on(_istio_str(value), lambda req: req.sni)
    # experimental.envoy.filters.* (no such Envoy filter metadata here) and anything unknown:
    # an attribute the request does not have
    return lambda req: False


def _entry(where: str, m: pb.Match) -> _Entry:
    out: list[_Check] = []

    def add(values: Iterable[Pred], not_values: Iterable[Pred], http: bool = False) -> None:
        check = _Check(tuple(values), tuple(not_values), http)
        if check.values or check.not_values:
            out.append(check)

    def strings(attr: str, getter: Callable[[L7Request], str | None], http: bool = False) -> None:
        pos, neg = getattr(m, attr), getattr(m, "not_" + attr)
        add((_on(_str(s, f"{where}.{attr}[{i}]"), getter) for i, s in enumerate(pos)),
            (_on(_str(s, f"{where}.not_{attr}[{i}]"), getter) for i, s in enumerate(neg)), http)

    def networks(attr: str, getter: Callable[[L7Request], Address | None]) -> None:
        pos, neg = getattr(m, attr), getattr(m, "not_" + attr)
        add((_in(_network(c, f"{where}.{attr}[{i}]"), getter) for i, c in enumerate(pos)),
            (_in(_network(c, f"{where}.not_{attr}[{i}]"), getter) for i, c in enumerate(neg)))

    strings("principals", lambda r: r.source_principal)
    strings("namespaces", lambda r: r._namespace or None)
    networks("source_ips", lambda r: r._source)
    networks("remote_ips", lambda r: r._remote)
    networks("destination_ips", lambda r: r._destination)
    add((_port(p) for p in m.destination_ports), (_port(p) for p in m.not_destination_ports))
    add((_request_principal_pred(_str(s, f"{where}.request_principals[{i}]").istio)
         for i, s in enumerate(m.request_principals)),
        (_request_principal_pred(_str(s, f"{where}.not_request_principals[{i}]").istio)
         for i, s in enumerate(m.not_request_principals)), http=True)
    add((_host_pred(_str(s, f"{where}.hosts[{i}]", ignore_case=True)) for i, s in enumerate(m.hosts)),
        (_host_pred(_str(s, f"{where}.not_hosts[{i}]", ignore_case=True)) for i, s in enumerate(m.not_hosts)),
        http=True)
    add((_method_pred(_str(s, f"{where}.methods[{i}]")) for i, s in enumerate(m.methods)),
        (_method_pred(_str(s, f"{where}.not_methods[{i}]")) for i, s in enumerate(m.not_methods)), http=True)
    strings("paths", lambda r: r.path or None, http=True)
    for cond in m.conditions:
        add((_condition_pred(cond.key, v) for v in cond.values),
            (_condition_pred(cond.key, v) for v in cond.not_values), http=cond.key.startswith(_HTTP_KEYS))
    return tuple(out)

