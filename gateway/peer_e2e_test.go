package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestGatewayAgainstOIDCPeer is the user's path end to end, on the real
// stack with a real OpenID Connect server (5-second tokens, refresh token
// rotation): create an authorization-code link through the API, follow
// authorization_url through a scripted login and consent, land on the
// gateway's callback, then fetch tokens through the API for 60 s and check
// each one at the server; meanwhile an http.Client built on the Go
// TokenSource calls the server's userinfo endpoint across many expiries;
// finally revoke through the API.
func TestGatewayAgainstOIDCPeer(t *testing.T) {
	t.Parallel()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	s := e2e.Start(t, e2e.Options{
		VaultSecrets: peerSecrets(peer),
		Catalog:      peerCatalog(peer, "    schedule: {min_margin: 1s, default_lifetime: 5s}\n", ""),
		Gateway:      gateway.Config{TokenMargin: time.Second},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	link, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "alice", Grant: "authorization_code"}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	if link.AuthorizationURL == "" || link.Status != "pending_authorization" && link.Status != "pending" {
		t.Fatalf("create answered status %q, authorization_url set: %v", link.Status, link.AuthorizationURL != "")
	}
	callback, err := peer.Login(ctx, link.AuthorizationURL, "alice")
	if err != nil {
		t.Fatalf("login and consent at the peer: %v", err)
	}
	if !strings.HasPrefix(callback.String(), s.Gateway.URL+gateway.CallbackPath) {
		t.Fatalf("the peer redirected elsewhere than the gateway's callback")
	}
	s.Remember(callback.Query().Get("code"), callback.Query().Get("state"))
	resp, err := http.Get(callback.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(string(page)), "connected") {
		t.Fatalf("callback answered %d", resp.StatusCode)
	}
	s.WaitFor(ctx, link.ID, "active", e2e.Status(workflows.StatusActive))

	// The Go TokenSource, used the way a service would.
	httpc := oauth2.NewClient(ctx, s.Client.TokenSource(link.ID))
	userinfo := func() error {
		resp, err := httpc.Get(peer.UserinfoURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var claims struct{ Sub string }
		_ = json.NewDecoder(resp.Body).Decode(&claims)
		if resp.StatusCode != http.StatusOK || claims.Sub == "" {
			return fmt.Errorf("userinfo answered %d", resp.StatusCode)
		}
		return nil
	}

	distinct := map[string]bool{}
	reads, calls := 0, 0
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		tok, err := s.Client.Token(ctx, link.ID, 0)
		if err != nil {
			t.Fatalf("GET /v1/links/%s/token: %v", link.ID, err)
		}
		reads++
		s.Remember(tok.AccessToken)
		if !tok.Expiry.After(time.Now()) {
			t.Fatalf("the gateway served an expired token")
		}
		active, _, err := peer.Introspect(ctx, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if !active && time.Until(tok.Expiry) > 500*time.Millisecond {
			t.Fatalf("read %d: the served token is not active at the peer", reads)
		}
		distinct[tok.AccessToken] = true
		if err := userinfo(); err != nil {
			t.Fatalf("TokenSource client, call %d: %v", calls+1, err)
		}
		calls++
		time.Sleep(400 * time.Millisecond)
	}
	if len(distinct) < 8 {
		t.Fatalf("only %d distinct tokens served in 60 s of 5-second tokens", len(distinct))
	}
	got, err := s.Client.GetLink(ctx, link.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "active" || got.RefreshCount < 8 {
		t.Fatalf("after 60 s: %s with %d refreshes", got.Status, got.RefreshCount)
	}
	stats, err := peer.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := stats.TokenErrorsByGrantType["refresh_token"]; n > 0 {
		t.Fatalf("the peer rejected %d refreshes", n)
	}
	// The workflow refreshes on its schedule; reads must not multiply
	// provider calls (at most one refresh per ~2 s of 5-second tokens).
	if n := stats.TokenByGrantType["refresh_token"]; n > 40 {
		t.Fatalf("%d refreshes at the peer for 60 s of 5-second tokens", n)
	}
	t.Logf("60 s: %d token reads (%d distinct tokens, all active), %d userinfo calls through the TokenSource, %d refreshes at the peer",
		reads, len(distinct), calls, stats.TokenByGrantType["refresh_token"])

	last, _ := s.Token(ctx, link.ID)
	if err := s.Client.Revoke(ctx, link.ID, "test"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if active, _, _ := peer.Introspect(ctx, last.AccessToken); active {
		t.Fatal("after revoke the token is still active at the peer")
	}
	_, err = s.Client.Token(ctx, link.ID, 0)
	if tokenwarden.ErrorCode(err) != "link_revoked" {
		t.Fatalf("token of a revoked link: %v, want link_revoked", err)
	}
	if err := userinfo(); err == nil {
		t.Fatal("the TokenSource client still works after revoke")
	}
	s.ScanForSecrets(ctx)
}
