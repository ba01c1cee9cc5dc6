package generic

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenwarden/tokenwarden/providers"
)

// Operation names in errors.
const (
	opAuthURL    = "auth_url"
	opExchange   = "exchange"
	opRefresh    = "refresh"
	opDeviceAuth = "device_auth"
	opRevoke     = "revoke"
	opIntrospect = "introspect"
)

// defaultInterval is RFC 8628's polling interval when the server names
// none.
const defaultInterval = 5 * time.Second

// refused is a call the provider cannot make as configured or as asked.
// The cause is ours, not the server's, so it is Permanent.
func refused(op string, err error) error {
	return &providers.Error{Class: providers.Permanent, Op: op, Err: err}
}

func unsupported(op, what string) error {
	return refused(op, fmt.Errorf("%s: %w", what, providers.ErrUnsupported))
}

// AuthCodeURL builds the authorization URL: PKCE S256 when the entry
// asks for it, the catalog's auth_params, then the caller's params,
// each of which must be in allowed_params. A disallowed param is an
// error rather than dropped, so that a caller learns it was not sent.
func (p *Provider) AuthCodeURL(state, verifier, redirectURL string, scopes []string, params map[string]string) (string, error) {
	return p.authCodeURL(state, verifier, "", redirectURL, scopes, params)
}

// authCodeURL is AuthCodeURL with an OpenID Connect nonce when nonce is
// not empty.
func (p *Provider) authCodeURL(state, verifier, nonce, redirectURL string, scopes []string, params map[string]string) (string, error) {
	if p.e.Endpoint.AuthURL == "" || !p.e.HasGrant(providers.GrantAuthorizationCode) {
		return "", unsupported(opAuthURL, "authorization_code grant")
	}
	if state == "" {
		return "", refused(opAuthURL, errors.New("state is required"))
	}
	if p.e.PKCE && verifier == "" {
		return "", refused(opAuthURL, errors.New("PKCE is on and no code verifier was given"))
	}
	var bad []string
	for k := range params {
		if !slices.Contains(p.e.AllowedParams, k) {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return "", refused(opAuthURL, fmt.Errorf("params not in allowed_params: %s", strings.Join(bad, ", ")))
	}
	if len(scopes) == 0 {
		scopes = p.e.Scopes
	}
	c := oauth2.Config{
		ClientID:    p.e.ClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: p.e.Endpoint.AuthURL},
		RedirectURL: redirectURL,
		Scopes:      scopes,
	}
	var opts []oauth2.AuthCodeOption
	if p.e.PKCE {
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	// Caller params after catalog ones: allowing a param means letting
	// the caller override its default.
	for _, m := range []map[string]string{p.e.AuthParams, params} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			opts = append(opts, oauth2.SetAuthURLParam(k, m[k]))
		}
	}
	if nonce != "" {
		// Last, so that no catalog or caller param replaces the nonce
		// the ID token is checked against.
		opts = append(opts, oauth2.SetAuthURLParam("nonce", nonce))
	}
	return c.AuthCodeURL(state, opts...), nil
}

// Exchange makes one token request for grant material g. For device_code
// that is one poll: until the end-user is done it returns an *Error
// wrapping providers.ErrAuthorizationPending or providers.ErrSlowDown,
// and the caller polls again after the interval. g.Params go to the
// token endpoint for the non-browser grants, limited to allowed_params;
// for authorization_code they already went into the authorization URL.
func (p *Provider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	if !p.e.HasGrant(g.Type) {
		return nil, unsupported(opExchange, fmt.Sprintf("grant %q", g.Type))
	}
	scopes := g.Scopes
	if len(scopes) == 0 {
		scopes = p.e.Scopes
	}
	form := url.Values{}
	for k, v := range p.e.TokenParams {
		form.Set(k, v)
	}
	if g.Type != providers.GrantAuthorizationCode {
		for k, v := range g.Params {
			if !slices.Contains(p.e.AllowedParams, k) {
				return nil, refused(opExchange, fmt.Errorf("param %q is not in allowed_params", k))
			}
			form.Set(k, v)
		}
	}
	switch g.Type {
	case providers.GrantAuthorizationCode:
		if g.Code == "" {
			return nil, refused(opExchange, errors.New("grant has no code"))
		}
		if p.e.PKCE && g.CodeVerifier == "" {
			return nil, refused(opExchange, errors.New("PKCE is on and the grant has no code verifier"))
		}
		form.Set("grant_type", "authorization_code")
		form.Set("code", g.Code)
		if g.RedirectURL != "" {
			form.Set("redirect_uri", g.RedirectURL)
		}
		// Without PKCE the authorization request carried no challenge, and
		// a verifier would only make a strict server refuse the exchange.
		if p.e.PKCE && g.CodeVerifier != "" {
			form.Set("code_verifier", g.CodeVerifier)
		}
	case providers.GrantClientCredentials:
		form.Set("grant_type", "client_credentials")
		setScope(form, scopes)
	case providers.GrantPassword:
		if g.Username == "" || g.Password == "" {
			return nil, refused(opExchange, errors.New("grant needs a username and a password"))
		}
		form.Set("grant_type", "password")
		form.Set("username", g.Username)
		form.Set("password", g.Password)
		setScope(form, scopes)
	case providers.GrantDeviceCode:
		if g.DeviceCode == "" {
			return nil, refused(opExchange, errors.New("grant has no device code"))
		}
		form.Set("grant_type", providers.GrantTypeDeviceCode)
		form.Set("device_code", g.DeviceCode)
	default:
		return nil, unsupported(opExchange, fmt.Sprintf("grant %q", g.Type))
	}
	tok, err := p.TokenRequest(ctx, opExchange, form)
	if err != nil {
		return nil, err
	}
	if tok.Scopes == nil {
		// RFC 6749 section 5.1: no scope in the reply means as requested.
		tok.Scopes = slices.Clone(scopes)
	}
	return tok, nil
}

func setScope(form url.Values, scopes []string) {
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
}

// Refresh uses t's refresh token. The reply's fields replace t's; what
// the reply leaves out (refresh token, scope, ID token) is kept, and so
// is the refresh token's expiry unless the refresh token rotated.
func (p *Provider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	if t == nil || t.RefreshToken == "" {
		return nil, &providers.Error{Class: providers.InvalidGrant, Op: opRefresh, Err: errors.New("no refresh token")}
	}
	form := url.Values{}
	for k, v := range p.e.TokenParams {
		form.Set(k, v)
	}
	form.Set("grant_type", "refresh_token")
	form.Set("refresh_token", t.RefreshToken)
	tok, err := p.TokenRequest(ctx, opRefresh, form)
	if err != nil {
		return nil, err
	}
	KeepRefreshed(t, tok)
	if tok.IDToken == "" {
		tok.IDToken = t.IDToken
	}
	return tok, nil
}

// KeepRefreshed completes tok, the reply to refreshing prev, with what
// the reply left out: the refresh token, its expiry (unless the refresh
// token rotated), the scopes, the metadata (the reply's fields win) and
// the subject (a refresh is for the same end-user).
func KeepRefreshed(prev, tok *providers.Token) {
	rotated := tok.RefreshToken != "" && tok.RefreshToken != prev.RefreshToken
	if tok.RefreshToken == "" {
		tok.RefreshToken = prev.RefreshToken
	}
	if tok.RefreshExpiry.IsZero() && !rotated {
		tok.RefreshExpiry = prev.RefreshExpiry
	}
	if tok.Scopes == nil {
		tok.Scopes = slices.Clone(prev.Scopes)
	}
	if tok.Subject == "" {
		tok.Subject = prev.Subject
	}
	if len(prev.Extra) > 0 {
		merged := maps.Clone(prev.Extra)
		maps.Copy(merged, tok.Extra)
		tok.Extra = merged
	}
}

// DeviceAuth starts the device authorization grant (RFC 8628 section
// 3.1), authenticating the client as at the token endpoint: Keycloak
// insists on that for confidential clients, and x/oauth2 does not do it.
func (p *Provider) DeviceAuth(ctx context.Context, scopes []string) (*providers.DeviceAuth, error) {
	if p.e.Endpoint.DeviceAuthURL == "" || !p.e.HasGrant(providers.GrantDeviceCode) {
		return nil, unsupported(opDeviceAuth, "device_code grant")
	}
	if len(scopes) == 0 {
		scopes = p.e.Scopes
	}
	form := url.Values{}
	setScope(form, scopes)
	r, err := p.postAuth(ctx, opDeviceAuth, p.e.Endpoint.DeviceAuthURL, form)
	if err != nil {
		return nil, err
	}
	f, perr := decodeFields(r.header.Get("Content-Type"), r.body)
	code, desc := str(f, "error"), str(f, "error_description")
	if !r.ok() || code != "" {
		return nil, providers.ResponseError(opDeviceAuth, r.status, r.header, code, desc)
	}
	if perr != nil || str(f, "device_code") == "" || str(f, "user_code") == "" {
		return nil, &providers.Error{Class: providers.Transient, Op: opDeviceAuth, Status: r.status, Err: providers.ErrMalformedReply}
	}
	da := &providers.DeviceAuth{
		DeviceCode:              str(f, "device_code"),
		UserCode:                str(f, "user_code"),
		VerificationURI:         str(f, "verification_uri"),
		VerificationURIComplete: str(f, "verification_uri_complete"),
		Interval:                defaultInterval,
	}
	if da.VerificationURI == "" {
		// Google's early drafts spelled it verification_url.
		da.VerificationURI = str(f, "verification_url")
	}
	if d, ok := seconds(f, "expires_in"); ok {
		da.Expiry = p.now().Add(d)
	}
	if d, ok := seconds(f, "interval"); ok {
		da.Interval = d
	}
	return da, nil
}

// Revoke revokes t at the RFC 7009 endpoint: the refresh token first,
// since that ends the grant, then the access token. A server that does
// not revoke access tokens (unsupported_token_type) is not an error.
// RFC 7009 answers 200 for tokens already invalid, so a repeat is fine.
func (p *Provider) Revoke(ctx context.Context, t *providers.Token) error {
	if p.e.Endpoint.RevocationURL == "" {
		return unsupported(opRevoke, "revocation endpoint")
	}
	if t == nil || (t.RefreshToken == "" && t.AccessToken == "") {
		return nil
	}
	if t.RefreshToken != "" {
		if err := p.revoke(ctx, t.RefreshToken, "refresh_token"); err != nil {
			return err
		}
	}
	if t.AccessToken != "" {
		err := p.revoke(ctx, t.AccessToken, "access_token")
		var pe *providers.Error
		if errors.As(err, &pe) && pe.Code == "unsupported_token_type" {
			return nil
		}
		return err
	}
	return nil
}

func (p *Provider) revoke(ctx context.Context, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	r, err := p.postAuth(ctx, opRevoke, p.e.Endpoint.RevocationURL, form)
	if err != nil {
		return err
	}
	if r.ok() {
		return nil
	}
	code, desc := errorFields(r)
	return providers.ResponseError(opRevoke, r.status, r.header, code, desc)
}

// Introspect asks the RFC 7662 endpoint about an access token.
func (p *Provider) Introspect(ctx context.Context, accessToken string) (*providers.Introspection, error) {
	if p.e.Endpoint.IntrospectionURL == "" {
		return nil, unsupported(opIntrospect, "introspection endpoint")
	}
	form := url.Values{"token": {accessToken}, "token_type_hint": {"access_token"}}
	r, err := p.postAuth(ctx, opIntrospect, p.e.Endpoint.IntrospectionURL, form)
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		code, desc := errorFields(r)
		return nil, providers.ResponseError(opIntrospect, r.status, r.header, code, desc)
	}
	f, err := decodeFields("application/json", r.body)
	if err != nil {
		return nil, &providers.Error{Class: providers.Transient, Op: opIntrospect, Status: r.status, Err: providers.ErrMalformedReply}
	}
	active, ok := f["active"].(bool)
	if !ok {
		return nil, &providers.Error{Class: providers.Transient, Op: opIntrospect, Status: r.status, Err: providers.ErrMalformedReply}
	}
	in := &providers.Introspection{Active: active, Scopes: scopes(f["scope"])}
	if n, ok := f["exp"].(interface{ Float64() (float64, error) }); ok {
		if exp, err := n.Float64(); err == nil && exp > 0 && exp < float64(p.now().Add(maxLifetime).Unix()) {
			in.Expiry = time.Unix(int64(exp), 0)
		}
	}
	return in, nil
}
