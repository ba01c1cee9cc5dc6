package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/internal/health"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/worker"
)

// syncBuffer is a log sink safe for the worker's and the server's
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a gateway on the real test stack, with an in-process worker
// running the link workflow against the fake provider.
type env struct {
	t        *testing.T
	srv      *Server
	h        http.Handler
	st       *store.Store
	sec      *secrets.Store
	prov     *fakeProvider
	key      string
	otherKey string
	logs     *syncBuffer
	// secrets seen during the test, none of which may reach the logs.
	leaks []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	info := testenv.StackInfo(t)
	ctx := context.Background()
	pool, _ := testenv.Postgres(t)
	require.NoError(t, store.Migrate(ctx, pool))
	st := store.New(pool)
	vc, prefix := testenv.Vault(t)
	sec := secrets.New(vc, info.VaultMount, prefix)
	tc, _ := testenv.Temporal(t)

	reg, fp := newFakeRegistry()
	w := worker.New(tc, &activities.Activities{Providers: reg, Secrets: sec, Store: st}, sdkworker.Options{})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	key, _, err := st.CreateAPIKey(ctx, store.DefaultTenantID, "gateway test")
	require.NoError(t, err)
	_, err = st.EnsureTenant(ctx, "other", "Other tenant")
	require.NoError(t, err)
	otherKey, _, err := st.CreateAPIKey(ctx, "other", "other tenant")
	require.NoError(t, err)

	logs := &syncBuffer{}
	srv := New(Deps{
		Temporal: tc, Store: st, Secrets: sec, Providers: reg,
		Checks: []health.Check{health.Postgres(pool), health.Vault(vc), health.Temporal(tc, info.TemporalAddress)},
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, Config{
		PublicURL:            "http://gateway.test",
		AllowedReturnOrigins: []string{"https://app.example"},
		RefreshWait:          20 * time.Second,
		// /metrics reads the counts in the background; tests wait for
		// them, not for the production interval.
		StatsInterval: 200 * time.Millisecond,
	})
	return &env{t: t, srv: srv, h: srv.Handler(), st: st, sec: sec, prov: fp, key: key, otherKey: otherKey,
		logs: logs, leaks: []string{key, otherKey}}
}

func (e *env) do(method, target string, body string, hdr ...string) answer {
	e.t.Helper()
	var r *strings.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	if r == nil {
		return do(e.h, method, target, e.key, nil, hdr...)
	}
	return do(e.h, method, target, e.key, r, hdr...)
}

func (e *env) create(body string, hdr ...string) createLinkResponse {
	e.t.Helper()
	a := e.do("POST", "/v1/links", body, hdr...)
	require.Equal(e.t, http.StatusCreated, a.Code, string(a.Body))
	var resp createLinkResponse
	a.json(e.t, &resp)
	require.NotEmpty(e.t, resp.ID)
	return resp
}

// waitStatus polls the link until the workflow has recorded status.
func (e *env) waitStatus(id, status string) linkView {
	e.t.Helper()
	var v linkView
	require.Eventually(e.t, func() bool {
		a := e.do("GET", "/v1/links/"+id, "")
		if a.Code != http.StatusOK {
			return false
		}
		a.json(e.t, &v)
		return v.Status == status
	}, 30*time.Second, 100*time.Millisecond, "link %s never reached %s (last: %+v)", id, status, v)
	return v
}

func (e *env) token(id string, query string) (answer, tokenResponse) {
	e.t.Helper()
	a := e.do("GET", "/v1/links/"+id+"/token"+query, "")
	var tr tokenResponse
	if a.Code == http.StatusOK {
		a.json(e.t, &tr)
		e.leaks = append(e.leaks, tr.AccessToken)
	}
	return a, tr
}

// authorize plays the end-user: it follows the authorization URL's state
// to the callback with a code.
func (e *env) authorize(authURL, code string) answer {
	e.t.Helper()
	u, err := url.Parse(authURL)
	require.NoError(e.t, err)
	state := u.Query().Get("state")
	require.NotEmpty(e.t, state)
	assert.Equal(e.t, "http://gateway.test"+CallbackPath, u.Query().Get("redirect_uri"))
	e.leaks = append(e.leaks, state, code)
	return do(e.h, "GET", CallbackPath+"?"+url.Values{"state": {state}, "code": {code}}.Encode(), "", nil)
}

func stateOf(t *testing.T, authURL string) string {
	u, err := url.Parse(authURL)
	require.NoError(t, err)
	return u.Query().Get("state")
}

func TestGatewayIntegration(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	t.Run("readyz with the real dependencies", func(t *testing.T) {
		a := e.do("GET", "/readyz", "")
		assert.Equal(t, 200, a.Code, string(a.Body))
		assert.JSONEq(t, `{"status":"ok","failing":[]}`, string(a.Body))
	})

	t.Run("providers", func(t *testing.T) {
		a := e.do("GET", "/v1/providers", "")
		require.Equal(t, 200, a.Code)
		var body struct{ Providers []providers.Entry }
		a.json(t, &body)
		require.Len(t, body.Providers, 2)
		assert.Equal(t, "fake", body.Providers[0].Name)
	})

	t.Run("client_credentials: create, token, wrong tenant, refresh", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"svc-1","grant":"client_credentials","scopes":["read"]}`)
		assert.Equal(t, "pending", l.Status)
		assert.Empty(t, l.AuthorizationURL)
		v := e.waitStatus(l.ID, "active")
		assert.Equal(t, []string{"read"}, v.Scopes)
		assert.NotNil(t, v.ExpiresAt)

		a, tok := e.token(l.ID, "")
		require.Equal(t, 200, a.Code, string(a.Body))
		assert.Equal(t, "no-store", a.Header.Get("Cache-Control"))
		assert.True(t, strings.HasPrefix(tok.AccessToken, "at-"))
		assert.Equal(t, "Bearer", tok.TokenType)
		assert.True(t, tok.ExpiresAt.After(time.Now().Add(30*time.Second)))
		assert.Equal(t, []string{"read"}, tok.Scopes)

		for _, q := range []string{"?min_ttl=-1", "?min_ttl=abc", "?min_ttl=86401", "?min_ttl=1.5"} {
			a, _ := e.token(l.ID, q)
			assert.Equal(t, 400, a.Code, q)
			assert.Equal(t, CodeBadRequest, a.errCode(t), q)
		}

		// Another tenant's key sees nothing: not the link, not its token.
		for _, path := range []string{"/v1/links/" + l.ID, "/v1/links/" + l.ID + "/token"} {
			a := do(e.h, "GET", path, e.otherKey, nil)
			assert.Equal(t, 404, a.Code, path)
			assert.Equal(t, CodeNotFound, a.errCode(t), path)
		}
		for _, path := range []string{"/v1/links/" + l.ID + "/refresh", "/v1/links/" + l.ID + "/revoke", "/v1/links/" + l.ID + "/reauthorize"} {
			a := do(e.h, "POST", path, e.otherKey, nil)
			assert.Equal(t, 404, a.Code, path)
			assert.Equal(t, CodeNotFound, a.errCode(t), path)
		}
		a = do(e.h, "GET", "/v1/links", e.otherKey, nil)
		assert.NotContains(t, string(a.Body), l.ID)

		// A forced refresh stores a new token and says so without it.
		before := e.prov.refreshCount()
		a = e.do("POST", "/v1/links/"+l.ID+"/refresh", "")
		require.Equal(t, 200, a.Code, string(a.Body))
		var rr struct {
			ExpiresAt    time.Time `json:"expires_at"`
			VaultVersion int       `json:"vault_version"`
		}
		a.json(t, &rr)
		assert.Greater(t, rr.VaultVersion, 1)
		assert.NotContains(t, string(a.Body), "at-")
		assert.Greater(t, e.prov.refreshCount(), before)
		_, tok2 := e.token(l.ID, "")
		assert.NotEqual(t, tok.AccessToken, tok2.AccessToken)

		// live=1 adds the workflow's own view.
		a = e.do("GET", "/v1/links/"+l.ID+"?live=1", "")
		require.Equal(t, 200, a.Code)
		var lv linkView
		a.json(t, &lv)
		require.NotNil(t, lv.Live, string(a.Body))
		assert.Equal(t, "active", string(lv.Live.Status))
		a = e.do("GET", "/v1/links/"+l.ID+"?live=maybe", "")
		assert.Equal(t, 400, a.Code)
		assert.Equal(t, CodeBadRequest, a.errCode(t))
	})

	t.Run("token of an expiring link is refreshed before it is served", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"svc-short","grant":"client_credentials","params":{"lifetime":"20s"}}`)
		e.waitStatus(l.ID, "active")
		a, tok := e.token(l.ID, "")
		require.Equal(t, 200, a.Code, string(a.Body))
		// The margin is a tenth of the lifetime: a 20 s token with more
		// than 2 s left is served as it is; the workflow refreshes it on
		// its own schedule.
		assert.True(t, tok.ExpiresAt.After(time.Now().Add(2*time.Second)), "served a token expiring at %v", tok.ExpiresAt)

		// A stored token inside the margin (the workflow has not got to it
		// yet) is refreshed before it is served.
		ctx := context.Background()
		cur, err := e.sec.ReadToken(ctx, store.DefaultTenantID, l.ID)
		require.NoError(t, err)
		stale := cur.Value
		stale.IssuedAt = time.Now().Add(-19 * time.Second)
		stale.Expiry = time.Now().Add(time.Second)
		_, err = e.sec.WriteToken(ctx, store.DefaultTenantID, l.ID, stale, cur.Version)
		require.NoError(t, err)
		// The worker records each token it stores in the links row, which
		// tells the gateways' token caches: so does this test.
		_, err = e.st.Pool().Exec(ctx, `UPDATE links SET updated_at = now() WHERE id = $1`, l.ID)
		require.NoError(t, err)
		require.Eventually(t, func() bool { _, ok := e.srv.tokens.get(store.DefaultTenantID + "/" + l.ID); return !ok },
			5*time.Second, 10*time.Millisecond, "the gateway's cache kept the token after the row changed")
		a, tok = e.token(l.ID, "")
		require.Equal(t, 200, a.Code, string(a.Body))
		assert.True(t, tok.ExpiresAt.After(time.Now().Add(10*time.Second)), "served a token expiring at %v", tok.ExpiresAt)

		// min_ttl beyond the token's life is capped at half of it: the
		// answer is a valid token, not a refresh per request.
		a, tok = e.token(l.ID, "?min_ttl=3000")
		require.Equal(t, 200, a.Code, string(a.Body))
		assert.True(t, tok.ExpiresAt.After(time.Now()), "never an expired token")
		m := do(e.h, "GET", "/metrics", "", nil)
		assert.Contains(t, string(m.Body), `tokenwarden_sync_refreshes_total{outcome="ok"}`)
		assert.Contains(t, string(m.Body), "tokenwarden_token_remaining_seconds_count")
		require.Eventually(t, func() bool {
			m := do(e.h, "GET", "/metrics", "", nil)
			return strings.Contains(string(m.Body), `tokenwarden_tokens_served_total{provider="fake"}`)
		}, 5*time.Second, 50*time.Millisecond)
	})

	t.Run("authorization_code: pending, callback, replay, redirect", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"alice","grant":"authorization_code","scopes":["openid"],"params":{"locale":"de"},"return_url":"https://app.example/done?x=1"}`)
		require.NotEmpty(t, l.AuthorizationURL)
		assert.True(t, strings.HasPrefix(l.AuthorizationURL, fakeAuthURL))
		e.waitStatus(l.ID, "pending_authorization")

		a, _ := e.token(l.ID, "")
		assert.Equal(t, 409, a.Code)
		assert.Equal(t, CodeLinkPending, a.errCode(t))
		a = e.do("POST", "/v1/links/"+l.ID+"/refresh", "")
		assert.Equal(t, 409, a.Code)
		assert.Equal(t, CodeLinkPending, a.errCode(t))

		a = e.authorize(l.AuthorizationURL, "code-alice-1")
		require.Equal(t, http.StatusFound, a.Code, string(a.Body))
		loc, err := url.Parse(a.Header.Get("Location"))
		require.NoError(t, err)
		assert.Equal(t, "app.example", loc.Host)
		assert.Equal(t, l.ID, loc.Query().Get("link_id"))
		assert.Equal(t, "1", loc.Query().Get("x"))
		assert.NotContains(t, a.Header.Get("Location"), "code-alice-1")

		e.waitStatus(l.ID, "active")
		g, _ := e.prov.lastExchange()
		assert.Equal(t, "code-alice-1", g.Code)
		assert.NotEmpty(t, g.CodeVerifier)
		assert.Equal(t, "http://gateway.test"+CallbackPath, g.RedirectURL)
		a, _ = e.token(l.ID, "")
		assert.Equal(t, 200, a.Code, string(a.Body))

		// The state is single-use.
		a = e.authorize(l.AuthorizationURL, "code-alice-2")
		assert.Equal(t, 400, a.Code)
		assert.Contains(t, string(a.Body), "already used")
	})

	t.Run("callback: unknown and expired state", func(t *testing.T) {
		a := do(e.h, "GET", CallbackPath+"?state=never-issued&code=c", "", nil)
		assert.Equal(t, 400, a.Code)
		assert.Contains(t, string(a.Body), "Unknown sign-in link")

		l := e.create(`{"provider":"fake","user_id":"late","grant":"authorization_code"}`)
		require.NoError(t, e.st.PutOAuthState(ctx, "expired-state-0123456789", store.OAuthState{
			LinkID: l.ID, TenantID: store.DefaultTenantID, ExpiresAt: time.Now().Add(-time.Minute)}))
		a = do(e.h, "GET", CallbackPath+"?state=expired-state-0123456789&code=c", "", nil)
		assert.Equal(t, 400, a.Code)
		assert.Contains(t, string(a.Body), "expired")
		a = do(e.h, "GET", CallbackPath+"?state="+url.QueryEscape(stateOf(t, l.AuthorizationURL)), "", nil)
		assert.Equal(t, 400, a.Code)
		assert.Contains(t, string(a.Body), "without an authorization code")
		e.do("DELETE", "/v1/links/"+l.ID, "")
	})

	t.Run("callback: access_denied fails the link", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"bob","grant":"authorization_code"}`)
		e.waitStatus(l.ID, "pending_authorization")
		q := url.Values{"state": {stateOf(t, l.AuthorizationURL)}, "error": {"access_denied"}, "error_description": {"user said no"}}
		a := do(e.h, "GET", CallbackPath+"?"+q.Encode(), "", nil)
		assert.Equal(t, 400, a.Code)
		assert.Contains(t, string(a.Body), "access_denied")
		v := e.waitStatus(l.ID, "failed")
		assert.Contains(t, v.LastError, "access_denied")
		a, _ = e.token(l.ID, "")
		assert.Equal(t, 409, a.Code)
		assert.Equal(t, CodeLinkFailed, a.errCode(t))
		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", "")
		assert.Equal(t, 409, a.Code)
		assert.Equal(t, CodeLinkFailed, a.errCode(t))
		// A failed link's workflow has ended: revoking wipes what is left.
		a = e.do("POST", "/v1/links/"+l.ID+"/revoke", `{"reason":"cleanup"}`)
		assert.Equal(t, 200, a.Code, string(a.Body))
		_, err := e.sec.ReadGrant(ctx, store.DefaultTenantID, l.ID)
		assert.ErrorIs(t, err, secrets.ErrNotFound)
		e.waitStatus(l.ID, "revoked")
	})

	t.Run("reauth_required and reauthorize", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"carol","grant":"authorization_code","params":{"fail_refresh":"1"}}`)
		a := e.authorize(l.AuthorizationURL, "code-carol-1")
		require.Equal(t, 200, a.Code, string(a.Body))
		assert.Contains(t, string(a.Body), "Connected")
		e.waitStatus(l.ID, "active")

		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", "")
		assert.Equal(t, 409, a.Code)
		assert.Equal(t, CodeConflict, a.errCode(t))

		a = e.do("POST", "/v1/links/"+l.ID+"/refresh", "")
		assert.Equal(t, 409, a.Code, string(a.Body))
		assert.Equal(t, CodeReauthRequired, a.errCode(t))
		e.waitStatus(l.ID, "reauth_required")
		a, _ = e.token(l.ID, "?min_ttl=86400")
		assert.Equal(t, 409, a.Code, string(a.Body))
		assert.Equal(t, CodeReauthRequired, a.errCode(t))

		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", `{"credentials":{"username":"x","password":"y"}}`)
		assert.Equal(t, 400, a.Code)
		assert.Equal(t, CodeBadRequest, a.errCode(t))
		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", `{"return_url":"https://evil.example/"}`)
		assert.Equal(t, 400, a.Code)
		assert.Equal(t, CodeBadRequest, a.errCode(t))

		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", `{}`)
		require.Equal(t, 200, a.Code, string(a.Body))
		var ra struct {
			AuthorizationURL string `json:"authorization_url"`
		}
		a.json(t, &ra)
		require.NotEmpty(t, ra.AuthorizationURL)
		_, n := e.prov.lastExchange()
		a = e.authorize(ra.AuthorizationURL, "code-carol-2")
		require.Equal(t, 200, a.Code, string(a.Body))
		e.waitStatus(l.ID, "active")
		g, n2 := e.prov.lastExchange()
		assert.Greater(t, n2, n)
		assert.Equal(t, "code-carol-2", g.Code)
	})

	t.Run("password: credentials go to Vault only", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"dave","grant":"password","credentials":{"username":"dave","password":"pw-dave-secret"}}`)
		e.leaks = append(e.leaks, "pw-dave-secret")
		e.waitStatus(l.ID, "active")
		a := e.do("GET", "/v1/links/"+l.ID, "")
		assert.NotContains(t, string(a.Body), "pw-dave-secret")
		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", `{"credentials":{"username":"dave","password":"pw2"}}`)
		assert.Equal(t, 409, a.Code, "an active link needs no re-authorization")
		assert.Equal(t, CodeConflict, a.errCode(t))
	})

	t.Run("device_code: user code shown, device code kept", func(t *testing.T) {
		a := e.do("POST", "/v1/links", `{"provider":"fake","user_id":"tv","grant":"device_code"}`)
		require.Equal(t, 201, a.Code, string(a.Body))
		assert.NotContains(t, string(a.Body), "dc-")
		var l createLinkResponse
		a.json(t, &l)
		require.NotNil(t, l.Device)
		assert.Equal(t, "WDJB-MJHT", l.Device.UserCode)
		assert.Equal(t, "https://fake.example/device", l.Device.VerificationURI)
		g, err := e.sec.ReadGrant(ctx, store.DefaultTenantID, l.ID)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(g.Value.DeviceCode, "dc-"))
		assert.Equal(t, time.Hour, g.Value.DeviceInterval)
		e.waitStatus(l.ID, "pending_authorization")
		a = e.do("DELETE", "/v1/links/"+l.ID, "")
		assert.Equal(t, 200, a.Code, string(a.Body))
	})

	t.Run("idempotency key", func(t *testing.T) {
		body := `{"provider":"fake","user_id":"erin","grant":"authorization_code"}`
		first := e.create(body, "Idempotency-Key", "idem-1")
		a := e.do("POST", "/v1/links", body, "Idempotency-Key", "idem-1")
		require.Equal(t, 200, a.Code, string(a.Body))
		var again createLinkResponse
		a.json(t, &again)
		assert.Equal(t, first.ID, again.ID)
		require.NotEmpty(t, again.AuthorizationURL)
		assert.NotEqual(t, stateOf(t, first.AuthorizationURL), stateOf(t, again.AuthorizationURL))
		a = e.do("POST", "/v1/links", `{"provider":"fake","user_id":"someone-else","grant":"authorization_code"}`, "Idempotency-Key", "idem-1")
		assert.Equal(t, 422, a.Code)
		assert.Equal(t, CodeIdempotencyMismatch, a.errCode(t))
		// The replayed URL works as well as the first.
		a = e.authorize(again.AuthorizationURL, "code-erin")
		require.Equal(t, 200, a.Code, string(a.Body))
		e.waitStatus(first.ID, "active")
	})

	t.Run("revoke is idempotent and final", func(t *testing.T) {
		l := e.create(`{"provider":"fake","user_id":"frank","grant":"client_credentials"}`)
		e.waitStatus(l.ID, "active")
		a := e.do("POST", "/v1/links/"+l.ID+"/revoke", `{"reason":"offboarding"}`)
		require.Equal(t, 200, a.Code, string(a.Body))
		assert.JSONEq(t, `{"id":"`+l.ID+`","status":"revoked"}`, string(a.Body))
		e.waitStatus(l.ID, "revoked")
		a, _ = e.token(l.ID, "")
		assert.Equal(t, 409, a.Code)
		assert.Equal(t, CodeLinkRevoked, a.errCode(t))
		a = e.do("POST", "/v1/links/"+l.ID+"/refresh", "")
		assert.Equal(t, 409, a.Code)
		assert.Equal(t, CodeLinkRevoked, a.errCode(t))
		a = e.do("POST", "/v1/links/"+l.ID+"/reauthorize", "")
		assert.Equal(t, 409, a.Code)
		assert.Equal(t, CodeLinkRevoked, a.errCode(t))
		for _, m := range []string{"POST", "DELETE"} {
			path := "/v1/links/" + l.ID
			if m == "POST" {
				path += "/revoke"
			}
			a = e.do(m, path, "")
			assert.Equal(t, 200, a.Code, string(a.Body))
		}
		a = e.do("POST", "/v1/links/"+l.ID+"/revoke", `{"reason":1}`)
		assert.Equal(t, 400, a.Code)
		assert.Equal(t, CodeInvalidJSON, a.errCode(t))
	})

	t.Run("revoke of a link whose workflow never ran", func(t *testing.T) {
		id := store.NewLinkID()
		_, _, err := e.st.CreateLink(ctx, store.Link{ID: id, TenantID: store.DefaultTenantID, Provider: "fake", UserID: "ghost",
			GrantType: "client_credentials", Status: "failed", VaultPath: e.sec.TokenPath(store.DefaultTenantID, id)})
		require.NoError(t, err)
		_, err = e.sec.WriteGrant(ctx, store.DefaultTenantID, id, providers.Grant{Type: "client_credentials"}, -1)
		require.NoError(t, err)
		a := e.do("DELETE", "/v1/links/"+id, "")
		require.Equal(t, 200, a.Code, string(a.Body))
		_, err = e.sec.ReadGrant(ctx, store.DefaultTenantID, id)
		assert.ErrorIs(t, err, secrets.ErrNotFound)
		got, err := e.st.GetLink(ctx, store.DefaultTenantID, id)
		require.NoError(t, err)
		assert.Equal(t, "revoked", got.Status)
	})

	t.Run("unknown links", func(t *testing.T) {
		id := store.NewLinkID()
		for _, r := range []struct{ m, p string }{
			{"GET", "/v1/links/" + id}, {"GET", "/v1/links/" + id + "/token"}, {"POST", "/v1/links/" + id + "/refresh"},
			{"POST", "/v1/links/" + id + "/revoke"}, {"DELETE", "/v1/links/" + id}, {"POST", "/v1/links/" + id + "/reauthorize"},
		} {
			a := e.do(r.m, r.p, "")
			assert.Equal(t, 404, a.Code, r.p)
			assert.Equal(t, CodeNotFound, a.errCode(t), r.p)
		}
	})

	t.Run("list and pagination", func(t *testing.T) {
		for i := range 3 {
			e.create(`{"provider":"fake","user_id":"page-user","grant":"client_credentials","scopes":["s` + string(rune('a'+i)) + `"]}`)
		}
		var ids []string
		cursor := ""
		for range 10 {
			a := e.do("GET", "/v1/links?user_id=page-user&limit=2&cursor="+url.QueryEscape(cursor), "")
			require.Equal(t, 200, a.Code, string(a.Body))
			var page struct {
				Links      []linkView `json:"links"`
				NextCursor string     `json:"next_cursor"`
			}
			a.json(t, &page)
			assert.LessOrEqual(t, len(page.Links), 2)
			for _, l := range page.Links {
				assert.Equal(t, "page-user", l.UserID)
				ids = append(ids, l.ID)
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		assert.Len(t, ids, 3)
		for _, q := range []string{"?cursor=garbage", "?limit=0", "?limit=501", "?limit=x"} {
			a := e.do("GET", "/v1/links"+q, "")
			assert.Equal(t, 400, a.Code, q)
			assert.Equal(t, CodeBadRequest, a.errCode(t), q)
		}
		a := e.do("GET", "/v1/links?provider=narrow", "")
		require.Equal(t, 200, a.Code)
		assert.JSONEq(t, `{"links":[],"next_cursor":""}`, string(a.Body))
	})

	t.Run("errors carry request IDs and logs carry no secrets", func(t *testing.T) {
		a := e.do("GET", "/v1/links/"+store.NewLinkID(), "", "X-Request-ID", "trace-42")
		var body errorBody
		a.json(t, &body)
		assert.Equal(t, "trace-42", body.Error.RequestID)
		logs := e.logs.String()
		assert.Contains(t, logs, `"request_id":"trace-42"`)
		assert.Contains(t, logs, `"route":"/v1/oauth/callback"`)
		for _, s := range e.leaks {
			if s != "" {
				assert.NotContains(t, logs, s, "a secret reached the logs")
			}
		}
		assert.NotContains(t, logs, "code=")
	})
}
