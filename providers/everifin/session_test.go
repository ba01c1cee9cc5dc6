package everifin_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/everifin"
	"github.com/tokenwarden/tokenwarden/providers/everifin/sim"
)

// clock is a settable clock for the simulator.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestSessionMaxEndsGrant: Keycloak ends the session at SSO Session Max
// however busy it was. The refresh fails as InvalidGrant (the end-user
// must sign in again) with a description naming the session limit.
func TestSessionMaxEndsGrant(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	e := newEnv(t, sim.Options{AccessTTL: 5 * time.Minute, RefreshTTL: 30 * time.Minute, SessionMax: 10 * time.Hour, Now: clk.Now}, "")
	tok := e.enroll(t)
	// Refreshed every 4 minutes: never idle, yet the session ends at 10 h.
	for elapsed := time.Duration(0); elapsed < 10*time.Hour-5*time.Minute; elapsed += 4 * time.Minute {
		clk.add(4 * time.Minute)
		nt, err := e.p.Refresh(ctx, tok)
		require.NoError(t, err, "after %s", elapsed)
		e.track(nt)
		require.False(t, nt.RefreshExpiry.After(clk.Now().Add(10*time.Hour)), "refresh_expires_in never passes SSO Session Max")
		tok = nt
	}
	clk.add(10 * time.Minute)
	_, err := e.p.Refresh(ctx, tok)
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "invalid_grant", pe.Code)
	assert.ErrorIs(t, err, everifin.ErrSessionEnded)
	assert.Contains(t, err.Error(), "session limit ended the grant")
	e.requireNoSecret(t, err)
}

// TestSessionIdleEndsGrant: a session left without a refresh for longer
// than SSO Session Idle (refresh_expires_in) is gone: Keycloak answers
// "Token is not active", and the error names the session limit as for
// SSO Session Max.
func TestSessionIdleEndsGrant(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	e := newEnv(t, sim.Options{AccessTTL: 5 * time.Minute, RefreshTTL: 30 * time.Minute, Now: clk.Now}, "")
	tok := e.enroll(t)
	assert.Equal(t, clk.Now().Add(30*time.Minute).Unix(), tok.RefreshExpiry.Unix(), "refresh_expires_in is the idle timeout")
	clk.add(30*time.Minute + time.Second)
	_, err := e.p.Refresh(ctx, tok)
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "Token is not active", pe.Description)
	assert.ErrorIs(t, err, everifin.ErrSessionEnded)
	assert.Contains(t, err.Error(), "session limit ended the grant")
	e.requireNoSecret(t, err)
}

// TestOfflineAccessOutlivesSessionMax: with the offline_access scope the
// realm makes an offline session that SSO Session Max does not end.
func TestOfflineAccessOutlivesSessionMax(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	e := newEnv(t, sim.Options{SessionMax: time.Hour, OfflineAccess: true, Now: clk.Now},
		"    scopes: [openid, offline_access]\n")
	tok := e.enroll(t)
	assert.True(t, tok.RefreshExpiry.IsZero(), "offline tokens report refresh_expires_in 0")
	for range 30 {
		clk.add(4 * time.Minute)
		nt, err := e.p.Refresh(ctx, tok)
		require.NoError(t, err)
		e.track(nt)
		tok = nt
	}
}

// TestOfflineAccessRefused: a realm that does not grant offline_access
// refuses the code exchange; that is the operator's to fix.
func TestOfflineAccessRefused(t *testing.T) {
	e := newEnv(t, sim.Options{}, "    scopes: [openid, offline_access]\n")
	q := e.authorize(t, "state-1")
	_, err := e.p.Exchange(context.Background(), providers.Grant{
		Type: providers.GrantAuthorizationCode, Code: q.Get("code"), CodeVerifier: verifier, RedirectURL: redirectURL,
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Offline tokens not allowed")
	assert.NotEqual(t, providers.Transient, providers.ClassOf(err))
}

// TestTemporaryLockoutIsRateLimited: Keycloak's brute-force lockout clears
// by itself, so it is RateLimited with the configured backoff, on
// refreshes and on password logins alike, and the link works again after.
func TestTemporaryLockoutIsRateLimited(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{}, "      lockout_backoff: 2m\n")
	tok := e.enroll(t)
	e.sim.TemporarilyLockUser("alice", time.Hour)
	_, err := e.p.Refresh(ctx, tok)
	pe := requireClass(t, err, providers.RateLimited)
	assert.Equal(t, 2*time.Minute, pe.RetryAfter)
	assert.Equal(t, "Account temporarily disabled", pe.Description)
	_, err = e.p.Exchange(ctx, providers.Grant{Type: providers.GrantPassword, Username: "alice", Password: userPassword})
	pe = requireClass(t, err, providers.RateLimited)
	assert.Equal(t, 2*time.Minute, pe.RetryAfter)
	e.requireNoSecret(t, err)

	e.sim.TemporarilyLockUser("alice", 0)
	nt, err := e.p.Refresh(ctx, tok)
	require.NoError(t, err)
	e.track(nt)
}

// TestLockoutDefaultBackoff: without lockout_backoff, Keycloak's default
// Max Wait (15 minutes).
func TestLockoutDefaultBackoff(t *testing.T) {
	err := everifin.UserDisabled(&providers.Error{Class: providers.InvalidGrant, Op: "refresh", Code: "invalid_grant", Description: "Account temporarily disabled"})
	pe := requireClass(t, err, providers.RateLimited)
	assert.Equal(t, everifin.DefaultLockoutBackoff, pe.RetryAfter)
}

// TestPKCEOption: PKCE is on by default; pkce: false leaves the challenge
// and the verifier out.
func TestPKCEOption(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want bool
	}{{"", true}, {"    pkce: false\n", false}} {
		doc := "providers:\n  - name: e\n    kind: everifin\n    client_id: c\n    client_secret: {value: s}\n    grants: [authorization_code]\n" +
			tc.yaml + "    settings: {base_url: 'https://x', realm: r}\n"
		cat, err := providers.Load(strings.NewReader(doc), kinds)
		require.NoError(t, err)
		assert.Equal(t, providers.RedirectStateQuery, cat.Entries()[0].RedirectState, "Keycloak echoes state")
		reg, err := cat.Open(context.Background(), nil, nil)
		require.NoError(t, err)
		p, _, _ := reg.Get("e")
		u, err := p.(providers.Authorizer).AuthCodeURL("state-0123456789abcdef", verifier, redirectURL, nil, nil)
		require.NoError(t, err)
		assert.Equal(t, tc.want, strings.Contains(u, "code_challenge="), u)
	}
}

// TestPKCEOffSendsNoVerifier: with pkce: false the code exchange carries
// no code_verifier, although the gateway hands one over: Keycloak refuses
// a verifier for an authorization request without a challenge.
func TestPKCEOffSendsNoVerifier(t *testing.T) {
	newEnv(t, sim.Options{}, "    pkce: false\n").enroll(t)
}
