package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAuthorizedUser: GET /users answers the user of a user token, 403
// for the client token, 401 for anything else.
func TestAuthorizedUser(t *testing.T) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	s.AddUser("user-1", "password-1")
	login := url.Values{"grant_type": {"password"}, "client_id": {"tokenwarden"}, "client_secret": {"client-secret"},
		"username": {"user-1"}, "password": {"password-1"}}
	_, m := post(t, srv, PathToken, form, login.Encode(), "")
	userToken, refresh := m["access_token"].(string), m["refresh_token"].(string)
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {"tokenwarden"}, "client_secret": {"client-secret"}}
	_, m = post(t, srv, PathToken, form, cc.Encode(), "")
	clientToken := m["access_token"].(string)

	get := func(bearer string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+PathUsers, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, out := get(userToken)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "user-1", out["id"])
	assert.Equal(t, "XXXXX", out["password"], "the password is never shown")

	status, _ = get(clientToken)
	assert.Equal(t, http.StatusForbidden, status)
	for _, bad := range []string{refresh, "garbage"} {
		status, out = get(bad)
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.NotEmpty(t, out["errors"])
	}
	s.ExpireAccessTokens()
	status, _ = get(userToken)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, 5, s.Stats()["users:get"])
}
