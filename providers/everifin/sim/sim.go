// Package sim simulates Everifin's authorization server, which is a
// Keycloak realm, closely enough that the everifin provider (and the
// demobank one, whose finAPI realm is Keycloak too) can be tested against
// the wire format: paths, form bodies, Keycloak's error bodies and
// messages, session semantics, PKCE and refresh-token rotation.
//
// Keycloak facts reproduced (from its documentation and source, not from
// the Everifin seed, which shows none of them):
//   - every refresh answers with a new refresh token. The old one stays
//     usable unless the realm's "Revoke Refresh Token" switch is on
//     (Options.RevokeRefreshToken), which is off by default;
//   - refresh_expires_in is the SSO session idle timeout; each refresh
//     restarts it;
//   - logout ends the session: its refresh tokens die ("Session not
//     active"), its access tokens live on until they expire;
//   - token errors are JSON {"error","error_description"}: 400
//     invalid_grant "Token is not active" for an expired refresh token,
//     401 invalid_grant "Invalid user credentials" for a wrong password,
//     400 invalid_grant "Account disabled" for a disabled user, 401
//     unauthorized_client "Invalid client or Invalid client credentials"
//     for a wrong client secret.
package sim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client is an OAuth client registered in the realm.
type Client struct {
	ID string
	// Secret is empty for a public client.
	Secret string
	// DirectGrants allows grant_type=password (Keycloak's "Direct access
	// grants").
	DirectGrants bool
}

// Options configure a Server. Zero fields take Keycloak's (and
// Everifin's) defaults.
type Options struct {
	// Realm is the realm name in the paths. Default "everifin".
	Realm string
	// NoAuthPrefix drops the /auth path prefix, as Keycloak 17 and later
	// do. Everifin documents the prefixed form.
	NoAuthPrefix bool
	// Clients default to one confidential client "tokenwarden" with
	// secret "tokenwarden-secret" and direct grants enabled.
	Clients []Client
	// Users maps user names to passwords. Default {"alice": "alice-password"}.
	Users map[string]string
	// AccessTTL is the access token lifetime. Default 300s.
	AccessTTL time.Duration
	// RefreshTTL is the session idle timeout, reported as
	// refresh_expires_in. Default 1800s.
	RefreshTTL time.Duration
	// CodeTTL is how long an authorization code stays valid. Default 60s
	// (Keycloak's "Client login timeout").
	CodeTTL time.Duration
	// RevokeRefreshToken makes each refresh token single-use, as
	// Keycloak's realm switch of that name does.
	RevokeRefreshToken bool
	// RequirePKCE refuses authorization requests without an S256
	// challenge, as a client with "PKCE method: S256" does.
	RequirePKCE bool
	// AutoApprove makes the authorization endpoint log in the default
	// user (the first in name order, or ?login=<user>) and redirect back
	// at once, so that a plain HTTP client can follow the flow.
	AutoApprove bool
	// Scope is what token replies report when the request named none.
	// Default "openid profile email".
	Scope string
	// Extra fields appear in every token reply (finAPI adds
	// mandator_name and the like).
	Extra map[string]any
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Server is the simulated realm. It implements http.Handler and is safe
// for concurrent use.
type Server struct {
	opts    Options
	key     []byte
	prefix  string
	mux     *http.ServeMux
	clients map[string]Client

	mu       sync.Mutex
	users    map[string]string
	locked   map[string]bool
	codes    map[string]*authCode
	sessions map[string]*session
	refresh  map[string]*refreshRec
	access   map[string]*accessRec
	faults   []fault
	stats    map[string]int
}

type session struct {
	id, user, client, scope string
	ended                   bool
}

type authCode struct {
	sess              *session
	redirect          string
	challenge, method string
	expires           time.Time
	used              bool
}

type refreshRec struct {
	sess    *session
	expires time.Time
	spent   bool
}

type accessRec struct {
	sess    *session
	expires time.Time
}

type faultKind int

const (
	faultStatus faultKind = iota
	faultMalformed
	faultRateLimit
)

type fault struct {
	kind       faultKind
	status     int
	retryAfter time.Duration
}

// New returns a realm with opts applied over the defaults.
func New(opts Options) *Server {
	if opts.Realm == "" {
		opts.Realm = "everifin"
	}
	if len(opts.Clients) == 0 {
		opts.Clients = []Client{{ID: "tokenwarden", Secret: "tokenwarden-secret", DirectGrants: true}}
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"alice": "alice-password"}
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 300 * time.Second
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = 1800 * time.Second
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = 60 * time.Second
	}
	if opts.Scope == "" {
		opts.Scope = "openid profile email"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:     opts,
		key:      []byte(randomID(32)),
		clients:  map[string]Client{},
		users:    maps.Clone(opts.Users),
		locked:   map[string]bool{},
		codes:    map[string]*authCode{},
		sessions: map[string]*session{},
		refresh:  map[string]*refreshRec{},
		access:   map[string]*accessRec{},
		stats:    map[string]int{},
	}
	for _, c := range opts.Clients {
		s.clients[c.ID] = c
	}
	if !opts.NoAuthPrefix {
		s.prefix = "/auth"
	}
	base := s.RealmPath() + "/protocol/openid-connect/"
	s.mux = http.NewServeMux()
	s.mux.HandleFunc(base+"auth", s.handleAuth)
	s.mux.HandleFunc("POST "+base+"token", s.handleToken)
	s.mux.HandleFunc("POST "+base+"logout", s.handleLogout)
	s.mux.HandleFunc("/_sim/", s.handleAdmin)
	return s
}

// RealmPath is the path of the realm: /auth/realms/<realm>.
func (s *Server) RealmPath() string { return s.prefix + "/realms/" + url.PathEscape(s.opts.Realm) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// FailNext makes the next n token or logout requests fail with status:
// an HTML page for 5xx (as a proxy in front of Keycloak sends), a JSON
// error otherwise.
func (s *Server) FailNext(n, status int) { s.addFaults(n, fault{kind: faultStatus, status: status}) }

// Malformed makes the next n token or logout requests answer 200 with a
// truncated JSON body.
func (s *Server) Malformed(n int) { s.addFaults(n, fault{kind: faultMalformed}) }

// RateLimit makes the next n token or logout requests answer 429 with
// Retry-After.
func (s *Server) RateLimit(n int, retryAfter time.Duration) {
	s.addFaults(n, fault{kind: faultRateLimit, status: http.StatusTooManyRequests, retryAfter: retryAfter})
}

func (s *Server) addFaults(n int, f fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// ExpireRefreshTokens ends the idle time of every refresh token issued
// so far, as an idle SSO session timing out does.
func (s *Server) ExpireRefreshTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.opts.Now().Add(-time.Second)
	for _, r := range s.refresh {
		r.expires = past
	}
}

// ExpireAccessTokens makes every access token issued so far expired.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.opts.Now().Add(-time.Second)
	for _, a := range s.access {
		a.expires = past
	}
}

// EndSessions logs every session out, as an administrator's "sign out
// all active sessions" does.
func (s *Server) EndSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		ss.ended = true
	}
}

// LockUser disables a user: logins answer "Account disabled" and
// refreshes of the user's sessions "User disabled".
func (s *Server) LockUser(name string) { s.setLocked(name, true) }

// UnlockUser enables a user again.
func (s *Server) UnlockUser(name string) { s.setLocked(name, false) }

func (s *Server) setLocked(name string, v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locked[name] = v
}

// SetPassword sets (or adds) a user's password.
func (s *Server) SetPassword(name, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = password
}

// Valid reports whether accessToken was issued here and has not expired.
// Logout does not end access tokens, as in Keycloak.
func (s *Server) Valid(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.access[accessToken]
	return ok && s.opts.Now().Before(a.expires)
}

// RefreshValid reports whether refreshToken would be accepted now
// (disregarding client and user checks).
func (s *Server) RefreshValid(refreshToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refresh[refreshToken]
	return ok && !r.sess.ended && !(r.spent && s.opts.RevokeRefreshToken) && s.opts.Now().Before(r.expires)
}

// Stats returns hits per endpoint ("auth", "token", "logout") and per
// grant ("token.password", ...).
func (s *Server) Stats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.stats)
}

func (s *Server) hit(name string) {
	s.mu.Lock()
	s.stats[name]++
	s.mu.Unlock()
}

// takeFault applies the next pending fault, if any. It reports whether
// it answered.
func (s *Server) takeFault(w http.ResponseWriter) bool {
	s.mu.Lock()
	if len(s.faults) == 0 {
		s.mu.Unlock()
		return false
	}
	f := s.faults[0]
	s.faults = s.faults[1:]
	s.mu.Unlock()
	switch f.kind {
	case faultMalformed:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"access_token": "eyJhbGciOi`))
	case faultRateLimit:
		w.Header().Set("Retry-After", strconv.Itoa(int(f.retryAfter/time.Second)))
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte("<html><body>Too Many Requests</body></html>"))
	default:
		if f.status >= 500 {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(f.status)
			fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", f.status, http.StatusText(f.status))
			return true
		}
		writeError(w, f.status, "invalid_request", "simulated failure")
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// authenticate finds the calling client from HTTP Basic or the form, as
// Keycloak's client-secret authenticator does.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Client, bool) {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c, ok := s.clients[id]
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_client", "Invalid client or Invalid client credentials")
		return Client{}, false
	}
	if c.Secret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		writeError(w, http.StatusUnauthorized, "unauthorized_client", "Invalid client or Invalid client credentials")
		return Client{}, false
	}
	return c, true
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.hit("token")
	if s.takeFault(w) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "Malformed form")
		return
	}
	c, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	grant := r.PostForm.Get("grant_type")
	s.hit("token." + grant)
	switch grant {
	case "authorization_code":
		s.codeGrant(w, r, c)
	case "refresh_token":
		s.refreshGrant(w, r, c)
	case "password":
		s.passwordGrant(w, r, c)
	case "":
		writeError(w, http.StatusBadRequest, "invalid_request", "Missing form parameter: grant_type")
	default:
		writeError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
	}
}

func (s *Server) codeGrant(w http.ResponseWriter, r *http.Request, c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ac, ok := s.codes[r.PostForm.Get("code")]
	switch {
	case !ok || ac.used || ac.sess.client != c.ID:
		writeError(w, http.StatusBadRequest, "invalid_grant", "Code not valid")
		return
	case !s.opts.Now().Before(ac.expires):
		writeError(w, http.StatusBadRequest, "invalid_grant", "Code is expired")
		return
	}
	ac.used = true
	if ac.redirect != r.PostForm.Get("redirect_uri") {
		writeError(w, http.StatusBadRequest, "invalid_grant", "Incorrect redirect_uri")
		return
	}
	verifier := r.PostForm.Get("code_verifier")
	switch {
	case ac.challenge == "" && verifier != "":
		writeError(w, http.StatusBadRequest, "invalid_grant", "PKCE code verifier specified but challenge not present in authorization")
		return
	case ac.challenge != "" && verifier == "":
		writeError(w, http.StatusBadRequest, "invalid_grant", "PKCE code verifier not specified")
		return
	case ac.challenge != "" && !pkceMatches(ac.method, ac.challenge, verifier):
		writeError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed: Code mismatch")
		return
	}
	s.issueLocked(w, ac.sess)
}

func pkceMatches(method, challenge, verifier string) bool {
	if method == "plain" {
		return subtle.ConstantTimeCompare([]byte(challenge), []byte(verifier)) == 1
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(challenge), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) == 1
}

func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request, c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[r.PostForm.Get("refresh_token")]
	switch {
	case !ok:
		writeError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token")
	case rt.sess.client != c.ID:
		writeError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token. Token client and authorized client don't match")
	case !s.opts.Now().Before(rt.expires):
		writeError(w, http.StatusBadRequest, "invalid_grant", "Token is not active")
	case rt.sess.ended:
		writeError(w, http.StatusBadRequest, "invalid_grant", "Session not active")
	case s.locked[rt.sess.user]:
		writeError(w, http.StatusBadRequest, "invalid_grant", "User disabled")
	case rt.spent && s.opts.RevokeRefreshToken:
		writeError(w, http.StatusBadRequest, "invalid_grant", "Maximum allowed refresh token reuse exceeded")
	default:
		rt.spent = true
		s.issueLocked(w, rt.sess)
	}
}

func (s *Server) passwordGrant(w http.ResponseWriter, r *http.Request, c Client) {
	if !c.DirectGrants {
		writeError(w, http.StatusBadRequest, "unauthorized_client", "Client not allowed for direct access grants")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	user, pw := r.PostForm.Get("username"), r.PostForm.Get("password")
	want, ok := s.users[user]
	switch {
	case ok && s.locked[user]:
		// Keycloak checks the user before the password in direct grants.
		writeError(w, http.StatusBadRequest, "invalid_grant", "Account disabled")
	case !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(want)) != 1:
		writeError(w, http.StatusUnauthorized, "invalid_grant", "Invalid user credentials")
	default:
		scope := r.PostForm.Get("scope")
		if scope == "" {
			scope = s.opts.Scope
		}
		s.issueLocked(w, s.newSessionLocked(user, c.ID, scope))
	}
}

func (s *Server) newSessionLocked(user, client, scope string) *session {
	ss := &session{id: uuid(), user: user, client: client, scope: scope}
	s.sessions[ss.id] = ss
	return ss
}

// issueLocked answers with a new access and refresh token for sess.
func (s *Server) issueLocked(w http.ResponseWriter, sess *session) {
	now := s.opts.Now()
	iss := "http://keycloak" + s.RealmPath()
	at := s.jwt("HS256", map[string]any{
		"exp": now.Add(s.opts.AccessTTL).Unix(), "iat": now.Unix(), "jti": uuid(),
		"iss": iss, "sub": sess.user, "typ": "Bearer", "azp": sess.client,
		"session_state": sess.id, "sid": sess.id, "scope": sess.scope,
		"preferred_username": sess.user,
	})
	rt := s.jwt("HS512", map[string]any{
		"exp": now.Add(s.opts.RefreshTTL).Unix(), "iat": now.Unix(), "jti": uuid(),
		"iss": iss, "aud": iss, "sub": sess.user, "typ": "Refresh", "azp": sess.client,
		"session_state": sess.id, "sid": sess.id, "scope": sess.scope,
	})
	s.access[at] = &accessRec{sess: sess, expires: now.Add(s.opts.AccessTTL)}
	s.refresh[rt] = &refreshRec{sess: sess, expires: now.Add(s.opts.RefreshTTL)}
	reply := map[string]any{
		"access_token":       at,
		"expires_in":         int(s.opts.AccessTTL / time.Second),
		"refresh_expires_in": int(s.opts.RefreshTTL / time.Second),
		"refresh_token":      rt,
		"token_type":         "Bearer",
		"not-before-policy":  0,
		"session_state":      sess.id,
		"scope":              sess.scope,
	}
	if slices.Contains(strings.Fields(sess.scope), "openid") {
		reply["id_token"] = s.jwt("HS256", map[string]any{
			"exp": now.Add(s.opts.AccessTTL).Unix(), "iat": now.Unix(), "iss": iss,
			"aud": sess.client, "sub": sess.user, "typ": "ID", "sid": sess.id,
		})
	}
	for k, v := range s.opts.Extra {
		reply[k] = v
	}
	writeJSON(w, http.StatusOK, reply)
}

// jwt signs claims with the realm key. Keycloak signs access tokens with
// RS256 and refresh tokens with HS512; an HMAC is enough for a simulator,
// and the alg names keep the header shape.
func (s *Server) jwt(alg string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT", "kid": "sim"})
	p, _ := json.Marshal(claims)
	msg := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(msg))
	return msg + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// handleLogout is Keycloak's back-channel logout: the refresh token names
// the session to end. An expired refresh token still logs out, and a
// session already gone answers 204 too.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	s.hit("logout")
	if s.takeFault(w) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "Malformed form")
		return
	}
	c, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	tok := r.PostForm.Get("refresh_token")
	if tok == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "No refresh token")
		return
	}
	s.mu.Lock()
	rt, ok := s.refresh[tok]
	if ok && rt.sess.client == c.ID {
		rt.sess.ended = true
	}
	s.mu.Unlock()
	if !ok || rt.sess.client != c.ID {
		writeError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Sign in to {{.Realm}}</title></head><body>
<h1>Sign in to {{.Realm}}</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<label>Username <input name="username"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign In</button>
</form></body></html>`))

// handleAuth is the authorization endpoint. With AutoApprove or a login
// query parameter it signs the user in without a page; otherwise GET shows
// a login form and POST checks it.
func (s *Server) handleAuth(w http.ResponseWriter, r *http.Request) {
	s.hit("auth")
	q := r.URL.Query()
	c, ok := s.clients[q.Get("client_id")]
	if !ok {
		http.Error(w, "Client not found.", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("redirect_uri") == "" || !redirect.IsAbs() {
		http.Error(w, "Invalid parameter: redirect_uri", http.StatusBadRequest)
		return
	}
	back := func(v url.Values) {
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		u := *redirect
		rq := u.Query()
		for k, vv := range v {
			rq[k] = vv
		}
		u.RawQuery = rq.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	if q.Get("response_type") != "code" {
		back(url.Values{"error": {"unsupported_response_type"}, "error_description": {"Client is not allowed to initiate browser login with given response_type. Standard flow is disabled for the client."}})
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "" && s.opts.RequirePKCE:
		back(url.Values{"error": {"invalid_request"}, "error_description": {"Missing parameter: code_challenge_method"}})
		return
	case challenge != "" && method == "":
		method = "plain"
	case challenge != "" && method != "S256" && method != "plain":
		back(url.Values{"error": {"invalid_request"}, "error_description": {"Invalid parameter: code challenge method is not configured one"}})
		return
	}

	user := q.Get("login")
	if r.Method == http.MethodPost {
		_ = r.ParseForm()
		user = r.PostForm.Get("username")
		s.mu.Lock()
		want, known := s.users[user]
		good := known && subtle.ConstantTimeCompare([]byte(r.PostForm.Get("password")), []byte(want)) == 1
		s.mu.Unlock()
		if !good {
			s.renderLogin(w, r, "Invalid username or password.")
			return
		}
	} else if user == "" && s.opts.AutoApprove {
		s.mu.Lock()
		names := slices.Sorted(maps.Keys(s.users))
		s.mu.Unlock()
		if len(names) > 0 {
			user = names[0]
		}
	}
	if user == "" {
		s.renderLogin(w, r, "")
		return
	}
	s.mu.Lock()
	_, known := s.users[user]
	locked := s.locked[user]
	s.mu.Unlock()
	switch {
	case !known:
		s.renderLogin(w, r, "Invalid username or password.")
		return
	case locked:
		s.renderLogin(w, r, "Account is disabled, contact your administrator.")
		return
	}
	scope := q.Get("scope")
	if scope == "" {
		scope = s.opts.Scope
	}
	code := randomID(24) + "." + uuid()
	s.mu.Lock()
	sess := s.newSessionLocked(user, c.ID, scope)
	s.codes[code] = &authCode{sess: sess, redirect: q.Get("redirect_uri"), challenge: challenge, method: method,
		expires: s.opts.Now().Add(s.opts.CodeTTL)}
	s.mu.Unlock()
	back(url.Values{"code": {code}, "session_state": {sess.id}})
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = loginPage.Execute(w, map[string]string{"Realm": s.opts.Realm, "Error": msg, "Action": r.URL.RequestURI()})
}

// handleAdmin is a small HTTP form of the fault methods, for demos run
// with `tokenwarden dev`: POST /_sim/fail?n=1&status=503,
// /_sim/ratelimit?n=1&retry_after=7, /_sim/malformed?n=1,
// /_sim/expire-refresh, /_sim/expire-access, /_sim/end-sessions,
// /_sim/lock?user=, /_sim/unlock?user=; GET /_sim/stats.
func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request) {
	serveAdmin(w, r, adminOps{
		fail: s.FailNext, malformed: s.Malformed, rateLimit: s.RateLimit,
		expireRefresh: s.ExpireRefreshTokens, expireAccess: s.ExpireAccessTokens,
		endSessions: s.EndSessions, lock: s.LockUser, unlock: s.UnlockUser, stats: s.Stats,
	})
}

type adminOps struct {
	fail                                     func(n, status int)
	malformed                                func(n int)
	rateLimit                                func(n int, d time.Duration)
	expireRefresh, expireAccess, endSessions func()
	lock, unlock                             func(string)
	stats                                    func() map[string]int
}

func serveAdmin(w http.ResponseWriter, r *http.Request, ops adminOps) {
	q := r.URL.Query()
	n, _ := strconv.Atoi(q.Get("n"))
	if n <= 0 {
		n = 1
	}
	op := strings.TrimPrefix(r.URL.Path, "/_sim/")
	if op == "stats" {
		writeJSON(w, http.StatusOK, ops.stats())
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
			http.Error(w, "status must be 400..599", http.StatusBadRequest)
			return
		}
		ops.fail(n, status)
	case "malformed":
		ops.malformed(n)
	case "ratelimit":
		secs, _ := strconv.Atoi(q.Get("retry_after"))
		ops.rateLimit(n, time.Duration(max(secs, 0))*time.Second)
	case "expire-refresh":
		ops.expireRefresh()
	case "expire-access":
		ops.expireAccess()
	case "end-sessions":
		ops.endSessions()
	case "lock", "unlock":
		user := q.Get("user")
		if user == "" {
			http.Error(w, "user is required", http.StatusBadRequest)
			return
		}
		if op == "lock" {
			ops.lock(user)
		} else {
			ops.unlock(user)
		}
	default:
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
