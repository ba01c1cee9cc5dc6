// Package finapi is the provider for finAPI Access (https://www.finapi.io):
// OAuth 2.0 with client credentials in the request body, users that the
// client creates itself with a client token, and user tokens by the
// password grant.
//
// Paths: the seed guide names POST /oauth/token and POST /users
// relative to the Access API; finAPI Access v2, which real clients call,
// serves them as /api/v2/oauth/token, /api/v2/users and
// /api/v2/oauth/revoke, the defaults here under settings.base_url.
// settings.token_path, users_path and revoke_path override them (for
// instance /oauth/token for a service that serves the seed's paths at
// the root, as Access v1 did for the token endpoint).
//
// The client token (client_credentials) that user creation and
// revocation need is cached in the provider and fetched again shortly
// before it expires; finAPI answers that early request with the same
// token, which is then used until it dies. Nothing of it reaches Vault.
//
// What revoking a link means:
//   - a password link: its refresh token, then its access token, are
//     revoked at finAPI (RFC 7009, with the client token);
//   - a client_credentials link: nothing is called at finAPI. Its token
//     is the client's, the one finAPI hands every caller with these
//     credentials while it is valid ("the same token for the same
//     credentials"), so it is also every other client_credentials link's
//     and this provider's cached one. The engine wipes the link's
//     secrets; the token runs out by itself (3599 s in the seed).
//
// Same token while valid: a login (or client token request) before the
// token expires answers the live token with a shrinking expires_in.
// Password links whose logins carry no refresh_token (the seed's example
// reply has none) "refresh" by logging in again from Vault; when that
// login hands back the live token, Exchange revokes it and logs in once
// more, so each refresh gets a full lifetime and the engine never loops
// on a token it cannot renew. The cost: for the moment between that
// revocation and the new token reaching Vault (one login), the gateway
// may still hand out the revoked token, with a fifth of its lifetime
// left; a caller's 401 then means "ask again". A client_credentials link cannot revoke
// the shared token: near its end the "refresh" waits for it to die (at
// most a minute) and returns its successor.
//
// Assumptions that remain, with the seed sentence they rest on:
//   - "The client authorization request response: {access_token,
//     token_type, expires_in: 3599, scope}" and the same for users:
//     expires_in is always sent; a fresh user token lasts
//     settings.user_token_validity (default 1h) or the longest seen, and
//     a login answering less than nine tenths of that got the live token.
//   - "make a call to Access POST /oauth/token and pass ... client_id,
//     client_secret": client credentials go in the form body, never in
//     a Basic header (auth_style body only).
//   - "To create a user, make a call to Access POST /users" with "the
//     obtained access_token in Step 1": the client token is the bearer;
//     a taken id answers 422 ENTITY_EXISTS and the user is just logged
//     in (not in the seed; finAPI's error body {"errors":[{code,...}]}).
//   - not in the seed: a locked user answers 423 USER_LOCKED, an
//     unverified user 403 USER_NOT_VERIFIED (both Permanent: the link
//     needs an operator), finAPI checks the format of user ids and
//     passwords at POST /users (a refusal is Permanent with finAPI's
//     message), and revocation is RFC 7009 at oauth/revoke with the
//     client token as bearer.
package finapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/generic"
)

// KindName is the catalog kind of this package.
const KindName = "finapi"

// Default paths, relative to base_url: finAPI Access v2's, which real
// clients call (the seed's "POST /oauth/token" and "POST /users" are
// relative to the Access API root, https://<host>/api/v2; /oauth/token
// at the host root is Access v1's). settings.token_path, users_path and
// revoke_path override them.
const (
	PathToken  = "/api/v2/oauth/token"
	PathUsers  = "/api/v2/users"
	PathRevoke = "/api/v2/oauth/revoke"
)

// ExtraToken is the Token.Extra key (link metadata) that says whose token
// a link holds: ExtraClient for a client_credentials link, whose token
// the whole client shares, ExtraUser for a user's.
const (
	ExtraToken  = "finapi_token"
	ExtraClient = "client"
	ExtraUser   = "user"
)

// DefaultUserTokenValidity is the lifetime assumed for a fresh user token
// until a longer one is seen: the seed's replies say "expires_in": 3599.
const DefaultUserTokenValidity = time.Hour

// clientWait is the longest a client_credentials link's "refresh" waits
// for the shared client token to die so that finAPI issues its
// successor (well inside the refresh activity's two minutes).
const clientWait = time.Minute

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
	// CodeUserNotVerified is assumed: finAPI answers 403 for a user the
	// client has not verified (the seed does not show the body).
	CodeUserNotVerified = "USER_NOT_VERIFIED"
)

// notVerified is the description of a 403 for a password login: the
// user exists and the password is right, but finAPI will not let the
// user in until the client verifies it.
const notVerified = "the finAPI user is not verified: verify it with the client token (finAPI's POST /users/verify/{userId}) or have finAPI enable user auto-verification for the client, then enroll again"

// Operation names in errors.
const (
	opExchange    = "exchange"
	opRefresh     = "refresh"
	opRevoke      = "revoke"
	opClientToken = "client_token"
	opReenroll    = "reenroll"
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
	// TokenPath, UsersPath and RevokePath replace PathToken, PathUsers
	// and PathRevoke (e.g. "/oauth/token" for a service that serves the
	// seed's paths at the root).
	TokenPath  string `yaml:"token_path"`
	UsersPath  string `yaml:"users_path"`
	RevokePath string `yaml:"revoke_path"`
	// UserTokenValidity is the lifetime of a fresh user token (default
	// 1h; finAPI lets a client configure it). A password login that
	// answers much less is finAPI handing back the live token.
	UserTokenValidity providers.Duration `yaml:"user_token_validity"`
}

// Paths are the finAPI paths a provider calls, relative to its base URL.
type Paths struct {
	Token, Users, Revoke string
}

// DefaultPaths are finAPI Access v2's.
var DefaultPaths = Paths{Token: PathToken, Users: PathUsers, Revoke: PathRevoke}

func (c *Config) paths() Paths {
	ps := DefaultPaths
	for _, x := range []struct {
		set string
		to  *string
	}{{c.TokenPath, &ps.Token}, {c.UsersPath, &ps.Users}, {c.RevokePath, &ps.Revoke}} {
		if x.set != "" {
			*x.to = x.set
		}
	}
	return ps
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
	if c.UserTokenValidity < 0 {
		errs = append(errs, errors.New("settings.user_token_validity must not be negative"))
	}
	for _, x := range []struct{ name, v string }{
		{"token_path", c.TokenPath}, {"users_path", c.UsersPath}, {"revoke_path", c.RevokePath},
	} {
		if x.v != "" && (!strings.HasPrefix(x.v, "/") || strings.ContainsAny(x.v, "?# ") || strings.Contains(x.v, "//")) {
			errs = append(errs, fmt.Errorf("settings.%s %q must be a path starting with / (no query, fragment or //)", x.name, x.v))
		}
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
	p.paths = c.paths()
	if c.UserTokenValidity > 0 {
		p.validity = time.Duration(c.UserTokenValidity)
	}
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
	paths  Paths
	// validity is the assumed lifetime of a fresh user token until fresh
	// (nanoseconds) is known from a login after a revocation; longest,
	// the longest seen, raises either.
	validity time.Duration
	longest  atomic.Int64
	fresh    atomic.Int64
	// now is the clock and sleep waits; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	// lock guards the cached client token; a channel rather than a mutex
	// so that a caller waiting on another's fetch honours its context.
	lock      chan struct{}
	ct        string
	ctExpiry  time.Time
	ctRefresh time.Time // when to fetch a new one
}

var (
	_ providers.Provider         = (*Provider)(nil)
	_ providers.Revoker          = (*Provider)(nil)
	_ providers.Reenroller       = (*Provider)(nil)
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
		paths:    DefaultPaths,
		validity: DefaultUserTokenValidity,
		now:      time.Now,
		sleep:    sleepCtx,
		lock:     make(chan struct{}, 1),
	}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Endpoint reports the URLs in use.
func (p *Provider) Endpoint() providers.Endpoint {
	return providers.Endpoint{TokenURL: p.base + p.paths.Token, RevocationURL: p.base + p.paths.Revoke}
}

// Exchange obtains a link's first token: a user token by the password
// grant (creating the user first when params ask for it), or the
// client's token for a client_credentials link. The engine calls it again
// with the stored grant when a link has no refresh token (finAPI's
// replies may carry none) or the refresh token dies, so a repeated
// creation must be, and is, harmless.
//
// finAPI returns the same token for the same credentials while it is
// valid, with a shrinking expires_in. A password login that answers less
// than nine tenths of a fresh token's lifetime got the user's live token:
// Exchange revokes it and logs in once more, so the link gets a token of
// full lifetime rather than the one it is replacing (which would bring
// the engine back at once, in an ever tighter loop near expiry). A
// client_credentials link never revokes the client's token (see Revoke).
func (p *Provider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	return p.exchange(ctx, opExchange, g, false)
}

// Reenroll obtains a new token after the link's refresh token was
// rejected: a client_credentials link asks for the client's token again;
// a password link logs in, and since finAPI may hand back the live access
// token together with the dead refresh token, revokes what it got and
// logs in once more.
func (p *Provider) Reenroll(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	return p.exchange(ctx, opReenroll, g, true)
}

func (p *Provider) exchange(ctx context.Context, op string, g providers.Grant, fresh bool) (*providers.Token, error) {
	if p.grants != nil && !slices.Contains(p.grants, g.Type) {
		return nil, unsupported(op, g.Type)
	}
	switch g.Type {
	case providers.GrantClientCredentials:
		return p.clientLinkToken(ctx, op)
	case providers.GrantPassword:
	default:
		return nil, unsupported(op, g.Type)
	}
	if g.Username == "" || g.Password == "" {
		// finAPI users are created with a password chosen here; the
		// caller supplies it in credentials so that it lives only in
		// Vault with the grant, ready for the next login.
		return nil, &providers.Error{Class: providers.Permanent, Op: op,
			Err: errors.New("the password grant needs a username and a password")}
	}
	if create, err := boolParam(g.Params, ParamCreateUser); err != nil {
		return nil, &providers.Error{Class: providers.Permanent, Op: op, Err: err}
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
	login := func() (*providers.Token, error) {
		tok, err := p.tokenRequest(ctx, op, url.Values(maps.Clone(form)), []string{g.Password})
		if err != nil {
			return nil, err
		}
		tok.Extra = withExtra(tok.Extra, ExtraToken, ExtraUser)
		return tok, nil
	}
	tok, err := login()
	if err != nil || !(fresh || p.reused(tok)) {
		return tok, err
	}
	// The live token came back: revoke it (with its refresh token, as
	// finAPI's RFC 7009 revocation does) and log in once more. If the
	// revocation fails, the live token is still a valid answer.
	if err := p.revokeOne(ctx, op, tok.AccessToken, "access_token", tok.RefreshToken, g.Password); err != nil {
		return tok, nil
	}
	tok, err = login()
	if err == nil && !tok.Expiry.IsZero() {
		// Issued just now for sure: this is what a fresh token lasts
		// for this client, whatever the validity setting assumed.
		p.fresh.Store(int64(tok.Expiry.Sub(p.now())))
	}
	return tok, err
}

// reused reports whether a user token that just came from a login is the
// user's live one rather than a fresh one: less than nine tenths of the
// lifetime of a fresh token left. That lifetime is the longest seen or,
// if longer, the one a login right after a revocation gave (or, before
// there was one, the configured validity).
func (p *Provider) reused(tok *providers.Token) bool {
	if tok.Expiry.IsZero() {
		// finAPI always sends expires_in; 0 (dropped as no lifetime) is
		// the live token in its last second.
		return true
	}
	left := tok.Expiry.Sub(p.now())
	longest := time.Duration(p.longest.Load())
	for left > longest && !p.longest.CompareAndSwap(int64(longest), int64(left)) {
		longest = time.Duration(p.longest.Load())
	}
	validity := p.validity
	if fresh := time.Duration(p.fresh.Load()); fresh > 0 {
		validity = fresh
	}
	return left < max(validity, longest)*9/10
}

// clientLinkToken is a client_credentials link's token: the client's own,
// the one finAPI gives every caller with these credentials while it is
// valid (asked for each time, not taken from the cache, so that a token
// revoked elsewhere is not stored; the answer updates the cache). Near
// its end there is no newer one to be had: the call waits for it to die
// (at most clientWait) and fetches its successor, so the engine does not
// come back in a loop.
func (p *Provider) clientLinkToken(ctx context.Context, op string) (*providers.Token, error) {
	tok, exp, err := p.clientTokenFrom(ctx, true)
	for tries := 0; err == nil && tries < 3 && exp.Sub(p.now()) <= clientWait; tries++ {
		if err := p.sleep(ctx, exp.Sub(p.now())+time.Second); err != nil {
			return nil, providers.Classify(op, err)
		}
		tok, exp, err = p.clientTokenFrom(ctx, true)
	}
	if err != nil {
		var pe *providers.Error
		if errors.As(err, &pe) {
			c := *pe
			c.Op = op
			return nil, &c
		}
		return nil, err
	}
	return &providers.Token{AccessToken: tok, TokenType: "bearer", Expiry: exp,
		Extra: map[string]string{ExtraToken: ExtraClient}}, nil
}

func withExtra(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
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
	tok.Extra = withExtra(tok.Extra, ExtraToken, ExtraUser)
	return tok, nil
}

// Revoke revokes a user link's refresh token, then its access token,
// with the client token as bearer. RFC 7009 answers 200 for a token
// already invalid, so a repeat is fine.
//
// A client_credentials link's token is the client's: finAPI hands the
// same one to every caller with these credentials while it is valid, so
// it is also every other client_credentials link's token and the one this
// provider caches for user creation and revocation. Revoking it would
// break them all; revoking such a link therefore calls nothing at finAPI
// (the engine wipes the link's secrets, which is all the link owns) and
// the token runs out by itself within its hour. A token is the client's
// when its link metadata says so (ExtraToken), when it is the cached
// client token, or, for tokens stored before the marker existed, when it
// has no refresh token.
func (p *Provider) Revoke(ctx context.Context, t *providers.Token) error {
	if t == nil || p.isClientToken(t) {
		return nil
	}
	if err := p.revokeOne(ctx, opRevoke, t.RefreshToken, "refresh_token", t.RefreshToken, t.AccessToken); err != nil {
		return err
	}
	return p.revokeOne(ctx, opRevoke, t.AccessToken, "access_token", t.RefreshToken, t.AccessToken)
}

func (p *Provider) isClientToken(t *providers.Token) bool {
	switch t.Extra[ExtraToken] {
	case ExtraClient:
		return true
	case ExtraUser:
		return false
	}
	if t.RefreshToken == "" {
		return true
	}
	p.lock <- struct{}{}
	defer func() { <-p.lock }()
	return t.AccessToken != "" && t.AccessToken == p.ct
}

// revokeOne revokes tok (nothing for ""); secrets are scrubbed from
// errors.
func (p *Provider) revokeOne(ctx context.Context, op, tok, hint string, secrets ...string) error {
	if tok == "" {
		return nil
	}
	form := url.Values{"token": {tok}, "token_type_hint": {hint}}
	r, err := p.withClientToken(ctx, op, func(bearer string) (*reply, error) {
		return p.do(ctx, op, p.paths.Revoke, "application/x-www-form-urlencoded", []byte(form.Encode()), bearer)
	})
	if err != nil {
		return err
	}
	if !r.ok() {
		e := failure(op, r, append(secrets, tok)...)
		if e.Code == "unsupported_token_type" {
			return nil
		}
		return e
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
		return p.do(ctx, opCreateUser, p.paths.Users, "application/json", b, bearer)
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

// clientToken returns a client token and its expiry, fetching one when
// the cached one is due for renewal. finAPI answers a renewal before
// expiry with the same token (and what is left of its lifetime); that
// one is then used until it dies, when finAPI issues a new one, instead
// of asking again on every call.
func (p *Provider) clientToken(ctx context.Context) (string, time.Time, error) {
	return p.clientTokenFrom(ctx, false)
}

// clientTokenFrom is clientToken; ask skips the cache and asks finAPI,
// updating the cache with the answer.
func (p *Provider) clientTokenFrom(ctx context.Context, ask bool) (string, time.Time, error) {
	select {
	case p.lock <- struct{}{}:
	case <-ctx.Done():
		return "", time.Time{}, providers.Classify(opClientToken, ctx.Err())
	}
	defer func() { <-p.lock }()
	now := p.now()
	if !ask && p.ct != "" && now.Before(p.ctRefresh) {
		return p.ct, p.ctExpiry, nil
	}
	tok, err := p.tokenRequest(ctx, opClientToken, url.Values{"grant_type": {"client_credentials"}}, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	expiry := tok.Expiry
	switch {
	case expiry.IsZero() && tok.AccessToken == p.ct:
		// expires_in 0: the cached token in its last second.
		expiry = p.ctExpiry
	case expiry.IsZero():
		// finAPI always says; assume its usual hour if it did not.
		expiry = now.Add(3599 * time.Second)
	}
	if tok.AccessToken == p.ct {
		p.ctRefresh = expiry
	} else {
		early := min(p.margin, expiry.Sub(now)/2)
		p.ctRefresh = expiry.Add(-early)
	}
	p.ct, p.ctExpiry = tok.AccessToken, expiry
	return p.ct, p.ctExpiry, nil
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
		bearer, _, err := p.clientToken(ctx)
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
	r, err := p.do(ctx, op, p.paths.Token, "application/x-www-form-urlencoded", []byte(form.Encode()), "")
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
	if code == CodeUserNotVerified {
		e.Description = notVerified
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
