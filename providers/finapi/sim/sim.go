// Package sim is a stand-in for finAPI Access v2's authorization API: the
// token endpoint (client_credentials, password, refresh_token; client
// credentials in the form body), user creation with a client token, RFC
// 7009 revocation with a client token, and switches for the failures a
// provider must survive.
//
// Assumed where finAPI's guide is silent:
//   - token endpoint errors are RFC 6749 {error, error_description} (400
//     invalid_grant for bad user credentials and dead refresh tokens, whose
//     description echoes the token as Spring's OAuth2 server does; 401
//     invalid_client for bad client credentials); a locked user gets 423
//     with finAPI's general error body, code USER_LOCKED.
//   - every other error is {"errors":[{message,code,type}],"date",
//     "requestId","endpoint","authContext","bank"}: 401
//     UNAUTHORIZED_ACCESS without a valid client token, 403 FORBIDDEN for a
//     user token where a client token is needed, 422 ENTITY_EXISTS for a
//     taken user id, 400 BAD_REQUEST for an invalid body.
//   - refresh reuses the refresh token (Spring's reuseRefreshTokens
//     default) unless Options.Refresh says otherwise; revoking a refresh
//     token revokes the access tokens issued with it; revoking a client
//     token revokes it, for every holder (RFC 7009).
//   - with Options.ReuseTokens, a client_credentials or password request
//     while the caller's token is valid answers that same token (and its
//     refresh token) with what is left of its lifetime as expires_in, as
//     Spring's DefaultTokenServices does (the issue's account of finAPI);
//     a refresh_token grant always issues a new access token.
//   - with Options.NoRefreshToken, password logins answer no
//     refresh_token, as the seed's example reply shows.
//   - with Options.VerifyUsers, users created through POST /users are not
//     verified until VerifyUser, and their logins answer 403 with code
//     USER_NOT_VERIFIED.
//   - POST /users checks formats (assumed from finAPI's API reference):
//     id 1 to 36 characters of letters, digits and ._@+-; password 6 to
//     128 printable ASCII characters without spaces; 422 BAD_REQUEST
//     otherwise, with a message that names the field, never its value.
//   - Options.Paths serves other paths (the seed's /oauth/token and
//     /users at the root, for instance).
//   - GET {users} is finAPI's "get authorized user", the user endpoint of
//     a service call "in the context of a user": a live user token
//     answers the user ({id, password "XXXXX", email, phone,
//     isAutoUpdateEnabled}), a client token 403 FORBIDDEN, anything else
//     401 UNAUTHORIZED_ACCESS. Faults do not apply to it; it counts as
//     "users:get".
package sim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokenwarden/tokenwarden/providers/simulator"
)

// Paths served by default: finAPI Access v2's.
const (
	PathToken  = "/api/v2/oauth/token"
	PathUsers  = "/api/v2/users"
	PathRevoke = "/api/v2/oauth/revoke"
)

// SeedPaths are the paths as the seed guide writes them, at the root.
var SeedPaths = Paths{Token: "/oauth/token", Users: "/users", Revoke: "/oauth/revoke"}

// Paths are the paths a Server serves; empty ones take the defaults.
type Paths struct {
	Token, Users, Revoke string
}

// RefreshMode is what a refresh_token grant answers.
type RefreshMode int

const (
	// RefreshReuse answers with the same refresh token (default).
	RefreshReuse RefreshMode = iota
	// RefreshRotate issues a new refresh token and retires the old one.
	RefreshRotate
	// RefreshOmit leaves refresh_token out of the reply.
	RefreshOmit
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	// ClientID and ClientSecret are the one client the server knows.
	// Defaults "tokenwarden" and "client-secret".
	ClientID     string
	ClientSecret string
	// ClientTTL is the client token lifetime (default 3599s, as in
	// finAPI's guide), AccessTTL the user token's (default 3600s),
	// RefreshTTL the refresh token's (default 0: it does not expire).
	ClientTTL  time.Duration
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	Refresh    RefreshMode
	// ReuseTokens answers a token request with the caller's live token.
	ReuseTokens bool
	// NoRefreshToken leaves refresh_token out of password logins.
	NoRefreshToken bool
	// VerifyUsers makes new users unverified (403 at login) until
	// VerifyUser.
	VerifyUsers bool
	// Paths replaces the default paths.
	Paths Paths
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type user struct {
	id, password, email, phone     string
	autoUpdate, locked, unverified bool
}

type token struct {
	kind    string // client, access, refresh
	user    string
	expiry  time.Time // zero: never
	revoked bool
	// refresh is the refresh token an access token came with.
	refresh string
}

// Server is the simulated API. It is safe for concurrent use. FailNext,
// RateLimit and Malformed (simulator.Faults) apply to the next calls,
// answered with finAPI's error body; Stats (simulator.Hits) counts
// requests: "token:<grant_type>", "users", "revoke" (faults included,
// counted as "token" when the grant is unknown).
type Server struct {
	simulator.Faults
	simulator.Hits

	opts  Options
	admin http.Handler

	mu     sync.Mutex
	users  map[string]*user
	tokens map[string]*token
	// current is the live token per caller ("client", "user:<id>") for
	// ReuseTokens.
	current map[string]string
}

// New returns a server with opts.
func New(opts Options) *Server {
	if opts.ClientID == "" {
		opts.ClientID = "tokenwarden"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "client-secret"
	}
	if opts.ClientTTL <= 0 {
		opts.ClientTTL = 3599 * time.Second
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 3600 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Paths.Token == "" {
		opts.Paths.Token = PathToken
	}
	if opts.Paths.Users == "" {
		opts.Paths.Users = PathUsers
	}
	if opts.Paths.Revoke == "" {
		opts.Paths.Revoke = PathRevoke
	}
	s := &Server{opts: opts, users: map[string]*user{}, tokens: map[string]*token{}, current: map[string]string{}}
	// The admin surface (tokenwarden dev) at /_sim/: fail, ratelimit,
	// malformed, expire-refresh, expire-access, expire-client,
	// lock?user=ID, unlock?user=ID, verify?user=ID, stats.
	lock := func(locked bool) func(url.Values) error {
		return func(q url.Values) error {
			id := q.Get("user")
			if id == "" || !s.HasUser(id) {
				return errors.New("user must name an existing user")
			}
			s.setLocked(id, locked)
			return nil
		}
	}
	s.admin = simulator.Admin{Faults: &s.Faults, Stats: s.Stats, Strict: true, Actions: map[string]func(url.Values) error{
		"expire-refresh": simulator.Do(s.ExpireRefreshTokens),
		"expire-access":  simulator.Do(s.ExpireAccessTokens),
		"expire-client":  simulator.Do(s.ExpireClientTokens),
		"lock":           lock(true),
		"unlock":         lock(false),
		"verify": func(q url.Values) error {
			if id := q.Get("user"); id == "" || !s.HasUser(id) {
				return errors.New("user must name an existing user")
			}
			s.VerifyUser(q.Get("user"))
			return nil
		},
	}}
	return s
}

// VerifyUser verifies a user (finAPI: POST /users/verify/{userId}).
func (s *Server) VerifyUser(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[id]; u != nil {
		u.unverified = false
	}
}

// Paths returns the paths served.
func (s *Server) Paths() Paths { return s.opts.Paths }

// ExpireRefreshTokens ends every refresh token issued so far.
func (s *Server) ExpireRefreshTokens() { s.expire("refresh") }

// ExpireAccessTokens ends every user access token issued so far.
func (s *Server) ExpireAccessTokens() { s.expire("access") }

// ExpireClientTokens ends every client token issued so far.
func (s *Server) ExpireClientTokens() { s.expire("client") }

func (s *Server) expire(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.opts.Now().Add(-time.Second)
	for _, t := range s.tokens {
		if t.kind == kind {
			t.expiry = past
		}
	}
}

// AddUser creates a user directly, as if through POST /users.
func (s *Server) AddUser(id, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[id] = &user{id: id, password: password}
}

// LockUser locks a user: logins and refreshes answer 423. Unknown users
// are ignored.
func (s *Server) LockUser(id string) { s.setLocked(id, true) }

// UnlockUser undoes LockUser.
func (s *Server) UnlockUser(id string) { s.setLocked(id, false) }

func (s *Server) setLocked(id string, locked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[id]; u != nil {
		u.locked = locked
	}
}

// HasUser reports whether a user exists.
func (s *Server) HasUser(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[id] != nil
}

// Valid reports whether accessToken is a live user access token.
func (s *Server) Valid(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.live(accessToken)
	return t != nil && t.kind == "access"
}

// ValidClient reports whether accessToken is a live client token.
func (s *Server) ValidClient(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.live(accessToken)
	return t != nil && t.kind == "client"
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.admin.ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := ""
	switch r.URL.Path {
	case s.opts.Paths.Token:
		name = "token"
		if r.Method == http.MethodPost && r.ParseForm() == nil && r.PostForm.Get("grant_type") != "" {
			name += ":" + r.PostForm.Get("grant_type")
		}
	case s.opts.Paths.Users:
		name = "users"
		if r.Method == http.MethodGet {
			s.Hit("users:get")
			s.authorizedUser(w, r)
			return
		}
	case s.opts.Paths.Revoke:
		name = "revoke"
	default:
		s.apiError(w, r, http.StatusNotFound, "ENTITY_NOT_FOUND", "TECHNICAL", "No such endpoint")
		return
	}
	s.Hit(name)
	if s.Take(w, func(w http.ResponseWriter, f simulator.Fault) { s.writeFault(w, r, f) }) {
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.apiError(w, r, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "TECHNICAL", "Method not allowed")
		return
	}
	switch r.URL.Path {
	case s.opts.Paths.Token:
		s.token(w, r)
	case s.opts.Paths.Users:
		s.createUser(w, r)
	case s.opts.Paths.Revoke:
		s.revoke(w, r)
	}
}

func (s *Server) writeFault(w http.ResponseWriter, r *http.Request, f simulator.Fault) {
	switch {
	case f.Malformed:
		simulator.WriteMalformed(w, `{"access_token": "`)
	case f.Status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter.Round(time.Second)/time.Second)))
		s.apiError(w, r, f.Status, "TOO_MANY_REQUESTS", "TECHNICAL", "Too many requests")
	case f.Status >= 500:
		s.apiError(w, r, f.Status, "UNKNOWN_ERROR", "TECHNICAL", "An unexpected error occurred")
	default:
		s.apiError(w, r, f.Status, "BAD_REQUEST", "BUSINESS", http.StatusText(f.Status))
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Malformed form body")
		return
	}
	f := r.PostForm
	if !s.clientOK(f.Get("client_id"), f.Get("client_secret")) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Bad client credentials")
		return
	}
	switch f.Get("grant_type") {
	case "client_credentials":
		tok, left := s.reuse("client")
		if tok == "" {
			tok, left = s.issue("client", "", "", s.opts.ClientTTL), s.opts.ClientTTL
			s.current["client"] = tok
		}
		simulator.WriteJSON(w, http.StatusOK, map[string]any{
			"access_token": tok, "token_type": "bearer", "expires_in": int(left / time.Second), "scope": "all",
		})
	case "password":
		u := s.users[f.Get("username")]
		if u == nil || f.Get("password") == "" || subtle.ConstantTimeCompare([]byte(u.password), []byte(f.Get("password"))) != 1 {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Bad credentials")
			return
		}
		if u.locked {
			s.locked(w, r)
			return
		}
		if u.unverified {
			s.apiError(w, r, http.StatusForbidden, "USER_NOT_VERIFIED", "BUSINESS", "User is not verified")
			return
		}
		if access, left := s.reuse("user:" + u.id); access != "" {
			reply := map[string]any{"access_token": access, "token_type": "bearer", "expires_in": int(left / time.Second), "scope": "all"}
			if rt := s.tokens[access].refresh; rt != "" && !s.opts.NoRefreshToken {
				reply["refresh_token"] = rt
			}
			simulator.WriteJSON(w, http.StatusOK, reply)
			return
		}
		refresh := s.issue("refresh", u.id, "", s.opts.RefreshTTL)
		s.userTokens(w, u, refresh, s.opts.NoRefreshToken)
	case "refresh_token":
		rt := f.Get("refresh_token")
		t := s.live(rt)
		if t == nil || t.kind != "refresh" {
			// Spring's wording, token and all: providers must not
			// pass it on.
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token: "+rt)
			return
		}
		u := s.users[t.user]
		if u == nil {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token: "+rt)
			return
		}
		if u.locked {
			s.locked(w, r)
			return
		}
		if u.unverified {
			s.apiError(w, r, http.StatusForbidden, "USER_NOT_VERIFIED", "BUSINESS", "User is not verified")
			return
		}
		refresh := rt
		if s.opts.Refresh == RefreshRotate {
			t.revoked = true
			refresh = s.issue("refresh", u.id, "", s.opts.RefreshTTL)
		}
		s.userTokens(w, u, refresh, s.opts.Refresh == RefreshOmit)
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "Missing grant type")
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type")
	}
}

// reuse returns the live token of caller with what is left of it, when
// ReuseTokens is on; the caller holds mu.
func (s *Server) reuse(caller string) (string, time.Duration) {
	if !s.opts.ReuseTokens {
		return "", 0
	}
	tok := s.current[caller]
	t := s.live(tok)
	if t == nil {
		return "", 0
	}
	if t.expiry.IsZero() {
		return tok, 0
	}
	return tok, t.expiry.Sub(s.opts.Now())
}

func (s *Server) userTokens(w http.ResponseWriter, u *user, refresh string, omitRefresh bool) {
	access := s.issue("access", u.id, refresh, s.opts.AccessTTL)
	s.current["user:"+u.id] = access
	reply := map[string]any{
		"access_token": access, "token_type": "bearer", "expires_in": int(s.opts.AccessTTL / time.Second), "scope": "all",
	}
	if !omitRefresh {
		reply["refresh_token"] = refresh
	}
	simulator.WriteJSON(w, http.StatusOK, reply)
}

func (s *Server) locked(w http.ResponseWriter, r *http.Request) {
	s.apiError(w, r, http.StatusLocked, "USER_LOCKED", "BUSINESS", "User is locked")
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	if !s.clientBearer(w, r) {
		return
	}
	var body struct {
		ID                  string  `json:"id"`
		Password            string  `json:"password"`
		Email               *string `json:"email"`
		Phone               *string `json:"phone"`
		IsAutoUpdateEnabled bool    `json:"isAutoUpdateEnabled"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	switch {
	case err != nil:
		s.apiError(w, r, http.StatusBadRequest, "BAD_REQUEST", "TECHNICAL", "Malformed request body")
		return
	case body.ID == "" || body.Password == "":
		s.apiError(w, r, http.StatusBadRequest, "BAD_REQUEST", "BUSINESS", "User id and password are required")
		return
	case !userIDRE.MatchString(body.ID):
		s.apiError(w, r, http.StatusUnprocessableEntity, "BAD_REQUEST", "BUSINESS",
			"id must be 1 to 36 characters of letters, digits and ._@+-")
		return
	case !passwordRE.MatchString(body.Password):
		s.apiError(w, r, http.StatusUnprocessableEntity, "BAD_REQUEST", "BUSINESS",
			"password must be 6 to 128 printable ASCII characters without spaces")
		return
	case s.users[body.ID] != nil:
		s.apiError(w, r, http.StatusUnprocessableEntity, "ENTITY_EXISTS", "BUSINESS", "User with id '"+body.ID+"' already exists")
		return
	}
	u := &user{id: body.ID, password: body.Password, autoUpdate: body.IsAutoUpdateEnabled, unverified: s.opts.VerifyUsers}
	if body.Email != nil {
		u.email = *body.Email
	}
	if body.Phone != nil {
		u.phone = *body.Phone
	}
	s.users[u.id] = u
	simulator.WriteJSON(w, http.StatusCreated, map[string]any{
		"id": u.id, "password": u.password, "email": body.Email, "phone": body.Phone,
		"isAutoUpdateEnabled": u.autoUpdate,
	})
}

// authorizedUser is GET {users}: the user of the Bearer user token.
func (s *Server) authorizedUser(w http.ResponseWriter, r *http.Request) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	t := s.live(bearer)
	switch {
	case ok && t != nil && t.kind == "client":
		s.apiError(w, r, http.StatusForbidden, "FORBIDDEN", "BUSINESS", "This call needs a user token")
		return
	case !ok || t == nil || t.kind != "access" || s.users[t.user] == nil:
		s.apiError(w, r, http.StatusUnauthorized, "UNAUTHORIZED_ACCESS", "BUSINESS", "Not authorized")
		return
	}
	u := s.users[t.user]
	var email, phone *string
	if u.email != "" {
		email = &u.email
	}
	if u.phone != "" {
		phone = &u.phone
	}
	simulator.WriteJSON(w, http.StatusOK, map[string]any{
		"id": u.id, "password": "XXXXX", "email": email, "phone": phone, "isAutoUpdateEnabled": u.autoUpdate,
	})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	if !s.clientBearer(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		s.apiError(w, r, http.StatusBadRequest, "BAD_REQUEST", "TECHNICAL", "token is required")
		return
	}
	tok := r.PostForm.Get("token")
	if t := s.tokens[tok]; t != nil {
		t.revoked = true
		if t.kind == "refresh" {
			s.revokeAccessOf(tok)
		}
	}
	// RFC 7009: unknown and already invalid tokens are fine.
	w.WriteHeader(http.StatusOK)
}

func (s *Server) revokeAccessOf(refresh string) {
	for _, t := range s.tokens {
		if t.kind == "access" && t.refresh == refresh {
			t.revoked = true
		}
	}
}

// clientBearer checks for a live client token, answering otherwise.
func (s *Server) clientBearer(w http.ResponseWriter, r *http.Request) bool {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	t := s.live(bearer)
	switch {
	case !ok || t == nil:
		s.apiError(w, r, http.StatusUnauthorized, "UNAUTHORIZED_ACCESS", "BUSINESS", "Not authorized")
		return false
	case t.kind != "client":
		s.apiError(w, r, http.StatusForbidden, "FORBIDDEN", "BUSINESS", "This call needs a client token")
		return false
	}
	return true
}

func (s *Server) clientOK(id, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(id), []byte(s.opts.ClientID)) == 1 &&
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) == 1
}

// issue makes a token; the caller holds mu.
func (s *Server) issue(kind, userID, refresh string, ttl time.Duration) string {
	tok := simulator.RandomID(48)
	t := &token{kind: kind, user: userID, refresh: refresh}
	if ttl > 0 {
		t.expiry = s.opts.Now().Add(ttl)
	}
	s.tokens[tok] = t
	return tok
}

// live returns a token that is neither revoked nor expired; the caller
// holds mu.
func (s *Server) live(tok string) *token {
	t := s.tokens[tok]
	if t == nil || t.revoked || (!t.expiry.IsZero() && !s.opts.Now().Before(t.expiry)) {
		return nil
	}
	return t
}

// apiError writes finAPI's general error body.
func (s *Server) apiError(w http.ResponseWriter, r *http.Request, status int, code, typ, msg string) {
	simulator.WriteJSON(w, status, map[string]any{
		"errors":      []map[string]string{{"message": msg, "code": code, "type": typ}},
		"date":        s.opts.Now().Format("2006-01-02T15:04:05.000-0700"),
		"requestId":   "selfgen-" + newID(),
		"endpoint":    r.Method + " " + r.URL.Path,
		"authContext": "1/-",
		"bank":        nil,
	})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	simulator.WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func newID() string { return simulator.HexID(8) }

var (
	userIDRE   = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,36}$`)
	passwordRE = regexp.MustCompile(`^[!-~]{6,128}$`)
)
