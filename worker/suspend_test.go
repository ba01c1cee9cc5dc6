package worker_test

import (
	"context"
	"encoding/json"
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
// still reads Vault fine, must not serve that token.
func TestSuspendedLinkServesNoTokenWhenVaultWriteFails(t *testing.T) {
	t.Parallel()
	e, tap := newEngineWithTap(t, oidcpeer.Options{AccessTokenTTL: 10 * time.Minute, RequireOfflineAccess: true})
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
	for {
		row, err := e.Store.GetLink(ctx, e2e.Tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		if row.Status == string(workflows.StatusReauthRequired) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// PostgreSQL knows; the gateway learns within its poll interval
	// (about a second) and from then on refuses.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, errCode, _ := e.gatewayCall(ctx, "GET", "/v1/links/"+id+"/token")
		if code == http.StatusConflict && errCode == gateway.CodeReauthRequired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the link became reauth_required the gateway still answers its token read with %d %q, want 409 %s",
				code, errCode, gateway.CodeReauthRequired)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		if code, errCode, _ := e.gatewayCall(ctx, "GET", "/v1/links/"+id+"/token"); code != http.StatusConflict {
			t.Fatalf("token read %d after the refusal answered %d %q", i, code, errCode)
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
