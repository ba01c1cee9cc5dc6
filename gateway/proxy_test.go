package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// seenRequest is what the fake provider API received.
type seenRequest struct {
	Method, Path, EscapedPath, Query string
	Header                           http.Header
	BodyLen                          int
	BodySum                          string
}

// fakeAPI is a provider API: it accepts the tokens in live and answers
// 401 otherwise; then serves, when set, or answers 200 "ok".
type fakeAPI struct {
	mu    sync.Mutex
	live  map[string]bool
	seen  []seenRequest
	serve http.HandlerFunc
	// on401 runs when a request is refused (before the answer).
	on401 func()
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(body)
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{Method: r.Method, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(),
		Query: r.URL.RawQuery, Header: r.Header.Clone(), BodyLen: len(body), BodySum: hex.EncodeToString(sum[:])})
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	ok, on401, serve := f.live[tok], f.on401, f.serve
	f.mu.Unlock()
	if !ok {
		if on401 != nil {
			on401()
		}
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"detail":"token not valid"}`)
		return
	}
	if serve != nil {
		serve(w, r)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func (f *fakeAPI) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

func (f *fakeAPI) setLive(tokens ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = map[string]bool{}
	for _, t := range tokens {
		f.live[t] = true
	}
}

// refreshingTemporal plays the link's workflow for refresh updates: each
// stores a new access token (at-2, at-3, ...) in the fake Vault, or
// fails with err. gate, when set, is waited for first.
type refreshingTemporal struct {
	client.Client
	sec *memSecrets

	mu      sync.Mutex
	updates int
	err     error
	gate    chan struct{}
}

func (rt *refreshingTemporal) UpdateWorkflow(ctx context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	rt.mu.Lock()
	rt.updates++
	gate, err := rt.gate, rt.err
	rt.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err == nil {
		rt.sec.mu.Lock()
		cur := rt.sec.tokens["t1/lnk_p"]
		v := cur.Version + 1
		rt.sec.tokens["t1/lnk_p"] = secrets.Versioned[providers.Token]{Version: v, Value: providers.Token{
			AccessToken: fmt.Sprintf("at-%d", v), IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}}
		rt.sec.mu.Unlock()
	}
	return memUpdate{err: err}, nil
}

func (rt *refreshingTemporal) count() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.updates
}

// proxyRig is a gateway over HTTP whose link lnk_p (tenant t1, token
// at-1, version 1) belongs to provider "api", whose API is a fakeAPI
// under /api/v1.
type proxyRig struct {
	*unitServer
	gw   *httptest.Server
	api  *fakeAPI
	up   *httptest.Server
	temp *refreshingTemporal
}

func newProxyRig(t *testing.T, tweak func(e *providers.Entry)) *proxyRig {
	t.Helper()
	us := newUnitServer(t, Config{})
	api := &fakeAPI{}
	api.setLive("at-1", "at-2", "at-3")
	up := httptest.NewServer(api)
	t.Cleanup(up.Close)
	entry := providers.Entry{Name: "api", Kind: "fake", ClientID: "c", Grants: []string{providers.GrantClientCredentials},
		Schedule: providers.DefaultSchedule(), API: providers.API{BaseURL: up.URL + "/api/v1", AllowInternal: true}}
	if tweak != nil {
		tweak(&entry)
	}
	reg := providers.NewRegistry()
	require.NoError(t, reg.Add(entry, plainProvider{}))
	require.NoError(t, reg.Add(fakeEntry, plainProvider{}))
	us.d.Providers = reg
	temp := &refreshingTemporal{sec: us.sec}
	us.d.Temporal = temp
	us.mem.links["t1/lnk_p"] = store.Link{ID: "lnk_p", TenantID: "t1", Provider: "api", Status: "active"}
	us.sec.tokens["t1/lnk_p"] = secrets.Versioned[providers.Token]{Version: 1, Value: providers.Token{
		AccessToken: "at-1", IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}}
	gw := httptest.NewServer(us.Handler())
	t.Cleanup(gw.Close)
	return &proxyRig{unitServer: us, gw: gw, api: api, up: up, temp: temp}
}

// call sends method to the proxy path (raw: not cleaned or re-escaped)
// with the API key.
func (r *proxyRig) call(t *testing.T, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, r.gw.URL+"/v1/links/lnk_p/proxy/"+path, body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+unitKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// counterValue reads one counter of the gateway's metrics.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func gatewayError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, "body %s", body)
	assert.Equal(t, "gateway", resp.Header.Get(HeaderProxySource))
	assert.Equal(t, code, answer{Body: body}.errCode(t))
}

// TestProxyRelaysWithTheLinksToken: the request reaches the provider
// under the API base with the link's token in place of the API key and
// without the caller's cookies, address or Tokenwarden-* headers; the
// provider's answer comes back as it was, marked.
func TestProxyRelaysWithTheLinksToken(t *testing.T) {
	r := newProxyRig(t, nil)
	r.api.serve = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Upstream", "1")
		w.Header().Set("X-Request-Id", "up-123")
		w.Header().Set("Tokenwarden-Link-Status", "forged")
		w.Header().Add("Set-Cookie", "s=1")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "created")
	}
	resp, body := r.call(t, "POST", "companies/42/taxes%20x/reports/?a=1&b=%2F", strings.NewReader(`{"q":1}`),
		"Content-Type", "application/json", "Cookie", "gw=1", "X-Forwarded-For", "203.0.113.9", "X-Real-IP", "203.0.113.9",
		"Tokenwarden-Secret", "x", "Tokenwarden-Proxy-Header-Cookie", "provider=1", "X-Custom", "y",
		"Proxy-Authorization", "Basic eA==")
	require.Equal(t, http.StatusCreated, resp.StatusCode, "body %s", body)
	assert.Equal(t, "created", string(body))
	assert.Equal(t, "1", resp.Header.Get("X-Upstream"))
	assert.Equal(t, []string{"s=1"}, resp.Header.Values("Set-Cookie"))
	assert.Equal(t, "up-123", resp.Header.Get(HeaderUpstreamRequestID))
	assert.Len(t, resp.Header.Values("X-Request-Id"), 1)
	assert.NotEqual(t, "up-123", resp.Header.Get("X-Request-Id"), "X-Request-ID is the gateway's")
	assert.Equal(t, []string{"active"}, resp.Header.Values(HeaderLinkStatus), "the provider cannot set the proxy's headers")
	assert.Equal(t, "upstream", resp.Header.Get(HeaderProxySource))
	assert.Empty(t, resp.Header.Get(HeaderProxyRetry))

	seen := r.api.requests()
	require.Len(t, seen, 1)
	got := seen[0]
	assert.Equal(t, "POST", got.Method)
	assert.Equal(t, "/api/v1/companies/42/taxes x/reports/", got.Path)
	assert.Equal(t, "/api/v1/companies/42/taxes%20x/reports/", got.EscapedPath)
	assert.Equal(t, "a=1&b=%2F", got.Query)
	assert.Equal(t, "Bearer at-1", got.Header.Get("Authorization"), "the link's token, not the API key")
	assert.Equal(t, "provider=1", got.Header.Get("Cookie"), "only the passed cookie")
	assert.Equal(t, "y", got.Header.Get("X-Custom"))
	assert.Equal(t, "application/json", got.Header.Get("Content-Type"))
	assert.Equal(t, len(`{"q":1}`), got.BodyLen)
	for name := range got.Header {
		assert.False(t, strings.HasPrefix(name, "Tokenwarden-"), "%s reached the provider", name)
	}
	for _, h := range []string{"X-Forwarded-For", "X-Real-Ip", "Forwarded", "Proxy-Authorization"} {
		assert.Empty(t, got.Header.Get(h), "%s reached the provider", h)
	}
	assert.NotContains(t, strings.Join(got.Header.Values("Authorization"), " "), unitKey)

	for _, m := range []string{"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		resp, _ := r.call(t, m, "x", nil)
		assert.Equal(t, http.StatusCreated, resp.StatusCode, m)
	}
	assert.Equal(t, 7.0, counterValue(r.metrics.proxyRequests.WithLabelValues("api", "201")))
}

// TestProxyRefusesPathsOutsideTheAPI: {path} cannot climb out of the API
// base, smuggle a separator past it, or name another host; the provider
// sees none of these requests.
func TestProxyRefusesPathsOutsideTheAPI(t *testing.T) {
	r := newProxyRig(t, nil)
	for _, path := range []string{
		"../../token",
		"a/../../../admin",
		"./x",
		"%2e%2e/%2e%2e/admin",
		".%2E/admin",
		"a%2Fb",
		"a%2f..%2f..%2fadmin",
		"a%5C..%5Cadmin",
		"a//b",
		"/etc/passwd",
		"http://evil.example/x",
		"https:evil.example",
		"%252e%252e/admin",
		"a%00b",
		"a%0Ab",
	} {
		t.Run(path, func(t *testing.T) {
			resp, body := r.call(t, "GET", path, nil)
			gatewayError(t, resp, body, http.StatusBadRequest, CodeBadRequest)
		})
	}
	assert.Empty(t, r.api.requests(), "the provider got a request it should not have")
	// A path that merely contains dots and colons further on is fine.
	resp, body := r.call(t, "GET", "v1.2/files/a.b:c/..x", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
}

// TestProxyDialRefusesInternalAddresses: without api_allow_internal, the
// address dialled decides, whatever the catalog says.
func TestProxyDialRefusesInternalAddresses(t *testing.T) {
	r := newProxyRig(t, func(e *providers.Entry) { e.API.AllowInternal = false })
	resp, body := r.call(t, "GET", "me", nil)
	gatewayError(t, resp, body, http.StatusBadGateway, CodeUpstreamUnavailable)
	assert.Contains(t, string(body), "internal")
	assert.Empty(t, resp.Header.Get("Retry-After"), "a refused address does not get better by waiting")
	assert.Empty(t, r.api.requests(), "the proxy reached a loopback address")
}

// TestProxyRetriesOnceAfter401: a 401 forces one refresh through the
// workflow, and the request, body and all, goes again with the new token.
func TestProxyRetriesOnceAfter401(t *testing.T) {
	r := newProxyRig(t, nil)
	r.api.setLive("at-2")
	resp, body := r.call(t, "POST", "graphql", strings.NewReader(`{"query":"{ me }"}`))
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	assert.Equal(t, "ok", string(body), "the retry's answer, not the 401's")
	assert.Equal(t, proxyRetried, resp.Header.Get(HeaderProxyRetry))
	assert.Equal(t, "active", resp.Header.Get(HeaderLinkStatus))
	assert.Equal(t, 1, r.temp.count())
	seen := r.api.requests()
	require.Len(t, seen, 2)
	assert.Equal(t, "Bearer at-1", seen[0].Header.Get("Authorization"))
	assert.Equal(t, "Bearer at-2", seen[1].Header.Get("Authorization"))
	assert.Equal(t, seen[0].BodySum, seen[1].BodySum, "the retry carries the same body")
	assert.Equal(t, len(`{"query":"{ me }"}`), seen[1].BodyLen)

	// The next request uses the new token at once.
	resp, _ = r.call(t, "GET", "me", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Header.Get(HeaderProxyRetry))
	assert.Equal(t, 1, r.temp.count())
	assert.Equal(t, 1.0, counterValue(r.metrics.proxyUnauthorized.WithLabelValues("api", proxyRetried)))
}

// TestProxyConcurrent401sShareOneRefresh: requests that all saw the same
// dead token cause one refresh between them.
func TestProxyConcurrent401sShareOneRefresh(t *testing.T) {
	const n = 8
	r := newProxyRig(t, nil)
	r.api.setLive("at-2")
	gate := make(chan struct{})
	var refused sync.Once
	var mu sync.Mutex
	count := 0
	r.api.on401 = func() {
		mu.Lock()
		count++
		if count == n {
			refused.Do(func() { close(gate) })
		}
		mu.Unlock()
	}
	// The refresh waits until every request has been refused, so all of
	// them are waiting for it.
	r.temp.gate = gate
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			resp, _ := r.call(t, "GET", "me", nil)
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, s := range statuses {
		assert.Equal(t, http.StatusOK, s, "request %d", i)
	}
	assert.Equal(t, 1, r.temp.count(), "one refresh for all the 401s")
}

// TestProxyUsesATokenRefreshedMeanwhile: a 401 for a token that Vault has
// already replaced is retried with the new one, without a refresh.
func TestProxyUsesATokenRefreshedMeanwhile(t *testing.T) {
	r := newProxyRig(t, nil)
	r.api.setLive("at-2")
	r.api.on401 = func() {
		r.sec.mu.Lock()
		r.sec.tokens["t1/lnk_p"] = secrets.Versioned[providers.Token]{Version: 2, Value: providers.Token{
			AccessToken: "at-2", IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}}
		r.sec.mu.Unlock()
	}
	resp, body := r.call(t, "GET", "me", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	assert.Equal(t, proxyRetried, resp.Header.Get(HeaderProxyRetry))
	assert.Equal(t, 0, r.temp.count())
}

// TestProxy401WithABodyTooLargeToKeep: the body streamed, so the request
// is not sent again; the token is refreshed anyway and the answer says so.
func TestProxy401WithABodyTooLargeToKeep(t *testing.T) {
	big := bytes.Repeat([]byte("x"), proxyReplayBytes+1)
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{"known length", func() io.Reader { return bytes.NewReader(big) }},
		// No Len method: sent chunked, so the proxy learns the size by
		// reading, and sends what it read first.
		{"chunked", func() io.Reader { return io.MultiReader(bytes.NewReader(big)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newProxyRig(t, nil)
			r.api.setLive("at-2")
			resp, body := r.call(t, "POST", "upload", tc.body())
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "body %s", body)
			assert.Equal(t, proxyNotReplayable, resp.Header.Get(HeaderProxyRetry))
			assert.Equal(t, "upstream", resp.Header.Get(HeaderProxySource))
			assert.JSONEq(t, `{"detail":"token not valid"}`, string(body), "the provider's 401, as it was")
			assert.Equal(t, 1, r.temp.count(), "the token was refreshed for the next request")
			seen := r.api.requests()
			require.Len(t, seen, 1)
			sum := sha256.Sum256(big)
			assert.Equal(t, hex.EncodeToString(sum[:]), seen[0].BodySum, "the whole body reached the provider")
		})
	}
}

// TestProxy401ThatEndsInReauth: the refresh finds the grant dead; the
// provider's 401 is relayed and the link's status says what it needs.
func TestProxy401ThatEndsInReauth(t *testing.T) {
	r := newProxyRig(t, nil)
	r.api.setLive()
	r.temp.err = workflows.NewLinkStatusError(workflows.StatusReauthRequired, "invalid_grant")
	resp, body := r.call(t, "GET", "me", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "body %s", body)
	assert.Equal(t, "upstream", resp.Header.Get(HeaderProxySource))
	assert.Equal(t, proxyRefreshFailed, resp.Header.Get(HeaderProxyRetry))
	assert.Equal(t, "reauth_required", resp.Header.Get(HeaderLinkStatus))
	assert.Len(t, r.api.requests(), 1, "no retry without a fresh token")

	// A degraded link: the provider failing; the 401 stands.
	r.temp.err = workflows.NewLinkStatusError(workflows.StatusDegraded, "http_503")
	resp, _ = r.call(t, "GET", "me", nil)
	assert.Equal(t, proxyRefreshFailed, resp.Header.Get(HeaderProxyRetry))
	assert.Equal(t, "degraded", resp.Header.Get(HeaderLinkStatus))
}

// TestProxy401sAreThrottled: a provider that refuses fresh tokens too
// gets no more than one forced refresh per forced_refresh_interval.
func TestProxy401sAreThrottled(t *testing.T) {
	r := newProxyRig(t, func(e *providers.Entry) { e.ForcedRefreshInterval = time.Hour })
	r.api.setLive()
	resp, _ := r.call(t, "GET", "me", nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, proxyRetried, resp.Header.Get(HeaderProxyRetry), "refreshed and retried, refused again")
	for range 3 {
		resp, _ = r.call(t, "GET", "me", nil)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Equal(t, proxyThrottled, resp.Header.Get(HeaderProxyRetry))
	}
	assert.Equal(t, 1, r.temp.count())
	assert.Len(t, r.api.requests(), 2+3)
}

// TestProxyLimits: a provider's rate and concurrency limits answer 429
// with Retry-After before anything is sent.
func TestProxyLimits(t *testing.T) {
	t.Run("rate", func(t *testing.T) {
		r := newProxyRig(t, func(e *providers.Entry) { e.API.RateLimit, e.API.Burst = 0.5, 1 })
		now := time.Now()
		r.now = func() time.Time { return now }
		resp, _ := r.call(t, "GET", "me", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		resp, body := r.call(t, "GET", "me", nil)
		gatewayError(t, resp, body, http.StatusTooManyRequests, CodeRateLimited)
		assert.Equal(t, "2", resp.Header.Get("Retry-After"))
		assert.Contains(t, string(body), "api_rate_limit")
		now = now.Add(2 * time.Second)
		resp, _ = r.call(t, "GET", "me", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "the bucket refills")
		assert.Len(t, r.api.requests(), 2)
	})
	t.Run("concurrency", func(t *testing.T) {
		r := newProxyRig(t, func(e *providers.Entry) { e.API.MaxConcurrent = 1 })
		arrived, release := make(chan struct{}), make(chan struct{})
		r.api.serve = func(w http.ResponseWriter, _ *http.Request) {
			close(arrived)
			<-release
			_, _ = io.WriteString(w, "slow")
		}
		done := make(chan int)
		go func() {
			resp, _ := r.call(t, "GET", "slow", nil)
			done <- resp.StatusCode
		}()
		<-arrived
		resp, body := r.call(t, "GET", "me", nil)
		gatewayError(t, resp, body, http.StatusTooManyRequests, CodeRateLimited)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		close(release)
		assert.Equal(t, http.StatusOK, <-done)
		r.api.serve = nil
		resp, _ = r.call(t, "GET", "me", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "the place was given back")
		assert.Equal(t, 1.0, counterValue(r.metrics.proxyRequests.WithLabelValues("api", CodeRateLimited)))
	})
}

// TestProxyLinkStates: links that cannot serve a token cannot use the
// proxy either; the answer is the gateway's, with the link's status.
func TestProxyLinkStates(t *testing.T) {
	for _, tc := range []struct {
		status string
		code   string
	}{
		{"revoked", CodeLinkRevoked},
		{"reauth_required", CodeReauthRequired},
		{"failed", CodeLinkFailed},
		{"pending_authorization", CodeLinkPending},
	} {
		t.Run(tc.status, func(t *testing.T) {
			r := newProxyRig(t, nil)
			r.mem.links["t1/lnk_p"] = store.Link{ID: "lnk_p", TenantID: "t1", Provider: "api", Status: tc.status}
			if tc.status == "pending_authorization" {
				delete(r.sec.tokens, "t1/lnk_p")
			}
			resp, body := r.call(t, "GET", "me", nil)
			gatewayError(t, resp, body, http.StatusConflict, tc.code)
			assert.Equal(t, tc.status, resp.Header.Get(HeaderLinkStatus))
			assert.Empty(t, r.api.requests())
		})
	}
	// A row not yet past pending, with a token in Vault: enrolled.
	r := newProxyRig(t, nil)
	r.mem.links["t1/lnk_p"] = store.Link{ID: "lnk_p", TenantID: "t1", Provider: "api", Status: "pending_authorization"}
	resp, body := r.call(t, "GET", "me", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	assert.Equal(t, "active", resp.Header.Get(HeaderLinkStatus))

	r.mem.links["t1/lnk_p"] = store.Link{ID: "lnk_p", TenantID: "t1", Provider: "fake", Status: "active"}
	resp, body = r.call(t, "GET", "me", nil)
	gatewayError(t, resp, body, http.StatusConflict, CodeProxyNotConfigured)

	r.mem.links["t1/lnk_p"] = store.Link{ID: "lnk_p", TenantID: "other", Provider: "api", Status: "active"}
	delete(r.mem.links, "t1/lnk_p")
	r.mem.links["other/lnk_p"] = store.Link{ID: "lnk_p", TenantID: "other", Provider: "api", Status: "active"}
	resp, body = r.call(t, "GET", "me", nil)
	gatewayError(t, resp, body, http.StatusNotFound, CodeNotFound)
	assert.Empty(t, resp.Header.Get(HeaderLinkStatus), "nothing about another tenant's link")
}

// TestProxyStreamsLargeBodies: bodies far over the API's 64 KiB limit go
// both ways, and the answer streams: its first part reaches the caller
// before the provider has written the rest.
func TestProxyStreamsLargeBodies(t *testing.T) {
	r := newProxyRig(t, nil)
	upload := bytes.Repeat([]byte("0123456789abcdef"), 512<<10) // 8 MiB
	firstRead := make(chan struct{})
	r.api.serve = func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(bytes.Repeat([]byte("a"), 64<<10))
		w.(http.Flusher).Flush()
		select {
		case <-firstRead:
		case <-req.Context().Done():
			return
		}
		for range 128 {
			_, _ = w.Write(bytes.Repeat([]byte("b"), 64<<10))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "PUT", r.gw.URL+"/v1/links/lnk_p/proxy/files/big", bytes.NewReader(upload))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+unitKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "the first part of the answer never came: the proxy buffers")
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	first := make([]byte, 64<<10)
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	close(firstRead)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, 128*(64<<10), len(rest))

	seen := r.api.requests()
	require.Len(t, seen, 1)
	sum := sha256.Sum256(upload)
	assert.Equal(t, hex.EncodeToString(sum[:]), seen[0].BodySum)
}

// TestProxyUpstreamUnreachable: no answer is a 502 the caller may retry.
func TestProxyUpstreamUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	r := newProxyRig(t, func(e *providers.Entry) { e.API.BaseURL = "http://" + addr })
	resp, body := r.call(t, "GET", "me", nil)
	gatewayError(t, resp, body, http.StatusBadGateway, CodeUpstreamUnavailable)
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	assert.Equal(t, "active", resp.Header.Get(HeaderLinkStatus))
	assert.NotContains(t, string(body), addr, "the provider's address stays in the log")
}

// TestProxyHeadersItWillNotPass: the pass-through namespace cannot set
// what the proxy owns, and upgrades are refused.
func TestProxyHeadersItWillNotPass(t *testing.T) {
	r := newProxyRig(t, nil)
	for _, hdr := range [][]string{
		{"Tokenwarden-Proxy-Header-Authorization", "Bearer stolen"},
		{"Tokenwarden-Proxy-Header-Host", "evil.example"},
		{"Tokenwarden-Proxy-Header-Tokenwarden-Link-Status", "x"},
		{"Tokenwarden-Proxy-Header-Transfer-Encoding", "chunked"},
		{"Connection", "Upgrade", "Upgrade", "websocket"},
	} {
		resp, body := r.call(t, "GET", "me", nil, hdr...)
		gatewayError(t, resp, body, http.StatusBadRequest, CodeBadRequest)
		assert.NotContains(t, string(body), "stolen")
	}
	assert.Empty(t, r.api.requests())
}

// TestProxyCallerGone: a caller that hangs up is not answered and
// counted as canceled.
func TestProxyCallerGone(t *testing.T) {
	r := newProxyRig(t, nil)
	arrived := make(chan struct{})
	r.api.serve = func(_ http.ResponseWriter, req *http.Request) {
		close(arrived)
		<-req.Context().Done()
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", r.gw.URL+"/v1/links/lnk_p/proxy/hang", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+unitKey)
	errc := make(chan error)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	assert.True(t, errors.Is(<-errc, context.Canceled))
	require.Eventually(t, func() bool {
		return counterValue(r.metrics.proxyRequests.WithLabelValues("api", "canceled")) == 1
	}, 10*time.Second, 10*time.Millisecond)
}

// TestProxyOutlivesTheServerTimeouts: a proxied answer may take longer
// than the API's write timeout (large bodies, slow providers).
func TestProxyOutlivesTheServerTimeouts(t *testing.T) {
	r := newProxyRig(t, nil)
	r.api.serve = func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		// A slow provider: longer than the server's write timeout below.
		time.Sleep(time.Second)
		_, _ = io.WriteString(w, "last")
	}
	srv := httptest.NewUnstartedServer(r.Handler())
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	srv.Start()
	defer srv.Close()
	r.gw = srv
	resp, body := r.call(t, "GET", "slow", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "first last", string(body))
}
