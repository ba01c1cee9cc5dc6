package workflows

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/providers"
)

// downFor makes activity name fail transiently for d of test time from
// the start.
func (s *suite) downFor(name string, d time.Duration) {
	start := s.env.Now()
	prev := s.f.down
	s.f.down = func(a string, now time.Time) bool {
		return (a == name && now.Before(start.Add(d))) || (prev != nil && prev(a, now))
	}
}

func (s *suite) lastRecord(t *testing.T) Transition {
	t.Helper()
	recs := s.f.sortedRecords()
	require.NotEmpty(t, recs)
	return recs[len(recs)-1]
}

// TestCancellationRevokes: "Request Cancellation" in the Temporal UI
// revokes the link and ends the workflow as cancelled, whatever the link
// was doing. Before the rule, a cancelled context turned the sleep loop
// (and the consent wait) into a spin of failing workflow tasks.
//
// Each row brings the link into one state, checks that it is there, and
// cancels: the run must end cancelled (not time out, not panic, not fail),
// with exactly one Revoke activity that wiped the secrets and "revoked" as
// the last audit record.
func TestCancellationRevokes(t *testing.T) {
	invalidGrant := temporal.NewNonRetryableApplicationError("refresh: invalid_grant", ErrTypeInvalidGrant, nil)
	for _, tc := range []struct {
		name  string
		grant string
		// setup runs before the workflow starts; cancelAt is when the
		// test cancels (zero: setup arranges the cancellation itself).
		setup    func(t *testing.T, s *suite, started *activityStarts)
		cancelAt time.Duration
		// want is the link's status just before the cancellation, then
		// what else must hold (nil: nothing).
		want  Status
		check func(t *testing.T, s *suite, starts *activityStarts)
	}{
		{name: "active", grant: providers.GrantClientCredentials, cancelAt: 7 * time.Minute, want: StatusActive},
		{name: "waiting for consent", grant: providers.GrantAuthorizationCode, cancelAt: 7 * time.Minute,
			want: StatusPendingAuthorization,
			check: func(t *testing.T, s *suite, _ *activityStarts) {
				require.Zero(t, s.f.enrolls, "no consent came")
			}},
		{name: "reauth_required", grant: providers.GrantPassword, cancelAt: 10 * time.Minute, want: StatusReauthRequired,
			setup: func(t *testing.T, s *suite, _ *activityStarts) { s.f.refreshErrs = []error{invalidGrant} },
			check: func(t *testing.T, s *suite, _ *activityStarts) {
				require.Equal(t, 1, s.f.suspends, "the token was suspended before the cancellation")
			}},
		{name: "degraded, provider failing", grant: providers.GrantClientCredentials, cancelAt: 10 * time.Minute,
			want: StatusDegraded,
			setup: func(t *testing.T, s *suite, _ *activityStarts) {
				for range 1000 {
					s.f.refreshErrs = append(s.f.refreshErrs, transient)
				}
			},
			check: func(t *testing.T, s *suite, starts *activityStarts) {
				require.GreaterOrEqual(t, starts.count(ActivityRefresh), 8, "the provider kept failing until the cancellation")
			}},
		{name: "device flow polling", grant: providers.GrantDeviceCode, cancelAt: 2 * time.Minute,
			want:  StatusPendingAuthorization,
			setup: func(t *testing.T, s *suite, _ *activityStarts) { s.f.pendingPoll = 1 << 20 },
			check: func(t *testing.T, s *suite, starts *activityStarts) {
				require.GreaterOrEqual(t, starts.count(ActivityPollDevice), 10, "polling until the cancellation")
				require.Zero(t, s.f.enrolls)
			}},
		{name: "refresh activity in flight", grant: providers.GrantClientCredentials, want: StatusActive,
			setup: func(t *testing.T, s *suite, _ *activityStarts) {
				// The second refresh (about 8 minutes in): the
				// cancellation arrives while the activity runs.
				s.f.duringRefresh = func() {
					if s.f.refreshes == 2 {
						s.env.CancelWorkflow()
					}
				}
			},
			check: func(t *testing.T, s *suite, starts *activityStarts) {
				require.Equal(t, 2, starts.count(ActivityRefresh), "cancelled during the second refresh, none after")
			}},
		{name: "enrollment retrying after transient failures", grant: providers.GrantClientCredentials,
			cancelAt: 90 * time.Second, want: "",
			setup: func(t *testing.T, s *suite, _ *activityStarts) { s.downFor(ActivityEnroll, 24*time.Hour) },
			check: func(t *testing.T, s *suite, starts *activityStarts) {
				require.GreaterOrEqual(t, starts.count(ActivityEnroll), 4, "Enroll was retrying when cancelled")
				require.Zero(t, s.f.enrolls, "no enrollment got through")
			}},
		{name: "suspend blocked, Vault failing, within its grace", grant: providers.GrantPassword, want: StatusActive,
			setup: func(t *testing.T, s *suite, starts *activityStarts) {
				s.f.refreshErrs = []error{invalidGrant}
				s.downFor(ActivitySuspend, 24*time.Hour)
				// The second attempt starts a second after the first:
				// the link has not said reauth_required yet (it does
				// after its grace of a few seconds).
				starts.then = func(name string, n int) {
					if name == ActivitySuspend && n == 2 {
						s.env.CancelWorkflow()
					}
				}
			},
			check: func(t *testing.T, s *suite, starts *activityStarts) {
				require.Equal(t, 2, starts.count(ActivitySuspend), "cancelled as Suspend retried")
				require.Zero(t, s.f.suspends, "Vault never took the suspend")
			}},
		{name: "suspend blocked, Vault failing", grant: providers.GrantPassword, cancelAt: 6 * time.Minute,
			want: StatusReauthRequired,
			setup: func(t *testing.T, s *suite, _ *activityStarts) {
				s.f.refreshErrs = []error{invalidGrant}
				s.downFor(ActivitySuspend, 24*time.Hour)
			},
			check: func(t *testing.T, s *suite, starts *activityStarts) {
				require.GreaterOrEqual(t, starts.count(ActivitySuspend), 4, "Suspend was retrying when cancelled")
				require.Zero(t, s.f.suspends, "Vault never took the suspend")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSuite(t, 5*time.Minute)
			s.env.SetTestTimeout(10 * time.Second)
			starts := recordStarts(s)
			if tc.setup != nil {
				tc.setup(t, s, starts)
			}
			var before *State
			if tc.cancelAt > 0 {
				s.at(tc.cancelAt, func() {
					st := s.state(t)
					before = &st
					s.env.CancelWorkflow()
				})
			}
			start := s.env.Now()
			s.env.ExecuteWorkflow(Link, params(tc.grant))
			require.True(t, s.env.IsWorkflowCompleted())
			require.Less(t, s.env.Now().Sub(start), 24*time.Hour,
				"the run never ended after the cancellation: it sat blocked until the test environment's run timeout (%v)", s.env.GetWorkflowError())
			require.True(t, temporal.IsCanceledError(s.env.GetWorkflowError()), "want cancelled, got %v", s.env.GetWorkflowError())
			if tc.cancelAt > 0 {
				require.NotNil(t, before, "the cancellation never came")
				require.Equal(t, tc.want, before.Status, "status when cancelled (last error %q)", before.LastError)
			}
			require.Equal(t, 1, starts.count(ActivityRevoke), "one Revoke activity")
			require.Equal(t, 1, s.f.wiped, "cancellation wipes the secrets, once")
			last := s.lastRecord(t)
			require.Equal(t, "revoked", last.Type)
			require.Equal(t, StatusRevoked, last.To)
			require.Contains(t, last.Detail, "cancelled")
			if tc.check != nil {
				tc.check(t, s, starts)
			}
		})
	}
}

// activityStarts counts activity attempts by name.
type activityStarts struct {
	mu sync.Mutex
	n  map[string]int
	at map[string][]time.Time
	// then, if set, runs as attempt n of activity name starts.
	then func(name string, n int)
}

// recordStarts counts the activity attempts of s's workflow.
func recordStarts(s *suite) *activityStarts {
	a := &activityStarts{n: map[string]int{}, at: map[string][]time.Time{}}
	s.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.n[info.ActivityType.Name]++
		a.at[info.ActivityType.Name] = append(a.at[info.ActivityType.Name], s.env.Now())
		if a.then != nil {
			a.then(info.ActivityType.Name, a.n[info.ActivityType.Name])
		}
	})
	return a
}

func (a *activityStarts) count(name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[name]
}

func (a *activityStarts) times(name string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.at[name])
}

// TestDeviceSlowDownIsCumulative: every slow_down adds 5 s to the interval
// of all later polls (RFC 8628 section 3.5), not just the next one.
func TestDeviceSlowDownIsCumulative(t *testing.T) {
	s := newSuite(t, time.Hour)
	s.f.pendingPoll = 6
	s.f.slowDownAt = map[int]bool{2: true, 4: true}
	s.revokeAt(time.Hour)
	s.env.ExecuteWorkflow(Link, params(providers.GrantDeviceCode))
	require.NoError(t, s.env.GetWorkflowError())
	require.Len(t, s.f.pollTimes, 7)
	want := []time.Duration{5, 10, 10, 15, 15, 15}
	for i, w := range want {
		require.Equal(t, w*time.Second, s.f.pollTimes[i+1].Sub(s.f.pollTimes[i]), "interval after poll %d", i+1)
	}
}

// TestEnrollmentRidesOutTransientFailures: a provider answering 5xx for a
// while during enrollment, or during a re-enrollment, delays the link; it
// does not end it. Before, an enrollment gave up after four attempts
// (about 7 s) and the link failed; a re-enrollment left it in
// reauth_required.
func TestEnrollmentRidesOutTransientFailures(t *testing.T) {
	t.Run("enroll", func(t *testing.T) {
		s := newSuite(t, 5*time.Minute)
		s.downFor(ActivityEnroll, 30*time.Second)
		var st State
		s.at(2*time.Minute, func() { st = s.state(t) })
		s.revokeAt(3 * time.Minute)
		s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
		require.NoError(t, s.env.GetWorkflowError())
		require.Equal(t, StatusActive, st.Status, st.LastError)
		require.NotContains(t, s.f.statuses(), StatusFailed)
	})
	t.Run("re-enroll", func(t *testing.T) {
		s := newSuite(t, 5*time.Minute)
		s.f.refreshErrs = []error{temporal.NewNonRetryableApplicationError("refresh: invalid_grant", ErrTypeInvalidGrant, nil)}
		var before, after State
		s.at(10*time.Minute, func() {
			before = s.state(t)
			s.downFor(ActivityEnroll, 30*time.Second)
			s.env.SignalWorkflow(SignalReauthorize, ReauthorizeRequest{})
		})
		s.at(12*time.Minute, func() { after = s.state(t) })
		s.revokeAt(13 * time.Minute)
		s.env.ExecuteWorkflow(Link, params(providers.GrantPassword))
		require.NoError(t, s.env.GetWorkflowError())
		require.Equal(t, StatusReauthRequired, before.Status)
		require.Equal(t, StatusActive, after.Status, after.LastError)
	})
}

// TestSuspendAndWipeAreRetriedUntilDone: with Vault unreachable for three
// minutes, the access token of a rejected grant is still cleared and a
// revoked link's secrets still wiped, once Vault is back. Before, each got
// four attempts (about 7 s) and then the link said reauth_required or
// revoked while its token stayed in Vault for the gateway to serve.
func TestSuspendAndWipeAreRetriedUntilDone(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	s.f.refreshErrs = []error{temporal.NewNonRetryableApplicationError("refresh: invalid_grant", ErrTypeInvalidGrant, nil)}
	var parked State
	// Three minutes: the test suite caps "unlimited" retries at ten
	// attempts, about four minutes of backoff.
	s.at(3*time.Minute, func() { s.downFor(ActivitySuspend, 3*time.Minute) })
	s.at(5*time.Minute, func() { parked = s.state(t) })

	s.at(20*time.Minute, func() {
		s.downFor(ActivityRevoke, 3*time.Minute)
		s.env.SignalWorkflow(SignalRevoke, RevokeRequest{Reason: "test"})
	})
	s.env.ExecuteWorkflow(Link, params(providers.GrantPassword))
	require.NoError(t, s.env.GetWorkflowError())
	require.Equal(t, StatusReauthRequired, parked.Status, "callers hear reauth_required while the suspend retries")
	require.Equal(t, 1, s.f.suspends, "the access token was cleared once Vault was back")
	require.Equal(t, 1, s.f.wiped, "the secrets were wiped once Vault was back")
	require.Equal(t, StatusRevoked, s.lastRecord(t).To)
}

// TestAuditOutageNeverDelaysTheBoundary: with the audit trail unwritable
// (PostgreSQL down) the run still continues as new on schedule, carrying
// the records it could not write; the next run writes them, and the audit
// trail is whole. Before, the boundary waited for the database: no timer,
// no refresh, until it came back.
func TestAuditOutageNeverDelaysTheBoundary(t *testing.T) {
	s1 := newSuite(t, 5*time.Minute)
	s1.env.SetTestTimeout(10 * time.Second)
	s1.downFor(ActivityRecord, 24*time.Hour)
	p := params(providers.GrantClientCredentials)
	p.MaxCyclesPerRun = 2
	s1.env.ExecuteWorkflow(Link, p)
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(s1.env.GetWorkflowError(), &can), "want continue-as-new, got %v", s1.env.GetWorkflowError())
	var next LinkParams
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 2, next.State.Refreshes, "both refreshes ran during the outage")
	require.Empty(t, s1.f.records)
	require.Len(t, next.Unrecorded, int(next.State.Seq), "every transition carried")

	s2 := newSuite(t, 5*time.Minute)
	s2.f.version = next.State.VaultVersion
	batches := 0
	s2.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == ActivityRecordBatch {
			batches++
		}
	})
	s2.revokeAt(time.Minute)
	s2.env.ExecuteWorkflow(Link, next)
	require.NoError(t, s2.env.GetWorkflowError())
	require.Equal(t, 1, batches, "the carried records go in one activity, not one each")
	recs := s2.f.sortedRecords()
	for i, r := range recs {
		require.Equal(t, int64(i+1), r.Seq, "audit trail seq 1..N, no gap, no duplicate")
	}
	require.Equal(t, StatusRevoked, recs[len(recs)-1].To)
}
