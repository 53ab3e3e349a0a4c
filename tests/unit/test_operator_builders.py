"""Children of a stack, built without an API server: names, labels, owners, security, env, checksum."""

from __future__ import annotations

from typing import Any

import pytest
from tailor_operator import builders, conditions, observed
from tailor_operator.reconcile import children, publishing, stack_status

from tailor.core.rules import specs


def stack(**spec: Any) -> builders.Stack:
    base: dict[str, Any] = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"managed": True}}
    base.update(spec)
    return builders.Stack("shop", "shop", "uid-1", specs.StackSpec.model_validate(base))


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_managed_stack_owns_redis_workers_and_api_with_fixed_names() -> None:
    owned = builders.children(stack(), "c1")
    assert [(m["kind"], m["metadata"]["name"]) for m in owned] == [
        ("Service", "shop-redis"),
        ("StatefulSet", "shop-redis"),
        ("PodDisruptionBudget", "shop-redis"),
        ("Deployment", "shop-worker"),
        ("PodDisruptionBudget", "shop-worker"),
        ("Deployment", "shop-api"),
        ("PodDisruptionBudget", "shop-api"),
        ("Service", "shop-api"),
    ]
    for manifest in owned:
        owner = manifest["metadata"]["ownerReferences"][0]
        assert owner == {
            "apiVersion": "tailor.dev/v1alpha1", "kind": "PersonalizationStack", "name": "shop",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True,
        }  # fmt: skip
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "tailor-operator"
        assert labels["app.kubernetes.io/instance"] == "shop"


def test_external_redis_stack_owns_no_redis_and_prunes_it() -> None:
    external = stack(redis={"url": "redis://r.example:6379/0"})
    kinds = [(m["kind"], m["metadata"]["name"]) for m in builders.children(external, "c")]
    assert ("StatefulSet", "shop-redis") not in kinds
    assert builders.unwanted(external)[:3] == [
        ("apps/v1", "StatefulSet", "shop-redis"),
        ("v1", "Service", "shop-redis"),
        ("policy/v1", "PodDisruptionBudget", "shop-redis"),
    ]


def test_a_separate_collector_has_its_own_deployment_budget_and_service_that_go_with_the_setting() -> None:
    collector = {"separate": True, "replicas": 3, "resources": {"limits": {"cpu": "1"}}}
    apart = stack(contentApi={"collector": collector, "adminTokenSecretRef": {"name": "admin"}})
    kinds = [(m["kind"], m["metadata"]["name"]) for m in builders.children(apart, "c")]
    assert kinds[-3:] == [
        ("Deployment", "shop-collector"),
        ("PodDisruptionBudget", "shop-collector"),
        ("Service", "shop-collector"),
    ]
    assert not any(name == "shop-collector" for _, _, name in builders.unwanted(apart))
    collector = builders.collector_deployment(apart, "c")
    assert collector["spec"]["replicas"] == 3
    assert collector["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "collector"
    container = pod_spec(collector)["containers"][0]
    assert container["args"] == [
        "api", "--stack", "shop/shop", "--port", "8080", "--admin-port", "9464", "--routes", "collect"
    ]  # fmt: skip
    assert container["resources"] == {"limits": {"cpu": "1"}}
    # Probes on the admin port; the Service targets the public port only (docs/operating.md#the-admin-port).
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "admin": 9464}
    assert "TAILOR_ADMIN_TOKEN" not in {e["name"] for e in container["env"]}  # it serves no admin route
    service = builders.api_service(apart, "collector")
    assert service["spec"]["selector"] == builders.selector_labels(apart, "collector")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    api = pod_spec(builders.api_deployment(apart, "c"))["containers"][0]
    assert api["args"][-2:] == ["--routes", "decide"]
    together = stack()
    assert not any(m["metadata"]["name"] == "shop-collector" for m in builders.children(together, "c"))
    assert sorted(builders.unwanted(together)) == [
        ("apps/v1", "Deployment", "shop-collector"),
        ("policy/v1", "PodDisruptionBudget", "shop-collector"),
        ("v1", "Service", "shop-collector"),
    ]
    assert "--routes" not in pod_spec(builders.api_deployment(together, "c"))["containers"][0]["args"]


def test_json_logs_reach_every_pod_of_the_stack_as_tailor_log_format() -> None:
    json_logs = stack(logging={"format": "json"}, contentApi={"collector": {"separate": True}})
    for manifest in builders.children(json_logs, "c"):
        if manifest["kind"] == "Deployment":
            env = {e["name"]: e.get("value") for e in pod_spec(manifest)["containers"][0]["env"]}
            assert env["TAILOR_LOG_FORMAT"] == "json", manifest["metadata"]["name"]
    text = pod_spec(builders.worker_deployment(stack(), "c"))["containers"][0]["env"]
    assert "TAILOR_LOG_FORMAT" not in {e["name"] for e in text}


def test_pods_are_restricted_and_need_no_api_access() -> None:
    for manifest in (builders.worker_deployment(stack(), "c"), builders.api_deployment(stack(), "c")):
        pod = pod_spec(manifest)
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = pod["containers"][0]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }  # fmt: skip
        assert container["resources"]["requests"]["cpu"]
        assert manifest["spec"]["template"]["metadata"]["annotations"] == {"tailor.dev/config-checksum": "c"}


def test_commands_and_env_follow_the_cli_contract() -> None:
    with_secrets = stack(
        redis={"url": "redis://r.example:6379/0", "passwordSecretRef": {"name": "redis-auth"}},
        contentApi={"adminTokenSecretRef": {"name": "admin"}},
    )
    api = pod_spec(builders.api_deployment(with_secrets, "c"))["containers"][0]
    assert api["command"] == ["tailor"]
    assert api["args"] == ["api", "--stack", "shop/shop", "--port", "8080", "--admin-port", "9464"]
    env = {e["name"]: e for e in api["env"]}
    assert env["TAILOR_REDIS_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "redis-auth", "key": "password"}
    }
    assert env["TAILOR_REDIS_URL"]["value"] == "redis://r.example:6379/0"  # never a secret in it
    assert "TAILOR_REDIS_USERNAME" not in env  # your own Redis' default user
    assert "TAILOR_REDIS_MODE" not in env  # standalone, the default
    cluster = stack(redis={"url": "redis://node-0.cache:7000/0", "mode": "cluster", "waitReplicas": 1})
    worker_env = pod_spec(builders.worker_deployment(cluster, "c"))["containers"][0]["env"]
    assert {"name": "TAILOR_WORKER_REDIS_WAIT_REPLICAS", "value": "1"} in worker_env
    for deployment in (builders.api_deployment(cluster, "c"), builders.worker_deployment(cluster, "c")):
        assert {"name": "TAILOR_REDIS_MODE", "value": "cluster"} in pod_spec(deployment)["containers"][0][
            "env"
        ]
    assert env["TAILOR_ADMIN_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "admin", "key": "token"}}
    worker = pod_spec(builders.worker_deployment(with_secrets, "c"))["containers"][0]
    assert worker["args"] == ["worker", "--stack", "shop/shop"]
    assert "TAILOR_ADMIN_TOKEN" not in {e["name"] for e in worker["env"]}


def test_the_checksum_moves_with_secret_content_and_not_with_replicas() -> None:
    base = builders.config_checksum(stack(), {"s": builders.secret_digest({"password": "YQ=="})})
    rotated = builders.config_checksum(stack(), {"s": builders.secret_digest({"password": "Yg=="})})
    scaled = builders.config_checksum(
        stack(workers={"replicas": 9}), {"s": builders.secret_digest({"password": "YQ=="})}
    )
    assert base != rotated
    assert base == scaled


def test_an_upgrade_rolls_workers_and_api_one_surge_pod_at_a_time_and_never_restarts_redis() -> None:
    """What `helm upgrade` on a real node showed to matter (tests/integration/test_helm_e2e.py)."""
    for manifest in (builders.worker_deployment(stack(), "c"), builders.api_deployment(stack(), "c")):
        assert manifest["spec"]["strategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }  # fmt: skip
    api = pod_spec(builders.api_deployment(stack(), "c"))
    # Serves on while its endpoint is removed everywhere, then drains within the grace period.
    assert api["containers"][0]["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    assert api["terminationGracePeriodSeconds"] > builders.API_DRAIN_SECONDS
    digests = {"s": builders.secret_digest({"password": "YQ=="})}
    other_image = stack(image="registry.example/tailor:2")
    assert builders.config_checksum(stack(), digests) != builders.config_checksum(other_image, digests)
    assert builders.redis_checksum(stack(), digests) == builders.redis_checksum(other_image, digests)
    with_password = stack(redis={"managed": True, "passwordSecretRef": {"name": "s"}})
    rotated = {"s": builders.secret_digest({"password": "Yg=="})}
    assert builders.redis_checksum(with_password, digests) != builders.redis_checksum(with_password, rotated)
    owned = builders.children(stack(), "api-sum", "redis-sum")
    sums = {
        m["kind"]: m["spec"]["template"]["metadata"]["annotations"] for m in owned if "template" in m["spec"]
    }
    assert sums["StatefulSet"] == {"tailor.dev/config-checksum": "redis-sum"}


def test_disruption_budgets_let_one_pod_go_at_a_time_and_never_hold_a_drain() -> None:
    for component in ("worker", "content-api", "collector", "redis"):
        budget = builders.disruption_budget(stack(), component)
        assert budget is not None
        assert budget["apiVersion"] == "policy/v1"
        assert budget["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": builders.selector_labels(stack(), component)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        }


def test_the_api_waits_for_a_managed_redis_and_the_redis_volume_goes_with_the_stack() -> None:
    [wait] = pod_spec(builders.api_deployment(stack(), "c"))["initContainers"]
    assert wait["args"] == ["shop-redis.shop.svc", "6379"]
    assert wait["image"] == stack().spec.image
    assert wait["securityContext"]["readOnlyRootFilesystem"] is True
    external = stack(redis={"url": "redis://r.example:6379/0"})
    assert "initContainers" not in pod_spec(builders.api_deployment(external, "c"))
    redis = builders.redis_statefulset(stack(), "c")
    assert redis["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Retain",
    }


def test_component_condition_reads_deployment_status() -> None:
    body: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": {
            "name": "shop-api",
            "generation": 2,
            "labels": {"app.kubernetes.io/component": "content-api"},
        },
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 2},
    }
    condition = children.component_condition(body, 5)
    assert condition is not None
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "ContentApiReady",
        "False",
        "Progressing",
    )
    body["status"]["readyReplicas"] = 2
    condition = children.component_condition(body, 5)
    assert condition is not None
    assert condition["status"] == "True"
    body["metadata"]["generation"] = 3
    condition = children.component_condition(body, 5)
    assert condition is not None
    assert condition["status"] == "False"


def test_stack_ready_names_the_first_component_that_is_not() -> None:
    current = [
        conditions.make("Reconciled", True, "Applied", "", 1),
        conditions.make("WorkersReady", True, "Ready", "", 1),
        conditions.make("ContentApiReady", False, "Progressing", "1/2 ready", 1),
        conditions.make("RulesetPublished", True, "Published", "", 1),
    ]
    ready = stack_status.ready_condition(current, 1)
    assert (ready["status"], ready["reason"]) == ("False", "Progressing")
    assert "ContentApiReady" in ready["message"]


def test_condition_transition_time_moves_only_when_status_changes() -> None:
    first = conditions.merge([], [conditions.make("Ready", True, "A", "m", 1)])
    first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    same = conditions.merge(first, [conditions.make("Ready", True, "B", "other", 2)])
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    flipped = conditions.merge(first, [conditions.make("Ready", False, "B", "m", 2)])
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_published_version_is_the_version_that_first_served_the_generation() -> None:
    from tailor.core.rules import compiler

    source = specs.Source(kind="PersonalizationRule", name="r", generation=3)
    result = compiler.ResourceResult(source, "published")
    fresh = publishing.resource_status(observed.Observed(source), result, None, 7)
    assert fresh is not None
    assert fresh["publishedVersion"] == 7
    assert fresh["observedGeneration"] == 3
    # Later versions (other resources changed) do not move it, and nothing needs patching.
    settled = observed.Observed(source, status=fresh)
    assert publishing.resource_status(settled, result, None, 9) is None
    # A new generation is published in version 10.
    edited = specs.Source(kind="PersonalizationRule", name="r", generation=4)
    again = publishing.resource_status(
        observed.Observed(edited, status=fresh), compiler.ResourceResult(edited, "published"), None, 10
    )
    assert again is not None
    assert again["publishedVersion"] == 10


def test_redis_credentials_and_tls_files_come_from_secrets_and_roll_the_pods() -> None:
    secured = stack(
        redis={
            "url": "rediss://redis.example:6380/2",
            "usernameSecretRef": {"name": "login"},
            "passwordSecretRef": {"name": "login"},
            "tls": {"caSecretRef": {"name": "ca", "key": "server-ca.pem"},
                    "clientCertificateSecretRef": {"name": "pair"}},
        }
    )  # fmt: skip
    for manifest in (builders.api_deployment(secured, "c"), builders.worker_deployment(secured, "c")):
        pod = pod_spec(manifest)
        container = pod["containers"][0]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert env["TAILOR_REDIS_URL"] == "rediss://redis.example:6380/2"
        assert env["TAILOR_REDIS_USERNAME"] == {"secretKeyRef": {"name": "login", "key": "username"}}
        assert env["TAILOR_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "login", "key": "password"}}
        assert env["TAILOR_REDIS_TLS_CA_FILE"] == "/etc/tailor/redis-tls/ca.crt"
        assert env["TAILOR_REDIS_TLS_CERT_FILE"] == "/etc/tailor/redis-tls/tls.crt"
        assert env["TAILOR_REDIS_TLS_KEY_FILE"] == "/etc/tailor/redis-tls/tls.key"
        [volume] = [v for v in pod["volumes"] if v["name"] == "redis-tls"]
        assert volume["projected"]["defaultMode"] == 0o440  # the key: the pod's group only
        assert volume["projected"]["sources"] == [
            {"secret": {"name": "ca", "items": [{"key": "server-ca.pem", "path": "ca.crt"}]}},
            {"secret": {"name": "pair", "items": [{"key": "tls.crt", "path": "tls.crt"},
                                                  {"key": "tls.key", "path": "tls.key"}]}},
        ]  # fmt: skip
        assert {"name": "redis-tls", "mountPath": "/etc/tailor/redis-tls", "readOnly": True} in container[
            "volumeMounts"
        ]
    refs = {(ref.name, ref.key) for ref in builders.redis_secret_refs(secured)}
    assert refs == {("login", "password"), ("login", "username"), ("ca", "server-ca.pem"),
                    ("pair", "tls.crt"), ("pair", "tls.key")}  # fmt: skip
    digests = {"login": "a", "ca": "b", "pair": "c"}
    new_ca = {**digests, "ca": "d"}
    assert builders.config_checksum(secured, digests) != builders.config_checksum(secured, new_ca)
    plain = pod_spec(builders.api_deployment(stack(redis={"url": "redis://r:6379/0"}), "c"))
    assert [v["name"] for v in plain["volumes"]] == ["tmp"]


def test_a_managed_redis_has_a_generated_password_maxmemory_below_its_limit_and_protected_mode() -> None:
    managed = stack()
    redis = builders.redis_statefulset(managed, "c")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    flags = {args[i]: args[i + 1] for i in range(0, len(args), 2)}
    assert flags["--protected-mode"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--maxmemory"] == str(int(2**30 * 0.8))  # 80 % of the default 1Gi limit
    assert flags["--appendfsync"] == "always"
    assert flags["--requirepass"] == "$(REDIS_PASSWORD)"
    assert container["env"] == [
        {
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "shop-redis-auth", "key": "password"}},
        }
    ]
    assert "storageClassName" not in redis["spec"]["volumeClaimTemplates"][0]["spec"]  # the cluster's default
    generated = builders.generated_password_secret(managed, "s3cret")
    assert generated is not None
    assert generated["metadata"]["name"] == "shop-redis-auth"
    assert generated["metadata"]["ownerReferences"][0]["uid"] == "uid-1"  # goes with the stack
    assert generated["data"] == {"password": "czNjcmV0"}
    for deployment in (builders.api_deployment(managed, "c"), builders.worker_deployment(managed, "c")):
        env = {
            e["name"]: e.get("value", e.get("valueFrom"))
            for e in pod_spec(deployment)["containers"][0]["env"]
        }
        assert env["TAILOR_REDIS_PASSWORD"] == {
            "secretKeyRef": {"name": "shop-redis-auth", "key": "password"}
        }
        assert env["TAILOR_REDIS_USERNAME"] == "default"
    # A password Secret of your own: used as it is, none generated.
    own = stack(redis={"managed": True, "passwordSecretRef": {"name": "mine"}})
    assert builders.generated_password_secret(own, "x") is None
    assert builders.redis_password_ref(own) == specs.PasswordSecretRef(name="mine")
    assert builders.generated_password_secret(stack(redis={"url": "redis://r:6379/0"}), "x") is None


def test_managed_redis_settings_reach_the_statefulset_and_maxmemory_stays_below_the_limit() -> None:
    tuned = stack(
        redis={"managed": True, "storage": "20Gi", "storageClassName": "premium-rwo",
               "appendfsync": "everysec", "maxmemory": "3000Mi",
               "resources": {"limits": {"memory": "4Gi"}, "requests": {"cpu": "1"}}}
    )  # fmt: skip
    redis = builders.redis_statefulset(tuned, "c")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "256Mi"},
        "limits": {"memory": "4Gi"},
    }  # merged over the defaults, key by key
    args = container["args"]
    assert args[args.index("--maxmemory") + 1] == str(3000 * 2**20)
    assert args[args.index("--appendfsync") + 1] == "everysec"
    claim = redis["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["storageClassName"] == "premium-rwo"
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    derived = stack(redis={"managed": True, "resources": {"limits": {"memory": "1500M"}}})
    assert builders.redis_maxmemory(derived) == 1_200_000_000
    too_big = stack(redis={"managed": True, "maxmemory": "1Gi"})  # the default limit is 1Gi
    source = specs.Source(
        kind="PersonalizationStack", name="shop", spec=too_big.spec.model_dump(by_alias=True)
    )
    with pytest.raises(children.InvalidStack, match="below the managed Redis' memory limit 1Gi"):
        children.parse_stack(source)
    assert [builders.quantity_bytes(q) for q in ("1Gi", "512Mi", "1G", "1e3", "1.5Ki", "100")] == [
        2**30,
        512 * 2**20,
        10**9,
        1000,
        1536,
        100,
    ]


def test_identity_mounts_its_secret_whole_in_api_and_collector_and_nothing_when_off() -> None:
    identity = {"mode": "optional", "secretRef": {"name": "keys"}, "maxTokenLifetime": "1h"}
    on = stack(contentApi={"identity": identity, "collector": {"separate": True}})
    for manifest in (builders.api_deployment(on, "c"), builders.collector_deployment(on, "c")):
        pod = pod_spec(manifest)
        assert {"name": "identity-keys", "secret": {"secretName": "keys", "defaultMode": 0o440}} in pod[
            "volumes"
        ]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert (env["TAILOR_IDENTITY_MODE"], env["TAILOR_IDENTITY_MAX_LIFETIME_SECONDS"]) == (
            "optional",
            "3600",
        )
    off = pod_spec(builders.api_deployment(stack(), "c"))
    assert all(v["name"] != "identity-keys" for v in off["volumes"])
    assert all(not e["name"].startswith("TAILOR_IDENTITY") for e in off["containers"][0]["env"])


def test_workers_get_their_per_user_caps_memory_limit_and_a_liveness_from_loop_progress() -> None:
    capped = stack(workers={"limits": {"eventsPerUserPerMinute": 60, "dedupMarksPerUser": 2000}})
    worker = pod_spec(builders.worker_deployment(capped, "c"))["containers"][0]
    env = {e["name"]: e for e in worker["env"]}
    assert env["TAILOR_WORKER_EVENTS_PER_USER_PER_MINUTE"]["value"] == "60"
    assert env["TAILOR_WORKER_DEDUP_MARKS_PER_USER"]["value"] == "2000"
    # The cache is sized from the container's own limit, read by the downward API.
    assert env["TAILOR_WORKER_MEMORY_LIMIT_BYTES"]["valueFrom"] == {
        "resourceFieldRef": {"containerName": worker["name"], "resource": "limits.memory", "divisor": "1"}
    }
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    defaults = pod_spec(builders.worker_deployment(stack(), "c"))["containers"][0]["env"]
    assert {"name": "TAILOR_WORKER_EVENTS_PER_USER_PER_MINUTE", "value": "300"} in defaults


def container_env(manifest: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or valueFrom's secretKeyRef as (secret, key)."""
    env: dict[str, Any] = {}
    for item in pod_spec(manifest)["containers"][0]["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[item["name"]] = (ref["name"], ref["key"]) if ref else item.get("value")
    return env


def test_a_kinesis_source_reaches_the_pods_that_put_or_read_events_and_no_others() -> None:
    source = {"kind": "kinesis", "kinesis": {"stream": "events", "region": "eu-west-1"}}
    kinesis = stack(kafka=None, source=source, contentApi={"collector": {"separate": True}})
    built = {m["metadata"]["name"]: m for m in builders.children(kinesis, "c") if m["kind"] == "Deployment"}
    wanted = {"TAILOR_EVENTS_SOURCE": "kinesis", "TAILOR_KINESIS_STREAM": "events",
              "TAILOR_KINESIS_REGION": "eu-west-1"}  # fmt: skip
    for name in ("shop-worker", "shop-collector"):
        env = container_env(built[name])
        assert {k: env.get(k) for k in wanted} == wanted, name
        # The pods' own identity (IRSA) unless a Secret is named; no emulator's endpoint.
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "TAILOR_KINESIS_ENDPOINT_URL"} & set(env)
    assert "TAILOR_EVENTS_SOURCE" not in container_env(built["shop-api"])  # decisions only: no events

    keyed = {**source["kinesis"], "endpoint": "http://127.0.0.1:5000",
             "credentialsSecretRef": {"name": "aws", "accessKeyIdKey": "id"}}  # fmt: skip
    with_key = stack(kafka=None, source={"kind": "kinesis", "kinesis": keyed})
    api = next(m for m in builders.children(with_key, "c") if m["metadata"]["name"] == "shop-api")
    env = container_env(api)
    assert env["TAILOR_KINESIS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert env["AWS_ACCESS_KEY_ID"] == ("aws", "id")
    assert env["AWS_SECRET_ACCESS_KEY"] == ("aws", "AWS_SECRET_ACCESS_KEY")
    assert builders.kinesis_secret_keys(with_key) == [("aws", "id"), ("aws", "AWS_SECRET_ACCESS_KEY")]
    # Kafka stacks get none of it.
    kafka_worker = next(m for m in builders.children(stack(), "c") if m["metadata"]["name"] == "shop-worker")
    assert not [name for name in container_env(kafka_worker) if "KINESIS" in name or "EVENTS_SOURCE" in name]

    with pytest.raises(ValueError, match=r"spec\.kafka is required unless"):
        stack(kafka=None)
