package luca_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/luca/sim"
)

// TestVerifyUnauthenticated200MeansRefresh: Lighthouse answers a bad
// token 200 with a GraphQL error "Unauthenticated."; that is a token to
// refresh (InvalidGrant, invalid_token), not a permanent failure.
func TestVerifyUnauthenticated200MeansRefresh(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{UnauthenticatedOK: true}, "")
	tok := e.enroll(t, nil)
	v := e.p.(providers.Verifier)
	require.NoError(t, v.Verify(ctx, tok))
	e.sim.ExpireAccessTokens()
	err := v.Verify(ctx, tok)
	pe := requireClass(t, err, providers.InvalidGrant)
	assert.Equal(t, "invalid_token", pe.Code)
	e.requireNoSecret(t, err)
}

// TestAuthFailedReadsTheSimulatorsReplies: the replies of the GraphQL
// endpoint that refuse a token (a 401, a 200 "Unauthenticated.") are what
// AuthFailed reports, so that the gateway's proxy refreshes on them; a
// good answer, another GraphQL error and a body cut short are not.
func TestAuthFailedReadsTheSimulatorsReplies(t *testing.T) {
	ask := func(t *testing.T, e *env, token, query string) (int, http.Header, []byte) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"query": query})
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/graphql", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := e.srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header, raw
	}
	const query = `{ saleInvoices(first: 1) { nodes { id } } }`
	for _, unauthenticatedOK := range []bool{false, true} {
		t.Run(fmt.Sprintf("UnauthenticatedOK=%v", unauthenticatedOK), func(t *testing.T) {
			e := newEnv(t, sim.Options{UnauthenticatedOK: unauthenticatedOK}, "")
			d := e.p.(providers.AuthFailureDetector)
			tok := e.enroll(t, nil)
			status, h, body := ask(t, e, tok.AccessToken, query)
			assert.False(t, d.AuthFailed(status, h, body), "a good answer: %d %s", status, body)
			status, h, body = ask(t, e, tok.AccessToken, `{ me { id } }`)
			assert.False(t, d.AuthFailed(status, h, body), "another GraphQL error: %d %s", status, body)
			e.sim.ExpireAccessTokens()
			status, h, body = ask(t, e, tok.AccessToken, query)
			assert.True(t, d.AuthFailed(status, h, body), "the refusal of an expired token: %d %s", status, body)
			if unauthenticatedOK {
				require.Equal(t, http.StatusOK, status)
				assert.False(t, d.AuthFailed(status, h, body[:len(body)-2]), "a body cut short")
			}
		})
	}
}

// TestVerifyQueryIsBounded: the check asks for one invoice, whatever the
// size of the company's books.
func TestVerifyQueryIsBounded(t *testing.T) {
	e := newEnv(t, sim.Options{Invoices: 5000}, "")
	tok := e.enroll(t, nil)
	require.NoError(t, e.p.(providers.Verifier).Verify(context.Background(), tok))
	assert.Equal(t, 1, e.sim.Stats()["graphql"])
	assert.Zero(t, e.sim.Stats()["graphql.unbounded"], "the check asked for every invoice")
}

// TestGraphQLFollowsEndpoints: a catalog that points the token endpoint
// at another installation moves the GraphQL check with it;
// settings.graphql_url wins over both.
func TestGraphQLFollowsEndpoints(t *testing.T) {
	ctx := context.Background()
	real := sim.New(sim.Options{ClientID: clientID, ClientSecret: clientSecret, AutoApprove: true})
	srv := httptest.NewServer(real)
	t.Cleanup(srv.Close)
	for name, extra := range map[string]string{
		"token_url":   "    endpoint: {auth_url: '" + srv.URL + "/api/v1/oauth2/authorize', token_url: '" + srv.URL + "/api/v2/oauth2/token'}\n",
		"graphql_url": "    endpoint: {auth_url: '" + srv.URL + "/api/v1/oauth2/authorize', token_url: '" + srv.URL + "/oauth/token'}\n",
	} {
		t.Run(name, func(t *testing.T) {
			settings := "    settings: {base_url: 'http://127.0.0.1:1'}\n"
			if name == "graphql_url" {
				settings = "    settings: {base_url: 'http://127.0.0.1:1', graphql_url: '" + srv.URL + "/api/v1/graphql'}\n"
			}
			doc := "providers:\n  - name: luca\n    kind: luca\n    client_id: " + clientID + "\n    client_secret: {value: '" + clientSecret + "'}\n    grants: [authorization_code]\n" + extra + settings
			cat, err := providers.Load(strings.NewReader(doc), kinds)
			require.NoError(t, err)
			reg, err := cat.Open(ctx, nil, srv.Client())
			require.NoError(t, err)
			p, _, _ := reg.Get("luca")
			before := real.Stats()["graphql"]
			err = p.(providers.Verifier).Verify(ctx, &providers.Token{AccessToken: "unknown"})
			requireClass(t, err, providers.InvalidGrant)
			assert.Equal(t, before+1, real.Stats()["graphql"], "the check did not go to the catalog's installation")
		})
	}
}

// TestLoadRejects: what Luca cannot do fails when the catalog loads.
func TestLoadRejects(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"other scope":        {"scopes: [accounting, invoices]\n    settings: {base_url: 'https://x'}", `scope "invoices": Luca offers only the scope accounting`},
		"query without pkce": {"redirect_state: query\n    settings: {base_url: 'https://x'}", "redirect_state: query needs settings.pkce: true"},
		"bad redirect_state": {"redirect_state: cookie\n    settings: {base_url: 'https://x'}", "must be query or path"},
		"relative graphql":   {"settings: {base_url: 'https://x', graphql_url: /graphql}", "graphql_url"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := "providers:\n  - name: l\n    kind: luca\n    client_id: c\n    client_secret: {vault: 'providers/luca#client_secret'}\n    grants: [authorization_code]\n    " + tc.yaml + "\n"
			_, err := providers.Load(strings.NewReader(doc), kinds)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	for name, y := range map[string]string{
		"default is path":  "settings: {base_url: 'https://x'}",
		"query with pkce":  "redirect_state: query\n    settings: {base_url: 'https://x', pkce: true}",
		"accounting scope": "scopes: [accounting]\n    settings: {base_url: 'https://x'}",
	} {
		t.Run(name, func(t *testing.T) {
			doc := "providers:\n  - name: l\n    kind: luca\n    client_id: c\n    client_secret: {vault: 'providers/luca#client_secret'}\n    grants: [authorization_code]\n    " + y + "\n"
			cat, err := providers.Load(strings.NewReader(doc), kinds)
			require.NoError(t, err)
			if name == "default is path" {
				assert.Equal(t, providers.RedirectStatePath, cat.Entries()[0].RedirectState)
			}
		})
	}
}

// TestSimDropsStateAndBindsRedirect: the simulator's DropState mode
// leaves state out of the redirect, and RequireRedirectMatch refuses a
// code exchanged with another redirect URI (a code swapped between links
// whose redirect URIs differ).
func TestSimDropsStateAndBindsRedirect(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sim.Options{DropState: true, RequireRedirectMatch: true}, "")
	u, err := e.p.(providers.Authorizer).AuthCodeURL("st-1", verifier, redirectURL+"/link-a", nil, nil)
	require.NoError(t, err)
	q := e.follow(t, u)
	assert.False(t, q.Has("state"), "DropState still echoed state")
	code := q.Get("code")
	e.secrets = append(e.secrets, code)
	_, err = e.p.Exchange(ctx, providers.Grant{Type: providers.GrantAuthorizationCode, Code: code, RedirectURL: redirectURL + "/link-b"})
	requireClass(t, err, providers.InvalidGrant)
	e.requireNoSecret(t, err)
	_ = http.StatusOK
}
