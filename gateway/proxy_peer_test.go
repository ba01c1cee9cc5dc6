package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestProxyAgainstOIDCPeer: the proxy on the real stack in front of a
// certified OpenID Connect server's userinfo (the generic kind's API):
// a call with the link's token; paths that leave the API base; the grant
// revoked at the server while eight requests are on their way, which
// costs one refresh at the server for all of them and ends in
// reauth_required (in the 401s' Tokenwarden-Link-Status and the audit
// trail); then the link revoked, and the leak scan. (A 401 whose refresh
// succeeds is tested against the seed simulators: revoking an access
// token at oidc-provider revokes its grant.)
func TestProxyAgainstOIDCPeer(t *testing.T) {
	t.Parallel()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Minute, RequireOfflineAccess: true})
	s := e2e.Start(t, e2e.Options{
		VaultSecrets: peerSecrets(peer),
		Catalog: peerCatalog(peer, fmt.Sprintf(`    forced_refresh_interval: 0s
    api_base_url: %s
    api_allow_internal: true
`, peer.Issuer), ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	link, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "alice", Grant: "authorization_code"}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	callback, err := peer.Login(ctx, link.AuthorizationURL, "alice")
	if err != nil {
		t.Fatalf("login and consent at the peer: %v", err)
	}
	s.Remember(callback.Query().Get("code"), callback.Query().Get("state"))
	resp, err := http.Get(callback.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s.WaitFor(ctx, link.ID, "active", e2e.Status(workflows.StatusActive))
	// The proxy reads the link's status from PostgreSQL, which the audit
	// trail writes a moment later.
	for l, _ := s.Client.GetLink(ctx, link.ID); l == nil || l.Status != "active"; l, _ = s.Client.GetLink(ctx, link.ID) {
		if ctx.Err() != nil {
			t.Fatal("the link's row never became active")
		}
		time.Sleep(100 * time.Millisecond)
	}

	userinfo := strings.TrimPrefix(peer.UserinfoURL, strings.TrimRight(peer.Issuer, "/"))
	api := s.Client.ProxyClient(link.ID)
	call := func() (*http.Response, string) {
		t.Helper()
		resp, err := api.Get(userinfo)
		if err != nil {
			t.Fatalf("userinfo through the proxy: %v", err)
		}
		defer resp.Body.Close()
		var claims struct{ Sub string }
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &claims)
		return resp, claims.Sub
	}
	resp, sub := call()
	if resp.StatusCode != http.StatusOK || sub == "" || resp.Header.Get(tokenwarden.HeaderLinkStatus) != "active" {
		t.Fatalf("userinfo answered %d, sub %q, link status %q", resp.StatusCode, sub, resp.Header.Get(tokenwarden.HeaderLinkStatus))
	}

	// Only the API base.
	for _, p := range []string{"/../token", "/%2e%2e/token", "/token%2F..%2F..%2Fx"} {
		path, _ := url.PathUnescape(p)
		req := (&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawPath: p}, Header: http.Header{}}).WithContext(ctx)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if perr := tokenwarden.ProxyError(resp); tokenwarden.ErrorCode(perr) != tokenwarden.CodeBadRequest {
			t.Errorf("path %s: %d %v, want bad_request", p, resp.StatusCode, perr)
		}
	}

	// The access token revoked at the server, which (oidc-provider's
	// rule) revokes the grant, while eight requests use it: one refresh
	// at the server for all of them, which fails for good.
	tok, _ := s.Token(ctx, link.ID)
	if err := peer.ResetStats(ctx); err != nil {
		t.Fatal(err)
	}
	if err := peer.Revoke(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]string, 8)
	for i := range results {
		wg.Go(func() {
			resp, err := api.Get(userinfo)
			if err != nil {
				results[i] = err.Error()
				return
			}
			resp.Body.Close()
			results[i] = fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get(tokenwarden.HeaderLinkStatus), resp.Header.Get(tokenwarden.HeaderProxyRetry))
		})
	}
	wg.Wait()
	relayed := 0
	for i, r := range results {
		switch r {
		case "401 reauth_required refresh_failed":
			relayed++
		case "409 reauth_required ":
			// Started after the link had moved: the gateway's own answer.
		default:
			t.Errorf("request %d after the grant was revoked: %q, want 401 with reauth_required and refresh_failed", i, r)
		}
	}
	if relayed == 0 {
		t.Error("no request saw the provider's 401")
	}
	stats, err := peer.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := stats.TokenByGrantType["refresh_token"]; n != 1 {
		t.Errorf("%d refreshes at the peer for %d concurrent 401s, want 1", n, relayed)
	}
	t.Logf("8 requests after the grant was revoked: %d relayed 401s, 1 refresh at the peer; results %q", relayed, results)
	waitForReauthEvent(ctx, t, s, link.ID)
	if resp, err = api.Get(userinfo); err != nil {
		t.Fatal(err)
	}
	if perr := tokenwarden.ProxyError(resp); tokenwarden.ErrorCode(perr) != tokenwarden.CodeReauthRequired {
		t.Fatalf("a link needing re-authorization: %d %v, want reauth_required", resp.StatusCode, perr)
	}

	if err := s.Client.Revoke(ctx, link.ID, "test"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if resp, err = api.Get(userinfo); err != nil {
		t.Fatal(err)
	}
	if perr := tokenwarden.ProxyError(resp); tokenwarden.ErrorCode(perr) != tokenwarden.CodeLinkRevoked {
		t.Fatalf("a revoked link: %d %v, want link_revoked", resp.StatusCode, perr)
	}
	s.ScanForSecrets(ctx)
}

func waitForReauthEvent(ctx context.Context, t *testing.T, s *e2e.Stack, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		page, err := s.Client.Events(ctx, id, "", 200)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			if e.ToStatus == "reauth_required" {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no transition to reauth_required in the audit trail after 30 s")
}
