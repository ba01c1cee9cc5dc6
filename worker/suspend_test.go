package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	sdkworker "go.temporal.io/sdk/worker"

	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// gatewayCall is one request to the engine's gateway, as a caller makes
// it: the status, the error code (if any) and the response headers. The
// body is never returned, since it may hold a token.
func (e *engine) gatewayCall(ctx context.Context, method, path string) (int, string, http.Header) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.Gateway.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Code, resp.Header
}

// TestSuspendedLinkServesNoTokenWhenVaultWriteFails: the peer rejects a
// link's refresh token, and at that very moment Vault becomes unreachable
// for the worker (a TCP proxy in front of Vault, for the worker process
// only, is cut). The workflow moves the link to reauth_required, but its
// Suspend cannot clear the access token in Vault; the gateway, which
// still reads Vault fine, must not serve that token from the moment the
// status is recorded: it hears of it from the row's notification, not
// from its poll (made too slow to tell here).
func TestSuspendedLinkServesNoTokenWhenVaultWriteFails(t *testing.T) {
	t.Parallel()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: 10 * time.Minute, RequireOfflineAccess: true})
	tap := newHTTPTap(t, peer.TokenURL)
	u, _ := url.Parse(peer.TokenURL)
	e := newEngineGateway(t, peer, fmt.Sprintf("\n    endpoint: {token_url: %q}", tap.URL+u.Path), defaultTestSchedule,
		gateway.Config{StatusPoll: 10 * time.Minute, RateLimit: 1e6, RateBurst: 1 << 20})
	vaultURL, err := url.Parse(e.Info.VaultAddress)
	if err != nil {
		t.Fatal(err)
	}
	// The worker reaches Vault through vault; the gateway and the test
	// directly.
	vault := newTCPCut(t, vaultURL.Host)
	e.startWorkerWith(e.Info.TemporalAddress, e.vaultVia(vaultURL.Scheme+"://"+vault.addr()), sdkworker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	id := e.createAuthCodeLink(ctx)
	e.WaitFor(ctx, id, "enrolled", active)
	if code, _, _ := e.gatewayCall(ctx, "GET", "/v1/links/"+id+"/token"); code != 200 {
		t.Fatalf("active link: token answered %d", code)
	}

	// The grant dies at the peer; the worker loses Vault as it learns so.
	if err := e.peer.InjectFault(ctx, oidcpeer.Fault{Count: 100, Status: 400, Error: "invalid_grant", GrantType: "refresh_token"}); err != nil {
		t.Fatal(err)
	}
	tap.setAfter(func(r *http.Request, body []byte, status int) bool {
		if grantOf(body) == "refresh_token" && status == http.StatusBadRequest {
			vault.set(cutRefuse)
		}
		return true
	})
	// The workflow answers refresh requests only once the token is cleared
	// (a caller told reauth_required must not then get the token), which
	// cannot happen while Vault is cut: the caller hears "retry later".
	code, errCode, _ := e.gatewayCall(ctx, "POST", "/v1/links/"+id+"/refresh")
	if code != http.StatusServiceUnavailable || errCode != gateway.CodeRefreshFailed {
		t.Fatalf("refresh with the grant gone and Vault cut answered %d %q, want 503 %s", code, errCode, gateway.CodeRefreshFailed)
	}
	e.WaitFor(ctx, id, "reauth_required", e2e.Status(workflows.StatusReauthRequired))
	// The point of the test: the suspend did not reach Vault.
	if tok, _ := e.Token(ctx, id); tok.AccessToken == "" {
		t.Fatal("precondition: Suspend cleared the access token although Vault was cut for the worker")
	}
	// Read the token without pause while waiting for the row. A gateway
	// whose token cache holds its lease has heard every status committed
	// a lease before (gateway/linkstatus.go): every read that begins
	// later must refuse. The poll is too slow to be the one that tells.
	var seen time.Time
	for reads := 0; reads < 20; {
		began := time.Now()
		code, errCode, _ := e.gatewayCall(ctx, "GET", "/v1/links/"+id+"/token")
		switch {
		case !seen.IsZero() && began.After(seen.Add(gateway.DefaultTokenCacheLease)):
			reads++
			if code != http.StatusConflict || errCode != gateway.CodeReauthRequired {
				t.Fatalf("token read %d, a cache lease after the link's row said reauth_required, answered %d %q, want 409 %s",
					reads, code, errCode, gateway.CodeReauthRequired)
			}
		case seen.IsZero():
			row, err := e.Store.GetLink(ctx, e2e.Tenant, id)
			if err != nil {
				t.Fatal(err)
			}
			if row.Status == string(workflows.StatusReauthRequired) {
				seen = time.Now()
			}
		}
	}
	e.ScanForSecrets(ctx)
}

// TestFailedLinkRefreshAnswersLinkFailed: a link whose enrollment failed
// answers a refresh with 409 link_failed (not link_revoked), and its
// token read the same.
func TestFailedLinkRefreshAnswersLinkFailed(t *testing.T) {
	t.Parallel()
	e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	e.StartWorker()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	id := e.createLink(ctx, providers.GrantAuthorizationCode, providers.Grant{Code: "not-a-code-the-peer-issued",
		CodeVerifier: strings.Repeat("v", 43), RedirectURL: "http://127.0.0.1/v1/oauth/callback", Scopes: []string{"openid", "offline_access"}})
	if err := e.Temporal.SignalWorkflow(ctx, workflows.WorkflowID(tenant, id), "", workflows.SignalAuthorized, nil); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(ctx, id, "failed", e2e.Status(workflows.StatusFailed))
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/links/" + id + "/refresh"},
		{"GET", "/v1/links/" + id + "/token"},
	} {
		code, errCode, _ := e.gatewayCall(ctx, c.method, c.path)
		if code != http.StatusConflict || errCode != gateway.CodeLinkFailed {
			t.Errorf("%s %s on a failed link answered %d %q, want 409 %s", c.method, c.path, code, errCode, gateway.CodeLinkFailed)
		}
	}
}
