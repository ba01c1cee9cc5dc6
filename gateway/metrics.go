package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenwarden/tokenwarden/internal/store"
)

// Outcomes of a synchronous refresh, the label of sync_refreshes_total.
const (
	refreshOK          = "ok"
	refreshReauth      = "reauth_required"
	refreshRejected    = "rejected"
	refreshFailed      = "failed"
	refreshTimeout     = "timeout"
	refreshUnavailable = "unavailable"
)

type metrics struct {
	registry       *prometheus.Registry
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	tokensServed   *prometheus.CounterVec
	tokenRemaining prometheus.Histogram
	syncRefreshes  *prometheus.CounterVec
	// tokenReads: where the token path found the token (tokencache.go).
	tokenReads      *prometheus.CounterVec
	unknownProvider string
	// The proxy's (proxy.go).
	proxyRequests         *prometheus.CounterVec
	proxyUpstreamDuration *prometheus.HistogramVec
	proxyUnauthorized     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_http_requests_total",
			Help: "HTTP requests by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokenwarden_http_request_duration_seconds",
			Help:    "HTTP request latency by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		tokensServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_tokens_served_total",
			Help: "Access tokens served by provider.",
		}, []string{"provider"}),
		tokenRemaining: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tokenwarden_token_remaining_seconds",
			Help: "Remaining lifetime of served access tokens.",
			// Seconds to a day: a pile-up near zero means refreshes run late.
			Buckets: []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400},
		}),
		syncRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_sync_refreshes_total",
			Help: "Refreshes the token endpoint waited for, by outcome.",
		}, []string{"outcome"}),
		tokenReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_token_reads_total",
			Help: "Access-token reads of the token endpoint and the proxy by source: cache (no Vault read) or vault.",
		}, []string{"source"}),
		unknownProvider: "unknown",
		proxyRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_proxy_requests_total",
			Help: "Requests through the proxy by provider and status: the provider's HTTP status, or the gateway's error code when the provider did not answer (canceled: the caller went away).",
		}, []string{"provider", "status"}),
		proxyUpstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokenwarden_proxy_upstream_duration_seconds",
			Help:    "Time until the provider's API answered (headers) a proxied request, by provider; retries count apart.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider"}),
		proxyUnauthorized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_proxy_unauthorized_total",
			Help: "Upstream 401 answers to proxied requests by provider and what the proxy did (retried, body_not_replayable, refresh_failed, refresh_throttled).",
		}, []string{"provider", "outcome"}),
	}
	m.registry.MustRegister(m.proxyRequests, m.proxyUpstreamDuration, m.proxyUnauthorized)
	m.registry.MustRegister(m.requests, m.duration, m.tokensServed, m.tokenRemaining, m.syncRefreshes, m.tokenReads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// MetricsHandler serves /metrics, behind Config.MetricsToken when set:
// for a listener of its own (Config.MetricsSeparate) or the main one.
func (s *Server) MetricsHandler() http.Handler {
	h := s.metrics.handler()
	if s.cfg.MetricsToken == "" {
		return h
	}
	want := sha256.Sum256([]byte(s.cfg.MetricsToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tokenwarden-metrics"`)
			writeJSONError(w, http.StatusUnauthorized, CodeUnauthorized, "/metrics needs the metrics token: send Authorization: Bearer <token>")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// writeJSONError answers in the error format of /v1 outside Gin.
func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: code, Message: msg, RequestID: w.Header().Get("X-Request-ID")}})
}

func (m *metrics) observeRequest(route, method string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// providerCache remembers which provider a link belongs to, for the
// tokens_served metric. The token path reads Vault only, and the link's
// provider is not there, so a miss is resolved in the background and the
// count is added when it is known; the request never waits for it.
type providerCache struct {
	mu     sync.Mutex
	byLink map[string]string
	// sem bounds concurrent background lookups; when they are all busy,
	// the served token is counted as provider "unknown".
	sem chan struct{}
}

const maxCachedLinks = 100000

func newProviderCache() *providerCache {
	return &providerCache{byLink: make(map[string]string), sem: make(chan struct{}, 4)}
}

func (pc *providerCache) get(key string) (string, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	p, ok := pc.byLink[key]
	return p, ok
}

func (pc *providerCache) put(key, provider string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if len(pc.byLink) >= maxCachedLinks {
		clear(pc.byLink)
	}
	pc.byLink[key] = provider
}

// countServed adds one served token of the link to tokens_served_total.
func (s *Server) countServed(tenant, link string) {
	key := tenant + "/" + link
	if p, ok := s.linkProv.get(key); ok {
		s.metrics.tokensServed.WithLabelValues(p).Inc()
		return
	}
	select {
	case s.linkProv.sem <- struct{}{}:
	default:
		s.metrics.tokensServed.WithLabelValues(s.metrics.unknownProvider).Inc()
		return
	}
	go func() {
		defer func() { <-s.linkProv.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		provider := s.metrics.unknownProvider
		if l, err := s.store.GetLink(ctx, tenant, link); err == nil {
			provider = l.Provider
			s.linkProv.put(key, provider)
		}
		s.metrics.tokensServed.WithLabelValues(provider).Inc()
	}()
}

// statsQueryTimeout bounds the database queries of one stats poll.
const statsQueryTimeout = 10 * time.Second

// DefaultStatsInterval is how often the link and refresh counts are read
// from PostgreSQL when Config.StatsInterval is zero.
const DefaultStatsInterval = 30 * time.Second

// statsSource is what the stats collector reads; *store.Store satisfies
// it.
type statsSource interface {
	LinkCounts(ctx context.Context) ([]store.LinkCount, error)
	RefreshCounts(ctx context.Context) ([]store.RefreshCount, error)
}

// statsCollector serves link and refresh counts that a background loop
// reads from PostgreSQL every interval: a scrape never queries the
// database, however many arrive. They are facts of the shared database,
// not of this replica, so every gateway replica reports the same values;
// aggregate them with max, not sum. A failed poll keeps the series out
// (and sets tokenwarden_store_stats_up to 0) rather than failing /metrics:
// the process metrics matter most exactly when the database is down.
type statsCollector struct {
	src       statsSource
	log       *slog.Logger
	links     *prometheus.Desc
	refreshes *prometheus.Desc
	up        *prometheus.Desc
	age       *prometheus.Desc

	mu   sync.Mutex
	snap statsSnapshot

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// statsSnapshot is one poll's result.
type statsSnapshot struct {
	links     []store.LinkCount
	refreshes []store.RefreshCount
	up        bool
	at        time.Time
}

var _ prometheus.Collector = (*statsCollector)(nil)

func newStatsCollector(src statsSource, log *slog.Logger) *statsCollector {
	return &statsCollector{
		src: src,
		log: log,
		links: prometheus.NewDesc("tokenwarden_links",
			"Links by provider and status, as recorded in PostgreSQL.", []string{"provider", "status"}, nil),
		refreshes: prometheus.NewDesc("tokenwarden_refreshes_total",
			"Refresh attempts by provider and outcome (ok, failed, reauth_required), from the audit trail.",
			[]string{"provider", "outcome"}, nil),
		up: prometheus.NewDesc("tokenwarden_store_stats_up",
			"1 if the last poll read link and refresh counts from PostgreSQL, 0 if a query failed.", nil, nil),
		age: prometheus.NewDesc("tokenwarden_store_stats_age_seconds",
			"Seconds since link and refresh counts were last read from PostgreSQL.", nil, nil),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// start polls now and then every interval until close.
func (sc *statsCollector) start(interval time.Duration) {
	go func() {
		defer close(sc.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sc.poll()
			select {
			case <-sc.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (sc *statsCollector) close() {
	if sc == nil {
		return
	}
	sc.once.Do(func() { close(sc.stop) })
	<-sc.done
}

// poll reads the counts once.
func (sc *statsCollector) poll() {
	ctx, cancel := context.WithTimeout(context.Background(), statsQueryTimeout)
	defer cancel()
	snap := statsSnapshot{up: true, at: time.Now()}
	var err error
	if snap.links, err = sc.src.LinkCounts(ctx); err != nil {
		snap.up, snap.links = false, nil
		sc.log.Warn("metrics: link counts unavailable", "error", err.Error())
	}
	if snap.refreshes, err = sc.src.RefreshCounts(ctx); err != nil {
		snap.up, snap.refreshes = false, nil
		sc.log.Warn("metrics: refresh counts unavailable", "error", err.Error())
	}
	sc.mu.Lock()
	sc.snap = snap
	sc.mu.Unlock()
}

func (sc *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sc.links
	ch <- sc.refreshes
	ch <- sc.up
	ch <- sc.age
}

func (sc *statsCollector) Collect(ch chan<- prometheus.Metric) {
	sc.mu.Lock()
	snap := sc.snap
	sc.mu.Unlock()
	if snap.at.IsZero() {
		// Not polled yet.
		ch <- prometheus.MustNewConstMetric(sc.up, prometheus.GaugeValue, 0)
		return
	}
	for _, c := range snap.links {
		sc.send(ch, sc.links, prometheus.GaugeValue, c.Count, c.Provider, c.Status)
	}
	for _, c := range snap.refreshes {
		sc.send(ch, sc.refreshes, prometheus.CounterValue, c.Count, c.Provider, c.Outcome)
	}
	up := 0.0
	if snap.up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(sc.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(sc.age, prometheus.GaugeValue, time.Since(snap.at).Seconds())
}

// send emits one series. NewConstMetric refuses label values that are not
// UTF-8; such a row is skipped rather than allowed to panic the scrape.
func (sc *statsCollector) send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, n int64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, float64(n), labels...)
	if err != nil {
		return
	}
	ch <- m
}
