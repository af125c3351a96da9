"""Loading YAML streams: documents fail one at a time, unknown kinds are skipped, bad YAML and
abusive input are refused cleanly, unknown fields are warned about, and nothing raises."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.k8s import (
    Deployment,
    EnvVar,
    InvalidObject,
    K8sError,
    LimitExceeded,
    LoadResult,
    Namespace,
    Service,
    UnsupportedKind,
    YamlError,
    limits,
    load_documents,
    yamlstream,
)

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - port: 80
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: busybox
"""


def load(text: str, **kwargs: str) -> LoadResult:
    return load_documents(textwrap.dedent(text), "test.yaml", **kwargs)


def names(result: LoadResult) -> list[str]:
    return [obj.meta.name for obj in result.objects]


def test_uses_libyaml_when_available() -> None:
    if yaml.__with_libyaml__:
        assert yamlstream.LOADER_NAME == "CSafeLoader"


def test_multi_document_stream_skips_empty_documents() -> None:
    text = (
        "---\n"
        + SERVICE.format(name="a")
        + "---\n---\n# only a comment\n---\n"
        + DEPLOYMENT.format(name="b")
        + "...\n"
    )
    result = load(text)
    assert result.ok and result.warnings == []
    assert names(result) == ["a", "b"]
    assert isinstance(result.objects[0], Service) and isinstance(result.objects[1], Deployment)


def test_empty_and_comment_only_streams_load_nothing() -> None:
    for text in ("", "\n", "# nothing\n", "---\n", "---\n...\n---\n"):
        result = load(text)
        assert (result.objects, result.errors, result.warnings) == ([], [], [])


def test_a_bad_document_fails_alone() -> None:
    bad = DEPLOYMENT.format(name="bad").replace(
        "image: busybox", "image: busybox\n        ports: [{containerPort: 70000}]"
    )
    text = "---\n".join([SERVICE.format(name="a"), bad, SERVICE.format(name="c")])
    result = load(text)
    assert names(result) == ["a", "c"]
    (error,) = result.errors
    assert isinstance(error, InvalidObject)
    assert error.source == "test.yaml, document 2"
    assert str(error) == (
        "Deployment default/bad (test.yaml, document 2): "
        "spec.template.spec.containers[0].ports[0].containerPort: "
        "must be an integer between 1 and 65535, got 70000"
    )


def test_unknown_kinds_are_reported_and_skipped() -> None:
    text = """\
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings, namespace: shop}
    data: {a: b}
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews}
    spec: {hosts: [reviews]}
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: route}
    ---
    apiVersion: v1
    kind: Namespace
    metadata: {name: shop}
    """
    result = load(text)
    assert [type(obj) for obj in result.objects] == [Namespace]
    assert [(e.kind, e.api_version, e.name) for e in result.skipped] == [
        ("ConfigMap", "v1", "shop/settings"),
        ("VirtualService", "networking.istio.io/v1", "reviews"),
        ("HTTPRoute", "gateway.networking.k8s.io/v1", "route"),
    ]
    assert all(isinstance(e, UnsupportedKind) for e in result.errors)
    assert result.failures == [] and not result.ok
    assert result.warnings == []  # unknown kinds' fields are not inspected


def test_missing_kind_apiversion_or_name() -> None:
    text = """\
    apiVersion: v1
    metadata: {name: a}
    ---
    kind: Service
    metadata: {name: b}
    ---
    apiVersion: v1
    kind: Service
    spec: {ports: [{port: 80}]}
    ---
    - not
    - an object
    ---
    just a string
    """
    result = load(text)
    assert result.objects == []
    fields = [(e.field, e.rule) for e in result.errors if isinstance(e, InvalidObject)]
    assert fields == [
        ("kind", "is required"),
        ("apiVersion", "is required"),
        ("metadata.name", "is required"),
        ("", "a document must be a Kubernetes object (a mapping with apiVersion, kind, metadata)"),
        ("", "a document must be a Kubernetes object (a mapping with apiVersion, kind, metadata)"),
    ]
    assert str(result.errors[0]) == "object a (test.yaml, document 1): kind: is required"
    assert (
        str(result.errors[1])
        == "Service default/b (test.yaml, document 2): apiVersion: is required"
    )


def test_lists_are_expanded() -> None:
    text = """\
    apiVersion: v1
    kind: List
    items:
    - apiVersion: v1
      kind: ServiceAccount
      metadata: {name: a}
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: cm}
    - apiVersion: v1
      kind: ServiceAccount
      metadata: {name: Bad}
    ---
    apiVersion: v1
    kind: ServiceList
    items:
    - metadata: {name: svc}
      spec: {ports: [{port: 80}]}
    ---
    apiVersion: v1
    kind: List
    items: []
    ---
    apiVersion: v1
    kind: List
    items: {a: b}
    """
    result = load(text)
    assert [obj.key for obj in result.objects] == [
        ("ServiceAccount", "default", "a"),
        ("Service", "default", "svc"),
    ]
    skipped, bad, not_a_list = result.errors
    assert (
        isinstance(skipped, UnsupportedKind) and skipped.source == "test.yaml, document 1, items[1]"
    )
    assert isinstance(bad, InvalidObject) and bad.source == "test.yaml, document 1, items[2]"
    assert isinstance(not_a_list, InvalidObject) and not_a_list.field == "items"
    assert (
        str(not_a_list)
        == 'List (unnamed) (test.yaml, document 4): items: must be a list, got {"a": "b"}'
    )


def test_default_namespace_and_explicit_namespaces() -> None:
    text = (
        SERVICE.format(name="a")
        + "---\n"
        + SERVICE.format(name="b").replace("  name: b\n", "  name: b\n  namespace: other\n")
    )
    result = load_documents(text, "x.yaml", default_namespace="shop")
    assert [obj.key for obj in result.objects] == [
        ("Service", "shop", "a"),
        ("Service", "other", "b"),
    ]


def test_env_field_refs_are_kept_for_the_runtime_to_fill() -> None:
    text = DEPLOYMENT.format(name="web") + textwrap.indent(
        textwrap.dedent(
            """\
            env:
            - name: POD_NAME
              valueFrom:
                fieldRef: {fieldPath: metadata.name}
            - name: POD_IP
              valueFrom: {fieldRef: {fieldPath: status.podIP}}
            - name: TOKEN
              valueFrom: {secretKeyRef: {name: s, key: token}}
            """
        ),
        "        ",
    )
    result = load(text)
    assert result.errors == []
    deployment = result.objects[0]
    assert isinstance(deployment, Deployment)
    assert deployment.template.spec.containers[0].env == (
        EnvVar("POD_NAME", None, "metadata.name"),
        EnvVar("POD_IP", None, "status.podIP"),
        EnvVar("TOKEN", ""),
    )
    assert result.warnings == [
        "Deployment default/web (test.yaml, document 1): spec.template.spec.containers[0]"
        ".env[2].valueFrom.secretKeyRef is not supported here; TOKEN is set to an empty string"
    ]


# --- unknown and unmodelled fields ------------------------------------------------------


def test_unknown_fields_are_warnings_with_their_full_path() -> None:
    text = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      lables: {app: web}
    spec:
      replica: 3
      selector:
        matchLabel: {app: web}
        matchLabels: {app: web}
      template:
        metadata:
          labels: {app: web}
        spec:
          containers:
          - name: main
            image: busybox
            imagePullPolicy: Always
            env:
            - {name: A, vaule: x}
            ports:
            - {containerPort: 80, portName: http}
            readinessProbe:
              httpGet: {port: 80, pth: /}
              periodSecond: 3
    statuss: {}
    """
    result = load(text)
    assert result.errors == []
    prefix = "Deployment default/web (test.yaml, document 1): unknown field "
    assert result.warnings == [
        prefix + path
        for path in (
            "statuss",
            "metadata.lables",
            "spec.replica",
            "spec.selector.matchLabel",
            "spec.template.spec.containers[0].env[0].vaule",
            "spec.template.spec.containers[0].ports[0].portName",
            "spec.template.spec.containers[0].readinessProbe.periodSecond",
            "spec.template.spec.containers[0].readinessProbe.httpGet.pth",
        )
    ]
    deployment = result.objects[0]
    assert isinstance(deployment, Deployment) and deployment.replicas == 1


def test_a_typo_that_hides_a_required_field_gives_both_warning_and_error() -> None:
    text = DEPLOYMENT.format(name="web").replace("      containers:", "      container:")
    result = load(text)
    assert result.objects == []
    assert result.warnings == [
        "Deployment default/web (test.yaml, document 1): unknown field spec.template.spec.container"
    ]
    (error,) = result.errors
    assert isinstance(error, InvalidObject)
    assert (error.field, error.rule) == (
        "spec.template.spec.containers",
        "must list at least one container",
    )


def test_service_unknown_fields() -> None:
    text = (
        SERVICE.format(name="web").replace("  - port: 80\n", "  - port: 80\n    target: 8080\n")
        + "  clusterIp: None\n"
    )
    result = load(text)
    assert result.errors == []
    assert [w.rsplit(": ", 1)[1] for w in result.warnings] == [
        "unknown field spec.clusterIp",
        "unknown field spec.ports[0].target",
    ]


def test_legitimate_kubernetes_fields_are_accepted_silently() -> None:
    text = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      namespace: shop
      uid: 0b4a8f4e-1111-2222-3333-444455556666
      resourceVersion: "12345"
      generation: 3
      creationTimestamp: "2024-01-01T00:00:00Z"
      managedFields: [{manager: kubectl, operation: Update}]
      ownerReferences: []
      finalizers: [example.com/cleanup]
      annotations: {deployment.kubernetes.io/revision: "3"}
    spec:
      replicas: 2
      revisionHistoryLimit: 5
      progressDeadlineSeconds: 600
      minReadySeconds: 0
      strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}}
      selector: {matchLabels: {app: web}}
      template:
        metadata:
          labels: {app: web}
          creationTimestamp: null
        spec:
          terminationGracePeriodSeconds: 45
          nodeSelector: {kubernetes.io/os: linux}
          affinity: {podAntiAffinity: {}}
          tolerations: [{key: k, operator: Exists}]
          securityContext: {runAsNonRoot: true}
          dnsPolicy: ClusterFirst
          schedulerName: default-scheduler
          volumes: [{name: tmp, emptyDir: {}}]
          initContainers: [{name: init, image: busybox, command: [true]}]
          imagePullSecrets: [{name: regcred}]
          containers:
          - name: main
            image: nginx
            imagePullPolicy: IfNotPresent
            resources: {limits: {cpu: 500m, memory: 128Mi}, requests: {cpu: 100m}}
            volumeMounts: [{name: tmp, mountPath: /tmp}]
            securityContext: {allowPrivilegeEscalation: false}
            livenessProbe: {httpGet: {port: admin, path: /live}}
            startupProbe: {tcpSocket: {port: 80}}
            lifecycle: {preStop: {exec: {command: [sleep, "5"]}}}
            terminationMessagePath: /dev/termination-log
            terminationMessagePolicy: File
            envFrom: [{configMapRef: {name: cm}}]
            ports:
            - {name: http, containerPort: 80, protocol: TCP, hostPort: 8080}
    status:
      replicas: 2
      readyReplicas: 2
      conditions: [{type: Available, status: "True"}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec:
      type: ClusterIP
      clusterIP: 10.96.1.2
      clusterIPs: [10.96.1.2]
      ipFamilies: [IPv4]
      ipFamilyPolicy: SingleStack
      sessionAffinity: None
      internalTrafficPolicy: Cluster
      publishNotReadyAddresses: false
      selector: {app: web}
      ports: [{name: http, port: 80, targetPort: http, protocol: TCP, appProtocol: http}]
    status: {loadBalancer: {}}
    ---
    apiVersion: v1
    kind: ServiceAccount
    metadata: {name: web, namespace: shop}
    automountServiceAccountToken: false
    imagePullSecrets: [{name: regcred}]
    secrets: [{name: token}]
    ---
    apiVersion: v1
    kind: Namespace
    metadata:
      name: shop
      labels: {istio.io/dataplane-mode: ambient}
    spec: {finalizers: [kubernetes]}
    status: {phase: Active}
    """
    result = load(text)
    assert result.errors == []
    assert result.warnings == []
    assert [obj.kind for obj in result.objects] == [
        "Deployment",
        "Service",
        "ServiceAccount",
        "Namespace",
    ]
    deployment = result.objects[0]
    assert isinstance(deployment, Deployment)
    assert deployment.template.spec.termination_grace_period_seconds == 45
    assert deployment.template.spec.containers[0].readiness_probe is None


# --- YAML problems ------------------------------------------------------------------------


def test_syntax_error_keeps_the_documents_before_it() -> None:
    text = (
        SERVICE.format(name="a")
        + "---\n"
        + SERVICE.format(name="b")
        + "---\nmetadata: {name: [x\nkind: Service\n"
    )
    result = load(text)
    assert names(result) == ["a", "b"]
    (error,) = result.errors
    assert isinstance(error, YamlError)
    assert error.file == "test.yaml"
    assert error.document == 3
    assert error.line is not None and error.line >= 19
    assert error.column is not None
    assert str(error).startswith(f"test.yaml:{error.line}:{error.column}: invalid YAML: ")


def test_syntax_error_in_the_first_document() -> None:
    result = load("apiVersion: v1\nkind: Service\n  metadata: x\n")
    assert result.objects == []
    (error,) = result.errors
    assert isinstance(error, YamlError)
    assert (error.line, error.column) == (3, 11)
    assert str(error).startswith("test.yaml:3:11: invalid YAML: mapping values are not allowed")
    assert str(error).endswith("(in document 1)")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "a: !!python/object:os.system [echo]\n",
            "unsupported YAML tag tag:yaml.org,2002:python/object:os.system",
        ),
        ("a: !Ref b\n", "unsupported YAML tag !Ref"),
        ("a: !!set {x}\n", "unsupported YAML tag tag:yaml.org,2002:set"),
        ("created: 2024-13-45\n", 'cannot read "2024-13-45" as timestamp'),
        ("a: !!int x\n", 'cannot read "x" as int'),
        ("a: !!binary a\n", 'cannot read "a" as binary'),
        ("a: !!int ''\n", 'cannot read "" as int'),
        ("a: !!float ''\n", "as float"),
        ("a: !!bool maybe\n", "as bool"),
        ("a: !!timestamp x\n", "as timestamp"),
        ("a: *nowhere\n", "alias *nowhere refers to no (completed) anchor"),
        ("? [a, b]\n: c\n", "a mapping key must be a scalar"),
        ("a: &x {b: *x}\n", "alias *x refers to no (completed) anchor"),
        ("<<: [1, 2]\n", "'<<' merge key"),
    ],
)
def test_refused_yaml_constructs_fail_their_document_only(text: str, words: str) -> None:
    result = load(text + "---\n" + SERVICE.format(name="after"))
    assert names(result) == ["after"]
    (error,) = result.errors
    assert isinstance(error, YamlError), error
    assert words in error.problem
    assert error.document == 1 and error.line == 1


def test_control_characters_and_invalid_unicode() -> None:
    for text in ("a: \x01\n", "a: \ud800\n", "\x00"):
        result = load_documents(text, "bin.yaml")
        assert result.objects == []
        (error,) = result.errors
        assert isinstance(error, YamlError)
        assert str(error).startswith("bin.yaml")


def test_anchors_aliases_and_merge_keys_work() -> None:
    text = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      labels: &labels {app: web, tier: front}
    spec:
      selector: {matchLabels: *labels}
      template:
        metadata:
          labels:
            <<: *labels
            version: v1
        spec:
          containers:
          - &main {name: main, image: busybox, command: [sleep, infinity]}
          - <<: *main
            name: second
    """
    result = load(text)
    assert result.errors == [] and result.warnings == []
    deployment = result.objects[0]
    assert isinstance(deployment, Deployment)
    assert deployment.template.labels == {"app": "web", "tier": "front", "version": "v1"}
    assert [c.name for c in deployment.template.spec.containers] == ["main", "second"]
    assert deployment.template.spec.containers[1].command == ("sleep", "infinity")


def test_merge_key_precedence_is_yaml_s() -> None:
    text = "a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc:\n  <<: [*a, *b]\n  y: 3\n"
    warnings: list[str] = []
    (document,) = list(yamlstream.iter_documents(text, "m.yaml", warnings.append))
    assert isinstance(document, yamlstream.Document)
    assert isinstance(document.value, dict)
    assert document.value["c"] == {"x": 1, "y": 3, "z": 2}
    assert warnings == []


def test_duplicate_keys_warn_and_the_last_value_wins() -> None:
    text = SERVICE.format(name="first") + "metadata:\n  name: second\n"
    result = load(text)
    assert names(result) == ["second"]
    assert result.warnings == [
        'test.yaml, document 1, line 9: duplicate key "metadata" in a mapping; the last value is used'
    ]


def test_scalars_are_typed_like_kubernetes_yaml() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          labels: {version: 1.0}
        spec: {ports: [{port: 80}]}
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: web2
          labels: {enabled: yes}
        spec: {ports: [{port: 80}]}
        """
    )
    result = load(text)
    assert result.objects == []
    assert [e.rule for e in result.errors if isinstance(e, InvalidObject)] == [
        "label values must be strings (quote it in YAML)",
        "label values must be strings (quote it in YAML)",
    ]
    assert str(result.errors[1]).endswith(
        "metadata.labels[enabled]: label values must be strings (quote it in YAML), got true"
    )


# --- limits -------------------------------------------------------------------------------


def test_deep_nesting_is_refused_and_other_documents_load() -> None:
    deep = (
        "a: " + "[" * (limits.MAX_NESTING_DEPTH + 10) + "]" * (limits.MAX_NESTING_DEPTH + 10) + "\n"
    )
    result = load(SERVICE.format(name="a") + "---\n" + deep + "---\n" + SERVICE.format(name="c"))
    assert names(result) == ["a", "c"]
    (error,) = result.errors
    assert isinstance(error, LimitExceeded)
    assert error.limit == "MAX_NESTING_DEPTH" and error.maximum == limits.MAX_NESTING_DEPTH
    assert str(error) == (
        "test.yaml, document 2, line 10: the document nests lists and mappings too deeply; "
        f"the limit is {limits.MAX_NESTING_DEPTH} (MAX_NESTING_DEPTH)"
    )


def test_nesting_at_the_limit_is_fine() -> None:
    depth = limits.MAX_NESTING_DEPTH - 1  # plus the top-level mapping
    text = "a: " + "[" * depth + "]" * depth + "\n"
    (document,) = list(yamlstream.iter_documents(text, "ok.yaml", lambda _: None))
    assert isinstance(document, yamlstream.Document)


def test_block_style_nesting_is_limited_too() -> None:
    text = (
        "".join("  " * i + f"k{i}:\n" for i in range(limits.MAX_NESTING_DEPTH + 1))
        + "  " * (limits.MAX_NESTING_DEPTH + 1)
        + "v\n"
    )
    result = load(text)
    assert isinstance(result.errors[0], LimitExceeded)


def test_deep_nesting_through_aliases_is_refused() -> None:
    half = limits.MAX_NESTING_DEPTH - 10
    text = "a: &deep " + "[" * half + "]" * half + "\nb: " + "[" * 20 + "*deep" + "]" * 20 + "\n"
    result = load(text)
    (error,) = result.errors
    assert isinstance(error, LimitExceeded) and error.limit == "MAX_NESTING_DEPTH"


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    result = load("\n".join(lines) + "\n---\n" + SERVICE.format(name="after"))
    assert names(result) == ["after"]
    (error,) = result.errors
    assert isinstance(error, LimitExceeded)
    assert error.limit == "MAX_DOCUMENT_NODES"
    assert "aliases count once per use" in str(error)


def test_huge_streams_are_refused_before_parsing() -> None:
    text = "a: " + "x" * (limits.MAX_STREAM_BYTES + 1)
    result = load_documents(text, "huge.yaml")
    assert result.objects == []
    (error,) = result.errors
    assert isinstance(error, LimitExceeded) and error.limit == "MAX_STREAM_BYTES"
    assert str(error) == (
        f"huge.yaml: the YAML text is too large; the limit is {limits.MAX_STREAM_BYTES} (MAX_STREAM_BYTES)"
    )


def test_stream_size_counts_utf8_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlstream, "MAX_STREAM_BYTES", 100)

    def decode(text: str) -> list[object]:
        return list(yamlstream.iter_documents(text, "x.yaml", lambda _: None))

    assert isinstance(decode("a: " + "é" * 48)[0], yamlstream.Document)  # 51 chars, 99 bytes
    (error,) = decode("a: " + "é" * 49)  # 52 characters, 101 bytes
    assert isinstance(error, LimitExceeded)


def test_too_many_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlstream, "MAX_DOCUMENTS", 3)
    text = "---\n".join(SERVICE.format(name=f"s{i}") for i in range(5))
    result = load_documents(text, "many.yaml")
    assert names(result) == ["s0", "s1", "s2"]
    (error,) = result.errors
    assert isinstance(error, LimitExceeded) and error.limit == "MAX_DOCUMENTS"


# --- never raises -------------------------------------------------------------------------


def check_result(result: LoadResult) -> None:
    assert isinstance(result, LoadResult)
    for error in result.errors:
        assert isinstance(error, K8sError)
        assert str(error)
    for warning in result.warnings:
        assert isinstance(warning, str)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    check_result(load_documents(text, "fuzz.yaml"))


YAML_ALPHABET = st.sampled_from(
    [
        *"abc:-[]{},&*!|>'\"#%@`?<=\n\t ",
        "---\n",
        "...\n",
        "<<: ",
        "- ",
        "  ",
        "!!int ",
        "!!str ",
        "&a ",
        "*a",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(YAML_ALPHABET, max_size=60).map("".join))
def test_yaml_like_text_never_raises(text: str) -> None:
    check_result(load_documents(text, "fuzz.yaml"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

FIELD_PATHS = [
    ("kind",),
    ("apiVersion",),
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("spec",),
    ("spec", "replicas"),
    ("spec", "selector"),
    ("spec", "selector", "matchLabels"),
    ("spec", "selector", "matchExpressions"),
    ("spec", "template"),
    ("spec", "template", "metadata"),
    ("spec", "template", "metadata", "labels"),
    ("spec", "template", "spec"),
    ("spec", "template", "spec", "containers"),
    ("spec", "template", "spec", "restartPolicy"),
    ("spec", "template", "spec", "serviceAccountName"),
    ("spec", "template", "spec", "terminationGracePeriodSeconds"),
    ("spec", "template", "spec", "containers", 0),
    ("spec", "template", "spec", "containers", 0, "name"),
    ("spec", "template", "spec", "containers", 0, "image"),
    ("spec", "template", "spec", "containers", 0, "command"),
    ("spec", "template", "spec", "containers", 0, "env"),
    ("spec", "template", "spec", "containers", 0, "ports"),
    ("spec", "template", "spec", "containers", 0, "readinessProbe"),
    ("spec", "template", "spec", "containers", 0, "workingDir"),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(FIELD_PATHS), json_values), min_size=1, max_size=4),
    st.sampled_from(["Deployment", "Pod", "Service", "List"]),
)
def test_arbitrary_values_in_kubernetes_shaped_documents_never_raise(
    edits: list[tuple[tuple[str | int, ...], object]], kind: str
) -> None:
    doc: dict[str, object] = yaml.safe_load(DEPLOYMENT.format(name="web"))
    doc["kind"] = kind
    if kind in ("Pod", "Service"):
        doc["apiVersion"] = "v1"
    for path, value in edits:
        target: object = doc
        for step in path[:-1]:
            if (
                isinstance(target, dict)
                and isinstance(step, str)
                and isinstance(target.get(step), (dict, list))
            ):
                target = target[step]
            elif isinstance(target, list) and isinstance(step, int) and step < len(target):
                target = target[step]
            else:
                break
        else:
            last = path[-1]
            if isinstance(target, dict) and isinstance(last, str):
                target[last] = value
            elif isinstance(target, list) and isinstance(last, int) and last < len(target):
                target[last] = value
    if kind == "List":
        doc["items"] = [dict(doc, kind="Deployment")]
    text = yaml.safe_dump(doc)
    check_result(load_documents(text, "shaped.yaml"))


def test_a_refused_document_is_still_reported_when_a_syntax_error_follows() -> None:
    result = load("a: !Ref x\nb: [\n")
    assert [type(e) for e in result.errors] == [YamlError, YamlError]
    assert "unsupported YAML tag !Ref" in str(result.errors[0])
