{{/*
What the operator may do, shared by the ClusterRole (all namespaces) and the per-namespace
Roles (operator.watchNamespaces). Least privilege: nothing here is a wildcard, Secrets are
read-only and only by name (no list/watch), and nothing can touch RBAC objects.
*/}}
{{- define "tailor.operatorNamespacedRules" -}}
# The three Tailor kinds: watch them, patch kopf's bookkeeping annotations and finalizer.
- apiGroups: ["tailor.dev"]
  resources: ["personalizationstacks", "personalizationrules", "contentvariants"]
  verbs: ["get", "list", "watch", "patch"]
# Their status: conditions, observedGeneration, rulesetVersion, stats.
- apiGroups: ["tailor.dev"]
  resources: ["personalizationstacks/status", "personalizationrules/status", "contentvariants/status"]
  verbs: ["get", "patch", "update"]
# The children of a stack: worker and content-API Deployments, managed Redis StatefulSet.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# The content API's and managed Redis' Services.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Secrets a stack references (e.g. the Redis password): read by name only.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# kopf reports handler progress and errors as Events on the objects it handles.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
