"""The Helm chart at the repository root: lint, render, package, and install on the real stack.

Offline (helm only): every ci/*-values.yaml lints and renders; values are documented and
schema-checked; every pod is restricted; RBAC has no wildcards; the packaged chart holds only
chart files; the monitoring kinds (whose CRDs the local API server lacks) are validated here.

On the local stack: the rendered manifests pass the API server's own validation (server-side
dry run, CRDs applied); `helm install` creates every object; `helm upgrade` and `helm uninstall`
leave nothing behind; and the real operator, running under exactly the chart's RBAC, reconciles
the default stack to Ready.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailor.core import constants
from tailor.core.rules import specs
from tailor.devstack import artifacts, ports, probes, toolchain

ROOT = Path(__file__).resolve().parents[2]
CI_VALUES = sorted((ROOT / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.36.0"
MONITORING_GROUP = "monitoring.coreos.com/v1"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
Manifest = dict[str, Any]


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm_binary() -> Path:
    """helm from the devstack's build cache (built once if missing); no cluster needed."""
    return artifacts.Toolbox().helm


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if args[0] in ("template", "lint"):
        # The local stack's version, as Argo CD passes its cluster's (helm's own default is newer).
        args = (*args, "--kube-version", KUBE_VERSION)
    result = subprocess.run([str(helm), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def render(
    helm: Path,
    *values_files: Path,
    sets: tuple[str, ...] = (),
    namespace: str = "shop",
    release: str = "rel",
) -> list[Manifest]:
    args = ["template", release, ".", "--namespace", namespace]
    for values_file in values_files:
        args += ["--values", str(values_file)]
    for assignment in sets:
        args += ["--set", assignment]
    output = run_helm(helm, *args).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(object name, pod spec) of every workload and bare pod."""
    pods = []
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            pods.append((manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]))
        elif manifest["kind"] == "Pod":
            pods.append((manifest["metadata"]["name"], manifest["spec"]))
    return pods


def values_file_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


# --- lint, values, schema ----------------------------------------------------------------------


def test_ci_values_cover_the_tested_configurations() -> None:
    assert {values_file_id(p) for p in CI_VALUES} >= {
        "default", "namespaced", "external-redis", "operator-only", "monitoring",
    }  # fmt: skip


@pytest.mark.parametrize("values_file", CI_VALUES, ids=values_file_id)
def test_helm_lint_is_clean(helm_binary: Path, values_file: Path) -> None:
    result = run_helm(helm_binary, "lint", ".", "--strict", "--values", str(values_file))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def test_values_schema_rejects_unknown_keys_with_their_path(helm_binary: Path) -> None:
    typo_in_chart = run_helm(helm_binary, "template", "r", ".", "--set", "operator.replicas=2", check=False)
    assert typo_in_chart.returncode != 0
    assert "/operator" in typo_in_chart.stderr
    assert "replicas" in typo_in_chart.stderr
    # stack.spec carries the CRD's schema, so a typo there fails before anything is applied.
    typo_in_spec = run_helm(
        helm_binary, "template", "r", ".", "--set", "stack.spec.kafka.bootstrapServer=kafka:9092", check=False
    )
    assert typo_in_spec.returncode != 0
    assert "/stack/spec/kafka" in typo_in_spec.stderr
    assert "bootstrapServer" in typo_in_spec.stderr
    wrong_type = run_helm(
        helm_binary, "template", "r", ".", "--set", "stack.spec.workers.replicas=-1", check=False
    )
    assert wrong_type.returncode != 0
    assert "/stack/spec/workers/replicas" in wrong_type.stderr


def test_values_schema_carries_the_crds_stack_spec() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_values_schema
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    current = json.loads((ROOT / "values.schema.json").read_text())
    assert current == sync_values_schema.synced_values_schema(current), (
        "values.schema.json is behind crds/: run `python scripts/sync_values_schema.py`"
    )
    spec = current["properties"]["stack"]["properties"]["spec"]
    assert spec["additionalProperties"] is False
    assert spec["properties"]["kafka"]["additionalProperties"] is False
    # Free-form parts of the CRD (resources) stay open.
    assert "additionalProperties" not in spec["properties"]["workers"]["properties"]["resources"]


def test_every_schema_object_is_closed() -> None:
    """additionalProperties: false everywhere the chart defines the keys (not free-form maps)."""
    schema = json.loads((ROOT / "values.schema.json").read_text())
    open_objects: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        declared = node.get("type") == "object" and "properties" in node
        if (
            declared
            and "additionalProperties" not in node
            and "x-kubernetes-preserve-unknown-fields" not in node
        ):
            open_objects.append(path)
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}")
        for name, child in node.get("definitions", {}).items():
            walk(child, f"definitions.{name}")

    walk(schema, "")
    assert open_objects == []


# Subtrees documented as a whole by the comment on their parent key.
_DOCUMENTED_AS_A_WHOLE = (
    "stack.spec.",
    "operator.resources.",
    "operator.livenessProbe.",
    "monitoring.dashboard.labels.",
)


def _value_paths() -> list[tuple[str, int]]:
    """(dotted path, line index) of every key in values.yaml, in order."""
    lines = (ROOT / "values.yaml").read_text().splitlines()
    enclosing: list[tuple[int, str]] = []  # (indent, key) of the keys around the current line
    paths = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while enclosing and enclosing[-1][0] >= indent:
            enclosing.pop()
        paths.append((".".join([k for _, k in enclosing] + [key]), number))
        enclosing.append((indent, key))
    return paths


def test_every_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    lines = (ROOT / "values.yaml").read_text().splitlines()
    undocumented = []
    for path, number in _value_paths():
        if path.startswith(_DOCUMENTED_AS_A_WHOLE):
            continue
        previous = number - 1
        while previous >= 0 and lines[previous].strip().startswith("#"):
            previous -= 1
        comment = [line.strip() for line in lines[previous + 1 : number]]
        if not comment or not comment[0].startswith(f"# {path} --"):
            undocumented.append(path)
    assert undocumented == []
    assert len(_value_paths()) > 40, "the walk above must see the whole file"


def test_values_are_camel_case() -> None:
    # Label keys are data (grafana_dashboard), not value names.
    names = [
        path.rsplit(".", 1)[-1]
        for path, _ in _value_paths()
        if not path.startswith("monitoring.dashboard.labels.")
    ]
    assert names
    assert [name for name in names if not re.fullmatch(r"[a-z][A-Za-z0-9]*", name)] == []


# --- rendered objects ---------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", CI_VALUES, ids=values_file_id)
def test_every_pod_runs_under_the_restricted_pod_security_standard(
    helm_binary: Path, values_file: Path
) -> None:
    manifests = render(helm_binary, values_file)
    pods = pod_specs(manifests)
    assert pods, "the chart always has the operator"
    for name, pod in pods:
        pod_security = pod["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(host_namespace), name
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, name
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["runAsNonRoot"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security.get("privileged", False) is False, name
            assert container.get("resources", {}).get("requests"), f"{name} has no resource requests"


def test_pods_run_as_the_images_user(helm_binary: Path) -> None:
    """The chart's UID, the image's USER and the operator's children all agree (10001)."""
    values = yaml.safe_load((ROOT / "values.yaml").read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, flags=re.MULTILINE)
    assert user, "the Dockerfile must switch to a numeric user (runAsNonRoot checks it)"
    assert int(user.group(1)) == values["podSecurity"]["runAsUser"]
    assert int(user.group(2)) == values["podSecurity"]["runAsGroup"]
    operator_builders = pytest.importorskip("tailor_operator.builders")
    assert values["podSecurity"]["runAsUser"] == operator_builders.RUN_AS_USER
    deployment = one(render(helm_binary), "Deployment")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def test_operator_deployment_is_a_single_recreated_replica_with_a_liveness_probe(helm_binary: Path) -> None:
    deployment = one(render(helm_binary), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    container = one_container(spec["template"]["spec"])
    assert container["args"] == ["operator"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    # The probe and the Service's target port are the ports the operator is told to listen on.
    assert env["TAILOR_OPERATOR_METRICS_PORT"] == str(ports["metrics"])
    assert env["TAILOR_OPERATOR_LIVENESS_URL"] == f"http://0.0.0.0:{ports['health']}/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env["TAILOR_OPERATOR_NAMESPACE"] == "shop", "the release namespace only, by default"
    assert "TAILOR_OPERATOR_IMAGE_ALLOWLIST" not in env
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/tmp" in mounts, "a read-only root filesystem needs a writable /tmp"


def one_container(pod: Manifest) -> Manifest:
    assert len(pod["containers"]) == 1
    container: Manifest = pod["containers"][0]
    return container


def test_operator_settings_match_the_operator(helm_binary: Path) -> None:
    """Every TAILOR_OPERATOR_* variable the chart sets is a field of the operator's settings."""
    operator_settings = pytest.importorskip("tailor_operator.settings")
    fields = {f"TAILOR_OPERATOR_{name.upper()}" for name in operator_settings.OperatorSettings.model_fields}
    for values_file in CI_VALUES:
        container = one_container(
            one(render(helm_binary, values_file), "Deployment")["spec"]["template"]["spec"]
        )
        chart_settings = {e["name"] for e in container["env"] if e["name"].startswith("TAILOR_OPERATOR_")}
        assert chart_settings <= fields, values_file.name


def _rules(manifests: list[Manifest]) -> list[Manifest]:
    return [
        rule
        for kind in ("ClusterRole", "Role")
        for role in by_kind(manifests, kind)
        for rule in role["rules"]
    ]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=values_file_id)
def test_rbac_is_least_privilege(helm_binary: Path, values_file: Path) -> None:
    manifests = render(helm_binary, values_file)
    for rule in _rules(manifests):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not set(rule["resources"]) & {
            "pods/exec",
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        }
        assert "update" not in rule["verbs"], "children are applied server-side; nothing needs update"
        if "secrets" in rule["resources"]:
            # Read by name only (never listed), limited to rbac.secretNames when set; created: a managed
            # Redis' generated password.
            assert rule["verbs"] in (["get", "create"], ["get"], ["create"]), "Secrets are read by name only"
            assert rule["verbs"] != ["get"] or rule["resourceNames"], rule
        if "escalate" in rule["verbs"] or "bind" in rule["verbs"] or "impersonate" in rule["verbs"]:
            pytest.fail(f"privilege-escalating verb in {rule}")


def _operator_objects(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["metadata"]["labels"][constants.LABEL_COMPONENT] == "operator"]


@pytest.mark.parametrize(
    ("sets", "watched"),
    [((), ["shop"]), (("operator.watchNamespaces={checkout,outlet}",), ["checkout", "outlet"])],
    ids=["release-namespace", "listed"],
)
def test_by_default_the_operator_is_granted_only_the_namespaces_it_watches(
    helm_binary: Path, sets: tuple[str, ...], watched: list[str]
) -> None:
    manifests = _operator_objects(render(helm_binary, sets=sets, namespace="shop"))
    assert by_kind(manifests, "ClusterRole") == []
    assert by_kind(manifests, "ClusterRoleBinding") == []
    assert by_kind(manifests, "ClusterKopfPeering") == []
    for kind in ("Role", "RoleBinding", "KopfPeering"):
        assert sorted(m["metadata"]["namespace"] for m in by_kind(manifests, kind)) == watched, kind
    for binding in by_kind(manifests, "RoleBinding"):
        assert binding["subjects"][0]["namespace"] == "shop", "the operator's account, where it runs"
    for role in by_kind(manifests, "Role"):
        peering = [rule for rule in role["rules"] if rule["apiGroups"] == ["kopf.dev"]]
        assert peering
        assert all(rule["resources"] == ["kopfpeerings"] for rule in peering)
    container = one_container(one(manifests, "Deployment")["spec"]["template"]["spec"])
    assert {"name": "TAILOR_OPERATOR_NAMESPACE", "value": ",".join(watched)} in container["env"]


def test_cluster_wide_rights_only_when_asked_for(helm_binary: Path) -> None:
    manifests = _operator_objects(render(helm_binary, sets=("operator.clusterWide=true",)))
    assert by_kind(manifests, "Role") == []
    assert by_kind(manifests, "KopfPeering") == []
    role = one(manifests, "ClusterRole")
    assert one(manifests, "ClusterRoleBinding")["roleRef"]["name"] == role["metadata"]["name"]
    assert one(manifests, "ClusterKopfPeering")["metadata"]["name"] == "tailor"
    assert any(rule["resources"] == ["clusterkopfpeerings"] for rule in role["rules"])
    container = one_container(one(manifests, "Deployment")["spec"]["template"]["spec"])
    assert "TAILOR_OPERATOR_NAMESPACE" not in {e["name"] for e in container["env"]}, "every namespace"


def test_secret_names_and_the_image_allowlist_reach_the_role_and_the_operator(helm_binary: Path) -> None:
    manifests = _operator_objects(render(helm_binary, ROOT / "ci" / "namespaced-values.yaml"))
    secret_rules = [rule for rule in one(manifests, "Role")["rules"] if rule["resources"] == ["secrets"]]
    assert secret_rules == [
        {"apiGroups": [""], "resources": ["secrets"],
         "resourceNames": ["shop-redis-auth", "shop-ruleset-signing", "tailor-kafka"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]  # fmt: skip
    container = one_container(one(manifests, "Deployment")["spec"]["template"]["spec"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["TAILOR_OPERATOR_IMAGE_ALLOWLIST"]) == [
        "ghcr.io/tailor-dev/*",
        "docker.io/library/redis:7.*",
    ]
    operator_settings = pytest.importorskip("tailor_operator.settings")
    parsed = operator_settings.OperatorSettings(
        image_allowlist=json.loads(env["TAILOR_OPERATOR_IMAGE_ALLOWLIST"]),
        namespace=env["TAILOR_OPERATOR_NAMESPACE"],
    )
    assert parsed.namespaces == ("shop",)


def test_rbac_and_service_account_can_be_left_to_an_admin(helm_binary: Path) -> None:
    manifests = render(helm_binary, ROOT / "ci" / "operator-only-values.yaml")
    kinds = {m["kind"] for m in manifests}
    assert kinds.isdisjoint({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"})
    assert "PersonalizationStack" not in kinds
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "tailor-operator"


def test_default_stack_takes_the_charts_image_and_the_values_spec(helm_binary: Path) -> None:
    stack = one(render(helm_binary, sets=("global.image.tag=9.9.9",)), "PersonalizationStack")
    assert stack["apiVersion"] == f"{constants.API_GROUP}/{constants.API_VERSION}"
    assert stack["metadata"]["namespace"] == "shop"
    assert stack["spec"]["image"] == "ghcr.io/tailor-dev/tailor:9.9.9"
    assert stack["spec"]["imagePullPolicy"] == "IfNotPresent"
    assert stack["spec"]["redis"] == {"managed": True}
    # What the operator will read: the spec parses with the shared spec model.
    parsed = specs.StackSpec.model_validate(stack["spec"])
    assert parsed.workers.replicas == 2
    assert parsed.redis.managed
    pinned = one(render(helm_binary, ROOT / "ci" / "external-redis-values.yaml"), "PersonalizationStack")
    assert pinned["spec"]["image"].startswith("ghcr.io/tailor-dev/tailor@sha256:")


def test_default_stack_can_be_switched_off(helm_binary: Path) -> None:
    manifests = render(helm_binary, sets=("stack.create=false",))
    assert by_kind(manifests, "PersonalizationStack") == []
    assert by_kind(manifests, "Pod") == [], "the helm test targets the default stack's API"


def test_a_redis_url_beside_managed_redis_fails_with_advice(helm_binary: Path) -> None:
    result = run_helm(
        helm_binary, "template", "r", ".", "--set", "stack.spec.redis.url=redis://redis:6379/0", check=False
    )
    assert result.returncode != 0
    assert "redis.managed=false" in result.stderr


def test_helm_test_hook_targets_the_service_the_operator_creates(helm_binary: Path) -> None:
    builders = pytest.importorskip("tailor_operator.builders")
    manifests = render(helm_binary)
    stack_manifest = one(manifests, "PersonalizationStack")
    stack = builders.Stack(
        namespace="shop",
        name=stack_manifest["metadata"]["name"],
        uid="0",
        spec=specs.StackSpec.model_validate(stack_manifest["spec"]),
    )
    service = builders.api_service(stack)
    [port] = service["spec"]["ports"]
    hook = one(manifests, "Pod")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e["value"] for e in one_container(hook["spec"])["env"]}
    host_port = "" if port["port"] == 80 else f":{port['port']}"
    assert env["TAILOR_API_URL"] == f"http://{service['metadata']['name']}.shop.svc{host_port}"


def test_helm_test_hook_fails_when_the_api_does_not_answer(helm_binary: Path) -> None:
    """The hook's script, run here as the pod would run it, against a port nobody listens on."""
    container = one_container(one(render(helm_binary), "Pod")["spec"])
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(TAILOR_API_URL="http://127.0.0.1:9", TAILOR_TEST_TIMEOUT_SECONDS="1")
    command = [sys.executable if part == "python" else part for part in container["command"]]
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "the content API at http://127.0.0.1:9 failed /openapi.json" in result.stderr


def test_network_policies_select_the_pods_the_operator_creates(helm_binary: Path) -> None:
    """The operator makes each stack's policies (builders.network_policies); the chart only the
    operator's own. Each stack policy selects the pods of its component, names ports they have, and
    Redis admits the stack's pods and the chart's operator pods."""
    builders = pytest.importorskip("tailor_operator.builders")
    operator_names = pytest.importorskip("tailor_operator.constants")
    manifests = render(helm_binary, ROOT / "ci" / "monitoring-values.yaml")
    stack_manifest = one(manifests, "PersonalizationStack")
    stack = builders.Stack(
        namespace="shop",
        name=stack_manifest["metadata"]["name"],
        uid="0",
        spec=specs.StackSpec.model_validate(stack_manifest["spec"]),
    )
    policies = {p["metadata"]["name"]: p for p in builders.network_policies(stack)}
    children = {
        (child["kind"], child["metadata"]["labels"][constants.LABEL_COMPONENT]): child
        for child in builders.children(stack, "checksum")
    }
    for component, kind, suffix in (
        (operator_names.CONTENT_API, "Deployment", "api"),
        (operator_names.COLLECTOR, "Deployment", "collector"),
        (operator_names.WORKER, "Deployment", "worker"),
        (operator_names.REDIS, "StatefulSet", "redis"),
    ):
        policy = policies[f"{stack.name}-{suffix}"]
        pod_template = children[(kind, component)]["spec"]["template"]
        assert (
            policy["spec"]["podSelector"]["matchLabels"].items() <= pod_template["metadata"]["labels"].items()
        )
        port_names = {p["name"] for c in pod_template["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} <= port_names
    assert policies[f"{stack.name}-worker"]["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # Redis admits the stack's workers, API and collector and the operator, nobody else.
    redis_sources = policies[f"{stack.name}-redis"]["spec"]["ingress"][0]["from"]
    [stack_pods] = [
        s["podSelector"]["matchExpressions"] for s in redis_sources if "matchExpressions" in s["podSelector"]
    ]
    components = next(e["values"] for e in stack_pods if e["key"] == constants.LABEL_COMPONENT)
    assert sorted(components) == ["collector", "content-api", "worker"]
    operator_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert any(
        source["podSelector"].get("matchLabels", {}).items() <= operator_labels.items()
        and source["podSelector"].get("matchLabels")
        for source in redis_sources
    )
    [operator_policy] = by_kind(manifests, "NetworkPolicy")
    assert operator_policy["spec"]["podSelector"]["matchLabels"].items() <= operator_labels.items()
    assert by_kind(render(helm_binary), "NetworkPolicy") == [], "off by default"


# --- monitoring kinds, validated offline --------------------------------------------------------


def test_monitoring_kinds_render_only_when_enabled(helm_binary: Path) -> None:
    assert [m for m in render(helm_binary) if m["apiVersion"] == MONITORING_GROUP] == []
    enabled = render(helm_binary, ROOT / "ci" / "monitoring-values.yaml")
    assert {m["kind"] for m in enabled if m["apiVersion"] == MONITORING_GROUP} == {
        "ServiceMonitor", "PodMonitor", "PrometheusRule",
    }  # fmt: skip


def test_service_monitor_scrapes_the_operators_metrics_service(helm_binary: Path) -> None:
    manifests = render(helm_binary, ROOT / "ci" / "monitoring-values.yaml")
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["shop"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    assert endpoint["path"] == "/metrics"
    # The Service reaches the operator pod's metrics port.
    pod = one(manifests, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] in {
        p["name"] for p in one_container(pod["spec"])["ports"]
    }


def test_pod_monitor_selects_the_stacks_pods_and_their_metrics_ports(helm_binary: Path) -> None:
    builders = pytest.importorskip("tailor_operator.builders")
    manifests = render(helm_binary, ROOT / "ci" / "monitoring-values.yaml")
    monitor = one(manifests, "PodMonitor")
    stack_manifest = one(manifests, "PersonalizationStack")
    stack = builders.Stack(
        namespace="shop", name=stack_manifest["metadata"]["name"], uid="0",
        spec=specs.StackSpec.model_validate(stack_manifest["spec"]),
    )  # fmt: skip
    selector = monitor["spec"]["selector"]
    ports = {endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    selected = []
    for child in builders.children(stack, "checksum"):
        if "template" not in child["spec"]:
            continue
        labels = child["spec"]["template"]["metadata"]["labels"]
        matches = selector["matchLabels"].items() <= labels.items() and all(
            labels.get(expression["key"]) in expression["values"]
            for expression in selector["matchExpressions"]
        )
        if matches:
            selected.append(labels[constants.LABEL_COMPONENT])
    assert sorted(selected) == ["collector", "content-api", "worker"], "all but Redis are scraped"
    api = builders.api_deployment(stack, "checksum")["spec"]["template"]["spec"]["containers"][0]
    assert {port["name"] for port in api["ports"]} & ports == {"admin"}, "the API's admin port is scraped"


def _prometheus_rule_groups(helm: Path, *sets: str) -> list[Manifest]:
    manifests = render(helm, sets=("monitoring.prometheusRule.enabled=true", *sets))
    groups: list[Manifest] = one(manifests, "PrometheusRule")["spec"]["groups"]
    return groups


def test_prometheus_rule_is_the_unit_tested_rule_file(helm_binary: Path, tmp_path: Path) -> None:
    """The rules the chart ships pass the same promtool unit tests as monitoring/alerts.yaml."""
    groups = _prometheus_rule_groups(helm_binary)
    assert groups == yaml.safe_load((ROOT / "monitoring" / "alerts.yaml").read_text())["groups"]
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "alerts_test.yaml").write_text(
        (ROOT / "monitoring" / "tests" / "alerts_test.yaml").read_text()
    )
    promtool = toolchain.find_tool("promtool")
    result = subprocess.run(
        [str(promtool), "test", "rules", str(tmp_path / "tests" / "alerts_test.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_adds_routing_labels_and_runbook_urls(helm_binary: Path, tmp_path: Path) -> None:
    groups = _prometheus_rule_groups(
        helm_binary,
        "monitoring.prometheusRule.additionalRuleLabels.team=web",
        "monitoring.prometheusRule.additionalRuleLabels.severity=info",
        "monitoring.prometheusRule.runbookBaseUrl=https://git.example.com/tailor/blob/main/",
    )
    alerts = [rule for group in groups for rule in group["rules"]]
    assert alerts
    for rule in alerts:
        assert rule["labels"]["team"] == "web"
        assert rule["labels"]["severity"] in {"critical", "warning"}, "a rule's own severity wins"
        assert rule["annotations"]["runbook_url"] == (
            f"https://git.example.com/tailor/blob/main/docs/operating.md#{rule['alert'].lower()}"
        )
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    promtool = toolchain.find_tool("promtool")
    check = subprocess.run(
        [str(promtool), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_config_map_carries_the_dashboard(helm_binary: Path) -> None:
    config_map = one(render(helm_binary), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["tailor.json"]) == json.loads(
        (ROOT / "monitoring" / "dashboard.json").read_text()
    )
    other_namespace = one(render(helm_binary, sets=("monitoring.dashboard.namespace=grafana",)), "ConfigMap")
    assert other_namespace["metadata"]["namespace"] == "grafana"


# --- packaging ----------------------------------------------------------------------------------

# Everything the packaged chart may hold; anything else is a .helmignore gap.
_CHART_FILES = re.compile(
    r"^(Chart\.yaml|values\.yaml|values\.schema\.json|\.helmignore|README\.md|LICENSE"
    r"|templates/[^/]+\.(yaml|tpl|txt)|templates/tests/[^/]+\.yaml"
    r"|crds/[^/]+\.yaml|charts/.+\.tgz|monitoring/alerts\.yaml|monitoring/dashboard\.json"
    r"|charts/tailor-stack/(Chart\.yaml|values\.yaml|values\.schema\.json|templates/[^/]+\.(yaml|tpl|txt)))$"
)


def test_packaged_chart_holds_only_chart_files(helm_binary: Path, tmp_path: Path) -> None:
    run_helm(helm_binary, "package", ".", "--destination", str(tmp_path))
    [archive] = list(tmp_path.glob("tailor-*.tgz"))
    with tarfile.open(archive) as tar:
        files = sorted(name.split("/", 1)[1] for name in tar.getnames() if tar.getmember(name).isfile())
    strays = [name for name in files if not _CHART_FILES.match(name)]
    assert strays == [], f"add these to .helmignore: {strays}"
    for required in ("Chart.yaml", "values.schema.json", "templates/deployment.yaml", "templates/NOTES.txt",
                     "monitoring/alerts.yaml", "monitoring/dashboard.json"):  # fmt: skip
        assert required in files
    crds = {name for name in files if name.startswith("crds/")}
    assert crds == {f"crds/{path.name}" for path in (ROOT / "crds").glob("*.yaml")}


# --- the tailor-stack subchart (charts/tailor-stack) ---------------------------------------------

STACK_CHART = ROOT / "charts" / "tailor-stack"
STACK_CI_VALUES = sorted((STACK_CHART / "ci").glob("*-values.yaml"))


def render_stack_chart(helm: Path, *values_files: Path, sets: tuple[str, ...] = ()) -> list[Manifest]:
    args = ["template", "site", str(STACK_CHART), "--namespace", "site"]
    for values_file in values_files:
        args += ["--values", str(values_file)]
    for assignment in sets:
        args += ["--set", assignment]
    return [doc for doc in yaml.safe_load_all(run_helm(helm, *args).stdout) if doc]


@pytest.mark.parametrize("values_file", STACK_CI_VALUES, ids=values_file_id)
def test_the_stack_chart_lints_clean_alone(helm_binary: Path, values_file: Path) -> None:
    result = run_helm(helm_binary, "lint", str(STACK_CHART), "--strict", "--values", str(values_file))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout


def test_the_stack_chart_renders_a_site_teams_stack_rules_and_variants(helm_binary: Path) -> None:
    manifests = render_stack_chart(helm_binary, STACK_CHART / "ci" / "shop-values.yaml")
    assert sorted((m["kind"], m["metadata"]["name"]) for m in manifests) == [
        ("ContentVariant", "hero-default"), ("ContentVariant", "hero-shoes"),
        ("PersonalizationRule", "returning-shoe-browser"), ("PersonalizationStack", "shop"),
    ]  # fmt: skip
    assert {m["metadata"]["namespace"] for m in manifests} == {"site"}
    shoes = next(m for m in manifests if m["metadata"]["name"] == "hero-shoes")
    assert shoes["metadata"]["labels"]["category"] == "shoes"  # what the rule's selector matches
    stack = one(manifests, "PersonalizationStack")
    assert "image" not in stack["spec"], "alone, the stack runs the CRD's default (the operator's release)"
    parsed = specs.StackSpec.model_validate(stack["spec"])
    assert parsed.redis.url == "redis://redis-master.redis.svc:6379/0"
    # The default name: the release's, with -tailor unless it says tailor already.
    assert one(render_stack_chart(helm_binary), "PersonalizationStack")["metadata"]["name"] == "site-tailor"
    pinned = one(render_stack_chart(helm_binary, sets=("image.repository=r.example/t", "image.tag=2.0.1")),
                 "PersonalizationStack")  # fmt: skip
    assert pinned["spec"]["image"] == "r.example/t:2.0.1"


def test_the_stack_chart_schema_carries_the_crds_specs(helm_binary: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_values_schema
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    current = json.loads((STACK_CHART / "values.schema.json").read_text())
    assert current == sync_values_schema.synced_stack_chart_schema(current), (
        "charts/tailor-stack/values.schema.json is behind crds/: run `python scripts/sync_values_schema.py`"
    )
    typo = run_helm(
        helm_binary, "template", "s", str(STACK_CHART), "--set", "rules.r.spec.priorty=1", check=False
    )
    assert typo.returncode != 0
    assert "/rules/r/spec" in typo.stderr
    assert "priorty" in typo.stderr


def test_the_components_pod_templates_are_one_schema_definition(helm_binary: Path) -> None:
    """The CRD spells the workers', content API's and Redis' `template` out three times; the values
    schemas refer to one definition, which still refuses a typo inside it, with its path."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_values_schema
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    crd_spec = sync_values_schema.stack_spec_schema()
    for path, spec_of in (
        (ROOT / "values.schema.json", lambda s: s["properties"]["stack"]["properties"]["spec"]),
        (STACK_CHART / "values.schema.json", lambda s: s["properties"]["spec"]),
    ):
        schema = json.loads(path.read_text())
        components = spec_of(schema)["properties"]
        for component in ("workers", "contentApi", "redis"):
            template = components[component]["properties"]["template"]
            assert template == {"$ref": "#/definitions/podTemplate"}, (path.name, component)
        assert (
            schema["definitions"]["podTemplate"] == crd_spec["properties"]["redis"]["properties"]["template"]
        )
    for chart, key in ((".", "stack.spec.contentApi"), (str(STACK_CHART), "spec.redis")):
        fine = run_helm(
            helm_binary, "template", "r", chart, "--set", f"{key}.template.pod.nodeSelector.pool=a"
        )
        assert fine.returncode == 0
        typo = run_helm(
            helm_binary,
            "template",
            "r",
            chart,
            "--set",
            f"{key}.template.pod.nodeSelectr.pool=a",
            check=False,
        )
        assert typo.returncode != 0
        assert "nodeSelectr" in typo.stderr
        assert f"/{key.replace('.', '/')}/template/pod" in typo.stderr, typo.stderr


def test_the_root_chart_renders_its_default_stack_through_the_stack_chart(helm_binary: Path) -> None:
    chart = yaml.safe_load((ROOT / "Chart.yaml").read_text())
    [dependency] = chart["dependencies"]
    assert dependency == {
        "name": "tailor-stack",
        "version": "0.1.0",
        "alias": "stack",
        "condition": "stack.create",
    }
    assert yaml.safe_load((STACK_CHART / "Chart.yaml").read_text())["version"] == dependency["version"]
    rule = ("--set", "stack.rules.r.spec.slot=x", "--set", "stack.rules.r.spec.variants.names={a}")
    output = run_helm(helm_binary, "template", "tailor", ".", "-n", "shop", *rule).stdout
    assert "# Source: tailor/charts/stack/templates/personalizationstack.yaml" in output
    manifests = [doc for doc in yaml.safe_load_all(output) if doc]
    assert one(manifests, "PersonalizationStack")["metadata"]["name"] == "tailor"  # release "tailor"
    assert one(manifests, "PersonalizationRule")["metadata"]["name"] == "r"


def test_helm_template_needs_no_kube_version(helm_binary: Path) -> None:
    """helm as its own release build is (and as tailor dev env puts it on PATH) renders the chart
    without --kube-version: its default Kubernetes is its client-go's, above the chart's kubeVersion."""
    for chart in (".", str(STACK_CHART)):
        result = subprocess.run(
            [str(helm_binary), "template", "r", chart], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr


# --- on the local stack -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crds_applied(kubectl: Runner) -> None:
    """The CRDs as docs/install.md says to apply them (server-side, so re-applying is safe)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in (ROOT / "crds").glob("*.yaml"):
        for doc in yaml.safe_load_all(crd.read_text()):
            probes.until_conditions_set(
                kubectl,
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                f"crd/{doc['metadata']['name']}",
            )


def _server_side_dry_run(kubectl: Runner, manifests: list[Manifest]) -> subprocess.CompletedProcess[str]:
    documents = "\n---\n".join(yaml.safe_dump(m) for m in manifests)
    return kubectl(
        "apply", "--dry-run=server", "--server-side", "--field-manager=chart-test", "--validate=strict",
        "-f", "-", input=documents, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("values_file", CI_VALUES, ids=values_file_id)
def test_rendered_manifests_pass_the_api_servers_validation(
    helm_binary: Path, kubectl: Runner, namespace: str, crds_applied: None, values_file: Path
) -> None:
    # The namespaced configuration's Role lives in the watched namespace: point it at ours.
    sets = (f"operator.watchNamespaces={{{namespace}}}",) if "namespaced" in values_file.name else ()
    manifests = render(helm_binary, values_file, sets=sets, namespace=namespace)
    # The local API server has no prometheus-operator CRDs: those kinds are checked offline above.
    checked = [m for m in manifests if m["apiVersion"] != MONITORING_GROUP]
    result = _server_side_dry_run(kubectl, checked)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(checked)


def test_the_api_server_refuses_what_the_crd_forbids(
    helm_binary: Path, kubectl: Runner, namespace: str, crds_applied: None
) -> None:
    """Guards the dry run above: it is the API server that validates, CEL rules included."""
    same_topic = ("stack.spec.kafka.topics.events=same", "stack.spec.kafka.topics.deadLetter=same")
    manifests = render(helm_binary, namespace=namespace, sets=same_topic)
    result = _server_side_dry_run(kubectl, [one(manifests, "PersonalizationStack")])
    assert result.returncode != 0
    assert "topics.events and topics.deadLetter must be different topics" in result.stderr


def _release_objects(kubectl: Runner, release: str, namespace: str) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of everything labelled with the release, cluster-scoped included."""
    kinds = (
        "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,networkpolicies,roles,"
        "rolebindings,personalizationstacks,personalizationrules,contentvariants,kopfpeerings"
    )
    found = set()
    for scope, resources in (("-n", kinds), ("", "clusterroles,clusterrolebindings,clusterkopfpeerings")):
        args = ["get", resources, "-l", f"app.kubernetes.io/instance={release}", "-o", "json"]
        args += [scope, namespace] if scope else []
        for item in json.loads(kubectl(*args).stdout)["items"]:
            meta = item["metadata"]
            found.add((item["kind"], meta.get("namespace", ""), meta["name"]))
    return found


def _declared(objects: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Without what controllers derive from the chart's objects (the operator's ReplicaSet, Pod)."""
    return {obj for obj in objects if obj[0] not in ("ReplicaSet", "Pod")}


def _stack_children(kubectl: Runner, namespace: str) -> set[tuple[str, str]]:
    result = kubectl(
        "get", "deployments,statefulsets,services", "-n", namespace,
        "-l", f"{constants.LABEL_MANAGED_BY}=tailor-operator", "-o", "json",
    )  # fmt: skip
    return {(item["kind"], item["metadata"]["name"]) for item in json.loads(result.stdout)["items"]}


def test_install_upgrade_and_uninstall_leave_no_orphans(
    helm: Runner, kubectl: Runner, namespace: str, crds_applied: None
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    chart = str(ROOT)
    install = helm("install", release, chart, "-n", namespace, "--wait", "--timeout", "120s")
    assert "helm test" in install.stdout, "NOTES tell the user what to do next"
    assert f"personalizationstack/{release}-tailor" in install.stdout
    manifest = [m for m in yaml.safe_load_all(helm("get", "manifest", release, "-n", namespace).stdout) if m]
    expected = {(m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"]) for m in manifest}
    installed = _release_objects(kubectl, release, namespace)
    assert _declared(installed) == expected, "install created every object"
    assert {kind for kind, _, _ in installed - expected} == {"ReplicaSet", "Pod"}, "the operator pod runs"
    assert ("PersonalizationStack", namespace, f"{release}-tailor") in expected

    # Upgrade: turn the network policies on, then off again; change the stack.
    helm("upgrade", release, chart, "-n", namespace, "--set", "networkPolicy.enabled=true", "--wait")
    with_policies = _declared(_release_objects(kubectl, release, namespace))
    assert {kind for kind, _, _ in with_policies - expected} == {"NetworkPolicy"}
    helm("upgrade", release, chart, "-n", namespace, "--set", "stack.spec.workers.replicas=3", "--wait")
    assert _declared(_release_objects(kubectl, release, namespace)) == expected, (
        "the upgrade removed the policies"
    )
    stack = json.loads(kubectl("get", "pstack", f"{release}-tailor", "-n", namespace, "-o", "json").stdout)
    assert stack["spec"]["workers"]["replicas"] == 3

    helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s")
    eventually(lambda: not _release_objects(kubectl, release, namespace), 60, "every release object gone")
    assert helm("list", "-n", namespace, "-q").stdout.strip() == ""


def _start_uninstall_hook(
    kubectl: Runner, kubeconfig: Path, namespace: str, hooks: list[Manifest], tmp_path: Path
) -> subprocess.Popen[str]:
    """Do what a kubelet does with the pre-delete hook Job (kwok only pretends to run pods): create
    its ServiceAccount and Role, then run its container's command here under that identity."""
    kubectl(
        "apply", "-n", namespace, "-f", "-",
        input="\n---\n".join(yaml.safe_dump(m) for m in hooks if m["kind"] != "Job"),
    )  # fmt: skip
    pod = one(hooks, "Job")["spec"]["template"]["spec"]
    account_kubeconfig = _service_account_kubeconfig(
        kubectl, kubeconfig, namespace, pod["serviceAccountName"], tmp_path / "hook.kubeconfig"
    )
    command = one_container(pod)["command"]
    assert command[0] == "kubectl"
    return subprocess.Popen(
        [str(artifacts.kubectl()), *command[1:]],
        env={**os.environ, "KUBECONFIG": str(account_kubeconfig), "HOME": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_uninstall_hook_deletes_the_stack_and_waits_until_it_is_finalized(
    helm_binary: Path, kubectl: Runner, kubeconfig: Path, namespace: str, crds_applied: None, tmp_path: Path
) -> None:
    """The pre-delete hook's own command, run here under the hook's own ServiceAccount and Role,
    against a stack held by a finalizer as the operator holds it: it deletes the stack, waits
    while the finalizer is there, and returns once the stack is gone."""
    manifests = render(helm_binary, namespace=namespace)
    hooks = [m for m in manifests if m["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-delete"]
    assert sorted(m["kind"] for m in hooks) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    stack = one(manifests, "PersonalizationStack")
    stack["metadata"]["finalizers"] = ["test.tailor.dev/hold"]
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(stack))
    hook = _start_uninstall_hook(kubectl, kubeconfig, namespace, hooks, tmp_path)
    try:
        name = stack["metadata"]["name"]

        def terminating() -> bool:
            got = kubectl("get", "pstack", name, "-n", namespace, "-o", "json", check=False)
            return got.returncode == 0 and "deletionTimestamp" in json.loads(got.stdout)["metadata"]

        eventually(terminating, 30, "the hook to delete the stack")
        time.sleep(2)
        assert hook.poll() is None, f"the hook must wait for the finalizer:\n{hook.communicate()}"
        kubectl(
            "patch", "pstack", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
        )
        out, err = hook.communicate(timeout=60)
        assert hook.returncode == 0, out + err
        assert kubectl("get", "pstack", name, "-n", namespace, check=False).returncode != 0
    finally:
        if hook.poll() is None:
            hook.kill()
            hook.wait()


# --- with the operator --------------------------------------------------------------------------


def _service_account_kubeconfig(
    kubectl: Runner, kubeconfig: Path, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a TokenRequest token), so
    the operator runs with exactly the chart's RBAC, as it would in its pod."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def operator_process(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    logs: list[Any] = []

    def start(env: dict[str, str]) -> subprocess.Popen[str]:
        tailor = Path(sys.executable).parent / "tailor"
        log = (tmp_path / f"operator-{len(started)}.log").open("w")
        logs.append(log)
        process = subprocess.Popen(
            [str(tailor), "operator"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for log in logs:
        log.close()


def _operator_log(tmp_path: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(tmp_path.glob("operator-*.log")))


def _refusals(log: str) -> list[str]:
    """Log lines where the API server refused the operator something (the chart's RBAC must cover
    everything the operator does; it scans no CRDs or namespaces, so nothing is optional)."""
    return [line for line in log.splitlines() if "Forbidden" in line or " 403" in line]


def _redis_volume_for(kubectl: Runner, namespace: str, stack_name: str) -> str:
    """A PersistentVolume pre-bound to the managed Redis' claim: the local stack has no storage
    provisioner, and without a bound claim the Redis pod is never scheduled."""
    name = f"pv-{namespace}"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/tmp/{name}"},
            "claimRef": {"namespace": namespace, "name": f"data-{stack_name}-redis-0"},
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(volume))
    return name


@pytest.mark.slow
def test_operator_under_the_charts_rbac_reconciles_the_default_stack_to_ready(
    helm: Runner,
    kubectl: Runner,
    kubeconfig: Path,
    namespace: str,
    redis_url: str,
    kafka_bootstrap: str,
    crds_applied: None,
    operator_process: Callable[[dict[str, str]], subprocess.Popen[str]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    stack_name = f"{release}-tailor"
    # The operator runs here, watching only this test's namespace, under the ServiceAccount the
    # chart created and only the rights the chart's Role grants; it reaches the stack's Redis
    # at the local one (TAILOR_OPERATOR_REDIS_URL), as an operator outside the cluster does.
    helm(
        "install", release, str(ROOT), "-n", namespace, "--wait", "--timeout", "120s",
        "--set", f"stack.spec.kafka.bootstrapServers={kafka_bootstrap}",
        "--set", "stack.spec.workers.replicas=1",
        "--set", "stack.spec.contentApi.replicas=1",
    )  # fmt: skip
    account_kubeconfig = _service_account_kubeconfig(
        kubectl, kubeconfig, namespace, f"{release}-tailor", tmp_path / "operator.kubeconfig"
    )
    volume = _redis_volume_for(kubectl, namespace, stack_name)
    request.addfinalizer(lambda: kubectl("delete", "pv", volume, "--ignore-not-found", "--wait=false"))
    process = operator_process(
        {
            "KUBECONFIG": str(account_kubeconfig),
            "TAILOR_OPERATOR_NAMESPACE": namespace,
            "TAILOR_OPERATOR_REDIS_URL": redis_url,
            "TAILOR_OPERATOR_METRICS_PORT": "0",
            "TAILOR_OPERATOR_LIVENESS_URL": f"http://127.0.0.1:{ports.pick(None)}/healthz",
            "TAILOR_OPERATOR_PEERING": "tailor",
        }
    )

    def ready() -> bool:
        assert process.poll() is None, f"the operator exited:\n{_operator_log(tmp_path)}"
        stack = json.loads(kubectl("get", "pstack", stack_name, "-n", namespace, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in stack.get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True"

    try:
        eventually(ready, 180, f"stack {stack_name} Ready")
    except AssertionError as error:
        status = kubectl("get", "pstack", stack_name, "-n", namespace, "-o", "jsonpath={.status}").stdout
        raise AssertionError(f"{error}\nstatus: {status}\noperator log:\n{_operator_log(tmp_path)}") from None
    children = _stack_children(kubectl, namespace)
    assert {kind for kind, _ in children} == {"Deployment", "StatefulSet", "Service"}
    assert _refusals(_operator_log(tmp_path)) == [], "the chart's RBAC is missing a right"

    # `helm test`: kwok only pretends to run the hook pod, so run its script here against a real
    # content API serving this stack (what the operator published is all it needs).
    hook_pod = next(m for m in yaml.safe_load_all(helm("get", "hooks", release, "-n", namespace).stdout)
                    if m and m["kind"] == "Pod")  # fmt: skip
    port = ports.pick(None)
    api_log = (tmp_path / "api.log").open("w")
    api = subprocess.Popen(
        [str(Path(sys.executable).parent / "tailor"), "api", "--stack", f"{namespace}/{stack_name}",
         "--port", str(port), "--admin-port", str(ports.pick(None))],
        env={**os.environ, "TAILOR_REDIS_URL": redis_url}, stdout=api_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        container = one_container(hook_pod["spec"])
        hook_env = {e["name"]: e["value"] for e in container["env"]}
        hook_env["TAILOR_API_URL"] = f"http://127.0.0.1:{port}"
        command = [sys.executable if part == "python" else part for part in container["command"]]
        check = subprocess.run(
            command, env={**os.environ, **hook_env}, capture_output=True, text=True, timeout=90
        )
        assert check.returncode == 0, check.stderr + (tmp_path / "api.log").read_text()
        assert "/openapi.json: 200" in check.stdout
    finally:
        api.terminate()
        api.wait(timeout=20)
        api_log.close()

    # Uninstall while the operator runs. Helm first runs the pre-delete hook, which deletes the
    # stack and waits for the operator to finalize it; kwok would only pretend to run the hook's
    # pod, so its command runs here, then Helm deletes the rest (without re-running the hook).
    hooks = [m for m in yaml.safe_load_all(helm("get", "hooks", release, "-n", namespace).stdout) if m]
    hook = _start_uninstall_hook(
        kubectl, kubeconfig, namespace, [m for m in hooks if m["kind"] != "Pod"], tmp_path
    )
    out, err = hook.communicate(timeout=120)
    assert hook.returncode == 0, f"{out}{err}\n{_operator_log(tmp_path)}"
    # What the operator did under the chart's RBAC, read before the uninstall takes that RBAC away
    # from an operator that runs on (here a process, not the release's pod): its peering keep-alive
    # may then be refused, rightly.
    under_the_charts_rbac = _operator_log(tmp_path)
    helm("uninstall", release, "-n", namespace, "--no-hooks", "--wait", "--timeout", "90s")
    for hook_object in hooks:  # Helm deletes these itself after a successful hook
        kind, name = hook_object["kind"].lower(), hook_object["metadata"]["name"]
        kubectl("delete", kind, name, "-n", namespace, "--ignore-not-found")
    eventually(lambda: not _stack_children(kubectl, namespace), 90, "the stack's children garbage-collected")
    eventually(lambda: not _release_objects(kubectl, release, namespace), 60, "every release object gone")
    assert _refusals(under_the_charts_rbac) == []


@pytest.mark.slow
def test_a_secret_outside_rbac_secret_names_stops_the_stack_with_reason_secret_forbidden(
    helm: Runner,
    kubectl: Runner,
    kubeconfig: Path,
    namespace: str,
    redis_url: str,
    crds_applied: None,
    operator_process: Callable[[dict[str, str]], subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    stack_name = f"{release}-tailor"
    allowed = f"rbac.secretNames={{{stack_name}-ruleset-signing}}"
    install = (
        "-n", namespace, "--set", allowed,
        "--set", "stack.spec.redis.managed=false", "--set", f"stack.spec.redis.url={redis_url}",
        "--set", "stack.spec.redis.passwordSecretRef.name=redis-pass",
    )  # fmt: skip
    helm("install", release, str(ROOT), *install)
    account_kubeconfig = _service_account_kubeconfig(
        kubectl, kubeconfig, namespace, f"{release}-tailor", tmp_path / "operator.kubeconfig"
    )
    process = operator_process(
        {
            "KUBECONFIG": str(account_kubeconfig),
            "TAILOR_OPERATOR_NAMESPACE": namespace,
            "TAILOR_OPERATOR_REDIS_URL": redis_url,
            "TAILOR_OPERATOR_METRICS_PORT": "0",
            "TAILOR_OPERATOR_LIVENESS_URL": f"http://127.0.0.1:{ports.pick(None)}/healthz",
            "TAILOR_OPERATOR_STANDALONE": "true",
        }
    )

    def reconciled() -> dict[str, Any] | None:
        assert process.poll() is None, f"the operator exited:\n{_operator_log(tmp_path)}"
        stack = json.loads(kubectl("get", "pstack", stack_name, "-n", namespace, "-o", "json").stdout)
        found = [c for c in stack.get("status", {}).get("conditions", []) if c["type"] == "Reconciled"]
        return found[0] if found else None

    refused = eventually(
        lambda: (c := reconciled()) and c["reason"] == "SecretForbidden" and c, 90, "refusal"
    )
    assert refused["status"] == "False"
    assert f"may not read Secret redis-pass in {namespace}" in refused["message"]
    assert "rbac.secretNames" in refused["message"]

    # The control: listed, the same Secret is read and every child applied.
    kubectl("create", "secret", "generic", "redis-pass", "-n", namespace, "--from-literal=password=x")
    both = f"rbac.secretNames={{{stack_name}-ruleset-signing,redis-pass}}"
    helm("upgrade", release, str(ROOT), *install, "--set", both)
    eventually(lambda: (c := reconciled()) and c["status"] == "True", 90, "Reconciled once listed")
    helm("uninstall", release, "-n", namespace, "--no-hooks")


def test_secret_reads_are_by_name_only(
    kubectl: Runner, helm: Runner, namespace: str, crds_applied: None
) -> None:
    """The chart's ServiceAccount can read a Secret it is told about, but not list Secrets; with
    rbac.secretNames, only the Secrets named there."""
    release = f"r{uuid.uuid4().hex[:6]}"
    helm("install", release, str(ROOT), "-n", namespace)
    try:
        account = f"system:serviceaccount:{namespace}:{release}-tailor"
        token = base64.b64encode(b"s3cret").decode()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "redis-pass"},
            "data": {"password": token},
        }
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
        assert (
            kubectl("get", "secret", "redis-pass", "-n", namespace, "--as", account, check=False).returncode
            == 0
        )
        denied = kubectl("get", "secrets", "-n", namespace, "--as", account, check=False)
        assert denied.returncode != 0
        assert "forbidden" in denied.stderr.lower()
        elsewhere = kubectl("get", "deployments", "-n", "default", "--as", account, check=False)
        assert elsewhere.returncode != 0, "a namespaced operator has no rights outside its namespace"

        # With rbac.secretNames, only the Secrets listed (the API server checks resourceNames).
        other = {**secret, "metadata": {"name": "someone-elses"}}
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(other))
        assert kubectl("get", "secret", "someone-elses", "-n", namespace, "--as", account).returncode == 0
        helm("upgrade", release, str(ROOT), "-n", namespace, "--set", "rbac.secretNames={redis-pass}")
        assert kubectl("get", "secret", "redis-pass", "-n", namespace, "--as", account).returncode == 0
        refused = kubectl("get", "secret", "someone-elses", "-n", namespace, "--as", account, check=False)
        assert refused.returncode != 0
        assert "forbidden" in refused.stderr.lower()
    finally:
        helm("uninstall", release, "-n", namespace)


# --- the image ----------------------------------------------------------------------------------


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    """Every COPY source is in the build context, and local state (.venv, .git) is not."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [
        part
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for part in line.split()[1:-1]
    ]
    assert sources
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for source in sources:
        assert source in allowed, f"COPY {source}: excluded by .dockerignore"
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*", "the context is an allowlist: everything not re-included stays out"


@pytest.mark.slow
def test_the_images_install_step_gives_a_working_tailor_command(tmp_path: Path) -> None:
    """What the Dockerfile does (`pip install .`, not editable) yields every component and its
    package data, and `tailor <component> --help` runs outside the checkout."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(ROOT), "--wheel-dir", str(wheels)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    [wheel] = list(wheels.glob("tailor-*.whl"))
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    packages = {name.split("/")[0] for name in names if not name.startswith("tailor-")}
    assert packages == {"tailor", "tailor_operator", "tailor_worker", "tailor_api"}
    for data in (
        "tailor/core/profile/store.lua",
        "tailor/core/decision/caps.lua",
        "tailor_api/static/tailor.js",
        "tailor/core/crds/tailor.dev_personalizationrules.yaml",
    ):
        assert data in names, f"{data} is missing from the installed package"
    assert "operator/__init__.py" not in names, "operator/ must never shadow the stdlib `operator`"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    cli = "import sys; from tailor.cli.main import main; sys.argv[0] = 'tailor'; sys.exit(main())"
    for command in ([], ["operator"], ["worker"], ["api"]):
        result = subprocess.run(
            [sys.executable, "-c", cli, *command, "--help"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "usage: tailor" in result.stdout
    validate = subprocess.run(
        [sys.executable, "-c", cli, "validate", str(ROOT / "examples" / "shop")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert validate.returncode == 0, f"`tailor validate` finds its CRDs when installed: {validate.stdout}"
    where = subprocess.run(
        [sys.executable, "-c", "import tailor; print(tailor.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert where.stdout.startswith(str(tmp_path / "site")), "the installed copy, not the checkout, was tested"
