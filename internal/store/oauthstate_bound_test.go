package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBoundOAuthState: a browser-bound state starts once, is spent only
// with the cookie its start bound, and is invisible to the unbound
// consumer (and the other way round).
func TestBoundOAuthState(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const (
		state   = "st_bound-0123456789abcdefghijklmnop"
		cookie  = "binding-0123456789abcdefghijklmnop"
		other   = "binding-of-another-browser-0123456"
		authURL = "https://luca.example/authorize?redirect_uri=x%2FSTATE&state=STATE"
	)
	require.Error(t, s.PutOAuthState(ctx, state, OAuthState{TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now.Add(time.Hour), BrowserBound: true}),
		"a bound state needs its URL")
	require.NoError(t, s.PutOAuthState(ctx, state, OAuthState{TenantID: l.TenantID, LinkID: l.ID,
		ExpiresAt: now.Add(time.Hour), BrowserBound: true, AuthURL: authURL}))
	requireNotStored(t, pool, state)

	// Not started: no browser can spend it.
	_, err = s.ConsumeBoundOAuthState(ctx, state, cookie, now)
	require.ErrorIs(t, err, ErrStateBrowser)
	// The unbound consumer does not know it.
	_, err = s.ConsumeOAuthState(ctx, state, now)
	require.ErrorIs(t, err, ErrNotFound)

	got, err := s.StartOAuthState(ctx, state, cookie, now)
	require.NoError(t, err)
	require.Equal(t, authURL, got.AuthURL)
	require.NotNil(t, got.StartedAt)
	requireNotStored(t, pool, cookie)
	_, err = s.StartOAuthState(ctx, state, other, now)
	require.ErrorIs(t, err, ErrStateStarted, "a second browser cannot start it")

	_, err = s.ConsumeBoundOAuthState(ctx, state, other, now)
	require.ErrorIs(t, err, ErrStateBrowser)
	_, err = s.ConsumeBoundOAuthState(ctx, state, cookie, now.Add(2*time.Hour))
	require.ErrorIs(t, err, ErrStateExpired)
	got, err = s.ConsumeBoundOAuthState(ctx, state, cookie, now)
	require.NoError(t, err, "refusals do not burn the state")
	require.Equal(t, l.ID, got.LinkID)
	_, err = s.ConsumeBoundOAuthState(ctx, state, cookie, now)
	require.ErrorIs(t, err, ErrStateUsed)

	// An unbound state is unknown to the bound consumer and start page.
	const plain = "st_plain-0123456789abcdefghijklmnop"
	require.NoError(t, s.PutOAuthState(ctx, plain, OAuthState{TenantID: l.TenantID, LinkID: l.ID, ExpiresAt: now.Add(time.Hour)}))
	_, err = s.StartOAuthState(ctx, plain, cookie, now)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.ConsumeBoundOAuthState(ctx, plain, cookie, now)
	require.ErrorIs(t, err, ErrNotFound)
}
