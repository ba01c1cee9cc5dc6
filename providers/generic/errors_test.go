package generic

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
)

func TestErrorClasses(t *testing.T) {
	httpDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string // raw body; many echo secrets to prove they stay out
		ctype      string
		class      providers.Class
		code       string
		retryAfter time.Duration // exact, or with slack when fuzzy
		fuzzy      bool
		malformed  bool
	}{
		{name: "invalid_grant", status: 400, body: `{"error":"invalid_grant","error_description":"Token is not active","refresh_token":"` + refreshTok + `"}`, class: providers.InvalidGrant, code: "invalid_grant"},
		{name: "invalid_client", status: 401, body: `{"error":"invalid_client"}`, class: providers.Permanent, code: "invalid_client"},
		{name: "unauthorized_client", status: 400, body: `{"error":"unauthorized_client"}`, class: providers.Permanent, code: "unauthorized_client"},
		{name: "unsupported_grant_type", status: 400, body: `{"error":"unsupported_grant_type"}`, class: providers.Permanent, code: "unsupported_grant_type"},
		{name: "invalid_scope", status: 400, body: `{"error":"invalid_scope"}`, class: providers.Permanent, code: "invalid_scope"},
		{name: "access_denied", status: 403, body: `{"error":"access_denied"}`, class: providers.Permanent, code: "access_denied"},
		{name: "bare 403", status: 403, body: "forbidden " + accessTok, ctype: "text/html", class: providers.Permanent},
		{name: "429 seconds", status: 429, header: map[string]string{"Retry-After": "7"}, body: `{"error":"slow"}`, class: providers.RateLimited, retryAfter: 7 * time.Second, code: "slow"},
		{name: "429 http date", status: 429, header: map[string]string{"Retry-After": httpDate}, class: providers.RateLimited, retryAfter: 90 * time.Second, fuzzy: true},
		{name: "429 without header", status: 429, class: providers.RateLimited},
		{name: "503", status: 503, body: "<html>down; client_secret=" + clientSecret + "</html>", ctype: "text/html", class: providers.Transient},
		{name: "500 with json error", status: 500, body: `{"error":"server_error"}`, class: providers.Transient, code: "server_error"},
		{name: "malformed JSON on 200", status: 200, body: `{"access_token":"` + accessTok + `",`, class: providers.Transient, malformed: true},
		{name: "200 without access token", status: 200, body: `{"token_type":"Bearer"}`, class: providers.Transient, malformed: true},
		{name: "200 with error field", status: 200, body: `{"error":"invalid_grant","access_token":"` + accessTok + `"}`, class: providers.InvalidGrant, code: "invalid_grant"},
		{name: "200 with unknown error", status: 200, body: `{"error":"weird"}`, class: providers.Transient, code: "weird"},
		{name: "form-encoded error", status: 400, body: "error=invalid_grant&refresh_token=" + refreshTok, ctype: "application/x-www-form-urlencoded", class: providers.InvalidGrant, code: "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
				ct := tt.ctype
				if ct == "" {
					ct = "application/json"
				}
				w.Header().Set("Content-Type", ct)
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			p := newProvider(t, entry(up.URL))
			_, err := p.Refresh(context.Background(), &providers.Token{AccessToken: accessTok, RefreshToken: refreshTok})
			pe := errorClass(t, err)
			assert.Equal(t, tt.class, pe.Class, "class; error: %v", err)
			assert.Equal(t, "refresh", pe.Op)
			assert.Equal(t, tt.status, pe.Status)
			assert.Equal(t, tt.code, pe.Code)
			if tt.fuzzy {
				assert.InDelta(t, tt.retryAfter.Seconds(), pe.RetryAfter.Seconds(), 3)
			} else {
				assert.Equal(t, tt.retryAfter, pe.RetryAfter)
			}
			if tt.malformed {
				require.ErrorIs(t, err, providers.ErrMalformedReply)
			}
			assert.NotContains(t, err.Error(), "html", "no body in the error")
		})
	}
}

func TestNetworkErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		p := newProvider(t, entry("http://"+addr))
		_, err = p.Exchange(context.Background(), providers.Grant{Type: providers.GrantPassword, Username: "alice", Password: userPassword})
		pe := errorClass(t, err)
		assert.Equal(t, providers.Transient, pe.Class)
		assert.Zero(t, pe.Status)
		assert.True(t, providers.IsConnectionError(err), "%v", err)
	})
	t.Run("timeout", func(t *testing.T) {
		block := make(chan struct{})
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		})
		defer close(block)
		p, err := New(entry(up.URL), clientSecret, &http.Client{Timeout: 50 * time.Millisecond})
		require.NoError(t, err)
		_, err = p.Refresh(context.Background(), &providers.Token{RefreshToken: refreshTok})
		pe := errorClass(t, err)
		assert.Equal(t, providers.Transient, pe.Class)
		assert.True(t, providers.IsTimeout(err), "%v", err)
		assert.NotContains(t, err.Error(), up.URL, "no request URL in the error")
	})
	t.Run("context deadline", func(t *testing.T) {
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) { <-r.Context().Done() })
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := newProvider(t, entry(up.URL)).Introspect(ctx, accessTok)
		assert.Equal(t, providers.Transient, errorClass(t, err).Class)
		assert.True(t, providers.IsTimeout(err))
	})
}
