package oidcpeer_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
)

// The redirect URI is never served: Login stops before requesting it. The
// port differs from the registered one on purpose (loopback matching).
const redirectURI = "http://127.0.0.1:18080/v1/oauth/callback"

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// authorize runs the authorization code flow with PKCE and returns the token.
func authorize(t *testing.T, ctx context.Context, p *oidcpeer.Peer) (*oauth2.Config, *oauth2.Token) {
	t.Helper()
	conf := p.OAuth2Config(redirectURI, "openid", "offline_access", "email")
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("prompt", "consent"))

	redirect, err := p.Login(ctx, authURL, "alice@example.com")
	require.NoError(t, err)
	require.Equal(t, "state-123", redirect.Query().Get("state"))
	code := redirect.Query().Get("code")
	require.NotEmpty(t, code, "redirect carries no code")

	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	require.NotEmpty(t, tok.AccessToken, "no access token")
	require.NotEmpty(t, tok.RefreshToken, "no refresh token")
	return conf, tok
}

func refresh(ctx context.Context, conf *oauth2.Config, refreshToken string) (*oauth2.Token, error) {
	// Expiry in the past makes the TokenSource refresh right away.
	return conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
}

func TestAuthorizationCodeRefreshRotationAndReplay(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{})
	ctx := testContext(t)
	conf, first := authorize(t, ctx, p)

	idToken, _ := first.Extra("id_token").(string)
	assert.NotEmpty(t, idToken, "no id_token for scope openid")

	// Not conf.Client: x/oauth2 treats tokens within 10s of expiry as
	// expired, so with a 5s TTL it would refresh (and rotate) first.
	resp, err := oauth2.NewClient(ctx, oauth2.StaticTokenSource(first)).Get(p.UserinfoURL)
	require.NoError(t, err)
	var claims struct {
		Sub   string `json:"sub"`
		Email string `json:"email"`
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&claims))
	resp.Body.Close()
	assert.Equal(t, "alice@example.com", claims.Sub)
	assert.Equal(t, "alice@example.com", claims.Email)

	second, err := refresh(ctx, conf, first.RefreshToken)
	require.NoError(t, err)
	require.NotEmpty(t, second.RefreshToken, "refresh answered without a refresh token")
	assert.NotEqual(t, first.RefreshToken, second.RefreshToken, "refresh token was not rotated")
	assert.NotEqual(t, first.AccessToken, second.AccessToken, "access token was not renewed")

	_, err = refresh(ctx, conf, first.RefreshToken)
	var re *oauth2.RetrieveError
	require.True(t, errors.As(err, &re), "replaying a rotated refresh token: want *oauth2.RetrieveError, got %T", err)
	assert.Equal(t, "invalid_grant", re.ErrorCode)

	// Replay detection revokes the whole grant, the newest token included.
	active, _, err := p.Introspect(ctx, second.RefreshToken)
	require.NoError(t, err)
	assert.False(t, active, "grant survived a refresh token replay")

	stats, err := p.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, stats.TokenByGrantType["authorization_code"])
	assert.Equal(t, 2, stats.TokenByGrantType["refresh_token"])
	assert.Equal(t, 1, stats.TokenErrorsByGrantType["refresh_token"])
	assert.Equal(t, 3, stats.TokenRequests)
}

// TestRefreshReuseGrace: within the grace window, the rotated refresh
// token gets the reply its first use got, and the grant lives on; after
// it, a reuse is detected and revokes the grant as without the window.
func TestRefreshReuseGrace(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{RefreshReuseGrace: 2 * time.Second})
	ctx := testContext(t)
	conf, first := authorize(t, ctx, p)

	second, err := refresh(ctx, conf, first.RefreshToken)
	require.NoError(t, err)
	again, err := refresh(ctx, conf, first.RefreshToken)
	require.NoError(t, err, "the old refresh token within the grace window")
	assert.Equal(t, second.RefreshToken, again.RefreshToken, "the first reply, sent again")
	active, _, err := p.Introspect(ctx, second.RefreshToken)
	require.NoError(t, err)
	assert.True(t, active, "the grant survives a reuse within the window")

	third, err := refresh(ctx, conf, second.RefreshToken)
	require.NoError(t, err)
	time.Sleep(2500 * time.Millisecond) // the window is wall-clock time at the peer
	_, err = refresh(ctx, conf, second.RefreshToken)
	var re *oauth2.RetrieveError
	require.True(t, errors.As(err, &re), "reuse after the window: want *oauth2.RetrieveError, got %v", err)
	assert.Equal(t, "invalid_grant", re.ErrorCode)
	active, _, err = p.Introspect(ctx, third.RefreshToken)
	require.NoError(t, err)
	assert.False(t, active, "reuse after the window revokes the grant")

	stats, err := p.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, stats.RefreshReuseGraceHits)
}

func TestAccessTokenExpiresAfterTTL(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: 2 * time.Second})
	ctx := testContext(t)
	_, tok := authorize(t, ctx, p)

	active, exp, err := p.Introspect(ctx, tok.AccessToken)
	require.NoError(t, err)
	require.True(t, active, "fresh access token is inactive")
	assert.WithinDuration(t, time.Now().Add(2*time.Second), exp, 2*time.Second)
	assert.WithinDuration(t, tok.Expiry, exp, 2*time.Second)

	require.Eventually(t, func() bool {
		active, _, err := p.Introspect(ctx, tok.AccessToken)
		return err == nil && !active
	}, 10*time.Second, 200*time.Millisecond, "access token still active long after its TTL")

	// The refresh token outlives the access token.
	active, _, err = p.Introspect(ctx, tok.RefreshToken)
	require.NoError(t, err)
	assert.True(t, active, "refresh token expired with the access token")
}

func TestClientCredentials(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{})
	ctx := testContext(t)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		conf := clientcredentials.Config{
			ClientID:     p.ClientID,
			ClientSecret: p.ClientSecret,
			TokenURL:     p.TokenURL,
			Scopes:       []string{"api:read"},
			AuthStyle:    style,
		}
		tok, err := conf.Token(ctx)
		require.NoError(t, err, "auth style %d", style)
		require.NotEmpty(t, tok.AccessToken)
		assert.Equal(t, "api:read", tok.Extra("scope"))
		assert.WithinDuration(t, time.Now().Add(5*time.Second), tok.Expiry, 3*time.Second)

		active, _, err := p.Introspect(ctx, tok.AccessToken)
		require.NoError(t, err)
		assert.True(t, active)
	}

	wrong := clientcredentials.Config{ClientID: p.ClientID, ClientSecret: "wrong", TokenURL: p.TokenURL}
	_, err := wrong.Token(ctx)
	var re *oauth2.RetrieveError
	require.True(t, errors.As(err, &re), "wrong secret: got %T", err)
	assert.Equal(t, "invalid_client", re.ErrorCode)
}

func TestDeviceFlow(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{})
	ctx := testContext(t)
	conf := p.OAuth2Config("", "openid", "offline_access")

	da, err := conf.DeviceAuth(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, da.UserCode)
	require.NotEmpty(t, da.VerificationURI)

	require.NoError(t, p.ApproveDevice(ctx, da.UserCode, "bob"))

	tok, err := conf.DeviceAccessToken(ctx, da)
	require.NoError(t, err)
	assert.NotEmpty(t, tok.AccessToken)
	assert.NotEmpty(t, tok.RefreshToken, "device flow gave no refresh token for offline_access")

	// Strict clients authenticate at the device endpoint too.
	strict, err := conf.DeviceAuth(ctx, oauth2.SetAuthURLParam("client_secret", p.ClientSecret))
	require.NoError(t, err)
	assert.NotEqual(t, da.UserCode, strict.UserCode)

	stats, err := p.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, stats.Endpoints["device_authorization"])
	assert.GreaterOrEqual(t, stats.TokenByGrantType["urn:ietf:params:oauth:grant-type:device_code"], 1)

	// A used code cannot be approved twice.
	assert.Error(t, p.ApproveDevice(ctx, da.UserCode, "bob"))
	assert.Error(t, p.ApproveDevice(ctx, "BCDF-GHJK", "bob"), "unknown user code was accepted")
}

func TestRevocation(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Minute})
	ctx := testContext(t)
	conf, tok := authorize(t, ctx, p)

	require.NoError(t, p.Revoke(ctx, tok.AccessToken))
	active, _, err := p.Introspect(ctx, tok.AccessToken)
	require.NoError(t, err)
	assert.False(t, active, "revoked access token is active")

	// Revoking the refresh token ends the grant: refreshing fails.
	require.NoError(t, p.Revoke(ctx, tok.RefreshToken))
	_, err = refresh(ctx, conf, tok.RefreshToken)
	var re *oauth2.RetrieveError
	require.True(t, errors.As(err, &re), "refresh after revocation: got %T", err)
	assert.Equal(t, "invalid_grant", re.ErrorCode)
}

func TestFaultInjection(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{})
	ctx := testContext(t)
	conf, tok := authorize(t, ctx, p)
	require.NoError(t, p.ResetStats(ctx))

	require.NoError(t, p.InjectFault(ctx, oidcpeer.Fault{Count: 2, Status: http.StatusTooManyRequests, RetryAfter: 3 * time.Second, GrantType: "refresh_token"}))
	for range 2 {
		_, err := refresh(ctx, conf, tok.RefreshToken)
		var re *oauth2.RetrieveError
		require.True(t, errors.As(err, &re), "got %T", err)
		assert.Equal(t, http.StatusTooManyRequests, re.Response.StatusCode)
		assert.Equal(t, "3", re.Response.Header.Get("Retry-After"))
	}

	require.NoError(t, p.InjectFault(ctx, oidcpeer.Fault{Status: http.StatusOK, Malformed: true}))
	_, err := refresh(ctx, conf, tok.RefreshToken)
	require.Error(t, err, "malformed token response was accepted")

	// Faults never reached the provider, so the refresh token is unused.
	next, err := refresh(ctx, conf, tok.RefreshToken)
	require.NoError(t, err)
	assert.NotEmpty(t, next.RefreshToken)

	stats, err := p.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, stats.FaultsInjected)
	assert.Equal(t, 4, stats.TokenByGrantType["refresh_token"])
	assert.Equal(t, 3, stats.TokenErrorsByGrantType["refresh_token"])

	require.NoError(t, p.InjectFault(ctx, oidcpeer.Fault{Count: 5}))
	require.NoError(t, p.ClearFaults(ctx))
	_, err = refresh(ctx, conf, next.RefreshToken)
	require.NoError(t, err, "cleared fault still applied")
}

func TestLoginRejectsUnregisteredRedirect(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{RedirectURIs: []string{"http://127.0.0.1/only/here"}})
	ctx := testContext(t)
	conf := p.OAuth2Config("http://127.0.0.1:9999/elsewhere", "openid")
	authURL := conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	_, err := p.Login(ctx, authURL, "alice")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "redirect_uri")

	// PKCE is required: a request without a challenge is refused.
	ok := p.OAuth2Config("http://127.0.0.1:1234/only/here", "openid")
	redirect, err := p.Login(ctx, ok.AuthCodeURL("s"), "alice")
	require.Error(t, err)
	require.NotNil(t, redirect)
	assert.Equal(t, "invalid_request", redirect.Query().Get("error"))
}

// TestOldGrantsOutliveManyTokens: a refresh token left unused while the
// peer issues thousands of other tokens still works, as on a real server.
// oidc-provider's in-memory store kept only the last thousand or two
// entries, so under a load test's traffic an unused refresh token, code or
// grant vanished and the peer answered invalid_grant.
func TestOldGrantsOutliveManyTokens(t *testing.T) {
	p := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Hour})
	ctx := testContext(t)
	conf, first := authorize(t, ctx, p)
	cc := clientcredentials.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, TokenURL: p.TokenURL}
	for i := 0; i < 2500; i++ {
		if _, err := cc.Token(ctx); err != nil {
			t.Fatalf("client credentials token %d: %v", i, err)
		}
	}
	if _, err := refresh(ctx, conf, first.RefreshToken); err != nil {
		t.Fatalf("the refresh token issued before 2 500 other tokens no longer works: %v", err)
	}
}
