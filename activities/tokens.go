package activities

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// vaultWriteBudget is how long an activity keeps trying to store a token
// it already obtained. Once a provider has rotated the refresh token, the
// new one exists only in this process: giving up would lose the link.
const vaultWriteBudget = 90 * time.Second

// vaultAttemptTimeout bounds one Vault write of a token, so that a
// request stuck on a dead connection is retried within vaultWriteBudget
// instead of using it up.
const vaultAttemptTimeout = 10 * time.Second

// expiryRounding allows for a provider that computes a token's expiry
// from whole seconds (oidc-provider: exp = floor(now) + expires_in): its
// token may die up to a second before "sent + expires_in".
const expiryRounding = time.Second

// store completes a token (expiry, refresh token kept on rotation-less
// replies) and writes it to Vault with check-and-set version cas (-1:
// unconditionally). sent is when the token request was sent: the provider
// started the token's life no earlier, so expiry counts from then (see
// conservativeExpiry). enrollment, for the first token of an enrollment,
// is stored beside it (secrets.Store.WriteEnrolledToken).
//
// Once the provider has answered, this process holds the only copy of the
// new token (a rotated refresh token above all): every Vault failure is
// retried, heartbeating, for vaultWriteBudget, a 403 after logging in
// again (secrets.Store.Reauth), rather than drop the token on the floor.
func (a *Activities) store(ctx context.Context, ref workflows.LinkRef, p providers.Provider, entry providers.Entry,
	tok *providers.Token, cas int, sent time.Time, enrollment string) (workflows.TokenInfo, error) {
	obtained := a.now()
	t := *tok
	t.IssuedAt = sent
	source := "provider"
	if t.Expiry.IsZero() {
		t.Expiry, source = a.expiry(ctx, p, entry, t.AccessToken, sent)
	} else {
		t.Expiry = conservativeExpiry(t.Expiry, sent, obtained)
	}

	deadline := time.Now().Add(vaultWriteBudget)
	wait := 250 * time.Millisecond
	for {
		wctx, cancel := context.WithTimeout(ctx, vaultAttemptTimeout)
		var ver int
		var err error
		if enrollment != "" {
			ver, err = a.Secrets.WriteEnrolledToken(wctx, ref.TenantID, ref.LinkID, t, cas, enrollment)
		} else {
			ver, err = a.Secrets.WriteToken(wctx, ref.TenantID, ref.LinkID, t, cas)
		}
		cancel()
		if err == nil {
			info := a.info(t, ver, entry, false)
			info.ObtainedAt = obtained
			info.ExpirySource = source
			return info, nil
		}
		if errors.Is(err, secrets.ErrVersionConflict) {
			// Someone stored a newer token (a re-authorization) while we
			// refreshed: theirs wins, ours was derived from an older grant.
			// (After a lost reply to our own write, the newer one is ours.)
			cur, rerr := a.Secrets.ReadToken(ctx, ref.TenantID, ref.LinkID)
			if rerr != nil {
				return workflows.TokenInfo{}, vaultError("store "+ref.LinkID, rerr)
			}
			return a.info(cur.Value, cur.Version, entry, true), nil
		}
		// Outage, hung connection, sealed, standby, 403 with the new
		// login refused too: all worth another try while the budget and
		// the attempt last.
		if ctx.Err() != nil || time.Now().After(deadline) {
			return workflows.TokenInfo{}, vaultError("store "+ref.LinkID, err)
		}
		activity.GetLogger(ctx).Warn("vault write failed; retrying the token write", "link", ref.LinkID, "error", err.Error())
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx)
		}
		select {
		case <-ctx.Done():
			return workflows.TokenInfo{}, vaultError("store "+ref.LinkID, ctx.Err())
		case <-time.After(wait):
		}
		if wait < 5*time.Second {
			wait *= 2
		}
	}
}

// conservativeExpiry corrects an expiry a provider package computed as
// "reply received + expires_in" (or read from a JWT exp claim): the
// provider's clock started at some moment between sent and obtained, so
// the token dies no later than sent + expires_in, and a provider that
// rounds to whole seconds may end it a second sooner. Shifting by the
// round trip plus expiryRounding never makes a token look longer-lived
// than it is.
func conservativeExpiry(expiry, sent, obtained time.Time) time.Time {
	rtt := obtained.Sub(sent)
	if rtt < 0 {
		rtt = 0
	}
	return expiry.Add(-rtt - expiryRounding)
}

// expiry finds out when a token without expires_in expires: by asking the
// provider (RFC 7662 introspection) and otherwise by assuming the catalog's
// default lifetime. Never "no expiry": a link that does not know when its
// token dies would never refresh it.
func (a *Activities) expiry(ctx context.Context, p providers.Provider, entry providers.Entry, accessToken string, now time.Time) (time.Time, string) {
	if in, ok := p.(providers.Introspector); ok {
		if res, err := in.Introspect(ctx, accessToken); err == nil && res.Active && !res.Expiry.IsZero() {
			return res.Expiry, "introspection"
		}
	}
	lifetime := entry.Schedule.DefaultLifetime
	if lifetime <= 0 {
		lifetime = providers.DefaultSchedule().DefaultLifetime
	}
	return now.Add(lifetime), "default"
}

// info is the metadata of a stored token: what the workflow may know.
func (a *Activities) info(t providers.Token, version int, entry providers.Entry, adopted bool) workflows.TokenInfo {
	info := workflows.TokenInfo{
		VaultVersion:  version,
		ObtainedAt:    a.now(),
		ExpiresAt:     t.Expiry,
		ExpirySource:  "provider",
		RefreshExpiry: t.RefreshExpiry,
		Scopes:        t.Scopes,
		TokenType:     t.TokenType,
		Metadata:      t.Extra,
		Schedule:      entry.Schedule,
	}
	if adopted {
		info.ExpirySource = "stored"
		if !t.IssuedAt.IsZero() {
			// The schedule sizes its margin on the lifetime: the token's,
			// not what is left of it.
			info.ObtainedAt = t.IssuedAt
		}
	}
	return info
}

// providerError turns a classified provider failure into the application
// error the workflow acts on. The message is the *providers.Error text:
// status, OAuth error code and description, never a body or a token.
func providerError(op string, err error) error {
	msg := op + ": " + err.Error()
	var pe *providers.Error
	errors.As(err, &pe)
	switch providers.ClassOf(err) {
	case providers.InvalidGrant:
		return temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeInvalidGrant, nil)
	case providers.Permanent:
		return temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypePermanent, nil)
	case providers.Misconfigured:
		return temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeConfig, nil)
	case providers.RateLimited:
		opts := temporal.ApplicationErrorOptions{}
		if pe != nil && pe.RetryAfter > 0 {
			opts.NextRetryDelay = pe.RetryAfter
		}
		return temporal.NewApplicationErrorWithOptions(msg, "RateLimited", opts)
	}
	return temporal.NewApplicationError(msg, "Transient")
}

// vaultError classifies a Vault failure: missing material is a broken
// link; anything else (outage, sealed) is worth retrying.
func vaultError(op string, err error) error {
	if errors.Is(err, secrets.ErrNotFound) {
		return temporal.NewNonRetryableApplicationError(op+": "+err.Error(), workflows.ErrTypeConfig, nil)
	}
	return temporal.NewApplicationError(op+": "+err.Error(), "VaultUnavailable")
}

// heartbeatInterval is how often a running provider activity tells Temporal
// it is alive, well inside the workflow's heartbeat timeout.
const heartbeatInterval = 2 * time.Second

// lease is how long an attempt may still act as the link's one refresher.
//
// Two attempts never hold the same refresh token: Temporal starts another
// attempt of an activity once it has heard no heartbeat for the heartbeat
// timeout (10 s, workflows.activityCtx), whether or not this one still
// runs. So an attempt that cannot reach Temporal must stop before then.
// The rule: an attempt may send a token request only while
// now < last confirmed heartbeat + heartbeat timeout / 2, where "confirmed"
// means the heartbeat RPC returned success, and the time counted is when
// that RPC was sent (the server restarted its timer no earlier). The other
// half of the timeout is the margin for the request and the Vault write
// that follow it. The check is in Refresh right before the provider call,
// and again before the Vault write; past it, a token request is not sent
// (the attempt fails, nothing spent), while a token already obtained is
// still written, with check-and-set: it is the only copy of a rotated
// refresh token, and dropping it would lose the link for sure.
//
// activity.RecordHeartbeat cannot confirm anything: the Go SDK batches
// heartbeats (one RPC per 0.8 x timeout) and reports a failed RPC only by
// cancelling the context after retrying it for that long, so a cut-off
// attempt would learn of it after the next attempt began. keepAlive
// therefore also heartbeats through the worker's client
// (Client.RecordActivityHeartbeat), which answers synchronously.
type lease struct {
	mu    sync.Mutex
	until time.Time // zero: no limit (no heartbeat timeout, or no client)
	// details go with every heartbeat: what the next attempt must know
	// (see lostReply).
	details []any
	confirm func()
}

// remember makes v the heartbeat details of this attempt and sends them
// at once, synchronously: Temporal hands the last details an attempt
// recorded to the next attempt.
func (l *lease) remember(v any) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.details = []any{v}
	confirm := l.confirm
	l.mu.Unlock()
	if confirm != nil {
		confirm()
	}
}

func (l *lease) heartbeatDetails() []any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.details
}

// lost reports whether the attempt has gone too long without confirmed
// contact with Temporal.
func (l *lease) lost(now time.Time) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.until.IsZero() && !now.Before(l.until)
}

func (l *lease) extend(until time.Time) {
	l.mu.Lock()
	if until.After(l.until) {
		l.until = until
	}
	l.mu.Unlock()
}

// errLeaseLost fails an attempt that may no longer send a token request.
func errLeaseLost(op string) error {
	return temporal.NewApplicationError(op+": no heartbeat confirmed by Temporal within half the heartbeat timeout; "+
		"another attempt may be starting, so this one sends no token request", "LeaseLost")
}

// keepAlive heartbeats until stop is called. A slow provider call then
// never looks like a dead worker, so Temporal never starts a second
// attempt while the first may still spend the refresh token; and a worker
// that does die is noticed within the heartbeat timeout. The returned
// lease tracks confirmed heartbeats (see lease).
func keepAlive(ctx context.Context) (l *lease, stop func()) {
	l = &lease{}
	if !activity.IsActivity(ctx) {
		return l, func() {}
	}
	activity.RecordHeartbeat(ctx)
	info := activity.GetInfo(ctx)
	c := activity.GetClient(ctx)
	half := info.HeartbeatTimeout / 2
	confirm := func() {}
	if half > 0 && c != nil && len(info.TaskToken) > 0 {
		// The attempt started at the server at StartedTime: the heartbeat
		// timer runs from then (or from now, if the clocks disagree).
		start := time.Now()
		if !info.StartedTime.IsZero() && info.StartedTime.Before(start) {
			start = info.StartedTime
		}
		l.until = start.Add(half)
		confirm = func() {
			sent := time.Now()
			hctx, cancel := context.WithTimeout(ctx, heartbeatInterval)
			defer cancel()
			if err := c.RecordActivityHeartbeat(hctx, info.TaskToken, l.heartbeatDetails()...); err == nil {
				l.extend(sent.Add(half))
			}
		}
		l.confirm = confirm
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		confirm()
		t := time.NewTicker(heartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				confirm()
				activity.RecordHeartbeat(ctx, l.heartbeatDetails()...)
			}
		}
	}()
	// Wait for the goroutine: a heartbeat after the activity returned is
	// an error in the worker's log.
	return l, func() { close(done); wg.Wait() }
}
