package generic

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
)

// maxBody caps what is read of a reply, as x/oauth2 does.
const maxBody = providers.MaxReplyBody

// reply is an HTTP answer from the provider. body may hold secrets; it
// never leaves this package.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r *reply) ok() bool { return r.status >= 200 && r.status < 300 }

// post sends form to u with client authentication in the given style.
func (p *Provider) post(ctx context.Context, op, u string, form url.Values, style providers.AuthStyle) (*reply, error) {
	form = cloneValues(form)
	switch style {
	case providers.AuthStyleBody:
		form.Set("client_id", p.e.ClientID)
		if p.secret != "" {
			form.Set("client_secret", p.secret)
		}
	case providers.AuthStyleNone:
		form.Set("client_id", p.e.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, &providers.Error{Class: providers.Permanent, Op: op, Err: errors.New("bad endpoint URL")}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if style == providers.AuthStyleHeader {
		// RFC 6749 section 2.3.1 form-encodes both parts before Basic.
		req.SetBasicAuth(url.QueryEscape(p.e.ClientID), url.QueryEscape(p.secret))
	}
	resp, body, err := providers.Send(p.client, op, req)
	if err != nil {
		return nil, err
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// style is the auth style to use now: the configured one, or for auto
// the one that last worked (Basic first). A client without a secret is
// public whatever the catalog says.
func (p *Provider) style() providers.AuthStyle {
	if p.secret == "" {
		return providers.AuthStyleNone
	}
	if p.e.AuthStyle != providers.AuthStyleAuto {
		return p.e.AuthStyle
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.learned != "" {
		return p.learned
	}
	return providers.AuthStyleHeader
}

// postAuth is post with client authentication. For auto style it retries
// in the body only when the server rejected the client itself (401, or
// invalid_client / unauthorized_client): x/oauth2 retries on any error,
// which after a timeout could spend a rotating refresh token twice.
func (p *Provider) postAuth(ctx context.Context, op, u string, form url.Values) (*reply, error) {
	style := p.style()
	r, err := p.post(ctx, op, u, form, style)
	if err != nil {
		return nil, err
	}
	probing := p.secret != "" && p.e.AuthStyle == providers.AuthStyleAuto
	if probing && style == providers.AuthStyleHeader && clientRejected(r) {
		r2, err := p.post(ctx, op, u, form, providers.AuthStyleBody)
		if err != nil {
			return nil, err
		}
		if !clientRejected(r2) {
			p.mu.Lock()
			p.learned = providers.AuthStyleBody
			p.mu.Unlock()
		}
		return r2, nil
	}
	if probing && r.ok() {
		p.mu.Lock()
		if p.learned == "" {
			p.learned = style
		}
		p.mu.Unlock()
	}
	return r, nil
}

func clientRejected(r *reply) bool {
	if r.status == http.StatusUnauthorized {
		return true
	}
	if r.status != http.StatusBadRequest {
		return false
	}
	code, _ := errorFields(r)
	return code == "invalid_client" || code == "unauthorized_client"
}

// errorFields reads the RFC 6749 error fields of any reply, JSON or form.
func errorFields(r *reply) (code, description string) {
	f, err := decodeFields(r.header.Get("Content-Type"), r.body)
	if err != nil {
		return "", ""
	}
	return str(f, "error"), str(f, "error_description")
}

// TokenRequest makes one token-endpoint request with the provider's
// client authentication and returns the token, or a classified
// *providers.Error. Provider packages use it for grants of their own.
func (p *Provider) TokenRequest(ctx context.Context, op string, form url.Values) (*providers.Token, error) {
	r, err := p.postAuth(ctx, op, p.e.Endpoint.TokenURL, form)
	if err != nil {
		return nil, err
	}
	tok, code, desc, perr := ParseTokenReply(r.header.Get("Content-Type"), r.body, p.now())
	if code != "" || !r.ok() {
		return nil, providers.ResponseError(op, r.status, r.header, code, desc)
	}
	if perr != nil {
		return nil, &providers.Error{Class: providers.Transient, Op: op, Status: r.status, Err: perr}
	}
	return tok, nil
}

// ParseTokenReply decodes a token endpoint reply body, JSON or (as some
// old servers send) form-encoded. code and description are the RFC 6749
// error fields when present; the caller decides with the status whether
// the reply is a failure. err is providers.ErrMalformedReply when body
// cannot be read or, without an error code, holds no access token.
//
// Expiry comes from expires_in, else from the exp claim of a JWT access
// token, else it stays zero and the engine introspects or assumes the
// schedule's default lifetime. Extra keeps the other scalar fields whose
// names cannot denote a secret: see extraAllowed.
func ParseTokenReply(contentType string, body []byte, now time.Time) (tok *providers.Token, code, description string, err error) {
	f, err := decodeFields(contentType, body)
	if err != nil {
		return nil, "", "", err
	}
	code, description = str(f, "error"), str(f, "error_description")
	if code != "" {
		return nil, code, description, nil
	}
	tok = &providers.Token{
		AccessToken:  str(f, "access_token"),
		TokenType:    str(f, "token_type"),
		RefreshToken: str(f, "refresh_token"),
		IDToken:      str(f, "id_token"),
	}
	if tok.AccessToken == "" {
		return nil, "", "", providers.ErrMalformedReply
	}
	if secs, ok := seconds(f, "expires_in"); ok {
		tok.Expiry = now.Add(secs)
	} else if exp, ok := jwtExpiry(tok.AccessToken, now); ok {
		tok.Expiry = exp
	}
	// Keycloak sends refresh_expires_in 0 for offline tokens: no expiry.
	if secs, ok := seconds(f, "refresh_expires_in"); ok {
		tok.RefreshExpiry = now.Add(secs)
	}
	tok.Scopes = scopes(f["scope"])
	tok.Extra = extra(f)
	return tok, "", "", nil
}

// decodeFields reads a reply into a flat map: JSON objects as decoded
// (numbers as json.Number), form bodies as strings.
func decodeFields(contentType string, body []byte) (map[string]any, error) {
	ct, _, _ := mime.ParseMediaType(contentType)
	if ct == "application/x-www-form-urlencoded" || ct == "text/plain" {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, providers.ErrMalformedReply
		}
		f := make(map[string]any, len(vals))
		for k, v := range vals {
			if len(v) > 0 {
				f[k] = v[0]
			}
		}
		return f, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var f map[string]any
	if err := dec.Decode(&f); err != nil || f == nil {
		return nil, providers.ErrMalformedReply
	}
	return f, nil
}

func str(f map[string]any, k string) string {
	s, _ := f[k].(string)
	return s
}

// maxLifetime bounds lifetimes read from replies so that a silly value
// cannot overflow time arithmetic.
const maxLifetime = 10 * 365 * 24 * time.Hour

// seconds reads a positive lifetime in seconds; PayPal and others send it
// as a string, some as a float.
func seconds(f map[string]any, k string) (time.Duration, bool) {
	var s string
	switch v := f[k].(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, false
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, false
	}
	if n >= maxLifetime.Seconds() {
		return maxLifetime, true
	}
	return time.Duration(n * float64(time.Second)), true
}

func scopes(v any) []string {
	switch s := v.(type) {
	case string:
		if f := strings.Fields(s); len(f) > 0 {
			return f
		}
	case []any:
		// Not RFC 6749, but some servers send a JSON array.
		var out []string
		for _, x := range s {
			if xs, ok := x.(string); ok && xs != "" {
				out = append(out, xs)
			}
		}
		return out
	}
	return nil
}

// jwtExpiry reads the exp claim of an access token that is a JWT. The
// signature is deliberately not checked: the token came straight from the
// token endpoint, and exp only schedules our next refresh. A wrong value
// costs an early or a failed refresh, which the engine handles; it never
// grants access. An exp not after now is ignored.
func jwtExpiry(token string, now time.Time) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 64<<10 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return time.Time{}, false
	}
	n, ok := claims["exp"].(json.Number)
	if !ok {
		return time.Time{}, false
	}
	exp, err := n.Float64()
	if err != nil || math.IsNaN(exp) || exp <= float64(now.Unix()) || exp > float64(now.Add(maxLifetime).Unix()) {
		return time.Time{}, false
	}
	return time.Unix(int64(exp), 0), true
}

// Fields read into Token itself, or meaningless as metadata.
var knownFields = map[string]bool{
	"access_token": true, "token_type": true, "refresh_token": true, "id_token": true,
	"expires_in": true, "refresh_expires_in": true, "scope": true,
	"error": true, "error_description": true, "error_uri": true,
}

// Limits on Extra: it becomes link metadata, not a copy of the reply.
const (
	maxExtraFields = 32
	maxExtraValue  = 256
)

// extraAllowed reports whether a reply field may become link metadata.
// Anything whose name says token, secret, password, key or assertion is
// refused, whatever its value: issued_token_type would be harmless, but
// the rule must be simple enough that no provider slips a secret past it.
func extraAllowed(name string) bool {
	n := strings.ToLower(name)
	if knownFields[n] || n == "" || len(n) > 64 {
		return false
	}
	for _, bad := range []string{"token", "secret", "password", "key", "assertion"} {
		if strings.Contains(n, bad) {
			return false
		}
	}
	return true
}

// extra copies the scalar (string, number, bool) fields extraAllowed
// admits, in name order up to maxExtraFields.
func extra(f map[string]any) map[string]string {
	names := make([]string, 0, len(f))
	for k := range f {
		if extraAllowed(k) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var out map[string]string
	for _, k := range names {
		var s string
		switch v := f[k].(type) {
		case string:
			s = v
		case json.Number:
			s = v.String()
		case bool:
			s = strconv.FormatBool(v)
		default:
			continue
		}
		if len(s) > maxExtraValue {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = s
		if len(out) == maxExtraFields {
			break
		}
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v)+2)
	for k, vv := range v {
		out[k] = append([]string(nil), vv...)
	}
	return out
}
