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

// store completes a token (expiry, refresh token kept on rotation-less
// replies) and writes it to Vault with check-and-set version cas (-1:
// unconditionally). It retries Vault outages within the attempt,
// heartbeating, rather than fail and drop the token on the floor.
func (a *Activities) store(ctx context.Context, ref workflows.LinkRef, p providers.Provider, entry providers.Entry,
	tok *providers.Token, cas int) (workflows.TokenInfo, error) {
	obtained := a.now()
	t := *tok
	t.IssuedAt = obtained
	source := "provider"
	if t.Expiry.IsZero() {
		t.Expiry, source = a.expiry(ctx, p, entry, t.AccessToken, obtained)
	}

	deadline := time.Now().Add(vaultWriteBudget)
	wait := 250 * time.Millisecond
	for {
		ver, err := a.Secrets.WriteToken(ctx, ref.TenantID, ref.LinkID, t, cas)
		if err == nil {
			info := a.info(t, ver, entry, false)
			info.ObtainedAt = obtained
			info.ExpirySource = source
			return info, nil
		}
		if errors.Is(err, secrets.ErrVersionConflict) {
			// Someone stored a newer token (a re-authorization) while we
			// refreshed: theirs wins, ours was derived from an older grant.
			cur, rerr := a.Secrets.ReadToken(ctx, ref.TenantID, ref.LinkID)
			if rerr != nil {
				return workflows.TokenInfo{}, vaultError("store "+ref.LinkID, rerr)
			}
			return a.info(cur.Value, cur.Version, entry, true), nil
		}
		if !errors.Is(err, secrets.ErrUnavailable) || time.Now().After(deadline) {
			return workflows.TokenInfo{}, vaultError("store "+ref.LinkID, err)
		}
		activity.GetLogger(ctx).Warn("vault unavailable; retrying the token write", "link", ref.LinkID, "error", err.Error())
		activity.RecordHeartbeat(ctx)
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

// keepAlive heartbeats until the returned stop is called. A slow provider
// call then never looks like a dead worker, so Temporal never starts a
// second attempt while the first may still spend the refresh token; and a
// worker that does die is noticed within the heartbeat timeout.
func keepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	activity.RecordHeartbeat(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(heartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	// Wait for the goroutine: a heartbeat after the activity returned is
	// an error in the worker's log.
	return func() { close(done); wg.Wait() }
}
