// Package simulator holds what the provider simulators (providers/*/sim)
// have in common: queued fault injection, per-endpoint hit counters, JSON
// and error-body writers, the /_sim/ admin surface of `tokenwarden dev`,
// and small token helpers (random ids, HS256 JWTs, PKCE).
//
// What a fault looks like on the wire is each simulator's own: it passes
// a writer to Faults.Take.
package simulator

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is one queued failure.
type Fault struct {
	// Status is the HTTP status to answer (200 for Malformed).
	Status int
	// RetryAfter is the Retry-After of a rate limit.
	RetryAfter time.Duration
	// RateLimit is set by Faults.RateLimit; FailNext(n, 429) leaves it
	// false, which some simulators answer differently.
	RateLimit bool
	// Malformed asks for a 200 with broken JSON.
	Malformed bool
}

// Faults is a queue of failures for the next requests. Simulators embed
// it, which gives them FailNext, RateLimit and Malformed. The zero value
// is ready; it is safe for concurrent use.
type Faults struct {
	mu    sync.Mutex
	queue []Fault
}

// FailNext makes the next n calls answer status.
func (f *Faults) FailNext(n, status int) { f.add(n, Fault{Status: status}) }

// RateLimit makes the next n calls answer 429 with Retry-After.
func (f *Faults) RateLimit(n int, retryAfter time.Duration) {
	f.add(n, Fault{Status: http.StatusTooManyRequests, RetryAfter: retryAfter, RateLimit: true})
}

// Malformed makes the next n calls answer 200 with broken JSON.
func (f *Faults) Malformed(n int) { f.add(n, Fault{Status: http.StatusOK, Malformed: true}) }

func (f *Faults) add(n int, ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.queue = append(f.queue, ft)
	}
}

// Take applies the next queued fault, if any, by answering w with write.
// It reports whether it answered.
func (f *Faults) Take(w http.ResponseWriter, write func(http.ResponseWriter, Fault)) bool {
	f.mu.Lock()
	if len(f.queue) == 0 {
		f.mu.Unlock()
		return false
	}
	ft := f.queue[0]
	f.queue = f.queue[1:]
	f.mu.Unlock()
	write(w, ft)
	return true
}

// Hits counts requests by name. Simulators embed it, which gives them
// Stats. The zero value is ready; it is safe for concurrent use.
type Hits struct {
	mu sync.Mutex
	m  map[string]int
}

// Hit counts one request for name.
func (h *Hits) Hit(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]int{}
	}
	h.m[name]++
}

// Stats returns the number of requests per name (faults included).
func (h *Hits) Stats() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		return map[string]int{}
	}
	return maps.Clone(h.m)
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteNoStoreJSON is WriteJSON with Cache-Control: no-store, as OAuth
// servers answer their token endpoints.
func WriteNoStoreJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, status, v)
}

// OAuthError answers an RFC 6749 error body {"error","error_description"},
// with Cache-Control: no-store.
func OAuthError(w http.ResponseWriter, status int, code, desc string) {
	WriteNoStoreJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// WriteMalformed answers 200 with body, which should be cut-off JSON.
func WriteMalformed(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, body)
}

// WriteHTMLError answers status with a bare HTML error page, as a proxy
// in front of a server sends.
func WriteHTMLError(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", status, http.StatusText(status))
}

// Admin is the HTTP form of a simulator's switches, for demos run with
// `tokenwarden dev`:
//
//	POST /_sim/fail?n=1&status=503
//	POST /_sim/ratelimit?n=1&retry_after=5s (Strict) or =5 (seconds)
//	POST /_sim/malformed?n=1
//	POST /_sim/<action>?... for each of Actions
//	GET  /_sim/stats
//
// Success is 204 (stats: 200 with the counts as JSON).
type Admin struct {
	// Faults receives fail, ratelimit and malformed.
	Faults *Faults
	// Stats answers /_sim/stats.
	Stats func() map[string]int
	// Actions are the other operations by name (the path after /_sim/).
	// An error answers 400 with its text.
	Actions map[string]func(q url.Values) error
	// Strict makes n an integer in [0,1000] (anything else answers 400)
	// and retry_after a Go duration; otherwise an unreadable or
	// non-positive n means 1 and retry_after is whole seconds.
	Strict bool
	// JSON writes the stats; nil means WriteJSON.
	JSON func(w http.ResponseWriter, status int, v any)
}

// Do makes an Admin action of f, which takes no parameters.
func Do(f func()) func(url.Values) error {
	return func(url.Values) error { f(); return nil }
}

func (a Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := 1
	if a.Strict {
		if v := q.Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 0 || n > 1000 {
				http.Error(w, "n must be an integer in [0,1000]", http.StatusBadRequest)
				return
			}
		}
	} else {
		n, _ = strconv.Atoi(q.Get("n"))
		n = max(n, 1)
	}
	op := strings.TrimPrefix(r.URL.Path, "/_sim/")
	if op == "stats" {
		write := a.JSON
		if write == nil {
			write = WriteJSON
		}
		write(w, http.StatusOK, a.Stats())
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	switch op {
	case "fail":
		status, err := strconv.Atoi(q.Get("status"))
		if err != nil || status < 400 || status > 599 {
			msg := "status must be 400..599"
			if a.Strict {
				msg = "status must be a 4xx or 5xx code"
			}
			http.Error(w, msg, http.StatusBadRequest)
			return
		}
		a.Faults.FailNext(n, status)
	case "ratelimit":
		var d time.Duration
		if a.Strict {
			var err error
			if d, err = time.ParseDuration(q.Get("retry_after")); err != nil || d < 0 {
				http.Error(w, "retry_after must be a duration like 5s", http.StatusBadRequest)
				return
			}
		} else {
			secs, _ := strconv.Atoi(q.Get("retry_after"))
			d = time.Duration(max(secs, 0)) * time.Second
		}
		a.Faults.RateLimit(n, d)
	case "malformed":
		a.Faults.Malformed(n)
	default:
		act, ok := a.Actions[op]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if err := act(q); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// RandomID is n random bytes in unpadded base64url.
func RandomID(n int) string { return base64.RawURLEncoding.EncodeToString(RandomBytes(n)) }

// HexID is n random bytes in hex.
func HexID(n int) string { return hex.EncodeToString(RandomBytes(n)) }

// SignJWT encodes header and claims as JSON and signs them with
// HMAC-SHA256 under key, whatever alg the header names.
func SignJWT(key []byte, header, claims any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(claims)
	msg := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

// VerifyJWT checks the HMAC-SHA256 signature SignJWT made under key and
// returns the decoded claims JSON.
func VerifyJWT(key []byte, token string) ([]byte, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	return payload, true
}

// PKCEMatches reports whether verifier answers an RFC 7636 challenge made
// with method ("plain", or S256 for anything else).
func PKCEMatches(method, challenge, verifier string) bool {
	if method == "plain" {
		return subtle.ConstantTimeCompare([]byte(challenge), []byte(verifier)) == 1
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(challenge), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) == 1
}

// RedirectBack sends the browser to redirect with v, and state when not
// empty, added to its query (302).
func RedirectBack(w http.ResponseWriter, r *http.Request, redirect url.URL, state string, v url.Values) {
	if state != "" {
		v.Set("state", state)
	}
	rq := redirect.Query()
	maps.Copy(rq, v)
	redirect.RawQuery = rq.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}
