// Package security_test attacks a whole Tokenwarden on the test stack the
// way an outsider would: with another tenant's API key, without one, and
// through the OAuth callback that browsers reach without any key.
package security_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
)

// stack is a Tokenwarden whose one provider, "peer", is a real OIDC server
// (oidc-provider) requiring PKCE for authorization codes.
type stack struct {
	*e2e.Stack
	peer *oidcpeer.Peer
}

func newStack(t *testing.T, cfg gateway.Config) *stack {
	t.Helper()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Hour})
	s := e2e.Start(t, e2e.Options{
		Gateway:      cfg,
		VaultSecrets: map[string]map[string]string{"providers/peer": {"client_secret": peer.ClientSecret}},
		Catalog: fmt.Sprintf(`providers:
  - name: peer
    kind: oidc
    issuer: %s
    auth_style: header
    client_id: %s
    client_secret: {vault: "providers/peer#client_secret"}
    scopes: [openid]
    grants: [authorization_code, client_credentials]
`, peer.Issuer, peer.ClientID),
	})
	return &stack{Stack: s, peer: peer}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// answer is a raw HTTP answer of the gateway.
type answer struct {
	status   int
	body     string
	location string
}

// do sends a request as a caller with key ("" for none), never following
// redirects.
func (s *stack) do(t *testing.T, method, path, key, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.Gateway.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location")}
}

// authLink creates an authorization_code link and returns it with the
// state of its authorization URL.
func (s *stack) authLink(t *testing.T, ctx context.Context, returnURL string) (*tokenwarden.Link, string) {
	t.Helper()
	l, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "alice",
		Grant: tokenwarden.GrantAuthorizationCode, Scopes: []string{"openid"}, ReturnURL: returnURL}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	u, err := url.Parse(l.AuthorizationURL)
	if err != nil || u.Query().Get("state") == "" || u.Query().Get("code_challenge") == "" {
		t.Fatalf("authorization URL without state or PKCE challenge (err %v)", err)
	}
	s.Remember(u.Query().Get("state"))
	return l, u.Query().Get("state")
}

// consent plays the end-user at the provider and returns the redirect back
// to the gateway, not yet followed.
func (s *stack) consent(t *testing.T, ctx context.Context, l *tokenwarden.Link) *url.URL {
	t.Helper()
	back, err := s.peer.Login(ctx, l.AuthorizationURL, "alice")
	if err != nil {
		t.Fatalf("consent at the peer: %v", err)
	}
	if !strings.HasPrefix(back.String(), s.Gateway.URL+gateway.CallbackPath) {
		t.Fatalf("the provider sent the browser elsewhere: %s", back.Redacted())
	}
	s.Remember(back.Query().Get("code"))
	return back
}

// callback follows a redirect to the gateway's callback with query q.
func (s *stack) callback(t *testing.T, q url.Values) answer {
	t.Helper()
	return s.do(t, http.MethodGet, gateway.CallbackPath+"?"+q.Encode(), "", "")
}

// eventTypes is the link's audit trail as event types.
func (s *stack) eventTypes(t *testing.T, ctx context.Context, id string) []string {
	t.Helper()
	p, err := s.Client.Events(ctx, id, "", 500)
	if err != nil {
		t.Fatalf("events of %s: %v", id, err)
	}
	var out []string
	for _, e := range p.Events {
		out = append(out, e.Type)
	}
	return out
}

func count(list []string, s string) int {
	n := 0
	for _, e := range list {
		if e == s {
			n++
		}
	}
	return n
}
