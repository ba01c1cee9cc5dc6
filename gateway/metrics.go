package gateway

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	tokensServed    *prometheus.CounterVec
	tokenRemaining  prometheus.Histogram
	syncRefreshes   *prometheus.CounterVec
	unknownProvider string
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
		unknownProvider: "unknown",
	}
	m.registry.MustRegister(m.requests, m.duration, m.tokensServed, m.tokenRemaining, m.syncRefreshes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
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
