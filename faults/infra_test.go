package faults

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/workflows"
)

// settle waits until every link has refreshed at least n more times than
// in before and is active.
func (r *rig) settle(ctx context.Context, ids []string, before map[string]workflows.State, n int, limit time.Duration, what string) {
	r.t.Helper()
	for _, id := range ids {
		want := before[id].Refreshes + n
		r.waitFor(ctx, id, what, limit, func(st workflows.State) bool {
			return st.Status == workflows.StatusActive && st.Refreshes >= want
		})
	}
}

// TestVaultDown stops Vault (data on disk) while links refresh every few
// seconds and the gateway is read, then starts it again. Refreshes due
// meanwhile fail, are retried and succeed afterwards; the gateway answers
// 503 with Retry-After, never 500; no link ends failed or
// reauth_required; no rotated refresh token is lost.
func TestVaultDown(t *testing.T) {
	t.Parallel()
	outage := pick(10*time.Second, 30*time.Second)
	n := pick(3, 10)
	r := newPrivateRig(t)
	rec := &row{Fault: fmt.Sprintf("2 Vault down %s", outage), Links: n}
	record(t, rec)
	r.startWorker(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ids := r.activeLinks(ctx, n)
	before := r.states(ctx, ids)

	var during struct {
		on                  bool
		s503, s500, noRetry int
		other               map[int]int
	}
	during.other = map[int]int{}
	rd := newReader(r.Gateway, r.APIKey, ids, 200*time.Millisecond)
	rd.onResponse = func(status int, retryAfter string) {
		if !during.on {
			return
		}
		switch {
		case status == http.StatusServiceUnavailable:
			during.s503++
			if secs, err := strconv.Atoi(retryAfter); err != nil || secs <= 0 {
				during.noRetry++
			}
		case status >= 500:
			during.s500++
		default:
			during.other[status]++
		}
	}
	rctx, stopReaders := context.WithCancel(ctx)
	wait := rd.run(rctx, 2)
	rd.warm(t)

	if err := r.stack.StopVault(); err != nil {
		t.Fatalf("stop vault: %v", err)
	}
	rd.mu.Lock()
	during.on = true
	rd.mu.Unlock()
	// The outage itself: its length is the scenario.
	time.Sleep(outage)
	rd.mu.Lock()
	during.on = false
	rd.mu.Unlock()
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	if err := r.stack.StartVault(sctx); err != nil {
		scancel()
		t.Fatalf("start vault: %v", err)
	}
	scancel()
	up := time.Now()
	r.settle(ctx, ids, before, 3, 3*time.Minute, "refreshing after Vault came back")
	recovered := time.Since(up)
	stopReaders()
	wait()

	sts := r.states(ctx, ids)
	bad := noBadStatus(t, sts)
	lost := r.lost(ctx, ids)
	hits, errs := r.refreshErrors(ctx)
	served, expired, statuses, _ := rd.summary()
	rd.mu.Lock()
	d503, d500, noRetry, other := during.s503, during.s500, during.noRetry, during.other
	rd.mu.Unlock()
	degraded := 0
	for _, id := range ids {
		degraded += countEvents(t, r, id, "refresh_failed")
	}
	if d503 == 0 {
		t.Errorf("the gateway never answered 503 while Vault was down (other answers: %v)", other)
	}
	if d500 > 0 || statuses[http.StatusInternalServerError] > 0 {
		t.Errorf("the gateway answered 5xx other than 503 while Vault was down: %d (all answers: %s)", d500, statusString(statuses))
	}
	if noRetry > 0 {
		t.Errorf("%d 503 answers without a Retry-After", noRetry)
	}
	if other[http.StatusOK] > 0 {
		t.Logf("%d tokens served while Vault was down (in flight when it stopped)", other[http.StatusOK])
	}
	if expired > 0 {
		t.Errorf("the gateway served %d expired tokens", expired)
	}
	if errs > 0 {
		t.Errorf("the peer rejected %d refresh requests: a rotated refresh token was lost or replayed", errs)
	}
	rec.Lost, rec.ServedExpired, rec.Errors = lost+bad, expired, errs+d500
	rec.Notes = fmt.Sprintf("gateway 503+Retry-After×%d during outage, 500×%d; %d refresh_failed events; all active %s after restart; %d reads served; %d refreshes at peer",
		d503, d500, degraded, recovered.Round(time.Second), served, hits)
	t.Log(rec.Notes)
}

// auditGaps checks a link's audit trail: event IDs end in /<seq>, and the
// sequence numbers are exactly 1..N, none missing, none twice. It returns
// N and a description of what is wrong ("" if nothing).
func auditGaps(evs []event, id string) (int, string) {
	prefix := workflows.WorkflowID(tenant, id) + "/"
	seen := map[int]int{}
	var problems []string
	maxSeq := 0
	for _, e := range evs {
		s, ok := strings.CutPrefix(e.ID, prefix)
		if !ok {
			continue // not a workflow transition (e.g. written by the gateway)
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			problems = append(problems, "event id without a sequence number: "+e.ID)
			continue
		}
		seen[n]++
		maxSeq = max(maxSeq, n)
	}
	var missing, dup []int
	for i := 1; i <= maxSeq; i++ {
		switch {
		case seen[i] == 0:
			missing = append(missing, i)
		case seen[i] > 1:
			dup = append(dup, i)
		}
	}
	sort.Ints(missing)
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("missing seq %v", missing))
	}
	if len(dup) > 0 {
		problems = append(problems, fmt.Sprintf("duplicate seq %v", dup))
	}
	return maxSeq, strings.Join(problems, "; ")
}

// TestPostgresDown stops PostgreSQL while links refresh, then starts it
// again. Refreshes go on meanwhile on schedule (fresh tokens keep reaching
// Vault and the gateway), every link crosses at least two continue-as-new
// boundaries during the outage (its run boundary never waits for the
// database), and afterwards every link's audit trail is complete: sequence
// numbers 1..N with no gap and no duplicate, N the workflow's.
func TestPostgresDown(t *testing.T) {
	t.Parallel()
	outage := pick(25*time.Second, 150*time.Second)
	n := pick(3, 10)
	r := newPrivateRig(t)
	// 5-second tokens refresh about every 4 s: a run of two cycles
	// continues as new about every 8 s.
	r.maxCycles = 2
	rec := &row{Fault: fmt.Sprintf("3 Postgres down %s", outage), Links: n}
	record(t, rec)
	r.startWorker(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ids := r.activeLinks(ctx, n)

	rd := newReader(r.Gateway, r.APIKey, ids, 250*time.Millisecond)
	rctx, stopReaders := context.WithCancel(ctx)
	wait := rd.run(rctx, 2)
	rd.warm(t)

	if err := r.stack.StopPostgres(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	down := time.Now()
	atStop := r.states(ctx, ids)
	versions := map[string]int{}
	for _, id := range ids {
		tok, err := r.Secrets.ReadToken(ctx, tenant, id)
		if err != nil {
			t.Fatalf("read token: %v", err)
		}
		versions[id] = tok.Version
	}
	// Refreshes go on while the database is down, across two run
	// boundaries at least, with the new tokens in Vault, before the
	// outage ends.
	for _, id := range ids {
		want, runs := atStop[id].Refreshes+2, atStop[id].Runs+2
		r.waitFor(ctx, id, "refreshing across two run boundaries while Postgres is down", time.Until(down.Add(outage)), func(st workflows.State) bool {
			return st.Refreshes >= want && st.Runs >= runs
		})
		tok, err := r.Secrets.ReadToken(ctx, tenant, id)
		if err != nil {
			t.Fatalf("read token: %v", err)
		}
		if tok.Version <= versions[id] || !tok.Value.Expiry.After(time.Now()) {
			t.Errorf("link %s: no fresh token in Vault while Postgres was down", id)
		}
	}
	refreshedDuring := 0
	for _, st := range r.states(ctx, ids) {
		refreshedDuring += st.Refreshes
	}
	for _, st := range atStop {
		refreshedDuring -= st.Refreshes
	}
	time.Sleep(time.Until(down.Add(outage))) // the rest of the outage
	// On schedule: one refresh per 5-second token, less one for the
	// cycle under way at either end of the outage.
	onSchedule := int(outage/(5*time.Second)) - 2
	for id, st := range r.states(ctx, ids) {
		if got := st.Refreshes - atStop[id].Refreshes; got < onSchedule {
			t.Errorf("link %s: %d refreshes during a %s outage, want at least %d", id, got, outage, onSchedule)
		}
	}
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	if err := r.stack.StartPostgres(sctx); err != nil {
		scancel()
		t.Fatalf("start postgres: %v", err)
	}
	scancel()
	up := time.Now()
	afterUp := r.states(ctx, ids)

	// The audit trail catches up: every transition up to the ones made
	// after the restart is recorded, exactly once.
	totalEvents := 0
	gaps := 0
	for _, id := range ids {
		want := int(afterUp[id].Seq)
		var problem string
		var got int
		deadline := time.Now().Add(3 * time.Minute)
		for {
			evs, err := r.events(ctx, id)
			if err == nil {
				got, problem = auditGaps(evs, id)
				if problem == "" && got >= want {
					break
				}
			} else {
				problem = err.Error()
			}
			if time.Now().After(deadline) {
				gaps++
				t.Errorf("link %s: audit trail incomplete %s after Postgres came back: up to seq %d of %d; %s", id, time.Since(up).Round(time.Second), got, want, problem)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		totalEvents += got
	}
	caughtUp := time.Since(up)
	stopReaders()
	wait()
	r.settle(ctx, ids, afterUp, 1, 2*time.Minute, "refreshing after Postgres came back")

	// The links table agrees with the workflows.
	for _, id := range ids {
		l, err := r.Store.GetLink(ctx, tenant, id)
		if err != nil {
			t.Fatalf("get link: %v", err)
		}
		if l.Status == "" || l.StateSeq < afterUp[id].Seq {
			t.Errorf("link %s: row at seq %d status %q, workflow was at seq %d", id, l.StateSeq, l.Status, afterUp[id].Seq)
		}
	}
	bad := noBadStatus(t, r.states(ctx, ids))
	lost := r.lost(ctx, ids)
	_, errs := r.refreshErrors(ctx)
	served, expired, statuses, _ := rd.summary()
	if expired > 0 {
		t.Errorf("the gateway served %d expired tokens", expired)
	}
	if statuses[http.StatusInternalServerError] > 0 {
		t.Errorf("the gateway answered 500 %d times: %s", statuses[500], statusString(statuses))
	}
	if errs > 0 {
		t.Errorf("the peer rejected %d refresh requests", errs)
	}
	t.Logf("gateway error answers: %s", rd.errorCodes())
	rec.Lost, rec.ServedExpired, rec.Errors = lost+bad+gaps, expired, errs+statuses[500]
	rec.Notes = fmt.Sprintf("%d refreshes during the outage; audit trail complete %s after restart (%d events, seq 1..N per link, no gap/dup); gateway %s",
		refreshedDuring, caughtUp.Round(time.Second), totalEvents, statusString(statuses))
	t.Log(rec.Notes)
	_ = served
}

// TestTemporalRestart stops the Temporal dev server (its SQLite file
// stays) and starts it again. Workflows resume from their timers, no
// refresh happens twice (the peer would reject the replayed refresh
// token), and every link is active afterwards.
func TestTemporalRestart(t *testing.T) {
	t.Parallel()
	outage := pick(5*time.Second, 20*time.Second)
	n := pick(3, 10)
	r := newPrivateRig(t)
	rec := &row{Fault: fmt.Sprintf("4 Temporal restart (down %s)", outage), Links: n}
	record(t, rec)
	r.startWorker(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ids := r.activeLinks(ctx, n)
	// Let the links run a cycle so the restart finds refreshes in flight.
	before := r.states(ctx, ids)
	r.settle(ctx, ids, before, 1, time.Minute, "refreshing before the restart")

	rd := newReader(r.Gateway, r.APIKey, ids, 250*time.Millisecond)
	rctx, stopReaders := context.WithCancel(ctx)
	wait := rd.run(rctx, 2)
	rd.warm(t)

	atStop := r.states(ctx, ids)
	if err := r.stack.StopTemporal(); err != nil {
		t.Fatalf("stop temporal: %v", err)
	}
	time.Sleep(outage) // the outage is the scenario
	sctx, scancel := context.WithTimeout(ctx, 3*time.Minute)
	if err := r.stack.StartTemporal(sctx); err != nil {
		scancel()
		t.Fatalf("start temporal: %v", err)
	}
	scancel()
	up := time.Now()
	r.settle(ctx, ids, atStop, 3, 3*time.Minute, "refreshing after the restart")
	resumed := time.Since(up)
	stopReaders()
	wait()

	bad := noBadStatus(t, r.states(ctx, ids))
	lost := r.lost(ctx, ids)
	_, errs := r.refreshErrors(ctx)
	served, expired, statuses, _ := rd.summary()
	if expired > 0 {
		t.Errorf("the gateway served %d expired tokens", expired)
	}
	if statuses[http.StatusInternalServerError] > 0 {
		t.Errorf("the gateway answered 500 %d times: %s", statuses[500], statusString(statuses))
	}
	if errs > 0 {
		t.Errorf("the peer rejected %d refresh requests: a refresh ran twice with the same refresh token", errs)
	}
	// Every refresh the peer saw is one the workflows counted (a double
	// refresh would show up here even if the peer had not caught it).
	peer, counted, agree := r.countsAgree(ctx, ids)
	if !agree {
		t.Errorf("the peer answered %d refreshes, the workflows count %d", peer, counted)
	}
	rec.Lost, rec.ServedExpired, rec.Errors = lost+bad, expired, errs+statuses[500]
	rec.Notes = fmt.Sprintf("all links refreshed 3× within %s of the restart; %d refreshes at peer = %d in workflows; gateway %s (%d served)",
		resumed.Round(time.Second), peer, counted, statusString(statuses), served)
	t.Log(rec.Notes)
}
