// Package sim is a stand-in for Norman's institution API: the five token
// calls of Norman's authentication guide, JSON in and out, the Institution
// header checked on every call, SimpleJWT-style HS256 tokens with exp
// claims, and switches for the failures a provider must survive.
//
// Assumed where Norman's guide is silent (Norman is a Django REST
// framework + SimpleJWT service):
//   - users/create and token/retrieve answer {"accessToken","refreshToken"}
//     (the guide's names) and the user {"user":{id,username,email,
//     external_id}}; token/refresh answers SimpleJWT's {"access"} or,
//     with refresh rotation (ROTATE_REFRESH_TOKENS, on by default here),
//     {"access","refresh"}, blacklisting the old refresh token. Options.Shape
//     switches every reply to snake_case, to one level of nesting, to a
//     shape nobody reads, or to a 200 HTML page (a web front end or a
//     proxy answering in Norman's place).
//   - tokens carry a username claim next to SimpleJWT's user_id;
//     Options.Anonymous drops it and the "user" object, leaving
//     SimpleJWT's default claims: replies that do not say whose tokens
//     they are.
//   - token/retrieve finds its user by all three fields (404 "User not
//     found." otherwise); Options.Retrieve makes it match the username
//     alone, the lenient variant a provider must not trust.
//   - a token that is bad, expired or blacklisted gets 401
//     {"detail","code":"token_not_valid"}; a wrong Institution header 403
//     {"detail"}, a missing one 401 {"detail"}; a taken username 400
//     {"username":["A user with that username already exists."]}, or 409
//     {"detail"} with Options.ConflictStatus.
//   - token/expire blacklists the refresh token and ends the session it
//     belongs to, so its access tokens stop working too ("prevent further
//     API access").
//   - the user API the guide's example calls, GET
//     /api/v1/companies/{id}/taxes/reports/ with "Authorization: Bearer
//     <accessToken>" (and no Institution header), answers a DRF page
//     {"count","next","previous","results"} for a live access token, and
//     SimpleJWT's 401 {"detail","code":"token_not_valid"} for a bad,
//     expired or ended one ({"detail"} alone without a token). Faults do
//     not apply to it.
package sim

import (
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokenwarden/tokenwarden/providers/simulator"
)

// Paths served, as in Norman's guide.
const (
	PathCreate   = "/api/v1/institution/users/create/"
	PathRefresh  = "/api/v1/institution/users/token/refresh/"
	PathVerify   = "/api/v1/institution/users/token/verify/"
	PathExpire   = "/api/v1/institution/users/token/expire/"
	PathRetrieve = "/api/v1/institution/users/token/retrieve/"
	// PathTaxReports is the user API call of the guide's example, with
	// the company id in place of {company}.
	PathTaxReports = "/api/v1/companies/{company}/taxes/reports/"
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
	// Shape is how token replies spell the pair (default ShapeGuide);
	// SetShape changes it later.
	Shape Shape
	// Retrieve is how token/retrieve finds its user (default
	// RetrieveAll).
	Retrieve RetrieveMode
	// Anonymous makes token replies name no user: no "user" object, and
	// JWTs with SimpleJWT's default claims (token_type, exp, iat, jti,
	// user_id) plus this server's session id, but no username.
	Anonymous bool
	// ConflictStatus answers users/create for a taken username: 400
	// (default, Django's per-field error) or 409 ({"detail"}).
	ConflictStatus int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Shape is the spelling of token replies. Norman's guide names
// accessToken and refreshToken but shows no reply.
type Shape int

const (
	// ShapeGuide: users/create and token/retrieve answer
	// {"accessToken","refreshToken"}, token/refresh SimpleJWT's
	// {"access"[,"refresh"]}.
	ShapeGuide Shape = iota
	// ShapeSnake: every reply is {"access_token","refresh_token"}.
	ShapeSnake
	// ShapeNested: every reply is {"data":{"accessToken","refreshToken"}}.
	ShapeNested
	// ShapeUnknown: every reply is a JSON object no provider can read
	// ({"jwt":{"a","r"}}): a 2xx that is a configuration problem.
	ShapeUnknown
	// ShapeHTML: every token reply is 200 with a complete HTML page
	// (text/html), as a web site or a proxy answers when base_url points
	// at it rather than at the API: a 2xx that is no JSON at all. The
	// tokens are still issued (users/create still creates the user).
	ShapeHTML
)

// RetrieveMode is how token/retrieve matches its user.
type RetrieveMode int

const (
	// RetrieveAll finds the user only when username, email and
	// external_id all match (404 otherwise).
	RetrieveAll RetrieveMode = iota
	// RetrieveUsername finds the user by username alone, ignoring email
	// and external_id: the lenient service a provider must not trust.
	RetrieveUsername
)

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

// Server is the simulated API. It is safe for concurrent use. FailNext,
// RateLimit and Malformed (simulator.Faults) apply to the next API calls
// (a 5xx gets Django's HTML error page); Stats (simulator.Hits) counts
// requests per endpoint: create, refresh, verify, expire, retrieve
// (faults included).
type Server struct {
	simulator.Faults
	simulator.Hits

	opts Options
	key  []byte
	mux  *http.ServeMux

	mu       sync.Mutex
	shape    Shape
	users    map[string]*user
	byID     map[int]*user
	tokens   map[string]*issued // by jti
	sessions map[string]bool    // ended sessions, by id
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
	if opts.ConflictStatus == 0 {
		opts.ConflictStatus = http.StatusBadRequest
	}
	s := &Server{
		opts:     opts,
		shape:    opts.Shape,
		key:      simulator.RandomBytes(32),
		users:    map[string]*user{},
		byID:     map[int]*user{},
		tokens:   map[string]*issued{},
		sessions: map[string]bool{},
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc(PathCreate, s.api(s.create))
	s.mux.HandleFunc(PathRefresh, s.api(s.refresh))
	s.mux.HandleFunc(PathVerify, s.api(s.verify))
	s.mux.HandleFunc(PathExpire, s.api(s.expire))
	s.mux.HandleFunc(PathRetrieve, s.api(s.retrieve))
	s.mux.HandleFunc("GET "+PathTaxReports, s.taxReports)
	s.mux.Handle("/_sim/", simulator.Admin{Faults: &s.Faults, Stats: s.Stats, Strict: true, Actions: map[string]func(url.Values) error{
		"expire-refresh": simulator.Do(s.ExpireRefreshTokens),
		"expire-access":  simulator.Do(s.ExpireAccessTokens),
	}})
	return s
}

// SetShape changes the spelling of token replies from now on.
func (s *Server) SetShape(sh Shape) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shape = sh
}

// reply writes a token reply in the current shape; guide is the
// ShapeGuide spelling of the call (camel for create and retrieve,
// SimpleJWT's for refresh). extra fields (the user) go at the top level.
func (s *Server) reply(w http.ResponseWriter, status int, camel bool, access, refresh string, extra map[string]any) {
	pair := map[string]any{}
	put := func(a, r string) {
		pair[a] = access
		if refresh != "" {
			pair[r] = refresh
		}
	}
	switch s.shape {
	case ShapeSnake:
		put("access_token", "refresh_token")
	case ShapeNested:
		put("accessToken", "refreshToken")
		pair = map[string]any{"data": pair}
	case ShapeUnknown:
		put("a", "r")
		pair = map[string]any{"jwt": pair}
	case ShapeHTML:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, htmlPage)
		return
	default:
		if camel {
			put("accessToken", "refreshToken")
		} else {
			put("access", "refresh")
		}
	}
	for k, v := range extra {
		pair[k] = v
	}
	simulator.WriteJSON(w, status, pair)
}

// htmlPage is what ShapeHTML answers: a web page, complete, with no
// token in it.
const htmlPage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Norman</title></head>
<body><h1>Norman</h1><p>Tax and accounting for freelancers.</p></body></html>
`

// userReply is the extra of a token reply that names u: {"user": {...}},
// nothing when the server is Anonymous.
func (s *Server) userReply(u *user) map[string]any {
	if s.opts.Anonymous {
		return nil
	}
	return map[string]any{"user": u.json()}
}

func (u *user) json() map[string]any {
	return map[string]any{"id": u.id, "username": u.username, "email": u.email, "external_id": u.externalID}
}

// Institution is the header value the server expects.
func (s *Server) Institution() string { return s.opts.InstitutionID + ":" + s.opts.SecretKey }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

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
		s.Hit(endpointNames[r.URL.Path])
		if s.Take(w, writeFault) {
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			simulator.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": fmt.Sprintf("Method %q not allowed.", r.Method)})
			return
		}
		switch inst := r.Header.Get("Institution"); {
		case inst == "":
			simulator.WriteJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Authentication credentials were not provided."})
			return
		case !hmac.Equal([]byte(inst), []byte(s.Institution())):
			simulator.WriteJSON(w, http.StatusForbidden, map[string]string{"detail": "Invalid institution credentials."})
			return
		}
		raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var body map[string]any
		if err == nil {
			err = json.Unmarshal(raw, &body)
		}
		if err != nil || body == nil {
			simulator.WriteJSON(w, http.StatusBadRequest, map[string]string{"detail": "JSON parse error."})
			return
		}
		h(w, body)
	}
}

// writeFault answers a fault as Django REST framework does.
func writeFault(w http.ResponseWriter, f simulator.Fault) {
	switch {
	case f.Malformed:
		simulator.WriteMalformed(w, `{"access": "`)
	case f.Status == http.StatusTooManyRequests:
		secs := int(f.RetryAfter.Round(time.Second) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		simulator.WriteJSON(w, f.Status, map[string]string{
			"detail": fmt.Sprintf("Request was throttled. Expected available in %d seconds.", secs),
			"code":   "throttled",
		})
	case f.Status >= 500:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(f.Status)
		_, _ = fmt.Fprintf(w, "<h1>Server Error (%d)</h1>", f.Status)
	default:
		simulator.WriteJSON(w, f.Status, map[string]string{"detail": http.StatusText(f.Status)})
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
		simulator.WriteJSON(w, http.StatusBadRequest, errs)
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
		if s.opts.ConflictStatus == http.StatusConflict {
			simulator.WriteJSON(w, http.StatusConflict, map[string]string{"detail": "User already exists."})
			return
		}
		simulator.WriteJSON(w, http.StatusBadRequest, map[string][]string{"username": {"A user with that username already exists."}})
		return
	}
	s.nextID++
	u := &user{username: f[0], email: f[1], externalID: f[2], id: s.nextID}
	s.users[u.username] = u
	s.byID[u.id] = u
	access, refresh := s.pair(u, newID())
	s.reply(w, http.StatusCreated, true, access, refresh, s.userReply(u))
}

// retrieve issues a new pair. Its reply names the user as users/create's
// does (assumed: the guide shows neither reply), unless Anonymous.
func (s *Server) retrieve(w http.ResponseWriter, body map[string]any) {
	f, ok := required(w, body, "username", "email", "external_id")
	if !ok {
		return
	}
	u := s.users[f[0]]
	if u == nil || (s.opts.Retrieve == RetrieveAll && (u.email != f[1] || u.externalID != f[2])) {
		simulator.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "User not found."})
		return
	}
	access, refresh := s.pair(u, newID())
	s.reply(w, http.StatusOK, true, access, refresh, s.userReply(u))
}

// refreshClaims reads and checks the body's refresh token, answering
// otherwise.
func (s *Server) refreshClaims(w http.ResponseWriter, body map[string]any) (claims, bool) {
	f, ok := required(w, body, "refresh")
	if !ok {
		return claims{}, false
	}
	c, ok := s.check(f[0], "refresh")
	if !ok {
		notValid(w)
	}
	return c, ok
}

func (s *Server) refresh(w http.ResponseWriter, body map[string]any) {
	c, ok := s.refreshClaims(w, body)
	if !ok {
		return
	}
	u := s.byID[c.UserID]
	if u == nil {
		notValid(w)
		return
	}
	if s.opts.NoRotation {
		s.reply(w, http.StatusOK, false, s.sign(u, "access", c.Session, s.opts.AccessTTL), "", nil)
		return
	}
	// ROTATE_REFRESH_TOKENS with BLACKLIST_AFTER_ROTATION.
	s.tokens[c.JTI].dead = true
	access, refresh := s.pair(u, c.Session)
	s.reply(w, http.StatusOK, false, access, refresh, nil)
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
	simulator.WriteJSON(w, http.StatusOK, map[string]string{})
}

func (s *Server) expire(w http.ResponseWriter, body map[string]any) {
	c, ok := s.refreshClaims(w, body)
	if !ok {
		return
	}
	s.tokens[c.JTI].dead = true
	s.sessions[c.Session] = true
	simulator.WriteJSON(w, http.StatusOK, map[string]string{})
}

// taxReports is the user API: the access token in a Bearer header.
func (s *Server) taxReports(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Hit("tax_reports")
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		simulator.WriteJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Authentication credentials were not provided."})
		return
	}
	c, ok := s.check(tok, "access")
	if !ok {
		simulator.WriteJSON(w, http.StatusUnauthorized, map[string]any{
			"detail": "Given token not valid for any token type",
			"code":   "token_not_valid",
		})
		return
	}
	company := r.PathValue("company")
	by := ""
	if u := s.byID[c.UserID]; u != nil {
		by = u.username
	}
	simulator.WriteJSON(w, http.StatusOK, map[string]any{
		"count": 1, "next": nil, "previous": nil,
		"results": []map[string]any{{"id": 1, "company": company, "type": "vat", "period": "2025-Q1", "created_by": by}},
	})
}

func notValid(w http.ResponseWriter) {
	simulator.WriteJSON(w, http.StatusUnauthorized, map[string]any{
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
	User      string `json:"username,omitempty"`
	UserID    int    `json:"user_id"`
	Session   string `json:"sid"`
}

func (s *Server) pair(u *user, session string) (access, refresh string) {
	return s.sign(u, "access", session, s.opts.AccessTTL), s.sign(u, "refresh", session, s.opts.RefreshTTL)
}

func (s *Server) sign(u *user, kind, session string, ttl time.Duration) string {
	now := s.opts.Now()
	c := claims{TokenType: kind, Iat: now.Unix(), Exp: now.Add(ttl).Unix(), JTI: newID(),
		UserID: u.id, Session: session}
	if !s.opts.Anonymous {
		c.User = u.username
	}
	s.tokens[c.JTI] = &issued{kind: kind, session: session}
	return simulator.SignJWT(s.key, map[string]string{"alg": "HS256", "typ": "JWT"}, c)
}

// check verifies token's signature, expiry, kind ("" for any) and that it
// was neither blacklisted nor its session ended. The caller holds mu.
func (s *Server) check(token, kind string) (claims, bool) {
	var c claims
	payload, ok := simulator.VerifyJWT(s.key, token)
	if !ok || json.Unmarshal(payload, &c) != nil {
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

func newID() string { return simulator.HexID(16) }
