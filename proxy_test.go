package tokenwarden

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProxyClient: requests name a path under the provider's API; they
// reach the link's proxy route with the API key in place of any
// Authorization the caller set, path escapes, query and body intact.
func TestProxyClient(t *testing.T) {
	var got *http.Request
	var gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set(HeaderProxySource, "upstream")
		w.Header().Set("Location", "https://api.example/elsewhere")
		w.WriteHeader(http.StatusFound)
	}))
	defer srv.Close()
	api := NewClient(srv.URL+"/", testAPIKey).ProxyClient("lnk_1")

	req, err := http.NewRequest("POST", "/companies/42/taxes%20x/reports/?a=1&b=%2F", strings.NewReader(`{"q":1}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer something-else")
	req.Header.Set(HeaderProxyPass+"Cookie", "c=1")
	resp, err := api.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusFound, resp.StatusCode, "redirects are returned, not followed")
	require.NotNil(t, got)
	assert.Equal(t, "/v1/links/lnk_1/proxy/companies/42/taxes%20x/reports/", got.URL.EscapedPath())
	assert.Equal(t, "a=1&b=%2F", got.URL.RawQuery)
	assert.Equal(t, []string{"Bearer " + testAPIKey}, got.Header.Values("Authorization"))
	assert.Equal(t, "c=1", got.Header.Get(HeaderProxyPass+"Cookie"))
	assert.Equal(t, `{"q":1}`, gotBody)
	assert.NoError(t, ProxyError(resp), "the provider's answer is not the gateway's error")

	_, err = api.Get("https://api.example/companies/")
	assert.ErrorContains(t, err, "relative to the provider's API")
	_, err = NewClient(srv.URL, testAPIKey).ProxyClient("").Get("/x")
	assert.ErrorContains(t, err, "empty link id")
}

// TestProxyError: the gateway's own answers become *APIError.
func TestProxyError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderProxySource, "gateway")
		w.Header().Set(HeaderLinkStatus, "revoked")
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, `{"error":{"code":"link_revoked","message":"the link was revoked","request_id":"r1"}}`)
	}))
	defer srv.Close()
	resp, err := NewClient(srv.URL, testAPIKey).ProxyClient("lnk_1").Get("/me")
	require.NoError(t, err)
	perr := ProxyError(resp)
	var ae *APIError
	require.True(t, errors.As(perr, &ae), "got %v", perr)
	assert.Equal(t, CodeLinkRevoked, ae.Code)
	assert.Equal(t, http.StatusConflict, ae.Status)
	assert.Equal(t, "revoked", resp.Header.Get(HeaderLinkStatus))
}
