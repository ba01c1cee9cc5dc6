package tokenwarden

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

const (
	testAPIKey = "tw_test-api-key-0123456789"
	testToken  = "at-secret-do-not-print"
)

// fakeGateway records what it was asked and answers with handle.
type fakeGateway struct {
	t      *testing.T
	srv    *httptest.Server
	calls  atomic.Int64
	mu     sync.Mutex
	last   *http.Request
	body   []byte
	handle func(w http.ResponseWriter, r *http.Request)
}

func newFakeGateway(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *fakeGateway {
	t.Helper()
	g := &fakeGateway{t: t, handle: handle}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		g.last, g.body = r, b
		g.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+testAPIKey {
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid API key")
			return
		}
		g.handle(w, r)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) client() *Client { return NewClient(g.srv.URL+"/", testAPIKey) }

func (g *fakeGateway) lastRequest() (*http.Request, []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last, g.body
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg, "request_id": "req-42"}})
}

func tokenBody(expiry time.Time) map[string]any {
	return map[string]any{"access_token": testToken, "token_type": "Bearer", "expires_at": expiry.Format(time.RFC3339Nano), "scopes": []string{"read", "write"}}
}

func TestCreateLink(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, map[string]any{"id": "lnk_1", "status": "pending_authorization", "provider": "acme", "user_id": "u1", "authorization_url": "https://idp.example/auth?state=s"})
	})
	l, err := g.client().CreateLink(context.Background(), CreateLinkRequest{
		Provider: "acme", UserID: "u1", Grant: GrantPassword, Scopes: []string{"read"},
		Params: map[string]string{"audience": "api"}, Credentials: &Credentials{Username: "alice", Password: "pw"},
	}, "idem-1")
	require.NoError(t, err)
	assert.Equal(t, "lnk_1", l.ID)
	assert.Equal(t, "pending_authorization", l.Status)
	assert.Equal(t, "https://idp.example/auth?state=s", l.AuthorizationURL)

	req, body := g.lastRequest()
	assert.Equal(t, http.MethodPost, req.Method)
	assert.Equal(t, "/v1/links", req.URL.Path)
	assert.Equal(t, "idem-1", req.Header.Get("Idempotency-Key"))
	assert.Equal(t, "application/json", req.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"provider":"acme","user_id":"u1","grant":"password","scopes":["read"],
		"params":{"audience":"api"},"credentials":{"username":"alice","password":"pw"}}`, string(body))
}

func TestCreateLinkWithoutIdempotencyKeyOrOptionalFields(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, map[string]any{"id": "lnk_2", "status": "pending_authorization",
			"device": map[string]any{"user_code": "ABCD-EFGH", "verification_uri": "https://idp.example/device", "expires_at": "2030-01-02T03:04:05Z"}})
	})
	l, err := g.client().CreateLink(context.Background(), CreateLinkRequest{Provider: "acme", UserID: "u1", Grant: GrantDeviceCode}, "")
	require.NoError(t, err)
	require.NotNil(t, l.Device)
	assert.Equal(t, "ABCD-EFGH", l.Device.UserCode)
	assert.Equal(t, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), l.Device.ExpiresAt.UTC())
	req, body := g.lastRequest()
	_, has := req.Header["Idempotency-Key"]
	assert.False(t, has)
	assert.JSONEq(t, `{"provider":"acme","user_id":"u1","grant":"device_code"}`, string(body))
}

func TestGetLink(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"lnk 1/x","provider":"acme","user_id":"u1","grant":"client_credentials","status":"active",
			"scopes":["a"],"expires_at":"2030-01-01T00:00:00Z","refresh_expires_at":null,"next_refresh_at":"2029-12-31T23:50:00Z",
			"last_error":"","refresh_count":3,"metadata":{"tenant":"t1"},"created_at":"2029-01-01T00:00:00Z","updated_at":"2029-06-01T00:00:00Z",
			"a_field_from_the_future":true}`)
	})
	l, err := g.client().GetLink(context.Background(), "lnk 1/x")
	require.NoError(t, err)
	req, _ := g.lastRequest()
	assert.Equal(t, "/v1/links/lnk%201%2Fx", req.URL.EscapedPath(), "the id is one escaped path segment")
	assert.Equal(t, "active", l.Status)
	assert.Equal(t, 3, l.RefreshCount)
	assert.True(t, l.RefreshExpiresAt.IsZero(), "null time decodes to zero")
	assert.Equal(t, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), l.ExpiresAt.UTC())
	assert.Equal(t, "t1", l.Metadata["tenant"])
}

func TestEmptyLinkIDIsRejectedWithoutARequest(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) { t.Error("unexpected request") })
	c := g.client()
	ctx := context.Background()
	_, err := c.GetLink(ctx, "")
	require.ErrorContains(t, err, "empty link id")
	_, err = c.Token(ctx, " ", time.Minute)
	require.Error(t, err)
	_, err = c.Refresh(ctx, "")
	require.Error(t, err)
	require.Error(t, c.Revoke(ctx, "", "x"))
	_, err = c.TokenSource("").Token()
	require.Error(t, err)
	assert.Zero(t, g.calls.Load())
}

func TestListLinks(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"links": []map[string]any{{"id": "a"}, {"id": "b"}}, "next_cursor": "c2"})
	})
	page, err := g.client().ListLinks(context.Background(), ListOptions{Provider: "acme", Status: "active", UserID: "u&1", Cursor: "c1", Limit: 2})
	require.NoError(t, err)
	require.Len(t, page.Links, 2)
	assert.Equal(t, "b", page.Links[1].ID)
	assert.Equal(t, "c2", page.NextCursor)
	req, _ := g.lastRequest()
	assert.Equal(t, "/v1/links", req.URL.Path)
	q := req.URL.Query()
	assert.Equal(t, "acme", q.Get("provider"))
	assert.Equal(t, "active", q.Get("status"))
	assert.Equal(t, "u&1", q.Get("user_id"))
	assert.Equal(t, "c1", q.Get("cursor"))
	assert.Equal(t, "2", q.Get("limit"))

	_, err = g.client().ListLinks(context.Background(), ListOptions{})
	require.NoError(t, err)
	req, _ = g.lastRequest()
	assert.Empty(t, req.URL.RawQuery)
}

func TestToken(t *testing.T) {
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, tokenBody(exp)) })
	tok, err := g.client().Token(context.Background(), "lnk_1", 1500*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, testToken, tok.AccessToken)
	assert.Equal(t, "Bearer", tok.TokenType)
	assert.True(t, exp.Equal(tok.Expiry))
	assert.Equal(t, []string{"read", "write"}, tok.Extra("scopes"))
	req, _ := g.lastRequest()
	assert.Equal(t, http.MethodGet, req.Method)
	assert.Equal(t, "/v1/links/lnk_1/token", req.URL.Path)
	assert.Equal(t, "2", req.URL.Query().Get("min_ttl"), "min_ttl rounds up to whole seconds")

	_, err = g.client().Token(context.Background(), "lnk_1", 0)
	require.NoError(t, err)
	req, _ = g.lastRequest()
	assert.False(t, req.URL.Query().Has("min_ttl"))
}

func TestTokenWithoutAccessTokenIsAnError(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer"})
	})
	_, err := g.client().Token(context.Background(), "lnk_1", 0)
	require.ErrorContains(t, err, "without an access token")
}

func TestRefreshRevokeProviders(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/links/lnk_1/refresh":
			writeJSON(w, http.StatusOK, map[string]any{"expires_at": "2030-01-01T00:00:00Z", "vault_version": 7})
		case "/v1/links/lnk_1/revoke":
			writeJSON(w, http.StatusOK, map[string]any{"id": "lnk_1", "status": "revoked"})
		case "/v1/providers":
			writeJSON(w, http.StatusOK, map[string]any{"providers": []map[string]any{{
				"name": "acme", "kind": "generic", "endpoint": map[string]string{"token_url": "https://idp.example/token"},
				"client_secret": map[string]string{"vault": "kv/acme#secret"}, "grants": []string{"client_credentials"}, "pkce": true,
				"schedule": map[string]any{"fraction": 0.2},
			}}})
		default:
			writeError(w, http.StatusNotFound, "not_found", "no route")
		}
	})
	c, ctx := g.client(), context.Background()

	rr, err := c.Refresh(ctx, "lnk_1")
	require.NoError(t, err)
	assert.Equal(t, 7, rr.VaultVersion)
	req, _ := g.lastRequest()
	assert.Equal(t, http.MethodPost, req.Method)

	require.NoError(t, c.Revoke(ctx, "lnk_1", "user left"))
	req, body := g.lastRequest()
	assert.Equal(t, http.MethodPost, req.Method)
	assert.JSONEq(t, `{"reason":"user left"}`, string(body))
	require.NoError(t, c.Revoke(ctx, "lnk_1", ""))
	_, body = g.lastRequest()
	assert.Empty(t, body, "no reason, no body")

	ps, err := c.Providers(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	assert.Equal(t, "https://idp.example/token", ps[0].Endpoint.TokenURL)
	assert.Equal(t, "kv/acme#secret", ps[0].ClientSecret["vault"])
	assert.True(t, ps[0].PKCE)
	assert.Equal(t, 0.2, ps[0].Schedule["fraction"])
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		name      string
		handle    http.HandlerFunc
		status    int
		code      string
		msg       string
		requestID string
		temporary bool
	}{
		{"envelope", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusConflict, CodeLinkRevoked, "link was revoked")
		}, 409, CodeLinkRevoked, "link was revoked", "req-42", false},
		{"rate limited", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusTooManyRequests, CodeRateLimited, "slow down")
		}, 429, CodeRateLimited, "slow down", "req-42", true},
		{"proxy page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Request-Id", "px-1")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "<html>bad gateway "+testToken+"</html>")
		}, 502, CodeUnavailable, "", "px-1", true},
		{"empty 404", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
		}, 404, CodeNotFound, "", "", false},
		{"json without envelope", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"oops": "x"})
		}, 500, CodeInternal, "", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, tc.handle)
			_, err := g.client().Token(context.Background(), "lnk_1", 0)
			var apiErr *APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tc.status, apiErr.Status)
			assert.Equal(t, tc.code, apiErr.Code)
			assert.Equal(t, tc.msg, apiErr.Message)
			assert.Equal(t, tc.requestID, apiErr.RequestID)
			assert.Equal(t, tc.temporary, apiErr.Temporary())
			assert.Equal(t, tc.code, ErrorCode(fmt.Errorf("wrapped: %w", err)))
			assert.Contains(t, err.Error(), tc.code)
			assert.NotContains(t, err.Error(), testToken)
			assert.NotContains(t, err.Error(), testAPIKey)
		})
	}
}

func TestUnauthorizedWithoutKey(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) { t.Error("should not get here") })
	c := g.client()
	c.APIKey = ""
	_, err := c.GetLink(context.Background(), "lnk_1")
	assert.Equal(t, CodeUnauthorized, ErrorCode(err))
	req, _ := g.lastRequest()
	assert.Empty(t, req.Header.Get("Authorization"), "no key, no header")
}

func TestErrorsDoNotLeakSecrets(t *testing.T) {
	// A broken answer on the token route must not be quoted: it holds the token.
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"`+testToken+`","expires_at":"not a time"}`)
	})
	_, err := g.client().Token(context.Background(), "lnk_1", 0)
	require.Error(t, err)
	assert.Equal(t, "", ErrorCode(err))
	assert.NotContains(t, err.Error(), testToken)
	assert.Contains(t, err.Error(), "/v1/links/lnk_1/token")

	creds := Credentials{Username: "alice", Password: "hunter2"}
	for _, s := range []string{fmt.Sprint(creds), fmt.Sprintf("%v %+v %#v %s", creds, creds, creds, &creds)} {
		assert.NotContains(t, s, "hunter2")
		assert.Contains(t, s, "alice")
	}
}

func TestUnreachableGateway(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := NewClient(url, testAPIKey).GetLink(context.Background(), "lnk_1")
	require.Error(t, err)
	assert.Equal(t, "", ErrorCode(err))
	assert.Contains(t, err.Error(), "GET /v1/links/lnk_1")
	assert.NotContains(t, err.Error(), testAPIKey)

	_, err = (&Client{APIKey: testAPIKey}).GetLink(context.Background(), "lnk_1")
	require.ErrorContains(t, err, "no BaseURL")
}

func TestContextCancellation(t *testing.T) {
	release := make(chan struct{})
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := g.client().GetLink(ctx, "lnk_1")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// fakeClock is a settable clock for TokenSource tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tokenGateway issues numbered tokens valid for lifetime from clock's now.
type tokenGateway struct {
	*fakeGateway
	clock    *fakeClock
	lifetime time.Duration
	minTTLs  []string
	fail     atomic.Pointer[func(w http.ResponseWriter)]
	delay    time.Duration
}

func newTokenGateway(t *testing.T, clock *fakeClock, lifetime time.Duration) *tokenGateway {
	tg := &tokenGateway{clock: clock, lifetime: lifetime}
	tg.fakeGateway = newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.minTTLs = append(tg.minTTLs, r.URL.Query().Get("min_ttl"))
		tg.mu.Unlock()
		if f := tg.fail.Load(); f != nil {
			(*f)(w)
			return
		}
		time.Sleep(tg.delay)
		body := tokenBody(clock.Now().Add(tg.lifetime))
		body["access_token"] = fmt.Sprintf("token-%d", tg.calls.Load())
		writeJSON(w, http.StatusOK, body)
	})
	return tg
}

func (tg *tokenGateway) failWith(status int, code string) {
	f := func(w http.ResponseWriter) { writeError(w, status, code, "failing on purpose") }
	tg.fail.Store(&f)
}

func (tg *tokenGateway) source() *linkTokenSource {
	ts := tg.client().TokenSource("lnk_1").(*linkTokenSource)
	ts.now = tg.clock.Now
	return ts
}

func TestTokenSourceCaches(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	tg := newTokenGateway(t, clock, time.Hour)
	ts := tg.source()
	for range 20 {
		tok, err := ts.Token()
		require.NoError(t, err)
		assert.Equal(t, "token-1", tok.AccessToken)
		clock.Advance(time.Minute)
	}
	assert.EqualValues(t, 1, tg.calls.Load(), "20 minutes into a one-hour token, still one fetch")
	assert.Equal(t, []string{"60"}, tg.minTTLs, "asks the gateway for a token that lives a while")
}

func TestTokenSourceRefetchesNearExpiry(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	tg := newTokenGateway(t, clock, time.Hour)
	ts := tg.source()

	tok, err := ts.Token()
	require.NoError(t, err)
	assert.Equal(t, "token-1", tok.AccessToken)

	// A one-hour token is replaced 6 minutes (10%) early.
	clock.t = start.Add(54*time.Minute - time.Second)
	tok, err = ts.Token()
	require.NoError(t, err)
	assert.Equal(t, "token-1", tok.AccessToken)
	assert.EqualValues(t, 1, tg.calls.Load())

	clock.t = start.Add(54 * time.Minute)
	tok, err = ts.Token()
	require.NoError(t, err)
	assert.Equal(t, "token-2", tok.AccessToken)
	assert.EqualValues(t, 2, tg.calls.Load())
}

func TestEarlyMargin(t *testing.T) {
	assert.Equal(t, 6*time.Minute, earlyMargin(time.Hour))
	assert.Equal(t, MinEarlyRefresh, earlyMargin(2*time.Minute), "at least MinEarlyRefresh")
	assert.Equal(t, 10*time.Second, earlyMargin(20*time.Second), "at most half the lifetime")
	assert.Equal(t, time.Duration(0), earlyMargin(-time.Second))
}

func TestTokenSourceShortLivedTokensAreStillCached(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	tg := newTokenGateway(t, clock, 20*time.Second)
	ts := tg.source()
	for range 5 {
		_, err := ts.Token()
		require.NoError(t, err)
	}
	assert.EqualValues(t, 1, tg.calls.Load())
	clock.Advance(10 * time.Second)
	_, err := ts.Token()
	require.NoError(t, err)
	assert.EqualValues(t, 2, tg.calls.Load())
}

func TestTokenSourceConcurrentCallersShareOneFetch(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	tg := newTokenGateway(t, clock, time.Hour)
	tg.delay = 50 * time.Millisecond // long enough for all callers to pile up
	ts := tg.source()

	var wg sync.WaitGroup
	start := make(chan struct{})
	tokens := make([]string, 50)
	errs := make([]error, 50)
	for i := range 50 {
		wg.Go(func() {
			<-start
			tok, err := ts.Token()
			errs[i] = err
			if err == nil {
				tokens[i] = tok.AccessToken
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range 50 {
		require.NoError(t, errs[i])
		assert.Equal(t, "token-1", tokens[i])
	}
	assert.EqualValues(t, 1, tg.calls.Load())
}

func TestTokenSourceReturnsAPIErrors(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	tg := newTokenGateway(t, clock, time.Hour)
	tg.failWith(http.StatusConflict, CodeReauthRequired)
	_, err := tg.source().Token()
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, CodeReauthRequired, apiErr.Code)
	assert.Equal(t, http.StatusConflict, apiErr.Status)
}

func TestTokenSourceRevokedLinkFailsEvenWithCachedToken(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	tg := newTokenGateway(t, clock, time.Hour)
	ts := tg.source()
	_, err := ts.Token()
	require.NoError(t, err)

	tg.failWith(http.StatusConflict, CodeLinkRevoked)
	clock.t = start.Add(55 * time.Minute) // in the margin, not expired
	_, err = ts.Token()
	assert.Equal(t, CodeLinkRevoked, ErrorCode(err))
}

func TestTokenSourceRidesOutGatewayOutage(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	tg := newTokenGateway(t, clock, time.Hour)
	ts := tg.source()
	_, err := ts.Token()
	require.NoError(t, err)

	tg.failWith(http.StatusServiceUnavailable, CodeUnavailable)
	clock.t = start.Add(55 * time.Minute) // in the margin, not expired
	tok, err := ts.Token()
	require.NoError(t, err, "a still valid token beats an error")
	assert.Equal(t, "token-1", tok.AccessToken)
	assert.EqualValues(t, 2, tg.calls.Load())

	// Within retryDelay the gateway is left alone.
	clock.Advance(retryDelay - time.Second)
	_, err = ts.Token()
	require.NoError(t, err)
	assert.EqualValues(t, 2, tg.calls.Load())

	clock.Advance(time.Second)
	_, err = ts.Token()
	require.NoError(t, err)
	assert.EqualValues(t, 3, tg.calls.Load())

	// Once the token has expired, the outage shows.
	clock.t = start.Add(time.Hour)
	_, err = ts.Token()
	assert.Equal(t, CodeUnavailable, ErrorCode(err))

	// And it heals.
	tg.fail.Store(nil)
	tok, err = ts.Token()
	require.NoError(t, err)
	assert.NotEqual(t, "token-1", tok.AccessToken)
}

func TestTokenSourceTokensCarryTheMargin(t *testing.T) {
	// The token's Valid, which oauth2.ReuseTokenSource consults with the
	// real clock, must turn false at the same margin as the cache. Issue
	// a one-hour token (6-minute margin) that has 2 real minutes left.
	clock := &fakeClock{t: time.Now().Add(-58 * time.Minute)}
	tg := newTokenGateway(t, clock, time.Hour)
	tok, err := tg.source().Token()
	require.NoError(t, err)
	assert.False(t, tok.Valid(), "2 minutes left is inside the 6-minute margin")

	clock.t = time.Now().Add(-50 * time.Minute)
	tok, err = tg.source().Token()
	require.NoError(t, err)
	assert.True(t, tok.Valid(), "10 minutes left is outside it")
}

func TestOAuth2ClientSendsBearerToken(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	tg := newTokenGateway(t, clock, time.Hour)
	var gotAuth []string
	var mu sync.Mutex
	resource := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	defer resource.Close()

	hc := oauth2.NewClient(context.Background(), tg.client().TokenSource("lnk_1"))
	for range 3 {
		resp, err := hc.Get(resource.URL + "/data")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
	assert.Equal(t, []string{"Bearer token-1", "Bearer token-1", "Bearer token-1"}, gotAuth)
	assert.EqualValues(t, 1, tg.calls.Load())
}

func TestOAuth2ClientSurfacesAPIError(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	tg := newTokenGateway(t, clock, time.Hour)
	tg.failWith(http.StatusConflict, CodeLinkPending)
	hc := oauth2.NewClient(context.Background(), tg.client().TokenSource("lnk_1"))
	_, err := hc.Get("http://127.0.0.1:1/never-reached")
	require.Error(t, err)
	var apiErr *APIError
	require.True(t, errors.As(err, &apiErr), "got %v", err)
	assert.Equal(t, CodeLinkPending, apiErr.Code)
}

func TestAPIErrorMessage(t *testing.T) {
	e := &APIError{Status: 409, Code: CodeLinkRevoked, Message: "link was revoked", RequestID: "r1"}
	assert.Equal(t, "tokenwarden: link was revoked (link_revoked, HTTP 409, request r1)", e.Error())
	e = &APIError{Status: 503, Code: CodeUnavailable}
	assert.Equal(t, "tokenwarden: service unavailable (unavailable, HTTP 503)", e.Error())
	assert.True(t, strings.HasPrefix(e.Error(), "tokenwarden: "))
}
