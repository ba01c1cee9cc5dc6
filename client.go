// Package tokenwarden is a client for the Tokenwarden gateway. A backend
// service uses it to enrol links (one user at one OAuth2 provider) and to
// obtain their current access tokens, most simply through TokenSource:
//
//	tw := tokenwarden.NewClient("http://tokenwarden:8080", apiKey)
//	httpClient := oauth2.NewClient(ctx, tw.TokenSource(linkID))
//
// The gateway keeps tokens fresh; this package only asks for them, caches
// them briefly and maps the gateway's error envelope onto *APIError.
package tokenwarden

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Error codes the gateway puts in APIError.Code. A caller usually needs only
// a few: the link_* codes tell it to send its user through enrolment again
// (reauth_required) or to stop using the link (link_revoked, link_failed).
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidJSON      = "invalid_json"
	CodeUnknownField     = "unknown_field"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnauthorized     = "unauthorized"
	CodeNotFound         = "not_found"
	CodeUnknownProvider  = "unknown_provider"
	CodeUnsupportedGrant = "unsupported_grant"
	CodeLinkRevoked      = "link_revoked"
	CodeReauthRequired   = "reauth_required"
	CodeLinkPending      = "link_pending"
	CodeLinkFailed       = "link_failed"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeRefreshFailed    = "refresh_failed"
	CodeConflict         = "conflict"
	CodeInternal         = "internal"
)

// Grant types a link can be created with.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantDeviceCode        = "device_code"
)

// DefaultTimeout bounds a request made by a client from NewClient, so that a
// TokenSource (whose Token method takes no context) cannot hang forever on a
// gateway that stopped answering.
const DefaultTimeout = 30 * time.Second

// maxResponseBytes caps what the client reads from the gateway; every
// legitimate answer is far smaller.
const maxResponseBytes = 8 << 20

// Client talks to a Tokenwarden gateway. Its fields may be set directly;
// it is safe for concurrent use once they no longer change.
type Client struct {
	// BaseURL is the gateway's root, e.g. "http://127.0.0.1:8080".
	BaseURL string
	// APIKey is sent as a bearer token on every call.
	APIKey string
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// NewClient returns a client for the gateway at baseURL that authenticates
// with apiKey and gives up on a request after DefaultTimeout.
func NewClient(baseURL, apiKey string) *Client {
	return &Client{
		BaseURL:    baseURL,
		APIKey:     apiKey,
		HTTPClient: &http.Client{Timeout: DefaultTimeout},
	}
}

// APIError is an error answer from the gateway. Use errors.As to get at it.
// It carries what the gateway chose to say, which never includes a secret.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is one of the Code* constants (or a newer one).
	Code string
	// Message is the gateway's explanation for humans.
	Message string
	// RequestID identifies the request in the gateway's logs.
	RequestID string
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("tokenwarden: ")
	if e.Message != "" {
		b.WriteString(e.Message)
	} else {
		b.WriteString(strings.ToLower(http.StatusText(e.Status)))
	}
	fmt.Fprintf(&b, " (%s, HTTP %d", e.Code, e.Status)
	if e.RequestID != "" {
		fmt.Fprintf(&b, ", request %s", e.RequestID)
	}
	b.WriteString(")")
	return b.String()
}

// Temporary reports whether trying again later may succeed: the gateway or
// something behind it is overloaded or down, rather than the request or the
// link being wrong.
func (e *APIError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500 ||
		e.Code == CodeRateLimited || e.Code == CodeUnavailable
}

// ErrorCode returns the gateway's error code carried by err, or "" if err
// is not (and does not wrap) an *APIError.
func ErrorCode(err error) string {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code
	}
	return ""
}

// Credentials are the resource owner's username and password, for the
// password grant. Their String form hides the password.
type Credentials struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

func (c Credentials) String() string {
	return fmt.Sprintf("{Username:%s Password:[redacted]}", c.Username)
}

// GoString keeps %#v from printing the password.
func (c Credentials) GoString() string {
	return fmt.Sprintf("tokenwarden.Credentials{Username:%q, Password:[redacted]}", c.Username)
}

// CreateLinkRequest asks the gateway to start keeping a link alive.
type CreateLinkRequest struct {
	Provider string `json:"provider"`
	UserID   string `json:"user_id"`
	// Grant is one of the Grant* constants the provider offers
	// (Provider.Grants); the gateway requires it.
	Grant       string            `json:"grant,omitempty"`
	Scopes      []string          `json:"scopes,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	Credentials *Credentials      `json:"credentials,omitempty"`
	// ReturnURL is where the end-user's browser goes after authorising
	// (authorization_code only).
	ReturnURL string `json:"return_url,omitempty"`
}

// DeviceAuthorization is what to show the end-user of a device_code link.
type DeviceAuthorization struct {
	UserCode                string    `json:"user_code"`
	VerificationURI         string    `json:"verification_uri"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	ExpiresAt               time.Time `json:"expires_at,omitzero"`
}

// Link is the gateway's view of a link. It holds no token.
type Link struct {
	ID               string         `json:"id"`
	Provider         string         `json:"provider"`
	UserID           string         `json:"user_id"`
	Grant            string         `json:"grant,omitempty"`
	Status           string         `json:"status"`
	Scopes           []string       `json:"scopes,omitempty"`
	ExpiresAt        time.Time      `json:"expires_at,omitzero"`
	RefreshExpiresAt time.Time      `json:"refresh_expires_at,omitzero"`
	NextRefreshAt    time.Time      `json:"next_refresh_at,omitzero"`
	LastError        string         `json:"last_error,omitempty"`
	RefreshCount     int            `json:"refresh_count,omitempty"`
	Metadata         map[string]any `json:"metadata,omitempty"`
	CreatedAt        time.Time      `json:"created_at,omitzero"`
	UpdatedAt        time.Time      `json:"updated_at,omitzero"`

	// AuthorizationURL is where to send the end-user's browser; set by
	// CreateLink (and reauthorisation) for the authorization_code grant.
	AuthorizationURL string `json:"authorization_url,omitempty"`
	// Device is set by CreateLink for the device_code grant.
	Device *DeviceAuthorization `json:"device,omitempty"`
}

// ListOptions filters ListLinks. Empty fields do not filter.
type ListOptions struct {
	Provider string
	Status   string
	UserID   string
	// Cursor is the NextCursor of the previous page; empty for the first.
	Cursor string
	// Limit is the page size; 0 lets the gateway choose.
	Limit int
}

// LinkPage is one page of ListLinks. NextCursor is empty on the last page.
type LinkPage struct {
	Links      []Link `json:"links"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// RefreshResult is the outcome of a forced refresh.
type RefreshResult struct {
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	VaultVersion int       `json:"vault_version,omitempty"`
}

// Endpoint lists a provider's URLs.
type Endpoint struct {
	AuthURL          string `json:"auth_url,omitempty"`
	TokenURL         string `json:"token_url,omitempty"`
	DeviceAuthURL    string `json:"device_auth_url,omitempty"`
	RevocationURL    string `json:"revocation_url,omitempty"`
	IntrospectionURL string `json:"introspection_url,omitempty"`
	UserinfoURL      string `json:"userinfo_url,omitempty"`
	LogoutURL        string `json:"logout_url,omitempty"`
}

// Provider is one entry of the gateway's provider catalog.
type Provider struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Issuer    string   `json:"issuer,omitempty"`
	Endpoint  Endpoint `json:"endpoint"`
	AuthStyle string   `json:"auth_style,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	// ClientSecret says where the secret lives ({"vault": "path#field"},
	// {"env": "NAME"} or {"inline": true}); it is never the secret.
	ClientSecret  map[string]any    `json:"client_secret,omitempty"`
	Scopes        []string          `json:"scopes,omitempty"`
	Grants        []string          `json:"grants,omitempty"`
	PKCE          bool              `json:"pkce"`
	AuthParams    map[string]string `json:"auth_params,omitempty"`
	TokenParams   map[string]string `json:"token_params,omitempty"`
	AllowedParams []string          `json:"allowed_params,omitempty"`
	// Schedule is the provider's refresh schedule as the gateway shows it.
	Schedule map[string]any `json:"schedule,omitempty"`
}

// tokenResponse is the wire form of GET /v1/links/{id}/token.
type tokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	Scopes      []string  `json:"scopes,omitempty"`
}

// CreateLink starts a link. For authorization_code the returned link
// carries AuthorizationURL, for device_code it carries Device. A non-empty
// idempotencyKey makes retries safe: the gateway answers a repeat with the
// link it created the first time.
func (c *Client) CreateLink(ctx context.Context, r CreateLinkRequest, idempotencyKey string) (*Link, error) {
	req, err := c.NewRequest(ctx, http.MethodPost, "/v1/links", r)
	if err != nil {
		return nil, err
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	var l Link
	if err := c.Do(req, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// GetLink returns the link's current state.
func (c *Client) GetLink(ctx context.Context, id string) (*Link, error) {
	p, err := linkPath(id, "")
	if err != nil {
		return nil, err
	}
	var l Link
	if err := c.call(ctx, http.MethodGet, p, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// ListLinks returns one page of the caller's links.
func (c *Client) ListLinks(ctx context.Context, opts ListOptions) (*LinkPage, error) {
	var page LinkPage
	if err := c.call(ctx, http.MethodGet, listPath(opts), nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// Token returns the link's access token, valid for at least minTTL (the
// gateway refreshes first if needed; minTTL <= 0 accepts any valid token).
// A link that cannot yield a token gives an *APIError with code
// link_revoked, reauth_required, link_pending or link_failed.
func (c *Client) Token(ctx context.Context, id string, minTTL time.Duration) (*oauth2.Token, error) {
	p, err := tokenPath(id, minTTL)
	if err != nil {
		return nil, err
	}
	var tr tokenResponse
	if err := c.call(ctx, http.MethodGet, p, nil, &tr); err != nil {
		return nil, err
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("tokenwarden: token for link %q: gateway answered without an access token", id)
	}
	t := &oauth2.Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType, Expiry: tr.ExpiresAt}
	if len(tr.Scopes) > 0 {
		t = t.WithExtra(map[string]any{"scopes": tr.Scopes})
	}
	return t, nil
}

// Refresh makes the gateway refresh the link's token now.
func (c *Client) Refresh(ctx context.Context, id string) (*RefreshResult, error) {
	p, err := linkPath(id, "refresh")
	if err != nil {
		return nil, err
	}
	var r RefreshResult
	if err := c.call(ctx, http.MethodPost, p, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Revoke ends the link: the gateway revokes its tokens at the provider and
// forgets them. reason is recorded in the audit trail; it may be empty.
func (c *Client) Revoke(ctx context.Context, id, reason string) error {
	p, err := linkPath(id, "revoke")
	if err != nil {
		return err
	}
	var body any
	if reason != "" {
		body = struct {
			Reason string `json:"reason"`
		}{reason}
	}
	return c.call(ctx, http.MethodPost, p, body, nil)
}

// Providers lists the providers the gateway knows.
func (c *Client) Providers(ctx context.Context) ([]Provider, error) {
	var r struct {
		Providers []Provider `json:"providers"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/providers", nil, &r); err != nil {
		return nil, err
	}
	return r.Providers, nil
}

// linkPath is the API path of link id, followed by /action when action is
// not empty. It rejects an empty id, which would address the collection.
func linkPath(id, action string) (string, error) {
	if strings.TrimSpace(id) == "" {
		return "", errors.New("tokenwarden: empty link id")
	}
	p := "/v1/links/" + url.PathEscape(id)
	if action != "" {
		p += "/" + action
	}
	return p, nil
}

// tokenPath is the API path that asks for link id's token with at least
// minTTL left, rounded up to whole seconds.
func tokenPath(id string, minTTL time.Duration) (string, error) {
	p, err := linkPath(id, "token")
	if err != nil {
		return "", err
	}
	if minTTL > 0 {
		secs := int64(math.Ceil(minTTL.Seconds()))
		p += "?min_ttl=" + strconv.FormatInt(secs, 10)
	}
	return p, nil
}

// listPath is the API path of the link listing filtered by opts.
func listPath(opts ListOptions) string {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("provider", opts.Provider)
	set("status", opts.Status)
	set("user_id", opts.UserID)
	set("cursor", opts.Cursor)
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if len(q) == 0 {
		return "/v1/links"
	}
	return "/v1/links?" + q.Encode()
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	req, err := c.NewRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	return c.Do(req, out)
}

// NewRequest builds a request to the gateway: path (which may carry a
// query) is resolved against BaseURL, body (if not nil) is sent as JSON,
// and the API key as a bearer token. It is exported, with Do, for callers
// that need the raw answer or a route this package does not wrap.
func (c *Client) NewRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		return nil, errors.New("tokenwarden: client has no BaseURL")
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("tokenwarden: encode %s %s request: %w", method, routeOf(path), err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		// Not wrapping err: url errors quote the whole URL, and a BaseURL
		// may carry userinfo.
		return nil, fmt.Errorf("tokenwarden: invalid gateway URL or path for %s %s", method, routeOf(path))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tokenwarden-go")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	return req, nil
}

// Do sends req and decodes a successful JSON answer into out (ignored when
// nil; a *json.RawMessage receives the body as it is). A gateway error
// becomes an *APIError.
func (c *Client) Do(req *http.Request, out any) error {
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	route := req.Method + " " + routeOf(req.URL.Path)
	resp, err := hc.Do(req)
	if err != nil {
		// A *url.Error names the full URL, which is harmless here (the
		// API key travels in a header), but the route reads better.
		return fmt.Errorf("tokenwarden: %s: %w", route, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("tokenwarden: %s: read answer: %w", route, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return parseAPIError(resp, body)
	}
	if out == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		// The body is not quoted: on the token route it holds a secret.
		return fmt.Errorf("tokenwarden: %s: decode answer: %w", route, err)
	}
	return nil
}

// parseAPIError reads the gateway's error envelope. An answer without one
// (a proxy's error page, say) still yields an *APIError, coded from the
// status, and none of its body: it is not ours to repeat.
func parseAPIError(resp *http.Response, body []byte) *APIError {
	var env struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	e := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(body, &env) == nil && env.Error.Code != "" {
		e.Code = env.Error.Code
		e.Message = env.Error.Message
		e.RequestID = env.Error.RequestID
		return e
	}
	e.Code = codeForStatus(resp.StatusCode)
	e.RequestID = resp.Header.Get("X-Request-Id")
	return e
}

func codeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return CodeUnauthorized
	case status == http.StatusNotFound:
		return CodeNotFound
	case status == http.StatusConflict:
		return CodeConflict
	case status == http.StatusTooManyRequests:
		return CodeRateLimited
	case status == http.StatusRequestEntityTooLarge:
		return CodeBodyTooLarge
	case status == http.StatusBadGateway, status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		return CodeUnavailable
	case status >= 500:
		return CodeInternal
	}
	return CodeBadRequest
}

// routeOf shortens a path for error messages: link ids are kept (they are
// not secret), queries are dropped.
func routeOf(path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return path[:i]
	}
	return path
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
