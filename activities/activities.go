// Package activities does every piece of I/O of the link workflow: provider
// calls, Vault reads and writes, and the Postgres audit trail. Each provider
// activity calls the provider and writes the result to Vault in the same
// attempt, and returns metadata only: tokens never leave this package.
//
// Errors are classified once, here, into typed application errors the
// workflow can act on (workflows.ErrType*); their messages are built from
// wire facts (status, OAuth error code), never from a response body.
package activities

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Catalog finds a configured provider by name.
type Catalog interface {
	Get(name string) (providers.Provider, providers.Entry, bool)
}

// Activities holds the dependencies of the link activities; register one
// value with the worker.
type Activities struct {
	Providers Catalog
	Secrets   *secrets.Store
	Store     *store.Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// WebhooksToInternal lets webhooks reach loopback and private
	// addresses: for development and tests, never for a multi-tenant
	// deployment (TOKENWARDEN_WEBHOOKS_TO_INTERNAL).
	WebhooksToInternal bool
	// Metrics, when set, counts webhook deliveries (see metrics.go for
	// the rest, measured around the activities); nil records nothing.
	Metrics *Metrics
}

func (a *Activities) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Activities) provider(name string) (providers.Provider, providers.Entry, error) {
	p, e, ok := a.Providers.Get(name)
	if !ok {
		return nil, providers.Entry{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("provider %q is not in the catalog", name), workflows.ErrTypeConfig, nil)
	}
	return p, e, nil
}

// Enroll obtains a link's first token (or a new one after re-authorization)
// from the grant material the gateway stored in Vault, and stores it.
//
// Enrollment is idempotent: an authorization code is single-use, so a
// retried attempt whose predecessor already exchanged it and stored the
// token (then died, or lost its reply) adopts that token instead of
// sending the spent code again (see enrolledEarlier).
//
// A lean enrollment (EnrollInput.Record and Webhook set) also writes its
// audit record and answers the webhook subscription question, so that the
// workflow needs no other activity; either may fail without failing the
// enrollment, and the workflow then does it itself.
func (a *Activities) Enroll(ctx context.Context, in workflows.EnrollInput) (workflows.TokenInfo, error) {
	info, err := a.enroll(ctx, in.LinkRef)
	if err != nil {
		return info, err
	}
	if in.Record != nil {
		info.Recorded = a.recordPlanned(ctx, *in.Record, func(st workflows.State, seq int64) workflows.State { return st.Enrolled(info, seq) })
	}
	if in.Webhook != nil {
		wctx, cancel := context.WithTimeout(ctx, auditWriteTimeout)
		defer cancel()
		if subscribed, err := a.WebhookSubscribed(wctx, *in.Webhook); err == nil {
			info.Subscribed = &subscribed
		}
	}
	return info, nil
}

func (a *Activities) enroll(ctx context.Context, ref workflows.LinkRef) (workflows.TokenInfo, error) {
	lease, stop := keepAlive(ctx)
	defer stop()
	p, entry, err := a.provider(ref.Provider)
	if err != nil {
		return workflows.TokenInfo{}, err
	}
	grant, err := a.Secrets.ReadGrant(ctx, ref.TenantID, ref.LinkID)
	if err != nil {
		return workflows.TokenInfo{}, vaultError("enroll "+ref.LinkID, err)
	}
	info, subject, done, err := a.enrolledEarlier(ctx, ref, entry, grant)
	if err != nil {
		return workflows.TokenInfo{}, vaultError("enroll "+ref.LinkID, err)
	}
	if !done {
		bound, err := a.boundSubject(ctx, ref, p)
		if err != nil {
			return workflows.TokenInfo{}, err
		}
		// A successor that finds no token would send the code again.
		if lease.lost(time.Now()) {
			return workflows.TokenInfo{}, errLeaseLost("enroll " + ref.LinkID)
		}
		sent := a.now()
		tok, err := p.Exchange(ctx, grant.Value)
		if err != nil {
			return workflows.TokenInfo{}, providerError("enroll "+ref.LinkID, err)
		}
		if err := a.checkSubject(ctx, ref, p, bound, grant.Value, tok); err != nil {
			return workflows.TokenInfo{}, err
		}
		if info, err = a.store(ctx, ref, p, entry, tok, -1, sent, enrollmentOf(grant.Version)); err != nil {
			return info, err
		}
		subject = tok.Subject
	}
	if err := a.bindSubject(ctx, ref, subject); err != nil {
		return workflows.TokenInfo{}, err
	}
	// A code, its verifier and nonce are single-use, and so is a
	// permission to change the end-user: drop them now that they are
	// spent, keeping what re-enrollment may need (passwords, parameters).
	if g := grant.Value; g.Code != "" || g.CodeVerifier != "" || g.Nonce != "" || g.AllowSubjectChange {
		g.Code, g.CodeVerifier, g.Nonce, g.AllowSubjectChange = "", "", "", false
		if _, err := a.Secrets.WriteGrant(ctx, ref.TenantID, ref.LinkID, g, grant.Version); err != nil {
			activity.GetLogger(ctx).Warn("could not drop spent authorization code", "link", ref.LinkID, "error", err)
		}
	}
	return info, nil
}

// enrollmentOf names the grant material a token was enrolled from: its
// Vault version, which every new authorization (a new code, device code
// or password the gateway stores) changes. Not a secret.
func enrollmentOf(grantVersion int) string {
	return "grant-v" + strconv.Itoa(grantVersion)
}

// enrolledEarlier looks for a token an earlier attempt of this enrollment
// stored: one written from this very grant version, or, for an
// authorization code, from the version before the one that merely dropped
// the spent code (Enroll's last step, which creates the next version and
// leaves no code or verifier). A token from an older grant (before a
// re-authorization) carries another version, and a token rewritten since
// (refreshed, suspended) carries none, so neither is adopted; nor is one
// without an access token. An expired one is: its refresh token is good,
// and the workflow refreshes a token it adopts past its expiry at once.
//
// It also returns the adopted token's subject (see bindSubject).
func (a *Activities) enrolledEarlier(ctx context.Context, ref workflows.LinkRef, entry providers.Entry,
	grant secrets.Versioned[providers.Grant]) (workflows.TokenInfo, string, bool, error) {
	cur, err := a.Secrets.ReadToken(ctx, ref.TenantID, ref.LinkID)
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		return workflows.TokenInfo{}, "", false, nil
	case err != nil:
		return workflows.TokenInfo{}, "", false, err
	}
	same := cur.Enrollment == enrollmentOf(grant.Version)
	dropped := grant.Value.Type == providers.GrantAuthorizationCode && grant.Value.Code == "" &&
		grant.Value.CodeVerifier == "" && cur.Enrollment == enrollmentOf(grant.Version-1)
	if cur.Enrollment == "" || !(same || dropped) || cur.Value.AccessToken == "" {
		return workflows.TokenInfo{}, "", false, nil
	}
	activity.GetLogger(ctx).Info("an earlier attempt already enrolled this grant; adopting its token", "link", ref.LinkID)
	return a.info(cur.Value, cur.Version, entry, true), cur.Value.Subject, true, nil
}

// PollDevice makes one device-flow token request (RFC 8628). The workflow
// waits between polls with its own timer. Like Enroll, a retried attempt
// adopts the token an earlier one stored for the same device code.
func (a *Activities) PollDevice(ctx context.Context, ref workflows.LinkRef) (workflows.DevicePoll, error) {
	lease, stop := keepAlive(ctx)
	defer stop()
	p, entry, err := a.provider(ref.Provider)
	if err != nil {
		return workflows.DevicePoll{}, err
	}
	grant, err := a.Secrets.ReadGrant(ctx, ref.TenantID, ref.LinkID)
	if err != nil {
		return workflows.DevicePoll{}, vaultError("poll device "+ref.LinkID, err)
	}
	if info, subject, done, err := a.enrolledEarlier(ctx, ref, entry, grant); err != nil {
		return workflows.DevicePoll{}, vaultError("poll device "+ref.LinkID, err)
	} else if done {
		if err := a.bindSubject(ctx, ref, subject); err != nil {
			return workflows.DevicePoll{}, err
		}
		return workflows.DevicePoll{Token: &info}, nil
	}
	interval := 5 * time.Second
	if d := grant.Value.DeviceInterval; d > 0 {
		interval = d
	}
	if lease.lost(time.Now()) {
		return workflows.DevicePoll{}, errLeaseLost("poll device " + ref.LinkID)
	}
	sent := a.now()
	tok, err := p.Exchange(ctx, grant.Value)
	switch {
	case errors.Is(err, providers.ErrAuthorizationPending):
		return workflows.DevicePoll{Pending: true, Interval: interval}, nil
	case errors.Is(err, providers.ErrSlowDown):
		// The workflow adds 5 s for this and every later poll.
		return workflows.DevicePoll{Pending: true, Interval: interval, SlowDown: true}, nil
	case err != nil:
		var pe *providers.Error
		if errors.As(err, &pe) {
			switch pe.Code {
			case "access_denied":
				return workflows.DevicePoll{}, temporal.NewNonRetryableApplicationError(
					"poll device: the end-user denied access", workflows.ErrTypeDenied, nil)
			case "expired_token":
				return workflows.DevicePoll{}, temporal.NewNonRetryableApplicationError(
					"poll device: the device code expired", workflows.ErrTypeExpired, nil)
			}
		}
		return workflows.DevicePoll{}, providerError("poll device "+ref.LinkID, err)
	}
	info, err := a.store(ctx, ref, p, entry, tok, -1, sent, enrollmentOf(grant.Version))
	if err != nil {
		return workflows.DevicePoll{}, err
	}
	// A device link is enrolled once (it cannot be re-authorized), so
	// its subject is recorded, never checked.
	if err := a.bindSubject(ctx, ref, tok.Subject); err != nil {
		return workflows.DevicePoll{}, err
	}
	return workflows.DevicePoll{Token: &info}, nil
}

// Refresh trades the stored token for a fresh one and stores it with
// check-and-set on the version it read.
//
// Rotation safety: the refresh token is read from Vault at the start of
// every attempt, so a retry after a crash that happened after the Vault
// write uses the rotated token, never the spent one; and a stored version
// newer than the workflow knows is adopted instead of refreshed again.
func (a *Activities) Refresh(ctx context.Context, in workflows.RefreshInput) (workflows.TokenInfo, error) {
	info, err := a.refresh(ctx, in)
	if err == nil && in.Record != nil {
		info.Recorded = a.recordRefresh(ctx, *in.Record, info)
	}
	return info, err
}

// auditWriteTimeout bounds the refresh activity's own audit write: a slow
// or unreachable PostgreSQL leaves the record to the workflow (in the
// background), never delays the refresh's answer for long.
const auditWriteTimeout = 3 * time.Second

// recordRefresh completes the transition the workflow planned for a
// successful refresh and writes it, reporting whether it was written.
func (a *Activities) recordRefresh(ctx context.Context, t workflows.Transition, info workflows.TokenInfo) bool {
	t.Type = recordedType(t.Type, info.Reenrolled)
	return a.recordPlanned(ctx, t, func(st workflows.State, seq int64) workflows.State { return st.Refreshed(info, seq) })
}

// recordPlanned completes a transition the workflow planned (its time, the
// state after it, the next refresh) and writes it within
// auditWriteTimeout, reporting whether it was written; the workflow
// writes what was not.
func (a *Activities) recordPlanned(ctx context.Context, t workflows.Transition, after func(workflows.State, int64) workflows.State) bool {
	t.At = a.now()
	t.State = after(t.State, t.Seq)
	t.State.NextRefreshAt = t.State.ScheduledRefresh(t.LinkID, t.At)
	wctx, cancel := context.WithTimeout(ctx, auditWriteTimeout)
	defer cancel()
	if err := a.RecordTransition(wctx, t); err != nil {
		activity.GetLogger(ctx).Warn("audit record not written; the workflow records it", "link", t.LinkID, "type", t.Type, "error", err.Error())
		return false
	}
	return true
}

// recordedType is the planned event type, or "reenrolled" when
// the refresh had to enroll again from stored credentials.
func recordedType(planned string, reenrolled bool) string {
	if reenrolled {
		return "reenrolled"
	}
	return planned
}

func (a *Activities) refresh(ctx context.Context, in workflows.RefreshInput) (workflows.TokenInfo, error) {
	lease, stop := keepAlive(ctx)
	defer stop()
	ref := in.LinkRef
	p, entry, err := a.provider(ref.Provider)
	if err != nil {
		return workflows.TokenInfo{}, err
	}
	cur, err := a.Secrets.ReadToken(ctx, ref.TenantID, ref.LinkID)
	if err != nil {
		return workflows.TokenInfo{}, vaultError("refresh "+ref.LinkID, err)
	}
	// An earlier attempt of this activity stored a token and died (or lost
	// Temporal) before reporting it: that refresh happened at the provider
	// and counts. A token still fresh is adopted as it is; one short of
	// life is refreshed on, with its own (rotated) refresh token, and the
	// answer counts both refreshes.
	earlier := 0
	if in.KnownVersion > 0 && cur.Version > in.KnownVersion {
		if stillFresh(cur.Value, a.now()) {
			return a.info(cur.Value, cur.Version, entry, true), nil
		}
		earlier = 1
	}

	// The one-refresher rule (see lease): no token request from an
	// attempt that may already have a successor.
	if lease.lost(time.Now()) {
		activity.GetLogger(ctx).Warn("heartbeat lease lost: not sending the refresh token", "link", ref.LinkID)
		return workflows.TokenInfo{}, errLeaseLost("refresh " + ref.LinkID)
	}
	var tok *providers.Token
	reenrolled := false
	sent := a.now()
	switch {
	case cur.Value.RefreshToken != "":
		tok, err = a.refreshOnce(ctx, lease, p, cur, sent)
		if err != nil && providers.ClassOf(err) == providers.InvalidGrant {
			// Before calling the link dead, look again: a newer token in
			// Vault means another attempt spent our refresh token first.
			again, rerr := a.Secrets.ReadToken(ctx, ref.TenantID, ref.LinkID)
			if rerr == nil && again.Version != cur.Version {
				// Its token is not adopted blindly: our request then
				// replayed a spent refresh token, and a provider with
				// strict reuse detection has revoked the whole grant,
				// that token with it (the link would say active and
				// serve a dead token until its next refresh). Refreshing
				// on with it tells: a dead grant answers invalid_grant
				// (the link honestly needs the end-user), a living one
				// a fresh token. Nobody else holds that token: its
				// writer (an attempt Temporal gave up on) was done with
				// it, and our lease says no successor has started. Past
				// the lease one may have, so, as without a refresh
				// token to try, the stored token is adopted as it is.
				if again.Value.RefreshToken == "" || lease.lost(time.Now()) {
					return a.info(again.Value, again.Version, entry, true), nil
				}
				cur, earlier = again, earlier+1
				sent = a.now()
				tok, err = a.refreshOnce(ctx, lease, p, cur, sent)
			}
		}
		if err != nil && providers.ClassOf(err) == providers.InvalidGrant {
			// Grants whose stored credentials still work enroll again
			// without the end-user.
			if t, rerr := a.reenroll(ctx, p, ref); rerr == nil {
				tok, err, reenrolled = t, nil, true
			}
		}
	case reenrollable(ref.GrantType):
		// Client credentials (and password grants whose server issues no
		// refresh token) "refresh" by asking again.
		tok, err = a.exchangeStored(ctx, p, ref)
	default:
		err = &providers.Error{Class: providers.InvalidGrant, Op: "refresh", Code: "no_refresh_token",
			Description: "the provider issued no refresh token; the end-user must authorize again"}
	}
	if errors.Is(err, secrets.ErrNotFound) || errors.Is(err, secrets.ErrUnavailable) {
		return workflows.TokenInfo{}, vaultError("refresh "+ref.LinkID, err)
	}
	if err != nil {
		return workflows.TokenInfo{}, providerError("refresh "+ref.LinkID, err)
	}
	if tok.RefreshToken == "" && !reenrolled {
		// Refresh tokens with care: a reply without one keeps the old
		// (RFC 6749 section 6). Providers do this already; a slip in one
		// must not strand a link.
		t := *tok
		t.RefreshToken = cur.Value.RefreshToken
		tok = &t
	}
	if lease.lost(time.Now()) {
		// Past the lease, a successor may start. The token in hand is the
		// only copy of what the provider just issued (a rotated refresh
		// token): write it anyway, with check-and-set, so a successor
		// that has not read Vault yet adopts it and one that has loses
		// the race cleanly. Dropping it would lose the link for sure.
		activity.GetLogger(ctx).Warn("heartbeat lease lost after the provider answered; storing the token with check-and-set", "link", ref.LinkID)
	}
	info, err := a.store(ctx, ref, p, entry, tok, cur.Version, sent, "")
	info.Refreshes = 1 + earlier
	info.Reenrolled = reenrolled
	info.Rotated = tok.RefreshToken != "" && tok.RefreshToken != cur.Value.RefreshToken
	return info, err
}

// unansweredRefresh is the heartbeat note of an attempt whose refresh
// request got no reply: the provider may have rotated the refresh token
// with the new one lost on the way. It names the token by its Vault
// version, never by value.
type unansweredRefresh struct {
	VaultVersion int       `json:"vault_version"`
	SentAt       time.Time `json:"sent_at"`
}

// lostReplyRetryDelay is the pause before asking again after a refresh
// reply was lost.
const lostReplyRetryDelay = 500 * time.Millisecond

// refreshOnce spends the stored refresh token. When the reply is lost
// after the request may have reached the provider (connection cut,
// timeout), it asks again at once with the same token: a provider with a
// reuse grace window (Okta, Auth0, Keycloak allow one) answers again, and
// nothing is lost. A provider with strict reuse detection answers
// invalid_grant and has revoked the grant: the grant is gone whatever we
// do, and the error then says why, here or (when the retry's reply is
// lost too) in the next attempt, which the heartbeat note tells.
func (a *Activities) refreshOnce(ctx context.Context, l *lease, p providers.Provider, cur secrets.Versioned[providers.Token], sent time.Time) (*providers.Token, error) {
	tok, err := p.Refresh(ctx, &cur.Value)
	note, noted := lostReply(ctx, cur.Version)
	if providers.IsUnanswered(err) && providers.ClassOf(err) == providers.Transient {
		note, noted = unansweredRefresh{VaultVersion: cur.Version, SentAt: sent}, true
		l.remember(note)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(lostReplyRetryDelay):
		}
		if l.lost(time.Now()) {
			return nil, err
		}
		activity.GetLogger(ctx).Warn("refresh reply lost after the request was sent; asking again with the same refresh token", "error", err.Error())
		tok, err = p.Refresh(ctx, &cur.Value)
	}
	if noted && providers.ClassOf(err) == providers.InvalidGrant {
		err = fmt.Errorf("the refresh token was rotated by a reply that never arrived (the refresh sent at %s got no answer, and the provider rejected the same token when asked again): %w",
			note.SentAt.UTC().Format(time.RFC3339), err)
	}
	return tok, err
}

// lostReply returns the note of an earlier attempt whose refresh with the
// refresh token at vaultVersion got no reply.
func lostReply(ctx context.Context, vaultVersion int) (unansweredRefresh, bool) {
	var note unansweredRefresh
	if !activity.IsActivity(ctx) || !activity.HasHeartbeatDetails(ctx) {
		return note, false
	}
	if err := activity.GetHeartbeatDetails(ctx, &note); err != nil || note.VaultVersion != vaultVersion {
		return note, false
	}
	return note, true
}

// stillFresh reports whether t has more than half its lifetime left (or
// an unknown expiry): worth adopting as it is rather than refreshing on.
func stillFresh(t providers.Token, now time.Time) bool {
	if t.Expiry.IsZero() {
		return true
	}
	if t.IssuedAt.IsZero() || !t.Expiry.After(t.IssuedAt) {
		return t.Expiry.After(now)
	}
	return t.Expiry.Sub(now) > t.Expiry.Sub(t.IssuedAt)/2
}

// exchangeStored obtains a token from the link's stored grant material.
func (a *Activities) exchangeStored(ctx context.Context, p providers.Provider, ref workflows.LinkRef) (*providers.Token, error) {
	grant, err := a.Secrets.ReadGrant(ctx, ref.TenantID, ref.LinkID)
	if err != nil {
		return nil, err
	}
	return p.Exchange(ctx, grant.Value)
}

// reenroll obtains a token without the end-user after the refresh token
// was rejected: through the provider's own re-issue call where it has one,
// else by repeating a grant that needs only stored credentials.
func (a *Activities) reenroll(ctx context.Context, p providers.Provider, ref workflows.LinkRef) (*providers.Token, error) {
	if r, ok := p.(providers.Reenroller); ok {
		grant, err := a.Secrets.ReadGrant(ctx, ref.TenantID, ref.LinkID)
		if err != nil {
			return nil, err
		}
		return r.Reenroll(ctx, grant.Value)
	}
	if !reenrollable(ref.GrantType) {
		return nil, providers.ErrUnsupported
	}
	return a.exchangeStored(ctx, p, ref)
}

// reenrollable grants can obtain a new token from stored credentials alone.
func reenrollable(grantType string) bool {
	return grantType == providers.GrantPassword || grantType == providers.GrantClientCredentials
}

// revokeProviderAttempts is how many attempts of Revoke ask the provider
// to revoke; later attempts (Vault was down, or the provider keeps
// failing) only wipe the secrets, which must happen however long it takes.
const revokeProviderAttempts = 4

func revokeGaveUpOnProvider(ctx context.Context) bool {
	if !activity.IsActivity(ctx) || activity.GetInfo(ctx).Attempt <= revokeProviderAttempts {
		return false
	}
	activity.GetLogger(ctx).Warn("revoke: the provider did not confirm after several attempts; wiping the secrets without it")
	return true
}

// Revoke revokes a link's token at the provider (where it can) and
// destroys its secrets. A token the provider no longer knows counts as
// revoked; only transient failures are retried.
func (a *Activities) Revoke(ctx context.Context, ref workflows.LinkRef) error {
	_, stop := keepAlive(ctx)
	defer stop()
	p, _, ok := a.Providers.Get(ref.Provider)
	cur, err := a.Secrets.ReadToken(ctx, ref.TenantID, ref.LinkID)
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		// Never enrolled, or a previous attempt already wiped it.
	case err != nil:
		return vaultError("revoke "+ref.LinkID, err)
	case ok && !revokeGaveUpOnProvider(ctx):
		if r, can := p.(providers.Revoker); can {
			if err := r.Revoke(ctx, &cur.Value); err != nil && !errors.Is(err, providers.ErrUnsupported) {
				switch providers.ClassOf(err) {
				case providers.Transient, providers.RateLimited:
					return providerError("revoke "+ref.LinkID, err)
				default:
					activity.GetLogger(ctx).Info("provider refused revocation; wiping secrets anyway",
						"link", ref.LinkID, "error", err.Error())
				}
			}
		}
	}
	if err := a.Secrets.DeleteLink(ctx, ref.TenantID, ref.LinkID); err != nil {
		return vaultError("revoke "+ref.LinkID, err)
	}
	return nil
}

// Suspend clears a link's access token in Vault (keeping its refresh
// token), so that the gateway answers reauth_required instead of serving
// a token of a grant the provider has rejected. The write is a
// check-and-set: one that loses to a concurrent write (an earlier refresh
// attempt storing the token it got) reads again and clears what won, so
// no token is left behind.
func (a *Activities) Suspend(ctx context.Context, ref workflows.LinkRef) error {
	for {
		cur, err := a.Secrets.ReadToken(ctx, ref.TenantID, ref.LinkID)
		switch {
		case errors.Is(err, secrets.ErrNotFound):
			return nil
		case err != nil:
			return vaultError("suspend "+ref.LinkID, err)
		}
		t := cur.Value
		if t.AccessToken == "" && t.IDToken == "" {
			return nil
		}
		t.AccessToken, t.IDToken = "", ""
		if testHookSuspendRead != nil {
			testHookSuspendRead()
		}
		_, err = a.Secrets.WriteToken(ctx, ref.TenantID, ref.LinkID, t, cur.Version)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, secrets.ErrVersionConflict):
			return vaultError("suspend "+ref.LinkID, err)
		case ctx.Err() != nil:
			return ctx.Err()
		}
	}
}

// testHookSuspendRead, when set by a test, runs between Suspend's read and
// its write: a concurrent writer's moment.
var testHookSuspendRead func()

// RecordTransitions writes the transitions a link's run carried in from
// the previous run, each as RecordTransition does (idempotent, never
// rolling a link back), stopping at the first failure.
func (a *Activities) RecordTransitions(ctx context.Context, ts []workflows.Transition) error {
	for _, t := range ts {
		if err := a.RecordTransition(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// RecordTransition writes a transition to the audit trail and the links
// table in one transaction. The event ID makes it idempotent, and the
// sequence number keeps a delayed write from rolling the link back.
func (a *Activities) RecordTransition(ctx context.Context, t workflows.Transition) error {
	st := store.LinkState{
		TenantID:         t.TenantID,
		LinkID:           t.LinkID,
		Seq:              t.Seq,
		Status:           string(t.To),
		ExpiresAt:        timePtr(t.State.ExpiresAt),
		RefreshExpiresAt: timePtr(t.State.RefreshExpiry),
		NextRefreshAt:    timePtr(t.State.NextRefreshAt),
		LastError:        t.State.LastError,
		RefreshCount:     t.State.Refreshes,
	}
	if len(t.State.Scopes) > 0 {
		// The granted scopes, as the token reply said: after an
		// incremental consent the link shows what it now holds.
		st.Scopes = t.State.Scopes
	}
	if len(t.State.Metadata) > 0 {
		st.Metadata = make(map[string]any, len(t.State.Metadata))
		for k, v := range t.State.Metadata {
			st.Metadata[k] = v
		}
	}
	detail := map[string]any{}
	if t.Detail != "" {
		detail["message"] = t.Detail
	}
	if !t.State.ExpiresAt.IsZero() {
		detail["expires_at"] = t.State.ExpiresAt
	}
	if !t.ScheduledFor.IsZero() {
		detail["scheduled_for"] = t.ScheduledFor
	}
	ev := store.Event{
		ID:         t.EventID,
		TenantID:   t.TenantID,
		LinkID:     t.LinkID,
		Type:       t.Type,
		FromStatus: string(t.From),
		ToStatus:   string(t.To),
		Detail:     detail,
		OccurredAt: t.At,
	}
	if err := a.Store.RecordTransition(ctx, st, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// The gateway creates the row before the workflow; a link
			// started some other way has no row to update. Not fatal.
			activity.GetLogger(ctx).Warn("link row missing; transition not recorded", "link", t.LinkID)
			return nil
		}
		return fmt.Errorf("record %s: %w", t.EventID, err)
	}
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
