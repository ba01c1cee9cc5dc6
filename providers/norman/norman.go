// Package norman is the provider for Norman's institution API
// (https://norman.finance): an institution creates its users and receives
// SimpleJWT access and refresh tokens for them, authenticating every call
// with an Institution header rather than OAuth2 client authentication.
//
// A link is one Norman user. Enrollment creates the user (grant type
// norman_user, identity in the grant's params); refresh, verify and revoke
// are Norman's token/refresh, token/verify and token/expire calls; and when
// a refresh token is rejected, token/retrieve issues a new pair for the
// same user, so a link recovers without the end-user.
//
// Token replies: the guide names accessToken and refreshToken but shows
// no reply. The pair is read in camelCase (accessToken), SimpleJWT's
// spelling (access) or snake_case (access_token), at the top level or one
// level down ({"data": {...}}, {"tokens": {...}}).
//
// Unreadable 2xx replies. A complete 2xx reply that yields no token is a
// configuration error (Misconfigured: the engine fails the link at the
// first such reply, after one request), since the same call gets the
// same answer again, and retrying a refresh that may already have spent
// a rotating refresh token would only turn a clear configuration error
// into a misleading invalid_grant. That is a JSON object with no access
// token in any of these shapes (last_error names its keys), and a body
// that is no JSON object at all: an HTML page (typically settings.base_url
// pointing at a web site, or a proxy's page), plain text, an empty body,
// a JSON array (last_error says which, with the Content-Type, never the
// body). Only a reply cut off on the way stays Transient, retried with
// the link degraded meanwhile: a read error (the body ends before its
// Content-Length), or a body that is the beginning of a JSON value and
// stops short (a connection closed mid-body, a truncating proxy).
//
// "User already exists": when users/create answers 409, or 400 saying
// the user exists, token/retrieve is asked with all three fields the link
// was created with (username, email, external_id). A 404 then means the
// username belongs to another Norman user (code user_exists). A 2xx
// must prove that its tokens are the link's user; the check fails closed:
//   - proof is the link's email or external_id, stated in the reply's
//     "user" object, in the same fields at its top level or one level
//     down, or in the access token's JWT claims. The username alone
//     proves nothing (it is what two people collide on), nor does
//     SimpleJWT's user_id claim (the link does not know its Norman
//     user's id: it never had a token of it);
//   - a reply stating another username, email or external_id is refused
//     (code user_mismatch);
//   - a reply stating neither the link's email nor its external_id, such
//     as {accessToken, refreshToken} with JWTs carrying only SimpleJWT's
//     default claims (token_type, exp, iat, jti, user_id), is refused
//     (code user_unproven).
//
// All three are Permanent and the tokens are dropped: the link fails and
// never holds another person's user. The price of failing closed: if
// Norman's token/retrieve replies name no user, a link for an existing
// username fails with user_unproven even when it is the same person's;
// enroll with a new username. Reenroll (token/retrieve after the link's
// own refresh token was rejected) asks for a user the link created or
// proved at enrollment, and Norman usernames are unique, so there a reply
// that names no user is accepted, and one naming another is refused
// (user_mismatch).
//
// Assumptions that remain, with the seed sentence they rest on:
//   - "Access tokens are valid for a limited period of time (usually 30
//     minutes)": the JWT exp claim is read, then expires_in/expiresIn if
//     sent, else settings.access_token_lifetime (default 30m).
//   - "Generate New Access and Refresh Token ... -d {username,
//     external_id, email}": token/retrieve identifies the user by these;
//     whether it needs all three or matches fewer is not said, nor what
//     it answers, hence the proof demanded of its reply (above).
//   - "Norman API requests and responses are in JSON format": a 2xx
//     that is no JSON object is not Norman's API answering.
//   - "Revoke Token ... -d {refresh}": token/expire takes the refresh
//     token; the access token runs out by itself.
//   - not in the seed: errors are Django REST framework bodies
//     ({"detail", "code"} or per-field lists); SimpleJWT marks a bad or
//     blacklisted token with 401 and code token_not_valid; a taken
//     username is 400 with "already exists" in the body, or 409.
package norman

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
)

// KindName is the catalog kind of this package.
const KindName = "norman"

// GrantUser is the grant type that creates (or finds) a Norman user.
const GrantUser = "norman_user"

// DefaultAccessLifetime is assumed when an access token is not a JWT with
// an exp claim: Norman's guide says access tokens last "usually 30
// minutes" and its replies carry no expires_in.
const DefaultAccessLifetime = 30 * time.Minute

// Paths of the institution API, relative to base_url.
const (
	PathCreate   = "/api/v1/institution/users/create/"
	PathRefresh  = "/api/v1/institution/users/token/refresh/"
	PathVerify   = "/api/v1/institution/users/token/verify/"
	PathExpire   = "/api/v1/institution/users/token/expire/"
	PathRetrieve = "/api/v1/institution/users/token/retrieve/"
)

// Params of a norman_user grant: the Norman user a link stands for. The
// catalog entry must list them in allowed_params.
const (
	ParamUsername   = "username"
	ParamEmail      = "email"
	ParamExternalID = "external_id"
)

// CodeTokenNotValid is SimpleJWT's code for a bad, expired or
// blacklisted token.
const CodeTokenNotValid = "token_not_valid"

// Codes of this package's own errors about a link's Norman user.
const (
	// CodeUserExists: users/create says the user exists, but
	// token/retrieve finds none with all of the link's fields.
	CodeUserExists = "user_exists"
	// CodeUserMismatch: token/retrieve answered with tokens of a user
	// whose fields differ from the link's.
	CodeUserMismatch = "user_mismatch"
	// CodeUserUnproven: users/create says the user exists, and
	// token/retrieve answered with tokens whose reply states neither the
	// link's email nor its external_id, so nothing shows they are the
	// link's user rather than another person's with the same username.
	CodeUserUnproven = "user_unproven"
)

// Operation names in errors.
const (
	opExchange = "exchange"
	opRefresh  = "refresh"
	opVerify   = "verify"
	opRevoke   = "revoke"
	opReenroll = "reenroll"
)

// New is the providers.Kind of this package.
func New() providers.Config { return &Config{} }

// Config is the settings block of kind norman.
type Config struct {
	// BaseURL is Norman's API root, e.g. https://sandbox.norman.finance.
	BaseURL string `yaml:"base_url"`
	// AccessTokenLifetime is assumed for an access token whose expiry
	// cannot be read from its JWT exp claim. Default 30m.
	AccessTokenLifetime providers.Duration `yaml:"access_token_lifetime"`
}

// Validate lists what is wrong with e for kind norman.
func (c *Config) Validate(e providers.Entry) error {
	var errs []error
	if c.BaseURL == "" {
		errs = append(errs, errors.New("settings.base_url is required for kind norman"))
	} else if !providers.AbsoluteHTTP(c.BaseURL) {
		errs = append(errs, fmt.Errorf("settings.base_url %q is not an absolute http(s) URL", c.BaseURL))
	}
	if c.AccessTokenLifetime < 0 {
		errs = append(errs, errors.New("settings.access_token_lifetime must not be negative"))
	}
	for _, g := range e.Grants {
		if g != GrantUser {
			errs = append(errs, fmt.Errorf("grant %q is not supported by kind norman; supported: %s", g, GrantUser))
		}
	}
	if strings.Contains(e.ClientID, ":") {
		// The header is institution_id:secret_key; a colon in the id
		// would make it ambiguous.
		errs = append(errs, errors.New("client_id (the Norman institution_id) must not contain ':'"))
	}
	if e.ClientSecret.IsZero() {
		errs = append(errs, errors.New("client_secret (the Norman institution secret_key) is required for kind norman"))
	}
	for _, p := range []string{ParamUsername, ParamEmail, ParamExternalID} {
		if !slices.Contains(e.AllowedParams, p) {
			errs = append(errs, fmt.Errorf("allowed_params must include %q: a norman_user link names its user in params", p))
		}
	}
	if (e.Endpoint != providers.Endpoint{}) {
		errs = append(errs, errors.New("endpoint is not used by kind norman; set settings.base_url"))
	}
	if len(e.TokenParams) > 0 || len(e.AuthParams) > 0 {
		errs = append(errs, errors.New("token_params and auth_params are not used by kind norman"))
	}
	return errors.Join(errs...)
}

// Open builds the provider.
func (c *Config) Open(_ context.Context, e providers.Entry, s providers.Setup) (providers.Provider, error) {
	if err := c.Validate(e); err != nil {
		return nil, err
	}
	if s.ClientSecret == "" {
		return nil, errors.New("the institution secret_key (client_secret) resolved to an empty value")
	}
	life := time.Duration(c.AccessTokenLifetime)
	if life == 0 {
		life = DefaultAccessLifetime
	}
	return NewProvider(c.BaseURL, e.ClientID, s.ClientSecret, life, s.HTTPClient)
}

// Provider talks to one Norman institution API. It is safe for
// concurrent use.
type Provider struct {
	base string
	// institution is the Institution header value; it holds the secret.
	institution string
	lifetime    time.Duration
	client      *http.Client
	// now is the clock for expiries; tests replace it.
	now func() time.Time
}

var (
	_ providers.Provider   = (*Provider)(nil)
	_ providers.Verifier   = (*Provider)(nil)
	_ providers.Revoker    = (*Provider)(nil)
	_ providers.Reenroller = (*Provider)(nil)
)

// NewProvider builds a provider for the institution API at baseURL.
// lifetime is the assumed access token lifetime (zero means the default);
// client nil means one with providers.DefaultHTTPTimeout.
func NewProvider(baseURL, institutionID, secretKey string, lifetime time.Duration, client *http.Client) (*Provider, error) {
	if !providers.AbsoluteHTTP(baseURL) {
		return nil, fmt.Errorf("base URL %q is not an absolute http(s) URL", baseURL)
	}
	if institutionID == "" || strings.Contains(institutionID, ":") {
		return nil, errors.New("institution id must be non-empty and without ':'")
	}
	if secretKey == "" {
		return nil, errors.New("institution secret key is empty")
	}
	if lifetime <= 0 {
		lifetime = DefaultAccessLifetime
	}
	return &Provider{
		base:        strings.TrimSuffix(baseURL, "/"),
		institution: institutionID + ":" + secretKey,
		lifetime:    lifetime,
		client:      providers.HTTPClient(client),
		now:         time.Now,
	}, nil
}

// identity is the Norman user of a grant.
type identity struct {
	Username   string `json:"username"`
	Email      string `json:"email"`
	ExternalID string `json:"external_id"`
}

// identityOf reads the user from g's params; username may also come from
// the grant's username.
func identityOf(op string, g providers.Grant) (identity, error) {
	id := identity{
		Username:   g.Params[ParamUsername],
		Email:      g.Params[ParamEmail],
		ExternalID: g.Params[ParamExternalID],
	}
	if id.Username == "" {
		id.Username = g.Username
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{ParamUsername, id.Username}, {ParamEmail, id.Email}, {ParamExternalID, id.ExternalID},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return id, &providers.Error{Class: providers.Permanent, Op: op,
			Err: fmt.Errorf("grant %s needs params %s", GrantUser, strings.Join(missing, ", "))}
	}
	return id, nil
}

// Exchange creates the link's Norman user and returns its first tokens.
// A user that already exists (Norman answers 409, or 400 naming the
// clash as Django does for a unique field: "A user with that username
// already exists.") gets a new pair from token/retrieve instead, so a
// repeated enrollment is harmless; retrieve refuses another person's
// user (see the package comment).
func (p *Provider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	if g.Type != GrantUser {
		return nil, &providers.Error{Class: providers.Permanent, Op: opExchange,
			Err: fmt.Errorf("grant %q: %w", g.Type, providers.ErrUnsupported)}
	}
	id, err := identityOf(opExchange, g)
	if err != nil {
		return nil, err
	}
	r, err := p.post(ctx, opExchange, PathCreate, id)
	if err != nil {
		return nil, err
	}
	if r.ok() {
		return p.token(opExchange, r, nil)
	}
	if exists(r) {
		tok, err := p.retrieve(ctx, opExchange, id, true)
		var pe *providers.Error
		if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
			// Norman says the user exists, yet knows no user with all
			// three fields: another person holds the username (or the
			// email, or the external_id).
			return nil, &providers.Error{Class: providers.Permanent, Op: opExchange, Status: pe.Status,
				Code: CodeUserExists, Description: "users/create says the user exists, and token/retrieve finds none with this username, email and external_id: they belong to another Norman user"}
		}
		return tok, err
	}
	return nil, p.failure(opExchange, r)
}

// exists reports whether a users/create failure says the user is already
// there: 409 Conflict, or 400 with Django's "already exists" wording.
func exists(r *reply) bool {
	return r.status == http.StatusConflict || (r.status == http.StatusBadRequest && userExists(r.body))
}

// Reenroll asks token/retrieve for a new pair for the grant's user after
// its refresh token was rejected (expired or blacklisted).
func (p *Provider) Reenroll(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	if g.Type != GrantUser {
		return nil, &providers.Error{Class: providers.Permanent, Op: opReenroll,
			Err: fmt.Errorf("grant %q: %w", g.Type, providers.ErrUnsupported)}
	}
	id, err := identityOf(opReenroll, g)
	if err != nil {
		return nil, err
	}
	return p.retrieve(ctx, opReenroll, id, false)
}

// retrieve asks token/retrieve for a new pair for id, always with all
// three identifying fields, and refuses a pair that the reply shows to
// belong to someone else (see owner) or, when prove is set, that it does
// not show to be id's (see proves). The refused tokens are dropped,
// never stored; they are not expired either, since token/expire might
// end the other user's session.
func (p *Provider) retrieve(ctx context.Context, op string, id identity, prove bool) (*providers.Token, error) {
	r, err := p.post(ctx, op, PathRetrieve, id)
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		return nil, p.failure(op, r)
	}
	tok, err := p.token(op, r, nil)
	if err != nil {
		return nil, err
	}
	said := owner(r.body, tok.AccessToken)
	if mismatch := said.differs(id); len(mismatch) > 0 {
		return nil, &providers.Error{Class: providers.Permanent, Op: op, Status: r.status, Code: CodeUserMismatch,
			Description: "token/retrieve answered for a Norman user whose " + strings.Join(mismatch, ", ") +
				" differ from the link's: the username belongs to another person; enroll with another username"}
	}
	if prove && !said.proves(id) {
		return nil, &providers.Error{Class: providers.Permanent, Op: op, Status: r.status, Code: CodeUserUnproven,
			Description: "the username exists and token/retrieve's reply names neither the link's email nor its " +
				"external_id, so its tokens may be another person's; dropped. Enroll with another username"}
	}
	return tok, nil
}

// owner collects what a token reply says about the user the tokens
// belong to: a "user" object (users/create answers one), the same
// fields at the top level or one level down, and the claims of a JWT
// access token. Fields the reply does not state stay empty.
func owner(body []byte, access string) identity {
	var id identity
	take := func(m map[string]any) {
		if m == nil {
			return
		}
		if id.Username == "" {
			id.Username = field(m, "username")
		}
		if id.Email == "" {
			id.Email = field(m, "email")
		}
		if id.ExternalID == "" {
			id.ExternalID = field(m, "external_id", "externalId")
		}
	}
	var f map[string]any
	_ = json.Unmarshal(body, &f)
	take(f)
	for _, k := range sortedKeys(f) {
		if m, ok := f[k].(map[string]any); ok {
			take(m)
		}
	}
	take(jwtClaims(access))
	return id
}

// differs names the fields of what (as told by a reply) that contradict
// id; a field the reply did not state contradicts nothing. Emails
// compare without case.
func (what identity) differs(id identity) []string {
	var out []string
	if what.Username != "" && what.Username != id.Username {
		out = append(out, ParamUsername)
	}
	if what.Email != "" && !strings.EqualFold(what.Email, id.Email) {
		out = append(out, ParamEmail)
	}
	if what.ExternalID != "" && what.ExternalID != id.ExternalID {
		out = append(out, ParamExternalID)
	}
	return out
}

// proves reports whether what (as told by a reply) shows the tokens to
// be id's: it states id's email or external_id, the fields that tell
// apart two people asking for one username. The username cannot: it is
// what they share. Meaningful only when differs found nothing.
func (what identity) proves(id identity) bool {
	return (what.Email != "" && strings.EqualFold(what.Email, id.Email)) ||
		(what.ExternalID != "" && what.ExternalID == id.ExternalID)
}

// Refresh trades t's refresh token for a new access token. SimpleJWT
// sends a new refresh token only when ROTATE_REFRESH_TOKENS is on (and
// then blacklists the old one); without one, t's is kept.
func (p *Provider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	if t == nil || t.RefreshToken == "" {
		return nil, &providers.Error{Class: providers.InvalidGrant, Op: opRefresh, Err: errors.New("no refresh token")}
	}
	r, err := p.post(ctx, opRefresh, PathRefresh, map[string]string{"refresh": t.RefreshToken})
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		return nil, p.failure(opRefresh, r)
	}
	return p.token(opRefresh, r, t)
}

// Verify asks Norman whether t's access token is still good. A token
// Norman rejects gives an InvalidGrant *providers.Error with code
// token_not_valid: the access token is spent, not necessarily the link
// (a refresh may still work).
func (p *Provider) Verify(ctx context.Context, t *providers.Token) error {
	if t == nil || t.AccessToken == "" {
		return &providers.Error{Class: providers.InvalidGrant, Op: opVerify, Err: errors.New("no access token")}
	}
	r, err := p.post(ctx, opVerify, PathVerify, map[string]string{"token": t.AccessToken})
	if err != nil {
		return err
	}
	if !r.ok() {
		return p.failure(opVerify, r)
	}
	return nil
}

// Revoke expires t's refresh token (Norman's token/expire takes only the
// refresh token; the access token runs out by itself). A token Norman
// already rejects counts as revoked.
func (p *Provider) Revoke(ctx context.Context, t *providers.Token) error {
	if t == nil || t.RefreshToken == "" {
		return nil
	}
	r, err := p.post(ctx, opRevoke, PathExpire, map[string]string{"refresh": t.RefreshToken})
	if err != nil {
		return err
	}
	if r.ok() {
		return nil
	}
	e := p.failure(opRevoke, r)
	if e.Code == CodeTokenNotValid {
		return nil
	}
	return e
}

// reply is an HTTP answer from Norman. body may hold tokens; it never
// leaves this package.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r *reply) ok() bool { return r.status >= 200 && r.status < 300 }

// post sends v as JSON to path with the Institution header.
func (p *Provider) post(ctx context.Context, op, path string, v any) (*reply, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, &providers.Error{Class: providers.Permanent, Op: op, Err: errors.New("cannot encode request")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &providers.Error{Class: providers.Permanent, Op: op, Err: errors.New("bad base URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Institution", p.institution)
	resp, b, err := providers.Send(p.client, op, req)
	if err != nil {
		return nil, err
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// failure classifies a non-2xx reply from its DRF error fields. SimpleJWT's
// token_not_valid means the token sent is spent (InvalidGrant); any other
// 4xx, such as a rejected Institution header, needs an operator
// (Permanent); 5xx and 429 are retried.
func (p *Provider) failure(op string, r *reply) *providers.Error {
	var f struct {
		Detail any    `json:"detail"`
		Code   string `json:"code"`
	}
	_ = json.Unmarshal(r.body, &f)
	detail, _ := f.Detail.(string)
	e := providers.ResponseError(op, r.status, r.header, f.Code, detail)
	if f.Code == CodeTokenNotValid && r.status >= 400 && r.status < 500 && r.status != http.StatusTooManyRequests {
		e.Class = providers.InvalidGrant
	}
	return e
}

// Spellings of the token reply's fields, in the order they are read:
// Norman's guide (camelCase), SimpleJWT's, and OAuth2's snake_case.
var (
	accessKeys  = []string{"accessToken", "access_token", "access"}
	refreshKeys = []string{"refreshToken", "refresh_token", "refresh"}
	expiresKeys = []string{"expiresIn", "expires_in"}
	// wrapperKeys are looked into first when the pair is one level down;
	// any other object value is looked into after them, by key order.
	wrapperKeys = []string{"tokens", "token", "data", "result", "auth"}
)

// ErrUnknownReplyShape is the cause of a Misconfigured *providers.Error
// for a 2xx reply that is a JSON object with no access token in any
// shape this package reads.
var ErrUnknownReplyShape = errors.New("2xx token reply in an unknown shape")

// ErrNotJSON is the cause of a Misconfigured *providers.Error for a
// complete 2xx reply that is no JSON object: an HTML page, text, an
// empty body, a JSON array.
var ErrNotJSON = errors.New("2xx token reply is not a JSON object")

// token decodes a successful reply. prev, for a refresh, supplies the
// refresh token (and its expiry) when the reply carries none.
//
// The pair is read at the top level or one level down ({"data": {...}},
// {"tokens": {...}}), in any spelling of accessKeys and refreshKeys. A
// body cut short (see cutShort) is Transient: it was cut off on the way,
// worth another attempt. Any other body that is not a JSON object (an
// HTML page, text, nothing), and a JSON object without an access token
// anywhere, is Misconfigured at once: the same call gets the same answer
// again, and a refresh answered that way may already have spent a
// rotating refresh token, so retrying would only turn a clear
// configuration error into a misleading invalid_grant.
func (p *Provider) token(op string, r *reply, prev *providers.Token) (*providers.Token, error) {
	var f map[string]any
	if err := json.Unmarshal(r.body, &f); err != nil || f == nil {
		if cutShort(r.body) {
			return nil, &providers.Error{Class: providers.Transient, Op: op, Status: r.status, Err: providers.ErrMalformedReply}
		}
		return nil, &providers.Error{Class: providers.Misconfigured, Op: op, Status: r.status,
			Err: fmt.Errorf("%w (%s); Norman's API answers JSON: check settings.base_url", ErrNotJSON, describe(r))}
	}
	pair := tokenObject(f)
	if pair == nil {
		return nil, &providers.Error{Class: providers.Misconfigured, Op: op, Status: r.status,
			Err: fmt.Errorf("%w (keys: %s); Norman's replies are not what kind norman reads", ErrUnknownReplyShape, keyList(f))}
	}
	access, refresh := field(pair, accessKeys...), field(pair, refreshKeys...)
	now := p.now()
	tok := &providers.Token{AccessToken: access, TokenType: "Bearer", RefreshToken: refresh}
	if exp, ok := jwtExpiry(access, now); ok {
		tok.Expiry = exp
	} else if secs, ok := seconds(pair, expiresKeys...); ok {
		tok.Expiry = now.Add(secs)
	} else {
		tok.Expiry = now.Add(p.lifetime)
	}
	switch {
	case refresh != "":
		// A JWT refresh token tells when it dies, so the engine can
		// refresh an idle link before it does.
		if exp, ok := jwtExpiry(refresh, now); ok {
			tok.RefreshExpiry = exp
		}
	case prev != nil:
		tok.RefreshToken, tok.RefreshExpiry = prev.RefreshToken, prev.RefreshExpiry
	}
	return tok, nil
}

// cutShort reports whether body is the beginning of a JSON value that
// stops before the value ends, as a reply cut off on the way does (a
// connection closed mid-body without a Content-Length to tell, a proxy
// that truncates). A body of providers.MaxReplyBody was cut by Send, not
// on the way: no token reply is that long.
func cutShort(body []byte) bool {
	if len(body) >= providers.MaxReplyBody {
		return false
	}
	var v any
	return errors.Is(json.NewDecoder(bytes.NewReader(body)).Decode(&v), io.ErrUnexpectedEOF)
}

// mediaTypeRE is what a Content-Type must look like to be named in an
// error.
var mediaTypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]{0,30}/[a-z0-9][a-z0-9.+-]{0,40}$`)

// describe says what a 2xx body that is no JSON object is, for an error
// message: a kind and the Content-Type, never any of its content.
func describe(r *reply) string {
	b := bytes.TrimSpace(r.body)
	var kind string
	switch {
	case len(b) == 0:
		kind = "empty"
	case b[0] == '<':
		kind = "HTML or XML"
	case json.Valid(b):
		kind = "JSON, but no object"
	default:
		kind = "no JSON"
	}
	if mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type")); err == nil && mediaTypeRE.MatchString(mt) {
		kind += ", Content-Type " + mt
	}
	return kind
}

// tokenObject returns the object of f that holds the access token: f
// itself, or one of its object values (wrapperKeys first).
func tokenObject(f map[string]any) map[string]any {
	if field(f, accessKeys...) != "" {
		return f
	}
	keys := slices.Clone(wrapperKeys)
	for _, k := range sortedKeys(f) {
		if !slices.Contains(wrapperKeys, k) {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if m, ok := f[k].(map[string]any); ok && field(m, accessKeys...) != "" {
			return m
		}
	}
	return nil
}

// seconds reads a positive lifetime in seconds, capped at maxLifetime.
func seconds(f map[string]any, names ...string) (time.Duration, bool) {
	for _, n := range names {
		if v, ok := f[n].(float64); ok && v > 0 && v <= maxLifetime.Seconds() {
			return time.Duration(v * float64(time.Second)), true
		}
	}
	return 0, false
}

// keyNameRE is what a key must look like to be named in an error: a
// field name, never something long enough to be a token.
var keyNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,31}$`)

// keyList names f's top-level keys for an error message: at most eight,
// only those that look like field names.
func keyList(f map[string]any) string {
	var out []string
	for _, k := range sortedKeys(f) {
		if len(out) == 8 {
			out = append(out, "...")
			break
		}
		if keyNameRE.MatchString(k) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// field returns the first of names that f holds as a non-empty string.
func field(f map[string]any, names ...string) string {
	for _, n := range names {
		if s, ok := f[n].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// userExists reports whether a 400 from users/create says the user is
// already there. DRF puts such messages in per-field lists or in detail;
// any string in the body mentioning "already exists" counts.
func userExists(body []byte) bool {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return false
	}
	var walk func(v any, depth int) bool
	walk = func(v any, depth int) bool {
		if depth > 4 {
			return false
		}
		switch x := v.(type) {
		case string:
			s := strings.ToLower(x)
			return strings.Contains(s, "already exists") || strings.Contains(s, "already registered")
		case []any:
			for _, y := range x {
				if walk(y, depth+1) {
					return true
				}
			}
		case map[string]any:
			for _, y := range x {
				if walk(y, depth+1) {
					return true
				}
			}
		}
		return false
	}
	return walk(v, 0)
}

// maxLifetime bounds expiries read from tokens.
const maxLifetime = 10 * 365 * 24 * time.Hour

// jwtExpiry reads the exp claim of a JWT without checking its signature:
// the token came straight from Norman, and exp only schedules our next
// refresh. An exp not after now is ignored.
func jwtExpiry(token string, now time.Time) (time.Time, bool) {
	payload := jwtPayload(token)
	if payload == nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, false
	}
	exp, err := claims.Exp.Float64()
	if err != nil || math.IsNaN(exp) || exp <= float64(now.Unix()) || exp > float64(now.Add(maxLifetime).Unix()) {
		return time.Time{}, false
	}
	return time.Unix(int64(exp), 0), true
}

// jwtPayload is the decoded middle part of a JWT, nil for anything else.
func jwtPayload(token string) []byte {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 64<<10 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	return payload
}

// jwtClaims are a JWT's claims, unverified (see jwtExpiry), nil for a
// token that is not a JWT.
func jwtClaims(token string) map[string]any {
	var m map[string]any
	if p := jwtPayload(token); p != nil && json.Unmarshal(p, &m) == nil {
		return m
	}
	return nil
}
