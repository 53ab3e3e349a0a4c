{{/*
Shared names, labels and snippets. Every template uses these, so object names and
selectors are computed in one place (selectors must never change between releases).
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "tailor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every object: fullnameOverride, else "<release>" when the release name
already contains the chart name, else "<release>-<chart>". 63 characters is the DNS label limit.
*/}}
{{- define "tailor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "tailor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods; they must stay the same across upgrades. */}}
{{- define "tailor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tailor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "tailor.labels" -}}
helm.sh/chart: {{ include "tailor.chart" . }}
app.kubernetes.io/name: {{ include "tailor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tailor
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "tailor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tailor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference of the operator and the hooks; the tailor-stack subchart computes the same one
from global.image for the default stack (tailor-stack.image).
*/}}
{{- define "tailor.image" -}}
{{- $image := .Values.global.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The default stack's name, as the tailor-stack subchart names it (tailor-stack.name). */}}
{{- define "tailor.stackName" -}}
{{- if .Values.stack.name }}
{{- .Values.stack.name }}
{{- else if contains "tailor" .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-tailor" .Release.Name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The restricted Pod Security Standard, at pod level. runAsUser/runAsGroup come from values
so platforms that assign UIDs themselves (OpenShift) can set them to null.
*/}}
{{- define "tailor.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurity.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.podSecurity.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.podSecurity.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The restricted Pod Security Standard, at container level. */}}
{{- define "tailor.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The selector labels the operator puts on a stack's pods (operator/tailor_operator/builders.py):
name=tailor, instance=<stack name>, component=worker|content-api|redis.
Call with (dict "context" $ "component" "worker").
*/}}
{{- define "tailor.stackSelectorLabels" -}}
app.kubernetes.io/name: tailor
app.kubernetes.io/instance: {{ include "tailor.stackName" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The namespaces the operator watches, as a JSON list: operator.watchNamespaces, else the release
namespace; [] when operator.clusterWide (every namespace). Read with `include ... | fromJsonArray`.
*/}}
{{- define "tailor.watchNamespaces" -}}
{{- if .Values.operator.clusterWide }}
{{- list | toJson }}
{{- else }}
{{- default (list .Release.Namespace) .Values.operator.watchNamespaces | uniq | toJson }}
{{- end }}
{{- end }}
