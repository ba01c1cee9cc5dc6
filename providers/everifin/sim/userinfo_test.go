package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUserinfo: Keycloak's userinfo takes a live access token whose
// session has not ended; anything else is 401 invalid_token.
func TestUserinfo(t *testing.T) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	base := srv.URL + s.RealmPath() + "/protocol/openid-connect/"
	login := url.Values{"grant_type": {"password"}, "client_id": {"tokenwarden"}, "client_secret": {"tokenwarden-secret"},
		"username": {"alice"}, "password": {"alice-password"}}
	resp, err := http.Post(base+"token", "application/x-www-form-urlencoded", strings.NewReader(login.Encode()))
	require.NoError(t, err)
	var tok struct{ AccessToken, RefreshToken string }
	var raw map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&raw))
	resp.Body.Close()
	tok.AccessToken, tok.RefreshToken = raw["access_token"].(string), raw["refresh_token"].(string)

	userinfo := func(method, bearer string) (int, http.Header, map[string]any) {
		req, err := http.NewRequest(method, base+"userinfo", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, resp.Header, out
	}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		status, _, out := userinfo(m, tok.AccessToken)
		require.Equal(t, http.StatusOK, status, m)
		assert.Equal(t, "alice", out["preferred_username"])
	}
	status, h, out := userinfo(http.MethodGet, tok.RefreshToken)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "invalid_token", out["error"])
	assert.Contains(t, h.Get("WWW-Authenticate"), `error="invalid_token"`)

	// Logout ends the session: Keycloak's userinfo checks it.
	s.EndSessions()
	status, _, _ = userinfo(http.MethodGet, tok.AccessToken)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, 4, s.Stats()["userinfo"])
}
