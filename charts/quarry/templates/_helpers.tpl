{{/* Common names and checks for the Quarry chart. */}}

{{- define "quarry.labels" -}}
app.kubernetes.io/name: quarry
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.coordinator.version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "quarry.selectorLabels" -}}
app.kubernetes.io/name: quarry
app.kubernetes.io/component: coordinator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "quarry.serviceAccountName" -}}
{{- if include "quarry.flag" (list "serviceAccount.create" .Values.serviceAccount.create) -}}
{{- default "quarry-coordinator" .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{/* The Secret holding the Azure credentials, or empty when none is configured. */}}
{{- define "quarry.azureSecretName" -}}
{{- $c := .Values.coordinator.azureCredentials -}}
{{- if $c.secretName -}}
{{- $c.secretName -}}
{{- else if or $c.clientID $c.tenantID $c.clientSecret -}}
quarry-azure-credentials
{{- end -}}
{{- end }}

{{/*
A boolean value, given as `list "name" value`: "true" when the value is true or the string
"true", empty when it is false, "false", empty or unset; anything else fails the render (a
quoted "false" must not count as set, as a plain `if` on a non-empty string would).
*/}}
{{- define "quarry.flag" -}}
{{- $v := toString (index . 1) -}}
{{- if eq $v "true" -}}
true
{{- else if not (has $v (list "false" "" "<nil>")) -}}
{{- fail (printf "%s: expected true or false, got %q" (index . 0) $v) -}}
{{- end -}}
{{- end }}

{{/* Whether workload identity is enabled. */}}
{{- define "quarry.workloadIdentity" -}}
{{- include "quarry.flag" (list "coordinator.azureCredentials.workloadIdentity.enabled" .Values.coordinator.azureCredentials.workloadIdentity.enabled) -}}
{{- end }}

{{/* Whether HSM sealing settings are present. */}}
{{- define "quarry.hsmConfigured" -}}
{{- $h := .Values.coordinator.hsm -}}
{{- if or $h.keyName $h.vaultURL $h.maaURL $h.keyVersion -}}true{{- end -}}
{{- end }}

{{/* Refuse settings that Quarry does not support, instead of silently ignoring them. */}}
{{- define "quarry.validate" -}}
{{- if include "quarry.flag" (list "coordinator.distributed" .Values.coordinator.distributed) -}}
{{- fail "coordinator.distributed: distributed mode is not supported by Quarry; run one Coordinator" -}}
{{- end -}}
{{- $_ := include "quarry.flag" (list "coordinator.simulation" .Values.coordinator.simulation) -}}
{{- if ne (int .Values.coordinator.replicas) 1 -}}
{{- fail (printf "coordinator.replicas: Quarry runs exactly one Coordinator, got %v" .Values.coordinator.replicas) -}}
{{- end -}}
{{- range $name := list "clientServerPort" "meshServerPort" "prometheusPort" -}}
{{- $p := toString (index $.Values.coordinator $name) -}}
{{- if and (eq $name "prometheusPort") (has $p (list "" "<nil>")) -}}
{{- else if not (and (regexMatch "^[0-9]{1,5}$" $p) (ge (atoi $p) 1) (le (atoi $p) 65535)) -}}
{{- fail (printf "coordinator.%s: expected a port number from 1 to 65535, got %q" $name $p) -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.tee.plugin (list "intel" "azure")) -}}
{{- fail (printf "tee.plugin: expected intel or azure, got %q" .Values.tee.plugin) -}}
{{- end -}}
{{- $c := .Values.coordinator.azureCredentials -}}
{{- if and $c.secretName (or $c.clientID $c.tenantID $c.clientSecret) -}}
{{- fail "coordinator.azureCredentials: set either secretName or clientID/tenantID/clientSecret, not both" -}}
{{- end -}}
{{- $wi := include "quarry.workloadIdentity" . -}}
{{- if and $wi $c.clientSecret -}}
{{- fail "coordinator.azureCredentials: workloadIdentity.enabled uses a federated token; remove clientSecret" -}}
{{- end -}}
{{- if and (not $c.secretName) (or $c.clientID $c.tenantID $c.clientSecret $wi) -}}
{{- $missing := list -}}
{{- if not $c.clientID }}{{ $missing = append $missing "clientID" }}{{ end -}}
{{- if not $c.tenantID }}{{ $missing = append $missing "tenantID" }}{{ end -}}
{{- if and (not $wi) (not $c.clientSecret) }}{{ $missing = append $missing "clientSecret" }}{{ end -}}
{{- if $missing -}}
{{- fail (printf "coordinator.azureCredentials: %s missing; set clientID, tenantID and clientSecret (or workloadIdentity.enabled instead of clientSecret), or secretName" (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
{{- if include "quarry.hsmConfigured" . -}}
{{- $h := .Values.coordinator.hsm -}}
{{- if not (and $h.keyName $h.vaultURL $h.maaURL) -}}
{{- fail "coordinator.hsm: keyName, vaultURL and maaURL are all required when any HSM value is set" -}}
{{- end -}}
{{- end -}}
{{- end }}
