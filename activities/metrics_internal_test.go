package activities

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/workflows"
)

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.refreshStarted("p", time.Now().Add(-time.Second), time.Now())
	m.refreshEnded("p", time.Now(), workflows.TokenInfo{}, nil)
	m.webhookAttempt(deliveryVerdict{})
	m.dependencyError(DependencyVault)
	var a Activities // no Metrics: DeliverWebhook's hook is a no-op
	a.Metrics.webhookAttempt(deliveryVerdict{})
}

func TestRefreshLagCountsScheduledRefreshesOnly(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	due := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	m.refreshStarted("norman", due, due.Add(1500*time.Millisecond))
	m.refreshStarted("norman", due, due.Add(-time.Minute)) // forced ahead of schedule
	m.refreshStarted("norman", time.Time{}, due)           // no schedule (a run before lean cycles)
	h := histogram(t, m.refreshLag, "norman")
	if h.count != 1 || h.sum != 1.5 {
		t.Fatalf("lag: %d samples, sum %v; want one of 1.5 s", h.count, h.sum)
	}
}

func TestOldTokenRemainingAndOutcomes(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	m := NewMetrics(prometheus.NewRegistry())
	m.now = func() time.Time { return now }
	m.refreshEnded("luca", now.Add(45*time.Second), workflows.TokenInfo{}, nil)
	m.refreshEnded("luca", now.Add(-3*time.Second), workflows.TokenInfo{Reenrolled: true}, nil)
	m.refreshEnded("luca", now.Add(time.Minute), workflows.TokenInfo{},
		temporal.NewNonRetryableApplicationError("refresh: invalid_grant", workflows.ErrTypeInvalidGrant, nil))
	h := histogram(t, m.oldTokenRemaining, "luca")
	if h.count != 2 || h.sum != 42 {
		t.Errorf("old token remaining: %d samples, sum %v; want 45 s and -3 s", h.count, h.sum)
	}
	if h.atOrBelow0 != 1 {
		t.Errorf("le=0 bucket: %d, want 1: the token that expired before its replacement", h.atOrBelow0)
	}
	for outcome, want := range map[string]float64{"ok": 1, "reenrolled": 1, "invalid_grant": 1} {
		if got := testutil.ToFloat64(m.refreshAttempts.WithLabelValues("luca", outcome)); got != want {
			t.Errorf("refresh attempts %s = %v, want %v", outcome, got, want)
		}
	}
}

func TestRefreshOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{temporal.NewNonRetryableApplicationError("x", workflows.ErrTypePermanent, nil), "permanent"},
		{temporal.NewNonRetryableApplicationError("x", workflows.ErrTypeConfig, nil), "config"},
		{temporal.NewApplicationError("x", "Transient"), "transient"},
		{temporal.NewApplicationError("x", "RateLimited"), "rate_limited"},
		{temporal.NewApplicationError("x", "VaultUnavailable"), "vault_unavailable"},
		{errLeaseLost("refresh lnk_1"), "lease_lost"},
		{fmt.Errorf("x: %w", context.Canceled), "canceled"},
		{errors.New("boom"), "error"},
	} {
		if got := refreshOutcome(tc.err); got != tc.want {
			t.Errorf("refreshOutcome(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestFailedDependency(t *testing.T) {
	for _, tc := range []struct {
		activity string
		err      error
		want     string
	}{
		{workflows.ActivityRefresh, nil, ""},
		{workflows.ActivityRefresh, vaultError("refresh lnk_1", secrets.ErrUnavailable), DependencyVault},
		{workflows.ActivityRefresh, vaultError("refresh lnk_1", secrets.ErrNotFound), ""}, // a broken link, not an outage
		{workflows.ActivityRefresh, temporal.NewApplicationError("x", "Transient"), DependencyProvider},
		{workflows.ActivityRefresh, temporal.NewApplicationError("x", "RateLimited"), DependencyProvider},
		{workflows.ActivityRefresh, temporal.NewNonRetryableApplicationError("x", workflows.ErrTypeInvalidGrant, nil), ""},
		{workflows.ActivityRefresh, errLeaseLost("refresh lnk_1"), DependencyTemporal},
		{workflows.ActivityEnroll, temporal.NewApplicationError("x", "StoreUnavailable"), DependencyPostgres},
		{workflows.ActivityRecord, errors.New("record ev_1: connection refused"), DependencyPostgres},
		{workflows.ActivityEnroll, fmt.Errorf("bind: %w", &pgconn.PgError{Code: "57P01"}), DependencyPostgres},
		{workflows.ActivityDeliverWebhook, fmt.Errorf("webhook secret of t: %w", secrets.ErrUnavailable), DependencyVault},
		{workflows.ActivityDeliverWebhook, fmt.Errorf("webhook of t: %w", errors.New("conn closed")), DependencyPostgres},
		{workflows.ActivityDeliverWebhook, temporal.NewApplicationError("deliver: HTTP 500", "WebhookStatus"), ""},
		{workflows.ActivityRecord, fmt.Errorf("record: %w", context.DeadlineExceeded), ""},
	} {
		if got := failedDependency(tc.activity, tc.err); got != tc.want {
			t.Errorf("failedDependency(%s, %v) = %q, want %q", tc.activity, tc.err, got, tc.want)
		}
	}
}

func TestWebhookOutcome(t *testing.T) {
	for _, tc := range []struct {
		status int
		err    error
		want   string
	}{
		{204, nil, "delivered"},
		{410, nil, "gone"},
		{500, nil, "http_error"},
		{302, nil, "http_error"},
		{0, errBlockedAddress, "refused_internal"},
		{0, errors.New("connection refused"), "transport_error"},
	} {
		if got := judgeDelivery(tc.status, tc.err).outcome(); got != tc.want {
			t.Errorf("status %d, err %v: outcome %q, want %q", tc.status, tc.err, got, tc.want)
		}
	}
}

// TestInterceptorMeasuresRefreshes runs a stand-in Refresh activity
// through the interceptor in the SDK's test environment: the metrics come
// from the activity's input (schedule, old expiry) and its result.
func TestInterceptorMeasuresRefreshes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{m.WorkerInterceptor()}})
	results := map[string]error{
		"lnk_ok":    nil,
		"lnk_dead":  temporal.NewNonRetryableApplicationError("refresh: invalid_grant", workflows.ErrTypeInvalidGrant, nil),
		"lnk_vault": vaultError("refresh lnk_vault", secrets.ErrUnavailable),
	}
	env.RegisterActivityWithOptions(func(ctx context.Context, in workflows.RefreshInput) (workflows.TokenInfo, error) {
		if err := results[in.LinkID]; err != nil {
			return workflows.TokenInfo{}, err
		}
		return workflows.TokenInfo{Recorded: false}, nil // its audit write failed
	}, activity.RegisterOptions{Name: workflows.ActivityRefresh})

	due := time.Now().Add(-20 * time.Second)
	for id := range results {
		in := workflows.RefreshInput{LinkRef: workflows.LinkRef{LinkID: id, Provider: "finapi"},
			Record: &workflows.Transition{ScheduledFor: due, State: workflows.State{ExpiresAt: time.Now().Add(40 * time.Second)}}}
		_, _ = env.ExecuteActivity(workflows.ActivityRefresh, in)
	}

	lag := histogram(t, m.refreshLag, "finapi")
	if lag.count != 3 || lag.sum < 3*19 || lag.sum > 3*60 {
		t.Errorf("lag: %d samples, sum %v s; want 3 of about 20 s", lag.count, lag.sum)
	}
	if left := histogram(t, m.oldTokenRemaining, "finapi"); left.count != 1 || left.sum > 40 || left.sum < 30 {
		t.Errorf("old token remaining: %d samples, sum %v; want one of about 40 s", left.count, left.sum)
	}
	for _, c := range []struct {
		c    prometheus.Counter
		want float64
	}{
		{m.refreshAttempts.WithLabelValues("finapi", "ok"), 1},
		{m.refreshAttempts.WithLabelValues("finapi", "invalid_grant"), 1},
		{m.refreshAttempts.WithLabelValues("finapi", "vault_unavailable"), 1},
		{m.dependencyErrors.WithLabelValues(DependencyVault), 1},
		{m.dependencyErrors.WithLabelValues(DependencyPostgres), 1}, // the refresh that could not record itself
		{m.dependencyErrors.WithLabelValues(DependencyProvider), 0},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.c.Desc(), got, c.want)
		}
	}
	// Every dependency has a series from the start, at zero.
	n, err := testutil.GatherAndCount(reg, "tokenwarden_dependency_errors_total")
	if err != nil || n != 4 {
		t.Errorf("dependency error series: %d (%v), want 4", n, err)
	}
}

// hist is one histogram series: count, sum, and the count at or below 0.
type hist struct {
	count      uint64
	sum        float64
	atOrBelow0 uint64
}

// histogram reads the histogram of vec for one provider.
func histogram(t *testing.T, vec *prometheus.HistogramVec, provider string) hist {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(vec)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "provider" || l.GetValue() != provider {
					continue
				}
				h := hist{count: m.GetHistogram().GetSampleCount(), sum: m.GetHistogram().GetSampleSum()}
				for _, b := range m.GetHistogram().GetBucket() {
					if b.GetUpperBound() == 0 {
						h.atOrBelow0 = b.GetCumulativeCount()
					}
				}
				return h
			}
		}
	}
	t.Fatalf("no histogram for provider %s", provider)
	return hist{}
}
