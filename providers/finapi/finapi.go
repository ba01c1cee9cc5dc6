// Package finapi is the provider for finAPI Access (https://www.finapi.io):
// OAuth 2.0 with client credentials in the request body, users that the
// client creates itself with a client token, and user tokens by the
// password grant.
//
// The seed guide names POST /oauth/token and POST /users relative to the
// Access base; finAPI Access v2 serves them as /api/v2/oauth/token,
// /api/v2/users and /api/v2/oauth/revoke, which is what this package calls
// under settings.base_url.
//
// The client token (client_credentials) that user creation and
// revocation need is cached in the provider and fetched again shortly
// before it expires. The issue asks for a per-provider client link kept
// alive by the engine like any other; an in-memory cache is the simpler
// first step: a restart costs one extra token request, and nothing of it
// reaches Vault.
package finapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/generic"
)

// KindName is the catalog kind of this package.
const KindName = "finapi"

// Paths of finAPI Access v2, relative to base_url.
const (
	PathToken  = "/api/v2/oauth/token"
	PathUsers  = "/api/v2/users"
	PathRevoke = "/api/v2/oauth/revoke"
)

// Params of a password grant that ask for the user to be created first.
// The catalog entry must list the ones callers may send in allowed_params.
const (
	// ParamCreateUser "true" creates the user (id = the grant's username,
	// password = the grant's password) before logging in. A user that
	// exists already (422 ENTITY_EXISTS) is simply logged in.
	ParamCreateUser = "create_user"
	ParamEmail      = "email"
	ParamPhone      = "phone"
	// ParamAutoUpdate is finAPI's isAutoUpdateEnabled, "true" or "false".
	ParamAutoUpdate = "isAutoUpdateEnabled"
)

// DefaultClientTokenMargin is how long before its expiry the cached
// client token is replaced.
const DefaultClientTokenMargin = time.Minute

// Error codes finAPI uses outside the token endpoint.
const (
	CodeEntityExists = "ENTITY_EXISTS"
	CodeUserLocked   = "USER_LOCKED"
)

// Operation names in errors.
const (
	opExchange    = "exchange"
	opRefresh     = "refresh"
	opRevoke      = "revoke"
	opClientToken = "client_token"
	opCreateUser  = "create_user"
)

var supportedGrants = []string{providers.GrantPassword, providers.GrantClientCredentials}

// New is the providers.Kind of this package.
func New() providers.Config { return &Config{} }

// Config is the settings block of kind finapi.
type Config struct {
	// BaseURL is the finAPI Access root, e.g. https://sandbox.finapi.io.
	BaseURL string `yaml:"base_url"`
	// ClientTokenMargin is how early the cached client token is renewed.
	// Default 1m; never more than half the token's lifetime.
	ClientTokenMargin providers.Duration `yaml:"client_token_margin"`
}

// Validate lists what is wrong with e for kind finapi.
func (c *Config) Validate(e providers.Entry) error {
	var errs []error
	if c.BaseURL == "" {
		errs = append(errs, errors.New("settings.base_url is required for kind finapi"))
	} else if !providers.AbsoluteHTTP(c.BaseURL) {
		errs = append(errs, fmt.Errorf("settings.base_url %q is not an absolute http(s) URL", c.BaseURL))
	}
	if c.ClientTokenMargin < 0 {
		errs = append(errs, errors.New("settings.client_token_margin must not be negative"))
	}
	for _, g := range e.Grants {
		if !slices.Contains(supportedGrants, g) {
			errs = append(errs, fmt.Errorf("grant %q is not supported by kind finapi; supported: %s", g, strings.Join(supportedGrants, ", ")))
		}
	}
	if e.ClientSecret.IsZero() {
		errs = append(errs, errors.New("client_secret is required for kind finapi"))
	}
	if e.AuthStyle == providers.AuthStyleHeader || e.AuthStyle == providers.AuthStyleNone {
		errs = append(errs, fmt.Errorf("auth_style %s: finAPI takes client credentials in the body; leave auth_style out or set body", e.AuthStyle))
	}
	if (e.Endpoint != providers.Endpoint{}) {
		errs = append(errs, errors.New("endpoint is not used by kind finapi; set settings.base_url"))
	}
	if len(e.AuthParams) > 0 || len(e.TokenParams) > 0 {
		errs = append(errs, errors.New("auth_params and token_params are not used by kind finapi"))
	}
	return errors.Join(errs...)
}

// Open builds the provider.
func (c *Config) Open(_ context.Context, e providers.Entry, s providers.Setup) (providers.Provider, error) {
	if err := c.Validate(e); err != nil {
		return nil, err
	}
	if s.ClientSecret == "" {
		return nil, errors.New("client_secret resolved to an empty value")
	}
	margin := time.Duration(c.ClientTokenMargin)
	if margin == 0 {
		margin = DefaultClientTokenMargin
	}
	p, err := NewProvider(c.BaseURL, e.ClientID, s.ClientSecret, s.HTTPClient)
	if err != nil {
		return nil, err
	}
	p.margin = margin
	p.scopes = e.Scopes
	p.grants = e.Grants
	return p, nil
}

// Provider talks to one finAPI Access client. It is safe for concurrent
// use.
type Provider struct {
	base     string
	clientID string
	secret   string
	client   *http.Client
	margin   time.Duration
	scopes   []string
	// grants limits Exchange to the entry's grants; nil allows all
	// supported ones.
	grants []string
	// now is the clock; tests replace it.
	now func() time.Time

	// lock guards the cached client token; a channel rather than a mutex
	// so that a caller waiting on another's fetch honours its context.
	lock      chan struct{}
	ct        string
	ctRefresh time.Time // when to fetch a new one
}

var (
	_ providers.Provider         = (*Provider)(nil)
	_ providers.Revoker          = (*Provider)(nil)
	_ providers.EndpointReporter = (*Provider)(nil)
)

// NewProvider builds a provider for the finAPI Access at baseURL. client
// nil means one with providers.DefaultHTTPTimeout.
func NewProvider(baseURL, clientID, clientSecret string, client *http.Client) (*Provider, error) {
	if !providers.AbsoluteHTTP(baseURL) {
		return nil, fmt.Errorf("base URL %q is not an absolute http(s) URL", baseURL)
	}
	if clientID == "" || clientSecret == "" {
		return nil, errors.New("client id and client secret are required")
	}
	return &Provider{
		base:     strings.TrimSuffix(baseURL, "/"),
		clientID: clientID,
		secret:   clientSecret,
		client:   providers.HTTPClient(client),
		margin:   DefaultClientTokenMargin,
		now:      time.Now,
		lock:     make(chan struct{}, 1),
	}, nil
}

// Endpoint reports the URLs in use.
func (p *Provider) Endpoint() providers.Endpoint {
	return providers.Endpoint{TokenURL: p.base + PathToken, RevocationURL: p.base + PathRevoke}
}

// Exchange obtains a link's first token: a user token by the password
// grant (creating the user first when params ask for it), or a client
// token for a client_credentials link. The engine calls it again with
// the stored grant when a refresh token dies, so a repeated creation
// must be, and is, harmless.
func (p *Provider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	if p.grants != nil && !slices.Contains(p.grants, g.Type) {
		return nil, unsupported(opExchange, g.Type)
	}
	switch g.Type {
	case providers.GrantClientCredentials:
		return p.tokenRequest(ctx, opExchange, url.Values{"grant_type": {"client_credentials"}}, nil)
	case providers.GrantPassword:
	default:
		return nil, unsupported(opExchange, g.Type)
	}
	if g.Username == "" || g.Password == "" {
		// finAPI users are created with a password chosen here; the
		// caller supplies it in credentials so that it lives only in
		// Vault with the grant, ready for the next login.
		return nil, &providers.Error{Class: providers.Permanent, Op: opExchange,
			Err: errors.New("the password grant needs a username and a password")}
	}
	if create, err := boolParam(g.Params, ParamCreateUser); err != nil {
		return nil, &providers.Error{Class: providers.Permanent, Op: opExchange, Err: err}
	} else if create {
		if err := p.createUser(ctx, g); err != nil {
			return nil, err
		}
	}
	form := url.Values{"grant_type": {"password"}, "username": {g.Username}, "password": {g.Password}}
	scopes := g.Scopes
	if len(scopes) == 0 {
		scopes = p.scopes
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	return p.tokenRequest(ctx, opExchange, form, []string{g.Password})
}

// Refresh uses t's refresh token. A reply without a refresh token keeps
// t's (finAPI, built on Spring's OAuth2 server, may reuse it).
func (p *Provider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	if t == nil || t.RefreshToken == "" {
		return nil, &providers.Error{Class: providers.InvalidGrant, Op: opRefresh, Err: errors.New("no refresh token")}
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t.RefreshToken}}
	tok, err := p.tokenRequest(ctx, opRefresh, form, []string{t.RefreshToken, t.AccessToken})
	if err != nil {
		return nil, err
	}
	generic.KeepRefreshed(t, tok)
	return tok, nil
}

// Revoke revokes t's refresh token, then its access token, with the
// client token as bearer. RFC 7009 answers 200 for a token already
// invalid, so a repeat is fine.
func (p *Provider) Revoke(ctx context.Context, t *providers.Token) error {
	if t == nil {
		return nil
	}
	for _, x := range []struct{ tok, hint string }{
		{t.RefreshToken, "refresh_token"},
		{t.AccessToken, "access_token"},
	} {
		if x.tok == "" {
			continue
		}
		form := url.Values{"token": {x.tok}, "token_type_hint": {x.hint}}
		r, err := p.withClientToken(ctx, opRevoke, func(bearer string) (*reply, error) {
			return p.do(ctx, opRevoke, PathRevoke, "application/x-www-form-urlencoded",
				[]byte(form.Encode()), bearer)
		})
		if err != nil {
			return err
		}
		if !r.ok() {
			e := failure(opRevoke, r, t.RefreshToken, t.AccessToken)
			if e.Code == "unsupported_token_type" {
				continue
			}
			return e
		}
	}
	return nil
}

// createUser creates the grant's user with the client token.
func (p *Provider) createUser(ctx context.Context, g providers.Grant) error {
	body := map[string]any{"id": g.Username, "password": g.Password}
	if v := g.Params[ParamEmail]; v != "" {
		body["email"] = v
	}
	if v := g.Params[ParamPhone]; v != "" {
		body["phone"] = v
	}
	auto, err := boolParam(g.Params, ParamAutoUpdate)
	if err != nil {
		return &providers.Error{Class: providers.Permanent, Op: opCreateUser, Err: err}
	}
	body["isAutoUpdateEnabled"] = auto
	b, err := json.Marshal(body)
	if err != nil {
		return &providers.Error{Class: providers.Permanent, Op: opCreateUser, Err: errors.New("cannot encode user")}
	}
	r, err := p.withClientToken(ctx, opCreateUser, func(bearer string) (*reply, error) {
		return p.do(ctx, opCreateUser, PathUsers, "application/json", b, bearer)
	})
	if err != nil {
		return err
	}
	if r.ok() {
		return nil
	}
	e := failure(opCreateUser, r, g.Password)
	if e.Code == CodeEntityExists {
		return nil
	}
	return e
}

// clientToken returns a client token, fetching one when the cached one
// is due for renewal.
func (p *Provider) clientToken(ctx context.Context) (string, error) {
	select {
	case p.lock <- struct{}{}:
	case <-ctx.Done():
		return "", providers.Classify(opClientToken, ctx.Err())
	}
	defer func() { <-p.lock }()
	now := p.now()
	if p.ct != "" && now.Before(p.ctRefresh) {
		return p.ct, nil
	}
	tok, err := p.tokenRequest(ctx, opClientToken, url.Values{"grant_type": {"client_credentials"}}, nil)
	if err != nil {
		return "", err
	}
	expiry := tok.Expiry
	if expiry.IsZero() {
		// finAPI always says; assume its usual hour if it did not.
		expiry = now.Add(3599 * time.Second)
	}
	early := min(p.margin, expiry.Sub(now)/2)
	p.ct, p.ctRefresh = tok.AccessToken, expiry.Add(-early)
	return p.ct, nil
}

// dropClientToken forgets bearer if it is still the cached token.
func (p *Provider) dropClientToken(bearer string) {
	p.lock <- struct{}{}
	if p.ct == bearer {
		p.ct = ""
	}
	<-p.lock
}

// withClientToken runs call with a client token; when finAPI answers 401
// (the token was revoked or the server forgot it) it fetches a new one
// and tries once more.
func (p *Provider) withClientToken(ctx context.Context, op string, call func(bearer string) (*reply, error)) (*reply, error) {
	for attempt := 0; ; attempt++ {
		bearer, err := p.clientToken(ctx)
		if err != nil {
			var pe *providers.Error
			if errors.As(err, &pe) {
				c := *pe
				c.Op = op + ": " + opClientToken
				return nil, &c
			}
			return nil, err
		}
		r, err := call(bearer)
		if err != nil || r.status != http.StatusUnauthorized || attempt > 0 {
			return r, err
		}
		p.dropClientToken(bearer)
	}
}

// tokenRequest posts form to the token endpoint with the client
// credentials in the body. sent lists secrets of the request besides the
// client secret, which are scrubbed from any error description.
func (p *Provider) tokenRequest(ctx context.Context, op string, form url.Values, sent []string) (*providers.Token, error) {
	form.Set("client_id", p.clientID)
	form.Set("client_secret", p.secret)
	r, err := p.do(ctx, op, PathToken, "application/x-www-form-urlencoded", []byte(form.Encode()), "")
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		return nil, failure(op, r, append(sent, p.secret)...)
	}
	tok, code, _, perr := generic.ParseTokenReply(r.header.Get("Content-Type"), r.body, p.now())
	if code != "" {
		return nil, failure(op, r, append(sent, p.secret)...)
	}
	if perr != nil {
		return nil, &providers.Error{Class: providers.Transient, Op: op, Status: r.status, Err: perr}
	}
	return tok, nil
}

// reply is an HTTP answer from finAPI. body may hold tokens; it never
// leaves this package.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r *reply) ok() bool { return r.status >= 200 && r.status < 300 }

func (p *Provider) do(ctx context.Context, op, path, contentType string, body []byte, bearer string) (*reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &providers.Error{Class: providers.Permanent, Op: op, Err: errors.New("bad base URL")}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, b, err := providers.Send(p.client, op, req)
	if err != nil {
		return nil, err
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// failure classifies a failed reply. finAPI answers the token endpoint
// with RFC 6749 {error, error_description} and everything else with
// {"errors":[{message, code, type}], ...}; both are read. A locked user
// (423) and a forbidden call (403) are Permanent, as is any other 4xx
// without invalid_grant. secrets are cut out of the description: Spring's
// OAuth2 server says "Invalid refresh token: <the token>".
func failure(op string, r *reply, secrets ...string) *providers.Error {
	var f struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Errors      []struct {
			Message string `json:"message"`
			Code    string `json:"code"`
		} `json:"errors"`
	}
	_ = json.Unmarshal(r.body, &f)
	code, desc := f.Error, f.Description
	if code == "" && len(f.Errors) > 0 {
		code, desc = f.Errors[0].Code, f.Errors[0].Message
	}
	for _, s := range secrets {
		if s != "" {
			desc = strings.ReplaceAll(desc, s, "[redacted]")
			// The code too: it becomes the link's last_error like the
			// description, and a server that echoes input may put it there.
			code = strings.ReplaceAll(code, s, "[redacted]")
		}
	}
	// A 2xx with an error code is judged by the code, as generic does.
	e := providers.ResponseError(op, r.status, r.header, code, desc)
	if r.status == http.StatusLocked || r.status == http.StatusForbidden || code == CodeUserLocked {
		e.Class = providers.Permanent
	}
	return e
}

func unsupported(op, grant string) error {
	return &providers.Error{Class: providers.Permanent, Op: op, Err: fmt.Errorf("grant %q: %w", grant, providers.ErrUnsupported)}
}

// boolParam reads a "true"/"false" param; absent is false.
func boolParam(params map[string]string, name string) (bool, error) {
	v, ok := params[name]
	if !ok || v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("param %s must be true or false", name)
	}
	return b, nil
}
