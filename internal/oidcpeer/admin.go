package oidcpeer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Stats counts requests the peer has answered since start or ResetStats.
type Stats struct {
	// TokenRequests counts every token-endpoint request, injected faults
	// and failed requests included.
	TokenRequests int `json:"token_requests"`
	// TokenByGrantType counts token-endpoint requests by grant_type
	// ("unknown" when the request had none).
	TokenByGrantType map[string]int `json:"token_by_grant_type"`
	// TokenErrorsByGrantType counts the ones answered with an error status.
	TokenErrorsByGrantType map[string]int `json:"token_errors_by_grant_type"`
	// FaultsInjected counts requests answered by an injected fault.
	FaultsInjected int `json:"faults_injected"`
	// RefreshReuseGraceHits counts refreshes with an already rotated
	// refresh token answered within Options.RefreshReuseGrace.
	RefreshReuseGraceHits int `json:"refresh_reuse_grace_hits"`
	// Endpoints counts requests by oidc-provider route name, e.g. "token",
	// "introspection", "revocation", "device_authorization", "authorization".
	Endpoints map[string]int `json:"endpoints"`
}

// Fault makes the token endpoint fail instead of answering, before the
// peer's provider sees the request, so no code is used up and no refresh
// token rotated.
type Fault struct {
	// Count is how many requests fail; default 1.
	Count int `json:"count,omitempty"`
	// Status is the HTTP status; default 503.
	Status int `json:"status,omitempty"`
	// RetryAfter, when positive, is sent as a Retry-After header in
	// whole seconds.
	RetryAfter time.Duration `json:"-"`
	// Error is the OAuth error code in the body; default
	// temporarily_unavailable for 5xx and 429, invalid_request otherwise.
	Error string `json:"error,omitempty"`
	// Malformed sends a truncated JSON body instead of an error object.
	Malformed bool `json:"malformed,omitempty"`
	// Delay holds the answer back, e.g. to exercise client timeouts.
	Delay time.Duration `json:"-"`
	// GrantType limits the fault to requests with this grant_type.
	GrantType string `json:"grant_type,omitempty"`
}

// Stats fetches the peer's request counters.
func (p *Peer) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	if err := p.getJSON(ctx, p.Issuer+"/__admin/stats", &s); err != nil {
		return Stats{}, fmt.Errorf("oidc peer stats: %w", err)
	}
	return s, nil
}

// ResetStats zeroes the counters and drops pending faults.
func (p *Peer) ResetStats(ctx context.Context) error {
	return p.admin(ctx, http.MethodPost, "/reset", nil)
}

// InjectFault queues a fault; queued faults apply in order.
func (p *Peer) InjectFault(ctx context.Context, f Fault) error {
	body := struct {
		Fault
		RetryAfter *int `json:"retry_after,omitempty"`
		DelayMS    int  `json:"delay_ms,omitempty"`
	}{Fault: f, DelayMS: int(f.Delay.Milliseconds())}
	if f.RetryAfter > 0 {
		secs := int((f.RetryAfter + time.Second - 1) / time.Second)
		body.RetryAfter = &secs
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("oidc peer fault: %w", err)
	}
	return p.admin(ctx, http.MethodPost, "/faults", b)
}

// ClearFaults drops faults not yet used up.
func (p *Peer) ClearFaults(ctx context.Context) error {
	return p.admin(ctx, http.MethodDelete, "/faults", nil)
}

func (p *Peer) admin(ctx context.Context, method, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, p.Issuer+"/__admin"+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("oidc peer admin %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("oidc peer admin %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("oidc peer admin %s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Introspect asks the peer, as the resource-server client, whether an
// access or refresh token is active, and until when.
func (p *Peer) Introspect(ctx context.Context, token string) (active bool, exp time.Time, err error) {
	var out struct {
		Active bool  `json:"active"`
		Exp    int64 `json:"exp"`
	}
	resp, err := p.postForm(ctx, p.IntrospectionURL, ResourceServerClientID, p.rsSecret, url.Values{"token": {token}})
	if err != nil {
		return false, time.Time{}, fmt.Errorf("oidc peer introspection: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, time.Time{}, fmt.Errorf("oidc peer introspection: %w", oauthError(resp))
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return false, time.Time{}, fmt.Errorf("oidc peer introspection: decoding: %w", err)
	}
	if out.Exp > 0 {
		exp = time.Unix(out.Exp, 0)
	}
	return out.Active, exp, nil
}

// Revoke revokes a token of the confidential client, as a person removing
// the app's access at the provider would. Revoking a refresh token also
// revokes the grant behind it and so every token from that grant.
func (p *Peer) Revoke(ctx context.Context, token string) error {
	resp, err := p.postForm(ctx, p.RevocationURL, p.ClientID, p.ClientSecret, url.Values{"token": {token}})
	if err != nil {
		return fmt.Errorf("oidc peer revocation: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oidc peer revocation: %w", oauthError(resp))
	}
	return nil
}

func (p *Peer) postForm(ctx context.Context, endpoint, user, pass string, form url.Values) (*http.Response, error) {
	if endpoint == "" {
		return nil, errors.New("endpoint not advertised by discovery")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	return p.http.Do(req)
}

// oauthError reads an OAuth error body; error codes and descriptions from
// the peer never include token values.
func oauthError(resp *http.Response) error {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return fmt.Errorf("status %d: %s: %s", resp.StatusCode, e.Error, e.Description)
}
