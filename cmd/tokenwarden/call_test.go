package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// relayed answers as the proxy relays a provider's answer.
func relayed(status int, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Tokenwarden-Proxy-Source", "upstream")
		w.Header().Set("Tokenwarden-Link-Status", "active")
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func TestLinksCall(t *testing.T) {
	g := newFakeGateway(t, map[string]http.HandlerFunc{
		"GET /v1/links/lnk_1/proxy/companies/42/taxes/reports/": relayed(200, `{"count":1}`, "X-Upstream", "1"),
		"POST /v1/links/lnk_1/proxy/graphql":                    relayed(200, `{"data":{}}`),
		"GET /v1/links/lnk_1/proxy/missing":                     relayed(404, `{"detail":"Not found."}`),
		"GET /v1/links/lnk_1/proxy/big":                         relayed(401, `{}`, "Tokenwarden-Proxy-Retry", "body_not_replayable"),
		"GET /v1/links/lnk_2/proxy/me": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Tokenwarden-Proxy-Source", "gateway")
			gatewayError(w, http.StatusConflict, "proxy_not_configured", `provider "x" has no api_base_url`)
		},
	})

	out, _, err := runCLI(t, "call", "lnk_1", "get", "companies/42/taxes/reports/?year=2025")
	require.NoError(t, err)
	assert.Equal(t, `{"count":1}`, out, "the provider's body, as it is")
	req, _ := g.last(t)
	assert.Equal(t, "year=2025", req.URL.RawQuery)

	out, _, err = runCLI(t, "call", "lnk_1", "GET", "/companies/42/taxes/reports/", "-i")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\n"), out)
	assert.Contains(t, out, "X-Upstream: 1\n")
	assert.True(t, strings.HasSuffix(out, "\n\n"+`{"count":1}`), out)

	file := filepath.Join(t.TempDir(), "q.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"query":"{ me }"}`), 0o600))
	_, _, err = runCLI(t, "call", "lnk_1", "POST", "graphql", "-d", "@"+file, "-H", "X-Trace: abc")
	require.NoError(t, err)
	req, body := g.last(t)
	assert.Equal(t, `{"query":"{ me }"}`, body)
	assert.Equal(t, "application/json", req.Header.Get("Content-Type"))
	assert.Equal(t, "abc", req.Header.Get("X-Trace"))

	out, _, err = runCLI(t, "call", "lnk_1", "GET", "missing")
	assert.Equal(t, `{"detail":"Not found."}`, out)
	assert.ErrorContains(t, err, "the provider answered HTTP 404 Not Found (link status active)")

	_, _, err = runCLI(t, "call", "lnk_1", "GET", "big")
	assert.ErrorContains(t, err, "run the command again")

	_, _, err = runCLI(t, "call", "lnk_2", "GET", "me")
	assert.ErrorContains(t, err, "(proxy_not_configured)")
	assert.ErrorContains(t, err, "hint: the operator sets api_base_url")
}

func TestLinksCallInput(t *testing.T) {
	newFakeGateway(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "lnk_1", "GET"}, "usage: tokenwarden links call ID METHOD PATH"},
		{[]string{"call", "lnk_1", "TRACE", "x"}, "not one the proxy passes"},
		{[]string{"call", "lnk_1", "GET", "https://evil.example/x"}, "not a URL"},
		{[]string{"call", "lnk_1", "POST", "x", "-d", "@/nonexistent/file"}, "-d @/nonexistent/file"},
		{[]string{"call", "lnk_1", "GET", "x", "-H", "no colon"}, "want 'Name: value'"},
	} {
		_, _, err := runCLI(t, tc.args...)
		assert.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
}
