package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// errInterrupted: a grant exchange gave way to a revoke or cancellation.
var errInterrupted = errors.New("interrupted by a revoke")

// enroll waits for authorization where the grant needs the end-user, then
// obtains the first token.
func (l *link) enroll(ctx workflow.Context) {
	switch l.p.GrantType {
	case "authorization_code":
		l.transition(ctx, StatusPendingAuthorization, "created", "")
		consented, cancelTimer := l.awaitConsent(ctx)
		if consented {
			l.grantReady = false
			l.enrollNow(ctx, "enrolled")
		}
		// The consent timer is cancelled last, after the exchange, where
		// recorded histories have it.
		cancelTimer()
	case "device_code":
		l.transition(ctx, StatusPendingAuthorization, "created", "")
		l.pollDevice(ctx)
	default:
		l.enrollNow(ctx, "enrolled")
	}
}

// awaitConsent waits for the OAuth callback. It reports whether the code
// is in Vault; otherwise the link has failed or is being revoked. The
// caller cancels the consent timer.
func (l *link) awaitConsent(ctx workflow.Context) (bool, workflow.CancelFunc) {
	deadline := workflow.Now(ctx).Add(l.p.AuthorizationTimeout)
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	timedOut := false
	timer := workflow.NewTimerWithOptions(timerCtx, l.p.AuthorizationTimeout,
		workflow.TimerOptions{Summary: "wait for the end-user's consent until " + clock(deadline)})
	for !l.grantReady && l.revokeRequested == nil && l.denied == nil && !timedOut && ctx.Err() == nil {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(f workflow.Future) { timedOut = f.Get(ctx, nil) == nil })
		l.addSignals(ctx, sel)
		sel.Select(ctx)
	}
	switch {
	case l.revokeRequested != nil || ctx.Err() != nil:
		return false, cancelTimer
	case l.denied != nil && !l.grantReady:
		l.st.LastError = "authorization denied: " + l.denied.Error
		if l.denied.Description != "" {
			l.st.LastError += ": " + l.denied.Description
		}
		l.transition(ctx, StatusFailed, "authorization_denied", l.st.LastError)
		return false, cancelTimer
	case !l.grantReady:
		l.st.LastError = "the end-user did not authorize before " + deadline.UTC().Format(time.RFC3339)
		l.transition(ctx, StatusFailed, "authorization_expired", l.st.LastError)
		return false, cancelTimer
	}
	return true, cancelTimer
}

// slowDownStep is what RFC 8628 section 3.5 adds to the polling interval
// for each slow_down: "for this and all subsequent requests".
const slowDownStep = 5 * time.Second

// pollDevice polls the token endpoint at the interval the provider asks
// for until the end-user approves on their other device.
func (l *link) pollDevice(ctx workflow.Context) {
	deadline := workflow.Now(ctx).Add(l.p.AuthorizationTimeout)
	var slowDowns time.Duration
	for l.revokeRequested == nil && ctx.Err() == nil {
		var poll DevicePoll
		err := l.exchange(ctx, ActivityPollDevice, deadline.Sub(workflow.Now(ctx)), l.ref(), &poll)
		if errors.Is(err, errInterrupted) {
			return
		}
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
		if poll.SlowDown {
			slowDowns += slowDownStep
		}
		interval := poll.Interval
		if interval < time.Second {
			interval = 5 * time.Second
		}
		l.pause(ctx, interval+slowDowns)
	}
}

// pause waits d, or until a message arrives.
func (l *link) pause(ctx workflow.Context, d time.Duration) {
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	timer := workflow.NewTimerWithOptions(timerCtx, d, workflow.TimerOptions{Summary: fmt.Sprintf("poll the device flow again in %s", d)})
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(timer, func(workflow.Future) {})
	l.addSignals(ctx, sel)
	sel.Select(ctx)
}

// enrollNow runs the Enroll activity: the grant material is in Vault.
//
// Lean since "lean-enroll", as a routine refresh is (refresh.go): the
// activity also writes the "enrolled" record and answers whether the
// tenant's webhook wants the event, so an enrollment costs one activity
// where it cost three (Enroll, RecordTransition, WebhookSubscribed) and a
// workflow task less, and the search attributes are upserted once, when
// the link goes to sleep. The workflow records and asks itself only when
// the activity could not (PostgreSQL down).
func (l *link) enrollNow(ctx workflow.Context, event string) {
	lean := workflow.GetVersion(ctx, "lean-enroll", workflow.DefaultVersion, 1) >= 1
	var in any = l.ref()
	if lean {
		in = EnrollInput{LinkRef: l.ref(), Record: l.plannedEnrollment(ctx, event), Webhook: l.webhookCheck(event)}
	}
	var info TokenInfo
	l.enrolling = true
	err := l.exchange(ctx, ActivityEnroll, l.p.AuthorizationTimeout, in, &info)
	l.enrolling = false
	if errors.Is(err, errInterrupted) {
		return
	}
	if err != nil {
		l.enrollFailed(ctx, err)
		return
	}
	l.adopt(info)
	l.st.Failures = 0
	l.st.LastError = ""
	if !lean {
		l.transition(ctx, StatusActive, event, "")
		return
	}
	l.activated(ctx, event, info, time.Time{})
}

// plannedEnrollment is the transition a successful enrollment records:
// the activity completes it (time, the token's metadata) and writes it.
func (l *link) plannedEnrollment(ctx workflow.Context, event string) *Transition {
	seq := l.st.Seq + 1
	return &Transition{LinkRef: l.ref(), EventID: l.eventID(seq), Seq: seq, Type: event,
		From: l.st.Status, To: StatusActive, At: workflow.Now(ctx), State: l.st}
}

// exchange runs a grant exchange (Enroll, PollDevice). Network errors,
// 5xx, 429 and timeouts are retried with backoff for up to window (the
// authorization window: an enrollment is worth waiting for, and the
// provider's own expiry of a code or device code ends it sooner with a
// permanent error); only permanent errors come back before that. A revoke
// or cancellation interrupts the wait (errInterrupted).
func (l *link) exchange(ctx workflow.Context, name string, window time.Duration, in, out any) error {
	opts := activityOptions()
	if workflow.GetVersion(ctx, "enroll-retries-window", workflow.DefaultVersion, 1) != workflow.DefaultVersion {
		opts.RetryPolicy.MaximumAttempts = 0
		opts.ScheduleToCloseTimeout = max(window, time.Minute)
	}
	opts.Summary = fmt.Sprintf("%s at %s (%s grant)", name, l.p.Provider, l.p.GrantType)
	actx, cancel := workflow.WithCancel(workflow.WithActivityOptions(ctx, opts))
	f := workflow.ExecuteActivity(actx, name, in)
	if !l.awaitActivity(ctx, f, cancel) {
		return errInterrupted
	}
	return f.Get(ctx, out)
}

func (l *link) enrollFailed(ctx workflow.Context, err error) {
	l.st.LastError = errorMessage(err)
	var appErr *temporal.ApplicationError
	transient := !errors.As(err, &appErr) || !appErr.NonRetryable()
	switch {
	case (l.st.Status == StatusActive || l.st.Status == StatusDegraded) &&
		workflow.GetVersion(ctx, "failed-reauth-keeps-grant", workflow.DefaultVersion, 1) != workflow.DefaultVersion:
		// A new consent for a link whose grant still works failed (the
		// provider refused the code, another end-user authorized, the
		// exchange ran out of its window): the link keeps the grant it
		// has, and its audit trail says why the new one was not taken.
		// Before, it went to reauth_required and its working token was
		// suspended: one wrong click in a consent screen broke a link.
		l.transition(ctx, l.st.Status, "reauthorize_failed", l.st.LastError)
	case l.st.ExpiresAt.IsZero():
		// A link that never had a token has nothing to keep alive: its
		// first enrollment failing ends it (the caller creates a new one).
		l.transition(ctx, StatusFailed, "enroll_failed", l.st.LastError)
	case l.st.Status == StatusReauthRequired && transient &&
		workflow.GetVersion(ctx, "enroll-retries-window", workflow.DefaultVersion, 1) != workflow.DefaultVersion:
		// Re-enrollment ran out of its window on transient failures: the
		// link still waits for re-authorization, and says why.
		l.transition(ctx, StatusReauthRequired, "reenroll_failed", l.st.LastError)
	default:
		// A link that had a token waits for re-authorization.
		l.needReauth(ctx, "enroll_failed")
	}
}
