// Package luca is the provider for Luca Regnskap, a Norwegian accounting
// service: an OAuth 2.0 authorization code flow at
// {base_url}/api/v1/oauth2/authorize, tokens at {base_url}/api/v2/oauth2/token
// (client credentials in the form), and a GraphQL API at
// {base_url}/api/v1/graphql that doubles as the token check.
//
// The generic provider does the OAuth calls. This package fixes Luca's
// paths, scope and client authentication, checks the two consent
// parameters Luca documents (organisation_number, locale), leaves PKCE
// off unless asked (Luca does not document it), and verifies tokens with
// a GraphQL query.
//
// Assumptions that remain, with the seed ("API: Authenticate with
// OAuth2") sentence they rest on:
//   - "We will send back the following parameters: code ... scope": no
//     state. The kind therefore defaults to redirect_state: path: the
//     state rides in the redirect URI's path and a cookie binds the flow
//     to the browser (see providers.RedirectStatePath). This assumes
//     Luca accepts a redirect_uri per request ("redirect_uri – (required)
//     The URL the user will be redirected to"; the application's setup in
//     "Settings->Advanced" asks for no redirect URL).
//   - The token request shows no redirect_uri; Tokenwarden sends the one
//     of the authorization request anyway, so that a code issued for
//     another link (another path) is refused where Luca checks it, as
//     RFC 6749 4.1.3 requires. Without PKCE that check is what binds a
//     code to its link: redirect_state: query is refused unless pkce is
//     on.
//   - "currently we support only one scope which is accounting": any
//     other scope is refused when the catalog loads.
//   - "use the API as usual by calling POST to /api/v1/graphql" with the
//     example "{ saleInvoices { nodes { id } } }": the nodes shape is
//     taken as a paginated connection that takes first: n, so the check
//     asks for one invoice. A GraphQL reply 200 whose errors say
//     "Unauthenticated." (as Laravel's GraphQL servers answer) means the
//     access token is not accepted: refresh. The check says so, and the
//     gateway's proxy refreshes and retries as on a 401 (AuthFailed).
//
// Luca documents no revocation endpoint, so Provider is not a
// providers.Revoker: revoking a link wipes its secrets, and the grant
// stays listed in the user's Luca settings until removed there.
package luca

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/generic"
)

// KindName is the kind under which builtin registers this package.
const KindName = "luca"

// Scope is the one scope Luca supports.
const Scope = "accounting"

// Consent parameters Luca's authorization endpoint takes besides the
// OAuth ones. List them in the entry's allowed_params to let callers set
// them per link.
const (
	ParamOrganisation = "organisation_number"
	ParamLocale       = "locale"
)

// New is the providers.Kind of Luca.
func New() providers.Config { return &Config{} }

// Config is the settings block of kind luca.
type Config struct {
	// BaseURL is the Luca installation, e.g. https://app.luca.no.
	BaseURL string `yaml:"base_url"`
	// PKCE sends an S256 challenge and the verifier. Luca does not
	// document PKCE, so it is off by default. The entry-level pkce flag
	// is not used for this kind: the catalog defaults it to true, which
	// would turn on something Luca never promised to accept.
	PKCE bool `yaml:"pkce"`
	// GraphQLURL is the API endpoint Verify queries. Default: next to
	// the token endpoint ({base}/api/v1/graphql, where {base} is the
	// catalog's endpoint.token_url without /api/v2/oauth2/token, or
	// base_url).
	GraphQLURL string `yaml:"graphql_url"`
}

// DefaultRedirectState is path: Luca documents no state in its redirect.
func (c *Config) DefaultRedirectState() providers.RedirectState { return providers.RedirectStatePath }

// Validate lists what is wrong with e and the settings.
func (c *Config) Validate(e providers.Entry) error {
	var errs []error
	if err := providers.CheckBaseURL(c.BaseURL); err != nil {
		errs = append(errs, err)
	}
	for _, g := range e.Grants {
		if g != providers.GrantAuthorizationCode {
			errs = append(errs, fmt.Errorf("grant %q is not supported by kind luca; Luca offers authorization_code only", g))
		}
	}
	switch e.AuthStyle {
	case providers.AuthStyleAuto, providers.AuthStyleBody:
	default:
		errs = append(errs, fmt.Errorf("auth_style %s: Luca takes client_id and client_secret in the form; leave auth_style out or use body", e.AuthStyle))
	}
	if err := checkParams("auth_params", e.AuthParams); err != nil {
		errs = append(errs, err)
	}
	for _, sc := range e.Scopes {
		if sc != Scope {
			errs = append(errs, fmt.Errorf("scope %q: Luca offers only the scope %s", sc, Scope))
		}
	}
	if c.GraphQLURL != "" && !providers.AbsoluteHTTP(c.GraphQLURL) {
		errs = append(errs, fmt.Errorf("settings.graphql_url %q is not an absolute http(s) URL", c.GraphQLURL))
	}
	if e.RedirectState == providers.RedirectStateQuery && !c.PKCE {
		errs = append(errs, errors.New("redirect_state: query needs settings.pkce: true for kind luca: "+
			"without PKCE and without a per-link redirect URI a code issued for another link would be accepted"))
	}
	return errors.Join(errs...)
}

var orgNumberRE = regexp.MustCompile(`^[0-9]{9}$`)

// checkParams validates the consent parameters Luca defines. Luca
// documents locale as nb or en; organisation_number is a Norwegian
// organisation number, which has nine digits (Brønnøysundregistrene).
func checkParams(where string, params map[string]string) error {
	if v, ok := params[ParamLocale]; ok && v != "nb" && v != "en" {
		return fmt.Errorf("%s: locale must be nb or en, got %q", where, v)
	}
	if v, ok := params[ParamOrganisation]; ok && !orgNumberRE.MatchString(v) {
		return fmt.Errorf("%s: organisation_number must be nine digits", where)
	}
	return nil
}

// Endpoints returns Luca's OAuth endpoints for base.
func Endpoints(base string) providers.Endpoint {
	b := strings.TrimSuffix(base, "/")
	return providers.Endpoint{AuthURL: b + "/api/v1/oauth2/authorize", TokenURL: b + "/api/v2/oauth2/token"}
}

// Open builds the provider. Endpoints set in the catalog win over the
// ones derived from base_url.
func (c *Config) Open(_ context.Context, e providers.Entry, s providers.Setup) (providers.Provider, error) {
	if err := c.Validate(e); err != nil {
		return nil, err
	}
	e.Endpoint = e.Endpoint.Or(Endpoints(c.BaseURL))
	e.PKCE = c.PKCE
	return NewProvider(e, s.ClientSecret, c.graphqlURL(e.Endpoint), s.HTTPClient)
}

// graphqlURL is settings.graphql_url, or the API next to the token
// endpoint in use: a catalog that moves the token endpoint to another
// installation moves the check with it.
func (c *Config) graphqlURL(ep providers.Endpoint) string {
	if c.GraphQLURL != "" {
		return c.GraphQLURL
	}
	if base, ok := strings.CutSuffix(ep.TokenURL, "/api/v2/oauth2/token"); ok {
		return base + "/api/v1/graphql"
	}
	return strings.TrimSuffix(c.BaseURL, "/") + "/api/v1/graphql"
}

// Provider talks to one Luca installation.
type Provider struct {
	g          *generic.Provider
	e          providers.Entry
	graphqlURL string
	client     *http.Client
}

var (
	_ providers.Provider            = (*Provider)(nil)
	_ providers.Authorizer          = (*Provider)(nil)
	_ providers.Verifier            = (*Provider)(nil)
	_ providers.EndpointReporter    = (*Provider)(nil)
	_ providers.AuthFailureDetector = (*Provider)(nil)
)

// NewProvider builds a provider from a complete entry; graphqlURL is the API
// endpoint Verify queries. Client authentication is always in the body,
// and the scope defaults to accounting.
func NewProvider(e providers.Entry, clientSecret, graphqlURL string, client *http.Client) (*Provider, error) {
	e.AuthStyle = providers.AuthStyleBody
	if len(e.Scopes) == 0 {
		e.Scopes = []string{Scope}
	}
	g, err := generic.New(e, clientSecret, client)
	if err != nil {
		return nil, err
	}
	return &Provider{g: g, e: g.Entry(), graphqlURL: graphqlURL, client: providers.HTTPClient(client)}, nil
}

// Endpoint returns the endpoints in use.
func (p *Provider) Endpoint() providers.Endpoint { return p.e.Endpoint }

// AuthCodeURL builds the consent URL. organisation_number (forces the
// company) and locale (nb or en) are checked here so that a bad value is
// a clear error for the caller instead of an error page for the user.
func (p *Provider) AuthCodeURL(state, verifier, redirectURL string, scopes []string, params map[string]string) (string, error) {
	if err := checkParams("params", params); err != nil {
		return "", &providers.Error{Class: providers.Permanent, Op: "auth_url", Err: err}
	}
	return p.g.AuthCodeURL(state, verifier, redirectURL, scopes, params)
}

// Exchange trades the authorization code (valid 10 minutes) for tokens.
// Without PKCE the gateway's verifier is not sent: there was no
// challenge for Luca to check it against.
func (p *Provider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	if !p.e.PKCE {
		g.CodeVerifier = ""
	}
	return p.g.Exchange(ctx, g)
}

// Refresh gets a new access token (one hour). Luca's refresh tokens do
// not expire by default and its reply repeats the refresh token; a new
// one, should Luca rotate, is adopted.
func (p *Provider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	return p.g.Refresh(ctx, t)
}

// verifyQuery is the documented example query bounded to one invoice:
// it needs the accounting scope, and its reply does not grow with the
// company's books.
const verifyQuery = `{ saleInvoices(first: 1) { nodes { id } } }`

// Verify runs a GraphQL query with t's access token. A 401, or a 200
// whose errors say the request is unauthenticated, means the token is
// not accepted (expired or revoked): class InvalidGrant with code
// invalid_token, so that the caller refreshes. Other GraphQL errors
// without data are Permanent: the token works but may not read
// invoices.
func (p *Provider) Verify(ctx context.Context, t *providers.Token) error {
	const op = "verify"
	if t == nil || t.AccessToken == "" {
		return &providers.Error{Class: providers.InvalidGrant, Op: op, Err: errors.New("no access token")}
	}
	body, _ := json.Marshal(map[string]string{"query": verifyQuery})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.graphqlURL, bytes.NewReader(body))
	if err != nil {
		return &providers.Error{Class: providers.Permanent, Op: op, Err: errors.New("bad GraphQL URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+t.AccessToken)
	resp, raw, err := providers.Send(p.client, op, req)
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		e := providers.ResponseError(op, resp.StatusCode, resp.Header, "invalid_token", "access token not accepted")
		e.Class = providers.InvalidGrant
		return e
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return providers.ResponseError(op, resp.StatusCode, resp.Header, "", "")
	}
	var reply graphQLReply
	if err := json.Unmarshal(raw, &reply); err != nil {
		return &providers.Error{Class: providers.Transient, Op: op, Status: resp.StatusCode, Err: providers.ErrMalformedReply}
	}
	if reply.unauthenticated() {
		e := providers.ResponseError(op, resp.StatusCode, resp.Header, "invalid_token", "access token not accepted (GraphQL: unauthenticated)")
		e.Class = providers.InvalidGrant
		return e
	}
	if len(reply.Data) == 0 || string(reply.Data) == "null" {
		e := providers.ResponseError(op, resp.StatusCode, resp.Header, "graphql_error", "")
		if len(reply.Errors) > 0 {
			// GraphQL messages describe the query, not the token.
			e = providers.ResponseError(op, resp.StatusCode, resp.Header, "graphql_error", reply.Errors[0].Message)
		}
		e.Class = providers.Permanent
		return e
	}
	return nil
}

// AuthFailed reports whether a reply of Luca's API refuses the access
// token: a 401, or a GraphQL reply 2xx (Lighthouse: 200) whose errors
// say the request is unauthenticated, as Verify reads them. The gateway's proxy then refreshes the link's token
// and sends the request again, as it does on a 401. A body cut short
// (a large reply) does not parse and is not a refusal: Lighthouse's
// refusal is a few hundred bytes.
func (p *Provider) AuthFailed(status int, _ http.Header, body []byte) bool {
	if status == http.StatusUnauthorized {
		return true
	}
	if status < 200 || status > 299 {
		return false
	}
	var reply graphQLReply
	return json.Unmarshal(body, &reply) == nil && reply.unauthenticated()
}

// graphQLReply is the part of a GraphQL answer the check reads.
type graphQLReply struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string `json:"message"`
		Extensions struct {
			Category string `json:"category"`
			Code     string `json:"code"`
		} `json:"extensions"`
	} `json:"errors"`
}

// unauthenticated reports whether the reply's errors say the request
// carried no accepted token. Lighthouse (Laravel) answers an
// unauthenticated request 200 with {"message":"Unauthenticated.",
// "extensions":{"category":"authentication"}}; Apollo-style servers use
// code UNAUTHENTICATED.
func (r *graphQLReply) unauthenticated() bool {
	for _, ge := range r.Errors {
		if ge.Message == "Unauthenticated." || ge.Extensions.Category == "authentication" ||
			ge.Extensions.Code == "UNAUTHENTICATED" {
			return true
		}
	}
	return false
}
