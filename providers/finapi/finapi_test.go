package finapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/finapi/sim"
)

const (
	clientID     = "tw-client"
	clientSecret = "cs-SECRET-finapi-0001"
	userPassword = "pw-SECRET-user-0001"
)

// clock is a settable clock shared by the simulator and the provider.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// seenRequest is a token-endpoint request as the simulator got it.
type seenRequest struct {
	form     url.Values
	hasBasic bool
}

type fixture struct {
	sim   *sim.Server
	srv   *httptest.Server
	p     *Provider
	clock *clock

	mu      sync.Mutex
	seen    []seenRequest
	secrets []string
}

func newFixture(t *testing.T, opts sim.Options) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	opts.ClientID, opts.ClientSecret, opts.Now = clientID, clientSecret, f.clock.now
	f.sim = sim.New(opts)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PathToken {
			_ = r.ParseForm()
			_, _, basic := r.BasicAuth()
			f.mu.Lock()
			f.seen = append(f.seen, seenRequest{form: r.PostForm, hasBasic: basic})
			f.mu.Unlock()
		}
		f.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	p, err := NewProvider(f.srv.URL, clientID, clientSecret, &http.Client{Timeout: 5 * time.Second})
	require.NoError(t, err)
	p.now = f.clock.now
	f.p = p
	f.secrets = []string{clientSecret, userPassword}
	return f
}

func (f *fixture) lastTokenRequest(t *testing.T) seenRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotEmpty(t, f.seen)
	return f.seen[len(f.seen)-1]
}

func (f *fixture) remember(tok *providers.Token) {
	if tok != nil {
		f.secrets = append(f.secrets, tok.AccessToken, tok.RefreshToken)
	}
}

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

func passwordGrant(user string, create bool) providers.Grant {
	g := providers.Grant{Type: providers.GrantPassword, Username: user, Password: userPassword}
	if create {
		g.Params = map[string]string{ParamCreateUser: "true", ParamEmail: user + "@example.com",
			ParamPhone: "+49 99 999999-999", ParamAutoUpdate: "false"}
	}
	return g
}

func (f *fixture) enroll(t *testing.T, user string) *providers.Token {
	t.Helper()
	tok, err := f.p.Exchange(context.Background(), passwordGrant(user, true))
	require.NoError(t, err)
	f.remember(tok)
	return tok
}

func TestEnrollmentCreatesUser(t *testing.T) {
	f := newFixture(t, sim.Options{})
	tok := f.enroll(t, "alice")
	assert.True(t, f.sim.HasUser("alice"))
	assert.True(t, f.sim.Valid(tok.AccessToken))
	assert.NotEmpty(t, tok.RefreshToken)
	assert.Equal(t, f.clock.now().Add(3600*time.Second), tok.Expiry)
	assert.Equal(t, []string{"all"}, tok.Scopes)
	assert.Equal(t, map[string]int{"token:client_credentials": 1, "users": 1, "token:password": 1}, f.sim.Stats())

	// Client credentials in the body, never Basic; creation params stay
	// out of the token request.
	last := f.lastTokenRequest(t)
	assert.False(t, last.hasBasic)
	assert.Equal(t, clientID, last.form.Get("client_id"))
	assert.Equal(t, clientSecret, last.form.Get("client_secret"))
	assert.Equal(t, "alice", last.form.Get("username"))
	for _, k := range []string{ParamCreateUser, ParamEmail, ParamPhone, ParamAutoUpdate} {
		assert.False(t, last.form.Has(k), k)
	}

	// Enrolling again (or re-enrolling with the stored grant) finds the
	// user there (422 ENTITY_EXISTS) and logs in.
	again := f.enroll(t, "alice")
	assert.True(t, f.sim.Valid(again.AccessToken))
	st := f.sim.Stats()
	assert.Equal(t, 1, st["token:client_credentials"], "the client token is cached")
	assert.Equal(t, 2, st["users"])
	assert.Equal(t, 2, st["token:password"])
}

func TestExchangeInputs(t *testing.T) {
	f := newFixture(t, sim.Options{})
	ctx := context.Background()

	g := passwordGrant("bob", true)
	g.Password = ""
	_, err := f.p.Exchange(ctx, g)
	f.class(t, err, providers.Permanent)
	assert.False(t, f.sim.HasUser("bob"))

	g = passwordGrant("bob", true)
	g.Params[ParamAutoUpdate] = "maybe"
	_, err = f.p.Exchange(ctx, g)
	f.class(t, err, providers.Permanent)

	_, err = f.p.Exchange(ctx, providers.Grant{Type: providers.GrantAuthorizationCode, Code: "c"})
	require.ErrorIs(t, err, providers.ErrUnsupported)

	// Without create_user an unknown user is a rejected grant.
	_, err = f.p.Exchange(ctx, passwordGrant("nobody", false))
	pe := f.class(t, err, providers.InvalidGrant)
	assert.Equal(t, "invalid_grant", pe.Code)

	// A known user logs in without creation.
	f.sim.AddUser("carol", userPassword)
	tok, err := f.p.Exchange(ctx, passwordGrant("carol", false))
	require.NoError(t, err)
	assert.True(t, f.sim.Valid(tok.AccessToken))
	assert.Zero(t, f.sim.Stats()["users"])

	// A client_credentials link gets a client token.
	ct, err := f.p.Exchange(ctx, providers.Grant{Type: providers.GrantClientCredentials})
	require.NoError(t, err)
	assert.Equal(t, f.clock.now().Add(3599*time.Second), ct.Expiry)
	assert.Empty(t, ct.RefreshToken)
}

func TestClientTokenCache(t *testing.T) {
	f := newFixture(t, sim.Options{ClientTTL: 10 * time.Minute})
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			_, err := f.p.Exchange(ctx, passwordGrant("user-"+string(rune('a'+i)), true))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, 1, f.sim.Stats()["token:client_credentials"], "one client token for all")

	// Renewed a margin (1m) ahead of expiry, not before.
	f.clock.advance(8 * time.Minute)
	f.enroll(t, "late-1")
	assert.Equal(t, 1, f.sim.Stats()["token:client_credentials"])
	f.clock.advance(1*time.Minute + time.Second)
	f.enroll(t, "late-2")
	assert.Equal(t, 2, f.sim.Stats()["token:client_credentials"])

	// A client token the server no longer accepts is replaced once.
	f.sim.ExpireClientTokens()
	f.enroll(t, "after-expiry")
	assert.Equal(t, 3, f.sim.Stats()["token:client_credentials"])

	// A failed client-token fetch fails the call and is not cached.
	f.sim.ExpireClientTokens()
	f.clock.advance(time.Hour)
	f.sim.FailNext(1, 503)
	_, err := f.p.Exchange(ctx, passwordGrant("x", true))
	pe := f.class(t, err, providers.Transient)
	assert.Equal(t, "create_user: client_token", pe.Op)
	f.enroll(t, "x")
}

func TestClientTokenWaitHonoursContext(t *testing.T) {
	f := newFixture(t, sim.Options{})
	f.p.lock <- struct{}{} // someone else is fetching
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := f.p.clientToken(ctx)
	assert.True(t, providers.IsTimeout(err), "%v", err)
	<-f.p.lock
}

func TestRefresh(t *testing.T) {
	for _, tt := range []struct {
		name    string
		mode    sim.RefreshMode
		rotates bool
	}{
		{"reuse", sim.RefreshReuse, false},
		{"rotate", sim.RefreshRotate, true},
		{"omitted keeps the old one", sim.RefreshOmit, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, sim.Options{Refresh: tt.mode, AccessTTL: 90 * time.Second})
			tok := f.enroll(t, "dave")
			orig := *tok
			f.clock.advance(time.Minute)
			next, err := f.p.Refresh(context.Background(), tok)
			require.NoError(t, err)
			f.remember(next)
			assert.Equal(t, orig, *tok, "Refresh must not modify its argument")
			assert.NotEqual(t, tok.AccessToken, next.AccessToken)
			assert.True(t, f.sim.Valid(next.AccessToken))
			assert.Equal(t, f.clock.now().Add(90*time.Second), next.Expiry)
			assert.Equal(t, tt.rotates, next.RefreshToken != tok.RefreshToken)
			assert.NotEmpty(t, next.RefreshToken)
			last := f.lastTokenRequest(t)
			assert.Equal(t, "refresh_token", last.form.Get("grant_type"))
			assert.Equal(t, clientSecret, last.form.Get("client_secret"))

			_, err = f.p.Refresh(context.Background(), next)
			require.NoError(t, err)
			if tt.rotates {
				_, err = f.p.Refresh(context.Background(), tok)
				f.class(t, err, providers.InvalidGrant)
			}
		})
	}
}

// When the refresh token dies the engine exchanges the stored password
// grant again; that must work, user creation included.
func TestDeadRefreshTokenAndReLogin(t *testing.T) {
	f := newFixture(t, sim.Options{RefreshTTL: time.Hour})
	g := passwordGrant("erin", true)
	tok, err := f.p.Exchange(context.Background(), g)
	require.NoError(t, err)
	f.remember(tok)

	f.clock.advance(time.Hour)
	_, err = f.p.Refresh(context.Background(), tok)
	pe := f.class(t, err, providers.InvalidGrant)
	assert.Equal(t, "invalid_grant", pe.Code)
	assert.Contains(t, pe.Description, "Invalid refresh token", "the description stays, minus the token")

	fresh, err := f.p.Exchange(context.Background(), g)
	require.NoError(t, err)
	assert.True(t, f.sim.Valid(fresh.AccessToken))

	f.sim.ExpireRefreshTokens()
	_, err = f.p.Refresh(context.Background(), fresh)
	f.class(t, err, providers.InvalidGrant)
	_, err = f.p.Refresh(context.Background(), &providers.Token{})
	f.class(t, err, providers.InvalidGrant)
}

func TestLockedUser(t *testing.T) {
	f := newFixture(t, sim.Options{})
	tok := f.enroll(t, "frank")
	f.sim.LockUser("frank")
	_, err := f.p.Refresh(context.Background(), tok)
	pe := f.class(t, err, providers.Permanent)
	assert.Equal(t, 423, pe.Status)
	assert.Equal(t, CodeUserLocked, pe.Code)
	_, err = f.p.Exchange(context.Background(), passwordGrant("frank", true))
	pe = f.class(t, err, providers.Permanent)
	assert.Equal(t, CodeUserLocked, pe.Code)

	f.sim.UnlockUser("frank")
	_, err = f.p.Refresh(context.Background(), tok)
	require.NoError(t, err)
}

func TestRevoke(t *testing.T) {
	f := newFixture(t, sim.Options{})
	tok := f.enroll(t, "grace")
	require.NoError(t, f.p.Revoke(context.Background(), tok))
	assert.False(t, f.sim.Valid(tok.AccessToken))
	_, err := f.p.Refresh(context.Background(), tok)
	f.class(t, err, providers.InvalidGrant)
	assert.Equal(t, 2, f.sim.Stats()["revoke"], "refresh token, then access token")
	require.NoError(t, f.p.Revoke(context.Background(), tok), "a repeat is fine")
	require.NoError(t, f.p.Revoke(context.Background(), nil))

	tok = f.enroll(t, "grace-2")
	f.sim.FailNext(1, 500)
	f.class(t, f.p.Revoke(context.Background(), tok), providers.Transient)
	assert.True(t, f.sim.Valid(tok.AccessToken))
	f.sim.FailNext(1, 403)
	f.class(t, f.p.Revoke(context.Background(), tok), providers.Permanent)
}

func TestFailureClasses(t *testing.T) {
	f := newFixture(t, sim.Options{})
	tok := f.enroll(t, "heidi")
	ctx := context.Background()

	t.Run("wrong client secret", func(t *testing.T) {
		p, err := NewProvider(f.srv.URL, clientID, "wrong-"+clientSecret, nil)
		require.NoError(t, err)
		_, err = p.Refresh(ctx, tok)
		pe := f.class(t, err, providers.Permanent)
		assert.Equal(t, "invalid_client", pe.Code)
		assert.Equal(t, 401, pe.Status)
		_, err = p.Exchange(ctx, passwordGrant("heidi", true))
		f.class(t, err, providers.Permanent)
	})
	t.Run("5xx", func(t *testing.T) {
		f.sim.FailNext(1, 503)
		_, err := f.p.Refresh(ctx, tok)
		pe := f.class(t, err, providers.Transient)
		assert.Equal(t, "UNKNOWN_ERROR", pe.Code)
	})
	t.Run("429", func(t *testing.T) {
		f.sim.RateLimit(1, 9*time.Second)
		_, err := f.p.Refresh(ctx, tok)
		pe := f.class(t, err, providers.RateLimited)
		assert.Equal(t, 9*time.Second, pe.RetryAfter)
	})
	t.Run("malformed", func(t *testing.T) {
		f.sim.Malformed(1)
		_, err := f.p.Refresh(ctx, tok)
		f.class(t, err, providers.Transient)
		require.ErrorIs(t, err, providers.ErrMalformedReply)
	})
	t.Run("user creation fails", func(t *testing.T) {
		_, _, err := f.p.clientToken(ctx) // cached, so the fault hits /users
		require.NoError(t, err)
		f.sim.FailNext(1, 500)
		_, err = f.p.Exchange(ctx, passwordGrant("ivan", true))
		pe := f.class(t, err, providers.Transient)
		assert.Equal(t, "create_user", pe.Op)
	})
	_, err := f.p.Refresh(ctx, tok)
	require.NoError(t, err, "the refresh token survived the failures")
}

func TestCatalog(t *testing.T) {
	kinds := map[string]providers.Kind{KindName: New}
	c, err := providers.LoadFile("catalog.yaml", kinds)
	require.NoError(t, err)
	require.Len(t, c.Entries(), 1)

	s := sim.New(sim.Options{ClientID: clientID, ClientSecret: clientSecret})
	srv := httptest.NewServer(s)
	defer srv.Close()
	t.Setenv("FINAPI_TEST_SECRET", clientSecret)
	doc := `providers:
  - name: finapi
    kind: finapi
    client_id: ` + clientID + `
    client_secret: {env: FINAPI_TEST_SECRET}
    grants: [password]
    allowed_params: [create_user]
    settings: {base_url: "` + srv.URL + `/", client_token_margin: 30s}
`
	c, err = providers.Load(strings.NewReader(doc), kinds)
	require.NoError(t, err)
	reg, err := c.Open(context.Background(), nil, nil)
	require.NoError(t, err)
	p, e, ok := reg.Get("finapi")
	require.True(t, ok)
	assert.Equal(t, srv.URL+PathToken, e.Endpoint.TokenURL)
	tok, err := p.Exchange(context.Background(), providers.Grant{Type: providers.GrantPassword,
		Username: "judy", Password: userPassword, Params: map[string]string{ParamCreateUser: "true"}})
	require.NoError(t, err)
	assert.True(t, s.Valid(tok.AccessToken))
	_, err = p.Exchange(context.Background(), providers.Grant{Type: providers.GrantClientCredentials})
	require.ErrorIs(t, err, providers.ErrUnsupported, "not in the entry's grants")
}

func TestConfigValidate(t *testing.T) {
	bad := `providers:
  - name: finapi
    kind: finapi
    client_id: x
    auth_style: header
    grants: [password, device_code]
    endpoint: {token_url: "https://x.example.com/token"}
    settings: {base_url: "ftp://x", client_token_margin: -1s}
`
	_, err := providers.Load(strings.NewReader(bad), map[string]providers.Kind{KindName: New})
	require.Error(t, err)
	for _, want := range []string{"base_url", "client_token_margin", `grant "device_code"`,
		"client_secret is required", "auth_style header", "endpoint is not used"} {
		assert.Contains(t, err.Error(), want)
	}
}
