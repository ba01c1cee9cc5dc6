{{/* Names, labels and the pieces the worker, gateway and migration share. */}}

{{- define "tokenwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokenwarden.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tokenwarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tokenwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "tokenwarden.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: pass (list $ "worker"). */}}
{{- define "tokenwarden.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "tokenwarden.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tokenwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tokenwarden.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The gateway's service account: its own, so that Vault Kubernetes auth can
tell the gateway from the worker (vault.agentInjector.gatewayRole).
*/}}
{{- define "tokenwarden.gatewayServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- printf "%s-gateway" (include "tokenwarden.serviceAccountName" .) -}}
{{- else -}}
{{- include "tokenwarden.serviceAccountName" . -}}
{{- end -}}
{{- end -}}

{{/* The Secret of the gateway's environment: its own, else the shared one. */}}
{{- define "tokenwarden.gatewaySecret" -}}
{{- default .Values.secrets.existingSecret .Values.secrets.gatewayExistingSecret -}}
{{- end -}}

{{- define "tokenwarden.tag" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag must be a pinned version, not latest" -}}
{{- end -}}
{{- $tag -}}
{{- end -}}

{{- define "tokenwarden.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "tokenwarden.tag" .) -}}
{{- end -}}
{{- end -}}

{{- define "tokenwarden.agent" -}}
{{- if not (has .Values.vault.auth (list "secret" "agentInjector" "kubernetes")) -}}
{{- fail (printf "vault.auth must be secret, agentInjector or kubernetes, not %q" .Values.vault.auth) -}}
{{- end -}}
{{- if and (eq .Values.vault.auth "secret") (not .Values.secrets.existingSecret) -}}
{{- fail "vault.auth=secret needs secrets.existingSecret: a Secret holding VAULT_TOKEN or TOKENWARDEN_VAULT_ROLE_ID and TOKENWARDEN_VAULT_SECRET_ID" -}}
{{- end -}}
{{- eq .Values.vault.auth "agentInjector" -}}
{{- end -}}

{{/*
Pod annotations of the Vault Agent injector: pass (dict "root" $ "prePopulateOnly" bool),
and "role" for another Kubernetes auth role than the worker's.
The agent logs in with Kubernetes auth and, as a caching proxy on
127.0.0.1:8200, replaces whatever token the engine sends with its own.
*/}}
{{- define "tokenwarden.agentAnnotations" -}}
{{- $v := .root.Values.vault -}}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/role: {{ .role | default $v.agentInjector.role | quote }}
vault.hashicorp.com/auth-path: {{ $v.agentInjector.authPath | quote }}
vault.hashicorp.com/service: {{ $v.address | quote }}
{{- if $v.agentInjector.image }}
vault.hashicorp.com/agent-image: {{ $v.agentInjector.image | quote }}
{{- end }}
{{- if .prePopulateOnly }}
vault.hashicorp.com/agent-pre-populate-only: "true"
{{- else }}
vault.hashicorp.com/agent-cache-enable: "true"
vault.hashicorp.com/agent-cache-use-auto-auth-token: "force"
vault.hashicorp.com/agent-cache-listener-port: "8200"
{{- end }}
{{- with $v.agentInjector.databasePasswordPath }}
vault.hashicorp.com/agent-inject-secret-pgpass: {{ . | quote }}
vault.hashicorp.com/agent-inject-template-pgpass: |
  {{ printf "{{- with secret %q -}}*:*:*:*:{{ .Data.data.password }}{{- end }}" . }}
{{- end }}
{{- range $k, $val := $v.agentInjector.extraAnnotations }}
{{ $k }}: {{ $val | quote }}
{{- end }}
{{- end -}}

{{/*
Environment of the worker and gateway beyond the ConfigMap: pass
(dict "root" $ "role" <its Vault Kubernetes auth role>).
*/}}
{{- define "tokenwarden.vaultEnv" -}}
{{- $v := .root.Values.vault -}}
{{- if eq (include "tokenwarden.agent" .root) "true" }}
- name: VAULT_ADDR
  value: http://127.0.0.1:8200
# Not a secret: the agent replaces it with its own token on every request.
- name: VAULT_TOKEN
  value: vault-agent-injected
{{- if $v.agentInjector.databasePasswordPath }}
- name: PGPASSFILE
  value: /vault/secrets/pgpass
{{- end }}
{{- else if eq $v.auth "kubernetes" }}
# The engine logs in itself with its service account token (mounted at
# the default path), renews its Vault token and logs in again as needed.
- name: TOKENWARDEN_VAULT_AUTH
  value: kubernetes
- name: TOKENWARDEN_VAULT_K8S_ROLE
  value: {{ .role | quote }}
- name: TOKENWARDEN_VAULT_K8S_MOUNT
  value: {{ trimPrefix "auth/" $v.agentInjector.authPath | quote }}
{{- end }}
{{- end -}}

{{/* Whether the pods need their service account token to log in to Vault. */}}
{{- define "tokenwarden.vaultNeedsToken" -}}
{{- has .Values.vault.auth (list "agentInjector" "kubernetes") -}}
{{- end -}}

{{/*
Topology spread constraints of one component: pass (list $ "worker" constraints).
Constraints without a labelSelector select the component's own pods.
*/}}
{{- define "tokenwarden.topologySpread" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- $out := list -}}
{{- range index . 2 -}}
{{- $c := deepCopy . -}}
{{- if not $c.labelSelector -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "tokenwarden.selectorLabels" (list $ $component) | fromYaml)) -}}
{{- $_ := set $c "matchLabelKeys" (list "pod-template-hash") -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
