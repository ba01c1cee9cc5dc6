package gateway

import (
	"context"
	"crypto/sha256"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// nonceProvider is the fake provider as one that verifies ID tokens: its
// authorization URLs carry the nonce.
type nonceProvider struct{ *fakeProvider }

func (p nonceProvider) AuthCodeURLNonce(state, verifier, nonce, redirectURL string, scopes []string, params map[string]string) (string, error) {
	u, err := p.AuthCodeURL(state, verifier, redirectURL, scopes, params)
	return u + "&nonce=" + url.QueryEscape(nonce), err
}

var _ providers.IDTokenVerifier = nonceProvider{}

// oidcUnitServer is a unit gateway whose provider "idp" verifies ID
// tokens (and "fake" does not).
func oidcUnitServer(t *testing.T) *unitServer {
	t.Helper()
	s := newUnitServer(t, Config{})
	reg, _ := newFakeRegistry()
	e := fakeEntry
	e.Name = "idp"
	require.NoError(t, reg.Add(e, nonceProvider{&fakeProvider{}}))
	s.d.Providers = reg
	return s
}

// storedState returns the stored row of the state in authURL.
func storedState(t *testing.T, s *unitServer, authURL string) (string, store.OAuthState) {
	t.Helper()
	u, err := url.Parse(authURL)
	require.NoError(t, err)
	state := u.Query().Get("state")
	require.NotEmpty(t, state)
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	st, ok := s.mem.states[sha256.Sum256([]byte(state))]
	require.True(t, ok, "state not stored")
	return state, st
}

// TestNonceTravelsWithTheState: an authorization URL of a provider that
// verifies ID tokens carries a fresh nonce, kept with its state; the
// callback puts it into the grant beside the code, for the exchange.
func TestNonceTravelsWithTheState(t *testing.T) {
	s := oidcUnitServer(t)
	ctx := context.Background()
	var nonces []string
	for range 2 {
		a := do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(`{"provider":"idp","user_id":"alice","grant":"authorization_code"}`))
		require.Equal(t, 201, a.Code, string(a.Body))
		var resp createLinkResponse
		a.json(t, &resp)
		u, err := url.Parse(resp.AuthorizationURL)
		require.NoError(t, err)
		nonce := u.Query().Get("nonce")
		require.GreaterOrEqual(t, len(nonce), 43, "a nonce of 256 random bits")
		state, st := storedState(t, s, resp.AuthorizationURL)
		assert.Equal(t, nonce, st.Nonce, "the state row keeps the nonce")
		assert.NotContains(t, s.logs.String(), nonce, "the nonce reached the log")
		nonces = append(nonces, nonce)

		a = do(s.Handler(), "GET", CallbackPath+"?state="+state+"&code=code-SECRET-1", "", nil)
		require.Equal(t, 200, a.Code, string(a.Body))
		g, err := s.sec.ReadGrant(ctx, "t1", resp.ID)
		require.NoError(t, err)
		assert.Equal(t, nonce, g.Value.Nonce, "the grant carries the state's nonce to the exchange")
		assert.Equal(t, "code-SECRET-1", g.Value.Code)
	}
	assert.NotEqual(t, nonces[0], nonces[1], "nonces are per authorization")

	// A provider without ID tokens gets no nonce.
	a := do(s.Handler(), "POST", "/v1/links", unitKey, strings.NewReader(`{"provider":"fake","user_id":"alice","grant":"authorization_code"}`))
	require.Equal(t, 201, a.Code, string(a.Body))
	var resp createLinkResponse
	a.json(t, &resp)
	assert.NotContains(t, resp.AuthorizationURL, "nonce")
	_, st := storedState(t, s, resp.AuthorizationURL)
	assert.Empty(t, st.Nonce)
}

// TestReauthorizeAllowSubjectChange: the flag reaches the grant the
// exchange reads, a re-authorization gets a new nonce, and the flag is
// refused where no end-user consents.
func TestReauthorizeAllowSubjectChange(t *testing.T) {
	s := oidcUnitServer(t)
	ctx := context.Background()
	reauthLink := func(id, grant string) {
		s.mem.mu.Lock()
		s.mem.links["t1/"+id] = store.Link{ID: id, TenantID: "t1", Provider: "idp", UserID: "alice", GrantType: grant,
			Status: string(workflows.StatusReauthRequired)}
		s.mem.mu.Unlock()
	}
	reauthLink("lnk_code", providers.GrantAuthorizationCode)
	reauthLink("lnk_pw", providers.GrantPassword)
	reauthLink("lnk_cc", providers.GrantClientCredentials)

	tests := []struct {
		name, link, body string
		status           int
		code             string
		allowed          bool
	}{
		{"authorization code, allowed", "lnk_code", `{"allow_subject_change":true}`, 200, "", true},
		{"authorization code, by default not", "lnk_code", `{}`, 200, "", false},
		{"password, allowed", "lnk_pw", `{"credentials":{"username":"u","password":"pw-SECRET"},"allow_subject_change":true}`, 202, "", true},
		{"client credentials: no end-user", "lnk_cc", `{"allow_subject_change":true}`, 400, CodeBadRequest, false},
		{"not a boolean", "lnk_code", `{"allow_subject_change":"yes"}`, 400, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(s.Handler(), "POST", "/v1/links/"+tt.link+"/reauthorize", unitKey, strings.NewReader(tt.body))
			require.Equal(t, tt.status, a.Code, string(a.Body))
			if tt.status >= 400 {
				if tt.code != "" {
					assert.Equal(t, tt.code, a.errCode(t))
				}
				return
			}
			g, err := s.sec.ReadGrant(ctx, "t1", tt.link)
			require.NoError(t, err)
			assert.Equal(t, tt.allowed, g.Value.AllowSubjectChange)
			if tt.status == 200 {
				var res struct {
					AuthorizationURL string `json:"authorization_url"`
				}
				a.json(t, &res)
				_, st := storedState(t, s, res.AuthorizationURL)
				assert.NotEmpty(t, st.Nonce, "a re-authorization sends a nonce too")
			}
		})
	}
}
