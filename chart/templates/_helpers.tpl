{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "keptn-gitops-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name, else "<release>-<chart>".
*/}}
{{- define "keptn-gitops-service.fullname" -}}
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

{{- define "keptn-gitops-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "keptn-gitops-service.labels" -}}
helm.sh/chart: {{ include "keptn-gitops-service.chart" . }}
{{ include "keptn-gitops-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: execution-plane
app.kubernetes.io/part-of: keptn
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "keptn-gitops-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keptn-gitops-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keptn-gitops-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keptn-gitops-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "keptn-gitops-service.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "keptn-gitops-service.pubsubGroup" -}}
{{- .Values.pubsub.group | default (include "keptn-gitops-service.name" .) }}
{{- end }}

{{- define "keptn-gitops-service.configPath" -}}
/etc/keptn-gitops-service/config.yaml
{{- end }}

{{- define "keptn-gitops-service.pvcName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-state" (include "keptn-gitops-service.fullname" .)) }}
{{- end }}

{{/*
Namespaces that get a Role + RoleBinding: rbac.namespaces, or the release namespace.
*/}}
{{- define "keptn-gitops-service.rbacNamespaces" -}}
{{- $namespaces := .Values.rbac.namespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $namespaces) }}
{{- end }}

{{/*
The least-privilege rules: read the GitOps objects the service waits on; patch only to ask for a reconcile
(Flux `reconcile.fluxcd.io/requestedAt` on a GitRepository) or a refresh (Argo CD Application annotation).
*/}}
{{- define "keptn-gitops-service.rbacRules" -}}
- apiGroups: ["kustomize.toolkit.fluxcd.io"]
  resources: ["kustomizations"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["helm.toolkit.fluxcd.io"]
  resources: ["helmreleases"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["source.toolkit.fluxcd.io"]
  resources: ["gitrepositories"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["argoproj.io"]
  resources: ["applications"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/*
Environment variable names that repositories with token auth read their token from (unique, sorted).
*/}}
{{- define "keptn-gitops-service.tokenEnvs" -}}
{{- $envs := list }}
{{- range (.Values.config).repositories | default list }}
{{- $auth := .auth | default dict }}
{{- if eq ($auth.type | toString) "token" }}
{{- $envs = append $envs ($auth.tokenEnv | toString) }}
{{- end }}
{{- end }}
{{- toJson ($envs | uniq | sortAlpha) }}
{{- end }}

{{/*
Whether any repository uses ssh auth ("true" or "").
*/}}
{{- define "keptn-gitops-service.usesSsh" -}}
{{- range (.Values.config).repositories | default list }}
{{- if eq ((.auth | default dict).type | toString) "ssh" }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Render-time checks that turn a broken installation into an error message.
*/}}
{{- define "keptn-gitops-service.validate" -}}
{{- $tokenEnvs := include "keptn-gitops-service.tokenEnvs" . | fromJsonArray }}
{{- if and $tokenEnvs (not .Values.git.existingSecret) }}
{{- fail (printf "config.repositories use token auth (%s): set git.existingSecret to a Secret holding the token(s)" (join ", " $tokenEnvs)) }}
{{- end }}
{{- if and (include "keptn-gitops-service.usesSsh" .) (not .Values.git.existingSecret) }}
{{- fail "config.repositories use ssh auth: set git.existingSecret to a Secret holding the private key (and known_hosts)" }}
{{- end }}
{{- $mount := printf "%s/" (trimSuffix "/" .Values.git.mountPath) }}
{{- range $repo := (.Values.config).repositories | default list }}
{{- $auth := $repo.auth | default dict }}
{{- if eq ($auth.type | toString) "ssh" }}
{{- range $key := list "privateKeyFile" "knownHostsFile" }}
{{- $file := get $auth $key }}
{{- if and $file (not (hasPrefix $mount ($file | toString))) }}
{{- fail (printf "config.repositories[name=%s].auth.%s=%s: must be a file under git.mountPath (%s), where git.existingSecret is mounted" (toString $repo.name) $key (toString $file) $mount) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "persistence.enabled puts the state on one ReadWriteOnce volume: replicaCount must be 1 (for replicas, use stateStore: jetstream without persistence)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (ne (.Values.stateStore | default "sqlite") "jetstream") }}
{{- fail "replicaCount > 1 needs stateStore: jetstream, so that a dead replica's deployments are taken over" }}
{{- end }}
{{- end }}

{{/*
Pod facts from the downward API, as Keptn's distributor and go-utils read them.
*/}}
{{- define "keptn-gitops-service.downwardEnv" -}}
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end }}

{{/*
KEPTN_API_ENDPOINT / KEPTN_API_TOKEN (service in direct mode; distributor in distributor mode).
*/}}
{{- define "keptn-gitops-service.keptnApiEnv" -}}
{{- if .Values.keptnApi.endpoint }}
- name: KEPTN_API_ENDPOINT
  value: {{ .Values.keptnApi.endpoint | quote }}
{{- if .Values.keptnApi.existingSecret }}
- name: KEPTN_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.keptnApi.existingSecret }}
      key: {{ .Values.keptnApi.tokenKey }}
{{- end }}
{{- end }}
{{- end }}
