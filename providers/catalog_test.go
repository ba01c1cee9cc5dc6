package providers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/builtin"
)

func load(t *testing.T, yaml string) (*providers.Catalog, error) {
	t.Helper()
	return providers.Load(strings.NewReader(yaml), builtin.Kinds)
}

func TestExampleCatalogLoads(t *testing.T) {
	c, err := providers.LoadFile("catalog.example.yaml", builtin.Kinds)
	require.NoError(t, err)
	assert.Empty(t, c.Warnings)
	es := c.Entries()
	require.Len(t, es, 2)

	peer := es[0]
	assert.Equal(t, "oidc-peer", peer.Name)
	assert.Equal(t, "oidc", peer.Kind)
	assert.Equal(t, providers.AuthStyleHeader, peer.AuthStyle)
	assert.Equal(t, providers.SecretRef{Env: "TOKENWARDEN_OIDC_PEER_SECRET"}, peer.ClientSecret)
	assert.True(t, peer.PKCE)
	assert.Equal(t, providers.DefaultSchedule(), peer.Schedule)

	ex := es[1]
	assert.True(t, ex.PKCE, "pkce defaults to true")
	assert.Equal(t, "https://auth.example.com/oauth/token", ex.Endpoint.TokenURL)
	want := providers.DefaultSchedule()
	want.Fraction = 0.25
	want.DefaultLifetime = 30 * time.Minute
	assert.Equal(t, want, ex.Schedule, "unset schedule fields keep their defaults")
	assert.Equal(t, []string{"organisation_number", "locale"}, ex.AllowedParams)
}

func TestCatalogProblems(t *testing.T) {
	const doc = `
providers:
  - name: Bad_Name
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
  - name: dup
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
  - name: dup
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
  - name: no-kind
    client_id: x
    grants: [password]
  - name: alien
    kind: martian
    client_id: x
    grants: [password]
  - name: urls
    kind: oauth2
    issuer: "not a url"
    client_id: x
    grants: [password]
    endpoint: {token_url: "ftp://a.example.com/token", revocation_url: "/relative"}
  - name: grants
    kind: oauth2
    client_id: x
    grants: [password, password, "Bad Grant", refresh_token]
    endpoint: {token_url: "https://a.example.com/token"}
  - name: no-grants
    kind: oauth2
    client_id: x
    endpoint: {token_url: "https://a.example.com/token"}
  - name: no-client
    kind: oauth2
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
  - name: schedule
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
    schedule: {min_margin: -1s, fraction: 1.5, jitter: -0.1, default_lifetime: 0s, refresh_token_margin: -5s}
  - name: badduration
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
    schedule: {min_margin: 60}
  - name: style
    kind: oauth2
    client_id: x
    grants: [password]
    auth_style: basic
    endpoint: {token_url: "https://a.example.com/token"}
  - name: typo
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token", revocation_uri: "https://a.example.com/r"}
    scope: [openid]
  - name: params
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
    auth_params: {state: x}
    token_params: {grant_type: x}
    allowed_params: [redirect_uri, locale, locale]
  - name: secrets
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
    client_secret: {vault: "a#b", env: "B"}
  - name: pasted
    kind: oauth2
    client_id: x
    grants: [password]
    endpoint: {token_url: "https://a.example.com/token"}
    client_secret: "pasted-SECRET-value"
  - name: kindrules
    kind: oauth2
    client_id: x
    grants: [authorization_code]
  - name: oidc-no-issuer
    kind: oidc
    client_id: x
    grants: [authorization_code]
  - name: settings
    kind: oidc
    issuer: https://id.example.com
    client_id: x
    grants: [authorization_code]
    settings: {discovery_timeout: soon, colour: blue}
`
	_, err := load(t, doc)
	require.Error(t, err)
	var ce *providers.CatalogError
	require.ErrorAs(t, err, &ce)
	msg := err.Error()
	assert.NotContains(t, msg, "pasted-SECRET-value")

	want := map[string][]string{
		`provider "Bad_Name"`:       {"must match"},
		`provider "dup"`:            {"duplicate name"},
		`provider "no-kind"`:        {"kind is required; known kinds: demobank, everifin, finapi, luca, norman, oauth2, oidc"},
		`provider "alien"`:          {`unknown kind "martian"; known kinds: demobank, everifin, finapi, luca, norman, oauth2, oidc`},
		`provider "urls"`:           {"issuer", "endpoint.token_url", "endpoint.revocation_url"},
		`provider "grants"`:         {`grant "password" is listed twice`, `grant "Bad Grant"`, `grant "refresh_token" is not supported`},
		`provider "no-grants"`:      {"grants must list at least one"},
		`provider "no-client"`:      {"client_id is required"},
		`provider "schedule"`:       {"min_margin must not be negative", "fraction must be in (0,1)", "jitter must be in [0,1)", "default_lifetime must be positive", "refresh_token_margin must not be negative"},
		`provider "badduration"`:    {"not a duration"},
		`provider "style"`:          {`auth_style "basic"`},
		`provider "typo"`:           {"unknown field endpoint.revocation_uri", "unknown field scope"},
		`provider "params"`:         {`auth_params may not set "state"`, `token_params may not set "grant_type"`, `allowed_params may not include "redirect_uri"`, `allowed_params lists "locale" twice`},
		`provider "secrets"`:        {"exactly one of vault, env, value"},
		`provider "pasted"`:         {"client_secret must be a mapping"},
		`provider "kindrules"`:      {"auth_url is required"},
		`provider "oidc-no-issuer"`: {"issuer is required"},
		`provider "settings"`:       {"unknown field settings.colour", "settings"},
	}
	lines := ce.Problems
	for label, subs := range want {
		for _, sub := range subs {
			found := false
			for _, l := range lines {
				if strings.HasPrefix(l, label+":") && strings.Contains(l, sub) {
					found = true
					break
				}
			}
			assert.True(t, found, "no problem %q for %s in:\n%s", sub, label, msg)
		}
	}
	// Every problem is on one line that names its entry.
	for _, l := range lines {
		assert.True(t, strings.HasPrefix(l, `provider "`), "unlabelled problem %q", l)
	}
}

func TestCatalogDocumentErrors(t *testing.T) {
	for _, doc := range []string{"", "providers: []", "providerz: []", "providers: {a: 1}", "providers:\n  - just-a-string"} {
		_, err := load(t, doc)
		require.Error(t, err, "doc %q", doc)
		var ce *providers.CatalogError
		require.ErrorAs(t, err, &ce)
	}
}

func TestWarnings(t *testing.T) {
	c, err := load(t, `
providers:
  - name: dev
    kind: oauth2
    client_id: x
    grants: [client_credentials]
    endpoint: {token_url: "https://a.example.com/token"}
    client_secret: {value: "inline-SECRET"}
`)
	require.NoError(t, err)
	require.Len(t, c.Warnings, 1)
	assert.Contains(t, c.Warnings[0], `provider "dev"`)
	assert.Contains(t, c.Warnings[0], "client_secret.value")
	assert.NotContains(t, c.Warnings[0], "inline-SECRET")
}

func TestEntryNeverShowsSecretValue(t *testing.T) {
	e := providers.Entry{Name: "dev", ClientSecret: providers.SecretRef{Value: "inline-SECRET"}}
	b, err := json.Marshal(e)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "inline-SECRET")
	assert.Contains(t, string(b), `"client_secret":{"inline":true}`)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assert.NotContains(t, fmt.Sprintf(verb, e), "inline-SECRET", verb)
	}

	v := providers.Entry{ClientSecret: providers.SecretRef{Vault: "providers/x#client_secret"}}
	b, err = json.Marshal(v)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"client_secret":{"vault":"providers/x#client_secret"}`)
}

// issuer is a minimal discovery document server.
func issuer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 srv.URL,
			"authorization_endpoint": srv.URL + "/auth",
			"token_endpoint":         srv.URL + "/token",
			"revocation_endpoint":    srv.URL + "/token/revocation",
		})
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestCatalogOpen(t *testing.T) {
	srv, hits := issuer(t)
	t.Setenv("TW_TEST_SECRET", "env-SECRET")
	doc := fmt.Sprintf(`
providers:
  - name: zeta
    kind: oidc
    issuer: %s
    client_id: tokenwarden
    client_secret: {vault: "providers/zeta#client_secret"}
    grants: [authorization_code]
  - name: alpha
    kind: oauth2
    client_id: tokenwarden
    client_secret: {env: TW_TEST_SECRET}
    grants: [client_credentials]
    endpoint: {token_url: "https://a.example.com/token"}
`, srv.URL)
	c, err := load(t, doc)
	require.NoError(t, err)

	var asked []string
	resolve := func(_ context.Context, ref providers.SecretRef) (string, error) {
		asked = append(asked, ref.Vault)
		return "vault-SECRET", nil
	}
	reg, err := c.Open(context.Background(), resolve, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"providers/zeta#client_secret"}, asked, "only Vault references go to the resolver")
	assert.Equal(t, int32(1), hits.Load())

	es := reg.Entries()
	require.Len(t, es, 2)
	assert.Equal(t, "alpha", es[0].Name, "sorted by name")
	assert.Equal(t, "zeta", es[1].Name)
	assert.Equal(t, srv.URL+"/token", es[1].Endpoint.TokenURL, "entries show discovered endpoints")

	p, e, ok := reg.Get("zeta")
	require.True(t, ok)
	assert.Equal(t, "oidc", e.Kind)
	_, isRevoker := p.(providers.Revoker)
	assert.True(t, isRevoker)
	_, _, ok = reg.Get("nope")
	assert.False(t, ok)
}

func TestCatalogOpenFailures(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	doc := fmt.Sprintf(`
providers:
  - name: gone
    kind: oidc
    issuer: %s
    client_id: tokenwarden
    grants: [authorization_code]
  - name: vaulted
    kind: oauth2
    client_id: tokenwarden
    client_secret: {vault: "providers/v#s"}
    grants: [client_credentials]
    endpoint: {token_url: "https://a.example.com/token"}
  - name: envless
    kind: oauth2
    client_id: tokenwarden
    client_secret: {env: TW_TEST_SURELY_UNSET}
    grants: [client_credentials]
    endpoint: {token_url: "https://a.example.com/token"}
`, deadURL)
	c, err := load(t, doc)
	require.NoError(t, err)
	_, err = c.Open(context.Background(), func(context.Context, providers.SecretRef) (string, error) {
		return "", errors.New("permission denied")
	}, &http.Client{Timeout: 2 * time.Second})
	require.Error(t, err)
	var ce *providers.CatalogError
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Problems, 3, "every failing entry is listed: %v", err)
	msg := err.Error()
	assert.Contains(t, msg, `provider "gone": discovery at `+deadURL)
	assert.Contains(t, msg, `provider "vaulted": client secret vault:providers/v#s: permission denied`)
	assert.Contains(t, msg, `provider "envless": client secret env:TW_TEST_SURELY_UNSET: environment variable TW_TEST_SURELY_UNSET is not set`)

	// No resolver at all is a clear error, not a nil call.
	c2, err := load(t, `
providers:
  - name: vaulted
    kind: oauth2
    client_id: tokenwarden
    client_secret: {vault: "providers/v#s"}
    grants: [client_credentials]
    endpoint: {token_url: "https://a.example.com/token"}
`)
	require.NoError(t, err)
	_, err = c2.Open(context.Background(), nil, nil)
	require.ErrorContains(t, err, "no Vault resolver")
}

func TestRegistryAdd(t *testing.T) {
	r := providers.NewRegistry()
	require.Error(t, r.Add(providers.Entry{Name: "x"}, nil))
	p := fakeProvider{}
	require.NoError(t, r.Add(providers.Entry{Name: "x"}, p))
	require.Error(t, r.Add(providers.Entry{Name: "x"}, p))
}

type fakeProvider struct{}

func (fakeProvider) Exchange(context.Context, providers.Grant) (*providers.Token, error) {
	return nil, providers.ErrUnsupported
}

func (fakeProvider) Refresh(context.Context, *providers.Token) (*providers.Token, error) {
	return nil, providers.ErrUnsupported
}
