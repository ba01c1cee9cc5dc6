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

func noFollow(srv *httptest.Server) *http.Client {
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func authURL(srv *httptest.Server, s *Server, extra url.Values) string {
	q := url.Values{"client_id": {"tokenwarden"}, "redirect_uri": {"https://app.example/cb"}, "response_type": {"code"}, "state": {"st"}}
	for k, v := range extra {
		q[k] = v
	}
	return srv.URL + s.RealmPath() + "/protocol/openid-connect/auth?" + q.Encode()
}

func TestLoginFormAndPKCERequirement(t *testing.T) {
	s := New(Options{RequirePKCE: true})
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := noFollow(srv)

	// Without a challenge the client's PKCE requirement sends an error back.
	resp, err := c.Get(authURL(srv, s, nil))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	assert.Equal(t, "invalid_request", loc.Query().Get("error"))
	assert.Equal(t, "st", loc.Query().Get("state"))

	// No auto-approve: a login page, then a wrong and a right password.
	u := authURL(srv, s, url.Values{"code_challenge": {"abc"}, "code_challenge_method": {"S256"}})
	resp, err = c.Get(u)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")

	resp, err = c.PostForm(u, url.Values{"username": {"alice"}, "password": {"nope"}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = c.PostForm(u, url.Values{"username": {"alice"}, "password": {"alice-password"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, _ = url.Parse(resp.Header.Get("Location"))
	assert.NotEmpty(t, loc.Query().Get("code"))
	assert.NotEmpty(t, loc.Query().Get("session_state"))
	assert.Equal(t, 4, s.Stats()["auth"])

	// A locked user gets no code.
	s.LockUser("alice")
	resp, err = c.Get(u + "&login=alice")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestTokenEndpointErrorsAreKeycloaks(t *testing.T) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	tokenURL := srv.URL + "/auth/realms/everifin/protocol/openid-connect/token"
	post := func(form url.Values) (int, map[string]string) {
		resp, err := srv.Client().PostForm(tokenURL, form)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	status, m := post(url.Values{"client_id": {"nobody"}, "grant_type": {"password"}})
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "invalid_client", m["error"])
	status, m = post(url.Values{"client_id": {"tokenwarden"}, "client_secret": {"wrong"}, "grant_type": {"password"}})
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, map[string]string{"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"}, m)
	ok := url.Values{"client_id": {"tokenwarden"}, "client_secret": {"tokenwarden-secret"}}
	form := func(kv ...string) url.Values {
		f := url.Values{}
		for k, v := range ok {
			f[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	status, m = post(form("grant_type", "refresh_token", "refresh_token", "garbage"))
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "invalid_grant", m["error"])
	status, m = post(form("grant_type", "client_credentials"))
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "unsupported_grant_type", m["error"])

	status, _ = post(form("grant_type", "password", "username", "alice", "password", "alice-password"))
	assert.Equal(t, http.StatusOK, status)
	s.EndSessions()
	assert.Equal(t, 1, s.Stats()["token.password"])
}

func TestAdminHTTP(t *testing.T) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, p := range []string{"fail?status=503&n=2", "ratelimit?retry_after=3", "malformed", "expire-refresh", "expire-access", "end-sessions", "lock?user=alice", "unlock?user=alice"} {
		resp, err := srv.Client().Post(srv.URL+"/_sim/"+p, "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNoContent, resp.StatusCode, p)
	}
	resp, err := srv.Client().Post(srv.URL+"/_sim/fail?status=200", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	tokenURL := srv.URL + "/auth/realms/everifin/protocol/openid-connect/token"
	var statuses []int
	for range 4 {
		resp, err := srv.Client().PostForm(tokenURL, url.Values{})
		require.NoError(t, err)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	assert.Equal(t, []int{503, 503, 429, 200}, statuses)

	resp, err = srv.Client().Get(srv.URL + "/_sim/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var stats map[string]int
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&stats))
	assert.Equal(t, 4, stats["token"])
	assert.False(t, strings.HasPrefix(s.RealmPath(), "/realms"))
}
