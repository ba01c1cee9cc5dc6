package everifin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/everifin"
	"github.com/tokenwarden/tokenwarden/providers/everifin/sim"
)

const (
	clientID     = "tokenwarden"
	clientSecret = "everifin-SECRET-client-4711"
	userPassword = "alice-SECRET-pw"
	redirectURL  = "https://tokenwarden.example/v1/callback"
	verifier     = "verifier-SECRET-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
)

var kinds = map[string]providers.Kind{everifin.KindName: everifin.New}

// env is a provider opened from a catalog entry against a simulated realm.
type env struct {
	sim *sim.Server
	srv *httptest.Server
	p   providers.Provider
	// secrets are values no error text may contain; tests add tokens.
	secrets []string
}

func newEnv(t *testing.T, opts sim.Options, extraYAML string) *env {
	t.Helper()
	if opts.Clients == nil {
		opts.Clients = []sim.Client{{ID: clientID, Secret: clientSecret, DirectGrants: true}}
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"alice": userPassword}
	}
	opts.AutoApprove = true
	s := sim.New(opts)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	doc := `
providers:
  - name: everifin
    kind: everifin
    client_id: ` + clientID + `
    client_secret: {value: "` + clientSecret + `"}
    grants: [authorization_code, password]
    settings:
      base_url: ` + srv.URL + `
      realm: everifin
` + extraYAML
	cat, err := providers.Load(strings.NewReader(doc), kinds)
	require.NoError(t, err)
	reg, err := cat.Open(context.Background(), nil, srv.Client())
	require.NoError(t, err)
	p, _, ok := reg.Get("everifin")
	require.True(t, ok)
	return &env{sim: s, srv: srv, p: p, secrets: []string{clientSecret, userPassword, verifier}}
}

func (e *env) track(tok *providers.Token) {
	if tok != nil {
		e.secrets = append(e.secrets, tok.AccessToken, tok.RefreshToken, tok.IDToken)
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

// authorize follows the consent URL with the simulator's auto-approve and
// returns the redirect's query.
func (e *env) authorize(t *testing.T, state string) url.Values {
	t.Helper()
	u, err := e.p.(providers.Authorizer).AuthCodeURL(state, verifier, redirectURL, nil, nil)
	require.NoError(t, err)
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

func (e *env) enroll(t *testing.T) *providers.Token {
	t.Helper()
	q := e.authorize(t, "state-1")
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

func TestAuthCodeURLUsesPKCEAndRealmPath(t *testing.T) {
	e := newEnv(t, sim.Options{}, "")
	u, err := e.p.(providers.Authorizer).AuthCodeURL("st", verifier, redirectURL, nil, nil)
	require.NoError(t, err)
	pu, err := url.Parse(u)
	require.NoError(t, err)
	assert.Equal(t, "/auth/realms/everifin/protocol/openid-connect/auth", pu.Path)
	q := pu.Query()
	assert.Equal(t, "S256", q.Get("code_challenge_method"))
	assert.NotEmpty(t, q.Get("code_challenge"))
	assert.NotContains(t, u, verifier)
	assert.Equal(t, "openid", q.Get("scope"))
	assert.Equal(t, clientID, q.Get("client_id"))
	assert.Equal(t, "code", q.Get("response_type"))

	got := e.authorize(t, "state-xyz")
	assert.Equal(t, "state-xyz", got.Get("state"))
	assert.NotEmpty(t, got.Get("session_state"))
	assert.NotEmpty(t, got.Get("code"))
}

func TestEnrollRefreshRevoke(t *testing.T) {
	e := newEnv(t, sim.Options{}, "")
	before := time.Now()
	tok := e.enroll(t)
	assert.True(t, e.sim.Valid(tok.AccessToken))
	assert.NotEmpty(t, tok.RefreshToken)
	assert.NotEmpty(t, tok.IDToken)
	assert.WithinDuration(t, before.Add(300*time.Second), tok.Expiry, 5*time.Second)
	assert.WithinDuration(t, before.Add(1800*time.Second), tok.RefreshExpiry, 5*time.Second)
	assert.Equal(t, "0", tok.Extra["not-before-policy"])
	assert.NotEmpty(t, tok.Extra["session_state"])
	assert.Contains(t, tok.Scopes, "openid")

	// Keycloak rotates; by default the old refresh token stays usable.
	nt, err := e.p.Refresh(context.Background(), tok)
	require.NoError(t, err)
	e.track(nt)
	assert.NotEqual(t, tok.RefreshToken, nt.RefreshToken)
	assert.NotEqual(t, tok.AccessToken, nt.AccessToken)
	assert.True(t, e.sim.Valid(nt.AccessToken))
	assert.True(t, e.sim.RefreshValid(tok.RefreshToken))
	assert.Equal(t, tok.Extra["session_state"], nt.Extra["session_state"])
	assert.Equal(t, tok.IDToken != "", nt.IDToken != "")

	rv, ok := e.p.(providers.Revoker)
	require.True(t, ok)
	require.NoError(t, rv.Revoke(context.Background(), nt))
	assert.Equal(t, 1, e.sim.Stats()["logout"])
	// Logout ends the session: every refresh token of it dies, the
	// access token lives until it expires.
	_, err = e.p.Refresh(context.Background(), nt)
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "Session not active", pe.Description)
	e.requireNoSecret(t, err)
	assert.True(t, e.sim.Valid(nt.AccessToken))
	// A repeat, or a token without refresh token, is fine.
	require.NoError(t, rv.Revoke(context.Background(), nt))
	require.NoError(t, rv.Revoke(context.Background(), &providers.Token{AccessToken: "x"}))
	// A token Keycloak never issued counts as revoked.
	require.NoError(t, rv.Revoke(context.Background(), &providers.Token{RefreshToken: "unknown"}))
}

func TestRevokeRefreshTokenSwitch(t *testing.T) {
	e := newEnv(t, sim.Options{RevokeRefreshToken: true}, "")
	tok := e.enroll(t)
	nt, err := e.p.Refresh(context.Background(), tok)
	require.NoError(t, err)
	e.track(nt)
	_, err = e.p.Refresh(context.Background(), tok)
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "Maximum allowed refresh token reuse exceeded", pe.Description)
	e.requireNoSecret(t, err)
}

func TestRefreshReplyWithoutRefreshTokenKeepsOld(t *testing.T) {
	s := sim.New(sim.Options{AutoApprove: true, Clients: []sim.Client{{ID: clientID, Secret: clientSecret}}})
	strip := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strip || !strings.HasSuffix(r.URL.Path, "/token") {
			s.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		var m map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &m))
		delete(m, "refresh_token")
		delete(m, "refresh_expires_in")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	}))
	defer srv.Close()
	p, err := everifin.NewProvider(providers.Entry{
		Name: "e", Kind: everifin.KindName, ClientID: clientID, Grants: []string{"authorization_code"}, PKCE: true,
		AuthStyle: providers.AuthStyleBody, Endpoint: everifin.Endpoints(srv.URL, "everifin"),
	}, clientSecret, srv.Client())
	require.NoError(t, err)
	e := &env{sim: s, srv: srv, p: p}
	tok := e.enroll(t)
	strip = true
	nt, err := p.Refresh(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, tok.RefreshToken, nt.RefreshToken)
	assert.Equal(t, tok.RefreshExpiry, nt.RefreshExpiry)
	assert.NotEqual(t, tok.AccessToken, nt.AccessToken)
}

func TestFailures(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{}, "")
	tok := e.enroll(t)

	e.sim.FailNext(1, http.StatusBadGateway)
	_, err := e.p.Refresh(ctx, tok)
	pe := requireClass(t, err, providers.Transient)
	assert.Equal(t, http.StatusBadGateway, pe.Status)
	e.requireNoSecret(t, err)

	e.sim.Malformed(1)
	_, err = e.p.Refresh(ctx, tok)
	requireClass(t, err, providers.Transient)
	assert.ErrorIs(t, err, providers.ErrMalformedReply)
	e.requireNoSecret(t, err)

	e.sim.RateLimit(1, 7*time.Second)
	_, err = e.p.Refresh(ctx, tok)
	pe = requireClass(t, err, providers.RateLimited)
	assert.Equal(t, 7*time.Second, pe.RetryAfter)

	e.sim.LockUser("alice")
	_, err = e.p.Refresh(ctx, tok)
	pe = requireClass(t, err, providers.Permanent)
	assert.Equal(t, "User disabled", pe.Description)
	_, err = e.p.Exchange(ctx, providers.Grant{Type: providers.GrantPassword, Username: "alice", Password: userPassword})
	pe = requireClass(t, err, providers.Permanent)
	assert.Equal(t, "Account disabled", pe.Description)
	e.requireNoSecret(t, err)
	e.sim.UnlockUser("alice")

	// A fault on logout is retried by the engine.
	e.sim.FailNext(1, http.StatusServiceUnavailable)
	err = e.p.(providers.Revoker).Revoke(ctx, tok)
	requireClass(t, err, providers.Transient)
	e.requireNoSecret(t, err)

	e.sim.ExpireRefreshTokens()
	_, err = e.p.Refresh(ctx, tok)
	pe = requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "Token is not active", pe.Description)
	assert.Equal(t, http.StatusBadRequest, pe.Status)
	e.requireNoSecret(t, err)

	// The code was spent at enrollment.
	q := e.authorize(t, "s2")
	g := providers.Grant{Type: providers.GrantAuthorizationCode, Code: q.Get("code"), CodeVerifier: verifier, RedirectURL: redirectURL}
	e.secrets = append(e.secrets, g.Code)
	t2, err := e.p.Exchange(ctx, g)
	require.NoError(t, err)
	e.track(t2)
	_, err = e.p.Exchange(ctx, g)
	pe = requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "Code not valid", pe.Description)
	e.requireNoSecret(t, err)

	// A wrong verifier fails PKCE.
	q = e.authorize(t, "s3")
	g = providers.Grant{Type: providers.GrantAuthorizationCode, Code: q.Get("code"), CodeVerifier: verifier + "x", RedirectURL: redirectURL}
	_, err = e.p.Exchange(ctx, g)
	requireClass(t, err, providers.InvalidGrant)
	e.requireNoSecret(t, err)
}

func TestWrongClientSecretIsPermanent(t *testing.T) {
	e := newEnv(t, sim.Options{Clients: []sim.Client{{ID: clientID, Secret: "the-right-one", DirectGrants: true}}}, "")
	_, err := e.p.Exchange(context.Background(), providers.Grant{Type: providers.GrantPassword, Username: "alice", Password: userPassword})
	pe := requireClass(t, err, providers.Permanent)
	assert.Equal(t, http.StatusUnauthorized, pe.Status)
	assert.Equal(t, "unauthorized_client", pe.Code)
	e.requireNoSecret(t, err)
	err = e.p.(providers.Revoker).Revoke(context.Background(), &providers.Token{RefreshToken: "rt-SECRET"})
	requireClass(t, err, providers.Permanent)
	assert.NotContains(t, err.Error(), "rt-SECRET")
}

// A password grant (enabled by Everifin on request) re-enrolls from the
// stored credentials after the refresh token died, as the engine does.
func TestPasswordGrantReenrolls(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{RefreshTTL: time.Hour}, "")
	g := providers.Grant{Type: providers.GrantPassword, Username: "alice", Password: userPassword}
	tok, err := e.p.Exchange(ctx, g)
	require.NoError(t, err)
	e.track(tok)
	e.sim.ExpireRefreshTokens()
	_, err = e.p.Refresh(ctx, tok)
	requireClass(t, err, providers.InvalidGrant)
	again, err := e.p.Exchange(ctx, g)
	require.NoError(t, err)
	assert.True(t, e.sim.Valid(again.AccessToken))
	assert.Equal(t, 2, e.sim.Stats()["token.password"])

	_, err = e.p.Exchange(ctx, providers.Grant{Type: providers.GrantPassword, Username: "alice", Password: "wrong-SECRET"})
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "Invalid user credentials", pe.Description)
	assert.NotContains(t, err.Error(), "wrong-SECRET")
}

func TestConfigValidation(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"no base_url":   {"settings: {realm: r}", "settings.base_url is required"},
		"bad base_url":  {"settings: {base_url: 'ftp://x', realm: r}", "not an absolute http(s) URL"},
		"no realm":      {"settings: {base_url: 'https://x'}", "settings.realm is required"},
		"realm w/slash": {"settings: {base_url: 'https://x', realm: 'a/b'}", "bare realm name"},
		"bad lockout":   {"settings: {base_url: 'https://x', realm: r, lockout_backoff: -1s}", "lockout_backoff must not be negative"},
		"device grant":  {"settings: {base_url: 'https://x', realm: r}\n    grants: [device_code]", `grant "device_code" is not supported`},
		"unknown key":   {"settings: {base_url: 'https://x', realm: r, relm: r}", "unknown field settings.relm"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := "providers:\n  - name: e\n    kind: everifin\n    client_id: c\n    client_secret: {vault: 'providers/everifin#client_secret'}\n    " + tc.yaml + "\n"
			if !strings.Contains(tc.yaml, "grants:") {
				doc += "    grants: [authorization_code]\n"
			}
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
	assert.Equal(t, everifin.KindName, cat.Entries()[0].Kind)
}
