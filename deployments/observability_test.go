package deployments_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// metricName finds metric names in PromQL; histogram series name their
// family with a suffix.
var metricName = regexp.MustCompile(`(?:tokenwarden|temporal)_[a-z_]+`)

// exportedMetrics are the metric families the code registers: read from
// the gateway's and the worker's metrics sources (the places they are
// declared), and the Temporal SDK's metric names as the worker exports
// them (cmd/tokenwarden/sdkmetrics.go: counters end in _total, timers
// are histograms ending in _seconds).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, file := range []string{"../gateway/metrics.go", "../activities/metrics.go"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		n := len(names)
		for _, m := range regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(tokenwarden_[a-z_]+)"`).FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
		if len(names)-n < 5 {
			t.Fatalf("found only %d metric names in %s; the pattern is stale", len(names)-n, file)
		}
	}
	for _, n := range temporalSDKMetrics(t) {
		for _, suffix := range []string{"", "_total", "_seconds"} {
			names[n+suffix] = true
		}
	}
	return names
}

// temporalSDKMetrics are the metric names the Temporal Go SDK this
// module builds with emits, from its constants.
func temporalSDKMetrics(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.temporal.io/sdk").Output()
	if err != nil {
		t.Fatalf("go list -m go.temporal.io/sdk: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "internal", "common", "metrics", "constants.go"))
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{"TemporalMetricsPrefix": "temporal_"}
	defs := regexp.MustCompile(`(?m)^\s*(\w+)\s*=\s*(\w+)\s*\+\s*"([a-z_]+)"`).FindAllStringSubmatch(string(src), -1)
	for range defs { // definitions may refer to later ones
		for _, d := range defs {
			if base, ok := consts[d[2]]; ok {
				consts[d[1]] = base + d[3]
			}
		}
	}
	var names []string
	for k, v := range consts {
		if k != "TemporalMetricsPrefix" {
			names = append(names, v)
		}
	}
	if !slices.Contains(names, "temporal_long_request") || len(names) < 30 {
		t.Fatalf("read %d Temporal SDK metric names (%v); the pattern is stale", len(names), names)
	}
	return names
}

// unknownMetrics lists the metric names in exprs that the code does not
// export.
func unknownMetrics(exprs []string, exported map[string]bool) []string {
	var out []string
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			family := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if !exported[family] {
					family = strings.TrimSuffix(family, suffix)
				}
			}
			if !exported[family] {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

func dashboardExprs(t *testing.T, b []byte) []string {
	t.Helper()
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	return exprs
}

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestDashboardAndAlerts: the Grafana dashboard and the Prometheus alert
// rules parse, every query names a metric the code exports, and every
// alert has a severity, a summary and a runbook the README has.
func TestDashboardAndAlerts(t *testing.T) {
	exported := exportedMetrics(t)
	dash, err := os.ReadFile("observability/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if bad := unknownMetrics(dashboardExprs(t, dash), exported); len(bad) > 0 {
		t.Errorf("the dashboard queries metrics nobody exports: %v", bad)
	}

	raw, err := os.ReadFile("observability/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			exprs = append(exprs, r.Expr)
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s lacks a severity or a summary", r.Alert)
			}
			runbook := strings.TrimPrefix(r.Annotations["runbook"], "README: Operating / ")
			if runbook == r.Annotations["runbook"] || !bytes.Contains(readme, []byte("**"+runbook+".**")) {
				t.Errorf("alert %s: runbook %q is not a paragraph of README's Operating section", r.Alert, r.Annotations["runbook"])
			}
		}
	}
	if n < 5 {
		t.Errorf("only %d alert rules", n)
	}
	if bad := unknownMetrics(exprs, exported); len(bad) > 0 {
		t.Errorf("alert rules query metrics nobody exports: %v", bad)
	}
}

// TestUnknownMetricsFindsPlantedOnes: the check can fail.
func TestUnknownMetricsFindsPlantedOnes(t *testing.T) {
	exported := map[string]bool{"tokenwarden_links": true, "tokenwarden_token_remaining_seconds": true, "temporal_long_request_total": true}
	got := unknownMetrics([]string{
		`sum(tokenwarden_links)`,
		`histogram_quantile(0.5, rate(tokenwarden_token_remaining_seconds_bucket[5m]))`,
		`rate(tokenwarden_refresh_lag_seconds_count[5m])`,
		`rate(temporal_long_request_total[5m]) + rate(temporal_long_requests_total[5m])`,
	}, exported)
	if len(got) != 2 || got[0] != "temporal_long_requests_total" || got[1] != "tokenwarden_refresh_lag_seconds_count" {
		t.Errorf("unknownMetrics = %v, want the planted temporal_long_requests_total and tokenwarden_refresh_lag_seconds_count", got)
	}
}
