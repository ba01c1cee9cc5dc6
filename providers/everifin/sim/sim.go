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
//   - refresh_expires_in is the SSO session idle timeout, cut to what is
//     left of "SSO Session Max" (Options.SessionMax, 10 hours by
//     default); each refresh restarts the idle part, none extends the
//     max: past it the session is gone ("Session not active") however
//     busy it was;
//   - the offline_access scope (where the realm grants it,
//     Options.OfflineAccess) makes an offline session: refresh_expires_in
//     0 (Keycloak's "Offline Session Max Limited" is off by default), no
//     SSO Session Max, an idle timeout of Options.OfflineIdle (30 days);
//     without the grant Keycloak refuses the code exchange ("Offline
//     tokens not allowed for the user or client");
//   - brute-force detection (Options/TemporarilyLockUser): a temporarily
//     locked user gets 400 invalid_grant "Account temporarily disabled"
//     on logins and refreshes until the lock's wait has passed;
//   - logout ends the session: its refresh tokens die ("Session not
//     active"), its access tokens live on until they expire;
//   - token errors are JSON {"error","error_description"}: 400
//     invalid_grant "Token is not active" for an expired refresh token,
//     401 invalid_grant "Invalid user credentials" for a wrong password,
//     400 invalid_grant "Account disabled" for a disabled user, 401
//     unauthorized_client "Invalid client or Invalid client credentials"
//     for a wrong client secret;
//   - the userinfo endpoint (OpenID Connect's, the API every Keycloak
//     realm serves; the seed's "API" that answers "401 Unauthorized" once
//     the access token has expired) takes the access token as a Bearer
//     header (GET or POST) and answers {"sub","preferred_username",
//     "email_verified"}; an unknown or expired token, or one whose
//     session has ended (Keycloak checks the session there), gets 401
//     {"error":"invalid_token",...} with WWW-Authenticate. Faults do not
//     apply to it; it counts as "userinfo".
package sim

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
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

	"github.com/tokenwarden/tokenwarden/providers/simulator"
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
	// SessionMax is Keycloak's "SSO Session Max": no session outlives
	// it, however often it is refreshed. Default 10 hours.
	SessionMax time.Duration
	// OfflineAccess lets users request the offline_access scope.
	OfflineAccess bool
	// OfflineIdle is the offline session idle timeout. Default 30 days.
	OfflineIdle time.Duration
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
// for concurrent use. FailNext, RateLimit and Malformed
// (simulator.Faults) apply to the next token or logout requests (see
// writeFault); Stats (simulator.Hits) counts hits per endpoint ("auth",
// "token", "logout") and per grant ("token.password", ...).
type Server struct {
	simulator.Faults
	simulator.Hits

	opts    Options
	key     []byte
	prefix  string
	mux     *http.ServeMux
	clients map[string]Client

	mu       sync.Mutex
	users    map[string]string
	locked   map[string]bool
	tempLock map[string]time.Time
	codes    map[string]*authCode
	sessions map[string]*session
	refresh  map[string]*refreshRec
	access   map[string]*accessRec
}

type session struct {
	id, user, client, scope string
	ended                   bool
	started                 time.Time
	offline                 bool
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
	if opts.SessionMax <= 0 {
		opts.SessionMax = 10 * time.Hour
	}
	if opts.OfflineIdle <= 0 {
		opts.OfflineIdle = 30 * 24 * time.Hour
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
		tempLock: map[string]time.Time{},
		codes:    map[string]*authCode{},
		sessions: map[string]*session{},
		refresh:  map[string]*refreshRec{},
		access:   map[string]*accessRec{},
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
	s.mux.HandleFunc(base+"userinfo", s.handleUserinfo)
	// The admin surface (tokenwarden dev) at /_sim/: fail, ratelimit
	// (retry_after in seconds), malformed, expire-refresh, expire-access,
	// end-sessions, lock?user=, unlock?user=, temp-lock?user=, stats.
	lock := func(f func(string)) func(url.Values) error {
		return func(q url.Values) error {
			user := q.Get("user")
			if user == "" {
				return errors.New("user is required")
			}
			f(user)
			return nil
		}
	}
	s.mux.Handle("/_sim/", simulator.Admin{Faults: &s.Faults, Stats: s.Stats, JSON: simulator.WriteNoStoreJSON,
		Actions: map[string]func(url.Values) error{
			"expire-refresh": simulator.Do(s.ExpireRefreshTokens),
			"expire-access":  simulator.Do(s.ExpireAccessTokens),
			"end-sessions":   simulator.Do(s.EndSessions),
			"lock":           lock(s.LockUser),
			"unlock":         lock(s.UnlockUser),
			// temp-lock?user=: a 15-minute brute-force lockout.
			"temp-lock": lock(func(user string) { s.TemporarilyLockUser(user, 15*time.Minute) }),
		}})
	return s
}

// RealmPath is the path of the realm: /auth/realms/<realm>.
func (s *Server) RealmPath() string { return s.prefix + "/realms/" + url.PathEscape(s.opts.Realm) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

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

// TemporarilyLockUser locks a user out for d, as Keycloak's brute-force
// detection does after too many failed logins: logins and refreshes
// answer "Account temporarily disabled" until d has passed.
func (s *Server) TemporarilyLockUser(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tempLock[name] = s.opts.Now().Add(d)
}

func (s *Server) tempLockedLocked(user string) bool {
	until, ok := s.tempLock[user]
	return ok && s.opts.Now().Before(until)
}

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
	return ok && !r.sess.ended && !(r.spent && s.opts.RevokeRefreshToken) && s.opts.Now().Before(r.expires) &&
		!s.pastMaxLocked(r.sess)
}

// writeFault answers a fault as Keycloak, or the proxy in front of it,
// does: an HTML page for RateLimit and 5xx, a truncated JSON body for
// Malformed, a JSON error otherwise (FailNext(n, 429) included).
func writeFault(w http.ResponseWriter, f simulator.Fault) {
	switch {
	case f.Malformed:
		simulator.WriteMalformed(w, `{"access_token": "eyJhbGciOi`)
	case f.RateLimit:
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte("<html><body>Too Many Requests</body></html>"))
	case f.Status >= 500:
		simulator.WriteHTMLError(w, f.Status)
	default:
		writeError(w, f.Status, "invalid_request", "simulated failure")
	}
}

// Keycloak's JSON replies carry Cache-Control: no-store.
var (
	writeJSON  = simulator.WriteNoStoreJSON
	writeError = simulator.OAuthError
	randomID   = simulator.RandomID
)

// clientCall starts a token or logout request: it counts it as name,
// answers a queued fault, reads the form and authenticates the client.
// It reports whether the handler goes on.
func (s *Server) clientCall(w http.ResponseWriter, r *http.Request, name string) (Client, bool) {
	s.Hit(name)
	if s.Take(w, writeFault) {
		return Client{}, false
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "Malformed form")
		return Client{}, false
	}
	return s.authenticate(w, r)
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
	c, ok := s.clientCall(w, r, "token")
	if !ok {
		return
	}
	grant := r.PostForm.Get("grant_type")
	s.Hit("token." + grant)
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
	if ac.sess.offline && !s.opts.OfflineAccess {
		writeError(w, http.StatusBadRequest, "not_allowed", "Offline tokens not allowed for the user or client")
		return
	}
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
	case ac.challenge != "" && !simulator.PKCEMatches(ac.method, ac.challenge, verifier):
		writeError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed: Code mismatch")
		return
	}
	s.issueLocked(w, ac.sess)
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
	case rt.sess.ended || s.pastMaxLocked(rt.sess):
		writeError(w, http.StatusBadRequest, "invalid_grant", "Session not active")
	case s.tempLockedLocked(rt.sess.user):
		writeError(w, http.StatusBadRequest, "invalid_grant", "Account temporarily disabled")
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
	case ok && s.tempLockedLocked(user):
		writeError(w, http.StatusBadRequest, "invalid_grant", "Account temporarily disabled")
	case !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(want)) != 1:
		writeError(w, http.StatusUnauthorized, "invalid_grant", "Invalid user credentials")
	default:
		scope := r.PostForm.Get("scope")
		if scope == "" {
			scope = s.opts.Scope
		}
		sess := s.newSessionLocked(user, c.ID, scope)
		if sess.offline && !s.opts.OfflineAccess {
			writeError(w, http.StatusBadRequest, "not_allowed", "Offline tokens not allowed for the user or client")
			return
		}
		s.issueLocked(w, sess)
	}
}

// pastMaxLocked reports whether sess outlived SSO Session Max; offline
// sessions have no such limit.
func (s *Server) pastMaxLocked(sess *session) bool {
	return !sess.offline && !s.opts.Now().Before(sess.started.Add(s.opts.SessionMax))
}

func (s *Server) newSessionLocked(user, client, scope string) *session {
	ss := &session{id: uuid(), user: user, client: client, scope: scope, started: s.opts.Now(),
		offline: slices.Contains(strings.Fields(scope), "offline_access")}
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
	// An online refresh token dies at the idle timeout or at SSO Session
	// Max, whichever comes first; an offline one at the offline idle
	// timeout, and Keycloak reports 0 for it.
	rtExpires, reported := now.Add(s.opts.RefreshTTL), s.opts.RefreshTTL
	typ := "Refresh"
	if sess.offline {
		rtExpires, reported, typ = now.Add(s.opts.OfflineIdle), 0, "Offline"
	} else if max := sess.started.Add(s.opts.SessionMax); max.Before(rtExpires) {
		rtExpires, reported = max, max.Sub(now)
	}
	rt := s.jwt("HS512", map[string]any{
		"exp": rtExpires.Unix(), "iat": now.Unix(), "jti": uuid(),
		"iss": iss, "aud": iss, "sub": sess.user, "typ": typ, "azp": sess.client,
		"session_state": sess.id, "sid": sess.id, "scope": sess.scope,
	})
	s.access[at] = &accessRec{sess: sess, expires: now.Add(s.opts.AccessTTL)}
	s.refresh[rt] = &refreshRec{sess: sess, expires: rtExpires}
	reply := map[string]any{
		"access_token":       at,
		"expires_in":         int(s.opts.AccessTTL / time.Second),
		"refresh_expires_in": int(reported / time.Second),
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
	return simulator.SignJWT(s.key, map[string]string{"alg": alg, "typ": "JWT", "kid": "sim"}, claims)
}

// handleLogout is Keycloak's back-channel logout: the refresh token names
// the session to end. An expired refresh token still logs out, and a
// session already gone answers 204 too.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	c, ok := s.clientCall(w, r, "logout")
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

// handleUserinfo is OpenID Connect's userinfo endpoint.
func (s *Server) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	s.Hit("userinfo")
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "Method not allowed")
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	a := s.access[tok]
	live := ok && a != nil && s.opts.Now().Before(a.expires) && !a.sess.ended
	var user string
	if live {
		user = a.sess.user
	}
	s.mu.Unlock()
	if !live {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="invalid_token", error_description="Token verification failed"`, s.opts.Realm))
		writeError(w, http.StatusUnauthorized, "invalid_token", "Token verification failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sub": user, "preferred_username": user, "email_verified": false})
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
	s.Hit("auth")
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
	back := func(v url.Values) { simulator.RedirectBack(w, r, *redirect, q.Get("state"), v) }
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
	tempLocked := s.tempLockedLocked(user)
	s.mu.Unlock()
	switch {
	case !known:
		s.renderLogin(w, r, "Invalid username or password.")
		return
	case tempLocked:
		// Keycloak does not tell a locked-out user apart at the login page.
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

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
