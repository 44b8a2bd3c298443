{{/*
Names. Kubernetes names and label values are at most 63 characters (a DNS label); a suffixed name cuts the
base, not the suffix, so "-redis" always stays distinct from the gateway's own name.
*/}}
{{- define "mcpgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcpgate.fullname" -}}
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

{{/* "<fullname>-<suffix>" within 63 characters. Call with (list $ "redis"). */}}
{{- define "mcpgate.suffixed" -}}
{{- $ctx := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $base := include "mcpgate.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{- define "mcpgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels, per component: the gateway's and Redis's pods share name and instance, so the component keeps
each Deployment, Service, PDB and NetworkPolicy to its own pods. Call with (list $ "gateway").
*/}}
{{- define "mcpgate.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "mcpgate.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every resource's labels. Call with (list $ "gateway"). */}}
{{- define "mcpgate.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ include "mcpgate.chart" $ctx }}
{{ include "mcpgate.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mcpgate
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{- define "mcpgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcpgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mcpgate.image" -}}
{{- $img := index . 0 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (toString (default (index . 1) $img.tag)) -}}
{{- end -}}
{{- end -}}

{{/* Whether env comes from a Secret at all: a name was given, or the chart creates it. */}}
{{- define "mcpgate.secretInUse" -}}
{{- if or .Values.secret.create .Values.secret.name }}true{{ end -}}
{{- end -}}

{{- define "mcpgate.secretName" -}}
{{- default (include "mcpgate.fullname" .) .Values.secret.name -}}
{{- end -}}

{{/* The key of variable `name` in the Secret when it is read from there, else "". Call with (list $ "NAME"). */}}
{{- define "mcpgate.secretKeyOf" -}}
{{- $ctx := index . 0 -}}
{{- $var := index . 1 -}}
{{- if include "mcpgate.secretInUse" $ctx -}}
{{- $key := index $ctx.Values.secret.env $var | default "" -}}
{{- if not (and $ctx.Values.redis.enabled (eq $var "REDIS_URL")) -}}{{ $key }}{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mcpgate.redisName" -}}
{{- include "mcpgate.suffixed" (list . "redis") -}}
{{- end -}}

{{- define "mcpgate.redisURL" -}}
{{- printf "redis://%s:6379/0" (include "mcpgate.redisName" .) -}}
{{- end -}}

{{/*
The demo configuration written when `config` is empty: the demo tools and JSON logs. server.listen and
server.allowed_hosts are filled in below as for any configuration given as an object.
*/}}
{{- define "mcpgate.demoConfig" -}}
server:
  drain_timeout: 30s
logging:
  level: info
  format: json
backends:
  demo:
    kind: builtin
    builtin: demo
{{- end -}}

{{/*
The configuration as an object, as YAML. From an object value: a copy with server.listen filled in when unset
and the automatic and extra hosts added to server.allowed_hosts (unless it holds "*", which admits any host).
From a string value: the string parsed, only so the chart can read drain_timeout, state and upstreams from it.
*/}}
{{- define "mcpgate.configObject" -}}
{{- $cfg := .Values.config -}}
{{- if kindIs "string" $cfg -}}
{{- $parsed := fromYaml $cfg -}}
{{- if hasKey $parsed "Error" -}}
{{- fail (printf "config: the string is not YAML: %s" $parsed.Error) -}}
{{- end -}}
{{- toYaml $parsed -}}
{{- else -}}
{{- $c := deepCopy (default (dict) $cfg) -}}
{{- if empty $c -}}
{{- $c = include "mcpgate.demoConfig" . | fromYaml -}}
{{- end -}}
{{- $server := deepCopy (default (dict) (get $c "server")) -}}
{{- if not (hasKey $server "listen") -}}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.port)) -}}
{{- end -}}
{{- $hosts := list "localhost" "127.0.0.1" "::1" -}}
{{- if hasKey $server "allowed_hosts" -}}
{{- $hosts = $server.allowed_hosts -}}
{{- end -}}
{{- if not (has "*" $hosts) -}}
{{- if .Values.hostNames.auto -}}
{{- /* localhost (kubectl port-forward), the Service's names, the Ingress hosts. */ -}}
{{- $svc := include "mcpgate.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts = concat $hosts (list "localhost" "127.0.0.1" "::1" $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain)) -}}
{{- if .Values.ingress.enabled -}}
{{- $hosts = concat $hosts .Values.ingress.hosts -}}
{{- end -}}
{{- end -}}
{{- $hosts = concat $hosts .Values.hostNames.extra -}}
{{- end -}}
{{- $_ := set $server "allowed_hosts" (uniq $hosts) -}}
{{- $_ := set $c "server" $server -}}
{{- toYaml $c -}}
{{- end -}}
{{- end -}}

{{/* The text of config.yaml in the ConfigMap. */}}
{{- define "mcpgate.configText" -}}
{{- if kindIs "string" .Values.config -}}
{{- .Values.config -}}
{{- else -}}
{{- include "mcpgate.configObject" . -}}
{{- end -}}
{{- end -}}

{{/*
Seconds in a mcpgate duration ("30s", "1m 5s", "500ms", "1h30m", "2min"), rounded up. Anything else stops the
render: terminationGracePeriodSeconds is derived from it and must not be guessed.
*/}}
{{- define "mcpgate.durationSeconds" -}}
{{- $text := trim (toString .) -}}
{{- $part := "[0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]+" -}}
{{- $parts := regexFindAll $part $text -1 -}}
{{- if or (not $parts) (ne (regexReplaceAll (printf "%s|\\s" $part) $text "") "") -}}
{{- fail (printf "server.drain_timeout: cannot read %q as a duration (e.g. 30s, 1m 30s)" $text) -}}
{{- end -}}
{{- $total := 0.0 -}}
{{- range $parts -}}
{{- $n := regexFind "^[0-9]+(\\.[0-9]+)?" . | float64 -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?\\s*" . "" -}}
{{- $scale := 0.0 -}}
{{- if has $unit (list "ns" "nsec" "nanos" "us" "usec" "µs" "micros") -}}{{- $scale = 0.000001 -}}
{{- else if has $unit (list "ms" "msec" "millis" "millisecond" "milliseconds") -}}{{- $scale = 0.001 -}}
{{- else if has $unit (list "s" "sec" "secs" "second" "seconds") -}}{{- $scale = 1.0 -}}
{{- else if has $unit (list "m" "min" "mins" "minute" "minutes") -}}{{- $scale = 60.0 -}}
{{- else if has $unit (list "h" "hr" "hrs" "hour" "hours") -}}{{- $scale = 3600.0 -}}
{{- else if has $unit (list "d" "day" "days") -}}{{- $scale = 86400.0 -}}
{{- else -}}
{{- fail (printf "server.drain_timeout: unknown unit %q in %q" $unit $text) -}}
{{- end -}}
{{- $total = addf $total (mulf $n $scale) -}}
{{- end -}}
{{- ceil $total | int -}}
{{- end -}}

{{- define "mcpgate.drainSeconds" -}}
{{- $cfg := include "mcpgate.configObject" . | fromYaml -}}
{{- $server := default (dict) (get $cfg "server") -}}
{{- include "mcpgate.durationSeconds" (default "30s" (get $server "drain_timeout")) -}}
{{- end -}}

{{/*
Termination: the preStop sleep runs first (endpoints are being removed meanwhile), then SIGTERM starts mcpgate's
drain, which takes up to drain_timeout. The grace period covers both, or the kubelet's SIGKILL would cut the
drain short; 5 s more for the exit itself.
*/}}
{{- define "mcpgate.terminationGracePeriodSeconds" -}}
{{- $drain := include "mcpgate.drainSeconds" . | int -}}
{{- $pause := int .Values.preStopSleepSeconds -}}
{{- $needed := add $drain $pause -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $needed 5 -}}
{{- else -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- if le $grace $needed -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above preStopSleepSeconds (%d) + server.drain_timeout (%d s) = %d, or SIGKILL cuts the drain short" $grace $pause $drain $needed) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}
{{- end -}}

{{/* "true" when the release may run more than one gateway pod at once (outside a rollout's surge). */}}
{{- define "mcpgate.multiNode" -}}
{{- if .Values.autoscaling.enabled -}}
{{- if gt (int .Values.autoscaling.maxReplicas) 1 }}true{{ end -}}
{{- else if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- end -}}

{{/* "true" when the pods get a Redis: in-cluster, REDIS_URL from the Secret, or state in the configuration. */}}
{{- define "mcpgate.sharedState" -}}
{{- $cfg := include "mcpgate.configObject" . | fromYaml -}}
{{- $state := default (dict) (get $cfg "state") -}}
{{- if or .Values.redis.enabled (include "mcpgate.secretKeyOf" (list . "REDIS_URL")) (eq (toString (get $state "backend")) "redis") (get $state "url") (get $state "sentinel") }}true{{ end -}}
{{- end -}}

{{/* "true" when a sealing key comes from the Secret (MCPGATE_SEAL_KEY, or its alias SESSION_SECRET). */}}
{{- define "mcpgate.sealKey" -}}
{{- if or (include "mcpgate.secretKeyOf" (list . "MCPGATE_SEAL_KEY")) (include "mcpgate.secretKeyOf" (list . "SESSION_SECRET")) }}true{{ end -}}
{{- end -}}

{{/* Checks of combinations the schema cannot express. Included by the Deployment, so every render runs them. */}}
{{- define "mcpgate.checks" -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.port)) -}}
{{- fail "metrics.port must differ from port: metrics get a listener of their own" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) -}}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable, not both (null the other)" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable) (kindIs "invalid" .Values.podDisruptionBudget.minAvailable) -}}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (kindIs "invalid" .Values.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" .Values.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- fail "autoscaling: give targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.redis.auth (not (include "mcpgate.secretKeyOf" (list . "REDIS_PASSWORD"))) -}}
{{- fail "redis.auth needs the password from the Secret: set secret.name (or secret.create) and secret.env.REDIS_PASSWORD" -}}
{{- end -}}
{{- if .Values.secret.create -}}
{{- range $var := .Values.secret.required -}}
{{- $key := index $.Values.secret.env $var | default "" -}}
{{- if not (and $key (hasKey $.Values.secret.data $key)) -}}
{{- fail (printf "secret.create: %s is required (secret.required) but secret.data has no %q key" $var $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $var := .Values.secret.required -}}
{{- if not (index $.Values.secret.env $var) -}}
{{- fail (printf "secret.required names %s, which secret.env does not map to a key" $var) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ConfigMap keys cannot hold "/": a file's path with "/" as "__" is its key; the volume maps it back. */}}
{{- define "mcpgate.fileKey" -}}
{{- . | replace "/" "__" -}}
{{- end -}}

{{/* The metrics endpoint's path: the configuration's metrics.path, else /metrics. */}}
{{- define "mcpgate.metricsPath" -}}
{{- $cfg := include "mcpgate.configObject" . | fromYaml -}}
{{- $metrics := default (dict) (get $cfg "metrics") -}}
{{- default "/metrics" (get $metrics "path") -}}
{{- end -}}
