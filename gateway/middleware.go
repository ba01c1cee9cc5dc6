package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/tokenwarden/tokenwarden/internal/store"
)

const (
	ctxRequestID = "tokenwarden.request_id"
	ctxTenant    = "tokenwarden.tenant"
	ctxKeyID     = "tokenwarden.key_id"
	ctxKeyRate   = "tokenwarden.key_rate"

	// apiKeyCacheTTL is how long a successful key lookup is trusted: a
	// revoked key keeps working on a replica for up to this long, the
	// price of not hitting PostgreSQL on every token read.
	apiKeyCacheTTL = 30 * time.Second
	// apiKeyStaleGrace is how long past its TTL a cached key is still
	// honoured while PostgreSQL cannot be asked (an outage): token reads
	// go on from Vault. A key revoked during an outage works until it ends
	// or this runs out.
	apiKeyStaleGrace = 15 * time.Minute
	// maxRequestIDLen bounds a caller-chosen X-Request-ID.
	maxRequestIDLen = 128
	// apiKeyNegativeTTL is how long an unknown key is remembered as
	// unknown: repeating a bogus key costs no PostgreSQL query, and a key
	// created a moment ago works after at most this long.
	apiKeyNegativeTTL = 5 * time.Second
	// authFailureRate and authFailureBurst limit failed authentications
	// per client address: a burst of 20 wrong keys, then one a second.
	// Past it, the address is answered 429 before any lookup, except for
	// keys this replica already knows (no PostgreSQL query either way).
	authFailureRate  = rate.Limit(1)
	authFailureBurst = 20
)

func requestIDOf(c *gin.Context) string { return c.GetString(ctxRequestID) }
func tenantOf(c *gin.Context) string    { return c.GetString(ctxTenant) }

// routeOf is the route template ("/v1/links/:id/token"), never the raw
// URL: query strings carry authorization codes and states.
func routeOf(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return "unmatched"
}

// requestID echoes a sane X-Request-ID or makes one, so that a caller's
// report and our logs meet.
func (s *Server) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-ID")
	if !validRequestID(id) {
		id = newRequestID()
	}
	c.Set(ctxRequestID, id)
	c.Header("X-Request-ID", id)
	c.Next()
}

// validRequestID keeps caller-chosen IDs to characters that cannot forge
// log lines or headers.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == ':':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// accessLog writes one structured line per request and feeds the HTTP
// metrics. It logs the route template, not the URL.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	elapsed := time.Since(start)
	route := routeOf(c)
	code := c.Writer.Status()
	s.metrics.observeRequest(route, c.Request.Method, code, elapsed)
	attrs := []any{
		"request_id", requestIDOf(c),
		"method", c.Request.Method,
		"route", route,
		"status", code,
		"duration_ms", float64(elapsed.Microseconds()) / 1000,
		"bytes", c.Writer.Size(),
	}
	if t := tenantOf(c); t != "" {
		attrs = append(attrs, "tenant", t)
	}
	if id := c.Param("id"); id != "" {
		attrs = append(attrs, "link", id)
	}
	s.log.Info("http request", attrs...)
}

// recovery turns a panic into the JSON internal error. The stack goes to
// the log; the body says nothing about it.
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if err, ok := r.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(r)
			}
			s.log.Error("panic in handler", "request_id", requestIDOf(c), "route", routeOf(c),
				"stack", string(debug.Stack()))
			if c.Writer.Written() {
				c.Abort()
				return
			}
			s.fail(c, &apiError{status: http.StatusInternalServerError, code: CodeInternal,
				msg: "internal error; quote the request ID when reporting it"})
		}
	}()
	c.Next()
}

// limitBody caps request bodies. A declared length over the limit is
// refused at once; a body that grows past it fails its decoding.
func (s *Server) limitBody(c *gin.Context) {
	if s.d.Codec != nil && strings.HasPrefix(c.Request.URL.Path, codecPrefix) || isProxyRoute(c) {
		// The codec takes batches of payloads under its own, larger limit;
		// the proxy streams bodies of any size (proxy.go).
		c.Next()
		return
	}
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		s.fail(c, errBodyTooLarge(s.cfg.MaxBodyBytes))
		return
	}
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	}
	c.Next()
}

func errBodyTooLarge(limit int64) *apiError {
	return newError(http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
		"request body exceeds "+strconv.FormatInt(limit, 10)+" bytes")
}

// authenticate resolves the bearer API key to its tenant. It runs before
// any handler reads the body, so an unauthenticated request is answered
// without reading it, and its connection is closed rather than drained.
func (s *Server) authenticate(c *gin.Context) {
	key, ok := bearer(c.GetHeader("Authorization"))
	if !ok {
		c.Header("WWW-Authenticate", `Bearer realm="tokenwarden"`)
		s.refuse(c, newError(http.StatusUnauthorized, CodeUnauthorized, "missing API key: send Authorization: Bearer <key>"))
		return
	}
	k, err := s.lookupKey(c.Request.Context(), c.Request.RemoteAddr, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			c.Header("WWW-Authenticate", `Bearer realm="tokenwarden", error="invalid_token"`)
			s.refuse(c, newError(http.StatusUnauthorized, CodeUnauthorized, "invalid or revoked API key"))
			return
		}
		var ae *apiError
		if errors.As(err, &ae) && ae.code == CodeRateLimited {
			s.refuse(c, ae)
			return
		}
		s.fail(c, err)
		return
	}
	c.Set(ctxTenant, k.TenantID)
	c.Set(ctxKeyID, k.ID)
	c.Set(ctxKeyRate, k.RateLimit)
	c.Next()
}

// refuse answers an unauthenticated request and closes its connection, so
// that a body still on its way is neither read nor waited for.
func (s *Server) refuse(c *gin.Context, e *apiError) {
	c.Header("Connection", "close")
	s.fail(c, e)
}

// CheckAPIKey reports whether r carries a valid API key (Authorization:
// Bearer, scheme in any case), with the same cache, negative cache and
// failure limit as /v1. The payload codec authenticates with it.
func (s *Server) CheckAPIKey(r *http.Request) bool {
	key, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return false
	}
	_, err := s.lookupKey(r.Context(), r.RemoteAddr, key)
	return err == nil
}

func bearer(h string) (string, bool) {
	scheme, key, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != "" && len(key) <= 512
}

// lookupKey resolves key: from the cache, else from PostgreSQL. Unknown
// keys are remembered briefly, and lookups that found nothing count
// against the client address; an address over its budget gets a
// rate_limited error before any query.
func (s *Server) lookupKey(ctx context.Context, remoteAddr, key string) (store.APIKey, error) {
	sum := sha256.Sum256([]byte(key))
	now := s.now()
	if k, ok := s.keys.get(sum, now, 0); ok {
		return k, nil
	}
	addr := clientAddr(remoteAddr)
	if wait, ok := s.authFail.blocked(addr, now); ok {
		e := newError(http.StatusTooManyRequests, CodeRateLimited, "too many failed authentications from this address; slow down")
		e.retryAfter = max(1, int(math.Ceil(wait.Seconds())))
		return store.APIKey{}, e
	}
	if s.badKeys.has(sum, now) {
		// Costs nothing: not counted against the address.
		return store.APIKey{}, store.ErrNotFound
	}
	k, err := s.store.LookupAPIKey(ctx, key)
	if err != nil {
		// PostgreSQL down must not stop token reads that need only
		// Vault: a key that was valid a moment ago still is, for a while.
		if !errors.Is(err, store.ErrNotFound) {
			if k, ok := s.keys.get(sum, now, apiKeyStaleGrace); ok {
				return k, nil
			}
		} else {
			s.badKeys.add(sum, now)
			s.authFail.fail(addr, now)
		}
		return store.APIKey{}, err
	}
	s.keys.put(sum, k, now)
	return k, nil
}

// clientAddr is the host of the connection's peer. Forwarded headers are
// not believed: behind a reverse proxy, every client shares the proxy's
// budget of failed authentications (valid cached keys are not limited).
func clientAddr(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}

// negativeKeys remembers the SHA-256 of keys PostgreSQL did not know, for
// apiKeyNegativeTTL.
type negativeKeys struct {
	mu    sync.Mutex
	until map[[32]byte]time.Time
}

func newNegativeKeys() *negativeKeys { return &negativeKeys{until: map[[32]byte]time.Time{}} }

func (n *negativeKeys) has(sum [32]byte, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	u, ok := n.until[sum]
	return ok && now.Before(u)
}

func (n *negativeKeys) add(sum [32]byte, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.until) >= maxCachedKeys {
		for h, u := range n.until {
			if !now.Before(u) {
				delete(n.until, h)
			}
		}
		if len(n.until) >= maxCachedKeys {
			clear(n.until)
		}
	}
	n.until[sum] = now.Add(apiKeyNegativeTTL)
}

// authFailures is a token bucket of failed authentications per client
// address.
type authFailures struct {
	mu     sync.Mutex
	byAddr map[string]*rate.Limiter
}

// maxTrackedAddrs bounds authFailures; past it, the buckets that are full
// again are dropped.
const maxTrackedAddrs = 10000

func newAuthFailures() *authFailures { return &authFailures{byAddr: map[string]*rate.Limiter{}} }

// blocked reports whether addr has no failure left to spend, and how long
// until it has.
func (a *authFailures) blocked(addr string, now time.Time) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	lim, ok := a.byAddr[addr]
	if !ok || lim.TokensAt(now) >= 1 {
		return 0, false
	}
	return time.Duration((1 - lim.TokensAt(now)) / float64(authFailureRate) * float64(time.Second)), true
}

func (a *authFailures) fail(addr string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	lim, ok := a.byAddr[addr]
	if !ok {
		if len(a.byAddr) >= maxTrackedAddrs {
			for k, l := range a.byAddr {
				if l.TokensAt(now) >= authFailureBurst {
					delete(a.byAddr, k)
				}
			}
			if len(a.byAddr) >= maxTrackedAddrs {
				clear(a.byAddr)
			}
		}
		lim = rate.NewLimiter(authFailureRate, authFailureBurst)
		a.byAddr[addr] = lim
	}
	lim.AllowN(now, 1)
}

// keyCache remembers successful API key lookups by the key's SHA-256, so
// the key itself is never held beyond the request. Failed lookups are
// kept apart, and only for apiKeyNegativeTTL (negativeKeys).
type keyCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[[32]byte]keyEntry
}

type keyEntry struct {
	key   store.APIKey
	until time.Time
}

// maxCachedKeys bounds the cache; past it, expired entries are dropped
// and, if that is not enough, everything.
const maxCachedKeys = 10000

func newKeyCache(ttl time.Duration) *keyCache {
	return &keyCache{ttl: ttl, entries: make(map[[32]byte]keyEntry)}
}

// get returns a cached key that expired less than grace ago.
func (kc *keyCache) get(sum [32]byte, now time.Time, grace time.Duration) (store.APIKey, bool) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	e, ok := kc.entries[sum]
	if !ok || !now.Before(e.until.Add(grace)) {
		return store.APIKey{}, false
	}
	return e.key, true
}

func (kc *keyCache) put(sum [32]byte, k store.APIKey, now time.Time) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if len(kc.entries) >= maxCachedKeys {
		for h, e := range kc.entries {
			if !now.Before(e.until.Add(apiKeyStaleGrace)) {
				delete(kc.entries, h)
			}
		}
		if len(kc.entries) >= maxCachedKeys {
			clear(kc.entries)
		}
	}
	kc.entries[sum] = keyEntry{key: k, until: now.Add(kc.ttl)}
}

// rateLimit applies the per-key token bucket.
func (s *Server) rateLimit(c *gin.Context) {
	lim := s.limits.get(c.GetString(ctxKeyID), c.GetFloat64(ctxKeyRate))
	r := lim.Reserve()
	if d := r.Delay(); d > 0 || !r.OK() {
		r.Cancel()
		secs := 1
		if r.OK() {
			secs = max(1, int(math.Ceil(d.Seconds())))
		}
		e := newError(http.StatusTooManyRequests, CodeRateLimited, "too many requests for this API key; slow down")
		e.retryAfter = secs
		s.fail(c, e)
		return
	}
	c.Next()
}

// limiters holds one token bucket per API key ID. Key IDs are few (an
// operator creates them), so the map needs no eviction.
type limiters struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	byKey map[string]*rate.Limiter
}

func newLimiters(limit rate.Limit, burst int) *limiters {
	return &limiters{limit: limit, burst: burst, byKey: make(map[string]*rate.Limiter)}
}

// get is the key's bucket; perSecond, when positive, is the key's own
// rate (stored with the key), its burst twice that.
func (l *limiters) get(keyID string, perSecond float64) *rate.Limiter {
	limit, burst := l.limit, l.burst
	if perSecond > 0 {
		limit, burst = rate.Limit(perSecond), max(1, int(math.Ceil(2*perSecond)))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byKey[keyID]
	if !ok {
		lim = rate.NewLimiter(limit, burst)
		l.byKey[keyID] = lim
	} else if lim.Limit() != limit {
		// The key's rate changed (cached keys are reread every 30 s).
		lim.SetLimit(limit)
		lim.SetBurst(burst)
	}
	return lim
}
