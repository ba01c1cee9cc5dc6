package generic

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
)

// issuer serves a discovery document; doc may edit it per test.
func issuer(t *testing.T, edit func(doc map[string]any)) *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		doc := map[string]any{
			"issuer":                                srv.URL,
			"authorization_endpoint":                srv.URL + "/auth",
			"token_endpoint":                        srv.URL + "/token",
			"device_authorization_endpoint":         srv.URL + "/device/auth",
			"revocation_endpoint":                   srv.URL + "/token/revocation",
			"introspection_endpoint":                srv.URL + "/token/introspection",
			"userinfo_endpoint":                     srv.URL + "/me",
			"end_session_endpoint":                  srv.URL + "/session/end",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt"},
		}
		if edit != nil {
			edit(doc)
		}
		writeJSON(w, 200, doc)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func oidcEntry(iss string) providers.Entry {
	return providers.Entry{
		Name: "peer", Kind: KindOIDC, Issuer: iss, ClientID: "tokenwarden",
		AuthStyle: providers.AuthStyleAuto,
		Grants:    []string{providers.GrantAuthorizationCode, providers.GrantDeviceCode},
		PKCE:      true, Schedule: providers.DefaultSchedule(),
	}
}

func open(t *testing.T, e providers.Entry, cfg *Config) (*OIDCProvider, error) {
	t.Helper()
	if cfg == nil {
		cfg = OIDC().(*Config)
	}
	p, err := cfg.Open(context.Background(), e, providers.Setup{
		ClientSecret: clientSecret, HTTPClient: &http.Client{Timeout: 5 * time.Second},
	})
	if err != nil {
		return nil, err
	}
	return p.(*OIDCProvider), nil
}

func TestDiscovery(t *testing.T) {
	srv := issuer(t, nil)
	e := oidcEntry(srv.URL)
	e.Endpoint.RevocationURL = "https://override.example.com/revoke"
	p, err := open(t, e, nil)
	require.NoError(t, err)
	ep := p.Endpoint()
	assert.Equal(t, srv.URL+"/auth", ep.AuthURL)
	assert.Equal(t, srv.URL+"/token", ep.TokenURL)
	assert.Equal(t, srv.URL+"/device/auth", ep.DeviceAuthURL)
	assert.Equal(t, "https://override.example.com/revoke", ep.RevocationURL, "the catalog wins")
	assert.Equal(t, srv.URL+"/token/introspection", ep.IntrospectionURL)
	assert.Equal(t, srv.URL+"/me", ep.UserinfoURL)
	assert.Equal(t, srv.URL+"/session/end", ep.LogoutURL)
	assert.Equal(t, providers.AuthStyleBody, p.Entry().AuthStyle, "auto follows the advertised methods")

	// A trailing slash on the configured issuer is tolerated.
	_, err = open(t, oidcEntry(srv.URL+"/"), nil)
	require.NoError(t, err)
}

func TestDiscoveryFailures(t *testing.T) {
	tests := []struct {
		name string
		edit func(doc map[string]any)
		want string
	}{
		{"issuer mismatch", func(d map[string]any) { d["issuer"] = "https://elsewhere.example.com" }, "names issuer"},
		{"no token endpoint", func(d map[string]any) { delete(d, "token_endpoint") }, "no token_endpoint"},
		{"bad endpoint URL", func(d map[string]any) { d["revocation_endpoint"] = "/relative" }, "revocation_endpoint"},
		{"grant needs a missing endpoint", func(d map[string]any) { delete(d, "device_authorization_endpoint") }, "device_auth_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := issuer(t, tt.edit)
			_, err := open(t, oidcEntry(srv.URL), nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), srv.URL, "the error names the issuer")
			requireNoSecret(t, err)
		})
	}

	t.Run("not found", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		defer srv.Close()
		_, err := open(t, oidcEntry(srv.URL), nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "HTTP 404")
	})
	t.Run("timeout", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
		defer srv.Close()
		cfg := OIDC().(*Config)
		cfg.DiscoveryTimeout = providers.Duration(50 * time.Millisecond)
		start := time.Now()
		_, err := open(t, oidcEntry(srv.URL), cfg)
		require.Error(t, err)
		assert.Less(t, time.Since(start), 2*time.Second)
		assert.Contains(t, err.Error(), srv.URL)
	})
}

func TestConfigValidate(t *testing.T) {
	e := entry("https://auth.example.com")
	require.NoError(t, OAuth2().(*Config).Validate(e))

	e.Endpoint = providers.Endpoint{}
	e.Grants = append(e.Grants, "refresh_token")
	err := OAuth2().(*Config).Validate(e)
	require.Error(t, err)
	for _, want := range []string{"token_url is required", "auth_url is required", "device_auth_url is required", `grant "refresh_token"`, "refresh is implied"} {
		assert.Contains(t, err.Error(), want)
	}

	o := oidcEntry("")
	err = OIDC().(*Config).Validate(o)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "issuer is required")
	o.Issuer = "https://id.example.com"
	require.NoError(t, OIDC().(*Config).Validate(o), "oidc endpoints may come from discovery")
}
