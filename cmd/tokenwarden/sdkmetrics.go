package main

import (
	"maps"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// sdkMetrics exports the Temporal SDK's metrics (polls, task latencies,
// slots, request failures: temporal_*) on a Prometheus registry. The SDK
// names a metric and its tags only when it first uses them, so families
// are created on demand. Names follow Prometheus' conventions, as
// Temporal's own SDK dashboards expect: counters end in _total, timers
// are histograms in seconds ending in _seconds.
//
// A family keeps the tag keys it was first used with: Prometheus wants
// one label set per family. A later use with other keys is folded into
// it (a missing key is empty, an extra one dropped); the SDK does not do
// that today, and a scrape must not fail if it starts to.
type sdkMetrics struct {
	reg      prometheus.Registerer
	mu       sync.Mutex
	families map[string]*sdkFamily
}

type sdkFamily struct {
	keys      []string
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	histogram *prometheus.HistogramVec
}

// sdkLatencyBuckets span the SDK's timers: RPCs of milliseconds, long
// polls of up to a minute, activities of up to their 2-minute timeout.
var sdkLatencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

func newSDKMetrics(reg prometheus.Registerer) *sdkMetrics {
	return &sdkMetrics{reg: reg, families: map[string]*sdkFamily{}}
}

// handler is the client.MetricsHandler to give the SDK.
func (m *sdkMetrics) handler() client.MetricsHandler { return sdkHandler{m: m} }

type sdkHandler struct {
	m    *sdkMetrics
	tags map[string]string
}

var _ client.MetricsHandler = sdkHandler{}

func (h sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, tags)
	return sdkHandler{m: h.m, tags: merged}
}

func (h sdkHandler) Counter(name string) client.MetricsCounter {
	f := h.m.family(name+"_total", h.tags, func(n string, keys []string) *sdkFamily {
		return &sdkFamily{counter: prometheus.NewCounterVec(prometheus.CounterOpts{Name: n, Help: "Temporal SDK counter " + name + "."}, keys)}
	})
	if f == nil {
		return client.MetricsNopHandler.Counter(name)
	}
	c := f.counter.WithLabelValues(f.values(h.tags)...)
	return counterFunc(func(d int64) { c.Add(float64(d)) })
}

func (h sdkHandler) Gauge(name string) client.MetricsGauge {
	f := h.m.family(name, h.tags, func(n string, keys []string) *sdkFamily {
		return &sdkFamily{gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: n, Help: "Temporal SDK gauge " + name + "."}, keys)}
	})
	if f == nil {
		return client.MetricsNopHandler.Gauge(name)
	}
	g := f.gauge.WithLabelValues(f.values(h.tags)...)
	return gaugeFunc(g.Set)
}

func (h sdkHandler) Timer(name string) client.MetricsTimer {
	f := h.m.family(name+"_seconds", h.tags, func(n string, keys []string) *sdkFamily {
		return &sdkFamily{histogram: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: n,
			Help: "Temporal SDK timer " + name + ", in seconds.", Buckets: sdkLatencyBuckets}, keys)}
	})
	if f == nil {
		return client.MetricsNopHandler.Timer(name)
	}
	o := f.histogram.WithLabelValues(f.values(h.tags)...)
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

// family returns the family name, creating and registering it with the
// keys of tags on first use; nil when the registry refuses it (a name
// clash), in which case the metric is dropped rather than the caller
// failing.
func (m *sdkMetrics) family(name string, tags map[string]string, create func(name string, keys []string) *sdkFamily) *sdkFamily {
	name = promName(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.families[name]; ok {
		return f
	}
	keys := slices.Sorted(maps.Keys(tags))
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = promName(k)
	}
	f := create(name, dedupe(labels))
	f.keys = keys
	var c prometheus.Collector
	switch {
	case f.counter != nil:
		c = f.counter
	case f.gauge != nil:
		c = f.gauge
	default:
		c = f.histogram
	}
	if err := m.reg.Register(c); err != nil {
		m.families[name] = nil
		return nil
	}
	m.families[name] = f
	return f
}

// values are the label values of tags in the family's key order.
func (f *sdkFamily) values(tags map[string]string) []string {
	out := make([]string, 0, len(f.keys))
	seen := map[string]bool{}
	for _, k := range f.keys {
		if l := promName(k); !seen[l] {
			seen[l] = true
			out = append(out, tags[k])
		}
	}
	return out
}

var notPromName = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// promName makes s a valid Prometheus metric or label name.
func promName(s string) string {
	s = notPromName.ReplaceAllString(s, "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "_" + s
	}
	return s
}

func dedupe(s []string) []string {
	out := s[:0:0]
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }
