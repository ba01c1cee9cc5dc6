package worker_test

// The integration tests of the link engine: the real Temporal server,
// Vault and PostgreSQL of the test stack, a real worker, and the certified
// oidc-provider peer as the OAuth server. Nothing is mocked. Links are
// created the way the gateway creates them, but directly, so that these
// tests pin down the engine alone.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/providers"
)

const tenant = e2e.Tenant

// engine is one test's Tokenwarden (without a worker: each test starts
// its own, in process or as a process to kill) and its own OIDC peer.
type engine struct {
	*e2e.Stack
	t    *testing.T
	peer *oidcpeer.Peer
	// tokenCalls watches the token endpoint, when the engine reaches it
	// through a proxy (newEngineWithTokenProxy).
	tokenCalls *callLog
}

func newEngine(t *testing.T, peerOpts oidcpeer.Options) *engine {
	return newEngineAt(t, oidcpeer.StartT(t, peerOpts), "")
}

// newEngineWithTokenProxy puts a recording proxy in front of the peer's
// token endpoint, so that a test can tell which moments had a token
// request in flight.
func newEngineWithTokenProxy(t *testing.T, peerOpts oidcpeer.Options) *engine {
	peer := oidcpeer.StartT(t, peerOpts)
	calls := &callLog{}
	target, err := url.Parse(peer.TokenURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rp.ServeHTTP(w, r)
		calls.add(start, time.Now())
	}))
	t.Cleanup(proxy.Close)
	e := newEngineAt(t, peer, fmt.Sprintf("\n    endpoint: {token_url: %q}", proxy.URL+target.Path))
	e.tokenCalls = calls
	return e
}

// callLog records the time spans of requests.
type callLog struct {
	mu    sync.Mutex
	spans [][2]time.Time
}

func (c *callLog) add(start, end time.Time) {
	c.mu.Lock()
	c.spans = append(c.spans, [2]time.Time{start, end})
	c.mu.Unlock()
}

// inFlight counts the requests under way at t: sent, and their reply not
// yet handed back plus grace (for the caller to store what it got).
func (c *callLog) inFlight(t time.Time, grace time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.spans {
		if !t.Before(s[0]) && !t.After(s[1].Add(grace)) {
			n++
		}
	}
	return n
}

func newEngineAt(t *testing.T, peer *oidcpeer.Peer, extra string) *engine {
	t.Helper()
	s := e2e.Start(t, e2e.Options{
		NoWorker:     true,
		VaultSecrets: map[string]map[string]string{"providers/peer": {"client_secret": peer.ClientSecret}},
		Catalog: fmt.Sprintf(`providers:
  - name: peer
    kind: oidc
    issuer: %s%s
    auth_style: header
    client_id: %s
    client_secret: {vault: "providers/peer#client_secret"}
    scopes: [openid, offline_access]
    grants: [authorization_code, client_credentials, device_code]
    auth_params: {prompt: consent}
    schedule: {min_margin: 1s, fraction: 0.2, jitter: 0.1, default_lifetime: 5s}
`, peer.Issuer, extra, peer.ClientID),
	})
	return &engine{Stack: s, t: t, peer: peer}
}

// createLink does what the gateway does: a links row, the grant material
// in Vault, and the link's workflow.
func (e *engine) createLink(ctx context.Context, grantType string, g providers.Grant) string {
	e.t.Helper()
	return e.CreateLinkDirect(ctx, "peer", grantType, g)
}

// createAuthCodeLink drives the peer's login and consent pages for an
// authorization-code link and hands the code to the workflow, as the
// gateway's callback does.
func (e *engine) createAuthCodeLink(ctx context.Context) string {
	e.t.Helper()
	return e.Linker().CreateAuthCodeLink(ctx, e.peer)
}
