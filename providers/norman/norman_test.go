package norman

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/norman/sim"
)

const (
	institutionID = "inst-42"
	secretKey     = "sk-SECRET-norman-0001"
)

// fixture is a provider wired to a simulator.
type fixture struct {
	sim *sim.Server
	srv *httptest.Server
	p   *Provider
	// secrets seen by the test: no error text may contain one.
	secrets []string
}

func newFixture(t *testing.T, opts sim.Options) *fixture {
	t.Helper()
	opts.InstitutionID, opts.SecretKey = institutionID, secretKey
	s := sim.New(opts)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	p, err := NewProvider(srv.URL, institutionID, secretKey, 0, &http.Client{Timeout: 5 * time.Second})
	require.NoError(t, err)
	return &fixture{sim: s, srv: srv, p: p, secrets: []string{secretKey}}
}

// remember adds tok's secrets to those no error may show.
func (f *fixture) remember(tok *providers.Token) {
	if tok != nil {
		f.secrets = append(f.secrets, tok.AccessToken, tok.RefreshToken)
	}
}

// class asserts err is a *providers.Error of class c without secrets.
func (f *fixture) class(t *testing.T, err error, c providers.Class) *providers.Error {
	t.Helper()
	require.Error(t, err)
	var pe *providers.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, c, pe.Class, "class of %v", err)
	for _, s := range f.secrets {
		if s != "" {
			require.NotContains(t, err.Error(), s, "error text leaks a secret")
		}
	}
	return pe
}

func userGrant(name string) providers.Grant {
	return providers.Grant{Type: GrantUser, Params: map[string]string{
		ParamUsername: name, ParamEmail: name + "@example.com", ParamExternalID: "ext-" + name,
	}}
}

func (f *fixture) enroll(t *testing.T, name string) *providers.Token {
	t.Helper()
	tok, err := f.p.Exchange(context.Background(), userGrant(name))
	require.NoError(t, err)
	f.remember(tok)
	return tok
}

func TestEnrollment(t *testing.T) {
	f := newFixture(t, sim.Options{AccessTTL: 10 * time.Minute, RefreshTTL: 2 * time.Hour})
	before := time.Now()
	tok := f.enroll(t, "alice")
	assert.True(t, f.sim.HasUser("alice"))
	assert.True(t, f.sim.Valid(tok.AccessToken))
	assert.NotEmpty(t, tok.RefreshToken)
	assert.Equal(t, "Bearer", tok.TokenType)
	// Expiries come from the JWT exp claims, not the 30m default.
	assert.WithinDuration(t, before.Add(10*time.Minute), tok.Expiry, 3*time.Second)
	assert.WithinDuration(t, before.Add(2*time.Hour), tok.RefreshExpiry, 3*time.Second)
	assert.Equal(t, map[string]int{"create": 1}, f.sim.Stats())
}

func TestEnrollmentOfExistingUserRetrieves(t *testing.T) {
	f := newFixture(t, sim.Options{})
	first := f.enroll(t, "bob")
	again := f.enroll(t, "bob")
	assert.NotEqual(t, first.AccessToken, again.AccessToken)
	assert.True(t, f.sim.Valid(again.AccessToken))
	assert.Equal(t, map[string]int{"create": 2, "retrieve": 1}, f.sim.Stats())

	// The same username with another identity is not the same user.
	g := userGrant("bob")
	g.Params[ParamExternalID] = "someone-else"
	_, err := f.p.Exchange(context.Background(), g)
	pe := f.class(t, err, providers.Permanent)
	assert.Equal(t, 404, pe.Status)
}

func TestExchangeRefusesBadGrants(t *testing.T) {
	f := newFixture(t, sim.Options{})
	_, err := f.p.Exchange(context.Background(), providers.Grant{Type: providers.GrantPassword, Username: "x", Password: "y"})
	require.ErrorIs(t, err, providers.ErrUnsupported)
	f.class(t, err, providers.Permanent)

	g := userGrant("carol")
	delete(g.Params, ParamEmail)
	delete(g.Params, ParamExternalID)
	_, err = f.p.Exchange(context.Background(), g)
	f.class(t, err, providers.Permanent)
	assert.Contains(t, err.Error(), "email, external_id")

	// The grant's username stands in for the param.
	g = userGrant("dave")
	delete(g.Params, ParamUsername)
	g.Username = "dave"
	_, err = f.p.Exchange(context.Background(), g)
	require.NoError(t, err)
	assert.True(t, f.sim.HasUser("dave"))
	assert.Equal(t, 0, f.sim.Stats()["retrieve"])
}

func TestRefreshRotates(t *testing.T) {
	f := newFixture(t, sim.Options{})
	tok := f.enroll(t, "erin")
	orig := *tok
	next, err := f.p.Refresh(context.Background(), tok)
	require.NoError(t, err)
	f.remember(next)
	assert.Equal(t, orig, *tok, "Refresh must not modify its argument")
	assert.NotEqual(t, tok.RefreshToken, next.RefreshToken, "rotated")
	assert.NotEqual(t, tok.AccessToken, next.AccessToken)
	assert.True(t, f.sim.Valid(next.AccessToken))
	assert.False(t, next.RefreshExpiry.IsZero())

	// The rotated-out refresh token is blacklisted.
	_, err = f.p.Refresh(context.Background(), tok)
	pe := f.class(t, err, providers.InvalidGrant)
	assert.Equal(t, CodeTokenNotValid, pe.Code)
	assert.Equal(t, 401, pe.Status)

	// The new one works.
	third, err := f.p.Refresh(context.Background(), next)
	require.NoError(t, err)
	assert.True(t, f.sim.Valid(third.AccessToken))
}

func TestRefreshWithoutRotationKeepsRefreshToken(t *testing.T) {
	f := newFixture(t, sim.Options{NoRotation: true})
	tok := f.enroll(t, "frank")
	next, err := f.p.Refresh(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, tok.RefreshToken, next.RefreshToken)
	assert.Equal(t, tok.RefreshExpiry, next.RefreshExpiry)
	assert.NotEqual(t, tok.AccessToken, next.AccessToken)
	_, err = f.p.Refresh(context.Background(), next)
	require.NoError(t, err, "the kept refresh token still works")

	_, err = f.p.Refresh(context.Background(), &providers.Token{AccessToken: "x"})
	f.class(t, err, providers.InvalidGrant)
	_, err = f.p.Refresh(context.Background(), nil)
	f.class(t, err, providers.InvalidGrant)
}

func TestVerify(t *testing.T) {
	f := newFixture(t, sim.Options{})
	tok := f.enroll(t, "grace")
	require.NoError(t, f.p.Verify(context.Background(), tok))
	assert.Equal(t, 1, f.sim.Stats()["verify"])

	f.sim.ExpireAccessTokens()
	err := f.p.Verify(context.Background(), tok)
	pe := f.class(t, err, providers.InvalidGrant)
	assert.Equal(t, CodeTokenNotValid, pe.Code)
	assert.Equal(t, "verify", pe.Op)

	f.class(t, f.p.Verify(context.Background(), &providers.Token{}), providers.InvalidGrant)
}

func TestAccessTokenExpiresInTime(t *testing.T) {
	f := newFixture(t, sim.Options{AccessTTL: time.Second})
	tok := f.enroll(t, "heidi")
	require.NoError(t, f.p.Verify(context.Background(), tok))
	require.Eventually(t, func() bool { return !f.sim.Valid(tok.AccessToken) }, 5*time.Second, 50*time.Millisecond)
	f.class(t, f.p.Verify(context.Background(), tok), providers.InvalidGrant)
	next, err := f.p.Refresh(context.Background(), tok)
	require.NoError(t, err)
	require.NoError(t, f.p.Verify(context.Background(), next))
}

func TestRevoke(t *testing.T) {
	f := newFixture(t, sim.Options{})
	tok := f.enroll(t, "ivan")
	require.NoError(t, f.p.Revoke(context.Background(), tok))
	assert.False(t, f.sim.Valid(tok.AccessToken), "expire ends the session")
	_, err := f.p.Refresh(context.Background(), tok)
	f.class(t, err, providers.InvalidGrant)
	// Again: the token is already gone, which counts as revoked.
	require.NoError(t, f.p.Revoke(context.Background(), tok))
	assert.Equal(t, 2, f.sim.Stats()["expire"])
	// Nothing to revoke.
	require.NoError(t, f.p.Revoke(context.Background(), &providers.Token{AccessToken: "a"}))
	require.NoError(t, f.p.Revoke(context.Background(), nil))

	tok = f.enroll(t, "ivan2")
	f.sim.FailNext(1, 503)
	f.class(t, f.p.Revoke(context.Background(), tok), providers.Transient)
}

func TestReenrollAfterRefreshTokenDies(t *testing.T) {
	f := newFixture(t, sim.Options{})
	g := userGrant("judy")
	tok, err := f.p.Exchange(context.Background(), g)
	require.NoError(t, err)
	f.remember(tok)

	f.sim.ExpireRefreshTokens()
	_, err = f.p.Refresh(context.Background(), tok)
	f.class(t, err, providers.InvalidGrant)

	fresh, err := f.p.Reenroll(context.Background(), g)
	require.NoError(t, err)
	f.remember(fresh)
	assert.True(t, f.sim.Valid(fresh.AccessToken))
	_, err = f.p.Refresh(context.Background(), fresh)
	require.NoError(t, err)

	_, err = f.p.Reenroll(context.Background(), userGrant("nobody"))
	f.class(t, err, providers.Permanent)
	_, err = f.p.Reenroll(context.Background(), providers.Grant{Type: "password"})
	f.class(t, err, providers.Permanent)
}

func TestFailureClasses(t *testing.T) {
	f := newFixture(t, sim.Options{})
	tok := f.enroll(t, "ken")
	ctx := context.Background()

	t.Run("5xx", func(t *testing.T) {
		f.sim.FailNext(1, 502)
		_, err := f.p.Refresh(ctx, tok)
		pe := f.class(t, err, providers.Transient)
		assert.Equal(t, 502, pe.Status)
		assert.NotContains(t, err.Error(), "html")
	})
	t.Run("429", func(t *testing.T) {
		f.sim.RateLimit(1, 7*time.Second)
		_, err := f.p.Refresh(ctx, tok)
		pe := f.class(t, err, providers.RateLimited)
		assert.Equal(t, 7*time.Second, pe.RetryAfter)
	})
	t.Run("malformed", func(t *testing.T) {
		f.sim.Malformed(1)
		_, err := f.p.Exchange(ctx, userGrant("ken-2"))
		f.class(t, err, providers.Transient)
		require.ErrorIs(t, err, providers.ErrMalformedReply)
	})
	t.Run("wrong institution secret", func(t *testing.T) {
		p, err := NewProvider(f.srv.URL, institutionID, "wrong-"+secretKey, 0, nil)
		require.NoError(t, err)
		_, err = p.Exchange(ctx, userGrant("ken-3"))
		pe := f.class(t, err, providers.Permanent)
		assert.Equal(t, 403, pe.Status)
		_, err = p.Refresh(ctx, tok)
		f.class(t, err, providers.Permanent)
		f.class(t, p.Verify(ctx, tok), providers.Permanent)
		f.class(t, p.Revoke(ctx, tok), providers.Permanent)
		assert.True(t, f.sim.Valid(tok.AccessToken), "a rejected revoke leaves the token alone")
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		p, err := NewProvider(url, institutionID, secretKey, 0, nil)
		require.NoError(t, err)
		_, err = p.Refresh(ctx, tok)
		pe := f.class(t, err, providers.Transient)
		assert.Zero(t, pe.Status)
	})
	// The refresh token survived the failed calls.
	_, err := f.p.Refresh(ctx, tok)
	require.NoError(t, err)
}

// Norman replies without a JWT access token get the configured lifetime;
// the field spellings of SimpleJWT and of Norman's guide both work.
func TestOpaqueTokensAndFieldSpellings(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Institution") != institutionID+":"+secretKey {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case PathCreate:
			_, _ = w.Write([]byte(`{"access":"opaque-a","refresh":"opaque-r"}`))
		case PathRefresh:
			_, _ = w.Write([]byte(`{"accessToken":"opaque-a2"}`))
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	p, err := NewProvider(srv.URL+"/", institutionID, secretKey, 7*time.Minute, nil)
	require.NoError(t, err)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	tok, err := p.Exchange(context.Background(), userGrant("leo"))
	require.NoError(t, err)
	assert.Equal(t, "opaque-a", tok.AccessToken)
	assert.Equal(t, "opaque-r", tok.RefreshToken)
	assert.Equal(t, now.Add(7*time.Minute), tok.Expiry)
	assert.True(t, tok.RefreshExpiry.IsZero())
	next, err := p.Refresh(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, "opaque-a2", next.AccessToken)
	assert.Equal(t, "opaque-r", next.RefreshToken)
}

func TestSimRejectsMissingInstitution(t *testing.T) {
	s := sim.New(sim.Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, err := http.Post(srv.URL+PathVerify, "application/json", strings.NewReader(`{"token":"x"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode)
	resp, err = http.Get(srv.URL + "/_sim/stats")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func TestCatalog(t *testing.T) {
	kinds := map[string]providers.Kind{KindName: New}
	c, err := providers.LoadFile("catalog.yaml", kinds)
	require.NoError(t, err)
	require.Len(t, c.Entries(), 1)

	// Open against the simulator, the secret from the environment.
	s := sim.New(sim.Options{InstitutionID: "your-institution-id", SecretKey: secretKey})
	srv := httptest.NewServer(s)
	defer srv.Close()
	t.Setenv("NORMAN_TEST_SECRET", secretKey)
	doc := `providers:
  - name: norman
    kind: norman
    client_id: your-institution-id
    client_secret: {env: NORMAN_TEST_SECRET}
    grants: [norman_user]
    allowed_params: [username, email, external_id]
    settings: {base_url: "` + srv.URL + `", access_token_lifetime: 20m}
`
	c, err = providers.Load(strings.NewReader(doc), kinds)
	require.NoError(t, err)
	reg, err := c.Open(context.Background(), nil, nil)
	require.NoError(t, err)
	p, _, ok := reg.Get("norman")
	require.True(t, ok)
	tok, err := p.Exchange(context.Background(), userGrant("mallory"))
	require.NoError(t, err)
	assert.True(t, s.Valid(tok.AccessToken))
	_, isReenroller := p.(providers.Reenroller)
	assert.True(t, isReenroller)
}

func TestConfigValidate(t *testing.T) {
	bad := `providers:
  - name: norman
    kind: norman
    client_id: "a:b"
    grants: [norman_user, password]
    allowed_params: [username]
    endpoint: {token_url: "https://x.example.com/token"}
    settings: {base_url: "not a url", access_token_lifetime: -1s}
`
	_, err := providers.Load(strings.NewReader(bad), map[string]providers.Kind{KindName: New})
	require.Error(t, err)
	for _, want := range []string{
		"base_url", "access_token_lifetime", `grant "password"`, "must not contain ':'",
		"client_secret", `"email"`, `"external_id"`, "endpoint is not used",
	} {
		assert.Contains(t, err.Error(), want)
	}

	_, err = (&Config{BaseURL: "https://x.example.com"}).Open(context.Background(),
		providers.Entry{ClientID: "i", ClientSecret: providers.SecretRef{Env: "X"}, Grants: []string{GrantUser},
			AllowedParams: []string{"username", "email", "external_id"}},
		providers.Setup{HTTPClient: http.DefaultClient})
	require.Error(t, err, "an empty resolved secret is refused")
}
