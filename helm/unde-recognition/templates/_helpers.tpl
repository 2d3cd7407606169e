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
     (tag defaults to the chart's appVersion). Arg: the function's image values. */}}
{{- define "unde.image" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
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

{{/* Hash of the flag values: a changed flag (helm upgrade) rolls a new revision. */}}
{{- define "unde.flagsHash" -}}
{{- .Values.flags | toJson | sha256sum | trunc 16 -}}
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
