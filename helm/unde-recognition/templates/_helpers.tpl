{{/* Prefix of every resource name: the release name unless overridden (40 chars leave room
     for Knative's revision suffixes within the 63-char label limit). */}}
{{- define "unde.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Kubernetes name of a function: vision_gateway → <prefix>-vision-gateway. Arg: (list $ fn) */}}
{{- define "unde.fnName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "unde.fullname" $root) (index . 1 | replace "_" "-") -}}
{{- end -}}

{{- define "unde.flagsName" -}}
{{- printf "%s-flags" (include "unde.fullname" .) -}}
{{- end -}}

{{- define "unde.labels" -}}
app.kubernetes.io/name: unde-recognition
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: unde-recognition
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select one function's pods. Arg: (list $ fn) */}}
{{- define "unde.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: unde-recognition
app.kubernetes.io/instance: {{ $root.Release.Name }}
unde.life/function: {{ index . 1 }}
{{- end -}}

{{/* Image reference: repository@digest when a digest is given, else repository:tag
     (tag defaults to the chart's appVersion; toString: `--set ...tag=1234567`, an all-digit
     short commit SHA, arrives as a number). Arg: (list imageValues $). */}}
{{- define "unde.image" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (toString (default $root.Chart.AppVersion $img.tag)) -}}
{{- end -}}
{{- end -}}

{{/* A flag value as the string a settings model parses (integral floats without ".0"). */}}
{{- define "unde.flagValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* One function's flags hash, on its revision template: a changed flag that the function
     reads rolls a new revision of that function only. The rule, shared with `unde flags set`
     (unde.flags.flags_hash): the first 16 hex digits of the SHA-256 of the compact JSON
     (sorted keys) of the ConfigMap entries the function reads; who reads what is
     flag-readers.json, generated from the settings models (`unde flags readers`).
     Arg: (list $ fn). */}}
{{- define "unde.flagsHash" -}}
{{- $root := index . 0 -}}
{{- $fn := index . 1 -}}
{{- $file := $root.Files.Get "flag-readers.json" -}}
{{- if not $file -}}
{{- fail "flag-readers.json is missing from the chart (regenerate it: unde flags readers > helm/unde-recognition/flag-readers.json)" -}}
{{- end -}}
{{- $readers := get ($file | fromJson) $fn -}}
{{- $read := dict -}}
{{- range $name, $value := $root.Values.flags -}}
{{- if has $name $readers -}}
{{- $_ := set $read $name (include "unde.flagValue" $value) -}}
{{- end -}}
{{- end -}}
{{- $read | toJson | sha256sum | trunc 16 -}}
{{- end -}}

{{/* Refuse a public orchestrator that would accept unauthenticated calls: the app's keys come
     from the Secret (APP_API_KEYS in secretEnv, not optional) unless explicitly allowed. */}}
{{- define "unde.requireAppKeys" -}}
{{- $cfg := .Values.functions.orchestrator -}}
{{- if and $cfg.public (not $cfg.allowUnauthenticated) -}}
{{- if not (has "APP_API_KEYS" $cfg.secretEnv) -}}
{{- fail "functions.orchestrator is public but APP_API_KEYS is not in functions.orchestrator.secretEnv: the app's API keys must come from the Secret (or set functions.orchestrator.allowUnauthenticated=true to deploy an open endpoint on purpose)" -}}
{{- end -}}
{{- if has "APP_API_KEYS" .Values.secrets.optional -}}
{{- fail "functions.orchestrator is public but APP_API_KEYS is in secrets.optional: a pod without it would accept unauthenticated calls (or set functions.orchestrator.allowUnauthenticated=true)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* env entries for the Secret keys a function reads. Arg: (list $ fnValues) */}}
{{- define "unde.secretEnv" -}}
{{- $root := index . 0 -}}
{{- range (index . 1).secretEnv }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.existingSecret }}
      key: {{ index $root.Values.secrets.keys . }}
      {{- if has . $root.Values.secrets.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{/* Model mount settings for embedder/indexer. */}}
{{- define "unde.modelEnv" -}}
{{- if eq .Values.models.source "pvc" }}
- name: MODEL_DIR
  value: {{ printf "/models/%s" .Values.models.subPath | quote }}
{{- else if eq .Values.models.source "baked" }}
- name: MODEL_DIR
  value: "/models/fashionclip"
{{- end }}
{{- end -}}

{{- define "unde.modelVolumeMount" -}}
{{- if eq .Values.models.source "pvc" }}
- name: models
  mountPath: /models
  readOnly: true
{{- end }}
{{- end -}}

{{- define "unde.modelVolume" -}}
{{- if eq .Values.models.source "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ .Values.models.claimName }}
    readOnly: true
{{- end }}
{{- end -}}

{{/* requiredDuringScheduling node affinity on one label. Arg: fnValues */}}
{{- define "unde.nodeAffinity" -}}
{{- if .nodeAffinity.enabled }}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - key: {{ .nodeAffinity.key }}
              operator: In
              values:
                {{- toYaml .nodeAffinity.values | nindent 16 }}
{{- end }}
{{- end -}}

{{/* Egress every pod needs: DNS, and addresses outside the cluster's pod/service CIDRs. */}}
{{- define "unde.egressOutside" -}}
- to:
    - namespaceSelector: {}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
          {{- toYaml .Values.networkPolicy.clusterCIDRs | nindent 10 }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end -}}
