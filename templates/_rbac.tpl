{{/*
What the operator may do, shared by the Role of each watched namespace (the default) and the
ClusterRole (operator.clusterWide). Least privilege, checked against the operator's code by running it
under exactly these rules (tests/integration/test_chart.py): no wildcards, no `update` (children
are written by server-side apply, status by merge patch), Secrets read by name only (no
list/watch) and created only for a managed Redis' generated password and a stack's ruleset
signing key, deletes only for what the
operator removes (a managed Redis, a budget or an autoscaler switched off, a separate collector
folded back into the content API), and nothing about RBAC, Pods or ConfigMaps.
*/}}
{{- define "tailor.operatorRules" -}}
# The three Tailor kinds: kopf watches them and patches its annotations and finalizer.
- apiGroups: ["tailor.dev"]
  resources: ["personalizationstacks", "personalizationrules", "contentvariants"]
  verbs: ["get", "list", "watch", "patch"]
# Their status: conditions, observedGeneration, rulesetVersion, live stats.
- apiGroups: ["tailor.dev"]
  resources: ["personalizationstacks/status", "personalizationrules/status", "contentvariants/status"]
  verbs: ["get", "patch"]
# A stack's children: worker, content-API and collector Deployments, managed-Redis StatefulSet,
# their Services. Server-side apply needs create (first apply) and patch; the watch restores drift.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Their PodDisruptionBudgets (one per component): server-side apply, deleted when turned off.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch", "delete"]
# The stack's NetworkPolicies (spec.networkPolicies): server-side apply, deleted when turned off.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create", "patch", "delete"]
# Autoscalers of workers and content API (spec.*.autoscaling): HPAs, or KEDA ScaledObjects where
# KEDA is installed, with the TriggerAuthentication of a secured Kafka; server-side apply, deleted
# when autoscaling is turned off.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["create", "patch", "delete"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects", "triggerauthentications"]
  verbs: ["create", "patch", "delete"]
# Strimzi KafkaTopics of stacks with kafka.topics.management: strimzi (docs/topics.md): written by
# server-side apply only. Harmless where Strimzi is not installed.
- apiGroups: ["kafka.strimzi.io"]
  resources: ["kafkatopics"]
  verbs: ["create", "patch"]
# Secrets a stack references (Redis and Kafka credentials, CAs and client pairs; the admin token): read
# by name, never listed or watched, and only those of rbac.secretNames when set (resourceNames limits
# get; it cannot limit list, watch or create). create: the generated password of a managed Redis and
# each stack's ruleset signing key, each made once (never updated).
{{- if .Values.rbac.secretNames }}
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ .Values.rbac.secretNames | uniq | toJson }}
  verbs: ["get"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
{{- else }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
{{- end }}
# Events on the objects it handles (kopf's and the operator's own), for `kubectl describe`.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* kopf peering: the operator creates its peering object at start and keeps it fresh. */}}
{{- define "tailor.peeringRules" -}}
{{- $plural := ternary "clusterkopfpeerings" "kopfpeerings" (.Values.operator.clusterWide | default false) -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ $plural | quote }}]
  verbs: ["create"]
- apiGroups: ["kopf.dev"]
  resources: [{{ $plural | quote }}]
  resourceNames: [{{ .Values.operator.peering | quote }}]
  verbs: ["get", "patch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ $plural | quote }}]
  verbs: ["list", "watch"]
{{- end }}
