package activities

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Metrics are the worker's own Prometheus metrics: how late refreshes
// run, how much life the replaced tokens had left, how refresh attempts
// and webhook deliveries end, and which dependency failed. A nil *Metrics
// records nothing, so tests and tools that build Activities without one
// need not care.
//
// Most of it is measured around the activities rather than inside them
// (WorkerInterceptor): the input says when a refresh was due and what the
// old token's expiry was, the result and its typed error say how it
// ended, and the activity code stays about tokens.
type Metrics struct {
	refreshLag        *prometheus.HistogramVec
	oldTokenRemaining *prometheus.HistogramVec
	refreshAttempts   *prometheus.CounterVec
	webhookDeliveries *prometheus.CounterVec
	dependencyErrors  *prometheus.CounterVec
	// now is the clock; nil means time.Now.
	now func() time.Time
}

// Dependencies named by tokenwarden_dependency_errors_total.
const (
	DependencyVault    = "vault"
	DependencyPostgres = "postgres"
	DependencyProvider = "provider"
	// DependencyTemporal: an attempt gave up because Temporal did not
	// confirm its heartbeat (see lease).
	DependencyTemporal = "temporal"
)

// NewMetrics registers the worker's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		refreshLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tokenwarden_refresh_lag_seconds",
			Help: "How late scheduled refreshes started, by provider: the first attempt's start at Temporal minus when the link's timer was due. " +
				"Refreshes forced ahead of schedule are not counted.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"provider"}),
		oldTokenRemaining: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tokenwarden_refresh_old_token_remaining_seconds",
			Help: "Life the replaced access token had left when a refresh stored the new one, by provider; " +
				"the le=\"0\" bucket counts tokens that had expired before their replacement arrived.",
			Buckets: []float64{0, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400},
		}, []string{"provider"}),
		refreshAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_refresh_attempts_total",
			Help: "Refresh activity attempts by provider and outcome (ok, reenrolled, invalid_grant, permanent, config, transient, " +
				"rate_limited, vault_unavailable, lease_lost, canceled, error), as this worker ran them.",
		}, []string{"provider", "outcome"}),
		webhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome (delivered, http_error, transport_error, gone, refused_internal).",
		}, []string{"outcome"}),
		dependencyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwarden_dependency_errors_total",
			Help: "Activity attempts that failed because of a dependency (vault, postgres, provider, temporal), " +
				"and refreshes whose own audit write PostgreSQL refused.",
		}, []string{"dependency"}),
	}
	reg.MustRegister(m.refreshLag, m.oldTokenRemaining, m.refreshAttempts, m.webhookDeliveries, m.dependencyErrors)
	// Every dependency shows from the first scrape, so that an alert on
	// its rate has a series to read before the first failure.
	for _, d := range []string{DependencyVault, DependencyPostgres, DependencyProvider, DependencyTemporal} {
		m.dependencyErrors.WithLabelValues(d)
	}
	return m
}

func (m *Metrics) clock() time.Time {
	if m != nil && m.now != nil {
		return m.now()
	}
	return time.Now()
}

// refreshStarted records the lag of a scheduled refresh, once per
// refresh (its first attempt): started is when Temporal handed the
// attempt to a worker, scheduledFor when the link's timer was due.
func (m *Metrics) refreshStarted(provider string, scheduledFor, started time.Time) {
	if m == nil || scheduledFor.IsZero() {
		return
	}
	if lag := started.Sub(scheduledFor); lag >= 0 {
		m.refreshLag.WithLabelValues(provider).Observe(lag.Seconds())
	}
}

// refreshEnded counts a refresh attempt by outcome and, when it stored a
// new token, the life the old one (expiring at oldExpiry) had left.
func (m *Metrics) refreshEnded(provider string, oldExpiry time.Time, info workflows.TokenInfo, err error) {
	if m == nil {
		return
	}
	outcome := refreshOutcome(err)
	if err == nil && info.Reenrolled {
		outcome = "reenrolled"
	}
	m.refreshAttempts.WithLabelValues(provider, outcome).Inc()
	if err == nil && !oldExpiry.IsZero() {
		m.oldTokenRemaining.WithLabelValues(provider).Observe(oldExpiry.Sub(m.clock()).Seconds())
	}
}

// refreshOutcome names how a refresh attempt ended, from its typed error.
func refreshOutcome(err error) string {
	if err == nil {
		return "ok"
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case workflows.ErrTypeInvalidGrant:
			return "invalid_grant"
		case workflows.ErrTypePermanent:
			return "permanent"
		case workflows.ErrTypeConfig:
			return "config"
		case "Transient":
			return "transient"
		case "RateLimited":
			return "rate_limited"
		case "VaultUnavailable":
			return "vault_unavailable"
		case "LeaseLost":
			return "lease_lost"
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	return "error"
}

// webhookAttempt counts one delivery attempt that reached the point of
// sending (or of refusing to send) by how it ended.
func (m *Metrics) webhookAttempt(v deliveryVerdict) {
	if m == nil {
		return
	}
	m.webhookDeliveries.WithLabelValues(v.outcome()).Inc()
}

// outcome is the verdict as a metric label.
func (v deliveryVerdict) outcome() string {
	switch {
	case v.err == nil:
		return "delivered"
	case v.errType == workflows.ErrTypeWebhookGone:
		return "gone"
	case v.errType == workflows.ErrTypeConfig:
		return "refused_internal"
	case v.errType == "WebhookTransport":
		return "transport_error"
	}
	return "http_error"
}

// dependencyError counts a failure of dep.
func (m *Metrics) dependencyError(dep string) {
	if m == nil || dep == "" {
		return
	}
	m.dependencyErrors.WithLabelValues(dep).Inc()
}

// failedDependency names the dependency an activity attempt of the given
// type failed on, or "" when it failed for another reason (a dead grant,
// a cancellation, a webhook receiver's answer).
func failedDependency(activityType string, err error) string {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ""
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case "VaultUnavailable":
			return DependencyVault
		case "StoreUnavailable":
			return DependencyPostgres
		case "Transient", "RateLimited":
			return DependencyProvider
		case "LeaseLost":
			return DependencyTemporal
		}
		return ""
	}
	var pgErr *pgconn.PgError
	var connErr *pgconn.ConnectError
	switch {
	case errors.Is(err, secrets.ErrUnavailable) || errors.Is(err, secrets.ErrDenied):
		return DependencyVault
	case errors.As(err, &pgErr) || errors.As(err, &connErr):
		return DependencyPostgres
	}
	// The activities that only talk to PostgreSQL return its errors
	// plainly; so does DeliverWebhook when it cannot read the webhook's
	// row (its Vault errors are caught above, a cut-off delivery is a
	// cancellation).
	switch activityType {
	case workflows.ActivityRecord, workflows.ActivityRecordBatch, workflows.ActivityWebhookSubscribed, workflows.ActivityDeliverWebhook:
		return DependencyPostgres
	}
	return ""
}

// WorkerInterceptor measures every activity the worker runs; give it to
// the worker's options (worker.Options.Interceptors).
func (m *Metrics) WorkerInterceptor() interceptor.WorkerInterceptor {
	return &metricsInterceptor{m: m}
}

type metricsInterceptor struct {
	interceptor.WorkerInterceptorBase
	m *Metrics
}

func (w *metricsInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &metricsActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, m: w.m}
}

type metricsActivity struct {
	interceptor.ActivityInboundInterceptorBase
	m *Metrics
}

func (a *metricsActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	name := info.ActivityType.Name
	var refresh *workflows.RefreshInput
	if name == workflows.ActivityRefresh && len(in.Args) == 1 {
		if r, ok := in.Args[0].(workflows.RefreshInput); ok {
			refresh = &r
		}
	}
	if refresh != nil && refresh.Record != nil && info.Attempt <= 1 {
		started := info.StartedTime
		if started.IsZero() {
			started = a.m.clock()
		}
		a.m.refreshStarted(refresh.Provider, refresh.Record.ScheduledFor, started)
	}
	res, err := a.Next.ExecuteActivity(ctx, in)
	if ctx.Err() == nil {
		// The worker stopping or the attempt timing out says nothing
		// about a dependency.
		a.m.dependencyError(failedDependency(name, err))
	}
	if refresh != nil {
		ti, _ := res.(workflows.TokenInfo)
		var oldExpiry time.Time
		if refresh.Record != nil {
			oldExpiry = refresh.Record.State.ExpiresAt
			if err == nil && !ti.Recorded {
				// The refresh's own audit write failed (the workflow
				// writes it later): PostgreSQL is failing.
				a.m.dependencyError(DependencyPostgres)
			}
		}
		a.m.refreshEnded(refresh.Provider, oldExpiry, ti, err)
	}
	return res, err
}
