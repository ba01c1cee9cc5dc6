// Package workflows holds the link workflow: one long-lived, deterministic
// Temporal workflow per user–provider link. It enrolls the link, sleeps
// until shortly before the token expires, refreshes it through activities,
// and answers refresh, revoke and re-authorization requests. Because a
// link's workflow is the only code that ever refreshes its token, there is
// exactly one refresher by construction: no lock, no race between readers,
// no rotated refresh token used twice.
//
// Nothing here does I/O or sees a secret: activities do the provider calls
// and Vault writes, and hand back metadata only.
package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// TaskQueue is where link workflows and their activities run.
const TaskQueue = "tokenwarden-links"

const (
	// DefaultAuthorizationTimeout bounds the wait for the end-user's
	// consent or device approval.
	DefaultAuthorizationTimeout = time.Hour
	// DefaultMaxCyclesPerRun bounds refresh cycles per run, so that history
	// stays small however long a link lives.
	DefaultMaxCyclesPerRun = 100
)

// WorkflowID is the one workflow ID of a link. Starting a workflow with an
// ID that is already running joins it instead (conflict policy
// USE_EXISTING), which is what makes the refresher unique.
func WorkflowID(tenantID, linkID string) string {
	return "link/" + tenantID + "/" + linkID
}

// Link is the workflow of one link.
func Link(ctx workflow.Context, p LinkParams) error {
	l := newLink(ctx, p)
	if err := l.registerHandlers(ctx); err != nil {
		return err
	}
	l.resumeCarried(ctx)
	err := l.run(ctx)
	var can *workflow.ContinueAsNewError
	if errors.As(err, &can) {
		// run returns this only with nothing left to do in this run: no
		// handler running, no signal unread (see continueAsNew).
		return err
	}
	return l.finish(ctx, err)
}

// finish ends a link's last run. Update handlers finish first; a revoke
// that arrives meanwhile (say, as the link fails) is still carried out:
// revoking is always possible and always final. The audit trail is
// written before the run ends, since no later run would carry it.
func (l *link) finish(ctx workflow.Context, err error) error {
	if ctx.Err() != nil {
		// Cancelled: what is left to do must still run.
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	for {
		_ = workflow.Await(ctx, func() bool {
			return workflow.AllHandlersFinished(ctx) || l.revokePending()
		})
		if l.revokePending() {
			l.revoke(ctx)
			continue
		}
		// Waiting for the audit records yields: a message may arrive
		// meanwhile, so look again before ending.
		l.flushRecords(ctx)
		if workflow.AllHandlersFinished(ctx) && !l.revokePending() {
			return err
		}
	}
}

func (l *link) revokePending() bool {
	return l.revokeRequested != nil && l.st.Status != StatusRevoked
}

type link struct {
	p      LinkParams
	st     State
	cycles int

	// waiters are refresh updates waiting for a refresh attempt;
	// attempts counts the attempts started in this run.
	waiters  []*refreshWaiter
	attempts int

	revokeRequested *RevokeRequest
	revokeDone      bool
	// shown: the search attributes last upserted.
	shown searchAttributes
	// suspending: the link is reauth_required and its access token is
	// being cleared from Vault (see needReauth).
	suspending bool
	// enrolling: the Enroll activity runs. A lean one writes the link's
	// row as active before this workflow hears back, so a refresh asked
	// for meanwhile waits for the enrollment rather than hear "pending".
	enrolling bool
	// grantReady: the gateway put fresh grant material in Vault (OAuth
	// callback or re-authorization). denied: the end-user refused.
	grantReady bool
	denied     *DeniedRequest

	sig  signalChannels
	wake workflow.Channel
	// unrecorded: transitions whose audit record is not written yet;
	// unchecked: transitions whose webhook subscription check has not
	// answered; hooks: webhook events whose delivery workflow is being
	// started (see records.go and webhook).
	unrecorded []Transition
	unchecked  []Transition
	hooks      int
}

func newLink(ctx workflow.Context, p LinkParams) *link {
	l := &link{p: p, sig: openSignals(ctx), wake: workflow.NewBufferedChannel(ctx, 1)}
	if p.State != nil {
		l.st = *p.State
		l.st.Runs++
	}
	if l.p.AuthorizationTimeout <= 0 {
		l.p.AuthorizationTimeout = DefaultAuthorizationTimeout
	}
	if l.p.MaxCyclesPerRun <= 0 {
		l.p.MaxCyclesPerRun = DefaultMaxCyclesPerRun
	}
	return l
}

func (l *link) ref() LinkRef {
	return LinkRef{TenantID: l.p.TenantID, LinkID: l.p.LinkID, Provider: l.p.Provider, GrantType: l.p.GrantType}
}

// poke wakes the main loop without blocking: one pending wake-up is enough.
func (l *link) poke() { l.wake.SendAsync(struct{}{}) }

// run is the link's life: enroll, then keep the token fresh until revoked.
func (l *link) run(ctx workflow.Context) error {
	// 1. Enroll: a new link obtains its first token.
	if l.st.Status == "" {
		l.enroll(ctx)
	}
	for {
		if ctx.Err() != nil {
			return l.cancelled(ctx)
		}
		// 2. Revoke, the one request that always wins.
		if l.revokeRequested != nil {
			return l.revoke(ctx)
		}
		if l.st.Status.Terminal() {
			return nil
		}
		switch {
		case l.st.Status == StatusReauthRequired:
			// 3. A link that lost its grant waits for the end-user to
			// consent again (or for stored credentials to be replaced).
			l.awaitReauthorization(ctx)
		case len(l.waiters) > 0:
			// 4. A caller needs a fresher token.
			l.serveWaiters(ctx)
		case l.grantReady:
			// New consent for a link that is still active: adopt it.
			l.grantReady = false
			l.enrollNow(ctx, "reauthorized")
		case l.cycles >= l.p.MaxCyclesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested():
			// 5. Keep history small: continue as new between cycles,
			// never in the middle of one.
			if err := l.continueAsNew(ctx); err != nil {
				return err
			}
		default:
			// 6. Sleep until the refresh is due, or a message arrives.
			l.sleepUntilDue(ctx)
		}
	}
}

func (l *link) awaitReauthorization(ctx workflow.Context) {
	l.failPendingRequests()
	if l.grantReady {
		l.grantReady = false
		l.enrollNow(ctx, "reauthorized")
		return
	}
	sel := workflow.NewSelector(ctx)
	l.addSignals(ctx, sel)
	sel.Select(ctx)
}

// serveWaiters refreshes for the callers waiting on a refresh update.
// Callers do not get to hammer a provider that is failing or has asked us
// to slow down: while a degraded link's backoff runs they hear the last
// error at once (the gateway serves the current token while it is valid).
func (l *link) serveWaiters(ctx workflow.Context) {
	if l.st.Status == StatusDegraded && workflow.Now(ctx).Before(l.st.RetryNotBefore) {
		l.settleWaiters(l.attempts+1, errors.New(l.st.LastError))
		return
	}
	l.refresh(ctx)
}

func (l *link) hasWork() bool {
	return l.revokeRequested != nil || len(l.waiters) > 0 || l.grantReady
}

// continueAsNew ends the run and starts the next one with the link's
// state; it returns nil, without ending the run, when a message needs
// this run first.
//
// Nothing may be stranded at the boundary: an update accepted after the
// last look would wait for a run that has ended, a signal received by no
// one would be lost. So the run decides and returns with no yield in
// between: it drains the signals, and ends only if no handler is running
// and nothing is pending. It waits for nothing slow: audit records and
// webhook checks not yet written travel to the next run (records.go); the
// one wait is for webhook delivery workflows being started, which takes
// Temporal alone.
func (l *link) continueAsNew(ctx workflow.Context) error {
	if workflow.GetVersion(ctx, "boundary-carries-records", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return l.continueAsNewV0(ctx)
	}
	for {
		l.drain()
		if l.hasWork() {
			return nil
		}
		if workflow.AllHandlersFinished(ctx) && l.hooks == 0 {
			break
		}
		_ = workflow.Await(ctx, func() bool {
			return (workflow.AllHandlersFinished(ctx) && l.hooks == 0) || l.hasWork() || ctx.Err() != nil
		})
		if ctx.Err() != nil {
			return nil
		}
	}
	return l.nextRun(ctx)
}

// continueAsNewV0 is the boundary of runs that began before
// "boundary-carries-records": kept so that their histories replay. It
// waited for the audit trail, and could strand a refresh update accepted
// during that wait.
func (l *link) continueAsNewV0(ctx workflow.Context) error {
	l.drain()
	if l.hasWork() {
		return nil
	}
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	if len(l.waiters) > 0 {
		return nil
	}
	l.flushRecords(ctx)
	return l.nextRun(ctx)
}

// nextRun continues as new with the link's state and what this run could
// not finish (nothing, once flushRecords has waited).
func (l *link) nextRun(ctx workflow.Context) error {
	p := l.p
	st := l.st
	p.State = &st
	l.carry(&p)
	return workflow.NewContinueAsNewError(ctx, Link, p)
}

// due is when the next refresh attempt is: the schedule's, or a degraded
// link's backoff.
func (l *link) due(now time.Time) time.Time {
	if l.st.Status != StatusDegraded {
		return l.st.ScheduledRefresh(l.p.LinkID, now)
	}
	if l.st.RetryNotBefore.After(now) {
		return l.st.RetryNotBefore
	}
	return now.Add(minWait)
}

// sleepUntilDue waits for the next refresh, or for a message.
func (l *link) sleepUntilDue(ctx workflow.Context) {
	now := workflow.Now(ctx)
	due := l.due(now)
	stale := !due.Equal(l.st.NextRefreshAt)
	if l.lean(ctx) {
		// A lean refresh leaves the upsert to here: one per cycle.
		stale = stale || l.shown != searchAttributes{status: l.st.Status, next: due, expires: l.st.ExpiresAt}
	}
	if stale {
		l.st.NextRefreshAt = due
		l.upsertSearchAttributes(ctx)
	}
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	l.showDetails(ctx)
	timer := workflow.NewTimerWithOptions(timerCtx, due.Sub(now), workflow.TimerOptions{Summary: l.timerSummary()})
	fired := false
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(timer, func(f workflow.Future) { fired = f.Get(ctx, nil) == nil })
	l.addSignals(ctx, sel)
	sel.Select(ctx)
	cancelTimer()
	if fired {
		l.refresh(ctx)
	}
}

// cancelled ends a link whose workflow was cancelled ("Request
// Cancellation" in the Temporal UI, `temporal workflow cancel`). The rule:
// cancelling a link's workflow revokes the link, exactly as a revoke
// request would (provider revocation, secrets wiped, audit "revoked"), and
// the run then ends as cancelled. A link cannot be left half alive: a
// workflow that ignored cancellation would find every timer and wait
// cancelled at once and spin.
func (l *link) cancelled(ctx workflow.Context) error {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if l.revokeRequested == nil {
		l.revokeRequested = &RevokeRequest{Reason: "the link's workflow was cancelled"}
	}
	if l.st.Status != StatusRevoked {
		_ = l.revoke(dctx)
	}
	return temporal.NewCanceledError()
}

// needReauth parks a link whose grant the provider rejected. Callers hear
// reauth_required at once, and the access token is cleared from Vault
// (suspend) so that the gateway cannot serve a token of a rejected grant.
// The clearing is retried until Vault takes it, however long that is: a
// link in reauth_required must never serve its token.
func (l *link) needReauth(ctx workflow.Context, event string) {
	if workflow.GetVersion(ctx, "suspend-until-done", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		// Runs that began before: suspend once, then say so.
		l.suspendOnce(ctx)
		l.transition(ctx, StatusReauthRequired, event, l.st.LastError)
		return
	}
	// Until the token is cleared, refresh requests wait rather than hear
	// reauth_required: a caller told so must not then be served the
	// token. Normally the token is gone before the status is recorded
	// (and the API or a webhook says reauth_required). With Vault
	// unreachable, the status is recorded after a grace anyway: the
	// gateway then stops serving the token from the recorded status (it
	// hears of it at the commit), and the clearing goes on. The grace is
	// short, since until the status is recorded a gateway that reads
	// Vault fine serves the token of a dead grant.
	l.suspending = true
	defer func() { l.suspending = false }()
	grace := suspendGrace
	if workflow.GetVersion(ctx, "short-suspend-grace", workflow.DefaultVersion, 1) >= 1 {
		grace = shortSuspendGrace
	}
	actx, cancel := workflow.WithCancel(withSummary(workflow.WithActivityOptions(ctx, untilDone(ctx)), suspendSummary))
	f := workflow.ExecuteActivity(actx, ActivitySuspend, l.ref())
	l.awaitActivityFor(ctx, f, grace)
	l.transition(ctx, StatusReauthRequired, event, l.st.LastError)
	// A revoke meanwhile wipes the token anyway.
	if l.awaitActivity(ctx, f, cancel) {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("could not suspend the access token", "link", l.p.LinkID, "error", err)
		}
	}
}

// suspendGrace is how long a suspend may take before the link's
// reauth_required status is recorded without it; shortSuspendGrace in
// runs since "short-suspend-grace": a Vault write that has not landed in
// it is not about to.
const (
	suspendGrace      = 30 * time.Second
	shortSuspendGrace = 5 * time.Second
)

const suspendSummary = "suspend: clear the access token of a dead grant"

// awaitActivityFor waits for f while receiving messages, for at most d or
// until the link is revoked or its workflow cancelled.
func (l *link) awaitActivityFor(ctx workflow.Context, f workflow.Future, d time.Duration) {
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	timedOut := false
	timer := workflow.NewTimerWithOptions(timerCtx, d, workflow.TimerOptions{Summary: "clear the access token of a rejected grant"})
	for !f.IsReady() && !timedOut && l.revokeRequested == nil && ctx.Err() == nil {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(f, func(workflow.Future) {})
		sel.AddFuture(timer, func(workflow.Future) { timedOut = true })
		l.addSignals(ctx, sel)
		sel.Select(ctx)
	}
}

// suspendOnce is the suspend of runs that began before
// "suspend-until-done": one activity execution, its failure only logged.
func (l *link) suspendOnce(ctx workflow.Context) {
	if workflow.GetVersion(ctx, "suspend-on-reauth", workflow.DefaultVersion, 1) < 1 {
		return
	}
	if err := workflow.ExecuteActivity(withSummary(l.activityCtx(ctx), suspendSummary), ActivitySuspend, l.ref()).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("could not suspend the access token", "link", l.p.LinkID, "error", err)
	}
}

// awaitActivity waits for f while receiving messages. It gives up (and
// cancels the activity) when the link is revoked or its workflow
// cancelled, reporting false: the caller's work is moot then.
func (l *link) awaitActivity(ctx workflow.Context, f workflow.Future, cancel workflow.CancelFunc) bool {
	for !f.IsReady() {
		if l.revokeRequested != nil || ctx.Err() != nil {
			cancel()
			return false
		}
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(f, func(workflow.Future) {})
		l.addSignals(ctx, sel)
		sel.Select(ctx)
	}
	return true
}

// failPendingRequests answers waiting refresh requests when the link can
// no longer refresh (it needs re-authorization).
func (l *link) failPendingRequests() {
	if len(l.waiters) > 0 {
		l.settleWaiters(l.attempts+1, errors.New(l.st.LastError))
	}
}

// revoke revokes at the provider, wipes the secrets and ends the link.
// Revocation at the provider is best-effort (a dead token is as good as a
// revoked one; the activity gives up on a provider that keeps failing),
// but the wipe is retried until Vault takes it: "revoked" means that no
// secret is left.
func (l *link) revoke(ctx workflow.Context) error {
	l.failPendingRequests()
	var opts workflow.ActivityOptions
	if workflow.GetVersion(ctx, "revoke-until-wiped", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		opts = activityOptions()
	} else {
		opts = untilDone(ctx)
	}
	opts.Summary = fmt.Sprintf("revoke at %s and wipe the tokens", l.p.Provider)
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), ActivityRevoke, l.ref()).Get(ctx, nil)
	if err != nil {
		// Only a permanent failure comes back (e.g. Vault denied the
		// delete): record it, the operator sees last_error.
		l.st.LastError = errorMessage(err)
	}
	reason := ""
	if l.revokeRequested != nil {
		reason = l.revokeRequested.Reason
	}
	l.st.NextRefreshAt = time.Time{}
	l.transition(ctx, StatusRevoked, "revoked", reason)
	// The revoke update answers once the audit trail says "revoked" too,
	// so that a caller who reads the link next finds it revoked.
	l.flushRecords(ctx)
	l.revokeDone = true
	return nil
}

// adopt takes the metadata of a freshly stored token.
func (l *link) adopt(info TokenInfo) { l.st.Adopt(info) }

// transition moves the link to status to, mirrors it into the search
// attributes and records it in the audit trail, in the background.
func (l *link) transition(ctx workflow.Context, to Status, event, detail string) {
	t := l.advance(ctx, to, event, detail)
	l.showDetails(ctx)
	l.upsertSearchAttributes(ctx)
	l.record(ctx, t)
	l.webhook(ctx, t)
}

// advance moves the link to status to and returns the transition to
// record.
func (l *link) advance(ctx workflow.Context, to Status, event, detail string) Transition {
	from := l.st.Status
	l.st.Status = to
	l.st.Seq++
	if to != StatusActive && to != StatusDegraded {
		l.st.NextRefreshAt = time.Time{}
	}
	return Transition{
		LinkRef: l.ref(),
		EventID: l.eventID(l.st.Seq),
		Seq:     l.st.Seq,
		Type:    event,
		From:    from,
		To:      to,
		At:      workflow.Now(ctx),
		State:   l.st,
		Detail:  detail,
	}
}

func (l *link) eventID(seq int64) string {
	return fmt.Sprintf("%s/%d", WorkflowID(l.p.TenantID, l.p.LinkID), seq)
}

func (l *link) upsertSearchAttributes(ctx workflow.Context) {
	updates := []temporal.SearchAttributeUpdate{StatusKey.ValueSet(string(l.st.Status))}
	if l.st.NextRefreshAt.IsZero() {
		updates = append(updates, NextRefreshKey.ValueUnset())
	} else {
		updates = append(updates, NextRefreshKey.ValueSet(l.st.NextRefreshAt))
	}
	if !l.st.ExpiresAt.IsZero() {
		updates = append(updates, ExpiresAtKey.ValueSet(l.st.ExpiresAt))
	}
	// Upserting only fails for unregistered attributes, a deployment
	// mistake that the worker's start-up check reports.
	_ = workflow.UpsertTypedSearchAttributes(ctx, updates...)
	l.shown = searchAttributes{status: l.st.Status, next: l.st.NextRefreshAt, expires: l.st.ExpiresAt}
}

// searchAttributes are the values last upserted.
type searchAttributes struct {
	status        Status
	next, expires time.Time
}

// activityOptions are those of the provider-calling activities. They
// retry transient failures themselves a few times; longer outages are the
// workflow's business (degraded, backoff), so that a refresh request never
// waits minutes for an answer.
func activityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		// The activities heartbeat every 2 s while they work, so a worker
		// killed mid-refresh is noticed within 10 s, and a slow provider is
		// never mistaken for a dead worker (which would start a second
		// attempt spending the same refresh token).
		HeartbeatTimeout: HeartbeatTimeout,
		// A cancelled activity is waited for, not abandoned: one that
		// already holds a rotated token finishes its Vault write first.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			MaximumAttempts:        4,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// HeartbeatTimeout is how long Temporal waits for a provider activity's
// heartbeat before it starts another attempt elsewhere.
const HeartbeatTimeout = 10 * time.Second

var nonRetryable = []string{ErrTypeInvalidGrant, ErrTypePermanent, ErrTypeDenied, ErrTypeExpired, ErrTypeConfig}

func (l *link) activityCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, activityOptions())
}

// untilDone are the options of an activity that must succeed eventually
// (suspend, the revoke wipe): attempts without limit, backing off to a
// minute; only permanent errors end it.
func untilDone(workflow.Context) workflow.ActivityOptions {
	o := activityOptions()
	o.RetryPolicy.MaximumAttempts = 0
	o.RetryPolicy.MaximumInterval = time.Minute
	return o
}

// errorMessage is the text kept as last_error: the innermost application
// error's message, which activities build from wire facts only.
func errorMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		return "timed out: " + timeoutErr.TimeoutType().String()
	}
	var canceledErr *temporal.CanceledError
	if errors.As(err, &canceledErr) {
		return "cancelled"
	}
	return err.Error()
}
