package deployments_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1, a CRD with no Go types in k8s.io/api) the
// chart uses. Decoding into it strictly catches a misspelt field the way
// the k8s.io/api types do.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// kinds maps the apiVersion/kind of every object the chart may render to
// a fresh typed object. An object of any other kind fails the test: add
// its type here when the chart grows.
var kinds = map[string]func() any{
	"v1/ConfigMap":                  func() any { return &corev1.ConfigMap{} },
	"v1/Service":                    func() any { return &corev1.Service{} },
	"v1/ServiceAccount":             func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":            func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                  func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any {
		return &autoscalingv2.HorizontalPodAutoscaler{}
	},
	"networking.k8s.io/v1/Ingress":       func() any { return &networkingv1.Ingress{} },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any {
		return &serviceMonitor{}
	},
}

// decodeStrict decodes one rendered YAML document into its k8s.io/api
// type; unknown, duplicate or wrongly cased fields are errors.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("no Go type for %s %s (add it to kinds)", tm.APIVersion, tm.Kind)
	}
	// Case-sensitive, as the API server decodes: encoding/json (and so
	// yaml.UnmarshalStrict) would take readOnlyRootFileSystem for
	// readOnlyRootFilesystem.
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	obj := newObj()
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %v", tm.Kind, strict)
	}
	return obj, nil
}

// splitDocs splits helm template output into its non-empty documents.
func splitDocs(out []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(out), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// TestStrictDecodingCatchesUnknownFields plants a misspelt field and a
// wrong kind: strict decoding must refuse both.
func TestStrictDecodingCatchesUnknownFields(t *testing.T) {
	good := `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: 1
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: x:1
          securityContext: {readOnlyRootFilesystem: true}
`
	if _, err := decodeStrict([]byte(good)); err != nil {
		t.Fatalf("a good Deployment failed: %v", err)
	}
	for name, bad := range map[string]string{
		"misspelt spec field":      strings.Replace(good, "replicas: 1", "replicaz: 1", 1),
		"misspelt container field": strings.Replace(good, "readOnlyRootFilesystem", "readOnlyRootFileSystem", 1),
		"duplicate field":          strings.Replace(good, "replicas: 1", "replicas: 1\n  replicas: 2", 1),
		"unknown kind":             strings.Replace(good, "kind: Deployment", "kind: Deploymnet", 1),
		"ServiceMonitor typo": `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: x}
spec: {selector: {}, endpoints: [{port: http, scrapeInterval: 10s}]}
`,
	} {
		if _, err := decodeStrict([]byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func helmBin(t *testing.T) string {
	cache := os.Getenv("TOKENWARDEN_CACHE")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "tokenwarden")
		}
	}
	return tool(t, "helm", os.Getenv("TOKENWARDEN_BIN"), filepath.Join(cache, "bin"))
}

// TestHelmChart lints and renders the chart with the default values and
// with ci/full-values.yaml, decodes every rendered object strictly into
// its k8s.io/api type, and checks what the deployment relies on.
func TestHelmChart(t *testing.T) {
	helm := helmBin(t)
	chart := filepath.Join(repoRoot(t), "deployments", "helm", "tokenwarden")
	cases := []struct {
		name string
		args []string
		full bool
	}{
		{"default", nil, false},
		{"full-values", []string{"-f", filepath.Join(chart, "ci", "full-values.yaml")}, true},
		// The Vault agent alone, no Secret at all.
		{"agent-only", []string{"--set", "vault.auth=agentInjector", "--set", "secrets.existingSecret=", "--set", "secrets.gatewayExistingSecret="}, false},
		// The engine's own Vault Kubernetes login, no Secret at all.
		{"kubernetes", []string{"--set", "vault.auth=kubernetes", "--set", "secrets.existingSecret=", "--set", "secrets.gatewayExistingSecret="}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run(t, chart, nil, helm, append([]string{"lint", "--strict", "--kube-version", "1.31.0", "."}, tc.args...)...)
			out := run(t, chart, nil, helm, append([]string{"template", "tw", ".", "--namespace", "tokenwarden", "--kube-version", "1.31.0"}, tc.args...)...)
			objs := map[string]any{}
			for _, doc := range splitDocs(out) {
				obj, err := decodeStrict(doc)
				if err != nil {
					t.Errorf("%v\n%s", err, doc)
					continue
				}
				m := obj.(metav1.ObjectMetaAccessor).GetObjectMeta()
				objs[fmt.Sprintf("%T/%s", obj, m.GetName())] = obj
			}
			checkChart(t, objs, tc.full, tc.name == "agent-only")
			checkVaultLogin(t, objs, tc.name == "kubernetes")
		})
	}
	// The chart refuses a grace period the worker's drain does not fit in,
	// an unpinned image, an unknown Vault auth, Vault credentials from
	// nowhere, and (values.schema.json) a misspelt value.
	for _, set := range []string{"worker.terminationGracePeriodSeconds=150", "image.tag=latest", "vault.auth=token",
		"secrets.existingSecret=", "gatway.replicas=3", "worker.stopTimeoutSecond=100"} {
		if out, err := runErr(chart, nil, helm, "template", "tw", ".", "--kube-version", "1.31.0", "--set", set); err == nil {
			t.Errorf("helm template --set %s rendered:\n%.300s", set, out)
		}
	}
}

func checkChart(t *testing.T, objs map[string]any, full, agent bool) {
	t.Helper()
	var deployments []*appsv1.Deployment
	var jobs []*batchv1.Job
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[fmt.Sprintf("%T", o)]++
		switch o := o.(type) {
		case *appsv1.Deployment:
			deployments = append(deployments, o)
		case *batchv1.Job:
			jobs = append(jobs, o)
		}
	}
	want := []string{"*v1.Deployment", "*v1.Service", "*v1.ConfigMap", "*v1.PodDisruptionBudget", "*v1.NetworkPolicy", "*v1.Job", "*v1.ServiceAccount"}
	if full {
		want = append(want, "*v1.Ingress", "*deployments_test.serviceMonitor")
	} else {
		want = append(want, "*v2.HorizontalPodAutoscaler")
	}
	for _, k := range want {
		if kinds[k] == 0 {
			t.Errorf("no %s rendered (got %v)", k, kinds)
		}
	}
	if len(deployments) != 2 || len(jobs) != 1 {
		t.Fatalf("want 2 Deployments and 1 Job, got %d and %d", len(deployments), len(jobs))
	}
	pods := map[string]corev1.PodSpec{"migrate": jobs[0].Spec.Template.Spec}
	for _, d := range deployments {
		pods[d.Spec.Template.Labels["app.kubernetes.io/component"]] = d.Spec.Template.Spec
	}
	for name, p := range pods {
		sc := p.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod securityContext %+v: want runAsNonRoot, a non-zero runAsUser, seccomp RuntimeDefault", name, sc)
		}
		for _, c := range p.Containers {
			cs := c.SecurityContext
			if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
				cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
				cs.Capabilities == nil || len(cs.Capabilities.Drop) != 1 || cs.Capabilities.Drop[0] != "ALL" {
				t.Errorf("%s/%s: container securityContext %+v: want read-only root, no privilege escalation, drop ALL", name, c.Name, cs)
			}
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: memory request and limit must be set", name, c.Name)
			}
			if strings.HasSuffix(c.Image, ":latest") || !regexp.MustCompile(`[:@]`).MatchString(c.Image[strings.LastIndex(c.Image, "/")+1:]) {
				t.Errorf("%s/%s: image %q is not pinned", name, c.Name, c.Image)
			}
		}
	}
	w := pods["worker"]
	if w.ServiceAccountName == pods["gateway"].ServiceAccountName {
		t.Errorf("worker and gateway share the service account %q: Vault's Kubernetes auth cannot tell them apart", w.ServiceAccountName)
	}
	if w.TerminationGracePeriodSeconds == nil || *w.TerminationGracePeriodSeconds < 180 {
		t.Errorf("worker terminationGracePeriodSeconds %v, want at least 180 (the worker drains for 150 s)", w.TerminationGracePeriodSeconds)
	}
	if len(w.TopologySpreadConstraints) == 0 || len(pods["gateway"].TopologySpreadConstraints) == 0 {
		t.Error("worker and gateway need topology spread constraints")
	}
	g := pods["gateway"].Containers[0]
	if g.LivenessProbe == nil || g.LivenessProbe.HTTPGet == nil || g.LivenessProbe.HTTPGet.Path != "/healthz" ||
		g.ReadinessProbe == nil || g.ReadinessProbe.HTTPGet == nil || g.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("gateway probes: liveness %+v, readiness %+v; want /healthz and /readyz", g.LivenessProbe, g.ReadinessProbe)
	}
	checkWorkerOps(t, objs, w, full)
	j := jobs[0]
	if hook := j.Annotations["helm.sh/hook"]; hook != "pre-install,pre-upgrade" {
		t.Errorf("migration Job hook %q, want pre-install,pre-upgrade", hook)
	}
	if c := j.Spec.Template.Spec.Containers[0]; len(c.Args) != 1 || c.Args[0] != "migrate" {
		t.Errorf("migration Job runs %v, want [migrate]", c.Args)
	}
	for _, d := range deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.Value != "" && secretEnv(e.Name, e.Value) && e.Value != "vault-agent-injected" {
					t.Errorf("%s/%s: %s has an inline value; secrets come from a Secret or Vault", d.Name, c.Name, e.Name)
				}
			}
		}
		inject := d.Spec.Template.Annotations["vault.hashicorp.com/agent-inject"] == "true"
		if inject != (full || agent) {
			t.Errorf("%s: Vault agent injection is %v", d.Name, inject)
		}
		// The gateway logs in to Vault as itself, never as the worker.
		role := d.Spec.Template.Annotations["vault.hashicorp.com/role"]
		if component := d.Spec.Template.Labels["app.kubernetes.io/component"]; inject && role != "tokenwarden-"+component {
			t.Errorf("%s: Vault role %q, want tokenwarden-%s", d.Name, role, component)
		}
		if inject && (d.Spec.Template.Spec.AutomountServiceAccountToken == nil || !*d.Spec.Template.Spec.AutomountServiceAccountToken) {
			t.Errorf("%s: the Vault agent needs the service account token", d.Name)
		}
	}
	if !bytes.Contains([]byte(fmt.Sprint(kinds)), []byte("PodDisruptionBudget:2")) {
		t.Errorf("want a PodDisruptionBudget each for worker and gateway, got %v", kinds)
	}
}

// checkVaultLogin: with vault.auth=kubernetes, the worker and the gateway
// log in with their own Kubernetes auth role and service account token;
// otherwise the engine is told nothing of Kubernetes auth.
func checkVaultLogin(t *testing.T, objs map[string]any, kubernetes bool) {
	t.Helper()
	for _, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		env := map[string]string{}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		component := d.Spec.Template.Labels["app.kubernetes.io/component"]
		if !kubernetes {
			if env["TOKENWARDEN_VAULT_AUTH"] != "" {
				t.Errorf("%s: TOKENWARDEN_VAULT_AUTH=%q without vault.auth=kubernetes", d.Name, env["TOKENWARDEN_VAULT_AUTH"])
			}
			continue
		}
		if env["TOKENWARDEN_VAULT_AUTH"] != "kubernetes" || env["TOKENWARDEN_VAULT_K8S_ROLE"] != "tokenwarden-"+component ||
			env["TOKENWARDEN_VAULT_K8S_MOUNT"] != "kubernetes" {
			t.Errorf("%s: Vault login env %v, want kubernetes auth with role tokenwarden-%s at mount kubernetes", d.Name, env, component)
		}
		if a := d.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || !*a {
			t.Errorf("%s: Vault Kubernetes auth needs the service account token mounted", d.Name)
		}
		if len(d.Spec.Template.Spec.Containers[0].EnvFrom) != 1 {
			t.Errorf("%s: envFrom %v, want the ConfigMap only (no Vault credentials in a Secret)", d.Name, d.Spec.Template.Spec.Containers[0].EnvFrom)
		}
	}
}

// checkWorkerOps: the worker's ops port is declared, probed (/healthz,
// /readyz, unless the values replace the probes), configured, listed by
// a headless Service, scraped (with serviceMonitor.enabled) and open in
// the NetworkPolicy; the Temporal TLS values reach the environment.
func checkWorkerOps(t *testing.T, objs map[string]any, w corev1.PodSpec, full bool) {
	t.Helper()
	wc := w.Containers[0]
	if len(wc.Ports) != 1 || wc.Ports[0].Name != "ops" || wc.Ports[0].ContainerPort != 9090 {
		t.Errorf("worker ports %+v, want ops 9090", wc.Ports)
	}
	if !full && (wc.LivenessProbe == nil || wc.LivenessProbe.HTTPGet == nil || wc.LivenessProbe.HTTPGet.Path != "/healthz" ||
		wc.LivenessProbe.HTTPGet.Port.String() != "ops" ||
		wc.ReadinessProbe == nil || wc.ReadinessProbe.HTTPGet == nil || wc.ReadinessProbe.HTTPGet.Path != "/readyz") {
		t.Errorf("worker probes: liveness %+v, readiness %+v; want /healthz and /readyz on port ops", wc.LivenessProbe, wc.ReadinessProbe)
	}
	env, ok := objs["*v1.ConfigMap/tw-tokenwarden-env"].(*corev1.ConfigMap)
	if !ok {
		t.Fatal("no ConfigMap tw-tokenwarden-env")
	}
	if got := env.Data["TOKENWARDEN_WORKER_OPS_LISTEN"]; got != ":9090" {
		t.Errorf("TOKENWARDEN_WORKER_OPS_LISTEN %q, want :9090", got)
	}
	wantTLS := map[string]string{"TOKENWARDEN_TEMPORAL_TLS": "", "TOKENWARDEN_TEMPORAL_CA_FILE": ""}
	if full {
		wantTLS = map[string]string{"TOKENWARDEN_TEMPORAL_TLS": "true", "TOKENWARDEN_TEMPORAL_CA_FILE": "/etc/temporal-tls/ca.crt",
			"TOKENWARDEN_TEMPORAL_CERT_FILE": "/etc/temporal-tls/tls.crt", "TOKENWARDEN_TEMPORAL_KEY_FILE": "/etc/temporal-tls/tls.key",
			"TOKENWARDEN_TEMPORAL_SERVER_NAME": "temporal-frontend.example.com", "TOKENWARDEN_LOG_FORMAT": "json"}
	}
	for k, v := range wantTLS {
		if env.Data[k] != v {
			t.Errorf("%s = %q, want %q", k, env.Data[k], v)
		}
	}
	svc, ok := objs["*v1.Service/tw-tokenwarden-worker-ops"].(*corev1.Service)
	if !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "ops" ||
		svc.Spec.Selector["app.kubernetes.io/component"] != "worker" {
		t.Errorf("worker ops Service: %+v", svc)
	}
	if full {
		sm, ok := objs["*deployments_test.serviceMonitor/tw-tokenwarden-worker"].(*serviceMonitor)
		if !ok || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "ops" || sm.Spec.Endpoints[0].Path != "/metrics" ||
			sm.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "worker" {
			t.Errorf("worker ServiceMonitor: %+v", sm)
		}
	}
	np, ok := objs["*v1.NetworkPolicy/tw-tokenwarden-worker"].(*networkingv1.NetworkPolicy)
	if !ok || len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.String() != "ops" ||
		np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != "worker" || full != (len(np.Spec.Ingress[0].From) > 0) {
		t.Errorf("worker NetworkPolicy: %+v", np)
	}
}
