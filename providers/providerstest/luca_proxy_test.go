package providerstest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	lucasim "github.com/tokenwarden/tokenwarden/providers/luca/sim"
)

// TestLucaAPIVariants (issue 11 point 7): Luca's GraphQL API end to end.
// A Laravel-style server answers a token it no longer accepts 200
// "Unauthenticated.": through the gateway's proxy that means one refresh
// and the request again with the fresh token, as a 401 does, and the
// refusal is relayed when the grant itself is dead. A catalog whose
// endpoints put Luca under another path takes the GraphQL check there.
func TestLucaAPIVariants(t *testing.T) {
	runVariants(t, []variant{
		lucaAPIVariant("luca-proxy-unauthenticated", "", lucaProxyUnauthenticated),
		lucaAPIVariant("luca-endpoints", "/installations/no-7", lucaEndpoints),
	})
}

// lucaAPI is a Luca simulator under prefix that remembers the Bearer
// token of every GraphQL request, in order.
type lucaAPI struct {
	sim    *lucasim.Server
	prefix string

	mu      sync.Mutex
	bearers []string
}

func (a *lucaAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, a.prefix)
	if !ok || !strings.HasPrefix(rest, "/") {
		http.NotFound(w, r)
		return
	}
	if rest == "/api/v1/graphql" {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.mu.Lock()
		a.bearers = append(a.bearers, tok)
		a.mu.Unlock()
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = rest, ""
	a.sim.ServeHTTP(w, r2)
}

func (a *lucaAPI) graphQLBearers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.bearers...)
}

// lucaAPIVariant is a Luca in UnauthenticatedOK mode under prefix ("" for
// the root) whose access tokens live ten minutes, so that no scheduled
// refresh comes between the ones a scenario counts. With a prefix the
// entry names the endpoints under it and base_url is a dead address, so
// that anything derived from base_url fails; the proxy's api_base_url is
// the GraphQL API's directory.
func lucaAPIVariant(name, prefix string, run func(t *check, h *harness, f *fixture, api *lucaAPI)) variant {
	api := &lucaAPI{prefix: prefix}
	return variant{name: name, kind: "luca", secret: lucaSecret,
		run: func(t *check, h *harness, f *fixture) { run(t, h, f, api) },
		sim: func(f *fixture) (http.Handler, controls) {
			s := lucasim.New(lucasim.Options{ClientID: lucaClientID, ClientSecret: lucaSecret, AutoApprove: true,
				Users: map[string]string{f.User: f.Password}, AccessTTL: 10 * time.Minute, UnauthenticatedOK: true})
			api.sim = s
			return api, controls{FailNext: s.FailNext, RateLimit: s.RateLimit, Malformed: s.Malformed,
				ExpireRefreshTokens: s.ExpireRefreshTokens, Valid: s.Valid, RevokeGrant: s.RevokeRefreshTokens,
				expireAccess: s.ExpireAccessTokens, stats: s.Stats}
		},
		entry: func(f *fixture) string {
			base, endpoint := f.URL, ""
			if prefix != "" {
				base = "http://127.0.0.1:1"
				endpoint = fmt.Sprintf("    endpoint: {auth_url: %q, token_url: %q}\n",
					f.URL+prefix+"/api/v1/oauth2/authorize", f.URL+prefix+"/api/v2/oauth2/token")
			}
			return fmt.Sprintf(`  - name: %s
    kind: luca
    client_id: %s
    client_secret: {vault: "providers/luca#client_secret"}
    grants: [authorization_code]
%s    api_base_url: %s/api/v1
    api_allow_internal: true
    forced_refresh_interval: 0s
    settings: {base_url: %q}
`, f.Name, lucaClientID, endpoint, f.URL+prefix, base)
		}}
}

// lucaProxyUnauthenticated: the access token dies at Luca, which says
// so with a 200 "Unauthenticated.". The proxied call comes back with the
// data, obtained with the fresh token after exactly one refresh. Then
// the grant dies too: the refusal is relayed, the link needs the
// end-user.
func lucaProxyUnauthenticated(t *check, h *harness, f *fixture, api *lucaAPI) {
	id := lucaEnroll(t, h, f)
	h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
	resp, body := lucaProxyGraphQL(t, h, id)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"saleInvoices"`)) {
		t.Fatalf("the GraphQL call through the proxy answered %d: %.200s", resp.StatusCode, body)
	}

	old := h.vaultToken(t, id).Value.AccessToken
	before := h.getLink(t, id).RefreshCount
	refreshes, queries := f.ctl.stats()["token.refresh_token"], len(api.graphQLBearers())
	f.ctl.expireAccess()
	resp, body = lucaProxyGraphQL(t, h, id)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"saleInvoices"`)) ||
		resp.Header.Get(tokenwarden.HeaderProxyRetry) != "retried" {
		t.Fatalf("after Luca stopped accepting the token the call answered %d, %s %q: %.200s",
			resp.StatusCode, tokenwarden.HeaderProxyRetry, resp.Header.Get(tokenwarden.HeaderProxyRetry), body)
	}
	fresh := h.vaultToken(t, id).Value.AccessToken
	if got := api.graphQLBearers()[queries:]; len(got) != 2 || got[0] != old || got[1] != fresh || fresh == old {
		t.Errorf("Luca saw %d GraphQL requests for the call; want the old token's, then the fresh token's", len(got))
	}
	if n := f.ctl.stats()["token.refresh_token"] - refreshes; n != 1 {
		t.Errorf("%d refreshes at Luca for one refused call, want 1", n)
	}
	l := h.waitLink(t, id, "refreshed", 15*time.Second, func(l *tokenwarden.Link) bool { return l.RefreshCount > before })
	if l.Status != "active" || l.RefreshCount != before+1 {
		t.Errorf("after the call: status %s, %d refreshes (before %d), want one more", l.Status, l.RefreshCount, before)
	}

	// The grant dies: the refresh fails, the refusal is relayed.
	f.ctl.RevokeGrant()
	resp, body = lucaProxyGraphQL(t, h, id)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("Unauthenticated.")) ||
		resp.Header.Get(tokenwarden.HeaderProxyRetry) != "refresh_failed" ||
		resp.Header.Get(tokenwarden.HeaderLinkStatus) != "reauth_required" {
		t.Fatalf("a refusal whose refresh found the grant dead answered %d, retry %q, link status %q: %.200s", resp.StatusCode,
			resp.Header.Get(tokenwarden.HeaderProxyRetry), resp.Header.Get(tokenwarden.HeaderLinkStatus), body)
	}
	h.waitLink(t, id, "reauth_required", 15*time.Second, isStatus("reauth_required"))
	h.revoke(t, id)
}

// lucaEndpoints: Luca under another path, named by the catalog's
// endpoints: enrollment goes there, and so does the GraphQL check, for
// a good token and for one Luca refuses.
func lucaEndpoints(t *check, h *harness, f *fixture, api *lucaAPI) {
	id := lucaEnroll(t, h, f)
	h.waitLink(t, id, "enrolled", 30*time.Second, isStatus("active"))
	wantVerified(t, h, id, true, "")
	f.ctl.expireAccess()
	wantVerified(t, h, id, false, "invalid_token")
	if n := f.ctl.stats()["graphql"]; n != 2 || len(api.graphQLBearers()) != 2 {
		t.Errorf("Luca under %s answered %d GraphQL checks (%d seen under the path), want 2", api.prefix, n, len(api.graphQLBearers()))
	}
	h.revoke(t, id)
}

// lucaProxyGraphQL asks the invoices query through the proxy of link id.
func lucaProxyGraphQL(t *check, h *harness, id string) (*http.Response, []byte) {
	t.Helper()
	q, _ := json.Marshal(map[string]string{"query": "{ saleInvoices(first: 2) { nodes { id } } }"})
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodPost, "/graphql", bytes.NewReader(q))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.s.Client.ProxyClient(id).Do(req)
	if err != nil {
		t.Fatalf("GraphQL through the proxy: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the proxy's answer: %v", err)
	}
	return resp, body
}
