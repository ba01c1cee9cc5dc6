package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsAndVerifyIntegration runs real links through the workflow,
// so the refresh outcomes on /metrics come from the event types the
// workflow actually records.
func TestMetricsAndVerifyIntegration(t *testing.T) {
	e := newEnv(t)

	ok := e.create(`{"provider":"fake","user_id":"svc-metrics","grant":"client_credentials"}`)
	// Client credentials are refreshed by a new exchange; a refresh token
	// that the fake turns down needs an authorization_code link.
	bad := e.create(`{"provider":"fake","user_id":"svc-metrics-bad","grant":"authorization_code","params":{"fail_refresh":"1"}}`)
	a := e.authorize(bad.AuthorizationURL, "code-metrics-1")
	require.Equal(t, 200, a.Code, string(a.Body))
	e.waitStatus(ok.ID, "active")
	e.waitStatus(bad.ID, "active")

	a = e.do("POST", "/v1/links/"+ok.ID+"/refresh", "")
	require.Equal(t, 200, a.Code, string(a.Body))
	a = e.do("POST", "/v1/links/"+bad.ID+"/refresh", "")
	require.Equal(t, 409, a.Code, string(a.Body))
	e.waitStatus(bad.ID, "reauth_required")

	// The audit trail is written in the background; wait for it.
	var body string
	require.Eventually(t, func() bool {
		m := do(e.h, "GET", "/metrics", "", nil)
		body = string(m.Body)
		return m.Code == 200 &&
			strings.Contains(body, `tokenwarden_refreshes_total{outcome="ok",provider="fake"} 1`+"\n") &&
			strings.Contains(body, `tokenwarden_refreshes_total{outcome="reauth_required",provider="fake"} 1`+"\n")
	}, 20*time.Second, 100*time.Millisecond, "refresh outcomes never showed on /metrics")
	assert.Contains(t, body, `tokenwarden_links{provider="fake",status="active"} 1`+"\n")
	assert.Contains(t, body, `tokenwarden_links{provider="fake",status="reauth_required"} 1`+"\n")
	assert.Contains(t, body, "tokenwarden_store_stats_up 1\n")
	assert.NotContains(t, body, `outcome="failed"`, "no refresh failed transiently")

	// verify=1 reads the token from Vault and asks the provider.
	var v verifyAnswer
	a = e.do("GET", "/v1/links/"+ok.ID+"?verify=1", "")
	require.Equal(t, 200, a.Code, string(a.Body))
	a.json(t, &v)
	require.NotNil(t, v.Verified, string(a.Body))
	assert.True(t, *v.Verified)
	assert.Empty(t, v.VerifyError)
	assert.NotContains(t, string(a.Body), `"at-`)

	// A link suspended for re-authorization has no access token left.
	a = e.do("GET", "/v1/links/"+bad.ID+"?verify=1", "")
	require.Equal(t, 200, a.Code, string(a.Body))
	v = verifyAnswer{}
	a.json(t, &v)
	require.NotNil(t, v.Verified, string(a.Body))
	assert.False(t, *v.Verified)
	assert.Equal(t, verifyNoToken, v.VerifyError)

	a = e.do("GET", "/v1/links/"+ok.ID+"?verify=maybe", "")
	assert.Equal(t, 400, a.Code)
	assert.Equal(t, CodeBadRequest, a.errCode(t))

	// A database that is gone leaves /metrics working: the next
	// background poll says the counts are stale, scrapes go on.
	e.st.Pool().Close()
	var m answer
	require.Eventually(t, func() bool {
		m = do(e.h, "GET", "/metrics", "", nil)
		return m.Code == 200 && strings.Contains(string(m.Body), "tokenwarden_store_stats_up 0\n")
	}, 10*time.Second, 50*time.Millisecond, "the stats poll never reported PostgreSQL gone")
	assert.Contains(t, string(m.Body), "tokenwarden_http_requests_total")

	logs := e.logs.String()
	for _, s := range e.leaks {
		if s != "" {
			assert.False(t, strings.Contains(logs, s), "a secret reached the logs")
		}
	}
}
