// Package generic is the provider for any standards-following OAuth 2.0
// server (kind oauth2, endpoints listed in the catalog) or OpenID Connect
// issuer (kind oidc, endpoints from discovery). Provider packages for
// servers with quirks can wrap its Provider and reuse TokenRequest.
//
// golang.org/x/oauth2 builds the authorization URL and PKCE challenge.
// Token, device, revocation and introspection calls are single POSTs
// written here, because x/oauth2 hides the raw reply (so Extra and
// refresh_expires_in cannot be read generically), cannot add catalog
// parameters to refresh or password requests, polls device codes in a
// loop, and retries any failure with the other auth style, which can
// spend a rotating refresh token twice.
package generic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
)

// Kind names under which builtin registers this package.
const (
	KindOAuth2 = "oauth2"
	KindOIDC   = "oidc"
)

// DefaultDiscoveryTimeout bounds the discovery fetch at boot.
const DefaultDiscoveryTimeout = 10 * time.Second

// OAuth2 is the providers.Kind for explicit endpoints.
func OAuth2() providers.Config { return &Config{} }

// OIDC is the providers.Kind for endpoints discovered from the issuer.
func OIDC() providers.Config { return &Config{discover: true} }

// Config is the settings block of kinds oauth2 and oidc.
type Config struct {
	discover bool
	// DiscoveryTimeout bounds the fetch of the discovery document at
	// Open (kind oidc). Default 10s.
	DiscoveryTimeout providers.Duration `yaml:"discovery_timeout"`
}

// grants this package knows how to run.
var supportedGrants = []string{
	providers.GrantAuthorizationCode,
	providers.GrantClientCredentials,
	providers.GrantPassword,
	providers.GrantDeviceCode,
}

// Validate lists what is wrong with e for this kind. Endpoints that
// discovery may supply are checked again at Open.
func (c *Config) Validate(e providers.Entry) error {
	var errs []error
	for _, g := range e.Grants {
		if !slices.Contains(supportedGrants, g) {
			hint := ""
			if g == "refresh_token" {
				hint = " (refresh is implied; list the grant that obtains the first token)"
			}
			errs = append(errs, fmt.Errorf("grant %q is not supported by kind %s; supported: %s%s",
				g, e.Kind, strings.Join(supportedGrants, ", "), hint))
		}
	}
	if c.DiscoveryTimeout < 0 {
		errs = append(errs, errors.New("settings.discovery_timeout must not be negative"))
	}
	if c.discover {
		if e.Issuer == "" {
			errs = append(errs, errors.New("issuer is required for kind oidc"))
		}
	} else {
		errs = append(errs, missingEndpoints(e)...)
	}
	return errors.Join(errs...)
}

// missingEndpoints lists endpoints that e's grants need but it lacks.
func missingEndpoints(e providers.Entry) []error {
	var errs []error
	if e.Endpoint.TokenURL == "" {
		errs = append(errs, errors.New("endpoint.token_url is required"))
	}
	if e.HasGrant(providers.GrantAuthorizationCode) && e.Endpoint.AuthURL == "" {
		errs = append(errs, errors.New("endpoint.auth_url is required for grant authorization_code"))
	}
	if e.HasGrant(providers.GrantDeviceCode) && e.Endpoint.DeviceAuthURL == "" {
		errs = append(errs, errors.New("endpoint.device_auth_url is required for grant device_code"))
	}
	return errs
}

// Open builds the provider; for kind oidc it first fetches the issuer's
// discovery document, and the provider (an *OIDCProvider) verifies the
// ID token of every exchange. Endpoints set in the catalog win over
// discovered ones, so a broken discovery document can be patched in the
// catalog.
func (c *Config) Open(ctx context.Context, e providers.Entry, s providers.Setup) (providers.Provider, error) {
	if !c.discover {
		return New(e, s.ClientSecret, s.HTTPClient)
	}
	timeout := time.Duration(c.DiscoveryTimeout)
	if timeout == 0 {
		timeout = DefaultDiscoveryTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d, err := Discover(dctx, s.HTTPClient, e.Issuer)
	if err != nil {
		return nil, err
	}
	e.Endpoint = e.Endpoint.Or(d.Endpoint)
	if e.AuthStyle == providers.AuthStyleAuto {
		e.AuthStyle = d.authStyle()
	}
	p, err := New(e, s.ClientSecret, s.HTTPClient)
	if err != nil {
		return nil, err
	}
	return newOIDC(p, d)
}

// Provider talks to one OAuth 2.0 server. It is safe for concurrent use.
type Provider struct {
	e      providers.Entry
	secret string
	client *http.Client
	// now is the clock for expiries; tests replace it.
	now func() time.Time

	// learned is the auth style that worked, for AuthStyleAuto.
	mu      sync.Mutex
	learned providers.AuthStyle
}

// Capabilities, checked at compile time. Each returns
// providers.ErrUnsupported when its endpoint is not configured.
var (
	_ providers.Provider         = (*Provider)(nil)
	_ providers.Authorizer       = (*Provider)(nil)
	_ providers.DeviceAuthorizer = (*Provider)(nil)
	_ providers.Revoker          = (*Provider)(nil)
	_ providers.Introspector     = (*Provider)(nil)
	_ providers.EndpointReporter = (*Provider)(nil)
)

// New builds a provider from a complete entry (endpoints already
// discovered). client nil means one with providers.DefaultHTTPTimeout;
// a client without a timeout gets that timeout.
func New(e providers.Entry, clientSecret string, client *http.Client) (*Provider, error) {
	if errs := missingEndpoints(e); len(errs) > 0 {
		if e.Issuer != "" {
			errs = append(errs, fmt.Errorf("(not in the catalog, nor in the discovery document of %s)", e.Issuer))
		}
		return nil, errors.Join(errs...)
	}
	client = providers.HTTPClient(client)
	if e.AuthStyle == "" {
		e.AuthStyle = providers.AuthStyleAuto
	}
	return &Provider{e: e, secret: clientSecret, client: client, now: time.Now}, nil
}

// Entry returns the entry the provider was built from, endpoints included.
func (p *Provider) Entry() providers.Entry { return p.e }

// Endpoint returns the endpoints in use, after discovery.
func (p *Provider) Endpoint() providers.Endpoint { return p.e.Endpoint }
