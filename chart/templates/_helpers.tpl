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
What the configured waits need on the Kubernetes API, derived from .Values.config.rules[].wait, as JSON:
  {"byNamespace": {<namespace>: {<resource>: {<verb>: true}}}, "all": {<resource>: {<verb>: true}},
   "templated": ["config.rules[0].wait.flux.namespace", ...]}
Resources are keys of keptn-gitops-service.rbacResources. Per wait kind:
  flux Kustomization:  kustomizations get/list/watch; gitrepositories patch (the reconcile.fluxcd.io/requestedAt
                       annotation on the Kustomization's source, by default in the Kustomization's namespace)
  flux HelmRelease:    helmreleases get/list/watch/patch (the same annotation, tying the release to the commit);
                       its kustomization as above
  argocd (kubernetes): applications get/list/watch; patch only with refresh (default true) or sync
  argocd (rest), none: nothing
  clusters:            the targets with inCluster: true, each as above (the other clusters grant through their
                       own kubeconfigs)
A namespace written as a template ("{project}-{stage}") is only known per event: such waits get their rules in every
namespace of rbac.namespaces (and are listed in "templated"); literal namespaces get the rules of their own waits.
Every namespace of rbac.namespaces gets the rules of all configured waits.
*/}}
{{- define "keptn-gitops-service.rbacNeeds" -}}
{{- $grants := list }}
{{- range $i, $rule := (.Values.config).rules | default list }}
{{- $ruleWait := $rule.wait | default dict }}
{{- $ruleAt := printf "config.rules[%d].wait" $i }}
{{- $waits := list (dict "wait" $ruleWait "at" $ruleAt) }}
{{- range $j, $target := ($ruleWait.clusters | default dict).targets | default list }}
{{- if $target.inCluster }}
{{- $waits = append $waits (dict "wait" $target "at" (printf "%s.clusters.targets[%d]" $ruleAt $j)) }}
{{- end }}
{{- end }}
{{- range $w := $waits }}
{{- $wait := $w.wait }}
{{- $at := $w.at }}
{{- with $wait.flux }}
{{- $ks := dict "namespace" (toString .namespace) "key" (printf "%s.flux.namespace" $at) }}
{{- if eq (toString .kind) "HelmRelease" }}
{{- $grants = append $grants (dict "namespace" (toString .namespace) "key" (printf "%s.flux.namespace" $at) "resource" "helmreleases" "verbs" (list "get" "list" "watch" "patch")) }}
{{- $parent := .kustomization | default dict }}
{{- $ks = dict "namespace" (toString $parent.namespace) "key" (printf "%s.flux.kustomization.namespace" $at) }}
{{- end }}
{{- $grants = append $grants (merge (dict "resource" "kustomizations" "verbs" (list "get" "list" "watch")) $ks) }}
{{- $grants = append $grants (merge (dict "resource" "gitrepositories" "verbs" (list "patch")) $ks) }}
{{- end }}
{{- with $wait.argocd }}
{{- if eq (toString (.api | default "kubernetes")) "kubernetes" }}
{{- $verbs := list "get" "list" "watch" }}
{{- $refresh := ternary .refresh true (hasKey . "refresh") }}
{{- if or $refresh .sync }}
{{- $verbs = append $verbs "patch" }}
{{- end }}
{{- $grants = append $grants (dict "namespace" (toString (.namespace | default "argocd")) "key" (printf "%s.argocd.namespace" $at) "resource" "applications" "verbs" $verbs) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $byNamespace := dict }}
{{- $all := dict }}
{{- $templated := list }}
{{- range $grant := $grants }}
{{- $targets := list }}
{{- if contains "{" $grant.namespace }}
{{- $templated = append $templated $grant.key }}
{{- else }}
{{- $targets = list $grant.namespace }}
{{- end }}
{{- range $target := concat (list "") $targets }}
{{- $resources := $all }}
{{- if $target }}
{{- if not (hasKey $byNamespace $target) }}{{- $_ := set $byNamespace $target dict }}{{- end }}
{{- $resources = get $byNamespace $target }}
{{- end }}
{{- if not (hasKey $resources $grant.resource) }}{{- $_ := set $resources $grant.resource dict }}{{- end }}
{{- range $verb := $grant.verbs }}{{- $_ := set (get $resources $grant.resource) $verb true }}{{- end }}
{{- end }}
{{- end }}
{{- range $namespace := .Values.rbac.namespaces | default list }}
{{- if not (hasKey $byNamespace $namespace) }}{{- $_ := set $byNamespace $namespace dict }}{{- end }}
{{- $resources := get $byNamespace $namespace }}
{{- range $resource, $verbs := $all }}
{{- if not (hasKey $resources $resource) }}{{- $_ := set $resources $resource dict }}{{- end }}
{{- range $verb, $_ := $verbs }}{{- $_ := set (get $resources $resource) $verb true }}{{- end }}
{{- end }}
{{- end }}
{{- toJson (dict "byNamespace" $byNamespace "all" $all "templated" ($templated | uniq)) }}
{{- end }}

{{/*
The API group of each resource the service may be granted, in the order rules are written.
*/}}
{{- define "keptn-gitops-service.rbacResources" -}}
{{- toJson (list (list "kustomize.toolkit.fluxcd.io" "kustomizations") (list "helm.toolkit.fluxcd.io" "helmreleases") (list "source.toolkit.fluxcd.io" "gitrepositories") (list "argoproj.io" "applications")) }}
{{- end }}

{{/*
RBAC rules from a {<resource>: {<verb>: true}} map (include with the map as the context).
*/}}
{{- define "keptn-gitops-service.rbacRules" -}}
{{- $needs := . }}
{{- range $pair := include "keptn-gitops-service.rbacResources" . | fromJsonArray }}
{{- $resource := index $pair 1 }}
{{- with get $needs $resource }}
{{- $granted := . }}
{{- $verbs := list }}
{{- range $verb := list "get" "list" "watch" "patch" }}{{ if hasKey $granted $verb }}{{ $verbs = append $verbs $verb }}{{ end }}{{ end }}
- apiGroups: [{{ index $pair 0 | quote }}]
  resources: [{{ $resource | quote }}]
  verbs: {{ toJson $verbs }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Environment variable names that repositories with token auth read their token from, and their forges' API tokens and
webhook secrets (unique, sorted; all from `git.existingSecret`).
*/}}
{{- define "keptn-gitops-service.tokenEnvs" -}}
{{- $envs := list }}
{{- range (.Values.config).repositories | default list }}
{{- $auth := .auth | default dict }}
{{- if eq ($auth.type | toString) "token" }}
{{- $envs = append $envs ($auth.tokenEnv | toString) }}
{{- end }}
{{- with .forge }}
{{- $envs = append $envs (.tokenEnv | toString) }}
{{- with .webhookSecretEnv }}
{{- $envs = append $envs (. | toString) }}
{{- end }}
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
{{- if not ((.Values.config).rules) }}
{{- fail "config.rules is empty: the chart has no default rule, because a rule decides which projects' deployment triggers this service answers (a catch-all rule would answer every trigger next to helm-service). Set config.repositories and config.rules in your values (see the chart's README.md); the service itself refuses to start without a rule." }}
{{- end }}
{{- if not ((.Values.config).repositories) }}
{{- fail "config.repositories is empty: name the GitOps repository (or repositories) the rules in config.rules write to." }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.rbac.clusterWide) (not .Values.rbac.namespaces) }}
{{- $templated := (include "keptn-gitops-service.rbacNeeds" . | fromJson).templated }}
{{- if $templated }}
{{- fail (printf "%s: the namespace is a template, known only per event, so the chart cannot tell where to grant access: list the namespaces it renders to in rbac.namespaces (e.g. [sockshop-dev, sockshop-production]), or set rbac.clusterWide=true" (join ", " $templated)) }}
{{- end }}
{{- end }}
{{- $rcp := .Values.remoteControlPlane | default dict }}
{{- $api := $rcp.api | default dict }}
{{- if $rcp.enabled }}
{{- if not $api.hostname }}
{{- fail "remoteControlPlane.enabled needs remoteControlPlane.api.hostname: the host (and port) of Keptn's API gateway, e.g. api-gateway-nginx.keptn or keptn.example.com" }}
{{- end }}
{{- if and (not $api.token) (not .Values.keptnApi.existingSecret) }}
{{- fail "remoteControlPlane.enabled needs the Keptn API token: set remoteControlPlane.api.token, or keptnApi.existingSecret to a Secret holding it" }}
{{- end }}
{{- end }}
{{- if and ($rcp.autoDetect).enabled (ne (($rcp.autoDetect).namespace | default .Release.Namespace) .Release.Namespace) }}
{{- fail (printf "remoteControlPlane.autoDetect reads Keptn's Secret keptn-api-token, which a pod can only use in its own namespace: install the chart into %s, or set remoteControlPlane.api.* (or keptnApi.*) instead" ($rcp.autoDetect).namespace) }}
{{- end }}
{{- if and (eq (toString $api.apiValidateTls) "false") (not (include "keptn-gitops-service.distributor" .)) }}
{{- fail "remoteControlPlane.api.apiValidateTls=false is honoured by the Keptn distributor sidecar only (HTTP_SSL_VERIFY): set remoteControlPlane.enabled=true or distributor.enabled=true, or keep TLS validation on" }}
{{- end }}
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
{{- if and (gt (int .Values.replicaCount) 1) (ne (.Values.stateStore | default "sqlite") "jetstream") }}
{{- fail "replicaCount > 1 needs stateStore: jetstream, so that a dead replica's deployments are taken over" }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "persistence.enabled puts the state on one ReadWriteOnce volume: replicaCount must be 1 (for replicas, set persistence.enabled=false: the jetstream state store keeps in-flight deployments)" }}
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
"true" when the Keptn distributor sidecar runs: distributor.enabled, or remoteControlPlane.enabled (as in Keptn's
helm-service chart, the distributor then talks to the remote control plane's API instead of NATS).
*/}}
{{- define "keptn-gitops-service.distributor" -}}
{{- if or .Values.distributor.enabled (.Values.remoteControlPlane | default dict).enabled }}true{{ end }}
{{- end }}

{{/*
The Keptn API endpoint: remoteControlPlane.api (<protocol>://<hostname>/api), Keptn's API gateway in the release
namespace (remoteControlPlane.autoDetect), or keptnApi.endpoint.
*/}}
{{- define "keptn-gitops-service.keptnApiEndpoint" -}}
{{- $rcp := .Values.remoteControlPlane | default dict }}
{{- $api := $rcp.api | default dict }}
{{- if $rcp.enabled }}
{{- printf "%s://%s/api" ($api.protocol | default "https") (trimSuffix "/" (toString $api.hostname)) }}
{{- else if ($rcp.autoDetect).enabled }}
{{- printf "http://api-gateway-nginx.%s/api" .Release.Namespace }}
{{- else }}
{{- .Values.keptnApi.endpoint }}
{{- end }}
{{- end }}

{{/*
Name of the Secret the chart creates for remoteControlPlane.api.token.
*/}}
{{- define "keptn-gitops-service.keptnApiSecretName" -}}
{{- printf "%s-keptn-api" (include "keptn-gitops-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
KEPTN_API_ENDPOINT / KEPTN_API_TOKEN (service in direct mode; distributor in distributor mode), and HTTP_SSL_VERIFY
for the distributor. The token comes from keptnApi.existingSecret, from the Secret the chart makes of
remoteControlPlane.api.token, or (autoDetect) from Keptn's own Secret keptn-api-token.
*/}}
{{- define "keptn-gitops-service.keptnApiEnv" -}}
{{- $rcp := .Values.remoteControlPlane | default dict }}
{{- $api := $rcp.api | default dict }}
{{- with include "keptn-gitops-service.keptnApiEndpoint" . }}
- name: KEPTN_API_ENDPOINT
  value: {{ . | quote }}
{{- if $.Values.keptnApi.existingSecret }}
- name: KEPTN_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.keptnApi.existingSecret }}
      key: {{ $.Values.keptnApi.tokenKey }}
{{- else if and $rcp.enabled $api.token }}
- name: KEPTN_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "keptn-gitops-service.keptnApiSecretName" $ }}
      key: keptn-api-token
{{- else if ($rcp.autoDetect).enabled }}
- name: KEPTN_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: keptn-api-token
      key: keptn-api-token
{{- end }}
{{- end }}
{{- end }}
