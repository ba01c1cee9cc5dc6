package generic

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/tokenwarden/tokenwarden/providers"
)

func TestAuthCodeURL(t *testing.T) {
	base := "https://auth.example.com"
	tests := []struct {
		name     string
		mod      func(*providers.Entry)
		verifier string
		params   map[string]string
		want     map[string]string // query values that must be present
		absent   []string
		wantErr  error
	}{
		{
			name:     "pkce, state, auth params and allowed params",
			verifier: verifier,
			params:   map[string]string{"locale": "de"},
			want: map[string]string{
				"response_type":         "code",
				"client_id":             "tokenwarden",
				"state":                 "st-1",
				"redirect_uri":          "http://127.0.0.1/cb",
				"scope":                 "openid offline_access",
				"prompt":                "consent",
				"locale":                "de",
				"code_challenge_method": "S256",
				"code_challenge":        oauth2.S256ChallengeFromVerifier(verifier),
			},
			absent: []string{"code_verifier", "client_secret"},
		},
		{
			name:     "caller overrides an allowed default",
			mod:      func(e *providers.Entry) { e.AllowedParams = append(e.AllowedParams, "prompt") },
			verifier: verifier,
			params:   map[string]string{"prompt": "login"},
			want:     map[string]string{"prompt": "login"},
		},
		{
			name:   "no pkce",
			mod:    func(e *providers.Entry) { e.PKCE = false },
			want:   map[string]string{"state": "st-1"},
			absent: []string{"code_challenge", "code_challenge_method"},
		},
		{
			name:     "param not allowed",
			verifier: verifier,
			params:   map[string]string{"locale": "de", "redirect_to": "https://evil.example"},
			wantErr:  errors.New("redirect_to"),
		},
		{
			name:    "pkce without verifier",
			wantErr: errors.New("verifier"),
		},
		{
			name:     "no auth endpoint",
			mod:      func(e *providers.Entry) { e.Endpoint.AuthURL = ""; e.Grants = []string{providers.GrantPassword} },
			verifier: verifier,
			wantErr:  providers.ErrUnsupported,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entry(base)
			if tt.mod != nil {
				tt.mod(&e)
			}
			p := newProvider(t, e)
			got, err := p.AuthCodeURL("st-1", tt.verifier, "http://127.0.0.1/cb", nil, tt.params)
			if tt.wantErr != nil {
				require.Error(t, err)
				if errors.Is(tt.wantErr, providers.ErrUnsupported) {
					require.ErrorIs(t, err, providers.ErrUnsupported)
				} else {
					require.Contains(t, err.Error(), tt.wantErr.Error())
				}
				requireNoSecret(t, err)
				assert.Equal(t, providers.Permanent, providers.ClassOf(err))
				return
			}
			require.NoError(t, err)
			u, err := url.Parse(got)
			require.NoError(t, err)
			assert.Equal(t, "/authorize", u.Path)
			q := u.Query()
			for k, v := range tt.want {
				assert.Equal(t, v, q.Get(k), "query %s", k)
			}
			for _, k := range tt.absent {
				assert.False(t, q.Has(k), "query has %s", k)
			}
			assert.NotContains(t, got, verifier, "the verifier itself must not reach the URL")
			assert.NotContains(t, got, clientSecret)
		})
	}
}

func TestExchangeAuthorizationCode(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		writeJSON(w, 200, tokenReply(map[string]any{"scope": nil, "id_token": "idt", "session_state": "abc"}))
	})
	p := newProvider(t, entry(up.URL))
	tok, err := p.Exchange(context.Background(), providers.Grant{
		Type: providers.GrantAuthorizationCode, Code: authCode, CodeVerifier: verifier,
		RedirectURL: "http://127.0.0.1/cb", Params: map[string]string{"locale": "de"},
	})
	require.NoError(t, err)
	got := up.last(t)
	assert.Equal(t, "/token", got.Path)
	assert.Equal(t, "authorization_code", got.Form.Get("grant_type"))
	assert.Equal(t, authCode, got.Form.Get("code"))
	assert.Equal(t, verifier, got.Form.Get("code_verifier"))
	assert.Equal(t, "http://127.0.0.1/cb", got.Form.Get("redirect_uri"))
	assert.False(t, got.Form.Has("locale"), "auth URL params are not token params")
	assert.False(t, got.Form.Has("client_secret"), "header style keeps the secret out of the body")
	assert.True(t, got.HasBasic)
	assert.Equal(t, "tokenwarden", got.BasicUser)
	assert.Equal(t, clientSecret, got.BasicPass)

	assert.Equal(t, accessTok, tok.AccessToken)
	assert.Equal(t, refreshTok, tok.RefreshToken)
	assert.Equal(t, "idt", tok.IDToken)
	assert.Equal(t, fixedNow.Add(300*time.Second), tok.Expiry)
	assert.Equal(t, []string{"openid", "offline_access"}, tok.Scopes, "no scope in reply means as requested")
	assert.Equal(t, map[string]string{"session_state": "abc"}, tok.Extra)
}

func TestExchangeInputErrors(t *testing.T) {
	p := newProvider(t, entry("https://auth.example.com"))
	tests := []struct {
		name string
		g    providers.Grant
		want string
	}{
		{"unknown grant", providers.Grant{Type: "jwt-bearer"}, "not supported"},
		{"no code", providers.Grant{Type: providers.GrantAuthorizationCode, CodeVerifier: verifier}, "no code"},
		{"no verifier", providers.Grant{Type: providers.GrantAuthorizationCode, Code: authCode}, "verifier"},
		{"no password", providers.Grant{Type: providers.GrantPassword, Username: "u"}, "password"},
		{"no device code", providers.Grant{Type: providers.GrantDeviceCode}, "device code"},
		{"param not allowed", providers.Grant{Type: providers.GrantClientCredentials, Params: map[string]string{"x": "1"}}, "allowed_params"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Exchange(context.Background(), tt.g)
			pe := errorClass(t, err)
			assert.Equal(t, providers.Permanent, pe.Class)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestClientCredentialsAndAuthStyles(t *testing.T) {
	tests := []struct {
		style       providers.AuthStyle
		secret      string
		wantBasic   bool
		wantBodyID  bool
		wantBodySec bool
	}{
		{providers.AuthStyleHeader, clientSecret, true, false, false},
		{providers.AuthStyleBody, clientSecret, false, true, true},
		{providers.AuthStyleNone, "", false, true, false},
		{providers.AuthStyleAuto, clientSecret, true, false, false},
		{providers.AuthStyleHeader, "", false, true, false}, // no secret: public client
	}
	for _, tt := range tests {
		t.Run(string(tt.style)+"/"+map[bool]string{true: "secret", false: "public"}[tt.secret != ""], func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
				writeJSON(w, 200, tokenReply(map[string]any{"refresh_token": nil}))
			})
			e := entry(up.URL)
			e.AuthStyle = tt.style
			e.TokenParams = map[string]string{"audience": "api"}
			p, err := New(e, tt.secret, nil)
			require.NoError(t, err)
			tok, err := p.Exchange(context.Background(), providers.Grant{
				Type: providers.GrantClientCredentials, Scopes: []string{"api:read"},
				Params: map[string]string{"organisation_number": "42"},
			})
			require.NoError(t, err)
			assert.Equal(t, accessTok, tok.AccessToken)
			assert.Empty(t, tok.RefreshToken)
			got := up.last(t)
			assert.Equal(t, "client_credentials", got.Form.Get("grant_type"))
			assert.Equal(t, "api:read", got.Form.Get("scope"))
			assert.Equal(t, "api", got.Form.Get("audience"))
			assert.Equal(t, "42", got.Form.Get("organisation_number"))
			assert.Equal(t, tt.wantBasic, got.HasBasic, "basic auth")
			assert.Equal(t, tt.wantBodyID, got.Form.Get("client_id") == "tokenwarden", "client_id in body")
			assert.Equal(t, tt.wantBodySec, got.Form.Get("client_secret") == clientSecret, "client_secret in body")
		})
	}
}

func TestAutoStyleFallsBackOnlyOnClientRejection(t *testing.T) {
	// A server that accepts the secret only in the body, as Google does.
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		if f.Get("client_secret") != clientSecret {
			writeJSON(w, 401, map[string]any{"error": "invalid_client"})
			return
		}
		writeJSON(w, 200, tokenReply(nil))
	})
	e := entry(up.URL)
	e.AuthStyle = providers.AuthStyleAuto
	p := newProvider(t, e)
	g := providers.Grant{Type: providers.GrantClientCredentials}
	_, err := p.Exchange(context.Background(), g)
	require.NoError(t, err)
	require.Len(t, up.requests(), 2, "header, then body")
	_, err = p.Exchange(context.Background(), g)
	require.NoError(t, err)
	require.Len(t, up.requests(), 3, "the body style is remembered")

	// invalid_grant is about the grant, not the client: no second try,
	// so a rotating refresh token is never presented twice.
	up2 := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		writeJSON(w, 400, map[string]any{"error": "invalid_grant"})
	})
	e2 := entry(up2.URL)
	e2.AuthStyle = providers.AuthStyleAuto
	p2 := newProvider(t, e2)
	_, err = p2.Refresh(context.Background(), &providers.Token{AccessToken: accessTok, RefreshToken: refreshTok})
	assert.Equal(t, providers.InvalidGrant, errorClass(t, err).Class)
	assert.Len(t, up2.requests(), 1)
}

func TestPassword(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		writeJSON(w, 200, tokenReply(nil))
	})
	p := newProvider(t, entry(up.URL))
	tok, err := p.Exchange(context.Background(), providers.Grant{Type: providers.GrantPassword, Username: "alice", Password: userPassword})
	require.NoError(t, err)
	assert.Equal(t, refreshTok, tok.RefreshToken)
	got := up.last(t)
	assert.Equal(t, "password", got.Form.Get("grant_type"))
	assert.Equal(t, "alice", got.Form.Get("username"))
	assert.Equal(t, userPassword, got.Form.Get("password"))
	assert.Equal(t, "openid offline_access", got.Form.Get("scope"))
}

func TestRefresh(t *testing.T) {
	old := &providers.Token{
		AccessToken: "at-old", RefreshToken: refreshTok, IDToken: "idt-old",
		RefreshExpiry: fixedNow.Add(time.Hour), Scopes: []string{"openid"},
		Extra: map[string]string{"mandator_name": "acme", "session_state": "s1"},
	}
	oldCopy := *old
	tests := []struct {
		name  string
		reply map[string]any
		check func(t *testing.T, tok *providers.Token)
	}{
		{
			name:  "rotation adopted",
			reply: tokenReply(map[string]any{"refresh_token": rotatedTok, "session_state": "s2"}),
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, rotatedTok, tok.RefreshToken)
				assert.True(t, tok.RefreshExpiry.IsZero(), "a new refresh token without refresh_expires_in has unknown expiry")
				assert.Equal(t, []string{"openid", "offline_access"}, tok.Scopes)
				assert.Equal(t, map[string]string{"mandator_name": "acme", "session_state": "s2"}, tok.Extra)
			},
		},
		{
			name:  "no refresh token in reply keeps the old one",
			reply: tokenReply(map[string]any{"refresh_token": nil, "scope": nil}),
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, refreshTok, tok.RefreshToken)
				assert.Equal(t, old.RefreshExpiry, tok.RefreshExpiry)
				assert.Equal(t, []string{"openid"}, tok.Scopes)
				assert.Equal(t, "idt-old", tok.IDToken)
			},
		},
		{
			name:  "refresh_expires_in",
			reply: tokenReply(map[string]any{"refresh_token": rotatedTok, "refresh_expires_in": 1800, "not-before-policy": 0}),
			check: func(t *testing.T, tok *providers.Token) {
				assert.Equal(t, fixedNow.Add(30*time.Minute), tok.RefreshExpiry)
				assert.Equal(t, "0", tok.Extra["not-before-policy"])
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
				writeJSON(w, 200, tt.reply)
			})
			e := entry(up.URL)
			e.TokenParams = map[string]string{"audience": "api"}
			p := newProvider(t, e)
			tok, err := p.Refresh(context.Background(), old)
			require.NoError(t, err)
			got := up.last(t)
			assert.Equal(t, "refresh_token", got.Form.Get("grant_type"))
			assert.Equal(t, refreshTok, got.Form.Get("refresh_token"))
			assert.Equal(t, "api", got.Form.Get("audience"))
			assert.False(t, got.Form.Has("scope"))
			assert.Equal(t, accessTok, tok.AccessToken)
			tt.check(t, tok)
			assert.Equal(t, oldCopy, *old, "Refresh must not modify its argument")
			assert.Equal(t, map[string]string{"mandator_name": "acme", "session_state": "s1"}, old.Extra)
		})
	}

	p := newProvider(t, entry("http://127.0.0.1:1"))
	_, err := p.Refresh(context.Background(), &providers.Token{AccessToken: accessTok})
	assert.Equal(t, providers.InvalidGrant, errorClass(t, err).Class)
}

func TestDeviceFlow(t *testing.T) {
	var tokenReplies []func(w http.ResponseWriter)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		switch r.URL.Path {
		case "/device":
			writeJSON(w, 200, map[string]any{
				"device_code": deviceCode, "user_code": "ABCD-EFGH",
				"verification_uri": "https://auth.example.com/device", "verification_uri_complete": "https://auth.example.com/device?user_code=ABCD-EFGH",
				"expires_in": 600, "interval": 2,
			})
		case "/token":
			next := tokenReplies[0]
			tokenReplies = tokenReplies[1:]
			next(w)
		}
	})
	p := newProvider(t, entry(up.URL))
	da, err := p.DeviceAuth(context.Background(), []string{"openid"})
	require.NoError(t, err)
	assert.Equal(t, deviceCode, da.DeviceCode)
	assert.Equal(t, "ABCD-EFGH", da.UserCode)
	assert.Equal(t, "https://auth.example.com/device", da.VerificationURI)
	assert.Contains(t, da.VerificationURIComplete, "user_code=")
	assert.Equal(t, fixedNow.Add(10*time.Minute), da.Expiry)
	assert.Equal(t, 2*time.Second, da.Interval)
	got := up.last(t)
	assert.Equal(t, "openid", got.Form.Get("scope"))
	assert.True(t, got.HasBasic, "the device endpoint gets client authentication too")

	tokenReplies = []func(w http.ResponseWriter){
		func(w http.ResponseWriter) { writeJSON(w, 400, map[string]any{"error": "authorization_pending"}) },
		func(w http.ResponseWriter) { writeJSON(w, 400, map[string]any{"error": "slow_down"}) },
		func(w http.ResponseWriter) { writeJSON(w, 400, map[string]any{"error": "expired_token"}) },
		func(w http.ResponseWriter) { writeJSON(w, 200, tokenReply(nil)) },
	}
	g := providers.Grant{Type: providers.GrantDeviceCode, DeviceCode: da.DeviceCode}

	_, err = p.Exchange(context.Background(), g)
	require.ErrorIs(t, err, providers.ErrAuthorizationPending)
	assert.Equal(t, providers.Transient, errorClass(t, err).Class)
	assert.Len(t, up.requests(), 2, "one token request per Exchange: no polling loop")

	_, err = p.Exchange(context.Background(), g)
	require.ErrorIs(t, err, providers.ErrSlowDown)
	pe := errorClass(t, err)
	assert.Equal(t, providers.RateLimited, pe.Class)
	assert.GreaterOrEqual(t, pe.RetryAfter, 5*time.Second)

	_, err = p.Exchange(context.Background(), g)
	assert.Equal(t, providers.InvalidGrant, errorClass(t, err).Class)

	tok, err := p.Exchange(context.Background(), g)
	require.NoError(t, err)
	assert.Equal(t, accessTok, tok.AccessToken)
	got = up.last(t)
	assert.Equal(t, providers.GrantTypeDeviceCode, got.Form.Get("grant_type"))
	assert.Equal(t, deviceCode, got.Form.Get("device_code"))

	e := entry(up.URL)
	e.Endpoint.DeviceAuthURL = ""
	e.Grants = []string{providers.GrantPassword}
	_, err = newProvider(t, e).DeviceAuth(context.Background(), nil)
	require.ErrorIs(t, err, providers.ErrUnsupported)
}

func TestRevoke(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		if f.Get("token_type_hint") == "access_token" {
			writeJSON(w, 400, map[string]any{"error": "unsupported_token_type"})
			return
		}
		w.WriteHeader(200)
	})
	e := entry(up.URL)
	e.AuthStyle = providers.AuthStyleBody
	p := newProvider(t, e)
	require.NoError(t, p.Revoke(context.Background(), &providers.Token{AccessToken: accessTok, RefreshToken: refreshTok}))
	reqs := up.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "/revoke", reqs[0].Path)
	assert.Equal(t, url.Values{"token": {refreshTok}, "token_type_hint": {"refresh_token"},
		"client_id": {"tokenwarden"}, "client_secret": {clientSecret}}, reqs[0].Form)
	assert.Equal(t, accessTok, reqs[1].Form.Get("token"))
	assert.Equal(t, "access_token", reqs[1].Form.Get("token_type_hint"))
	assert.False(t, reqs[0].HasBasic)

	// Access token only, header auth.
	e.AuthStyle = providers.AuthStyleHeader
	up2 := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) { w.WriteHeader(200) })
	e.Endpoint.RevocationURL = up2.URL + "/revoke"
	require.NoError(t, newProvider(t, e).Revoke(context.Background(), &providers.Token{AccessToken: accessTok}))
	got := up2.last(t)
	assert.True(t, got.HasBasic)
	assert.Equal(t, url.Values{"token": {accessTok}, "token_type_hint": {"access_token"}}, got.Form)

	// A failure is classified and keeps the token out of the text.
	up3 := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		w.Header().Set("Retry-After", "3")
		http.Error(w, "unavailable; token was "+f.Get("token"), http.StatusServiceUnavailable)
	})
	e.Endpoint.RevocationURL = up3.URL + "/revoke"
	err := newProvider(t, e).Revoke(context.Background(), &providers.Token{AccessToken: accessTok, RefreshToken: refreshTok})
	pe := errorClass(t, err)
	assert.Equal(t, providers.Transient, pe.Class)
	assert.Equal(t, 3*time.Second, pe.RetryAfter)

	e.Endpoint.RevocationURL = ""
	require.ErrorIs(t, newProvider(t, e).Revoke(context.Background(), &providers.Token{AccessToken: accessTok}), providers.ErrUnsupported)
}

func TestIntrospect(t *testing.T) {
	exp := fixedNow.Add(time.Hour).Unix()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		writeJSON(w, 200, map[string]any{"active": f.Get("token") == accessTok, "exp": exp, "scope": "openid api:read", "sub": "alice"})
	})
	for _, style := range []providers.AuthStyle{providers.AuthStyleHeader, providers.AuthStyleBody} {
		t.Run(string(style), func(t *testing.T) {
			e := entry(up.URL)
			e.AuthStyle = style
			in, err := newProvider(t, e).Introspect(context.Background(), accessTok)
			require.NoError(t, err)
			assert.True(t, in.Active)
			assert.Equal(t, time.Unix(exp, 0), in.Expiry)
			assert.Equal(t, []string{"openid", "api:read"}, in.Scopes)
			got := up.last(t)
			assert.Equal(t, "/introspect", got.Path)
			assert.Equal(t, accessTok, got.Form.Get("token"))
			assert.Equal(t, "access_token", got.Form.Get("token_type_hint"))
			assert.Equal(t, style == providers.AuthStyleHeader, got.HasBasic)
			assert.Equal(t, style == providers.AuthStyleBody, got.Form.Get("client_secret") == clientSecret)
		})
	}
	e := entry(up.URL)
	in, err := newProvider(t, e).Introspect(context.Background(), "other")
	require.NoError(t, err)
	assert.False(t, in.Active)

	e.Endpoint.IntrospectionURL = ""
	_, err = newProvider(t, e).Introspect(context.Background(), accessTok)
	require.ErrorIs(t, err, providers.ErrUnsupported)
}

// TestExchangeWithoutPKCESendsNoVerifier: with PKCE off the authorization
// request carried no challenge, so a verifier in the exchange only makes
// a server such as Keycloak refuse it ("PKCE code verifier specified but
// challenge not present in authorization").
func TestExchangeWithoutPKCESendsNoVerifier(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		writeJSON(w, 200, tokenReply(nil))
	})
	e := entry(up.URL)
	e.PKCE = false
	p := newProvider(t, e)
	_, err := p.Exchange(context.Background(), providers.Grant{
		Type: providers.GrantAuthorizationCode, Code: authCode, CodeVerifier: verifier, RedirectURL: "http://127.0.0.1/cb",
	})
	require.NoError(t, err)
	assert.False(t, up.last(t).Form.Has("code_verifier"), "a verifier was sent with PKCE off")
}
