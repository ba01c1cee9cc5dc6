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

func post(t *testing.T, srv *httptest.Server, path, ctype, body, bearer string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", ctype)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp, m
}

const form = "application/x-www-form-urlencoded"

// The wire shapes of finAPI's guide: form token requests with client
// credentials in the body, expires_in 3599 for client tokens, and the
// general error body outside the token endpoint.
func TestWireShapes(t *testing.T) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()

	creds := url.Values{"client_id": {"tokenwarden"}, "client_secret": {"client-secret"}}
	cc := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range creds {
		cc[k] = v
	}
	resp, m := post(t, srv, PathToken, form, cc.Encode(), "")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "bearer", m["token_type"])
	assert.EqualValues(t, 3599, m["expires_in"])
	assert.Equal(t, "all", m["scope"])
	client := m["access_token"].(string)

	user := `{"id":"u1","password":"p-secret","email":"e@example.com","phone":"+49 1","isAutoUpdateEnabled":false}`
	resp, m = post(t, srv, PathUsers, "application/json", user, client)
	require.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, "u1", m["id"])

	resp, m = post(t, srv, PathUsers, "application/json", user, client)
	require.Equal(t, 422, resp.StatusCode)
	errs := m["errors"].([]any)
	assert.Equal(t, "ENTITY_EXISTS", errs[0].(map[string]any)["code"])
	for _, k := range []string{"date", "requestId", "endpoint", "authContext", "bank"} {
		assert.Contains(t, m, k)
	}

	resp, _ = post(t, srv, PathUsers, "application/json", user, "")
	assert.Equal(t, 401, resp.StatusCode)

	pw := url.Values{"grant_type": {"password"}, "username": {"u1"}, "password": {"p-secret"}}
	for k, v := range creds {
		pw[k] = v
	}
	resp, m = post(t, srv, PathToken, form, pw.Encode(), "")
	require.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 3600, m["expires_in"])
	access := m["access_token"].(string)
	assert.True(t, s.Valid(access))
	assert.False(t, s.Valid(client), "a client token is not a user token")

	// A user token cannot create users.
	resp, _ = post(t, srv, PathUsers, "application/json", `{"id":"u2","password":"p-secret"}`, access)
	assert.Equal(t, 403, resp.StatusCode)

	// Basic auth alone is not accepted: credentials go in the body.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+PathToken, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", form)
	req.SetBasicAuth("tokenwarden", "client-secret")
	r2, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	r2.Body.Close()
	assert.Equal(t, 401, r2.StatusCode)

	s.LockUser("u1")
	resp, m = post(t, srv, PathToken, form, pw.Encode(), "")
	assert.Equal(t, 423, resp.StatusCode)
	assert.Equal(t, "USER_LOCKED", m["errors"].([]any)[0].(map[string]any)["code"])

	// Admin API.
	r3, err := http.Post(srv.URL+"/_sim/ratelimit?n=1&retry_after=3s", "", nil)
	require.NoError(t, err)
	r3.Body.Close()
	assert.Equal(t, 204, r3.StatusCode)
	resp, _ = post(t, srv, PathToken, form, cc.Encode(), "")
	assert.Equal(t, 429, resp.StatusCode)
	assert.Equal(t, "3", resp.Header.Get("Retry-After"))
	r4, err := http.Post(srv.URL+"/_sim/lock?user=ghost", "", nil)
	require.NoError(t, err)
	r4.Body.Close()
	assert.Equal(t, 400, r4.StatusCode)
	assert.Equal(t, 3, s.Stats()["token:client_credentials"], "faults count too")
}
