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
// Assumptions beyond Norman's published guide (marked where they matter):
// replies use either accessToken/refreshToken (create, retrieve) or
// SimpleJWT's access/refresh (refresh); errors are Django REST framework
// bodies ({"detail", "code"} or per-field lists); SimpleJWT marks a bad or
// blacklisted token with 401 and code token_not_valid.
package norman

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
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
// A user that already exists (Norman answers 400 naming the clash, as
// Django does for a unique field: "A user with that username already
// exists.") gets a new pair from token/retrieve instead, so a repeated
// enrollment is harmless.
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
	if r.status == http.StatusBadRequest && userExists(r.body) {
		return p.retrieve(ctx, opExchange, id)
	}
	return nil, p.failure(opExchange, r)
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
	return p.retrieve(ctx, opReenroll, id)
}

func (p *Provider) retrieve(ctx context.Context, op string, id identity) (*providers.Token, error) {
	r, err := p.post(ctx, op, PathRetrieve, id)
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		return nil, p.failure(op, r)
	}
	return p.token(op, r, nil)
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

// token decodes a successful reply. prev, for a refresh, supplies the
// refresh token (and its expiry) when the reply carries none.
func (p *Provider) token(op string, r *reply, prev *providers.Token) (*providers.Token, error) {
	var f map[string]any
	if err := json.Unmarshal(r.body, &f); err != nil || f == nil {
		return nil, &providers.Error{Class: providers.Transient, Op: op, Status: r.status, Err: providers.ErrMalformedReply}
	}
	access, refresh := field(f, "accessToken", "access"), field(f, "refreshToken", "refresh")
	if access == "" {
		return nil, &providers.Error{Class: providers.Transient, Op: op, Status: r.status, Err: providers.ErrMalformedReply}
	}
	now := p.now()
	tok := &providers.Token{AccessToken: access, TokenType: "Bearer", RefreshToken: refresh}
	if exp, ok := jwtExpiry(access, now); ok {
		tok.Expiry = exp
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
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 64<<10 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
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
