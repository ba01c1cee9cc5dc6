package generic

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
)

// Secret values the tests use. No error string may contain any of them.
const (
	clientSecret = "s3cr3t-client-XYZ"
	accessTok    = "at-SECRET-0001"
	refreshTok   = "rt-SECRET-0001"
	rotatedTok   = "rt-SECRET-0002"
	authCode     = "code-SECRET-77"
	verifier     = "verifier-SECRET-abcdefghijklmnopqrstuvwxyz0123456789"
	userPassword = "pw-SECRET-hunter2"
	deviceCode   = "dc-SECRET-42"
)

var secrets = []string{clientSecret, accessTok, refreshTok, rotatedTok, authCode, verifier, userPassword, deviceCode}

// requireNoSecret fails if err's text holds any test secret.
func requireNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		require.NotContains(t, err.Error(), s, "error text leaks a secret")
	}
}

// seen is one request the fake upstream received.
type seen struct {
	Path      string
	Form      url.Values
	BasicUser string
	BasicPass string
	HasBasic  bool
}

// upstream is a fake OAuth server: handler answers, every request is
// recorded.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []seen
	handler func(w http.ResponseWriter, r *http.Request, form url.Values)
}

func newUpstream(t *testing.T, h func(w http.ResponseWriter, r *http.Request, form url.Values)) *upstream {
	u := &upstream{handler: h}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		user, pass, ok := r.BasicAuth()
		if ok {
			user, _ = url.QueryUnescape(user)
			pass, _ = url.QueryUnescape(pass)
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{Path: r.URL.Path, Form: r.PostForm, BasicUser: user, BasicPass: pass, HasBasic: ok})
		u.mu.Unlock()
		u.handler(w, r, r.PostForm)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	r := u.requests()
	require.NotEmpty(t, r, "no request reached the upstream")
	return r[len(r)-1]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// entry is a complete oauth2 entry pointing at base.
func entry(base string) providers.Entry {
	return providers.Entry{
		Name:      "fake",
		Kind:      KindOAuth2,
		AuthStyle: providers.AuthStyleHeader,
		ClientID:  "tokenwarden",
		Endpoint: providers.Endpoint{
			AuthURL:          base + "/authorize",
			TokenURL:         base + "/token",
			DeviceAuthURL:    base + "/device",
			RevocationURL:    base + "/revoke",
			IntrospectionURL: base + "/introspect",
		},
		Scopes: []string{"openid", "offline_access"},
		Grants: []string{providers.GrantAuthorizationCode, providers.GrantClientCredentials,
			providers.GrantPassword, providers.GrantDeviceCode},
		PKCE:          true,
		AuthParams:    map[string]string{"prompt": "consent"},
		AllowedParams: []string{"locale", "organisation_number"},
		Schedule:      providers.DefaultSchedule(),
	}
}

var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newProvider(t *testing.T, e providers.Entry) *Provider {
	t.Helper()
	p, err := New(e, clientSecret, &http.Client{Timeout: 5 * time.Second})
	require.NoError(t, err)
	p.now = func() time.Time { return fixedNow }
	return p
}

// jwt makes an unsigned JWT with the given claims; only the payload
// matters to the code under test.
func jwt(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString(b) + ".sig"
}

func errorClass(t *testing.T, err error) *providers.Error {
	t.Helper()
	require.Error(t, err)
	var pe *providers.Error
	require.ErrorAs(t, err, &pe)
	requireNoSecret(t, err)
	return pe
}

// tokenReply is a typical successful reply.
func tokenReply(extra map[string]any) map[string]any {
	m := map[string]any{
		"access_token":  accessTok,
		"token_type":    "Bearer",
		"refresh_token": refreshTok,
		"expires_in":    300,
		"scope":         "openid offline_access",
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}
