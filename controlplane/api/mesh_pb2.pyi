from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TunnelProtocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TUNNEL_NONE: _ClassVar[TunnelProtocol]
    HBONE: _ClassVar[TunnelProtocol]

class WorkloadStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTHY: _ClassVar[WorkloadStatus]
    UNHEALTHY: _ClassVar[WorkloadStatus]

class MtlsMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MTLS_PERMISSIVE: _ClassVar[MtlsMode]
    MTLS_STRICT: _ClassVar[MtlsMode]

class Scope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GLOBAL: _ClassVar[Scope]
    NAMESPACE: _ClassVar[Scope]
    WORKLOAD_SELECTOR: _ClassVar[Scope]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALLOW: _ClassVar[Action]
    DENY: _ClassVar[Action]
    AUDIT: _ClassVar[Action]
    CUSTOM: _ClassVar[Action]

class SubscriberType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ZTUNNEL: _ClassVar[SubscriberType]
    WAYPOINT: _ClassVar[SubscriberType]
    KUBELET: _ClassVar[SubscriberType]
TUNNEL_NONE: TunnelProtocol
HBONE: TunnelProtocol
HEALTHY: WorkloadStatus
UNHEALTHY: WorkloadStatus
MTLS_PERMISSIVE: MtlsMode
MTLS_STRICT: MtlsMode
GLOBAL: Scope
NAMESPACE: Scope
WORKLOAD_SELECTOR: Scope
ALLOW: Action
DENY: Action
AUDIT: Action
CUSTOM: Action
ZTUNNEL: SubscriberType
WAYPOINT: SubscriberType
KUBELET: SubscriberType

class GatewayAddress(_message.Message):
    __slots__ = ("hostname", "namespace", "address", "hbone_port")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HBONE_PORT_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    namespace: str
    address: bytes
    hbone_port: int
    def __init__(self, hostname: _Optional[str] = ..., namespace: _Optional[str] = ..., address: _Optional[bytes] = ..., hbone_port: _Optional[int] = ...) -> None: ...

class PortMapping(_message.Message):
    __slots__ = ("service_port", "target_port")
    SERVICE_PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    service_port: int
    target_port: int
    def __init__(self, service_port: _Optional[int] = ..., target_port: _Optional[int] = ...) -> None: ...

class PortList(_message.Message):
    __slots__ = ("ports",)
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ports: _containers.RepeatedCompositeFieldContainer[PortMapping]
    def __init__(self, ports: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("uid", "name", "namespace", "addresses", "node", "service_account", "trust_domain", "labels", "tunnel_protocol", "waypoint", "status", "services", "workload_name", "canonical_name", "canonical_revision", "cluster_id", "authorization_policies", "mtls_mode", "port_mtls")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ServicesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PortList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PortList, _Mapping]] = ...) -> None: ...
    class PortMtlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: MtlsMode
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[MtlsMode, str]] = ...) -> None: ...
    UID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TUNNEL_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    WAYPOINT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_NAME_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_NAME_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_REVISION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_POLICIES_FIELD_NUMBER: _ClassVar[int]
    MTLS_MODE_FIELD_NUMBER: _ClassVar[int]
    PORT_MTLS_FIELD_NUMBER: _ClassVar[int]
    uid: str
    name: str
    namespace: str
    addresses: _containers.RepeatedScalarFieldContainer[bytes]
    node: str
    service_account: str
    trust_domain: str
    labels: _containers.ScalarMap[str, str]
    tunnel_protocol: TunnelProtocol
    waypoint: GatewayAddress
    status: WorkloadStatus
    services: _containers.MessageMap[str, PortList]
    workload_name: str
    canonical_name: str
    canonical_revision: str
    cluster_id: str
    authorization_policies: _containers.RepeatedScalarFieldContainer[str]
    mtls_mode: MtlsMode
    port_mtls: _containers.ScalarMap[int, MtlsMode]
    def __init__(self, uid: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., addresses: _Optional[_Iterable[bytes]] = ..., node: _Optional[str] = ..., service_account: _Optional[str] = ..., trust_domain: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., tunnel_protocol: _Optional[_Union[TunnelProtocol, str]] = ..., waypoint: _Optional[_Union[GatewayAddress, _Mapping]] = ..., status: _Optional[_Union[WorkloadStatus, str]] = ..., services: _Optional[_Mapping[str, PortList]] = ..., workload_name: _Optional[str] = ..., canonical_name: _Optional[str] = ..., canonical_revision: _Optional[str] = ..., cluster_id: _Optional[str] = ..., authorization_policies: _Optional[_Iterable[str]] = ..., mtls_mode: _Optional[_Union[MtlsMode, str]] = ..., port_mtls: _Optional[_Mapping[int, MtlsMode]] = ...) -> None: ...

class ServicePort(_message.Message):
    __slots__ = ("service_port", "target_port", "target_port_name", "name", "app_protocol")
    SERVICE_PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    APP_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    service_port: int
    target_port: int
    target_port_name: str
    name: str
    app_protocol: str
    def __init__(self, service_port: _Optional[int] = ..., target_port: _Optional[int] = ..., target_port_name: _Optional[str] = ..., name: _Optional[str] = ..., app_protocol: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("name", "namespace", "hostname", "addresses", "ports", "waypoint", "selector")
    class SelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    WAYPOINT_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    hostname: str
    addresses: _containers.RepeatedScalarFieldContainer[bytes]
    ports: _containers.RepeatedCompositeFieldContainer[ServicePort]
    waypoint: GatewayAddress
    selector: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., hostname: _Optional[str] = ..., addresses: _Optional[_Iterable[bytes]] = ..., ports: _Optional[_Iterable[_Union[ServicePort, _Mapping]]] = ..., waypoint: _Optional[_Union[GatewayAddress, _Mapping]] = ..., selector: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Address(_message.Message):
    __slots__ = ("workload", "service")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    workload: Workload
    service: Service
    def __init__(self, workload: _Optional[_Union[Workload, _Mapping]] = ..., service: _Optional[_Union[Service, _Mapping]] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StringMatch(_message.Message):
    __slots__ = ("exact", "prefix", "suffix", "presence", "template")
    EXACT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    exact: str
    prefix: str
    suffix: str
    presence: Empty
    template: str
    def __init__(self, exact: _Optional[str] = ..., prefix: _Optional[str] = ..., suffix: _Optional[str] = ..., presence: _Optional[_Union[Empty, _Mapping]] = ..., template: _Optional[str] = ...) -> None: ...

class Cidr(_message.Message):
    __slots__ = ("address", "length")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    address: bytes
    length: int
    def __init__(self, address: _Optional[bytes] = ..., length: _Optional[int] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("namespaces", "not_namespaces", "principals", "not_principals", "source_ips", "not_source_ips", "destination_ips", "not_destination_ips", "destination_ports", "not_destination_ports", "request_principals", "not_request_principals", "hosts", "not_hosts", "methods", "not_methods", "paths", "not_paths", "conditions", "remote_ips", "not_remote_ips")
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NOT_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    NOT_PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IPS_FIELD_NUMBER: _ClassVar[int]
    NOT_SOURCE_IPS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_IPS_FIELD_NUMBER: _ClassVar[int]
    NOT_DESTINATION_IPS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PORTS_FIELD_NUMBER: _ClassVar[int]
    NOT_DESTINATION_PORTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    NOT_REQUEST_PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    NOT_HOSTS_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    NOT_METHODS_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    NOT_PATHS_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    REMOTE_IPS_FIELD_NUMBER: _ClassVar[int]
    NOT_REMOTE_IPS_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[StringMatch]
    not_namespaces: _containers.RepeatedCompositeFieldContainer[StringMatch]
    principals: _containers.RepeatedCompositeFieldContainer[StringMatch]
    not_principals: _containers.RepeatedCompositeFieldContainer[StringMatch]
    source_ips: _containers.RepeatedCompositeFieldContainer[Cidr]
    not_source_ips: _containers.RepeatedCompositeFieldContainer[Cidr]
    destination_ips: _containers.RepeatedCompositeFieldContainer[Cidr]
    not_destination_ips: _containers.RepeatedCompositeFieldContainer[Cidr]
    destination_ports: _containers.RepeatedScalarFieldContainer[int]
    not_destination_ports: _containers.RepeatedScalarFieldContainer[int]
    request_principals: _containers.RepeatedCompositeFieldContainer[StringMatch]
    not_request_principals: _containers.RepeatedCompositeFieldContainer[StringMatch]
    hosts: _containers.RepeatedCompositeFieldContainer[StringMatch]
    not_hosts: _containers.RepeatedCompositeFieldContainer[StringMatch]
    methods: _containers.RepeatedCompositeFieldContainer[StringMatch]
    not_methods: _containers.RepeatedCompositeFieldContainer[StringMatch]
    paths: _containers.RepeatedCompositeFieldContainer[StringMatch]
    not_paths: _containers.RepeatedCompositeFieldContainer[StringMatch]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    remote_ips: _containers.RepeatedCompositeFieldContainer[Cidr]
    not_remote_ips: _containers.RepeatedCompositeFieldContainer[Cidr]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., not_namespaces: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., principals: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., not_principals: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., source_ips: _Optional[_Iterable[_Union[Cidr, _Mapping]]] = ..., not_source_ips: _Optional[_Iterable[_Union[Cidr, _Mapping]]] = ..., destination_ips: _Optional[_Iterable[_Union[Cidr, _Mapping]]] = ..., not_destination_ips: _Optional[_Iterable[_Union[Cidr, _Mapping]]] = ..., destination_ports: _Optional[_Iterable[int]] = ..., not_destination_ports: _Optional[_Iterable[int]] = ..., request_principals: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., not_request_principals: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., hosts: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., not_hosts: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., methods: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., not_methods: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., paths: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., not_paths: _Optional[_Iterable[_Union[StringMatch, _Mapping]]] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., remote_ips: _Optional[_Iterable[_Union[Cidr, _Mapping]]] = ..., not_remote_ips: _Optional[_Iterable[_Union[Cidr, _Mapping]]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("key", "values", "not_values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    NOT_VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    values: _containers.RepeatedScalarFieldContainer[str]
    not_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., not_values: _Optional[_Iterable[str]] = ...) -> None: ...

class Clause(_message.Message):
    __slots__ = ("matches",)
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    def __init__(self, matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("clauses",)
    CLAUSES_FIELD_NUMBER: _ClassVar[int]
    clauses: _containers.RepeatedCompositeFieldContainer[Clause]
    def __init__(self, clauses: _Optional[_Iterable[_Union[Clause, _Mapping]]] = ...) -> None: ...

class Authorization(_message.Message):
    __slots__ = ("name", "namespace", "scope", "action", "rules", "dry_run", "has_l7", "target_hosts", "provider")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    HAS_L7_FIELD_NUMBER: _ClassVar[int]
    TARGET_HOSTS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    scope: Scope
    action: Action
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    dry_run: bool
    has_l7: bool
    target_hosts: _containers.RepeatedScalarFieldContainer[str]
    provider: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., scope: _Optional[_Union[Scope, str]] = ..., action: _Optional[_Union[Action, str]] = ..., rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., dry_run: _Optional[bool] = ..., has_l7: _Optional[bool] = ..., target_hosts: _Optional[_Iterable[str]] = ..., provider: _Optional[str] = ...) -> None: ...

class JwtHeader(_message.Message):
    __slots__ = ("name", "prefix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    prefix: str
    def __init__(self, name: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class ClaimToHeader(_message.Message):
    __slots__ = ("header", "claim")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    header: str
    claim: str
    def __init__(self, header: _Optional[str] = ..., claim: _Optional[str] = ...) -> None: ...

class JwtRule(_message.Message):
    __slots__ = ("issuer", "audiences", "jwks", "jwks_uri", "from_headers", "from_params", "from_cookies", "forward_original_token", "output_payload_to_header", "output_claim_to_headers", "timeout_seconds")
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    JWKS_FIELD_NUMBER: _ClassVar[int]
    JWKS_URI_FIELD_NUMBER: _ClassVar[int]
    FROM_HEADERS_FIELD_NUMBER: _ClassVar[int]
    FROM_PARAMS_FIELD_NUMBER: _ClassVar[int]
    FROM_COOKIES_FIELD_NUMBER: _ClassVar[int]
    FORWARD_ORIGINAL_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PAYLOAD_TO_HEADER_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CLAIM_TO_HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    issuer: str
    audiences: _containers.RepeatedScalarFieldContainer[str]
    jwks: str
    jwks_uri: str
    from_headers: _containers.RepeatedCompositeFieldContainer[JwtHeader]
    from_params: _containers.RepeatedScalarFieldContainer[str]
    from_cookies: _containers.RepeatedScalarFieldContainer[str]
    forward_original_token: bool
    output_payload_to_header: str
    output_claim_to_headers: _containers.RepeatedCompositeFieldContainer[ClaimToHeader]
    timeout_seconds: float
    def __init__(self, issuer: _Optional[str] = ..., audiences: _Optional[_Iterable[str]] = ..., jwks: _Optional[str] = ..., jwks_uri: _Optional[str] = ..., from_headers: _Optional[_Iterable[_Union[JwtHeader, _Mapping]]] = ..., from_params: _Optional[_Iterable[str]] = ..., from_cookies: _Optional[_Iterable[str]] = ..., forward_original_token: _Optional[bool] = ..., output_payload_to_header: _Optional[str] = ..., output_claim_to_headers: _Optional[_Iterable[_Union[ClaimToHeader, _Mapping]]] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class RequestAuthn(_message.Message):
    __slots__ = ("name", "namespace", "rules", "target_hosts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    TARGET_HOSTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    rules: _containers.RepeatedCompositeFieldContainer[JwtRule]
    target_hosts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[JwtRule, _Mapping]]] = ..., target_hosts: _Optional[_Iterable[str]] = ...) -> None: ...

class StringMatchRegex(_message.Message):
    __slots__ = ("exact", "prefix", "regex")
    EXACT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    exact: str
    prefix: str
    regex: str
    def __init__(self, exact: _Optional[str] = ..., prefix: _Optional[str] = ..., regex: _Optional[str] = ...) -> None: ...

class HTTPMatchRequest(_message.Message):
    __slots__ = ("name", "uri", "scheme", "method", "authority", "headers", "without_headers", "query_params", "ignore_uri_case", "source_labels", "port", "source_namespace")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringMatchRegex
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringMatchRegex, _Mapping]] = ...) -> None: ...
    class WithoutHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringMatchRegex
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringMatchRegex, _Mapping]] = ...) -> None: ...
    class QueryParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringMatchRegex
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringMatchRegex, _Mapping]] = ...) -> None: ...
    class SourceLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_HEADERS_FIELD_NUMBER: _ClassVar[int]
    QUERY_PARAMS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_URI_CASE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LABELS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: StringMatchRegex
    scheme: StringMatchRegex
    method: StringMatchRegex
    authority: StringMatchRegex
    headers: _containers.MessageMap[str, StringMatchRegex]
    without_headers: _containers.MessageMap[str, StringMatchRegex]
    query_params: _containers.MessageMap[str, StringMatchRegex]
    ignore_uri_case: bool
    source_labels: _containers.ScalarMap[str, str]
    port: int
    source_namespace: str
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[_Union[StringMatchRegex, _Mapping]] = ..., scheme: _Optional[_Union[StringMatchRegex, _Mapping]] = ..., method: _Optional[_Union[StringMatchRegex, _Mapping]] = ..., authority: _Optional[_Union[StringMatchRegex, _Mapping]] = ..., headers: _Optional[_Mapping[str, StringMatchRegex]] = ..., without_headers: _Optional[_Mapping[str, StringMatchRegex]] = ..., query_params: _Optional[_Mapping[str, StringMatchRegex]] = ..., ignore_uri_case: _Optional[bool] = ..., source_labels: _Optional[_Mapping[str, str]] = ..., port: _Optional[int] = ..., source_namespace: _Optional[str] = ...) -> None: ...

class Destination(_message.Message):
    __slots__ = ("host", "subset", "port")
    HOST_FIELD_NUMBER: _ClassVar[int]
    SUBSET_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    host: str
    subset: str
    port: int
    def __init__(self, host: _Optional[str] = ..., subset: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class HeaderOperations(_message.Message):
    __slots__ = ("set", "add", "remove")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AddEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SET_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    set: _containers.ScalarMap[str, str]
    add: _containers.ScalarMap[str, str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, set: _Optional[_Mapping[str, str]] = ..., add: _Optional[_Mapping[str, str]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class Headers(_message.Message):
    __slots__ = ("request", "response")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    request: HeaderOperations
    response: HeaderOperations
    def __init__(self, request: _Optional[_Union[HeaderOperations, _Mapping]] = ..., response: _Optional[_Union[HeaderOperations, _Mapping]] = ...) -> None: ...

class HTTPRouteDestination(_message.Message):
    __slots__ = ("destination", "weight", "headers")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    weight: int
    headers: Headers
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ..., weight: _Optional[int] = ..., headers: _Optional[_Union[Headers, _Mapping]] = ...) -> None: ...

class HTTPRedirect(_message.Message):
    __slots__ = ("uri", "authority", "port", "scheme", "redirect_code")
    URI_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_CODE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    authority: str
    port: int
    scheme: str
    redirect_code: int
    def __init__(self, uri: _Optional[str] = ..., authority: _Optional[str] = ..., port: _Optional[int] = ..., scheme: _Optional[str] = ..., redirect_code: _Optional[int] = ...) -> None: ...

class HTTPDirectResponse(_message.Message):
    __slots__ = ("status", "body")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    status: int
    body: str
    def __init__(self, status: _Optional[int] = ..., body: _Optional[str] = ...) -> None: ...

class HTTPRewrite(_message.Message):
    __slots__ = ("uri", "authority", "uri_regex", "uri_regex_substitution")
    URI_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    URI_REGEX_FIELD_NUMBER: _ClassVar[int]
    URI_REGEX_SUBSTITUTION_FIELD_NUMBER: _ClassVar[int]
    uri: str
    authority: str
    uri_regex: str
    uri_regex_substitution: str
    def __init__(self, uri: _Optional[str] = ..., authority: _Optional[str] = ..., uri_regex: _Optional[str] = ..., uri_regex_substitution: _Optional[str] = ...) -> None: ...

class HTTPRetry(_message.Message):
    __slots__ = ("attempts", "per_try_timeout_seconds", "retry_on")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PER_TRY_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRY_ON_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    per_try_timeout_seconds: float
    retry_on: str
    def __init__(self, attempts: _Optional[int] = ..., per_try_timeout_seconds: _Optional[float] = ..., retry_on: _Optional[str] = ...) -> None: ...

class HTTPFaultInjection(_message.Message):
    __slots__ = ("delay_seconds", "delay_percent", "abort_http_status", "abort_percent", "has_delay", "has_abort")
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DELAY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ABORT_HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ABORT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    HAS_DELAY_FIELD_NUMBER: _ClassVar[int]
    HAS_ABORT_FIELD_NUMBER: _ClassVar[int]
    delay_seconds: float
    delay_percent: float
    abort_http_status: int
    abort_percent: float
    has_delay: bool
    has_abort: bool
    def __init__(self, delay_seconds: _Optional[float] = ..., delay_percent: _Optional[float] = ..., abort_http_status: _Optional[int] = ..., abort_percent: _Optional[float] = ..., has_delay: _Optional[bool] = ..., has_abort: _Optional[bool] = ...) -> None: ...

class Mirror(_message.Message):
    __slots__ = ("destination", "percent")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    percent: float
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ..., percent: _Optional[float] = ...) -> None: ...

class HTTPRoute(_message.Message):
    __slots__ = ("name", "match", "route", "redirect", "direct_response", "rewrite", "timeout_seconds", "retries", "fault", "mirrors", "headers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_FIELD_NUMBER: _ClassVar[int]
    DIRECT_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    REWRITE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    MIRRORS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    match: _containers.RepeatedCompositeFieldContainer[HTTPMatchRequest]
    route: _containers.RepeatedCompositeFieldContainer[HTTPRouteDestination]
    redirect: HTTPRedirect
    direct_response: HTTPDirectResponse
    rewrite: HTTPRewrite
    timeout_seconds: float
    retries: HTTPRetry
    fault: HTTPFaultInjection
    mirrors: _containers.RepeatedCompositeFieldContainer[Mirror]
    headers: Headers
    def __init__(self, name: _Optional[str] = ..., match: _Optional[_Iterable[_Union[HTTPMatchRequest, _Mapping]]] = ..., route: _Optional[_Iterable[_Union[HTTPRouteDestination, _Mapping]]] = ..., redirect: _Optional[_Union[HTTPRedirect, _Mapping]] = ..., direct_response: _Optional[_Union[HTTPDirectResponse, _Mapping]] = ..., rewrite: _Optional[_Union[HTTPRewrite, _Mapping]] = ..., timeout_seconds: _Optional[float] = ..., retries: _Optional[_Union[HTTPRetry, _Mapping]] = ..., fault: _Optional[_Union[HTTPFaultInjection, _Mapping]] = ..., mirrors: _Optional[_Iterable[_Union[Mirror, _Mapping]]] = ..., headers: _Optional[_Union[Headers, _Mapping]] = ...) -> None: ...

class RouteConfig(_message.Message):
    __slots__ = ("host", "namespace", "http", "sources")
    HOST_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    host: str
    namespace: str
    http: _containers.RepeatedCompositeFieldContainer[HTTPRoute]
    sources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, host: _Optional[str] = ..., namespace: _Optional[str] = ..., http: _Optional[_Iterable[_Union[HTTPRoute, _Mapping]]] = ..., sources: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadBalancer(_message.Message):
    __slots__ = ("simple", "hash_header", "hash_cookie", "hash_cookie_ttl_seconds", "hash_source_ip", "hash_query_parameter")
    class Simple(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNSPECIFIED: _ClassVar[LoadBalancer.Simple]
        LEAST_REQUEST: _ClassVar[LoadBalancer.Simple]
        RANDOM: _ClassVar[LoadBalancer.Simple]
        PASSTHROUGH: _ClassVar[LoadBalancer.Simple]
        ROUND_ROBIN: _ClassVar[LoadBalancer.Simple]
    UNSPECIFIED: LoadBalancer.Simple
    LEAST_REQUEST: LoadBalancer.Simple
    RANDOM: LoadBalancer.Simple
    PASSTHROUGH: LoadBalancer.Simple
    ROUND_ROBIN: LoadBalancer.Simple
    SIMPLE_FIELD_NUMBER: _ClassVar[int]
    HASH_HEADER_FIELD_NUMBER: _ClassVar[int]
    HASH_COOKIE_FIELD_NUMBER: _ClassVar[int]
    HASH_COOKIE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HASH_SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    HASH_QUERY_PARAMETER_FIELD_NUMBER: _ClassVar[int]
    simple: LoadBalancer.Simple
    hash_header: str
    hash_cookie: str
    hash_cookie_ttl_seconds: float
    hash_source_ip: bool
    hash_query_parameter: str
    def __init__(self, simple: _Optional[_Union[LoadBalancer.Simple, str]] = ..., hash_header: _Optional[str] = ..., hash_cookie: _Optional[str] = ..., hash_cookie_ttl_seconds: _Optional[float] = ..., hash_source_ip: _Optional[bool] = ..., hash_query_parameter: _Optional[str] = ...) -> None: ...

class ConnectionPool(_message.Message):
    __slots__ = ("max_connections", "connect_timeout_seconds", "http1_max_pending_requests", "http2_max_requests", "max_requests_per_connection", "max_retries", "idle_timeout_seconds")
    MAX_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HTTP1_MAX_PENDING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    HTTP2_MAX_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUESTS_PER_CONNECTION_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    max_connections: int
    connect_timeout_seconds: float
    http1_max_pending_requests: int
    http2_max_requests: int
    max_requests_per_connection: int
    max_retries: int
    idle_timeout_seconds: float
    def __init__(self, max_connections: _Optional[int] = ..., connect_timeout_seconds: _Optional[float] = ..., http1_max_pending_requests: _Optional[int] = ..., http2_max_requests: _Optional[int] = ..., max_requests_per_connection: _Optional[int] = ..., max_retries: _Optional[int] = ..., idle_timeout_seconds: _Optional[float] = ...) -> None: ...

class OutlierDetection(_message.Message):
    __slots__ = ("consecutive_5xx_errors", "consecutive_gateway_errors", "interval_seconds", "base_ejection_time_seconds", "max_ejection_percent", "min_health_percent", "enabled")
    CONSECUTIVE_5XX_ERRORS_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_GATEWAY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BASE_EJECTION_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_EJECTION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MIN_HEALTH_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    consecutive_5xx_errors: int
    consecutive_gateway_errors: int
    interval_seconds: float
    base_ejection_time_seconds: float
    max_ejection_percent: int
    min_health_percent: int
    enabled: bool
    def __init__(self, consecutive_5xx_errors: _Optional[int] = ..., consecutive_gateway_errors: _Optional[int] = ..., interval_seconds: _Optional[float] = ..., base_ejection_time_seconds: _Optional[float] = ..., max_ejection_percent: _Optional[int] = ..., min_health_percent: _Optional[int] = ..., enabled: _Optional[bool] = ...) -> None: ...

class TrafficPolicy(_message.Message):
    __slots__ = ("load_balancer", "connection_pool", "outlier_detection")
    LOAD_BALANCER_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_POOL_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_DETECTION_FIELD_NUMBER: _ClassVar[int]
    load_balancer: LoadBalancer
    connection_pool: ConnectionPool
    outlier_detection: OutlierDetection
    def __init__(self, load_balancer: _Optional[_Union[LoadBalancer, _Mapping]] = ..., connection_pool: _Optional[_Union[ConnectionPool, _Mapping]] = ..., outlier_detection: _Optional[_Union[OutlierDetection, _Mapping]] = ...) -> None: ...

class Subset(_message.Message):
    __slots__ = ("name", "labels", "traffic_policy")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    traffic_policy: TrafficPolicy
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., traffic_policy: _Optional[_Union[TrafficPolicy, _Mapping]] = ...) -> None: ...

class DestinationPolicy(_message.Message):
    __slots__ = ("host", "namespace", "source", "traffic_policy", "subsets")
    HOST_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_POLICY_FIELD_NUMBER: _ClassVar[int]
    SUBSETS_FIELD_NUMBER: _ClassVar[int]
    host: str
    namespace: str
    source: str
    traffic_policy: TrafficPolicy
    subsets: _containers.RepeatedCompositeFieldContainer[Subset]
    def __init__(self, host: _Optional[str] = ..., namespace: _Optional[str] = ..., source: _Optional[str] = ..., traffic_policy: _Optional[_Union[TrafficPolicy, _Mapping]] = ..., subsets: _Optional[_Iterable[_Union[Subset, _Mapping]]] = ...) -> None: ...

class KubeObject(_message.Message):
    __slots__ = ("kind", "api_version", "namespace", "name", "json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    api_version: str
    namespace: str
    name: str
    json: str
    def __init__(self, kind: _Optional[str] = ..., api_version: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class PodStatus(_message.Message):
    __slots__ = ("uid", "namespace", "name", "node", "ip", "labels", "annotations", "service_account", "owner", "ready", "phase", "ports")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    uid: str
    namespace: str
    name: str
    node: str
    ip: str
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    service_account: str
    owner: str
    ready: bool
    phase: str
    ports: _containers.RepeatedCompositeFieldContainer[ContainerPortStatus]
    def __init__(self, uid: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., node: _Optional[str] = ..., ip: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., service_account: _Optional[str] = ..., owner: _Optional[str] = ..., ready: _Optional[bool] = ..., phase: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[ContainerPortStatus, _Mapping]]] = ...) -> None: ...

class ContainerPortStatus(_message.Message):
    __slots__ = ("name", "port")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    port: int
    def __init__(self, name: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("subscriber_id", "type", "node", "namespace", "name", "last_version")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    type: SubscriberType
    node: str
    namespace: str
    name: str
    last_version: int
    def __init__(self, subscriber_id: _Optional[str] = ..., type: _Optional[_Union[SubscriberType, str]] = ..., node: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., last_version: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("nonce", "version", "error")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    nonce: str
    version: int
    error: str
    def __init__(self, nonce: _Optional[str] = ..., version: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("hello", "ack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("name", "address", "authorization", "route", "destination", "kube", "trust_bundle", "waypoint_authorization", "request_authn")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    KUBE_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    WAYPOINT_AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_AUTHN_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: Address
    authorization: Authorization
    route: RouteConfig
    destination: DestinationPolicy
    kube: KubeObject
    trust_bundle: TrustBundle
    waypoint_authorization: Authorization
    request_authn: RequestAuthn
    def __init__(self, name: _Optional[str] = ..., address: _Optional[_Union[Address, _Mapping]] = ..., authorization: _Optional[_Union[Authorization, _Mapping]] = ..., route: _Optional[_Union[RouteConfig, _Mapping]] = ..., destination: _Optional[_Union[DestinationPolicy, _Mapping]] = ..., kube: _Optional[_Union[KubeObject, _Mapping]] = ..., trust_bundle: _Optional[_Union[TrustBundle, _Mapping]] = ..., waypoint_authorization: _Optional[_Union[Authorization, _Mapping]] = ..., request_authn: _Optional[_Union[RequestAuthn, _Mapping]] = ...) -> None: ...

class TrustBundle(_message.Message):
    __slots__ = ("trust_domain", "roots_pem")
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ROOTS_PEM_FIELD_NUMBER: _ClassVar[int]
    trust_domain: str
    roots_pem: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, trust_domain: _Optional[str] = ..., roots_pem: _Optional[_Iterable[str]] = ...) -> None: ...

class CertificateRequest(_message.Message):
    __slots__ = ("csr", "validity_seconds", "identity")
    CSR_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    csr: str
    validity_seconds: int
    identity: str
    def __init__(self, csr: _Optional[str] = ..., validity_seconds: _Optional[int] = ..., identity: _Optional[str] = ...) -> None: ...

class CertificateResponse(_message.Message):
    __slots__ = ("cert_chain",)
    CERT_CHAIN_FIELD_NUMBER: _ClassVar[int]
    cert_chain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cert_chain: _Optional[_Iterable[str]] = ...) -> None: ...

class ConfigPush(_message.Message):
    __slots__ = ("version", "nonce", "full", "upserts", "removals")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    UPSERTS_FIELD_NUMBER: _ClassVar[int]
    REMOVALS_FIELD_NUMBER: _ClassVar[int]
    version: int
    nonce: str
    full: bool
    upserts: _containers.RepeatedCompositeFieldContainer[Resource]
    removals: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., nonce: _Optional[str] = ..., full: _Optional[bool] = ..., upserts: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., removals: _Optional[_Iterable[str]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("text", "source")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    text: str
    source: str
    def __init__(self, text: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("documents", "dry_run")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    dry_run: bool
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ObjectResult(_message.Message):
    __slots__ = ("object", "result", "error", "warning", "skipped")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    object: str
    result: str
    error: str
    warning: str
    skipped: str
    def __init__(self, object: _Optional[str] = ..., result: _Optional[str] = ..., error: _Optional[str] = ..., warning: _Optional[str] = ..., skipped: _Optional[str] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("results", "version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ObjectResult]
    version: int
    def __init__(self, results: _Optional[_Iterable[_Union[ObjectResult, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class PodReport(_message.Message):
    __slots__ = ("reporter", "full", "pods", "removed")
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    reporter: str
    full: bool
    pods: _containers.RepeatedCompositeFieldContainer[PodStatus]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reporter: _Optional[str] = ..., full: _Optional[bool] = ..., pods: _Optional[_Iterable[_Union[PodStatus, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class SubscriberStatus(_message.Message):
    __slots__ = ("subscriber_id", "type", "node", "connected", "sent_version", "acked_version", "last_nack", "connected_at", "pushes", "name", "namespace")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    SENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACKED_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_NACK_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    PUSHES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    type: SubscriberType
    node: str
    connected: bool
    sent_version: int
    acked_version: int
    last_nack: str
    connected_at: float
    pushes: int
    name: str
    namespace: str
    def __init__(self, subscriber_id: _Optional[str] = ..., type: _Optional[_Union[SubscriberType, str]] = ..., node: _Optional[str] = ..., connected: _Optional[bool] = ..., sent_version: _Optional[int] = ..., acked_version: _Optional[int] = ..., last_nack: _Optional[str] = ..., connected_at: _Optional[float] = ..., pushes: _Optional[int] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ProxyStatusResponse(_message.Message):
    __slots__ = ("version", "subscribers")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    version: int
    subscribers: _containers.RepeatedCompositeFieldContainer[SubscriberStatus]
    def __init__(self, version: _Optional[int] = ..., subscribers: _Optional[_Iterable[_Union[SubscriberStatus, _Mapping]]] = ...) -> None: ...

class DebugRequest(_message.Message):
    __slots__ = ("what",)
    WHAT_FIELD_NUMBER: _ClassVar[int]
    what: str
    def __init__(self, what: _Optional[str] = ...) -> None: ...

class DebugResponse(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...
