package workflows

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/providers"
)

// fakeProvider stands in for the activities: it "issues" tokens of a fixed
// lifetime on the test environment's clock and records every call.
type fakeProvider struct {
	mu          sync.Mutex
	env         *testsuite.TestWorkflowEnvironment
	lifetime    time.Duration
	refreshLife time.Duration // refresh token lifetime, zero: none
	version     int
	enrolls     int
	refreshes   int
	revokes     int
	// refreshErrs are returned by the next refresh attempts, in order.
	refreshErrs []error
	enrollErrs  []error
	devicePolls int
	pendingPoll int // how many polls answer "pending"
	slowDownAt  map[int]bool
	pollTimes   []time.Time
	records     []Transition
	suspends    int
	// webhookAnswer answers the webhook question of a lean enrollment;
	// the WebhookSubscribed activity asks it too.
	webhookAnswer func(WebhookCheck) (bool, error)
	// recordCalls and checkCalls count RecordTransition and
	// WebhookSubscribed activities.
	recordCalls, checkCalls int
	// duringRefresh runs inside the refresh activity.
	duringRefresh func()
	// down says an activity fails transiently (its dependency is
	// unreachable) at the test clock's now.
	down func(activity string, now time.Time) bool
	// wiped counts revokes that got through.
	wiped int
}

// transient is the error of an unreachable provider, Vault or database.
var transient = temporal.NewApplicationError("unreachable (HTTP 503)", "Transient")

func (f *fakeProvider) isDown(name string) bool {
	return f.down != nil && f.down(name, f.env.Now())
}

func (f *fakeProvider) token() TokenInfo {
	f.version++
	now := f.env.Now()
	info := TokenInfo{
		VaultVersion: f.version,
		ObtainedAt:   now,
		ExpiresAt:    now.Add(f.lifetime),
		ExpirySource: "provider",
		Schedule:     providers.Schedule{MinMargin: time.Minute, Fraction: 0.2, Jitter: 0.1, DefaultLifetime: time.Hour},
	}
	if f.refreshLife > 0 {
		info.RefreshExpiry = now.Add(f.refreshLife)
	}
	return info
}

// Enroll enrolls and, as the real activity does for a lean enrollment,
// writes the planned record (unless the database is down) and answers
// the webhook question (webhookAnswer).
func (f *fakeProvider) Enroll(ctx context.Context, in EnrollInput) (TokenInfo, error) {
	info, err := f.enroll(in)
	if err == nil && in.Webhook != nil && f.webhookAnswer != nil {
		if subscribed, err := f.webhookAnswer(*in.Webhook); err == nil {
			info.Subscribed = &subscribed
		}
	}
	return info, err
}

func (f *fakeProvider) enroll(in EnrollInput) (TokenInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isDown(ActivityEnroll) {
		return TokenInfo{}, transient
	}
	f.enrolls++
	if len(f.enrollErrs) > 0 {
		err := f.enrollErrs[0]
		f.enrollErrs = f.enrollErrs[1:]
		return TokenInfo{}, err
	}
	info := f.token()
	if in.Record != nil && !f.isDown(ActivityRecord) {
		t := *in.Record
		t.At = f.env.Now()
		t.State = t.State.Enrolled(info, t.Seq)
		t.State.NextRefreshAt = t.State.ScheduledRefresh(t.LinkID, t.At)
		f.records = append(f.records, t)
		info.Recorded = true
	}
	return info, nil
}

func (f *fakeProvider) PollDevice(ctx context.Context, ref LinkRef) (DevicePoll, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devicePolls++
	f.pollTimes = append(f.pollTimes, f.env.Now())
	if f.devicePolls <= f.pendingPoll {
		return DevicePoll{Pending: true, Interval: 5 * time.Second, SlowDown: f.slowDownAt[f.devicePolls]}, nil
	}
	t := f.token()
	return DevicePoll{Token: &t}, nil
}

func (f *fakeProvider) Refresh(ctx context.Context, in RefreshInput) (TokenInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	if f.duringRefresh != nil {
		f.duringRefresh()
	}
	if len(f.refreshErrs) > 0 {
		err := f.refreshErrs[0]
		f.refreshErrs = f.refreshErrs[1:]
		return TokenInfo{}, err
	}
	return f.token(), nil
}

func (f *fakeProvider) Revoke(ctx context.Context, ref LinkRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokes++
	if f.isDown(ActivityRevoke) {
		return transient
	}
	f.wiped++
	return nil
}

func (f *fakeProvider) Suspend(ctx context.Context, ref LinkRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isDown(ActivitySuspend) {
		return transient
	}
	f.suspends++
	return nil
}

func (f *fakeProvider) RecordTransition(ctx context.Context, t Transition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isDown(ActivityRecord) {
		return transient
	}
	f.recordCalls++
	f.records = append(f.records, t)
	return nil
}

// sortedRecords are the recorded transitions in order: record activities
// run concurrently, the sequence number orders them.
func (f *fakeProvider) sortedRecords() []Transition {
	f.mu.Lock()
	defer f.mu.Unlock()
	recs := append([]Transition(nil), f.records...)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	return recs
}

func (f *fakeProvider) statuses() []Status {
	var out []Status
	for _, r := range f.sortedRecords() {
		out = append(out, r.To)
	}
	return out
}

func (f *fakeProvider) types() []string {
	var out []string
	for _, r := range f.sortedRecords() {
		out = append(out, r.Type)
	}
	return out
}

type suite struct {
	env *testsuite.TestWorkflowEnvironment
	f   *fakeProvider
}

func newSuite(t *testing.T, lifetime time.Duration) *suite {
	var ts testsuite.WorkflowTestSuite
	ts.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := ts.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	f := &fakeProvider{env: env, lifetime: lifetime}
	env.RegisterWorkflowWithOptions(Link, workflow.RegisterOptions{Name: "Link"})
	env.RegisterActivityWithOptions(f.Enroll, activity.RegisterOptions{Name: ActivityEnroll})
	env.RegisterActivityWithOptions(f.PollDevice, activity.RegisterOptions{Name: ActivityPollDevice})
	env.RegisterActivityWithOptions(f.Refresh, activity.RegisterOptions{Name: ActivityRefresh})
	env.RegisterActivityWithOptions(f.Revoke, activity.RegisterOptions{Name: ActivityRevoke})
	env.RegisterActivityWithOptions(f.Suspend, activity.RegisterOptions{Name: ActivitySuspend})
	env.RegisterActivityWithOptions(f.RecordTransition, activity.RegisterOptions{Name: ActivityRecord})
	env.RegisterActivityWithOptions(func(ctx context.Context, ts []Transition) error {
		for _, t := range ts {
			if err := f.RecordTransition(ctx, t); err != nil {
				return err
			}
		}
		return nil
	}, activity.RegisterOptions{Name: ActivityRecordBatch})
	// No tenant here has a webhook (webhooks_test.go covers those).
	f.webhookAnswer = func(WebhookCheck) (bool, error) { return false, nil }
	env.RegisterActivityWithOptions(func(_ context.Context, c WebhookCheck) (bool, error) {
		f.mu.Lock()
		f.checkCalls++
		f.mu.Unlock()
		return f.webhookAnswer(c)
	}, activity.RegisterOptions{Name: ActivityWebhookSubscribed})
	return &suite{env: env, f: f}
}

func params(grant string) LinkParams {
	return LinkParams{TenantID: "acme", LinkID: "lnk_1", Provider: "peer", GrantType: grant, MaxCyclesPerRun: 1000}
}

func (s *suite) state(t *testing.T) State {
	t.Helper()
	v, err := s.env.QueryWorkflow(QueryState)
	require.NoError(t, err)
	var st State
	require.NoError(t, v.Get(&st))
	return st
}

// at runs fn when the test clock reaches start+d.
func (s *suite) at(d time.Duration, fn func()) { s.env.RegisterDelayedCallback(fn, d) }

func (s *suite) revokeAt(d time.Duration) {
	s.at(d, func() { s.env.SignalWorkflow(SignalRevoke, RevokeRequest{Reason: "test"}) })
}

func TestLinkRefreshesBeforeExpiryForHours(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	var observed []State
	// Sample the state every 10 virtual minutes for 6 hours: the token must
	// never be seen expired, and the refresh must happen ahead of expiry.
	for i := 1; i <= 36; i++ {
		s.at(time.Duration(i)*10*time.Minute, func() { observed = append(observed, s.state(t)) })
	}
	s.revokeAt(6*time.Hour + time.Second)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.True(t, s.env.IsWorkflowCompleted())
	require.NoError(t, s.env.GetWorkflowError())

	// 5-minute tokens, margin 60 s ±10 %: a refresh every ~4 minutes.
	require.GreaterOrEqual(t, s.f.refreshes, 80, "refreshes in 6 h")
	require.LessOrEqual(t, s.f.refreshes, 100, "refreshes in 6 h")
	require.Len(t, observed, 36)
	for _, st := range observed {
		require.Equal(t, StatusActive, st.Status)
		require.True(t, st.NextRefreshAt.Before(st.ExpiresAt), "refresh scheduled before expiry")
		lead := st.ExpiresAt.Sub(st.NextRefreshAt)
		require.GreaterOrEqual(t, lead, 50*time.Second)
		require.LessOrEqual(t, lead, 150*time.Second)
	}
	require.Equal(t, 1, s.f.revokes)
}

func TestLinkRefreshesBeforeRefreshTokenExpires(t *testing.T) {
	// Keycloak style: access token 15 min, refresh token 30 min... but
	// with a refresh token shorter than the access token, the refresh
	// token's expiry decides.
	s := newSuite(t, time.Hour)
	s.f.refreshLife = 10 * time.Minute
	var st State
	s.at(time.Minute, func() { st = s.state(t) })
	s.revokeAt(time.Hour)
	s.env.ExecuteWorkflow(Link, params(providers.GrantPassword))
	require.NoError(t, s.env.GetWorkflowError())
	require.True(t, st.NextRefreshAt.Before(st.RefreshExpiry), "refresh before the refresh token dies")
	// One refresh per ~8 minutes over an hour of 1-hour access tokens.
	require.GreaterOrEqual(t, s.f.refreshes, 6)
}

func TestAuthorizationCodeWaitsForConsent(t *testing.T) {
	s := newSuite(t, time.Hour)
	var before, after State
	s.at(time.Minute, func() { before = s.state(t) })
	s.at(2*time.Minute, func() { s.env.SignalWorkflow(SignalAuthorized, nil) })
	s.at(3*time.Minute, func() { after = s.state(t) })
	s.revokeAt(4 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantAuthorizationCode))
	require.NoError(t, s.env.GetWorkflowError())
	require.Equal(t, StatusPendingAuthorization, before.Status)
	require.Equal(t, 0, s.f.refreshes)
	require.Equal(t, StatusActive, after.Status)
	require.Equal(t, 1, s.f.enrolls)
	require.Equal(t, []Status{StatusPendingAuthorization, StatusActive, StatusRevoked}, s.f.statuses())
}

func TestAuthorizationDenied(t *testing.T) {
	s := newSuite(t, time.Hour)
	s.at(time.Minute, func() {
		s.env.SignalWorkflow(SignalDenied, DeniedRequest{Error: "access_denied", Description: "user said no"})
	})
	s.env.ExecuteWorkflow(Link, params(providers.GrantAuthorizationCode))
	require.NoError(t, s.env.GetWorkflowError())
	recs := s.f.sortedRecords()
	require.Equal(t, StatusFailed, recs[len(recs)-1].To)
	require.Equal(t, "authorization denied: access_denied: user said no", recs[len(recs)-1].State.LastError)
	require.Equal(t, 0, s.f.enrolls)
}

func TestAuthorizationCodeTimesOut(t *testing.T) {
	s := newSuite(t, time.Hour)
	p := params(providers.GrantAuthorizationCode)
	p.AuthorizationTimeout = 10 * time.Minute
	s.env.ExecuteWorkflow(Link, p)
	require.NoError(t, s.env.GetWorkflowError())
	require.Equal(t, []Status{StatusPendingAuthorization, StatusFailed}, s.f.statuses())
	require.Equal(t, 0, s.f.enrolls)
}

func TestDeviceFlowPollsUntilApproved(t *testing.T) {
	s := newSuite(t, time.Hour)
	s.f.pendingPoll = 3
	s.revokeAt(time.Hour)
	s.env.ExecuteWorkflow(Link, params(providers.GrantDeviceCode))
	require.NoError(t, s.env.GetWorkflowError())
	require.Equal(t, 4, s.f.devicePolls)
	require.Equal(t, []Status{StatusPendingAuthorization, StatusActive}, s.f.statuses()[:2])
}

func TestRefreshUpdateIsCoalescedAndSkippedWhenFresh(t *testing.T) {
	s := newSuite(t, time.Hour)
	var fresh, forced1, forced2 RefreshResult
	var errs []error
	update := func(req RefreshRequest, into *RefreshResult) {
		s.env.UpdateWorkflow(UpdateRefresh, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { errs = append(errs, err) },
			OnAccept: func() {},
			OnComplete: func(v any, err error) {
				if err != nil {
					errs = append(errs, err)
					return
				}
				*into = v.(RefreshResult)
			},
		}, req)
	}
	s.at(time.Minute, func() {
		// Valid for the next 10 minutes already: no provider call.
		update(RefreshRequest{MinValidUntil: s.env.Now().Add(10 * time.Minute)}, &fresh)
	})
	s.at(2*time.Minute, func() {
		// Two forced refreshes at the same moment share one provider call.
		update(RefreshRequest{}, &forced1)
		update(RefreshRequest{}, &forced2)
	})
	s.revokeAt(3 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, s.env.GetWorkflowError())
	require.Empty(t, errs)
	require.False(t, fresh.Refreshed)
	require.Equal(t, 1, fresh.VaultVersion)
	require.True(t, forced1.Refreshed)
	require.Equal(t, forced1, forced2)
	require.Equal(t, 1, s.f.refreshes, "one provider call for two concurrent requests")
	require.Equal(t, 2, forced1.VaultVersion)
}

func TestRefreshUpdateRejectedWhenRevokedOrPending(t *testing.T) {
	s := newSuite(t, time.Hour)
	var rejected error
	s.at(time.Minute, func() {
		s.env.UpdateWorkflow(UpdateRefresh, "", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { rejected = err },
			OnAccept:   func() { t.Error("refresh of a pending link accepted") },
			OnComplete: func(any, error) {},
		}, RefreshRequest{})
	})
	s.revokeAt(2 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantAuthorizationCode))
	require.Error(t, rejected)
	require.Contains(t, rejected.Error(), string(StatusPendingAuthorization))
}

func TestRevokeUpdateEndsTheLink(t *testing.T) {
	s := newSuite(t, time.Hour)
	var got State
	s.at(time.Minute, func() {
		s.env.UpdateWorkflow(UpdateRevoke, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("revoke rejected: %v", err) },
			OnAccept: func() {},
			OnComplete: func(v any, err error) {
				require.NoError(t, err)
				got = v.(State)
			},
		}, RevokeRequest{Reason: "user asked"})
	})
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.True(t, s.env.IsWorkflowCompleted())
	require.NoError(t, s.env.GetWorkflowError())
	require.Equal(t, StatusRevoked, got.Status)
	require.Equal(t, 1, s.f.revokes)
	recs := s.f.sortedRecords()
	last := recs[len(recs)-1]
	require.Equal(t, "revoked", last.Type)
	require.Equal(t, "user asked", last.Detail)
}

func TestInvalidGrantNeedsReauthorization(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	s.f.refreshErrs = []error{temporal.NewNonRetryableApplicationError("refresh: invalid_grant", ErrTypeInvalidGrant, nil)}
	var stuck, back State
	s.at(30*time.Second, func() { s.env.SignalWorkflow(SignalAuthorized, nil) })
	s.at(10*time.Minute, func() { stuck = s.state(t) })
	s.at(20*time.Minute, func() { s.env.SignalWorkflow(SignalReauthorize, ReauthorizeRequest{}) })
	s.at(21*time.Minute, func() { back = s.state(t) })
	s.revokeAt(22 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantAuthorizationCode))
	require.NoError(t, s.env.GetWorkflowError())
	require.Equal(t, StatusReauthRequired, stuck.Status)
	require.Contains(t, stuck.LastError, "invalid_grant")
	require.Zero(t, stuck.NextRefreshAt, "no refresh scheduled while re-authorization is needed")
	require.Equal(t, 1, s.f.refreshes, "no retries of a dead grant")
	require.Equal(t, 1, s.f.suspends, "the access token of a rejected grant is no longer served")
	require.Equal(t, StatusActive, back.Status)
	require.Empty(t, back.LastError)
}

func TestPermanentErrorNeedsReauthorization(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	s.f.refreshErrs = []error{temporal.NewNonRetryableApplicationError("refresh: invalid_client", ErrTypePermanent, nil)}
	s.revokeAt(time.Hour)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.Contains(t, s.f.statuses(), StatusReauthRequired)
	require.Equal(t, 1, s.f.refreshes)
}

func TestTransientErrorsDegradeThenRecover(t *testing.T) {
	s := newSuite(t, 10*time.Minute)
	transient := temporal.NewApplicationError("refresh: transient (HTTP 503)", "Transient")
	s.f.lifetime = 5 * time.Minute
	// Four attempts per activity execution: two executions fail.
	for i := 0; i < 8; i++ {
		s.f.refreshErrs = append(s.f.refreshErrs, transient)
	}
	s.revokeAt(30 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, s.env.GetWorkflowError())
	var degraded []Transition
	for _, r := range s.f.sortedRecords() {
		if r.To == StatusDegraded {
			degraded = append(degraded, r)
		}
	}
	require.Len(t, degraded, 2, "two failed executions")
	for _, r := range degraded {
		require.Contains(t, r.State.LastError, "503")
		require.True(t, r.State.ExpiresAt.After(r.At), "degraded while the token is still valid")
	}
	require.Equal(t, 2, degraded[1].State.Failures)
	var types []string
	for _, r := range s.f.records {
		types = append(types, r.Type)
	}
	require.Contains(t, types, "refresh_failed")
	require.Contains(t, types, "recovered")
	require.NotContains(t, s.f.statuses(), StatusReauthRequired)
	require.NotContains(t, s.f.statuses(), StatusFailed)
}

func TestRateLimitHonoursRetryAfter(t *testing.T) {
	s := newSuite(t, 10*time.Minute)
	s.f.refreshErrs = []error{temporal.NewApplicationErrorWithOptions("refresh: rate_limited (HTTP 429)", "RateLimited",
		temporal.ApplicationErrorOptions{NextRetryDelay: 40 * time.Second})}
	var calls []time.Time
	s.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == ActivityRefresh {
			calls = append(calls, s.env.Now())
		}
	})
	s.revokeAt(9 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.GreaterOrEqual(t, len(calls), 2)
	require.GreaterOrEqual(t, calls[1].Sub(calls[0]), 40*time.Second)
}

func TestDegradedLinkWaitsOutRetryAfter(t *testing.T) {
	s := newSuite(t, 10*time.Minute)
	limited := temporal.NewApplicationErrorWithOptions("refresh: rate_limited (HTTP 429)", "RateLimited",
		temporal.ApplicationErrorOptions{NextRetryDelay: 3 * time.Minute})
	// Every attempt of the first execution is rate limited: the link is
	// degraded, and its next attempt must wait for Retry-After, not for
	// the (shorter) backoff.
	s.f.refreshErrs = []error{limited, limited, limited, limited}
	var calls []time.Time
	s.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == ActivityRefresh {
			calls = append(calls, s.env.Now())
		}
	})
	var during State
	var rejected error
	// Attempts at ~8, 11, 14 and 17 minutes fail; the next is due at 20.
	s.at(18*time.Minute+30*time.Second, func() {
		during = s.state(t)
		// A caller asking for a fresh token meanwhile hears the error at
		// once instead of sending the provider another request.
		s.env.UpdateWorkflow(UpdateRefresh, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { rejected = err }, OnAccept: func() {},
			OnComplete: func(_ any, err error) { rejected = err },
		}, RefreshRequest{})
	})
	s.revokeAt(40 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, s.env.GetWorkflowError())
	require.GreaterOrEqual(t, len(calls), 5)
	for i := 1; i < 5; i++ {
		require.GreaterOrEqual(t, calls[i].Sub(calls[i-1]), 3*time.Minute, "attempt %d came early", i)
	}
	require.Equal(t, StatusDegraded, during.Status)
	require.Error(t, rejected)
	require.Contains(t, rejected.Error(), "429")
}

func TestFirstEnrollmentFailureFailsTheLink(t *testing.T) {
	s := newSuite(t, time.Hour)
	s.f.enrollErrs = []error{temporal.NewNonRetryableApplicationError("enroll: invalid_client", ErrTypePermanent, nil)}
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, s.env.GetWorkflowError())
	require.Equal(t, StatusFailed, s.f.statuses()[len(s.f.statuses())-1])
}

func TestContinueAsNewCarriesState(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	p := params(providers.GrantClientCredentials)
	p.MaxCyclesPerRun = 3
	s.env.ExecuteWorkflow(Link, p)
	err := s.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "want continue-as-new, got %v", err)
	var next LinkParams
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.State)
	require.Equal(t, StatusActive, next.State.Status)
	require.Equal(t, 3, next.State.Refreshes)
	require.Equal(t, 4, next.State.VaultVersion)
	require.Equal(t, p.LinkID, next.LinkID)

	// The next run picks up where the last left off: no enrollment.
	s2 := newSuite(t, 5*time.Minute)
	s2.f.version = next.State.VaultVersion
	s2.revokeAt(time.Minute)
	s2.env.ExecuteWorkflow(Link, next)
	require.NoError(t, s2.env.GetWorkflowError())
	require.Equal(t, 0, s2.f.enrolls)
	require.Equal(t, 1, s2.f.revokes)
}

func TestContinueAsNewKeepsPendingSignals(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	p := params(providers.GrantClientCredentials)
	p.MaxCyclesPerRun = 1
	// The revoke arrives while the run's last refresh is in flight, so it
	// is still unread when the workflow decides to continue as new: it
	// must be acted on, not lost.
	s.f.duringRefresh = func() { s.env.SignalWorkflow(SignalRevoke, RevokeRequest{Reason: "race"}) }
	s.env.ExecuteWorkflow(Link, p)
	require.NoError(t, s.env.GetWorkflowError(), "revoked instead of continuing as new")
	require.Equal(t, 1, s.f.revokes)
}

func TestWorkflowIDIsOnePerLink(t *testing.T) {
	require.Equal(t, "link/acme/lnk_1", WorkflowID("acme", "lnk_1"))
}

// TestFailedReauthorizationKeepsAWorkingGrant: a new consent for an active
// link whose exchange fails (the provider refuses the code, another
// end-user authorized) leaves the link active on the grant it has.
func TestFailedReauthorizationKeepsAWorkingGrant(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	var after State
	s.at(30*time.Second, func() { s.env.SignalWorkflow(SignalAuthorized, nil) })
	s.at(10*time.Minute, func() {
		s.f.mu.Lock()
		s.f.enrollErrs = []error{temporal.NewNonRetryableApplicationError("enroll: invalid_grant (code expired)", ErrTypeInvalidGrant, nil)}
		s.f.mu.Unlock()
		s.env.SignalWorkflow(SignalReauthorize, ReauthorizeRequest{})
	})
	s.at(30*time.Minute, func() { after = s.state(t) })
	s.revokeAt(31 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantAuthorizationCode))
	require.NoError(t, s.env.GetWorkflowError())
	require.Equal(t, StatusActive, after.Status)
	require.NotContains(t, s.f.statuses(), StatusReauthRequired)
	require.Zero(t, s.f.suspends, "the working token is still served")
	require.Greater(t, after.Refreshes, 3, "refreshing goes on with the grant it has")
	require.Contains(t, s.f.types(), "reauthorize_failed")
}

// TestEnrollmentIsLean: the Enroll activity writes the "enrolled" record
// and answers the webhook question itself, so enrollment runs no
// RecordTransition and no WebhookSubscribed activity; with the database
// down during Enroll, the workflow writes the record itself, once.
func TestEnrollmentIsLean(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dbDown  time.Duration // from the start
		records int           // RecordTransition activities by enrollment
	}{
		{"database up", 0, 0},
		{"database down during enrollment", 30 * time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSuite(t, time.Hour)
			start := s.env.Now()
			s.f.down = func(activity string, now time.Time) bool {
				return activity == ActivityRecord && now.Before(start.Add(tc.dbDown))
			}
			var calls, checks int
			var st State
			s.at(10*time.Minute, func() {
				s.f.mu.Lock()
				calls, checks = s.f.recordCalls, s.f.checkCalls
				s.f.mu.Unlock()
				st = s.state(t)
			})
			s.revokeAt(11 * time.Minute)
			s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
			require.NoError(t, s.env.GetWorkflowError())
			require.Equal(t, StatusActive, st.Status)
			require.Equal(t, tc.records, calls, "RecordTransition activities")
			require.Zero(t, checks, "WebhookSubscribed activities")
			recs := s.f.sortedRecords()
			require.Equal(t, "enrolled", recs[0].Type)
			require.Len(t, slices.DeleteFunc(slices.Clone(recs), func(r Transition) bool { return r.Type != "enrolled" }), 1)
			require.Equal(t, StatusActive, recs[0].State.Status)
			require.False(t, recs[0].State.NextRefreshAt.IsZero(), "the record says when the link refreshes")
			require.WithinDuration(t, st.NextRefreshAt, recs[0].State.NextRefreshAt, time.Second, "the same instant as the workflow's sleep")
		})
	}
}

// TestEnrollInputAcceptsABareLinkRef: runs that began before
// "lean-enroll" schedule Enroll with a LinkRef; the activity, which now
// takes an EnrollInput, must read it.
func TestEnrollInputAcceptsABareLinkRef(t *testing.T) {
	dc := converter.GetDefaultDataConverter()
	ref := LinkRef{TenantID: "acme", LinkID: "lnk_1", Provider: "peer", GrantType: providers.GrantClientCredentials}
	p, err := dc.ToPayload(ref)
	require.NoError(t, err)
	var in EnrollInput
	require.NoError(t, dc.FromPayload(p, &in))
	require.Equal(t, EnrollInput{LinkRef: ref}, in)
}

// TestRefreshAskedDuringEnrollmentWaitsForIt: a lean Enroll writes the
// links row as active before the workflow hears back, so a caller may ask
// for a refresh while the workflow still says pending; the request waits
// for the enrollment instead of being refused as pending.
func TestRefreshAskedDuringEnrollmentWaitsForIt(t *testing.T) {
	s := newSuite(t, time.Hour)
	start := s.env.Now()
	s.f.down = func(activity string, now time.Time) bool {
		return activity == ActivityEnroll && now.Before(start.Add(2*time.Minute))
	}
	var got RefreshResult
	var rejected, failed error
	s.at(time.Minute, func() {
		s.env.UpdateWorkflow(UpdateRefresh, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { rejected = err },
			OnAccept: func() {},
			OnComplete: func(v any, err error) {
				failed = err
				if r, ok := v.(RefreshResult); ok {
					got = r
				}
			},
		}, RefreshRequest{})
	})
	s.revokeAt(time.Hour)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, s.env.GetWorkflowError())
	require.NoError(t, rejected, "a refresh asked for during enrollment is not refused")
	require.NoError(t, failed)
	require.Positive(t, got.VaultVersion, "answered with a token once the link is enrolled")
}
