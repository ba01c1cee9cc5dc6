package faults

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenProxy sits between the engine and a provider's token endpoint. It
// timestamps every refresh request (keyed by a hash of the refresh token,
// never the token) and can reset connections instead of forwarding.
type tokenProxy struct {
	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu    sync.Mutex
	reset bool
	hits  []hit
	// lose: refresh replies to drop after the provider answered, once per
	// refresh token (a retry with the same token gets its answer); how:
	// "cut" (the connection is reset) or "late" (held past the client's
	// timeout).
	lose      func(rt string) bool
	loseHow   string
	loseDelay time.Duration
	lost      map[string]bool
}

type hit struct {
	at    time.Time
	grant string
	rt    string // sha256 prefix of the refresh token
}

func newTokenProxy(t *testing.T, target string) *tokenProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	base := &url.URL{Scheme: u.Scheme, Host: u.Host}
	p := &tokenProxy{rp: &httputil.ReverseProxy{
		Rewrite:  func(pr *httputil.ProxyRequest) { pr.SetURL(base) },
		ErrorLog: log.New(io.Discard, "", 0), // cancelled requests of the timeout fault
	}}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

// URL is the proxy's address for the path of target.
func (p *tokenProxy) URL(target string) string {
	u, _ := url.Parse(target)
	return p.srv.URL + u.Path
}

func (p *tokenProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	form, _ := url.ParseQuery(string(body))
	h := hit{at: time.Now(), grant: form.Get("grant_type")}
	if rt := form.Get("refresh_token"); rt != "" {
		sum := sha256.Sum256([]byte(rt))
		h.rt = hex.EncodeToString(sum[:6])
	}
	p.mu.Lock()
	p.hits = append(p.hits, h)
	reset := p.reset && h.grant == "refresh_token"
	lose := h.grant == "refresh_token" && p.lose != nil && !p.lost[h.rt] && p.lose(h.rt)
	if lose {
		if p.lost == nil {
			p.lost = map[string]bool{}
		}
		p.lost[h.rt] = true
	}
	how, delay := p.loseHow, p.loseDelay
	p.mu.Unlock()
	switch {
	case reset:
		resetConn(w)
	case lose:
		// The provider gets the request and acts on it (rotates); its
		// answer never reaches the engine.
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		if how == "late" {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
			}
			return
		}
		resetConn(w)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// resetConn closes the client's connection with RST, not FIN, without
// an answer.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no hijack", http.StatusInternalServerError)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// loseReplies drops the reply of the next refresh of every refresh token
// for which which says so, after forwarding the request: "cut" resets the
// connection, "late" holds the reply for delay (past the client timeout).
func (p *tokenProxy) loseReplies(which func(rt string) bool, how string, delay time.Duration) {
	p.mu.Lock()
	p.lose, p.loseHow, p.loseDelay = which, how, delay
	p.mu.Unlock()
}

// lostCount is how many replies were dropped.
func (p *tokenProxy) lostCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lost)
}

func (p *tokenProxy) setReset(on bool) {
	p.mu.Lock()
	p.reset = on
	p.mu.Unlock()
}

// refreshHits returns the refresh requests seen in [from, to).
func (p *tokenProxy) refreshHits(from, to time.Time) []hit {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []hit
	for _, h := range p.hits {
		if h.grant == "refresh_token" && !h.at.Before(from) && h.at.Before(to) {
			out = append(out, h)
		}
	}
	return out
}

// minGap is the shortest time between two consecutive requests with the
// same refresh token (the retries of one link).
func minGap(hits []hit) (time.Duration, int) {
	last := map[string]time.Time{}
	best := time.Duration(-1)
	pairs := 0
	for _, h := range hits {
		if prev, ok := last[h.rt]; ok {
			gap := h.at.Sub(prev)
			if best < 0 || gap < best {
				best = gap
			}
			pairs++
		}
		last[h.rt] = h.at
	}
	return best, pairs
}

// fakeOAuth is a small OAuth 2.0 server with the password grant, for the
// reply shapes the peer cannot produce: no expires_in, and refresh replies
// without a new refresh token (a server that does not rotate).
type fakeOAuth struct {
	srv *httptest.Server
	// noExpiresIn leaves expires_in out; rotate issues a new refresh token
	// on each refresh (and rejects a spent one).
	noExpiresIn, rotate bool

	mu        sync.Mutex
	valid     map[string]bool // refresh tokens that may be used
	presented map[string]int  // refresh requests per refresh token
	refreshes int
	errors    int
	n         int
}

func newFakeOAuth(t *testing.T, noExpiresIn, rotate bool) *fakeOAuth {
	f := &fakeOAuth{noExpiresIn: noExpiresIn, rotate: rotate, valid: map[string]bool{}, presented: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.token))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOAuth) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.URL.Path != "/token" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(code string) {
		f.errors++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"` + code + `"}`))
	}
	issue := func(withRefresh bool) {
		f.n++
		out := map[string]any{"access_token": "fake-at-" + strconv.Itoa(f.n) + "-" + randomString(), "token_type": "Bearer"}
		if !f.noExpiresIn {
			out["expires_in"] = 5
		}
		if withRefresh {
			rt := "fake-rt-" + randomString()
			f.valid[rt] = true
			out["refresh_token"] = rt
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(out)
	}
	switch r.Form.Get("grant_type") {
	case "password":
		if r.Form.Get("username") != "alice" || r.Form.Get("password") == "" {
			fail("invalid_grant")
			return
		}
		issue(true)
	case "refresh_token":
		f.refreshes++
		rt := r.Form.Get("refresh_token")
		f.presented[rt]++
		if !f.valid[rt] {
			fail("invalid_grant")
			return
		}
		if f.rotate {
			delete(f.valid, rt)
		}
		issue(f.rotate)
	default:
		fail("unsupported_grant_type")
	}
}

func (f *fakeOAuth) counts() (refreshes, errors, distinct int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes, f.errors, len(f.presented)
}

// catalog is the fake's catalog entry named name.
func (f *fakeOAuth) catalog(name string) string {
	return strings.NewReplacer("NAME", name, "URL", f.srv.URL).Replace(`  - name: NAME
    kind: oauth2
    endpoint: {token_url: "URL/token", auth_url: "URL/authorize"}
    auth_style: body
    client_id: fake-client
    client_secret: {vault: "providers/NAME#client_secret"}
    grants: [password]
    schedule: {min_margin: 1s, fraction: 0.2, jitter: 0.1, default_lifetime: 5s}
`)
}
