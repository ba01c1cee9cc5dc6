package luca_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/luca"
	"github.com/tokenwarden/tokenwarden/providers/luca/sim"
)

const (
	clientID     = "tokenwarden"
	clientSecret = "luca-SECRET-client-99"
	redirectURL  = "https://tokenwarden.example/v1/callback"
	verifier     = "verifier-SECRET-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
)

var kinds = map[string]providers.Kind{luca.KindName: luca.New}

type env struct {
	sim     *sim.Server
	srv     *httptest.Server
	p       providers.Provider
	mu      sync.Mutex
	forms   []url.Values
	secrets []string
}

func newEnv(t *testing.T, opts sim.Options, settings string) *env {
	t.Helper()
	opts.ClientID, opts.AutoApprove = clientID, true
	if opts.ClientSecret == "" {
		opts.ClientSecret = clientSecret
	}
	e := &env{sim: sim.New(opts), secrets: []string{clientSecret, verifier}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") {
			_ = r.ParseForm()
			e.mu.Lock()
			e.forms = append(e.forms, r.PostForm)
			e.mu.Unlock()
		}
		e.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	doc := `
providers:
  - name: luca
    kind: luca
    client_id: ` + clientID + `
    client_secret: {value: "` + clientSecret + `"}
    grants: [authorization_code]
    allowed_params: [organisation_number, locale]
    settings:
      base_url: ` + e.srv.URL + `/
` + settings
	cat, err := providers.Load(strings.NewReader(doc), kinds)
	require.NoError(t, err)
	reg, err := cat.Open(context.Background(), nil, e.srv.Client())
	require.NoError(t, err)
	p, entry, ok := reg.Get("luca")
	require.True(t, ok)
	assert.Equal(t, e.srv.URL+"/api/v2/oauth2/token", entry.Endpoint.TokenURL)
	e.p = p
	return e
}

func (e *env) track(tok *providers.Token) {
	if tok != nil {
		e.secrets = append(e.secrets, tok.AccessToken, tok.RefreshToken)
	}
}

func (e *env) requireNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range e.secrets {
		if s != "" {
			require.NotContains(t, err.Error(), s, "error text leaks a secret")
		}
	}
}

func (e *env) lastForm() url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.forms[len(e.forms)-1]
}

// follow requests the consent URL with a plain client and returns the
// redirect's query.
func (e *env) follow(t *testing.T, u string) url.Values {
	t.Helper()
	c := *e.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(u)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(loc.String(), redirectURL), loc.String())
	return loc.Query()
}

func (e *env) enroll(t *testing.T, params map[string]string) *providers.Token {
	t.Helper()
	u, err := e.p.(providers.Authorizer).AuthCodeURL("st-1", verifier, redirectURL, nil, params)
	require.NoError(t, err)
	q := e.follow(t, u)
	require.Equal(t, "st-1", q.Get("state"))
	require.Equal(t, "accounting", q.Get("scope"))
	e.secrets = append(e.secrets, q.Get("code"))
	tok, err := e.p.Exchange(context.Background(), providers.Grant{
		Type: providers.GrantAuthorizationCode, Code: q.Get("code"), CodeVerifier: verifier, RedirectURL: redirectURL,
	})
	e.requireNoSecret(t, err)
	require.NoError(t, err)
	e.track(tok)
	return tok
}

func requireClass(t *testing.T, err error, want providers.Class) *providers.Error {
	t.Helper()
	require.Error(t, err)
	var pe *providers.Error
	require.True(t, errors.As(err, &pe), "want *providers.Error, got %T: %v", err, err)
	require.Equal(t, want, pe.Class, "error: %v", err)
	return pe
}

func TestAuthCodeURL(t *testing.T) {
	e := newEnv(t, sim.Options{}, "")
	az := e.p.(providers.Authorizer)
	u, err := az.AuthCodeURL("st", verifier, redirectURL, nil, map[string]string{"organisation_number": "912345678", "locale": "nb"})
	require.NoError(t, err)
	pu, err := url.Parse(u)
	require.NoError(t, err)
	assert.Equal(t, e.srv.URL+"/api/v1/oauth2/authorize", pu.Scheme+"://"+pu.Host+pu.Path)
	q := pu.Query()
	assert.Equal(t, clientID, q.Get("client_id"))
	assert.Equal(t, "code", q.Get("response_type"))
	assert.Equal(t, "accounting", q.Get("scope"))
	assert.Equal(t, redirectURL, q.Get("redirect_uri"))
	assert.Equal(t, "912345678", q.Get("organisation_number"))
	assert.Equal(t, "nb", q.Get("locale"))
	assert.False(t, q.Has("code_challenge"), "PKCE is off by default for Luca")

	for _, params := range []map[string]string{{"locale": "de"}, {"organisation_number": "12345"}, {"organisation_number": "91234567a"}} {
		_, err := az.AuthCodeURL("st", verifier, redirectURL, nil, params)
		requireClass(t, err, providers.Permanent)
	}
	_, err = az.AuthCodeURL("st", verifier, redirectURL, nil, map[string]string{"prompt": "none"})
	require.Error(t, err, "params outside allowed_params are refused")
}

func TestEnrollRefreshVerify(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{}, "")
	before := time.Now()
	tok := e.enroll(t, map[string]string{"organisation_number": "912345678"})
	f := e.lastForm()
	assert.Equal(t, "authorization_code", f.Get("grant_type"))
	assert.Equal(t, clientID, f.Get("client_id"))
	assert.Equal(t, clientSecret, f.Get("client_secret"), "client authentication in the body")
	assert.False(t, f.Has("code_verifier"), "no verifier without a challenge")
	assert.True(t, e.sim.Valid(tok.AccessToken))
	assert.Equal(t, "912345678", e.sim.Organisation(tok.AccessToken))
	assert.WithinDuration(t, before.Add(time.Hour), tok.Expiry, 5*time.Second)
	assert.True(t, tok.RefreshExpiry.IsZero(), "Luca's refresh tokens do not expire")
	assert.Equal(t, []string{"accounting"}, tok.Scopes)

	v := e.p.(providers.Verifier)
	require.NoError(t, v.Verify(ctx, tok))
	_, isRevoker := e.p.(providers.Revoker)
	assert.False(t, isRevoker, "Luca documents no revocation")

	nt, err := e.p.Refresh(ctx, tok)
	require.NoError(t, err)
	e.track(nt)
	assert.Equal(t, tok.RefreshToken, nt.RefreshToken, "Luca repeats the refresh token")
	assert.NotEqual(t, tok.AccessToken, nt.AccessToken)
	assert.Equal(t, "refresh_token", e.lastForm().Get("grant_type"))
	assert.Equal(t, clientSecret, e.lastForm().Get("client_secret"))
	require.NoError(t, v.Verify(ctx, nt))

	// An expired access token fails the check with a class that asks for
	// a refresh, and the error shows no token.
	e.sim.ExpireAccessTokens()
	err = v.Verify(ctx, nt)
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, http.StatusUnauthorized, pe.Status)
	e.requireNoSecret(t, err)
	nt2, err := e.p.Refresh(ctx, nt)
	require.NoError(t, err)
	e.track(nt2)
	require.NoError(t, v.Verify(ctx, nt2))
}

func TestRotationAndPKCE(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{RotateRefreshTokens: true}, "      pkce: true\n")
	u, err := e.p.(providers.Authorizer).AuthCodeURL("st-1", verifier, redirectURL, nil, nil)
	require.NoError(t, err)
	assert.Contains(t, u, "code_challenge_method=S256")
	tok := e.enroll(t, nil)
	assert.Equal(t, verifier, e.lastForm().Get("code_verifier"))
	nt, err := e.p.Refresh(ctx, tok)
	require.NoError(t, err)
	e.track(nt)
	assert.NotEqual(t, tok.RefreshToken, nt.RefreshToken)
	_, err = e.p.Refresh(ctx, tok)
	requireClass(t, err, providers.InvalidGrant)
	e.requireNoSecret(t, err)
}

func TestFailures(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{}, "")
	tok := e.enroll(t, nil)
	v := e.p.(providers.Verifier)

	e.sim.FailNext(1, http.StatusServiceUnavailable)
	_, err := e.p.Refresh(ctx, tok)
	pe := requireClass(t, err, providers.Transient)
	assert.Equal(t, http.StatusServiceUnavailable, pe.Status)
	e.requireNoSecret(t, err)

	e.sim.Malformed(1)
	_, err = e.p.Refresh(ctx, tok)
	requireClass(t, err, providers.Transient)
	assert.ErrorIs(t, err, providers.ErrMalformedReply)
	e.requireNoSecret(t, err)

	e.sim.RateLimit(1, 12*time.Second)
	_, err = e.p.Refresh(ctx, tok)
	pe = requireClass(t, err, providers.RateLimited)
	assert.Equal(t, 12*time.Second, pe.RetryAfter)

	e.sim.FailNext(1, http.StatusBadGateway)
	err = v.Verify(ctx, tok)
	requireClass(t, err, providers.Transient)
	e.sim.RateLimit(1, 3*time.Second)
	err = v.Verify(ctx, tok)
	requireClass(t, err, providers.RateLimited)
	e.sim.Malformed(1)
	err = v.Verify(ctx, tok)
	requireClass(t, err, providers.Transient)
	e.requireNoSecret(t, err)

	// The code was spent at enrollment.
	e.mu.Lock()
	spent := e.forms[0].Get("code")
	e.mu.Unlock()
	_, err = e.p.Exchange(ctx, providers.Grant{Type: providers.GrantAuthorizationCode, Code: spent, RedirectURL: redirectURL})
	requireClass(t, err, providers.InvalidGrant)
	e.requireNoSecret(t, err)

	e.sim.RevokeRefreshTokens()
	_, err = e.p.Refresh(ctx, tok)
	pe = requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "invalid_grant", pe.Code)
	e.requireNoSecret(t, err)
	err = v.Verify(ctx, tok)
	requireClass(t, err, providers.InvalidGrant)
}

func TestExpiredRefreshTokenAndCode(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, sim.Options{RefreshTTL: 24 * time.Hour, Now: clock}, "")
	tok := e.enroll(t, nil)
	mu.Lock()
	now = now.Add(25 * time.Hour)
	mu.Unlock()
	_, err := e.p.Refresh(ctx, tok)
	requireClass(t, err, providers.InvalidGrant)
	e.requireNoSecret(t, err)

	// Codes live ten minutes.
	u, err := e.p.(providers.Authorizer).AuthCodeURL("s", verifier, redirectURL, nil, nil)
	require.NoError(t, err)
	q := e.follow(t, u)
	mu.Lock()
	now = now.Add(10*time.Minute + time.Second)
	mu.Unlock()
	_, err = e.p.Exchange(ctx, providers.Grant{Type: providers.GrantAuthorizationCode, Code: q.Get("code"), RedirectURL: redirectURL})
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "Authorization code has expired", pe.Description)
	assert.NotContains(t, err.Error(), q.Get("code"))
}

func TestWrongClientSecretIsPermanent(t *testing.T) {
	e := newEnv(t, sim.Options{ClientSecret: "the-right-one"}, "")
	u, err := e.p.(providers.Authorizer).AuthCodeURL("s", verifier, redirectURL, nil, nil)
	require.NoError(t, err)
	q := e.follow(t, u)
	_, err = e.p.Exchange(context.Background(), providers.Grant{Type: providers.GrantAuthorizationCode, Code: q.Get("code"), RedirectURL: redirectURL})
	pe := requireClass(t, err, providers.Permanent)
	assert.Equal(t, "invalid_client", pe.Code)
	assert.Equal(t, http.StatusUnauthorized, pe.Status)
	e.requireNoSecret(t, err)
	_, err = e.p.Refresh(context.Background(), &providers.Token{RefreshToken: "rt-SECRET-x"})
	requireClass(t, err, providers.Permanent)
	assert.NotContains(t, err.Error(), "rt-SECRET-x")
}

func TestConfigValidation(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"no base_url":   {"grants: [authorization_code]\n    settings: {}", "settings.base_url is required"},
		"bad base_url":  {"grants: [authorization_code]\n    settings: {base_url: '/x'}", "not an absolute http(s) URL"},
		"password":      {"grants: [password]\n    settings: {base_url: 'https://x'}", "authorization_code only"},
		"header auth":   {"grants: [authorization_code]\n    auth_style: header\n    settings: {base_url: 'https://x'}", "in the form"},
		"bad locale":    {"grants: [authorization_code]\n    auth_params: {locale: sv}\n    settings: {base_url: 'https://x'}", "locale must be nb or en"},
		"bad org":       {"grants: [authorization_code]\n    auth_params: {organisation_number: '1'}\n    settings: {base_url: 'https://x'}", "nine digits"},
		"unknown field": {"grants: [authorization_code]\n    settings: {base_url: 'https://x', graphql: y}", "unknown field settings.graphql"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := "providers:\n  - name: l\n    kind: luca\n    client_id: c\n    client_secret: {vault: 'providers/luca#client_secret'}\n    " + tc.yaml + "\n"
			_, err := providers.Load(strings.NewReader(doc), kinds)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestCatalogSnippetLoads(t *testing.T) {
	f, err := os.Open("catalog.yaml")
	require.NoError(t, err)
	defer f.Close()
	cat, err := providers.Load(f, kinds)
	require.NoError(t, err)
	require.Len(t, cat.Entries(), 1)
	assert.Empty(t, cat.Warnings)
}
