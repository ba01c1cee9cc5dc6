// Package sim is a stand-in for Norman's institution API: the five token
// calls of Norman's authentication guide, JSON in and out, the Institution
// header checked on every call, SimpleJWT-style HS256 tokens with exp
// claims, and switches for the failures a provider must survive.
//
// Assumed where Norman's guide is silent (Norman is a Django REST
// framework + SimpleJWT service):
//   - users/create and token/retrieve answer {"accessToken","refreshToken"}
//     (the guide's names); token/refresh answers SimpleJWT's {"access"} or,
//     with refresh rotation (ROTATE_REFRESH_TOKENS, on by default here),
//     {"access","refresh"}, blacklisting the old refresh token.
//   - a token that is bad, expired or blacklisted gets 401
//     {"detail","code":"token_not_valid"}; a wrong Institution header 403
//     {"detail"}, a missing one 401 {"detail"}; a taken username 400
//     {"username":["A user with that username already exists."]}.
//   - token/expire blacklists the refresh token and ends the session it
//     belongs to, so its access tokens stop working too ("prevent further
//     API access").
package sim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paths served, as in Norman's guide.
const (
	PathCreate   = "/api/v1/institution/users/create/"
	PathRefresh  = "/api/v1/institution/users/token/refresh/"
	PathVerify   = "/api/v1/institution/users/token/verify/"
	PathExpire   = "/api/v1/institution/users/token/expire/"
	PathRetrieve = "/api/v1/institution/users/token/retrieve/"
)

// Endpoint names used by Stats.
var endpointNames = map[string]string{
	PathCreate:   "create",
	PathRefresh:  "refresh",
	PathVerify:   "verify",
	PathExpire:   "expire",
	PathRetrieve: "retrieve",
}

// Options configure a Server. Zero values take the defaults.
type Options struct {
	// InstitutionID and SecretKey make the expected Institution header.
	// Defaults "institution" and "secret-key".
	InstitutionID string
	SecretKey     string
	// AccessTTL is the access token lifetime (default 30m, Norman's
	// "usually 30 minutes"); RefreshTTL the refresh token's (default 24h,
	// SimpleJWT's default). JWT exp has one-second resolution.
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	// NoRotation makes token/refresh answer {"access"} only, as SimpleJWT
	// does with ROTATE_REFRESH_TOKENS off.
	NoRotation bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type user struct {
	username, email, externalID string
	id                          int
}

// issued is the server's record of a token it signed.
type issued struct {
	kind    string // "access" or "refresh"
	session string
	dead    bool // blacklisted, or expired by the admin API
}

type fault struct {
	status     int
	retryAfter time.Duration
	malformed  bool
}

// Server is the simulated API. It is safe for concurrent use.
type Server struct {
	opts Options
	key  []byte
	mux  *http.ServeMux

	mu       sync.Mutex
	users    map[string]*user
	tokens   map[string]*issued // by jti
	sessions map[string]bool    // ended sessions, by id
	faults   []fault
	stats    map[string]int
	nextID   int
}

// New returns a server with opts.
func New(opts Options) *Server {
	if opts.InstitutionID == "" {
		opts.InstitutionID = "institution"
	}
	if opts.SecretKey == "" {
		opts.SecretKey = "secret-key"
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 30 * time.Minute
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:     opts,
		key:      randomBytes(32),
		users:    map[string]*user{},
		tokens:   map[string]*issued{},
		sessions: map[string]bool{},
		stats:    map[string]int{},
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc(PathCreate, s.api(s.create))
	s.mux.HandleFunc(PathRefresh, s.api(s.refresh))
	s.mux.HandleFunc(PathVerify, s.api(s.verify))
	s.mux.HandleFunc(PathExpire, s.api(s.expire))
	s.mux.HandleFunc(PathRetrieve, s.api(s.retrieve))
	s.mux.HandleFunc("/_sim/", s.admin)
	return s
}

// Institution is the header value the server expects.
func (s *Server) Institution() string { return s.opts.InstitutionID + ":" + s.opts.SecretKey }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// FailNext makes the next n API calls answer status (a 5xx gets Django's
// HTML error page).
func (s *Server) FailNext(n, status int) { s.addFaults(n, fault{status: status}) }

// RateLimit makes the next n API calls answer 429 with Retry-After.
func (s *Server) RateLimit(n int, retryAfter time.Duration) {
	s.addFaults(n, fault{status: http.StatusTooManyRequests, retryAfter: retryAfter})
}

// Malformed makes the next n API calls answer 200 with broken JSON.
func (s *Server) Malformed(n int) { s.addFaults(n, fault{status: http.StatusOK, malformed: true}) }

func (s *Server) addFaults(n int, f fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// ExpireRefreshTokens makes every refresh token issued so far invalid, as
// if its lifetime had run out.
func (s *Server) ExpireRefreshTokens() { s.expireKind("refresh") }

// ExpireAccessTokens makes every access token issued so far invalid.
func (s *Server) ExpireAccessTokens() { s.expireKind("access") }

func (s *Server) expireKind(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.kind == kind {
			t.dead = true
		}
	}
}

// Stats returns the number of requests per endpoint: create, refresh,
// verify, expire, retrieve (faults included).
func (s *Server) Stats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.stats)
}

// Valid reports whether accessToken is an access token this server issued
// that still grants access.
func (s *Server) Valid(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.check(accessToken, "access")
	return ok
}

// HasUser reports whether username was created.
func (s *Server) HasUser(username string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[username] != nil
}

// api wraps an endpoint: counting, faults, method, Institution header,
// JSON body.
func (s *Server) api(h func(w http.ResponseWriter, body map[string]any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stats[endpointNames[r.URL.Path]]++
		if len(s.faults) > 0 {
			f := s.faults[0]
			s.faults = s.faults[1:]
			s.writeFault(w, f)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": fmt.Sprintf("Method %q not allowed.", r.Method)})
			return
		}
		switch inst := r.Header.Get("Institution"); {
		case inst == "":
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Authentication credentials were not provided."})
			return
		case !hmac.Equal([]byte(inst), []byte(s.Institution())):
			writeJSON(w, http.StatusForbidden, map[string]string{"detail": "Invalid institution credentials."})
			return
		}
		raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var body map[string]any
		if err == nil {
			err = json.Unmarshal(raw, &body)
		}
		if err != nil || body == nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"detail": "JSON parse error."})
			return
		}
		h(w, body)
	}
}

func (s *Server) writeFault(w http.ResponseWriter, f fault) {
	switch {
	case f.malformed:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"access": "`)
	case f.status == http.StatusTooManyRequests:
		secs := int(f.retryAfter.Round(time.Second) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, f.status, map[string]string{
			"detail": fmt.Sprintf("Request was throttled. Expected available in %d seconds.", secs),
			"code":   "throttled",
		})
	case f.status >= 500:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(f.status)
		_, _ = fmt.Fprintf(w, "<h1>Server Error (%d)</h1>", f.status)
	default:
		writeJSON(w, f.status, map[string]string{"detail": http.StatusText(f.status)})
	}
}

// required checks that body has non-empty strings for names, answering
// DRF's per-field 400 otherwise.
func required(w http.ResponseWriter, body map[string]any, names ...string) ([]string, bool) {
	out := make([]string, len(names))
	errs := map[string][]string{}
	for i, n := range names {
		v, _ := body[n].(string)
		if v == "" {
			errs[n] = []string{"This field is required."}
		}
		out[i] = v
	}
	if len(errs) > 0 {
		writeJSON(w, http.StatusBadRequest, errs)
		return nil, false
	}
	return out, true
}

func (s *Server) create(w http.ResponseWriter, body map[string]any) {
	f, ok := required(w, body, "username", "email", "external_id")
	if !ok {
		return
	}
	if s.users[f[0]] != nil {
		writeJSON(w, http.StatusBadRequest, map[string][]string{"username": {"A user with that username already exists."}})
		return
	}
	s.nextID++
	u := &user{username: f[0], email: f[1], externalID: f[2], id: s.nextID}
	s.users[u.username] = u
	access, refresh := s.pair(u, newID())
	writeJSON(w, http.StatusCreated, map[string]any{
		"accessToken": access, "refreshToken": refresh,
		"user": map[string]any{"id": u.id, "username": u.username, "email": u.email, "external_id": u.externalID},
	})
}

func (s *Server) retrieve(w http.ResponseWriter, body map[string]any) {
	f, ok := required(w, body, "username", "email", "external_id")
	if !ok {
		return
	}
	u := s.users[f[0]]
	if u == nil || u.email != f[1] || u.externalID != f[2] {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "User not found."})
		return
	}
	access, refresh := s.pair(u, newID())
	writeJSON(w, http.StatusOK, map[string]string{"accessToken": access, "refreshToken": refresh})
}

func (s *Server) refresh(w http.ResponseWriter, body map[string]any) {
	f, ok := required(w, body, "refresh")
	if !ok {
		return
	}
	c, ok := s.check(f[0], "refresh")
	if !ok {
		notValid(w)
		return
	}
	u := s.users[c.User]
	if u == nil {
		notValid(w)
		return
	}
	if s.opts.NoRotation {
		writeJSON(w, http.StatusOK, map[string]string{"access": s.sign(u, "access", c.Session, s.opts.AccessTTL)})
		return
	}
	// ROTATE_REFRESH_TOKENS with BLACKLIST_AFTER_ROTATION.
	s.tokens[c.JTI].dead = true
	access, refresh := s.pair(u, c.Session)
	writeJSON(w, http.StatusOK, map[string]string{"access": access, "refresh": refresh})
}

func (s *Server) verify(w http.ResponseWriter, body map[string]any) {
	f, ok := required(w, body, "token")
	if !ok {
		return
	}
	if _, ok := s.check(f[0], ""); !ok {
		notValid(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{})
}

func (s *Server) expire(w http.ResponseWriter, body map[string]any) {
	f, ok := required(w, body, "refresh")
	if !ok {
		return
	}
	c, ok := s.check(f[0], "refresh")
	if !ok {
		notValid(w)
		return
	}
	s.tokens[c.JTI].dead = true
	s.sessions[c.Session] = true
	writeJSON(w, http.StatusOK, map[string]string{})
}

func notValid(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, map[string]any{
		"detail": "Token is invalid or expired",
		"code":   "token_not_valid",
	})
}

// claims of the tokens this server signs.
type claims struct {
	TokenType string `json:"token_type"`
	Exp       int64  `json:"exp"`
	Iat       int64  `json:"iat"`
	JTI       string `json:"jti"`
	User      string `json:"username"`
	UserID    int    `json:"user_id"`
	Session   string `json:"sid"`
}

func (s *Server) pair(u *user, session string) (access, refresh string) {
	return s.sign(u, "access", session, s.opts.AccessTTL), s.sign(u, "refresh", session, s.opts.RefreshTTL)
}

func (s *Server) sign(u *user, kind, session string, ttl time.Duration) string {
	now := s.opts.Now()
	c := claims{TokenType: kind, Iat: now.Unix(), Exp: now.Add(ttl).Unix(), JTI: newID(),
		User: u.username, UserID: u.id, Session: session}
	s.tokens[c.JTI] = &issued{kind: kind, session: session}
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(c)
	msg := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

// check verifies token's signature, expiry, kind ("" for any) and that it
// was neither blacklisted nor its session ended. The caller holds mu.
func (s *Server) check(token, kind string) (claims, bool) {
	var c claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, false
	}
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, false
	}
	if kind != "" && c.TokenType != kind {
		return c, false
	}
	if s.opts.Now().Unix() >= c.Exp {
		return c, false
	}
	t := s.tokens[c.JTI]
	if t == nil || t.dead || s.sessions[c.Session] {
		return c, false
	}
	return c, true
}

// admin is a small HTTP control surface for demos (tokenwarden dev):
//
//	POST /_sim/fail?n=1&status=503
//	POST /_sim/ratelimit?n=1&retry_after=5s
//	POST /_sim/malformed?n=1
//	POST /_sim/expire-refresh
//	POST /_sim/expire-access
//	GET  /_sim/stats
func (s *Server) admin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := 1
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 || n > 1000 {
			http.Error(w, "n must be an integer in [0,1000]", http.StatusBadRequest)
			return
		}
	}
	if r.Method != http.MethodPost && r.URL.Path != "/_sim/stats" {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/_sim/fail":
		status, err := strconv.Atoi(q.Get("status"))
		if err != nil || status < 400 || status > 599 {
			http.Error(w, "status must be a 4xx or 5xx code", http.StatusBadRequest)
			return
		}
		s.FailNext(n, status)
	case "/_sim/ratelimit":
		d, err := time.ParseDuration(q.Get("retry_after"))
		if err != nil || d < 0 {
			http.Error(w, "retry_after must be a duration like 5s", http.StatusBadRequest)
			return
		}
		s.RateLimit(n, d)
	case "/_sim/malformed":
		s.Malformed(n)
	case "/_sim/expire-refresh":
		s.ExpireRefreshTokens()
	case "/_sim/expire-access":
		s.ExpireAccessTokens()
	case "/_sim/stats":
		writeJSON(w, http.StatusOK, s.Stats())
		return
	default:
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func newID() string { return hex.EncodeToString(randomBytes(16)) }
