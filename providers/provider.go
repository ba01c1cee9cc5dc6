// Package providers defines how Tokenwarden talks to an OAuth2 provider: one
// small interface that every provider implements, optional capabilities that
// some add (revocation, introspection, device flow, ...), and a YAML catalog
// that picks an implementation by kind.
//
// Nothing here knows about Temporal, Vault or HTTP handlers. Values of type
// Token and Grant carry secrets; they live only inside activities and the
// gateway, and never reach a workflow, a log line or an error message.
package providers

import (
	"context"
	"net/http"
	"time"
)

// Token is what a provider hands back on enrollment or refresh. It holds
// secrets: keep it in memory only long enough to write it to Vault.
type Token struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	IDToken      string    `json:"id_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	// IssuedAt is when the engine obtained the token; with Expiry it
	// gives the lifetime, which readers use to size their margins.
	IssuedAt time.Time `json:"issued_at,omitzero"`
	// RefreshExpiry is when the refresh token itself dies (Keycloak's
	// refresh_expires_in). Zero means the provider did not say.
	RefreshExpiry time.Time `json:"refresh_expiry,omitzero"`
	Scopes        []string  `json:"scopes,omitempty"`
	// Extra keeps the non-secret fields a provider adds to its token
	// response (session_state, mandator_name, ...). They become link
	// metadata, so no provider may put a secret here.
	Extra map[string]string `json:"extra,omitempty"`
	// Subject is the sub claim of the ID token a provider verified at
	// the exchange (see IDTokenVerifier): who consented, as a stable ID
	// at the provider. Not a secret. Empty when nothing was verified.
	Subject string `json:"subject,omitempty"`
}

// Grant is the material for a first token: which grant, and its inputs.
// It holds secrets (codes, verifiers, passwords) and is stored in Vault.
type Grant struct {
	Type         string `json:"type"`
	Code         string `json:"code,omitempty"`
	CodeVerifier string `json:"code_verifier,omitempty"`
	RedirectURL  string `json:"redirect_url,omitempty"`
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	DeviceCode   string `json:"device_code,omitempty"`
	// DeviceInterval is the polling interval the device authorization
	// answer asked for.
	DeviceInterval time.Duration     `json:"device_interval,omitempty"`
	Scopes         []string          `json:"scopes,omitempty"`
	Params         map[string]string `json:"params,omitempty"`
	// Nonce is the OpenID Connect nonce the authorization request
	// carried; the ID token of the exchange must carry it back.
	Nonce string `json:"nonce,omitempty"`
	// AllowSubjectChange lets this grant re-authorize a link for an
	// end-user other than the one it was enrolled for.
	AllowSubjectChange bool `json:"allow_subject_change,omitempty"`
}

// Grant types understood by the engine. Providers may accept their own as
// well; the catalog lists which ones each provider supports.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantDeviceCode        = "device_code"
)

// Provider is the one thing every provider does: turn grant material into a
// token, and a token into a fresher one. Anything more is an optional
// capability below, checked with a type assertion, as Dex does for its
// connectors.
type Provider interface {
	// Exchange obtains the first token of a link.
	Exchange(ctx context.Context, g Grant) (*Token, error)
	// Refresh returns a token that replaces t. A reply without a refresh
	// token keeps t's; a rotated one is adopted. Implementations must not
	// modify t.
	Refresh(ctx context.Context, t *Token) (*Token, error)
}

// Authorizer is implemented by providers that send the end-user through a
// browser (authorization code flow).
type Authorizer interface {
	// AuthCodeURL is where the end-user's browser goes. verifier is the
	// PKCE code verifier; the URL carries its S256 challenge.
	AuthCodeURL(state, verifier, redirectURL string, scopes []string, params map[string]string) (string, error)
}

// IDTokenVerifier is implemented by OpenID Connect providers. Their
// Exchange verifies the reply's ID token (signature, issuer, audience,
// expiry, and the grant's Nonce) and reports its sub in Token.Subject;
// AuthCodeURLNonce is AuthCodeURL with the nonce to send (OpenID Connect
// Core section 3.1.2.1), which the caller keeps for Grant.Nonce.
type IDTokenVerifier interface {
	Authorizer
	AuthCodeURLNonce(state, verifier, nonce, redirectURL string, scopes []string, params map[string]string) (string, error)
}

// DeviceAuthorizer is implemented by providers that support the device
// authorization grant (RFC 8628).
type DeviceAuthorizer interface {
	DeviceAuth(ctx context.Context, scopes []string) (*DeviceAuth, error)
}

// DeviceAuth is the answer to a device authorization request. DeviceCode
// is a secret; the rest is shown to the end-user.
type DeviceAuth struct {
	DeviceCode              string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	Expiry                  time.Time
	Interval                time.Duration
}

// Revoker is implemented by providers that can invalidate a token
// (RFC 7009, a logout endpoint, or a provider's own call).
type Revoker interface {
	Revoke(ctx context.Context, t *Token) error
}

// Introspector is implemented by providers that can tell whether a token
// is active and when it expires (RFC 7662).
type Introspector interface {
	Introspect(ctx context.Context, accessToken string) (*Introspection, error)
}

// Introspection is the non-secret part of an RFC 7662 answer.
type Introspection struct {
	Active bool
	Expiry time.Time
	Scopes []string
}

// Endpoint lists a provider's URLs. Empty ones are not offered.
type Endpoint struct {
	AuthURL          string `yaml:"auth_url" json:"auth_url,omitempty"`
	TokenURL         string `yaml:"token_url" json:"token_url,omitempty"`
	DeviceAuthURL    string `yaml:"device_auth_url" json:"device_auth_url,omitempty"`
	RevocationURL    string `yaml:"revocation_url" json:"revocation_url,omitempty"`
	IntrospectionURL string `yaml:"introspection_url" json:"introspection_url,omitempty"`
	UserinfoURL      string `yaml:"userinfo_url" json:"userinfo_url,omitempty"`
	LogoutURL        string `yaml:"logout_url" json:"logout_url,omitempty"`
}

// validURL reports whether s is empty or an absolute http(s) URL.
func validURL(s string) bool { return s == "" || AbsoluteHTTP(s) }

// Reenroller is implemented by providers that can obtain a fresh token for
// a link without the end-user when its refresh token is rejected, from the
// stored grant material (Norman re-issues tokens for a known user; a
// password grant logs in again). The engine calls it instead of giving up
// on invalid_grant.
type Reenroller interface {
	Reenroll(ctx context.Context, g Grant) (*Token, error)
}

// Verifier is implemented by providers that can check that a token works
// against the provider's API (Norman's verify call, a GraphQL ping): a
// link health check that means more than "not yet expired".
type Verifier interface {
	Verify(ctx context.Context, t *Token) error
}

// AuthFailureDetector is implemented by providers whose API can refuse an
// access token without answering 401: a GraphQL server answers 200 with
// an "Unauthenticated." error (Luca). The gateway's proxy refreshes the
// link's token and retries once when the API answers 401; with this it
// does the same for such a reply, so that a caller never meets an expired
// or revoked token as if it were a permanent failure of its request.
type AuthFailureDetector interface {
	// AuthFailed reports whether a reply of the provider's API says the
	// access token was not accepted. body is the start of the reply's
	// body, bounded by the caller (the whole body of a short reply);
	// a truncated body must not count as a failure. It must not keep
	// body or header, which may hold the API's data.
	AuthFailed(status int, header http.Header, body []byte) bool
}
