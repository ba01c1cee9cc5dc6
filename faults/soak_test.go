package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/worker"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// soakCyclesPerRun is the soak's continue-as-new period: two refresh
// cycles, so that links cross many run boundaries in minutes.
const soakCyclesPerRun = 2

// soakHistoryBound is the most events a run of a soaked link may have.
// A run of two cycles takes about 60 events (enrollment or carried state,
// two refreshes with their transitions, timers and search attributes);
// the rest is room for what an outage adds: audit records carried in from
// a run that could not write them (3 events each, about 4 per cycle),
// forced refreshes and degraded retries. A history that keeps growing
// past it would mean a run that never ends.
const soakHistoryBound = 400

// TestSoak runs links with short tokens through many run boundaries while
// everything around them fails once: PostgreSQL down, Vault restarted,
// the Temporal server restarted, and the worker stopped and started twice
// as a rolling deploy does (gracefully, what SIGTERM triggers in
// `tokenwarden worker`). Callers read tokens and force refreshes
// throughout, and the OAuth server rotates refresh tokens and revokes a
// grant on any reuse. Afterwards: no link lost, no refresh token
// replayed, refreshes at the server = refreshes the links count, every
// audit trail whole, every run's history within soakHistoryBound.
// `make soak` (part of `make faults`) runs 50 links through at least five
// boundaries each; `make test` a short version.
func TestSoak(t *testing.T) {
	t.Parallel()
	n := pick(6, 50)
	boundaries := pick(3, 5)
	r := newPrivateRig(t)
	r.maxCycles = soakCyclesPerRun
	rec := &row{Fault: "8 soak: outages and restarts across run boundaries", Links: n}
	record(t, rec)
	ctx, cancel := context.WithTimeout(context.Background(), pick(8*time.Minute, 25*time.Minute))
	defer cancel()
	w := r.drainingWorker()
	defer func() { w.Stop() }()
	ids := r.activeLinks(ctx, n)

	rd := newReader(r.Gateway, r.APIKey, ids, 300*time.Millisecond)
	rctx, stopLoad := context.WithCancel(ctx)
	wait := rd.run(rctx, 2)
	forced := r.forceRefreshes(rctx, ids, 2*time.Second)
	rd.warm(t)

	outage := pick(10*time.Second, 45*time.Second)
	step := func(what string, fn func() error) {
		if err := fn(); err != nil {
			t.Fatalf("soak: %s: %v", what, err)
		}
		t.Logf("soak: %s", what)
	}
	restart := func(ctx context.Context, stop func() error, start func(context.Context) error) func() error {
		return func() error {
			if err := stop(); err != nil {
				return err
			}
			time.Sleep(outage) // the outage is the scenario
			sctx, scancel := context.WithTimeout(ctx, 3*time.Minute)
			defer scancel()
			return start(sctx)
		}
	}
	step("PostgreSQL down and back", restart(ctx, r.stack.StopPostgres, r.stack.StartPostgres))
	step("worker stopped and started (rolling deploy)", func() error { w.Stop(); w = r.drainingWorker(); return nil })
	step("Vault restarted", restart(ctx, r.stack.StopVault, r.stack.StartVault))
	step("worker stopped and started again", func() error { w.Stop(); w = r.drainingWorker(); return nil })
	step("Temporal restarted", restart(ctx, r.stack.StopTemporal, r.stack.StartTemporal))

	for _, id := range ids {
		r.waitFor(ctx, id, fmt.Sprintf("past %d run boundaries", boundaries), pick(4*time.Minute, 12*time.Minute), func(st workflows.State) bool {
			return st.Runs >= boundaries && st.Status == workflows.StatusActive
		})
	}
	stopLoad()
	wait()
	forcedOK, forcedErr := forced()

	lost := r.lost(ctx, ids) + noBadStatus(t, r.states(ctx, ids))
	_, rejected := r.refreshErrors(ctx)
	peer, counted, agree := r.countsAgree(ctx, ids)
	if !agree {
		t.Errorf("the peer answered %d refreshes, the links count %d", peer, counted)
	}
	gaps := r.auditComplete(ctx, ids)
	longest := r.longestRun(ctx)
	if longest > soakHistoryBound {
		t.Errorf("a run's history has %d events, over the bound of %d", longest, soakHistoryBound)
	}
	served, expired, statuses, _ := rd.summary()
	if expired > 0 {
		t.Errorf("the gateway served %d expired tokens", expired)
	}
	if statuses[http.StatusInternalServerError] > 0 {
		t.Errorf("the gateway answered 500 %d times", statuses[http.StatusInternalServerError])
	}
	if rejected > 0 {
		t.Errorf("the peer rejected %d refresh requests: a refresh token was replayed", rejected)
	}
	rec.Lost, rec.ServedExpired, rec.Errors = lost+gaps, expired, rejected+statuses[http.StatusInternalServerError]
	rec.Notes = fmt.Sprintf("each link past %d run boundaries; %d refreshes at the peer = %d in the links; %d forced refreshes (%d answered with an error while a dependency was down); %d token reads (%s); audit trails whole; longest run %d events (bound %d)",
		boundaries, peer, counted, forcedOK+forcedErr, forcedErr, served, statusString(statuses), longest, soakHistoryBound)
	t.Log(rec.Notes)
}

// drainingWorker starts an in-process worker that, when stopped, lets
// running activities finish, as `tokenwarden worker` does on SIGTERM.
func (r *rig) drainingWorker() sdkworker.Worker {
	w := worker.New(r.Temporal, &activities.Activities{Providers: r.Registry, Secrets: r.Secrets, Store: r.Store},
		sdkworker.Options{WorkerStopTimeout: 2 * time.Minute})
	if err := w.Start(); err != nil {
		r.t.Fatalf("worker: %v", err)
	}
	return w
}

// forceRefreshes forces a refresh of a random link every interval until
// ctx ends; the returned func waits and counts the answers.
func (r *rig) forceRefreshes(ctx context.Context, ids []string, every time.Duration) func() (ok, failed int) {
	var okN, failedN atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := r.refreshNow(rctx, ids[rand.IntN(len(ids))]); err != nil {
				failedN.Add(1)
			} else {
				okN.Add(1)
			}
			cancel()
		}
	}()
	return func() (int, int) { wg.Wait(); return int(okN.Load()), int(failedN.Load()) }
}

// auditComplete waits (up to two minutes) until every link's audit trail
// holds seq 1..N with no gap and no duplicate, N the workflow's, and
// returns how many links it never got there for.
func (r *rig) auditComplete(ctx context.Context, ids []string) int {
	bad := 0
	for _, id := range ids {
		st, err := r.state(ctx, id)
		if err != nil {
			r.t.Errorf("link %s: %v", id, err)
			bad++
			continue
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			evs, err := r.events(ctx, id)
			got, problem := 0, ""
			if err == nil {
				got, problem = auditGaps(evs, id)
			} else {
				problem = err.Error()
			}
			if problem == "" && got >= int(st.Seq) {
				break
			}
			if time.Now().After(deadline) {
				r.t.Errorf("link %s: audit trail up to seq %d of %d: %s", id, got, st.Seq, problem)
				bad++
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return bad
}

// longestRun is the most events in one run of any link workflow.
func (r *rig) longestRun(ctx context.Context) int {
	longest := 0
	var token []byte
	for {
		resp, err := r.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: r.stack.Info().TemporalNamespace, Query: "WorkflowType = 'Link'", NextPageToken: token})
		if err != nil {
			r.t.Errorf("list workflows: %v", err)
			return longest
		}
		for _, ex := range resp.Executions {
			it := r.Temporal.GetWorkflowHistory(ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			n := 0
			for it.HasNext() {
				if _, err := it.Next(); err != nil {
					r.t.Errorf("history: %v", err)
					break
				}
				n++
			}
			longest = max(longest, n)
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return longest
		}
	}
}
