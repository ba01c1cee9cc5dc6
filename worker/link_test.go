package worker_test

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

func active(st workflows.State) bool { return st.Status == workflows.StatusActive }

// TestAuthCodeLinkStaysFresh enrolls a link by authorization code + PKCE
// at a real OIDC server with 5-second access tokens and refresh token
// rotation (a replayed refresh token kills the grant), and watches it for
// a minute of wall time: every token read from Vault must be unexpired and
// active at the server, and the link must refresh on its own.
func TestAuthCodeLinkStaysFresh(t *testing.T) {
	t.Parallel()
	e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	e.StartWorker()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	id := e.createAuthCodeLink(ctx)
	first := e.WaitFor(ctx, id, "enrolled", active)
	if first.ExpirySource != "provider" {
		t.Errorf("expiry source = %q, want provider (expires_in)", first.ExpirySource)
	}
	tok, _ := e.Token(ctx, id)
	if tok.RefreshToken == "" {
		t.Fatal("enrollment stored no refresh token")
	}

	distinct := map[string]bool{}
	end := time.Now().Add(60 * time.Second)
	reads := 0
	for time.Now().Before(end) {
		tok, _ := e.Token(ctx, id)
		reads++
		if !tok.Expiry.After(time.Now()) {
			t.Fatalf("Vault holds an expired token (expired %s ago)", time.Since(tok.Expiry))
		}
		ok, _, err := e.peer.Introspect(ctx, tok.AccessToken)
		if err != nil {
			t.Fatalf("introspect: %v", err)
		}
		if !ok && time.Until(tok.Expiry) > time.Second {
			t.Fatalf("the stored access token is not active at the peer (read %d)", reads)
		}
		distinct[tok.AccessToken] = true
		time.Sleep(500 * time.Millisecond)
	}
	st, err := e.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != workflows.StatusActive || st.Refreshes < 8 {
		t.Fatalf("after 60 s: status %s, %d refreshes (want active, >= 8); last_error %q", st.Status, st.Refreshes, st.LastError)
	}
	if len(distinct) < 8 {
		t.Fatalf("only %d distinct access tokens in 60 s", len(distinct))
	}
	t.Logf("60 s: %d refreshes, %d distinct access tokens, %d reads all active", st.Refreshes, len(distinct), reads)

	// Force refresh returns a new token.
	before, beforeVer := e.Token(ctx, id)
	h, err := e.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.WorkflowID(tenant, id), UpdateName: workflows.UpdateRefresh,
		Args: []any{workflows.RefreshRequest{}}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.RefreshResult
	if err := h.Get(ctx, &res); err != nil {
		t.Fatalf("forced refresh: %v", err)
	}
	after, afterVer := e.Token(ctx, id)
	if !res.Refreshed || afterVer <= beforeVer || after.AccessToken == before.AccessToken {
		t.Fatalf("forced refresh did not store a new token (refreshed=%v, versions %d -> %d)", res.Refreshed, beforeVer, afterVer)
	}
	if ok, _, _ := e.peer.Introspect(ctx, after.AccessToken); !ok {
		t.Fatal("the force-refreshed token is not active")
	}

	// Revoke: the peer forgets the grant, Vault forgets the token, the
	// workflow ends.
	h, err = e.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.WorkflowID(tenant, id), UpdateName: workflows.UpdateRevoke,
		Args: []any{workflows.RevokeRequest{Reason: "test"}}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		t.Fatal(err)
	}
	var revoked workflows.State
	if err := h.Get(ctx, &revoked); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if revoked.Status != workflows.StatusRevoked {
		t.Fatalf("revoke answered status %s", revoked.Status)
	}
	if ok, _, err := e.peer.Introspect(ctx, after.AccessToken); err != nil || ok {
		t.Fatalf("after revoke the access token is still active at the peer (err %v)", err)
	}
	if _, err := e.Secrets.ReadToken(ctx, tenant, id); err == nil {
		t.Fatal("after revoke Vault still holds the token")
	}
	if err := e.Temporal.GetWorkflow(ctx, workflows.WorkflowID(tenant, id), "").Get(ctx, nil); err != nil {
		t.Fatalf("workflow did not complete cleanly: %v", err)
	}
	row, err := e.Store.GetLink(ctx, tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	if row.Status != string(workflows.StatusRevoked) {
		t.Fatalf("Postgres says %s, want revoked", row.Status)
	}
	events, _, err := e.Store.ListEvents(ctx, tenant, id, "", 500)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) < 2*8 {
		t.Fatalf("audit trail has %d events, want one per transition", len(events))
	}
	e.ScanForSecrets(ctx)
}

// TestClientCredentialsAndDeviceLinksStayFresh runs the two grants that
// need no browser redirect side by side.
func TestClientCredentialsAndDeviceLinksStayFresh(t *testing.T) {
	t.Parallel()
	e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, ClientCredentialsTTL: 5 * time.Second})
	e.StartWorker()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cc := e.createLink(ctx, providers.GrantClientCredentials, providers.Grant{})

	p, _, _ := e.Registry.Get("peer")
	da, err := p.(providers.DeviceAuthorizer).DeviceAuth(ctx, []string{"openid", "offline_access"})
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	e.Remember(da.DeviceCode)
	dev := e.createLink(ctx, providers.GrantDeviceCode, providers.Grant{DeviceCode: da.DeviceCode,
		Scopes: []string{"openid", "offline_access"}, DeviceInterval: da.Interval})
	e.WaitFor(ctx, dev, "pending", func(st workflows.State) bool { return st.Status == workflows.StatusPendingAuthorization })
	if err := e.peer.ApproveDevice(ctx, da.UserCode, "bob"); err != nil {
		t.Fatalf("approve device: %v", err)
	}

	for _, id := range []string{cc, dev} {
		e.WaitFor(ctx, id, "active", active)
	}
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		for _, id := range []string{cc, dev} {
			tok, _ := e.Token(ctx, id)
			if ok, _, err := e.peer.Introspect(ctx, tok.AccessToken); err != nil || (!ok && time.Until(tok.Expiry) > time.Second) {
				t.Fatalf("link %s: stored token not active (err %v)", id, err)
			}
		}
		time.Sleep(time.Second)
	}
	for _, id := range []string{cc, dev} {
		st, err := e.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != workflows.StatusActive || st.Refreshes < 3 {
			t.Fatalf("link %s after 20 s: %s with %d refreshes; last_error %q", id, st.Status, st.Refreshes, st.LastError)
		}
	}
	e.ScanForSecrets(ctx)
}
