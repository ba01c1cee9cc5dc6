// Package everifin is the provider for Everifin, whose authorization
// server is a Keycloak realm speaking OpenID Connect:
// {base_url}/auth/realms/{realm}/protocol/openid-connect/{auth,token,logout}.
//
// It wraps the generic provider and adds what Everifin documents beyond
// plain OAuth: revocation is Keycloak's logout (it ends the refresh
// token; the access token lives on for its few minutes), a disabled user
// is an operator's problem rather than a lost grant, a brute-force
// lockout clears by itself, and an ended Keycloak session is named as
// such.
//
// Assumptions that remain (the seed is Everifin's "Authentication"
// page; it shows no Keycloak detail):
//   - "Authentication is facilitated by OpenID Connect" and "We will
//     provide you with your own authentication realm": the realm is a
//     Keycloak realm, so its error texts and session rules apply.
//   - PKCE is the entry's pkce flag, on by default. The seed does not
//     mention it; Keycloak checks a challenge when one was sent and, unless
//     the client requires one, accepts a request without. For a realm
//     that refuses it, pkce: false: neither challenge nor verifier is
//     sent.
//   - "Access token expires after some time ... Once the Access_token is
//     expired ... use the refresh_token": nothing is said of how long
//     the refresh token lives. Keycloak ends every SSO session at "SSO
//     Session Max" (10 hours by default) however often it is refreshed;
//     an authorization_code link then needs the end-user again
//     (reauth_required, last_error names the session limit). Requesting
//     the offline_access scope (scopes: [openid, offline_access]) gets an
//     offline session, which that limit does not end, where Everifin's
//     realm grants the offline_access role; the seed says nothing of it.
//   - Keycloak's brute-force detection answers "Account temporarily
//     disabled" until its wait runs out (15 minutes by default):
//     RateLimited with settings.lockout_backoff as Retry-After.
package everifin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/generic"
)

// KindName is the kind under which builtin registers this package.
const KindName = "everifin"

// New is the providers.Kind of Everifin.
func New() providers.Config { return &Config{} }

// Config is the settings block of kind everifin.
type Config struct {
	// BaseURL is Everifin's authorization server, without the /auth
	// path, e.g. https://auth.everifin.com.
	BaseURL string `yaml:"base_url"`
	// Realm is the realm Everifin provides to each customer.
	Realm string `yaml:"realm"`
	// LockoutBackoff is how long the engine waits after Keycloak's
	// brute-force lockout ("Account temporarily disabled") before it
	// tries again. Default 15m, Keycloak's default "Max Wait".
	LockoutBackoff time.Duration `yaml:"lockout_backoff"`
}

// DefaultLockoutBackoff is Keycloak's default brute-force "Max Wait".
const DefaultLockoutBackoff = 15 * time.Minute

// Grants this kind runs. Everifin enables authorization_code by default
// and others on request; Keycloak implements these three.
var supportedGrants = []string{
	providers.GrantAuthorizationCode,
	providers.GrantPassword,
	providers.GrantClientCredentials,
}

// Validate lists what is wrong with e and the settings.
func (c *Config) Validate(e providers.Entry) error {
	var errs []error
	if err := providers.CheckBaseURL(c.BaseURL); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.Realm == "":
		errs = append(errs, errors.New("settings.realm is required"))
	case !BareRealm(c.Realm):
		errs = append(errs, fmt.Errorf("settings.realm %q must be a bare realm name", c.Realm))
	}
	for _, g := range e.Grants {
		if !slices.Contains(supportedGrants, g) {
			errs = append(errs, fmt.Errorf("grant %q is not supported by kind everifin; supported: %s",
				g, strings.Join(supportedGrants, ", ")))
		}
	}
	if c.LockoutBackoff < 0 {
		errs = append(errs, errors.New("settings.lockout_backoff must not be negative"))
	}
	if e.AuthStyle == providers.AuthStyleNone {
		errs = append(errs, errors.New("auth_style none: Everifin clients are confidential"))
	}
	return errors.Join(errs...)
}

// BareRealm reports whether realm can stand in a Keycloak path as is.
// Exported for other Keycloak-based kinds.
func BareRealm(realm string) bool {
	return !strings.ContainsAny(realm, "/?#") && strings.TrimSpace(realm) == realm
}

// Endpoints returns Everifin's endpoints for base and realm.
func Endpoints(base, realm string) providers.Endpoint {
	return RealmEndpoints(strings.TrimSuffix(base, "/")+"/auth", realm)
}

// RealmEndpoints returns the OpenID Connect endpoints (auth, token,
// logout) of a Keycloak realm under root, which is the server's URL with
// /auth for Keycloak before 17. Exported for other Keycloak-based kinds.
func RealmEndpoints(root, realm string) providers.Endpoint {
	p := strings.TrimSuffix(root, "/") + "/realms/" + url.PathEscape(realm) + "/protocol/openid-connect/"
	return providers.Endpoint{
		AuthURL:   p + "auth",
		TokenURL:  p + "token",
		LogoutURL: p + "logout",
	}
}

// Open builds the provider. Endpoints set in the catalog win over the
// ones derived from base_url and realm.
func (c *Config) Open(_ context.Context, e providers.Entry, s providers.Setup) (providers.Provider, error) {
	if err := c.Validate(e); err != nil {
		return nil, err
	}
	e.Endpoint = e.Endpoint.Or(Endpoints(c.BaseURL, c.Realm))
	if e.AuthStyle == providers.AuthStyleAuto {
		// Everifin documents the client secret in the form (logout);
		// Keycloak takes it there at the token endpoint too, which
		// spares auto's Basic probe.
		e.AuthStyle = providers.AuthStyleBody
	}
	// PKCE follows the entry's pkce flag (default on).
	if len(e.Scopes) == 0 {
		e.Scopes = []string{"openid"}
	}
	p, err := NewProvider(e, s.ClientSecret, s.HTTPClient)
	if err != nil {
		return nil, err
	}
	if c.LockoutBackoff > 0 {
		p.lockout = c.LockoutBackoff
	}
	return p, nil
}

// Provider talks to one Everifin realm.
type Provider struct {
	g      *generic.Provider
	e      providers.Entry
	secret string
	client *http.Client
	// lockout is the wait after a brute-force lockout.
	lockout time.Duration
}

var (
	_ providers.Provider         = (*Provider)(nil)
	_ providers.Authorizer       = (*Provider)(nil)
	_ providers.Revoker          = (*Provider)(nil)
	_ providers.EndpointReporter = (*Provider)(nil)
)

// NewProvider builds a provider from a complete entry (endpoints filled in).
func NewProvider(e providers.Entry, clientSecret string, client *http.Client) (*Provider, error) {
	g, err := generic.New(e, clientSecret, client)
	if err != nil {
		return nil, err
	}
	return &Provider{g: g, e: g.Entry(), secret: clientSecret, client: providers.HTTPClient(client),
		lockout: DefaultLockoutBackoff}, nil
}

// Endpoint returns the endpoints in use.
func (p *Provider) Endpoint() providers.Endpoint { return p.e.Endpoint }

// AuthCodeURL builds the consent URL, with an S256 challenge unless the
// entry turned PKCE off.
func (p *Provider) AuthCodeURL(state, verifier, redirectURL string, scopes []string, params map[string]string) (string, error) {
	return p.g.AuthCodeURL(state, verifier, redirectURL, scopes, params)
}

// Exchange obtains the first token. With pkce: false the generic
// exchange sends no verifier: Keycloak refuses one without a challenge
// ("PKCE code verifier specified but challenge not present in
// authorization").
func (p *Provider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	t, err := p.g.Exchange(ctx, g)
	return t, KeycloakError(err, p.lockout)
}

// Refresh trades t's refresh token for a new pair. Keycloak rotates the
// refresh token on every refresh and restarts refresh_expires_in; the
// generic provider adopts both.
func (p *Provider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	nt, err := p.g.Refresh(ctx, t)
	return nt, KeycloakError(err, p.lockout)
}

// Revoke logs the session out: POST logout with the refresh token and
// the client's credentials in the form, as Everifin documents. The
// refresh token dies; the access token stays valid until it expires
// (about five minutes), which Keycloak offers no way to shorten. A
// refresh token Keycloak no longer knows counts as revoked.
func (p *Provider) Revoke(ctx context.Context, t *providers.Token) error {
	return Logout(ctx, p.client, p.e.Endpoint.LogoutURL, p.e.ClientID, p.secret, t)
}

// Logout ends the Keycloak session of t's refresh token. secret empty
// means a public client. It is exported for other Keycloak-based kinds.
func Logout(ctx context.Context, client *http.Client, logoutURL, clientID, secret string, t *providers.Token) error {
	const op = "revoke"
	if logoutURL == "" {
		return &providers.Error{Class: providers.Permanent, Op: op, Err: fmt.Errorf("logout endpoint: %w", providers.ErrUnsupported)}
	}
	if t == nil || t.RefreshToken == "" {
		// Nothing to end: an access token alone dies on its own soon.
		return nil
	}
	form := url.Values{"client_id": {clientID}, "refresh_token": {t.RefreshToken}}
	if secret != "" {
		form.Set("client_secret", secret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, logoutURL, strings.NewReader(form.Encode()))
	if err != nil {
		return &providers.Error{Class: providers.Permanent, Op: op, Err: errors.New("bad logout URL")}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return providers.Classify(op, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	code, desc := errorFields(body)
	if code == "invalid_grant" {
		// Expired session or unknown token: nothing left to end.
		return nil
	}
	return providers.ResponseError(op, resp.StatusCode, resp.Header, code, desc)
}

// errorFields reads Keycloak's JSON error body; anything else gives
// nothing and the status decides.
func errorFields(body []byte) (code, desc string) {
	_, code, desc, _ = generic.ParseTokenReply("application/json", body, time.Time{})
	return code, desc
}

// UserDisabled is KeycloakError with the default lockout backoff.
// Exported for other Keycloak-based kinds.
func UserDisabled(err error) error { return KeycloakError(err, DefaultLockoutBackoff) }

// ErrSessionEnded is the cause an invalid_grant gets when Keycloak ended
// the session behind the refresh token: SSO Session Idle or Max ran out
// (or a logout ended it). Its text reaches the link's last_error.
var ErrSessionEnded = errors.New("the provider's session limit ended the grant (Keycloak SSO session idle or max timeout, or a logout); the end-user must sign in again, or request offline_access where the provider grants it")

// KeycloakError reclassifies Keycloak's invalid_grant answers, whose
// descriptions are Keycloak's own texts:
//   - a disabled user ("Account disabled", "User disabled", "Account is
//     not fully set up") needs an administrator: Permanent;
//   - a brute-force lockout ("Account temporarily disabled") clears by
//     itself: RateLimited, retried after lockout;
//   - an ended session ("Session not active", "Token is not active",
//     "Offline session not active", ...) stays InvalidGrant, with
//     ErrSessionEnded as its cause, which says so.
//
// Exported for other Keycloak-based kinds.
func KeycloakError(err error, lockout time.Duration) error {
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Code != "invalid_grant" {
		return err
	}
	c := *pe
	switch pe.Description {
	case "Account disabled", "User disabled", "Account is not fully set up":
		c.Class = providers.Permanent
	case "Account temporarily disabled":
		c.Class = providers.RateLimited
		c.RetryAfter = lockout
	case "Session not active", "Token is not active", "Stale token", "Offline session not active",
		"Offline user session not found", "Session doesn't have required client":
		if c.Err == nil {
			c.Err = ErrSessionEnded
		}
	default:
		return err
	}
	return &c
}
