package deployments_test

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// metricName finds metric names in PromQL; histogram series name their
// family with a suffix.
var metricName = regexp.MustCompile(`tokenwarden_[a-z_]+`)

// exportedMetrics are the metric families the code registers (read from
// the gateway's metrics source, the one place they are declared).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("../gateway/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(tokenwarden_[a-z_]+)"`).FindAllSubmatch(src, -1) {
		names[string(m[1])] = true
	}
	if len(names) < 5 {
		t.Fatalf("found only %d metric names in gateway/metrics.go; the pattern is stale", len(names))
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
	exported := map[string]bool{"tokenwarden_links": true, "tokenwarden_token_remaining_seconds": true}
	got := unknownMetrics([]string{
		`sum(tokenwarden_links)`,
		`histogram_quantile(0.5, rate(tokenwarden_token_remaining_seconds_bucket[5m]))`,
		`rate(tokenwarden_refresh_lag_seconds_count[5m])`,
	}, exported)
	if len(got) != 1 || got[0] != "tokenwarden_refresh_lag_seconds_count" {
		t.Errorf("unknownMetrics = %v, want the planted tokenwarden_refresh_lag_seconds_count", got)
	}
}
