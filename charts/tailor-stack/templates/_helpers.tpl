{{/*
Names, labels and the image of the stack. The tailor chart (the parent) computes the same stack
name in its own helpers (tailor.stackName): keep the two alike.
*/}}

{{/* The stack's name: name, else the release name, with "-tailor" unless it contains "tailor". */}}
{{- define "tailor-stack.name" -}}
{{- if .Values.name }}
{{- .Values.name }}
{{- else if contains "tailor" .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-tailor" .Release.Name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels on the stack, its rules and its variants. */}}
{{- define "tailor-stack.labels" -}}
{{- /* The chart's own name: .Chart.Name is its alias ("stack") under the tailor chart. */}}
helm.sh/chart: {{ printf "tailor-stack-%s" .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: tailor
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tailor
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The image reference for spec.image: this chart's image values, else global.image (the parent's),
else empty (the CRD's default applies).
*/}}
{{- define "tailor-stack.image" -}}
{{- $global := (.Values.global).image | default dict }}
{{- $repository := .Values.image.repository | default $global.repository }}
{{- if $repository }}
{{- $digest := .Values.image.digest | default $global.digest }}
{{- if $digest }}
{{- printf "%s@%s" $repository $digest }}
{{- else }}
{{- printf "%s:%s" $repository (.Values.image.tag | default $global.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pull policy for spec.imagePullPolicy: this chart's, else global.image's, else empty. */}}
{{- define "tailor-stack.pullPolicy" -}}
{{- $global := (.Values.global).image | default dict }}
{{- .Values.image.pullPolicy | default $global.pullPolicy | default "" }}
{{- end }}
