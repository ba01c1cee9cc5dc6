package worker_test

// The integration tests of the link engine: the real Temporal server,
// Vault and PostgreSQL of the test stack, a real worker, and the certified
// oidc-provider peer as the OAuth server. Nothing is mocked. Links are
// created the way the gateway creates them, but directly, so that these
// tests pin down the engine alone.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/gateway"
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
// request in flight, and whose.
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
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		rec := &replyRecorder{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(rec, r)
		c := call{start: start, end: time.Now(), rt: tokenHash(form.Get("refresh_token")),
			grant: form.Get("grant_type"), status: rec.status}
		c.issued, c.oauthErr = rec.reply()
		calls.add(c)
	}))
	t.Cleanup(proxy.Close)
	e := newEngineAt(t, peer, fmt.Sprintf("\n    endpoint: {token_url: %q}", proxy.URL+target.Path))
	e.tokenCalls = calls
	return e
}

// tokenHash names a refresh token in test logs without showing it.
func tokenHash(rt string) string {
	if rt == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(rt))
	return hex.EncodeToString(sum[:8])
}

// call is one token request as the proxy saw it: when it was sent, when
// its reply was handed back, and the refresh token it spent (hashed).
type call struct {
	start, end time.Time
	rt         string
	// For diagnostics: the grant type, the status the peer answered (502
	// when the caller was gone before the reply), the refresh token the
	// reply issued (hashed) and its OAuth error code.
	grant    string
	status   int
	issued   string
	oauthErr string
}

// String shows a call by hashes and wire facts only.
func (c call) String() string {
	return fmt.Sprintf("%s..%s %s rt=%s -> %d %s issued=%s", c.start.Format("15:04:05.000"), c.end.Format("15:04:05.000"),
		c.grant, c.rt, c.status, c.oauthErr, c.issued)
}

// replyRecorder keeps a copy of a token reply for the call log.
type replyRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *replyRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *replyRecorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *replyRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// reply returns the hash of the refresh token a reply issued and its
// OAuth error code.
func (r *replyRecorder) reply() (issued, oauthErr string) {
	var out struct {
		RefreshToken string `json:"refresh_token"`
		Error        string `json:"error"`
	}
	_ = json.Unmarshal(r.body.Bytes(), &out)
	return tokenHash(out.RefreshToken), out.Error
}

// callLog records the token requests.
type callLog struct {
	mu    sync.Mutex
	calls []call
}

func (c *callLog) add(cl call) {
	c.mu.Lock()
	c.calls = append(c.calls, cl)
	c.mu.Unlock()
}

// logGrant logs every request of grant type grant, by wire facts only:
// which code exchanges failed, and whether one was sent twice.
func (c *callLog) logGrant(t *testing.T, grant string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.calls {
		if cl.grant == grant {
			t.Logf("    %s", cl)
		}
	}
}

// inFlight counts the requests under way at t: sent, and their reply not
// yet handed back plus grace (for the caller to store what it got).
func (c *callLog) inFlight(t time.Time, grace time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.calls {
		if !t.Before(s.start) && !t.After(s.end.Add(grace)) {
			n++
		}
	}
	return n
}

// spentInFlight reports whether a request spending refresh token rt (a
// hash) was in flight at one of the moments in at.
func (c *callLog) spentInFlight(rt string, at []time.Time, grace time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.calls {
		if s.rt != rt {
			continue
		}
		for _, t := range at {
			if !t.Before(s.start) && !t.After(s.end.Add(grace)) {
				return true
			}
		}
	}
	return false
}

// defaultTestSchedule is the peer's refresh schedule in most tests.
const defaultTestSchedule = "{min_margin: 1s, fraction: 0.2, jitter: 0.1, default_lifetime: 5s}"

func newEngineAt(t *testing.T, peer *oidcpeer.Peer, extra string) *engine {
	t.Helper()
	return newEngineScheduled(t, peer, extra, defaultTestSchedule)
}

// newEngineScheduled is newEngineAt with the peer's refresh schedule given
// as a YAML flow mapping.
func newEngineScheduled(t *testing.T, peer *oidcpeer.Peer, extra, schedule string) *engine {
	t.Helper()
	return newEngineGateway(t, peer, extra, schedule, gateway.Config{})
}

// newEngineGateway is newEngineScheduled with the gateway's configuration.
func newEngineGateway(t *testing.T, peer *oidcpeer.Peer, extra, schedule string, gw gateway.Config) *engine {
	t.Helper()
	s := e2e.Start(t, e2e.Options{
		Gateway:      gw,
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
    schedule: %s
`, peer.Issuer, extra, peer.ClientID, schedule),
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

// recordFaultRow adds a row to the fault suite's results table when
// `make faults` runs (TOKENWARDEN_FAULTS_ROWS names the file the faults
// package's table takes rows from); the row says FAIL if the test fails.
func recordFaultRow(t *testing.T, fault string, links, lost, errors int, notes string) {
	path := os.Getenv("TOKENWARDEN_FAULTS_ROWS")
	if path == "" {
		return
	}
	t.Cleanup(func() {
		result := "pass"
		if t.Failed() {
			result = "FAIL"
		}
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("results row: %v", err)
			return
		}
		defer f.Close()
		fmt.Fprintf(f, "| %s | %d | %d | – | %d | %s | %s |\n", fault, links, lost, errors, result, notes)
	})
}
