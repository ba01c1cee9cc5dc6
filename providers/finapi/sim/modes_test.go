package sim

import (
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func tokenForm(kv ...string) string {
	v := url.Values{"client_id": {"tokenwarden"}, "client_secret": {"client-secret"}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

// ReuseTokens: the same token for the same credentials while it is valid,
// with a shrinking expires_in; a new one once it died or was revoked.
// NoRefreshToken: password logins without refresh_token.
func TestReuseTokensAndNoRefreshToken(t *testing.T) {
	c := &testClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(Options{ReuseTokens: true, NoRefreshToken: true, Now: c.now, AccessTTL: time.Hour})
	srv := httptest.NewServer(s)
	defer srv.Close()
	s.AddUser("u1", "p-secret")

	_, m := post(t, srv, PathToken, form, tokenForm("grant_type", "client_credentials"), "")
	client := m["access_token"].(string)
	c.add(10 * time.Minute)
	_, m = post(t, srv, PathToken, form, tokenForm("grant_type", "client_credentials"), "")
	assert.True(t, m["access_token"] == client, "the same client token")
	assert.EqualValues(t, 3599-600, m["expires_in"])

	login := tokenForm("grant_type", "password", "username", "u1", "password", "p-secret")
	_, m = post(t, srv, PathToken, form, login, "")
	first := m["access_token"].(string)
	assert.NotContains(t, m, "refresh_token")
	c.add(50 * time.Minute)
	_, m = post(t, srv, PathToken, form, login, "")
	assert.True(t, m["access_token"] == first, "the same user token")
	assert.EqualValues(t, 600, m["expires_in"])

	// The client token has died meanwhile: its successor is new.
	_, m = post(t, srv, PathToken, form, tokenForm("grant_type", "client_credentials"), "")
	assert.True(t, m["access_token"] != client, "a new client token once the old one died")
	client = m["access_token"].(string)
	resp, _ := post(t, srv, PathRevoke, form, url.Values{"token": {first}}.Encode(), client)
	require.Equal(t, 200, resp.StatusCode)
	_, m = post(t, srv, PathToken, form, login, "")
	assert.True(t, m["access_token"] != first, "a new token after revocation")
	assert.EqualValues(t, 3600, m["expires_in"])

	// Revoking a client token revokes it for every holder.
	resp, _ = post(t, srv, PathRevoke, form, url.Values{"token": {client}}.Encode(), client)
	require.Equal(t, 200, resp.StatusCode)
	assert.False(t, s.ValidClient(client))
}

// VerifyUsers, format checks and other paths.
func TestVerificationFormatsAndPaths(t *testing.T) {
	s := New(Options{VerifyUsers: true, Paths: SeedPaths})
	srv := httptest.NewServer(s)
	defer srv.Close()
	_, m := post(t, srv, "/oauth/token", form, tokenForm("grant_type", "client_credentials"), "")
	client := m["access_token"].(string)
	resp, _ := post(t, srv, PathUsers, "application/json", `{"id":"u1","password":"p-secret"}`, client)
	assert.Equal(t, 404, resp.StatusCode, "only the configured paths are served")

	for body, want := range map[string]string{
		`{"id":"has space","password":"p-secret"}`:                             "id must be",
		`{"id":"0123456789012345678901234567890123456","password":"p-secret"}`: "id must be",
		`{"id":"u1","password":"short"}`:                                       "password must be",
		`{"id":"u1","password":"with space"}`:                                  "password must be",
	} {
		resp, m := post(t, srv, "/users", "application/json", body, client)
		require.Equal(t, 422, resp.StatusCode, body)
		msg := m["errors"].([]any)[0].(map[string]any)["message"].(string)
		assert.Contains(t, msg, want)
		assert.NotContains(t, msg, "short")
	}
	resp, _ = post(t, srv, "/users", "application/json", `{"id":"u1","password":"p-secret"}`, client)
	require.Equal(t, 201, resp.StatusCode)
	login := tokenForm("grant_type", "password", "username", "u1", "password", "p-secret")
	resp, m = post(t, srv, "/oauth/token", form, login, "")
	require.Equal(t, 403, resp.StatusCode)
	assert.Equal(t, "USER_NOT_VERIFIED", m["errors"].([]any)[0].(map[string]any)["code"])
	s.VerifyUser("u1")
	resp, _ = post(t, srv, "/oauth/token", form, login, "")
	assert.Equal(t, 200, resp.StatusCode)
}
