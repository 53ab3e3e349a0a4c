"""Pinned versions of everything the local stack builds or downloads.

One place to bump. Artifacts are cached under a directory named after these versions (and
``RECIPE``), so a bump builds anew while an unchanged pin reuses the cache.
"""

from __future__ import annotations

from typing import Final

KUBERNETES: Final = "v1.36.3"
#: Staging modules (k8s.io/api, ...) are published as v0.<minor>.<patch> of the release.
KUBERNETES_STAGING: Final = "v0.36.3"
ETCD: Final = "v3.6.16"
KWOK: Final = "v0.8.0"
HELM: Final = "v3.22.0"
#: The Kubernetes version helm assumes when no cluster is asked (`helm template`, `helm lint`): helm's
#: own release build stamps its client-go's (v0.37.0 in helm v3.22.0) as 1.37; unstamped it says 1.20,
#: below the chart's kubeVersion. Bump with HELM (helm's go.mod, k8s.io/client-go).
HELM_KUBE_VERSION: Final = ("1", "37")
#: The real node (`tailor dev up --node real`): CNI plugins, the OCI registry images are pushed
#: to, and crictl (tears pod sandboxes down through the CRI, as a node operator would).
CNI_PLUGINS: Final = "v1.10.0"
DISTRIBUTION: Final = "v3.1.2"
CRI_TOOLS: Final = "v1.36.0"
#: Cluster DNS for the real node's pods (Service names like <name>.<namespace>.svc resolve).
COREDNS: Final = "v1.15.0"
#: KEDA's CRDs (ScaledObject, TriggerAuthentication), read from its Go module for the tests of
#: the operator's KEDA mode (tailor.devstack.keda); KEDA itself does not run in the local stack.
#: (v2.21 requires Go 1.27, newer than the toolchain here.)
KEDA: Final = "v2.20.2"
KAFKA: Final = "4.3.1"
KAFKA_SCALA: Final = "2.13"
#: Kafka 4.3 logs through slf4j 1.7 and ships log4j-core 2.25.4; this binds the two so the
#: broker logs to its log file instead of warning about a NOP logger.
SLF4J_BACKEND: Final = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.4")
#: Strimzi, whose KafkaTopic CRD (from its api test jar) the tests of `topics.management: strimzi`
#: install; 0.51 serves kafka.strimzi.io v1 and v1beta2 (tailor.devstack.strimzibuild).
STRIMZI: Final = "0.51.0"
#: Pinned so `mvn dependency:copy-dependencies` behaves the same on every machine.
MAVEN_DEPENDENCY_PLUGIN: Final = "3.8.1"

#: Bump when the way we build changes (flags, layout) so caches are rebuilt once.
RECIPE: Final = "1"
