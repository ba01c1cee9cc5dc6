package workflows

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/providers"
)

// recordGate holds the audit record activities (RecordTransition and
// RecordTransitions) that pick chooses, until the test releases them.
type recordGate struct {
	pick func(activity string, ts []Transition) bool
	// entered is closed once the first chosen activity is held; first
	// says which it was.
	entered   chan struct{}
	first     heldRecord
	enterOnce sync.Once
	open      chan struct{}
	openOnce  sync.Once
	opened    atomic.Bool
	// timedOut: a record was let go because the test never released it.
	timedOut atomic.Bool
	// metWhileHeld: the condition of releaseWhen held before the release.
	metWhileHeld atomic.Bool
}

// heldRecord is a held record activity: its name and the sequence
// numbers of the transitions it writes.
type heldRecord struct {
	activity string
	seqs     []int64
}

// gateRecords registers s's record activities behind a new gate.
func gateRecords(t *testing.T, s *suite, pick func(activity string, ts []Transition) bool) *recordGate {
	g := &recordGate{pick: pick, entered: make(chan struct{}), open: make(chan struct{})}
	t.Cleanup(g.release)
	s.env.RegisterActivityWithOptions(func(ctx context.Context, tr Transition) error {
		if err := g.wait(ctx, ActivityRecord, []Transition{tr}); err != nil {
			return err
		}
		return s.f.RecordTransition(ctx, tr)
	}, activity.RegisterOptions{Name: ActivityRecord})
	s.env.RegisterActivityWithOptions(func(ctx context.Context, ts []Transition) error {
		if err := g.wait(ctx, ActivityRecordBatch, ts); err != nil {
			return err
		}
		for _, tr := range ts {
			if err := s.f.RecordTransition(ctx, tr); err != nil {
				return err
			}
		}
		return nil
	}, activity.RegisterOptions{Name: ActivityRecordBatch})
	return g
}

func (g *recordGate) wait(ctx context.Context, name string, ts []Transition) error {
	if !g.pick(name, ts) {
		return nil
	}
	g.enterOnce.Do(func() {
		g.first = heldRecord{activity: name, seqs: seqsOf(ts)}
		close(g.entered)
	})
	select {
	case <-g.open:
	case <-time.After(8 * time.Second):
		g.timedOut.Store(true)
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// held waits for the first record to be held and says which it is.
func (g *recordGate) held(t *testing.T) heldRecord {
	t.Helper()
	select {
	case <-g.entered:
		return g.first
	case <-time.After(2 * time.Second):
		require.FailNow(t, "no audit record activity was held")
		return heldRecord{}
	}
}

func (g *recordGate) release() {
	g.openOnce.Do(func() {
		g.opened.Store(true)
		close(g.open)
	})
}

// whenHeld runs fn on s's main loop once g holds a record. It does not
// block the main loop: the held activity needs it to start.
func whenHeld(t *testing.T, s *suite, g *recordGate, fn func(heldRecord)) {
	tries := 0
	var try func()
	try = func() {
		select {
		case <-g.entered:
			fn(g.first)
		default:
			tries++
			require.Less(t, tries, 1000, "no audit record activity was held")
			s.at(time.Millisecond, try)
		}
	}
	s.at(time.Nanosecond, try)
}

// releaseWhen releases the held records once cond holds (or after four
// seconds; metWhileHeld says which), polling from another goroutine.
// A nil cond releases them at once.
func (g *recordGate) releaseWhen(cond func() bool) {
	if cond == nil {
		g.release()
		return
	}
	go func() {
		defer g.release()
		for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if cond() {
				g.metWhileHeld.Store(true)
				return
			}
		}
	}()
}

func seqsOf(ts []Transition) []int64 {
	var out []int64
	for _, t := range ts {
		out = append(out, t.Seq)
	}
	return out
}

// counted reads one of f's counters under its lock.
func (f *fakeProvider) counted(n *int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *n
}

// answer is what a message got back: an update's result, or for a
// signal that it was sent.
type answer struct {
	mu    sync.Mutex
	done  bool
	err   error
	value any
}

func (a *answer) set(v any, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done, a.value, a.err = true, v, err
}

func (a *answer) get() (done bool, v any, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.done, a.value, a.err
}

func sendUpdate(name string, arg any) func(*suite, *answer) {
	return func(s *suite, a *answer) {
		s.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { a.set(nil, err) }, OnAccept: func() {},
			OnComplete: func(v any, err error) { a.set(v, err) },
		}, arg)
	}
}

func sendSignal(name string, arg any) func(*suite, *answer) {
	return func(s *suite, a *answer) {
		s.env.SignalWorkflow(name, arg)
		a.set(nil, nil)
	}
}

// boundaryMessage is one message the link workflow takes, and what
// "answered" or "acted on" means for it.
type boundaryMessage struct {
	name string
	send func(s *suite, a *answer)
	// endsLink: the message revokes the link. obtains: it makes the
	// link obtain a token at once (a refresh, an enrollment).
	endsLink, obtains bool
	// acted reports, from another goroutine, that the run that got the
	// message has acted on it; nil: nothing to watch.
	acted func(f *fakeProvider, a *answer) bool
	// check runs on the whole audit trail (both runs) once the link's
	// workflow is done.
	check func(t *testing.T, a *answer, recs []Transition)
}

// TestRunBoundaryStrandsNothing sends each message the link workflow
// takes (the refresh and revoke updates, and the revoke, authorized,
// reauthorize and denied signals) while a run is at its continue-as-new
// boundary, with the audit record activities in flight there held open:
//
//   - "to run 1": while run 1's last refresh is in flight, so that the
//     message reaches run 1 just before it decides to end (asserted: run 1
//     had not ended). The boundary must take it: answer the update, act on
//     the signal, in run 1 or by carrying it into run 2.
//   - "to run 2": after run 1 ended with the record of its last refresh
//     still held, so that the server routes the message to run 2, which
//     gets it while it writes that carried record (RecordTransitions,
//     held: asserted, with the sequence number it carries). Run 2 must act
//     on it at once, without waiting for the audit trail.
//
// Every update must be answered, every signal acted on, the held record
// must reach the audit trail (seq 1..N, no gap), and the link must go on
// refreshing on schedule in run 2: its first refresh when run 1 scheduled
// it (or at the boundary, when the message asks for a token), then one
// every lifetime minus the margin, none missed, until the test revokes
// it. A revoke ends the link at the boundary, with no refresh after it.
//
// Before the boundary stopped waiting for the audit trail, an update
// accepted during that wait waited forever for a run that had ended (the
// workflow hung: no timer, no refresh), and a signal sent then was dropped.
func TestRunBoundaryStrandsNothing(t *testing.T) {
	revoked := func(reason string) func(*testing.T, *answer, []Transition) {
		return func(t *testing.T, _ *answer, recs []Transition) {
			last := recs[len(recs)-1]
			require.Equal(t, "revoked", last.Type)
			require.Equal(t, reason, last.Detail, "revoked by the message, not by the test's own revoke later")
		}
	}
	reauthorized := func(t *testing.T, _ *answer, recs []Transition) {
		require.Len(t, slices.DeleteFunc(slices.Clone(recs), func(r Transition) bool { return r.Type != "reauthorized" }), 1,
			"the signal was acted on: one re-enrollment (types %v)", types(recs))
		revoked("test")(t, nil, recs)
	}
	enrolled := func(f *fakeProvider, _ *answer) bool { return f.counted(&f.enrolls) > 0 }
	revoking := func(f *fakeProvider, _ *answer) bool { return f.counted(&f.revokes) > 0 }
	answered := func(_ *fakeProvider, a *answer) bool { done, _, _ := a.get(); return done }
	messages := []boundaryMessage{
		{name: "refresh update", send: sendUpdate(UpdateRefresh, RefreshRequest{}), obtains: true, acted: answered,
			check: func(t *testing.T, a *answer, recs []Transition) {
				done, v, err := a.get()
				require.True(t, done, "the refresh update was never answered")
				require.NoError(t, err)
				require.True(t, v.(RefreshResult).Refreshed)
				revoked("test")(t, a, recs)
			}},
		// The caller already saw the token the refresh in flight stores
		// (run 1 enrolls version 1 and refreshes to version 2) and wants
		// a newer one: that refresh cannot answer it, the boundary must
		// make another.
		{name: "refresh update past the token in flight", send: sendUpdate(UpdateRefresh, RefreshRequest{SeenVersion: 2}),
			obtains: true, acted: answered,
			check: func(t *testing.T, a *answer, recs []Transition) {
				done, v, err := a.get()
				require.True(t, done, "the refresh update was never answered")
				require.NoError(t, err)
				require.Greater(t, v.(RefreshResult).VaultVersion, 2, "answered with a token newer than the one it saw")
				revoked("test")(t, a, recs)
			}},
		{name: "revoke update", send: sendUpdate(UpdateRevoke, RevokeRequest{Reason: "boundary"}), endsLink: true, acted: revoking,
			check: func(t *testing.T, a *answer, recs []Transition) {
				done, v, err := a.get()
				require.True(t, done, "the revoke update was never answered")
				require.NoError(t, err)
				require.Equal(t, StatusRevoked, v.(State).Status)
				revoked("boundary")(t, a, recs)
			}},
		{name: "revoke signal", send: sendSignal(SignalRevoke, RevokeRequest{Reason: "boundary"}), endsLink: true,
			acted: revoking, check: revoked("boundary")},
		{name: "reauthorize signal", send: sendSignal(SignalReauthorize, ReauthorizeRequest{}), obtains: true,
			acted: enrolled, check: reauthorized},
		{name: "authorized signal", send: sendSignal(SignalAuthorized, nil), obtains: true,
			acted: enrolled, check: reauthorized},
		// A refusal matters only to a link waiting for its first consent:
		// this one must hear it and carry on.
		{name: "denied signal", send: sendSignal(SignalDenied, DeniedRequest{Error: "access_denied"}),
			check: func(t *testing.T, a *answer, recs []Transition) {
				for _, r := range recs {
					require.NotEqual(t, "authorization_denied", r.Type)
					require.NotEqual(t, StatusFailed, r.To)
				}
				revoked("test")(t, a, recs)
			}},
	}
	for _, toRun1 := range []bool{true, false} {
		for _, m := range messages {
			name := m.name + " to run 2"
			if toRun1 {
				name = m.name + " to run 1"
			}
			t.Run(name, func(t *testing.T) { testBoundaryMessage(t, m, toRun1) })
		}
	}
}

func types(recs []Transition) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Type)
	}
	return out
}

func testBoundaryMessage(t *testing.T, m boundaryMessage, toRun1 bool) {
	const lifetime = 5 * time.Minute
	var got answer

	// Run 1: enroll, one refresh, boundary (MaxCyclesPerRun 1). The
	// record of that refresh is the audit record in flight at the
	// boundary: held.
	s1 := newSuite(t, lifetime)
	s1.env.SetTestTimeout(15 * time.Second)
	g1 := gateRecords(t, s1, func(name string, ts []Transition) bool {
		return name == ActivityRecord && ts[0].Type == "refreshed"
	})
	sentToRun1, run1Ended := false, false
	if toRun1 {
		s1.f.duringRefresh = func() {
			if s1.f.refreshes == 1 {
				sentToRun1, run1Ended = true, s1.env.IsWorkflowCompleted()
				m.send(s1, &got)
			}
		}
		if m.endsLink {
			// The revoke waits for the audit trail, held record
			// included: release it once the revoke is under way.
			g1.releaseWhen(func() bool { return m.acted(s1.f, &got) })
		}
	}
	p := params(providers.GrantClientCredentials)
	p.MaxCyclesPerRun = 1
	s1.env.ExecuteWorkflow(Link, p)
	if toRun1 {
		require.True(t, sentToRun1, "the message was never sent: run 1 made no refresh")
		require.False(t, run1Ended, "run 1 had ended when the message was sent")
		done, _, _ := got.get()
		require.True(t, done, "the update sent to run 1 was never answered: run 1 ended without it (%v)", s1.env.GetWorkflowError())
	}
	require.False(t, g1.timedOut.Load(), "run 1 waited for its held audit record")
	if toRun1 && m.endsLink {
		// Run 1 took the revoke at its boundary: the link ends there.
		require.NoError(t, s1.env.GetWorkflowError(), "run 1 must end revoked, not continue as new")
		require.True(t, g1.metWhileHeld.Load(), "run 1 did not act on the revoke while its last record was held")
		require.Equal(t, 1, s1.f.refreshes, "no refresh after the revoke")
		m.check(t, &got, wholeAuditTrail(t, s1.f))
		return
	}
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(s1.env.GetWorkflowError(), &can), "run 1 must continue as new, got %v", s1.env.GetWorkflowError())
	var next LinkParams
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	held1 := g1.held(t)
	require.Equal(t, ActivityRecord, held1.activity)
	require.Len(t, held1.seqs, 1)
	require.False(t, g1.opened.Load(), "run 1 ended while the record of its last refresh was held")
	require.Contains(t, seqsOf(next.Unrecorded), held1.seqs[0], "the held record is carried into run 2")
	if toRun1 {
		g1.release()
	}

	// Run 2 starts as run 1 ends, with the carried state; its first
	// audit activity writes the records run 1 carried (held).
	s2 := newSuite(t, lifetime)
	s2.env.SetTestTimeout(15 * time.Second)
	boundary := s1.env.Now()
	s2.env.SetStartTime(boundary)
	s2.f.version = next.State.VaultVersion
	next.MaxCyclesPerRun = 1000
	starts := recordStarts(s2)
	g2 := gateRecords(t, s2, func(name string, _ []Transition) bool { return !toRun1 && name == ActivityRecordBatch })
	sent := false
	if !toRun1 {
		// Right after run 2's first workflow task: the message the
		// server routed to run 2 while the boundary's records are held.
		whenHeld(t, s2, g2, func(held2 heldRecord) {
			require.Equal(t, ActivityRecordBatch, held2.activity, "run 2 writes the carried records in one activity")
			require.Contains(t, held2.seqs, held1.seqs[0], "the record run 1 carried is in flight")
			require.True(t, s1.env.IsWorkflowCompleted(), "run 1 has ended")
			require.False(t, g1.opened.Load(), "run 1's own write of the record is still held")
			sent = true
			m.send(s2, &got)
			g1.release()
			var acted func() bool
			if m.acted != nil {
				acted = func() bool { return m.acted(s2.f, &got) }
			}
			g2.releaseWhen(acted)
		})
	}
	if !m.endsLink {
		s2.revokeAt(30 * time.Minute)
	}
	s2.env.ExecuteWorkflow(Link, next)
	require.NoError(t, s2.env.GetWorkflowError())
	if !toRun1 {
		require.True(t, sent, "the message was never sent")
		if m.acted != nil {
			require.True(t, g2.metWhileHeld.Load(), "run 2 did not act on the message while the carried record was held")
		}
	}
	require.False(t, g2.timedOut.Load(), "run 2 waited for its held audit record")
	m.check(t, &got, wholeAuditTrail(t, s1.f, s2.f))

	refreshes := starts.times(ActivityRefresh)
	if m.endsLink {
		require.Empty(t, refreshes, "no refresh after the revoke")
		recs := s2.f.sortedRecords()
		require.WithinDuration(t, boundary, recs[len(recs)-1].At, time.Second, "revoked at the boundary")
		return
	}
	// Run 2 refreshes on schedule: every token obtained (Refresh or
	// Enroll) is obtained when due, none missed, until the revoke at
	// 30 minutes.
	obtained := slices.Concat(refreshes, starts.times(ActivityEnroll))
	slices.SortFunc(obtained, func(a, b time.Time) int { return a.Compare(b) })
	prev, due := next.State.ObtainedAt, next.State.NextRefreshAt
	if m.obtains && !toRun1 {
		require.NotEmpty(t, obtained)
		require.WithinDuration(t, boundary, obtained[0], time.Second, "the message is served at the boundary")
		prev, due, obtained = obtained[0], time.Time{}, obtained[1:]
	}
	// 5-minute tokens, margin 60 s plus a jitter of up to 10 %.
	early, late := lifetime-66*time.Second-time.Second, lifetime-60*time.Second+time.Second
	for i, at := range obtained {
		if !due.IsZero() {
			require.WithinDuration(t, due, at, time.Second, "refresh %d of run 2 when run 1 scheduled it", i+1)
			due = time.Time{}
		}
		require.GreaterOrEqual(t, at.Sub(prev), early, "refresh %d of run 2 came early", i+1)
		require.LessOrEqual(t, at.Sub(prev), late, "refresh %d of run 2 came late", i+1)
		prev = at
	}
	require.Less(t, boundary.Add(30*time.Minute).Sub(prev), late, "no refresh missed before the revoke")
	require.GreaterOrEqual(t, len(refreshes), 7, "run 2 refreshes on schedule for 30 minutes")
}

// wholeAuditTrail is the audit trail of the fakes' runs, each transition
// once, checked for gaps: seq 1..N.
func wholeAuditTrail(t *testing.T, fs ...*fakeProvider) []Transition {
	t.Helper()
	bySeq := map[int64]Transition{}
	for _, f := range fs {
		for _, r := range f.sortedRecords() {
			bySeq[r.Seq] = r
		}
	}
	var last int64
	for seq := range bySeq {
		last = max(last, seq)
	}
	var recs []Transition
	for i := int64(1); i <= last; i++ {
		r, ok := bySeq[i]
		require.True(t, ok, "audit record %d of %d missing", i, last)
		recs = append(recs, r)
	}
	return recs
}
