// Package sim simulates Luca Regnskap's OAuth 2.0 server and the part of
// its GraphQL API that Tokenwarden uses, after Luca's "API: Authenticate
// with OAuth2" article:
//
//	GET  /api/v1/oauth2/authorize  client_id, response_type=code, scope=accounting,
//	                               redirect_uri, organisation_number?, locale? (nb|en)
//	POST /api/v2/oauth2/token      form: grant_type authorization_code|refresh_token,
//	                               client_id and client_secret in the body
//	POST /api/v1/graphql           Bearer token, {"query":"{ saleInvoices { nodes { id } } }"}
//
// Codes live 10 minutes and are single-use; access tokens an hour;
// refresh tokens never expire and are returned unchanged by a refresh,
// as the article's examples show ({REFRESH_TOKEN} both times).
//
// The article's redirect lists code and scope only; Options.DropState
// plays a Luca that does not echo state. Options.RequireRedirectMatch
// makes the token endpoint insist on the authorization request's
// redirect_uri (RFC 6749 4.1.3), so that a code is bound to the redirect
// URI it was issued for. Options.UnauthenticatedOK answers a bad token at
// the GraphQL endpoint 200 {"errors":[{"message":"Unauthenticated.",
// "extensions":{"category":"authentication"}}]}, as Lighthouse (Laravel's
// GraphQL server) does. saleInvoices is a paginated connection: with
// first: n it returns n invoices, without it all of Options.Invoices
// (counted as "graphql.unbounded").
//
// Not in the article, assumed: error bodies are RFC 6749 JSON
// ({"error","error_description"}, 400, 401 for invalid_client, as
// PHP's league/oauth2-server sends); a PKCE challenge, when sent, is
// checked at the token endpoint and is otherwise not required; a
// redirect_uri at the token endpoint, when sent, must match; the
// GraphQL endpoint answers 401 {"message":"Unauthenticated."} for a bad
// token.
package sim

import (
	"crypto/subtle"
	"encoding/json"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokenwarden/tokenwarden/providers/simulator"
)

// Options configure a Server. Zero fields take Luca's defaults.
type Options struct {
	// ClientID and ClientSecret of the one registered application.
	// Default "tokenwarden" and "tokenwarden-secret".
	ClientID     string
	ClientSecret string
	// Users maps user names to passwords. Default {"kari": "kari-password"}.
	Users map[string]string
	// AccessTTL defaults to one hour.
	AccessTTL time.Duration
	// RefreshTTL zero means refresh tokens never expire (Luca's default).
	RefreshTTL time.Duration
	// CodeTTL defaults to 10 minutes.
	CodeTTL time.Duration
	// RotateRefreshTokens makes each refresh issue a new refresh token
	// and revoke the old one.
	RotateRefreshTokens bool
	// AutoApprove makes the authorization endpoint sign in the first user
	// (or ?login=<user>) and redirect back at once, so that a plain HTTP
	// client can follow the flow.
	AutoApprove bool
	// DropState leaves state out of the redirect back, as the article's
	// list of returned parameters (code, scope) does.
	DropState bool
	// RequireRedirectMatch refuses a code exchange whose redirect_uri is
	// missing or differs from the authorization request's.
	RequireRedirectMatch bool
	// UnauthenticatedOK answers a bad token at the GraphQL endpoint with
	// 200 and a GraphQL error instead of 401.
	UnauthenticatedOK bool
	// Invoices is how many sale invoices the company has. Default 2.
	Invoices int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Server is the simulated Luca. It implements http.Handler and is safe
// for concurrent use. FailNext, RateLimit and Malformed
// (simulator.Faults) apply to the next token or GraphQL requests (an
// HTML page for 5xx, a JSON error otherwise); Stats (simulator.Hits)
// counts hits per endpoint ("authorize", "token", "graphql") and per
// grant ("token.refresh_token", ...).
type Server struct {
	simulator.Faults
	simulator.Hits

	opts Options
	mux  *http.ServeMux

	mu      sync.Mutex
	users   map[string]string
	codes   map[string]*authCode
	access  map[string]*tokenRec
	refresh map[string]*tokenRec
}

// grantRec is what the end-user consented to.
type grantRec struct {
	user, organisation string
}

type authCode struct {
	grant             *grantRec
	redirect          string
	challenge, method string
	expires           time.Time
	used              bool
}

type tokenRec struct {
	grant   *grantRec
	expires time.Time // zero: never
	revoked bool
}

// New returns a simulated Luca with opts applied over the defaults.
func New(opts Options) *Server {
	if opts.ClientID == "" {
		opts.ClientID = "tokenwarden"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "tokenwarden-secret"
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"kari": "kari-password"}
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = time.Hour
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = 10 * time.Minute
	}
	if opts.Invoices <= 0 {
		opts.Invoices = 2
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:    opts,
		users:   maps.Clone(opts.Users),
		codes:   map[string]*authCode{},
		access:  map[string]*tokenRec{},
		refresh: map[string]*tokenRec{},
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/api/v1/oauth2/authorize", s.handleAuthorize)
	s.mux.HandleFunc("POST /api/v2/oauth2/token", s.handleToken)
	s.mux.HandleFunc("POST /api/v1/graphql", s.handleGraphQL)
	// The admin surface (tokenwarden dev) at /_sim/: fail, ratelimit
	// (retry_after in seconds), malformed, expire-refresh, expire-access,
	// revoke, stats.
	s.mux.Handle("/_sim/", simulator.Admin{Faults: &s.Faults, Stats: s.Stats, JSON: simulator.WriteNoStoreJSON,
		Actions: map[string]func(url.Values) error{
			"expire-refresh": simulator.Do(s.ExpireRefreshTokens),
			"expire-access":  simulator.Do(s.ExpireAccessTokens),
			"revoke":         simulator.Do(s.RevokeRefreshTokens),
		}})
	return s
}

// IssueCode signs user in as the authorization endpoint would for
// redirectURI and returns the code without redirecting: the code an
// attacker holds in a code-swap test.
func (s *Server) IssueCode(user, redirectURI string) string {
	code := randomID(32)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = &authCode{grant: &grantRec{user: user}, redirect: redirectURI, expires: s.opts.Now().Add(s.opts.CodeTTL)}
	return code
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// ExpireRefreshTokens makes every refresh token issued so far expired.
func (s *Server) ExpireRefreshTokens() { s.expire(s.refresh) }

// ExpireAccessTokens makes every access token issued so far expired.
func (s *Server) ExpireAccessTokens() { s.expire(s.access) }

func (s *Server) expire(m map[string]*tokenRec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.opts.Now().Add(-time.Second)
	for _, r := range m {
		r.expires = past
	}
}

// RevokeRefreshTokens revokes every refresh token and access token, as
// the end-user removing the application in Luca's settings would.
func (s *Server) RevokeRefreshTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range []map[string]*tokenRec{s.refresh, s.access} {
		for _, r := range m {
			r.revoked = true
		}
	}
}

// Valid reports whether accessToken would be accepted by the API now.
func (s *Server) Valid(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveLocked(s.access[accessToken])
}

// Organisation returns the organisation number an access token was
// granted for ("" when the end-user chose none or the token is unknown).
func (s *Server) Organisation(accessToken string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.access[accessToken]; r != nil {
		return r.grant.organisation
	}
	return ""
}

func (s *Server) liveLocked(r *tokenRec) bool {
	return r != nil && !r.revoked && (r.expires.IsZero() || s.opts.Now().Before(r.expires))
}

// writeFault answers a fault as Laravel (behind its proxy) does.
func writeFault(w http.ResponseWriter, f simulator.Fault) {
	switch {
	case f.Malformed:
		simulator.WriteMalformed(w, `{"access_token": "luca-`)
	case f.Status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
		writeJSON(w, f.Status, map[string]string{"message": "Too Many Attempts."})
	case f.Status >= 500:
		simulator.WriteHTMLError(w, f.Status)
	default:
		writeError(w, f.Status, "invalid_request", "simulated failure")
	}
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.Hit("token")
	if s.Take(w, writeFault) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "Malformed form")
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = u, p
	}
	if id != s.opts.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) != 1 {
		writeError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	grant := r.PostForm.Get("grant_type")
	s.Hit("token." + grant)
	switch grant {
	case "authorization_code":
		s.codeGrant(w, r)
	case "refresh_token":
		s.refreshGrant(w, r)
	default:
		writeError(w, http.StatusBadRequest, "unsupported_grant_type", "The authorization grant type is not supported by the authorization server.")
	}
}

func (s *Server) codeGrant(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[r.PostForm.Get("code")]
	switch {
	case !ok || c.used:
		writeError(w, http.StatusBadRequest, "invalid_grant", "Authorization code has been revoked")
		return
	case !s.opts.Now().Before(c.expires):
		writeError(w, http.StatusBadRequest, "invalid_grant", "Authorization code has expired")
		return
	}
	c.used = true
	if ru := r.PostForm.Get("redirect_uri"); (ru != "" || s.opts.RequireRedirectMatch) && ru != c.redirect {
		writeError(w, http.StatusBadRequest, "invalid_grant", "Invalid redirect URI")
		return
	}
	if c.challenge != "" {
		v := r.PostForm.Get("code_verifier")
		if v == "" || !simulator.PKCEMatches(c.method, c.challenge, v) {
			writeError(w, http.StatusBadRequest, "invalid_grant", "Failed to verify `code_verifier`.")
			return
		}
	}
	s.issueLocked(w, c.grant, "")
}

func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := r.PostForm.Get("refresh_token")
	rec := s.refresh[rt]
	if !s.liveLocked(rec) {
		writeError(w, http.StatusBadRequest, "invalid_grant", "The refresh token is invalid.")
		return
	}
	if s.opts.RotateRefreshTokens {
		rec.revoked = true
		rt = ""
	}
	s.issueLocked(w, rec.grant, rt)
}

// issueLocked answers with a new access token, and refresh token rt or a
// new one when rt is empty.
func (s *Server) issueLocked(w http.ResponseWriter, g *grantRec, rt string) {
	now := s.opts.Now()
	at := "luca-at-" + randomID(32)
	s.access[at] = &tokenRec{grant: g, expires: now.Add(s.opts.AccessTTL)}
	if rt == "" {
		rt = "luca-rt-" + randomID(32)
		rec := &tokenRec{grant: g}
		if s.opts.RefreshTTL > 0 {
			rec.expires = now.Add(s.opts.RefreshTTL)
		}
		s.refresh[rt] = rec
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  at,
		"refresh_token": rt,
		"token_type":    "bearer",
		"expires_in":    int(s.opts.AccessTTL / time.Second),
	})
}

func (s *Server) handleGraphQL(w http.ResponseWriter, r *http.Request) {
	s.Hit("graphql")
	if s.Take(w, writeFault) {
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	live := ok && s.liveLocked(s.access[tok])
	s.mu.Unlock()
	if !live {
		if s.opts.UnauthenticatedOK {
			writeJSON(w, http.StatusOK, map[string]any{"errors": []map[string]any{{
				"message": "Unauthenticated.", "extensions": map[string]string{"category": "authentication"}}}})
			return
		}
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Unauthenticated."})
		return
	}
	var req struct {
		Query string `json:"query"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || strings.TrimSpace(req.Query) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []map[string]string{{"message": "Syntax Error: Unexpected <EOF>"}}})
		return
	}
	if !strings.Contains(req.Query, "saleInvoices") {
		writeJSON(w, http.StatusOK, map[string]any{"errors": []map[string]string{{"message": "the simulator answers saleInvoices queries only"}}})
		return
	}
	n := s.opts.Invoices
	if m := firstRE.FindStringSubmatch(req.Query); m != nil {
		if f, err := strconv.Atoi(m[1]); err == nil && f < n {
			n = f
		}
	} else {
		s.Hit("graphql.unbounded")
	}
	nodes := make([]map[string]string, n)
	for i := range nodes {
		nodes[i] = map[string]string{"id": strconv.Itoa(1001 + i)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"saleInvoices": map[string]any{"nodes": nodes}}})
}

var firstRE = regexp.MustCompile(`saleInvoices\s*\(\s*first\s*:\s*([0-9]+)\s*\)`)

var orgNumberRE = regexp.MustCompile(`^[0-9]{9}$`)

var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html><head><title>Luca Regnskap</title></head><body>
<h1>Give {{.Client}} access to your accounting?</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<label>E-post <input name="username"></label>
<label>Passord <input name="password" type="password"></label>
<button type="submit">Godkjenn</button>
</form></body></html>`))

// handleAuthorize is the consent endpoint. With AutoApprove or a login
// query parameter it grants at once; otherwise GET shows a form and POST
// checks it.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	s.Hit("authorize")
	q := r.URL.Query()
	if q.Get("client_id") != s.opts.ClientID {
		http.Error(w, "Client authentication failed", http.StatusUnauthorized)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || !redirect.IsAbs() {
		http.Error(w, "redirect_uri is required", http.StatusBadRequest)
		return
	}
	state := q.Get("state")
	if s.opts.DropState {
		state = ""
	}
	back := func(v url.Values) { simulator.RedirectBack(w, r, *redirect, state, v) }
	fail := func(code, desc string) { back(url.Values{"error": {code}, "error_description": {desc}}) }
	org, locale := q.Get("organisation_number"), q.Get("locale")
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "The authorization server does not support obtaining an authorization code using this method.")
		return
	case q.Get("scope") != "accounting":
		fail("invalid_scope", "The requested scope is invalid, unknown, or malformed")
		return
	case locale != "" && locale != "nb" && locale != "en":
		fail("invalid_request", "locale must be nb or en")
		return
	case org != "" && !orgNumberRE.MatchString(org):
		fail("invalid_request", "organisation_number must be 9 digits")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge != "" && method == "" {
		method = "plain"
	}

	user := q.Get("login")
	switch {
	case r.Method == http.MethodPost:
		_ = r.ParseForm()
		user = r.PostForm.Get("username")
		s.mu.Lock()
		want, known := s.users[user]
		s.mu.Unlock()
		if !known || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("password")), []byte(want)) != 1 {
			s.renderConsent(w, r, "Feil e-post eller passord.")
			return
		}
	case user == "" && s.opts.AutoApprove:
		s.mu.Lock()
		if names := slices.Sorted(maps.Keys(s.users)); len(names) > 0 {
			user = names[0]
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	_, known := s.users[user]
	s.mu.Unlock()
	if !known {
		s.renderConsent(w, r, "")
		return
	}
	code := randomID(32)
	s.mu.Lock()
	s.codes[code] = &authCode{
		grant:    &grantRec{user: user, organisation: org},
		redirect: q.Get("redirect_uri"), challenge: challenge, method: method,
		expires: s.opts.Now().Add(s.opts.CodeTTL),
	}
	s.mu.Unlock()
	back(url.Values{"code": {code}, "scope": {"accounting"}})
}

func (s *Server) renderConsent(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = consentPage.Execute(w, map[string]string{"Client": s.opts.ClientID, "Error": msg, "Action": r.URL.RequestURI()})
}

// Luca's JSON replies carry Cache-Control: no-store.
var (
	writeJSON  = simulator.WriteNoStoreJSON
	writeError = simulator.OAuthError
	randomID   = simulator.RandomID
)
