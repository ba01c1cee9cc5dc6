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

func TestAuthorizeChecksConsentParams(t *testing.T) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := url.Values{"client_id": {"tokenwarden"}, "redirect_uri": {"https://app.example/cb"}, "response_type": {"code"}, "scope": {"accounting"}}
	get := func(extra ...string) (*http.Response, url.Values) {
		q := url.Values{}
		for k, v := range base {
			q[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		resp, err := c.Get(srv.URL + "/api/v1/oauth2/authorize?" + q.Encode())
		require.NoError(t, err)
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc == nil {
			return resp, nil
		}
		return resp, loc.Query()
	}
	_, q := get("locale", "sv", "login", "kari")
	assert.Equal(t, "invalid_request", q.Get("error"))
	_, q = get("organisation_number", "123", "login", "kari")
	assert.Equal(t, "invalid_request", q.Get("error"))
	_, q = get("scope", "everything", "login", "kari")
	assert.Equal(t, "invalid_scope", q.Get("error"))
	resp, _ := get()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "no login: the consent page")
	resp, q = get("login", "kari", "locale", "en", "organisation_number", "912345678")
	require.Equal(t, http.StatusFound, resp.StatusCode)
	assert.NotEmpty(t, q.Get("code"))
	assert.Equal(t, "accounting", q.Get("scope"))

	// The consent form.
	u := srv.URL + "/api/v1/oauth2/authorize?" + base.Encode()
	resp, err := c.PostForm(u, url.Values{"username": {"kari"}, "password": {"kari-password"}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusFound, resp.StatusCode)
	assert.Equal(t, 6, s.Stats()["authorize"])
}

func TestGraphQLAndAdmin(t *testing.T) {
	s := New(Options{AutoApprove: true})
	srv := httptest.NewServer(s)
	defer srv.Close()
	gql := func(token, body string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/graphql", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusUnauthorized, gql("nope", `{"query":"{ saleInvoices { nodes { id } } }"}`))

	// Get a token the long way.
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(srv.URL + "/api/v1/oauth2/authorize?" + url.Values{"client_id": {"tokenwarden"}, "redirect_uri": {"https://app.example/cb"}, "response_type": {"code"}, "scope": {"accounting"}}.Encode())
	require.NoError(t, err)
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	resp, err = srv.Client().PostForm(srv.URL+"/api/v2/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"client_id": {"tokenwarden"}, "client_secret": {"tokenwarden-secret"},
	})
	require.NoError(t, err)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	resp.Body.Close()
	assert.Equal(t, "bearer", tok.TokenType)
	assert.Equal(t, 3600, tok.ExpiresIn)
	assert.True(t, s.Valid(tok.AccessToken))
	assert.Equal(t, http.StatusOK, gql(tok.AccessToken, `{"query":"{ saleInvoices { nodes { id } } }"}`))
	assert.Equal(t, http.StatusBadRequest, gql(tok.AccessToken, `{}`))

	for _, p := range []string{"fail?status=500", "ratelimit?retry_after=2", "malformed"} {
		resp, err := srv.Client().Post(srv.URL+"/_sim/"+p, "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	assert.Equal(t, 500, gql(tok.AccessToken, `{}`))
	assert.Equal(t, 429, gql(tok.AccessToken, `{}`))
	assert.Equal(t, 200, gql(tok.AccessToken, `{}`))
	resp, err = srv.Client().Post(srv.URL+"/_sim/revoke", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.False(t, s.Valid(tok.AccessToken))
	assert.Equal(t, http.StatusUnauthorized, gql(tok.AccessToken, `{"query":"{ saleInvoices { nodes { id } } }"}`))
}
