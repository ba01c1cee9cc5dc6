package worker_test

// Fault helpers of the durability tests (issue 9, points 4, 5, 10, 13):
// a TCP proxy that can refuse or black-hole connections, and an HTTP proxy
// that lets a test act on a request after the upstream answered and before
// the reply is relayed.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	vaultpolicy "github.com/tokenwarden/tokenwarden/deployments/vault"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/worker"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Modes of a tcpCut.
const (
	cutPass      = iota // forward
	cutRefuse           // reset open connections, close new ones at once
	cutBlackhole        // accept, never answer; open connections go dead
)

// tcpCut is a TCP proxy in front of one address.
type tcpCut struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  int
	conns map[*cutConn]bool
	dead  []net.Conn // client ends kept open, unanswered, until cleanup
}

type cutConn struct {
	client, server net.Conn
	frozen         bool
}

func newTCPCut(t *testing.T, target string) *tcpCut {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpCut{ln: ln, target: target, conns: map[*cutConn]bool{}}
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for c := range p.conns {
			c.client.Close()
			c.server.Close()
		}
		for _, c := range p.dead {
			c.Close()
		}
	})
	return p
}

func (p *tcpCut) addr() string { return p.ln.Addr().String() }

func (p *tcpCut) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		switch mode {
		case cutRefuse:
			resetConn(c)
		case cutBlackhole:
			p.dead = append(p.dead, c)
		}
		p.mu.Unlock()
		if mode != cutPass {
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			resetConn(c)
			continue
		}
		pc := &cutConn{client: c, server: s}
		p.mu.Lock()
		p.conns[pc] = true
		p.mu.Unlock()
		end := func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if pc.frozen {
				return
			}
			delete(p.conns, pc)
			c.Close()
			s.Close()
		}
		go func() { _, _ = io.Copy(s, c); end() }()
		go func() { _, _ = io.Copy(c, s); end() }()
	}
}

// set switches the mode. Refuse resets every open connection; black-hole
// leaves open connections dead (their requests are never answered, as
// after a host went down: they stay dead after set(cutPass) too).
func (p *tcpCut) set(mode int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
	for c := range p.conns {
		switch mode {
		case cutRefuse:
			delete(p.conns, c)
			resetConn(c.client)
			c.server.Close()
		case cutBlackhole:
			delete(p.conns, c)
			c.frozen = true
			c.server.Close()
			p.dead = append(p.dead, c.client)
		}
	}
}

// resetDead resets the connections a black-hole left dead, as a peer
// that came back answers a packet of a connection it forgot.
func (p *tcpCut) resetDead() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.dead {
		resetConn(c)
	}
	p.dead = nil
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST, not FIN
	}
	_ = c.Close()
}

// httpTap is an HTTP proxy in front of one origin. after, when set, runs
// once the origin answered and before the reply is relayed; returning
// false drops the reply (the connection is closed without an answer).
type httpTap struct {
	*httptest.Server
	origin string
	rt     http.RoundTripper

	mu    sync.Mutex
	after func(r *http.Request, body []byte, status int) bool
}

func newHTTPTap(t *testing.T, origin string) *httpTap {
	t.Helper()
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	p := &httpTap{origin: u.Scheme + "://" + u.Host, rt: &http.Transport{}}
	p.Server = httptest.NewServer(p)
	t.Cleanup(p.Server.Close)
	return p
}

func (p *httpTap) setAfter(f func(r *http.Request, body []byte, status int) bool) {
	p.mu.Lock()
	p.after = f
	p.mu.Unlock()
}

func (p *httpTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.origin+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		http.Error(w, "origin unreachable", http.StatusBadGateway)
		return
	}
	reply, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.mu.Lock()
	after := p.after
	p.mu.Unlock()
	if after != nil && !after(r, body, resp.StatusCode) {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				resetConn(c)
			}
		}
		return
	}
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(reply)
}

// grantOf reads the grant_type of a token request body.
func grantOf(body []byte) string {
	form, _ := url.ParseQuery(string(body))
	return form.Get("grant_type")
}

// refreshTokenHash names a refresh request's refresh token without
// revealing it.
func refreshTokenHash(body []byte) string {
	form, _ := url.ParseQuery(string(body))
	sum := sha256.Sum256([]byte(form.Get("refresh_token")))
	return hex.EncodeToString(sum[:6])
}

// newEngineWithTap is an engine whose catalog reaches the peer's token
// endpoint through an httpTap.
func newEngineWithTap(t *testing.T, o oidcpeer.Options) (*engine, *httpTap) {
	t.Helper()
	peer := oidcpeer.StartT(t, o)
	tap := newHTTPTap(t, peer.TokenURL)
	u, _ := url.Parse(peer.TokenURL)
	e := newEngineAt(t, peer, fmt.Sprintf("\n    endpoint: {token_url: %q}", tap.URL+u.Path))
	return e, tap
}

// newEngineWithSchedule is newEngine with the peer's refresh schedule
// given as a YAML flow mapping.
func newEngineWithSchedule(t *testing.T, o oidcpeer.Options, schedule string) *engine {
	t.Helper()
	return newEngineScheduled(t, oidcpeer.StartT(t, o), "", schedule)
}

// isTokenPath reports whether r is a KV v2 request for a link's token:
// its refresh secret (the worker's whole token, written first) or its
// access secret.
func isTokenPath(r *http.Request) bool {
	p := r.URL.Path
	return strings.Contains(p, "/data/") && strings.Contains(p, "/links/") &&
		(strings.HasSuffix(p, "/refresh") || strings.HasSuffix(p, "/access"))
}

// vaultVia is a secrets store on the engine's Vault prefix and token,
// reaching Vault at addr (a proxy).
func (e *engine) vaultVia(addr string) *secrets.Store {
	e.t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	vc, err := vault.NewClient(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	vc.ClearNamespace()
	vc.SetToken(e.Vault.Token())
	return secrets.New(vc, e.Info.VaultMount, e.Prefix)
}

// startWorkerWith runs an in-process worker with its own Temporal client
// (dialled at temporalAddr, a proxy or the stack's) and secrets store.
func (e *engine) startWorkerWith(temporalAddr string, sec *secrets.Store, opts sdkworker.Options) (stop func()) {
	e.t.Helper()
	c, err := client.Dial(client.Options{HostPort: temporalAddr, Namespace: e.Namespace, Logger: tlog.NewStructuredLogger(e.Logger)})
	if err != nil {
		e.t.Fatalf("temporal client: %v", err)
	}
	w := worker.New(c, &activities.Activities{Providers: e.Registry, Secrets: sec, Store: e.Store, WebhooksToInternal: true}, opts)
	if err := w.Start(); err != nil {
		e.t.Fatalf("worker: %v", err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { w.Stop(); c.Close() }) }
	e.t.Cleanup(stop)
	return stop
}

// refreshesAfter waits until the link is active with at least n more
// refreshes than before (or fails the test), and checks that its token is
// active at the peer.
func (e *engine) refreshesAfter(ctx context.Context, id string, before, n int) workflows.State {
	e.t.Helper()
	st := e.WaitFor(ctx, id, fmt.Sprintf("%d more refreshes", n), func(st workflows.State) bool {
		switch st.Status {
		case workflows.StatusReauthRequired, workflows.StatusFailed, workflows.StatusRevoked:
			return true
		}
		return st.Status == workflows.StatusActive && st.Refreshes >= before+n
	})
	if st.Status != workflows.StatusActive {
		e.t.Fatalf("link %s is %s, want active; last_error %q", id, st.Status, st.LastError)
	}
	tok, _ := e.Token(ctx, id)
	if ok, _, err := e.peer.Introspect(ctx, tok.AccessToken); err != nil || !ok {
		e.t.Fatalf("link %s: stored token not active at the peer (err %v)", id, err)
	}
	return st
}

// noReplay fails the test if the peer rejected any refresh request: the
// peer revokes the grant when a spent refresh token comes back, so a
// rejection here is a replay.
func (e *engine) noReplay(ctx context.Context) oidcpeer.Stats {
	e.t.Helper()
	stats, err := e.peer.Stats(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if n := stats.TokenErrorsByGrantType["refresh_token"]; n > 0 {
		e.t.Errorf("the peer rejected %d of %d refresh requests: a spent refresh token was replayed or lost",
			n, stats.TokenByGrantType["refresh_token"])
	}
	return stats
}

// approleFor makes an AppRole secret ID of the engine's role whose tokens
// carry a marker, and returns it with a function that revokes every token
// logged in with it so far (the root token does the revoking).
func (e *engine) approleFor(ctx context.Context) (secretID string, revoke func() int) {
	e.t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = e.Info.VaultAddress
	root, err := vault.NewClient(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	root.ClearNamespace()
	root.SetToken(e.Info.VaultRootToken)
	marker := "tw-" + refreshTokenHash([]byte("refresh_token="+e.Prefix))
	meta, _ := json.Marshal(map[string]string{"tw_test": marker})
	role := "auth/approle/role/" + vaultpolicy.WorkerPolicyName
	sec, err := root.Logical().WriteWithContext(ctx, role+"/secret-id", map[string]any{"metadata": string(meta)})
	if err != nil || sec == nil {
		e.t.Fatalf("create AppRole secret ID: %v", err)
	}
	secretID, _ = sec.Data["secret_id"].(string)
	accessor, _ := sec.Data["secret_id_accessor"].(string)
	e.Remember(secretID)
	e.t.Cleanup(func() {
		_, _ = root.Logical().Write(role+"/secret-id-accessor/destroy", map[string]any{"secret_id_accessor": accessor})
	})
	revoke = func() int {
		list, err := root.Logical().ListWithContext(ctx, "auth/token/accessors")
		if err != nil || list == nil {
			e.t.Errorf("list token accessors: %v", err)
			return 0
		}
		keys, _ := list.Data["keys"].([]any)
		n := 0
		for _, k := range keys {
			acc, _ := k.(string)
			look, err := root.Logical().WriteWithContext(ctx, "auth/token/lookup-accessor", map[string]any{"accessor": acc})
			if err != nil || look == nil {
				continue
			}
			if m, _ := look.Data["meta"].(map[string]any); m == nil || m["tw_test"] != marker {
				continue
			}
			if _, err := root.Logical().WriteWithContext(ctx, "auth/token/revoke-accessor", map[string]any{"accessor": acc}); err != nil {
				e.t.Errorf("revoke the worker's Vault token: %v", err)
				continue
			}
			n++
		}
		return n
	}
	return secretID, revoke
}

// waitTimeout waits for ch or fails the test after d.
func waitTimeout(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}
