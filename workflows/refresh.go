package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// A routine refresh is the link's whole cost in Temporal, for years and for
// every link, so it is kept lean: one activity (Refresh, which also writes
// its own audit record), one search-attribute upsert (status, next refresh
// and expiry at once, when the link goes back to sleep), one timer. That
// is 12 history events and 3 billable actions per cycle, where runs that
// began before "lean-cycle" spend about 25 events and 7 actions (a
// "refreshing" transition with its own record and upsert, a second record
// activity and a second upsert).
//
// The audit trail stays complete: the workflow hands the activity the
// transition it will record (its sequence number reserved), and records it
// itself, in the background, only when the activity could not (PostgreSQL
// down: the activity never lets the audit trail fail or delay a refresh).
// Both write the same event ID, so a record is never written twice.

// lean reports whether this run refreshes the lean way.
func (l *link) lean(ctx workflow.Context) bool {
	return workflow.GetVersion(ctx, "lean-cycle", workflow.DefaultVersion, 1) >= 1
}

// refresh makes one refresh attempt (with the activity's own retries) and
// settles every request that was waiting when it started.
func (l *link) refresh(ctx workflow.Context) {
	l.attempts++
	attempt := l.attempts
	from := l.st.Status
	lean := l.lean(ctx)
	in := RefreshInput{LinkRef: l.ref(), KnownVersion: l.st.VaultVersion}
	if lean {
		in.Record = l.plannedRecord(ctx, from)
	} else {
		l.transition(ctx, StatusRefreshing, "refresh_started", "")
	}

	var info TokenInfo
	err := workflow.ExecuteActivity(withSummary(l.activityCtx(ctx), l.refreshSummary()), ActivityRefresh, in).Get(ctx, &info)
	l.cycles++
	defer func() { l.settleWaiters(attempt, err) }()
	if err == nil {
		l.refreshed(ctx, from, info, lean)
		return
	}
	l.refreshFailed(ctx, err)
}

// plannedRecord is the transition a successful refresh records: the
// activity completes it (time, new token's metadata) and writes it.
func (l *link) plannedRecord(ctx workflow.Context, from Status) *Transition {
	seq := l.st.Seq + 1
	return &Transition{LinkRef: l.ref(), EventID: l.eventID(seq), Seq: seq, Type: refreshEvent(from, false),
		From: from, To: StatusActive, At: workflow.Now(ctx), State: l.st, ScheduledFor: l.st.NextRefreshAt}
}

func refreshEvent(from Status, reenrolled bool) string {
	switch {
	case reenrolled:
		return "reenrolled"
	case from == StatusDegraded:
		return "recovered"
	}
	return "refreshed"
}

// refreshed adopts the token a refresh stored.
func (l *link) refreshed(ctx workflow.Context, from Status, info TokenInfo, lean bool) {
	scheduled := l.st.NextRefreshAt
	// The state the activity recorded (State.Refreshed), but for the
	// status and sequence number, which the transition sets.
	st := l.st.Refreshed(info, l.st.Seq)
	st.Status = l.st.Status
	l.st = st
	event := refreshEvent(from, info.Reenrolled)
	if !lean {
		l.transition(ctx, StatusActive, event, "")
		return
	}
	l.activated(ctx, event, info, scheduled)
}

// activated moves the link to active after a lean refresh or enrollment,
// whose activity wrote the transition's record itself: the workflow
// writes it only when the activity could not, and hands the webhook event
// on (asking about the subscription unless the activity answered).
func (l *link) activated(ctx workflow.Context, event string, info TokenInfo, scheduled time.Time) {
	t := l.advance(ctx, StatusActive, event, "")
	// The sleep that follows computes the same instant (same clock, same
	// sequence number); the record carries it too.
	l.st.NextRefreshAt = l.due(workflow.Now(ctx))
	t.State.NextRefreshAt = l.st.NextRefreshAt
	t.ScheduledFor = scheduled
	if !info.Recorded {
		l.record(ctx, t)
	}
	l.webhookAnswered(ctx, t, info.Subscribed)
}

// refreshFailed moves the link to reauth_required, failed or degraded.
func (l *link) refreshFailed(ctx workflow.Context, err error) {
	l.st.LastError = errorMessage(err)
	l.st.Failures++
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case ErrTypeInvalidGrant, ErrTypePermanent:
			l.needReauth(ctx, "reauth_required")
			return
		case ErrTypeConfig:
			l.transition(ctx, StatusFailed, "failed", l.st.LastError)
			return
		}
	}
	if ctx.Err() != nil {
		// Cancelled mid-refresh: the link is being revoked, not degraded.
		return
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
