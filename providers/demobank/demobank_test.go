package demobank_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
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
	"github.com/tokenwarden/tokenwarden/providers/demobank"
	"github.com/tokenwarden/tokenwarden/providers/demobank/sim"
)

const (
	userPassword = "demo-SECRET-pw-123"
	catalogValue = "never-SENT-secret"
)

var kinds = map[string]providers.Kind{demobank.KindName: demobank.New}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	sim     *sim.Server
	p       providers.Provider
	clock   *clock
	mu      sync.Mutex
	forms   []url.Values
	secrets []string
	grant   providers.Grant
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{clock: &clock{t: time.Now()}}
	e.sim = sim.New(sim.Options{Users: map[string]string{"demo": userPassword}, Now: e.clock.Now})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		e.mu.Lock()
		e.forms = append(e.forms, r.PostForm)
		e.mu.Unlock()
		e.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	doc := `
providers:
  - name: demobank
    kind: demobank
    client_id: demobank-cli
    auth_style: none
    client_secret: {value: "` + catalogValue + `"}
    grants: [password]
    settings:
      base_url: ` + srv.URL + `
      mandator: customer
`
	cat, err := providers.Load(strings.NewReader(doc), kinds)
	require.NoError(t, err)
	reg, err := cat.Open(context.Background(), nil, srv.Client())
	require.NoError(t, err)
	p, entry, ok := reg.Get("demobank")
	require.True(t, ok)
	assert.Equal(t, srv.URL+"/realms/customer/protocol/openid-connect/token", entry.Endpoint.TokenURL)
	assert.Equal(t, srv.URL+"/realms/customer/protocol/openid-connect/logout", entry.Endpoint.LogoutURL)
	e.p = p
	e.grant = providers.Grant{Type: providers.GrantPassword, Username: "demo", Password: userPassword}
	e.secrets = []string{userPassword, catalogValue}
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

func (e *env) enroll(t *testing.T) *providers.Token {
	t.Helper()
	tok, err := e.p.Exchange(context.Background(), e.grant)
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

func TestEnrollAsPublicClient(t *testing.T) {
	e := newEnv(t)
	tok := e.enroll(t)
	now := time.Now()
	assert.True(t, e.sim.Valid(tok.AccessToken))
	assert.Equal(t, "Bearer", tok.TokenType)
	assert.WithinDuration(t, now.Add(900*time.Second), tok.Expiry, 5*time.Second)
	assert.WithinDuration(t, now.Add(1800*time.Second), tok.RefreshExpiry, 5*time.Second)
	assert.Equal(t, []string{"xs2a_mock:user", "profile"}, tok.Scopes)
	for _, k := range []string{"mandator_name", "mandator_uuid", "is_test_mandator", "is_technical_user", "session_state", "not-before-policy"} {
		assert.NotEmpty(t, tok.Extra[k], k)
	}
	assert.Equal(t, "finAPI Demobank", tok.Extra["mandator_name"])
	assert.Equal(t, "false", tok.Extra["is_test_mandator"])

	// The access token is a JWT whose exp matches expires_in.
	parts := strings.Split(tok.AccessToken, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims struct{ Exp int64 }
	require.NoError(t, json.Unmarshal(payload, &claims))
	assert.InDelta(t, tok.Expiry.Unix(), claims.Exp, 5)

	e.mu.Lock()
	defer e.mu.Unlock()
	require.Len(t, e.forms, 1)
	f := e.forms[0]
	assert.Equal(t, "password", f.Get("grant_type"))
	assert.Equal(t, "demobank-cli", f.Get("client_id"))
	assert.Equal(t, "demo", f.Get("username"))
	assert.False(t, f.Has("client_secret"), "a public client sends no secret")
}

func TestRefreshAndLogout(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tok := e.enroll(t)
	nt, err := e.p.Refresh(ctx, tok)
	require.NoError(t, err)
	e.track(nt)
	assert.True(t, e.sim.Valid(nt.AccessToken))
	assert.NotEqual(t, tok.RefreshToken, nt.RefreshToken, "Keycloak rotates")
	assert.Equal(t, "finAPI Demobank", nt.Extra["mandator_name"])
	assert.Equal(t, 1, e.sim.Stats()["token.refresh_token"])

	require.NoError(t, e.p.(providers.Revoker).Revoke(ctx, nt))
	_, err = e.p.Refresh(ctx, nt)
	requireClass(t, err, providers.InvalidGrant)
	e.requireNoSecret(t, err)
	e.mu.Lock()
	last := e.forms[len(e.forms)-2]
	e.mu.Unlock()
	assert.Equal(t, "demobank-cli", last.Get("client_id"))
	assert.False(t, last.Has("client_secret"))
}

// After refresh_expires_in Keycloak answers "Token is not active"; the
// engine then repeats the password grant from the stored grant, which
// must work.
func TestExpiredRefreshTokenLogsInAgain(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tok := e.enroll(t)
	e.clock.Add(1801 * time.Second)
	_, err := e.p.Refresh(ctx, tok)
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "Token is not active", pe.Description)
	assert.Equal(t, "invalid_grant", pe.Code)
	e.requireNoSecret(t, err)
	_, isReenroller := e.p.(providers.Reenroller)
	assert.False(t, isReenroller, "the engine's password re-exchange does the job")
	again, err := e.p.Exchange(ctx, e.grant)
	require.NoError(t, err)
	assert.True(t, e.sim.Valid(again.AccessToken))
	assert.Equal(t, 2, e.sim.Stats()["token.password"])
}

func TestFailures(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tok := e.enroll(t)

	_, err := e.p.Exchange(ctx, providers.Grant{Type: providers.GrantPassword, Username: "demo", Password: "wrong-SECRET"})
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, http.StatusUnauthorized, pe.Status)
	assert.Equal(t, "Invalid user credentials", pe.Description)
	assert.NotContains(t, err.Error(), "wrong-SECRET")

	e.sim.LockUser("demo")
	_, err = e.p.Exchange(ctx, e.grant)
	pe = requireClass(t, err, providers.Permanent)
	assert.Equal(t, "Account disabled", pe.Description)
	e.requireNoSecret(t, err)
	_, err = e.p.Refresh(ctx, tok)
	requireClass(t, err, providers.Permanent)
	e.requireNoSecret(t, err)
	e.sim.UnlockUser("demo")

	e.sim.FailNext(1, http.StatusInternalServerError)
	_, err = e.p.Refresh(ctx, tok)
	requireClass(t, err, providers.Transient)
	e.requireNoSecret(t, err)

	e.sim.Malformed(1)
	_, err = e.p.Exchange(ctx, e.grant)
	requireClass(t, err, providers.Transient)
	assert.ErrorIs(t, err, providers.ErrMalformedReply)
	e.requireNoSecret(t, err)

	e.sim.RateLimit(1, 30*time.Second)
	_, err = e.p.Refresh(ctx, tok)
	pe = requireClass(t, err, providers.RateLimited)
	assert.Equal(t, 30*time.Second, pe.RetryAfter)

	e.sim.ExpireRefreshTokens()
	_, err = e.p.Refresh(ctx, tok)
	requireClass(t, err, providers.InvalidGrant)
	e.requireNoSecret(t, err)

	// Logout of a dead session, or without a refresh token, is not an error.
	require.NoError(t, e.p.(providers.Revoker).Revoke(ctx, tok))
	require.NoError(t, e.p.(providers.Revoker).Revoke(ctx, &providers.Token{AccessToken: "a"}))

	_, err = e.p.Exchange(ctx, providers.Grant{Type: providers.GrantPassword, Username: "demo"})
	requireClass(t, err, providers.Permanent)
}

func TestConfigValidation(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"no mandator":    {"grants: [password]\n    settings: {}", "settings.mandator is required"},
		"bad mandator":   {"grants: [password]\n    settings: {mandator: 'a/b'}", "bare realm name"},
		"bad base_url":   {"grants: [password]\n    settings: {mandator: m, base_url: 'x'}", "not an absolute http(s) URL"},
		"code grant":     {"grants: [authorization_code]\n    settings: {mandator: m}", "finAPI offers password only"},
		"secret in body": {"grants: [password]\n    auth_style: body\n    settings: {mandator: m}", "public client"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := "providers:\n  - name: d\n    kind: demobank\n    client_id: demobank-cli\n    " + tc.yaml + "\n"
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
	reg, err := cat.Open(context.Background(), nil, nil)
	require.NoError(t, err)
	_, entry, _ := reg.Get("finapi-demobank")
	assert.Equal(t, demobank.DefaultBaseURL+"/realms/customer/protocol/openid-connect/token", entry.Endpoint.TokenURL)
}

// client_id defaults to demobank-cli, as the seed fixes it ("client_id:
// demobank-cli (fixed)"); another one loads with a warning, and logins
// with it fail against a realm that knows only demobank-cli.
func TestClientIDDefaultAndWarning(t *testing.T) {
	load := func(clientID string) *providers.Catalog {
		t.Helper()
		doc := "providers:\n  - name: d\n    kind: demobank\n    grants: [password]\n    settings: {mandator: customer}\n"
		if clientID != "" {
			doc = strings.Replace(doc, "kind: demobank\n", "kind: demobank\n    client_id: "+clientID+"\n", 1)
		}
		cat, err := providers.Load(strings.NewReader(doc), kinds)
		require.NoError(t, err)
		return cat
	}
	cat := load("")
	assert.Equal(t, sim.ClientID, cat.Entries()[0].ClientID)
	assert.Empty(t, cat.Warnings)
	assert.Empty(t, load(sim.ClientID).Warnings)

	cat = load("my-cli")
	assert.Equal(t, "my-cli", cat.Entries()[0].ClientID)
	require.Len(t, cat.Warnings, 1)
	assert.Contains(t, cat.Warnings[0], `client_id "my-cli" is not demobank-cli`)
	assert.Contains(t, cat.Warnings[0], `provider "d"`)

	s := sim.New(sim.Options{Users: map[string]string{"demo": "pw-demo-0001"}})
	srv := httptest.NewServer(s)
	defer srv.Close()
	for id, works := range map[string]bool{sim.ClientID: true, "my-cli": false} {
		e := providers.Entry{Name: "d", Kind: demobank.KindName, ClientID: id, Grants: []string{providers.GrantPassword},
			Endpoint: demobank.Endpoints(srv.URL, "customer")}
		p, err := demobank.NewProvider(e, srv.Client())
		require.NoError(t, err)
		_, err = p.Exchange(context.Background(), providers.Grant{Type: providers.GrantPassword, Username: "demo", Password: "pw-demo-0001"})
		if works {
			require.NoError(t, err)
		} else {
			pe := requireClass(t, err, providers.Permanent)
			assert.Equal(t, "invalid_client", pe.Code)
		}
	}
}
