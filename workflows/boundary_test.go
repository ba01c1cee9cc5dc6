package workflows

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/providers"
)

// heldRecords makes RecordTransition block, for transitions that hold
// says, until release is closed or a real-time limit passes; while the
// first one is held, during runs once.
type heldRecords struct {
	f       *fakeProvider
	hold    func(Transition) bool
	release chan struct{}
	during  func()
	once    sync.Once
}

func (h *heldRecords) RecordTransition(ctx context.Context, t Transition) error {
	if h.hold(t) {
		h.once.Do(func() {
			if h.during != nil {
				h.during()
			}
		})
		select {
		case <-h.release:
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.f.RecordTransition(ctx, t)
}

func holdRecords(s *suite, hold func(Transition) bool) *heldRecords {
	h := &heldRecords{f: s.f, hold: hold, release: make(chan struct{})}
	s.env.RegisterActivityWithOptions(h.RecordTransition, activity.RegisterOptions{Name: ActivityRecord})
	return h
}

// boundaryMessage is one message sent at a run boundary, and what
// "acted on" means for it.
type boundaryMessage struct {
	name  string
	send  func(t *testing.T, s *suite, answered *error, done *bool)
	check func(t *testing.T, s2 *suite, answered error, done bool)
}

func sendRefresh(t *testing.T, s *suite, answered *error, done *bool) {
	s.env.UpdateWorkflow(UpdateRefresh, "", &testsuite.TestUpdateCallback{
		OnReject: func(err error) { *answered, *done = err, true }, OnAccept: func() {},
		OnComplete: func(_ any, err error) { *answered, *done = err, true },
	}, RefreshRequest{})
}

func sendSignal(name string, arg any) func(*testing.T, *suite, *error, *bool) {
	return func(t *testing.T, s *suite, _ *error, done *bool) {
		s.env.SignalWorkflow(name, arg)
		*done = true
	}
}

// TestRunBoundaryStrandsNothing holds the audit record of a run's last
// refresh open while the run reaches its continue-as-new boundary, and
// sends a message then: the refresh update, or one of the signals. Each is
// sent once, to whichever run is current (as the server routes it), and
// must be answered or acted on; the held record must still reach the audit
// trail; and the next run must keep refreshing on schedule.
//
// Before the boundary stopped waiting for the audit trail, the update
// waited forever for a run that had ended (the workflow hung: no timer, no
// refresh) and a signal sent during the wait was dropped.
func TestRunBoundaryStrandsNothing(t *testing.T) {
	for _, m := range []boundaryMessage{
		{name: "refresh update", send: sendRefresh, check: func(t *testing.T, s2 *suite, answered error, done bool) {
			require.True(t, done, "the refresh update was never answered")
			require.NoError(t, answered)
		}},
		{name: "revoke signal", send: sendSignal(SignalRevoke, RevokeRequest{Reason: "boundary"}),
			check: func(t *testing.T, s2 *suite, _ error, _ bool) {
				recs := s2.f.sortedRecords()
				last := recs[len(recs)-1]
				require.Equal(t, "revoked", last.Type)
				require.Equal(t, "boundary", last.Detail, "the revoke signal was lost (revoked later by the test's own revoke)")
			}},
		{name: "reauthorize signal", send: sendSignal(SignalReauthorize, ReauthorizeRequest{}),
			check: func(t *testing.T, s2 *suite, _ error, _ bool) {
				require.Equal(t, 1, s2.f.enrolls, "the reauthorize signal was lost")
			}},
		{name: "authorized signal", send: sendSignal(SignalAuthorized, nil),
			check: func(t *testing.T, s2 *suite, _ error, _ bool) {
				require.Equal(t, 1, s2.f.enrolls, "the authorized signal was lost")
			}},
	} {
		t.Run(m.name, func(t *testing.T) { testBoundaryMessage(t, m) })
	}
}

func testBoundaryMessage(t *testing.T, m boundaryMessage) {
	var answered error
	sent, done := false, false
	held := func(tr Transition) bool { return tr.Type == "refreshed" }

	// Run 1: enroll, one refresh, boundary (MaxCyclesPerRun 1), with the
	// record of that refresh held open.
	s1 := newSuite(t, 5*time.Minute)
	s1.env.SetTestTimeout(15 * time.Second)
	h1 := holdRecords(s1, held)
	h1.during = func() {
		// "Then": while the record is held and run 1 is still the
		// current run. A run that has ended gets nothing (the server
		// routes later messages to the next run).
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && !s1.env.IsWorkflowCompleted(); {
			time.Sleep(10 * time.Millisecond)
		}
		if !s1.env.IsWorkflowCompleted() {
			sent = true
			m.send(t, s1, &answered, &done)
		}
	}
	p := params(providers.GrantClientCredentials)
	p.MaxCyclesPerRun = 1
	s1.env.ExecuteWorkflow(Link, p)
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(s1.env.GetWorkflowError(), &can), "run 1 must continue as new, got %v", s1.env.GetWorkflowError())
	var next LinkParams
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))

	// Run 2, with the carried state; the message goes here unless run 1
	// already took it.
	s2 := newSuite(t, 5*time.Minute)
	s2.env.SetTestTimeout(15 * time.Second)
	s2.f.version = next.State.VaultVersion
	h2 := holdRecords(s2, held)
	h2.during = func() {
		if !sent {
			sent = true
			m.send(t, s2, &answered, &done)
		}
		close(h2.release)
	}
	next.MaxCyclesPerRun = 1000
	s2.revokeAt(30 * time.Minute)
	s2.env.ExecuteWorkflow(Link, next)
	require.NoError(t, s2.env.GetWorkflowError())
	require.True(t, sent, "the message was never sent: no record was held")
	m.check(t, s2, answered, done)

	// The audit trail is whole across both runs: seq 1..N, no gap.
	seqs := map[int64]bool{}
	for _, f := range []*fakeProvider{s1.f, s2.f} {
		for _, r := range f.sortedRecords() {
			seqs[r.Seq] = true
		}
	}
	var maxSeq int64
	for s := range seqs {
		maxSeq = max(maxSeq, s)
	}
	for i := int64(1); i <= maxSeq; i++ {
		require.True(t, seqs[i], "audit record %d of %d missing", i, maxSeq)
	}
	if m.name == "refresh update" {
		// Run 2 keeps the schedule: 5-minute tokens for 30 minutes.
		require.GreaterOrEqual(t, s2.f.refreshes, 6, "run 2 refreshes on schedule")
	}
}
