// Package demobank is the provider for the finAPI Demobank, whose
// authorization server is a Keycloak realm per mandator:
// POST {base_url}/realms/{mandator}/protocol/openid-connect/token with
// the public client demobank-cli and grant_type=password.
//
// The generic provider does the token calls; this package fixes what
// finAPI fixes (public client, password grant, realm path), adds logout
// as revocation, and classifies a disabled account as Permanent.
//
// When the refresh token has expired (Keycloak: 400 invalid_grant "Token
// is not active"), the engine logs in again with the stored password:
// activities re-exchanges password grants on InvalidGrant, so this
// package needs no Reenroller.
//
// client_id: the seed fixes it ("client_id: demobank-cli (fixed)"), so an
// entry without client_id gets demobank-cli (and auth_style none), and an
// entry with another one loads with a warning (Catalog.Warnings, logged
// by tokenwarden at start): it works only if the mandator's realm knows
// that client; otherwise Keycloak answers invalid_client and links fail.
//
// Assumptions that remain, with the seed sentence they rest on:
//   - "POST https://keycloak-finapi-general-live.finapi.io/realms/
//     <mandator>/protocol/openid-connect/token": Keycloak 17+ paths
//     without /auth; settings.base_url replaces the host.
//   - "Currently the access token expires after 15 minutes" and the
//     example's "refresh_expires_in": 1800: both are read from each reply,
//     never assumed.
//   - "To restore access token you can simply get a new token (as it is
//     described above) or use grant_type=refresh_token": a dead refresh
//     token means logging in again with the stored password.
//   - not in the seed: revocation is Keycloak's logout endpoint with the
//     refresh token; a disabled account ("Account disabled") is
//     Permanent.
package demobank

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/everifin"
	"github.com/tokenwarden/tokenwarden/providers/generic"
)

// KindName is the kind under which builtin registers this package.
const KindName = "demobank"

// DefaultBaseURL is finAPI's live Keycloak, from its documentation.
const DefaultBaseURL = "https://keycloak-finapi-general-live.finapi.io"

// ClientID is the public client finAPI fixes ("client_id: demobank-cli
// (fixed)"): an entry without client_id gets it, and any other is a
// warning at catalog load.
const ClientID = "demobank-cli"

// New is the providers.Kind of the finAPI Demobank.
func New() providers.Config { return &Config{} }

// Config is the settings block of kind demobank.
type Config struct {
	// BaseURL is finAPI's Keycloak. Default DefaultBaseURL.
	BaseURL string `yaml:"base_url"`
	// Mandator is the realm name finAPI assigns.
	Mandator string `yaml:"mandator"`
}

var (
	_ providers.Defaulter = (*Config)(nil)
	_ providers.Warner    = (*Config)(nil)
)

// Default gives an entry without client_id finAPI's fixed one, and one
// without auth_style the public client's (none).
func (c *Config) Default(e *providers.Entry) {
	if e.ClientID == "" {
		e.ClientID = ClientID
	}
	if e.AuthStyle == providers.AuthStyleAuto {
		e.AuthStyle = providers.AuthStyleNone
	}
}

// Warnings says when the entry's client_id is not the one the seed
// fixes: it works only if the mandator's realm knows that client too.
func (c *Config) Warnings(e providers.Entry) []string {
	if e.ClientID != ClientID {
		return []string{fmt.Sprintf("client_id %q is not %s, the client finAPI fixes for the Demobank (\"client_id: demobank-cli (fixed)\"); logins fail unless the mandator's realm knows this client", e.ClientID, ClientID)}
	}
	return nil
}

// Validate lists what is wrong with e and the settings.
func (c *Config) Validate(e providers.Entry) error {
	var errs []error
	if c.BaseURL != "" {
		if err := providers.CheckBaseURL(c.BaseURL); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case c.Mandator == "":
		errs = append(errs, errors.New("settings.mandator is required (the realm name finAPI gave you)"))
	case !everifin.BareRealm(c.Mandator):
		errs = append(errs, fmt.Errorf("settings.mandator %q must be a bare realm name", c.Mandator))
	}
	for _, g := range e.Grants {
		if g != providers.GrantPassword {
			errs = append(errs, fmt.Errorf("grant %q is not supported by kind demobank; finAPI offers password only", g))
		}
	}
	switch e.AuthStyle {
	case providers.AuthStyleAuto, providers.AuthStyleNone:
	default:
		errs = append(errs, fmt.Errorf("auth_style %s: demobank-cli is a public client; leave auth_style out or use none", e.AuthStyle))
	}
	return errors.Join(errs...)
}

// Endpoints returns finAPI's endpoints for base and mandator. The logout
// URL is Keycloak's convention; finAPI does not document it.
func Endpoints(base, mandator string) providers.Endpoint {
	if base == "" {
		base = DefaultBaseURL
	}
	d := everifin.RealmEndpoints(base, mandator)
	return providers.Endpoint{TokenURL: d.TokenURL, LogoutURL: d.LogoutURL}
}

// Open builds the provider. Endpoints set in the catalog win over the
// derived ones.
func (c *Config) Open(_ context.Context, e providers.Entry, s providers.Setup) (providers.Provider, error) {
	if err := c.Validate(e); err != nil {
		return nil, err
	}
	e.Endpoint = e.Endpoint.Or(Endpoints(c.BaseURL, c.Mandator))
	return NewProvider(e, s.HTTPClient)
}

// Provider talks to one finAPI mandator realm.
type Provider struct {
	g      *generic.Provider
	e      providers.Entry
	client *http.Client
}

var (
	_ providers.Provider         = (*Provider)(nil)
	_ providers.Revoker          = (*Provider)(nil)
	_ providers.EndpointReporter = (*Provider)(nil)
)

// NewProvider builds a provider from a complete entry. The client is public: no
// secret is ever sent, whatever the catalog holds.
func NewProvider(e providers.Entry, client *http.Client) (*Provider, error) {
	e.AuthStyle = providers.AuthStyleNone
	e.PKCE = false
	g, err := generic.New(e, "", client)
	if err != nil {
		return nil, err
	}
	return &Provider{g: g, e: g.Entry(), client: providers.HTTPClient(client)}, nil
}

// Endpoint returns the endpoints in use.
func (p *Provider) Endpoint() providers.Endpoint { return p.e.Endpoint }

// Exchange logs the user in with the password grant. finAPI's extra
// reply fields (mandator_name, mandator_uuid, is_test_mandator,
// is_technical_user, session_state, not-before-policy) land in
// Token.Extra and become link metadata.
func (p *Provider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	t, err := p.g.Exchange(ctx, g)
	return t, everifin.UserDisabled(err)
}

// Refresh uses the refresh token while it lives (refresh_expires_in,
// 1800s); the engine schedules the refresh before either expiry.
func (p *Provider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	nt, err := p.g.Refresh(ctx, t)
	return nt, everifin.UserDisabled(err)
}

// Revoke ends the Keycloak session with client_id=demobank-cli and the
// refresh token. Assumed from Keycloak's conventions: finAPI documents
// no revocation.
func (p *Provider) Revoke(ctx context.Context, t *providers.Token) error {
	return everifin.Logout(ctx, p.client, p.e.Endpoint.LogoutURL, p.e.ClientID, "", t)
}
