{{/* Labels of every object's metadata (pod templates keep only app.kubernetes.io/name, so
selectors never change on upgrade). */}}
{{- define "stowage.labels" -}}
app.kubernetes.io/part-of: stowage
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "stowage.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}


{{- define "stowage.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "stowage.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end }}


{{/* The certs Job's arguments (Job and renewal CronJob). */}}
{{- define "stowage.certsArgs" -}}
- certs
- install
- --namespace={{ .Release.Namespace }}
- --service=stowage-webhook
- --secret=stowage-webhook-tls
- --ca-secret=stowage-ca
- --webhook-configuration=stowage
{{- end }}

{{/* Pod spec of the certs Job and of its renewal CronJob. */}}
{{- define "stowage.certsPodSpec" -}}
serviceAccountName: stowage-certs
restartPolicy: OnFailure
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 0 }}
{{- end }}
{{ include "stowage.podSecurityContext" . }}
containers:
- name: certs
  image: {{ include "stowage.image" . }}
  {{- with .Values.image.pullPolicy }}
  imagePullPolicy: {{ . }}
  {{- end }}
  args:
  {{- include "stowage.certsArgs" . | nindent 2 }}
  resources:
    {{- toYaml .Values.certificates.resources | nindent 4 }}
  {{- include "stowage.containerSecurityContext" . | nindent 2 }}
{{- end }}
