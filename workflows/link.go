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
	err := l.run(ctx)
	// Let update handlers finish before the run ends, whether it completes
	// or continues as new. A revoke that arrives meanwhile (say, as the
	// link fails) is still carried out: revoking is always possible and
	// always final, so the run then ends instead of continuing.
	for {
		_ = workflow.Await(ctx, func() bool {
			return workflow.AllHandlersFinished(ctx) || l.revokePending()
		})
		if l.revokePending() {
			err = l.revoke(ctx)
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
	// grantReady: the gateway put fresh grant material in Vault (OAuth
	// callback or re-authorization). denied: the end-user refused.
	grantReady bool
	denied     *DeniedRequest

	wake    workflow.Channel
	records []workflow.Future
	// hooks counts webhook events not yet handed to their delivery
	// workflow (see webhook).
	hooks int
}

func newLink(ctx workflow.Context, p LinkParams) *link {
	l := &link{p: p, wake: workflow.NewBufferedChannel(ctx, 1)}
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

// registerHandlers wires the messages to the state they change.
func (l *link) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (State, error) {
		return l.st, nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRefresh, l.handleRefresh,
		workflow.UpdateHandlerOptions{Validator: l.validateRefresh}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRevoke, l.handleRevoke,
		workflow.UpdateHandlerOptions{Validator: l.validateRevoke}); err != nil {
		return err
	}
	return nil
}

func (l *link) validateRefresh(ctx workflow.Context, req RefreshRequest) error {
	switch {
	case l.st.Status.Terminal():
		return NewLinkStatusError(l.st.Status, l.st.LastError)
	case l.revokeRequested != nil:
		return NewLinkStatusError(StatusRevoked, "")
	case l.st.Status == StatusPendingAuthorization || l.st.Status == "":
		return NewLinkStatusError(StatusPendingAuthorization, "")
	case l.st.Status == StatusReauthRequired:
		return NewLinkStatusError(StatusReauthRequired, l.st.LastError)
	}
	return nil
}

// refreshWaiter is one refresh update waiting for the main loop.
type refreshWaiter struct {
	// afterVersion: a forced refresh is satisfied by any token stored
	// after the one current when it asked. until: a bounded one by any
	// token valid past it.
	afterVersion int
	until        time.Time
	// seen is how many attempts had started when it asked.
	seen int
	done bool
	err  error
}

func (w *refreshWaiter) satisfiedBy(st State) bool {
	if w.until.IsZero() {
		return st.VaultVersion > w.afterVersion
	}
	return st.ExpiresAt.After(w.until)
}

// handleRefresh returns at once when the current token already satisfies
// the request, and otherwise waits for the main loop's next attempt. Any
// number of concurrent requests share one provider call: a refresh already
// in flight when a request arrives satisfies it too, since it stores a
// token newer than the one the caller saw.
func (l *link) handleRefresh(ctx workflow.Context, req RefreshRequest) (RefreshResult, error) {
	w := &refreshWaiter{afterVersion: max(l.st.VaultVersion, req.SeenVersion), until: req.MinValidUntil, seen: l.attempts}
	if !w.until.IsZero() && w.satisfiedBy(l.st) && l.st.VaultVersion >= req.SeenVersion &&
		(l.st.Status == StatusActive || l.st.Status == StatusDegraded) {
		return RefreshResult{ExpiresAt: l.st.ExpiresAt, VaultVersion: l.st.VaultVersion}, nil
	}
	l.waiters = append(l.waiters, w)
	l.poke()
	if err := workflow.Await(ctx, func() bool { return w.done }); err != nil {
		return RefreshResult{}, err
	}
	if w.err != nil {
		return RefreshResult{}, NewLinkStatusError(l.st.Status, l.st.LastError)
	}
	return RefreshResult{ExpiresAt: l.st.ExpiresAt, VaultVersion: l.st.VaultVersion, Refreshed: true}, nil
}

// settleWaiters answers the waiters after an attempt: those that were
// waiting when it started get its outcome whatever it was; later ones only
// if its token satisfies them (otherwise the next attempt is theirs).
func (l *link) settleWaiters(attempt int, err error) {
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		switch {
		case w.seen < attempt, err != nil, w.satisfiedBy(l.st):
			w.done, w.err = true, err
		default:
			kept = append(kept, w)
		}
	}
	l.waiters = kept
}

func (l *link) validateRevoke(ctx workflow.Context, req RevokeRequest) error {
	if l.st.Status == StatusRevoked {
		return NewLinkStatusError(StatusRevoked, "")
	}
	return nil
}

// handleRevoke asks the main loop to revoke and waits until it has.
func (l *link) handleRevoke(ctx workflow.Context, req RevokeRequest) (State, error) {
	l.requestRevoke(req)
	if err := workflow.Await(ctx, func() bool { return l.revokeDone }); err != nil {
		return State{}, err
	}
	return l.st, nil
}

func (l *link) requestRevoke(req RevokeRequest) {
	if l.revokeRequested == nil {
		l.revokeRequested = &req
	}
	l.poke()
}

// run is the link's life: enroll, then keep the token fresh until revoked.
func (l *link) run(ctx workflow.Context) error {
	revokeCh := workflow.GetSignalChannel(ctx, SignalRevoke)
	authorizedCh := workflow.GetSignalChannel(ctx, SignalAuthorized)
	reauthCh := workflow.GetSignalChannel(ctx, SignalReauthorize)
	deniedCh := workflow.GetSignalChannel(ctx, SignalDenied)
	signals := func(sel workflow.Selector) {
		sel.AddReceive(deniedCh, func(c workflow.ReceiveChannel, _ bool) {
			var req DeniedRequest
			c.Receive(ctx, &req)
			l.denied = &req
		})
		sel.AddReceive(revokeCh, func(c workflow.ReceiveChannel, _ bool) {
			var req RevokeRequest
			c.Receive(ctx, &req)
			l.requestRevoke(req)
		})
		sel.AddReceive(authorizedCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			l.grantReady = true
		})
		sel.AddReceive(reauthCh, func(c workflow.ReceiveChannel, _ bool) {
			var req ReauthorizeRequest
			c.Receive(ctx, &req)
			if req.GrantType != "" {
				l.p.GrantType = req.GrantType
			}
			l.grantReady = true
		})
		sel.AddReceive(l.wake, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	}

	// 1. Enroll: a new link obtains its first token.
	if l.st.Status == "" {
		l.enroll(ctx, signals)
	}

	for {
		// 2. Revoke, the one request that always wins.
		if l.revokeRequested != nil {
			return l.revoke(ctx)
		}
		if l.st.Status.Terminal() {
			return nil
		}

		// 3. A link that lost its grant waits for the end-user to consent
		// again (or for stored credentials to be replaced).
		if l.st.Status == StatusReauthRequired {
			l.failPendingRequests()
			if l.grantReady {
				l.grantReady = false
				l.enrollNow(ctx, "reauthorized")
				continue
			}
			sel := workflow.NewSelector(ctx)
			signals(sel)
			sel.Select(ctx)
			continue
		}

		// 4. Refresh when due or when a caller needs a fresher token.
		if len(l.waiters) > 0 {
			if l.st.Status == StatusDegraded && workflow.Now(ctx).Before(l.st.RetryNotBefore) {
				// Callers do not get to hammer a provider that is failing
				// or has asked us to slow down: they hear the last error
				// now (the gateway serves the current token while it is
				// valid) and the next attempt keeps its backoff.
				l.settleWaiters(l.attempts+1, errors.New(l.st.LastError))
			} else {
				l.refresh(ctx)
			}
			continue
		}
		if l.grantReady {
			// New consent for a link that is still active: adopt it.
			l.grantReady = false
			l.enrollNow(ctx, "reauthorized")
			continue
		}

		// 5. Keep history small: continue as new between cycles, never in
		// the middle of one.
		if l.cycles >= l.p.MaxCyclesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			l.drain(ctx, revokeCh, authorizedCh, reauthCh, deniedCh)
			if l.revokeRequested != nil || len(l.waiters) > 0 || l.grantReady {
				continue
			}
			_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
			if len(l.waiters) > 0 {
				continue
			}
			l.flushRecords(ctx)
			p := l.p
			st := l.st
			p.State = &st
			return workflow.NewContinueAsNewError(ctx, Link, p)
		}

		// 6. Sleep until the refresh is due, or until a message arrives.
		now := workflow.Now(ctx)
		var due time.Time
		if l.st.Status == StatusDegraded {
			due = l.st.RetryNotBefore
			if !due.After(now) {
				due = now.Add(minWait)
			}
		} else {
			due = NextRefresh(l.st.Schedule, now, l.st.ObtainedAt, l.st.ExpiresAt, l.st.RefreshExpiry, seedFor(l.p.LinkID, l.st.Seq))
		}
		if !due.Equal(l.st.NextRefreshAt) {
			l.st.NextRefreshAt = due
			l.upsertSearchAttributes(ctx)
		}
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		timer := workflow.NewTimer(timerCtx, due.Sub(now))
		fired := false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(f workflow.Future) { fired = f.Get(ctx, nil) == nil })
		signals(sel)
		sel.Select(ctx)
		cancelTimer()
		if fired {
			l.refresh(ctx)
		}
	}
}

// enroll waits for authorization where the grant needs the end-user, then
// obtains the first token.
func (l *link) enroll(ctx workflow.Context, signals func(workflow.Selector)) {
	switch l.p.GrantType {
	case "authorization_code":
		l.transition(ctx, StatusPendingAuthorization, "created", "")
		deadline := workflow.Now(ctx).Add(l.p.AuthorizationTimeout)
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		defer cancelTimer()
		timedOut := false
		timer := workflow.NewTimer(timerCtx, l.p.AuthorizationTimeout)
		for !l.grantReady && l.revokeRequested == nil && l.denied == nil && !timedOut {
			sel := workflow.NewSelector(ctx)
			sel.AddFuture(timer, func(f workflow.Future) { timedOut = f.Get(ctx, nil) == nil })
			signals(sel)
			sel.Select(ctx)
		}
		if l.revokeRequested != nil {
			return
		}
		if l.denied != nil && !l.grantReady {
			l.st.LastError = "authorization denied: " + l.denied.Error
			if l.denied.Description != "" {
				l.st.LastError += ": " + l.denied.Description
			}
			l.transition(ctx, StatusFailed, "authorization_denied", l.st.LastError)
			return
		}
		if !l.grantReady {
			l.st.LastError = "the end-user did not authorize before " + deadline.UTC().Format(time.RFC3339)
			l.transition(ctx, StatusFailed, "authorization_expired", l.st.LastError)
			return
		}
		l.grantReady = false
		l.enrollNow(ctx, "enrolled")
	case "device_code":
		l.transition(ctx, StatusPendingAuthorization, "created", "")
		l.pollDevice(ctx, signals)
	default:
		l.enrollNow(ctx, "enrolled")
	}
}

// pollDevice polls the token endpoint at the interval the provider asks
// for until the end-user approves on their other device.
func (l *link) pollDevice(ctx workflow.Context, signals func(workflow.Selector)) {
	deadline := workflow.Now(ctx).Add(l.p.AuthorizationTimeout)
	for l.revokeRequested == nil {
		var poll DevicePoll
		err := workflow.ExecuteActivity(l.activityCtx(ctx), ActivityPollDevice, l.ref()).Get(ctx, &poll)
		if err != nil {
			l.enrollFailed(ctx, err)
			return
		}
		if !poll.Pending && poll.Token != nil {
			l.adopt(*poll.Token)
			l.st.Failures = 0
			l.st.LastError = ""
			l.transition(ctx, StatusActive, "enrolled", "")
			return
		}
		if !workflow.Now(ctx).Before(deadline) {
			l.st.LastError = "the end-user did not approve the device before " + deadline.UTC().Format(time.RFC3339)
			l.transition(ctx, StatusFailed, "authorization_expired", l.st.LastError)
			return
		}
		interval := poll.Interval
		if interval < time.Second {
			interval = 5 * time.Second
		}
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		timer := workflow.NewTimer(timerCtx, interval)
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(workflow.Future) {})
		signals(sel)
		sel.Select(ctx)
		cancelTimer()
	}
}

// enrollNow runs the Enroll activity: the grant material is in Vault.
func (l *link) enrollNow(ctx workflow.Context, event string) {
	var info TokenInfo
	err := workflow.ExecuteActivity(l.activityCtx(ctx), ActivityEnroll, l.ref()).Get(ctx, &info)
	if err != nil {
		l.enrollFailed(ctx, err)
		return
	}
	l.adopt(info)
	l.st.Failures = 0
	l.st.LastError = ""
	l.transition(ctx, StatusActive, event, "")
}

func (l *link) enrollFailed(ctx workflow.Context, err error) {
	l.st.LastError = errorMessage(err)
	// A link that never had a token has nothing to keep alive: its first
	// enrollment failing ends it (the caller creates a new one). A link
	// that had one waits for re-authorization instead.
	if l.st.ExpiresAt.IsZero() {
		l.transition(ctx, StatusFailed, "enroll_failed", l.st.LastError)
		return
	}
	l.suspend(ctx)
	l.transition(ctx, StatusReauthRequired, "enroll_failed", l.st.LastError)
}

// refresh makes one refresh attempt (with the activity's own retries) and
// settles every request that was waiting when it started.
func (l *link) refresh(ctx workflow.Context) {
	l.attempts++
	attempt := l.attempts
	from := l.st.Status
	l.transition(ctx, StatusRefreshing, "refresh_started", "")

	var info TokenInfo
	err := workflow.ExecuteActivity(l.activityCtx(ctx), ActivityRefresh,
		RefreshInput{LinkRef: l.ref(), KnownVersion: l.st.VaultVersion}).Get(ctx, &info)
	l.cycles++
	defer func() { l.settleWaiters(attempt, err) }()
	if err == nil {
		l.adopt(info)
		l.st.Refreshes++
		l.st.Failures = 0
		l.st.RetryNotBefore = time.Time{}
		l.st.LastError = ""
		event := "refreshed"
		if info.Reenrolled {
			event = "reenrolled"
		} else if from == StatusDegraded {
			event = "recovered"
		}
		l.transition(ctx, StatusActive, event, "")
		return
	}

	l.st.LastError = errorMessage(err)
	l.st.Failures++
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case ErrTypeInvalidGrant, ErrTypePermanent:
			l.suspend(ctx)
			l.transition(ctx, StatusReauthRequired, "reauth_required", l.st.LastError)
			return
		case ErrTypeConfig:
			l.transition(ctx, StatusFailed, "failed", l.st.LastError)
			return
		}
	}
	// Transient: the provider (or Vault) is struggling. Keep the token
	// we have and try again after a backoff, or after the provider's
	// Retry-After if it asked for longer.
	now := workflow.Now(ctx)
	wait := Backoff(l.st.Failures, now, l.st.ExpiresAt)
	if appErr != nil && appErr.NextRetryDelay() > wait {
		wait = appErr.NextRetryDelay()
	}
	l.st.RetryNotBefore = now.Add(wait)
	l.transition(ctx, StatusDegraded, "refresh_failed", l.st.LastError)
}

// suspend stops the gateway from serving the access token of a link that
// needs re-authorization: the provider rejected the grant, and callers
// should hear "reauth_required" rather than get a token that may be dead
// already. The refresh token stays, for a grant an operator can mend.
func (l *link) suspend(ctx workflow.Context) {
	if workflow.GetVersion(ctx, "suspend-on-reauth", workflow.DefaultVersion, 1) < 1 {
		return
	}
	if err := workflow.ExecuteActivity(l.activityCtx(ctx), ActivitySuspend, l.ref()).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("could not suspend the access token", "link", l.p.LinkID, "error", err)
	}
}

// failPendingRequests answers waiting refresh requests when the link can
// no longer refresh (it needs re-authorization).
func (l *link) failPendingRequests() {
	if len(l.waiters) > 0 {
		l.settleWaiters(l.attempts+1, errors.New(l.st.LastError))
	}
}

// revoke revokes at the provider, wipes the secrets and ends the link.
// Revocation is best-effort at the provider (a dead token is as good as a
// revoked one) but the secrets are always wiped.
func (l *link) revoke(ctx workflow.Context) error {
	l.failPendingRequests()
	err := workflow.ExecuteActivity(l.activityCtx(ctx), ActivityRevoke, l.ref()).Get(ctx, nil)
	if err != nil {
		// Revoke retries transient failures itself; what comes back is
		// permanent (e.g. Vault denied the delete). Record and end: the
		// operator sees last_error.
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
func (l *link) adopt(info TokenInfo) {
	l.st.VaultVersion = info.VaultVersion
	l.st.ObtainedAt = info.ObtainedAt
	l.st.ExpiresAt = info.ExpiresAt
	l.st.ExpirySource = info.ExpirySource
	l.st.RefreshExpiry = info.RefreshExpiry
	l.st.Scopes = info.Scopes
	l.st.TokenType = info.TokenType
	l.st.Metadata = info.Metadata
	l.st.Schedule = info.Schedule
}

// transition moves the link to status to, mirrors it into the search
// attributes and records it in the audit trail. Recording runs in the
// background: a Postgres outage must delay the audit trail, never a refresh.
func (l *link) transition(ctx workflow.Context, to Status, event, detail string) {
	from := l.st.Status
	l.st.Status = to
	l.st.Seq++
	if to != StatusActive && to != StatusDegraded {
		l.st.NextRefreshAt = time.Time{}
	}
	l.upsertSearchAttributes(ctx)
	t := Transition{
		LinkRef: l.ref(),
		EventID: fmt.Sprintf("%s/%d", WorkflowID(l.p.TenantID, l.p.LinkID), l.st.Seq),
		Seq:     l.st.Seq,
		Type:    event,
		From:    from,
		To:      to,
		At:      workflow.Now(ctx),
		State:   l.st,
		Detail:  detail,
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			// Unlimited attempts: an audit event is never dropped; the
			// event ID makes every retry idempotent.
		},
	})
	l.records = append(l.records, workflow.ExecuteActivity(actx, ActivityRecord, t))
	l.pruneRecords()
	l.webhook(ctx, actx, t)
}

func (l *link) pruneRecords() {
	kept := l.records[:0]
	for _, f := range l.records {
		if !f.IsReady() {
			kept = append(kept, f)
		}
	}
	l.records = kept
}

// flushRecords waits until every audit record of this run is written and
// every webhook event is handed to its delivery workflow.
func (l *link) flushRecords(ctx workflow.Context) {
	for _, f := range l.records {
		_ = f.Get(ctx, nil)
	}
	l.records = nil
	l.flushWebhooks(ctx)
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
}

// activityCtx is the context for provider-calling activities. They retry
// transient failures themselves a few times; longer outages are the
// workflow's business (degraded, backoff), so that a refresh request never
// waits minutes for an answer.
func (l *link) activityCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		// The activities heartbeat every 2 s while they work, so a worker
		// killed mid-refresh is noticed within 10 s, and a slow provider is
		// never mistaken for a dead worker (which would start a second
		// attempt spending the same refresh token).
		HeartbeatTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			MaximumAttempts:        4,
			NonRetryableErrorTypes: []string{ErrTypeInvalidGrant, ErrTypePermanent, ErrTypeDenied, ErrTypeExpired, ErrTypeConfig},
		},
	})
}

// drain applies signals that arrived but were not yet received, so that
// continue-as-new loses none of them.
func (l *link) drain(ctx workflow.Context, revokeCh, authorizedCh, reauthCh, deniedCh workflow.ReceiveChannel) {
	// A refusal after the link is enrolled changes nothing.
	for deniedCh.ReceiveAsync(nil) {
	}
	for {
		var req RevokeRequest
		if !revokeCh.ReceiveAsync(&req) {
			break
		}
		l.requestRevoke(req)
	}
	for authorizedCh.ReceiveAsync(nil) {
		l.grantReady = true
	}
	for {
		var req ReauthorizeRequest
		if !reauthCh.ReceiveAsync(&req) {
			break
		}
		if req.GrantType != "" {
			l.p.GrantType = req.GrantType
		}
		l.grantReady = true
	}
	for l.wake.ReceiveAsync(nil) {
	}
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
	return err.Error()
}
