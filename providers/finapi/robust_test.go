package finapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/finapi/sim"
)

var clientGrant = providers.Grant{Type: providers.GrantClientCredentials}

// Two client_credentials links of one client hold the same token (finAPI
// hands it to every caller with these credentials while it is valid).
// Revoking one link must not revoke it: the other link and the provider's
// own cached client token live on it.
func TestRevokeClientLinkKeepsSharedToken(t *testing.T) {
	f := newFixture(t, sim.Options{ReuseTokens: true})
	ctx := context.Background()
	a, err := f.p.Exchange(ctx, clientGrant)
	require.NoError(t, err)
	b, err := f.p.Exchange(ctx, clientGrant)
	require.NoError(t, err)
	f.remember(a)
	require.True(t, a.AccessToken == b.AccessToken, "one client, one token")
	assert.Equal(t, ExtraClient, a.Extra[ExtraToken])

	require.NoError(t, f.p.Revoke(ctx, a))
	assert.True(t, f.sim.ValidClient(b.AccessToken), "the other link's token was revoked with the first link")
	assert.Zero(t, f.sim.Stats()["revoke"], "nothing revoked at finAPI")
	// A token stored before the marker existed, without refresh token,
	// counts as the client's too.
	require.NoError(t, f.p.Revoke(ctx, &providers.Token{AccessToken: b.AccessToken}))
	assert.True(t, f.sim.ValidClient(b.AccessToken))
	// The provider's cached client token (the same) still creates users.
	f.enroll(t, "after-revoke")
	assert.Equal(t, 2, f.sim.Stats()["token:client_credentials"], "one per link, none for user creation")

	// A user link's revoke still revokes its tokens.
	u := f.enroll(t, "user-link")
	require.NoError(t, f.p.Revoke(ctx, u))
	assert.False(t, f.sim.Valid(u.AccessToken))
	assert.True(t, f.sim.ValidClient(b.AccessToken))
}

// Near its expiry the shared client token cannot be renewed: a
// client_credentials link's "refresh" waits for it to die and returns its
// successor, instead of handing back the dying token (which would bring
// the engine back at once, again and again).
func TestClientLinkWaitsOutTheSharedToken(t *testing.T) {
	f := newFixture(t, sim.Options{ReuseTokens: true, ClientTTL: 10 * time.Minute})
	var slept time.Duration
	f.p.sleep = func(_ context.Context, d time.Duration) error {
		slept += d
		f.clock.advance(d)
		return nil
	}
	ctx := context.Background()
	first, err := f.p.Exchange(ctx, clientGrant)
	require.NoError(t, err)
	f.remember(first)
	f.clock.advance(8 * time.Minute)
	mid, err := f.p.Exchange(ctx, clientGrant)
	require.NoError(t, err)
	assert.True(t, first.AccessToken == mid.AccessToken, "two minutes left: the same token")
	assert.Zero(t, slept)
	f.clock.advance(90 * time.Second)
	next, err := f.p.Exchange(ctx, clientGrant)
	require.NoError(t, err)
	f.remember(next)
	assert.True(t, first.AccessToken != next.AccessToken, "30s left: waited for the successor")
	assert.InDelta(t, 31*time.Second, slept, float64(2*time.Second))
	assert.Equal(t, f.clock.now().Add(10*time.Minute), next.Expiry)
	// Four requests in all, one per Exchange and one for the successor:
	// none in a loop.
	assert.Equal(t, 4, f.sim.Stats()["token:client_credentials"])
}

// A password link whose logins carry no refresh token (the seed's example
// reply) "refreshes" by logging in again; finAPI then answers the live
// token with a shrinking expires_in. Exchange revokes it and logs in once
// more, so each refresh yields a fresh token of full lifetime.
func TestReusedUserTokenIsReplaced(t *testing.T) {
	f := newFixture(t, sim.Options{ReuseTokens: true, NoRefreshToken: true, AccessTTL: time.Hour})
	ctx := context.Background()
	first := f.enroll(t, "nora")
	assert.Empty(t, first.RefreshToken, "the seed's reply has no refresh_token")
	assert.Equal(t, f.clock.now().Add(time.Hour), first.Expiry)

	f.clock.advance(48 * time.Minute) // the engine's refresh, 20% early
	again, err := f.p.Exchange(ctx, passwordGrant("nora", true))
	require.NoError(t, err)
	f.remember(again)
	assert.True(t, first.AccessToken != again.AccessToken, "a new token")
	assert.Equal(t, f.clock.now().Add(time.Hour), again.Expiry, "a full hour, not the 12 minutes left")
	assert.False(t, f.sim.Valid(first.AccessToken), "the replaced token was revoked")
	assert.True(t, f.sim.Valid(again.AccessToken))
	assert.Equal(t, 3, f.sim.Stats()["token:password"], "enrollment, the live token, the fresh one")

	// Right after a fresh login, another login is no reason to revoke.
	f.clock.advance(time.Minute)
	same, err := f.p.Exchange(ctx, passwordGrant("nora", true))
	require.NoError(t, err)
	assert.True(t, again.AccessToken == same.AccessToken, "the same token")
	assert.Equal(t, 1, f.sim.Stats()["revoke"])
}

// After the refresh token died, finAPI may answer a login with the live
// access token and its dead refresh token: Reenroll always ends with a
// fresh pair.
func TestReenrollGetsAFreshPair(t *testing.T) {
	f := newFixture(t, sim.Options{ReuseTokens: true, AccessTTL: time.Hour, RefreshTTL: 2 * time.Hour})
	ctx := context.Background()
	tok := f.enroll(t, "rita")
	f.sim.ExpireRefreshTokens()
	_, err := f.p.Refresh(ctx, tok)
	f.class(t, err, providers.InvalidGrant)
	fresh, err := f.p.Reenroll(ctx, passwordGrant("rita", true))
	require.NoError(t, err)
	f.remember(fresh)
	assert.True(t, tok.RefreshToken != fresh.RefreshToken, "a new token")
	next, err := f.p.Refresh(ctx, fresh)
	require.NoError(t, err, "the new refresh token works")
	f.remember(next)
}

// 403 for a user the client has not verified: Permanent, and the message
// says what to do.
func TestUserNotVerified(t *testing.T) {
	f := newFixture(t, sim.Options{VerifyUsers: true})
	_, err := f.p.Exchange(context.Background(), passwordGrant("vera", true))
	pe := f.class(t, err, providers.Permanent)
	assert.Equal(t, http.StatusForbidden, pe.Status)
	assert.Equal(t, CodeUserNotVerified, pe.Code)
	assert.Contains(t, pe.Description, "POST /users/verify")
	f.sim.VerifyUser("vera")
	f.enroll(t, "vera")
}

// finAPI checks the format of user ids and passwords: a refused one is
// Permanent with finAPI's message, which names the field, not the value.
func TestUserFormatRefused(t *testing.T) {
	f := newFixture(t, sim.Options{})
	g := passwordGrant("not a valid id!", true)
	_, err := f.p.Exchange(context.Background(), g)
	pe := f.class(t, err, providers.Permanent)
	assert.Contains(t, pe.Description, "id must be")
	g = passwordGrant("short-pw", true)
	g.Password = "abc"
	_, err = f.p.Exchange(context.Background(), g)
	pe = f.class(t, err, providers.Permanent)
	assert.Contains(t, pe.Description, "password must be")
	assert.NotContains(t, err.Error(), "abc")
}

// The default paths are Access v2's; settings override them, as for a
// service at the seed's /oauth/token and /users.
func TestPathsFromSettings(t *testing.T) {
	s := sim.New(sim.Options{ClientID: clientID, ClientSecret: clientSecret, Paths: sim.SeedPaths})
	srv := httptest.NewServer(s)
	defer srv.Close()
	e := providers.Entry{Name: "finapi", Kind: KindName, ClientID: clientID, Grants: []string{providers.GrantPassword},
		ClientSecret: providers.SecretRef{Env: "X"}, AuthStyle: providers.AuthStyleBody}
	open := func(c *Config) *Provider {
		t.Helper()
		p, err := c.Open(context.Background(), e, providers.Setup{ClientSecret: clientSecret, HTTPClient: srv.Client()})
		require.NoError(t, err)
		return p.(*Provider)
	}
	def := open(&Config{BaseURL: srv.URL})
	assert.Equal(t, srv.URL+PathToken, def.Endpoint().TokenURL)
	_, err := def.Exchange(context.Background(), passwordGrant("pia", true))
	require.Error(t, err, "the default paths are not the seed's")

	seed := open(&Config{BaseURL: srv.URL, TokenPath: "/oauth/token", UsersPath: "/users", RevokePath: "/oauth/revoke"})
	tok, err := seed.Exchange(context.Background(), passwordGrant("pia", true))
	require.NoError(t, err)
	assert.True(t, s.Valid(tok.AccessToken))
	require.NoError(t, seed.Revoke(context.Background(), tok))
	assert.False(t, s.Valid(tok.AccessToken))

	bad := &Config{BaseURL: srv.URL, TokenPath: "oauth/token", UsersPath: "/users?x=1"}
	err = bad.Validate(e)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "token_path")
	assert.Contains(t, err.Error(), "users_path")
}

// A client whose fresh tokens last less than the assumed hour: the first
// login looks like a live token and is replaced once; from then on the
// provider knows what a fresh token lasts and logs in once per Exchange.
func TestFreshLifetimeLearned(t *testing.T) {
	f := newFixture(t, sim.Options{AccessTTL: 10 * time.Minute})
	f.enroll(t, "lena")
	assert.Equal(t, 2, f.sim.Stats()["token:password"], "the unknown lifetime cost one extra login")
	f.clock.advance(time.Second)
	f.enroll(t, "lena")
	assert.Equal(t, 3, f.sim.Stats()["token:password"])
	assert.Equal(t, 1, f.sim.Stats()["revoke"])
}

// In its last second the live token comes back with expires_in 0, which
// says nothing usable: it is replaced like any live token, never stored
// with an assumed lifetime.
func TestLastSecondLiveTokenIsReplaced(t *testing.T) {
	f := newFixture(t, sim.Options{ReuseTokens: true, NoRefreshToken: true, AccessTTL: time.Hour})
	first := f.enroll(t, "zoe")
	f.clock.advance(time.Hour - 500*time.Millisecond)
	again, err := f.p.Exchange(context.Background(), passwordGrant("zoe", true))
	require.NoError(t, err)
	f.remember(again)
	assert.True(t, first.AccessToken != again.AccessToken, "a new token")
	assert.Equal(t, f.clock.now().Add(time.Hour), again.Expiry)
}
