package gateway_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestSubjectBindingAgainstOIDCPeer: with a real OpenID Connect server
// (real ID tokens, signed, with the nonce echoed), a link enrolls with
// its ID token verified and is bound to the end-user who consented. After
// its grant dies, a re-authorization by another end-user is refused (the
// link stays reauth_required, its last_error says why, nothing stored
// changes); with allow_subject_change the other end-user takes it over.
func TestSubjectBindingAgainstOIDCPeer(t *testing.T) {
	t.Parallel()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Minute, RequireOfflineAccess: true})
	s := e2e.Start(t, e2e.Options{
		VaultSecrets: peerSecrets(peer),
		Catalog:      peerCatalog(peer, "", ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// consent sends username's browser through authURL and to the
	// gateway's callback.
	consent := func(authURL, username string) {
		t.Helper()
		callback, err := peer.Login(ctx, authURL, username)
		if err != nil {
			t.Fatalf("login and consent at the peer as %s: %v", username, err)
		}
		s.Remember(callback.Query().Get("code"), callback.Query().Get("state"))
		resp, err := http.Get(callback.String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("callback answered %d", resp.StatusCode)
		}
	}
	subject := func(id string) string {
		t.Helper()
		sub, err := s.Store.LinkSubject(ctx, e2e.Tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	reauthorize := func(id string, body map[string]any) string {
		t.Helper()
		req, err := s.Client.NewRequest(ctx, http.MethodPost, "/v1/links/"+id+"/reauthorize", body)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			AuthorizationURL string `json:"authorization_url"`
		}
		if err := s.Client.Do(req, &out); err != nil {
			t.Fatalf("reauthorize %v: %v", body, err)
		}
		return out.AuthorizationURL
	}

	link, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "alice", Grant: "authorization_code"}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	if !strings.Contains(link.AuthorizationURL, "nonce=") {
		t.Fatal("the authorization URL of an oidc provider carries no nonce")
	}
	consent(link.AuthorizationURL, "alice")
	s.WaitFor(ctx, link.ID, "active", e2e.Status(workflows.StatusActive))
	if got := subject(link.ID); got != "alice" {
		t.Fatalf("link subject %q after alice consented", got)
	}

	// The grant dies at the provider: the link needs re-authorization.
	tok, _ := s.Token(ctx, link.ID)
	if err := peer.Revoke(ctx, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Client.Refresh(ctx, link.ID)
	s.WaitFor(ctx, link.ID, "reauth_required", e2e.Status(workflows.StatusReauthRequired))
	// The gateway's reauthorize reads the links row, which the workflow
	// writes in the background.
	s.WaitRecorded(ctx, link.ID)
	before, _ := s.Token(ctx, link.ID)

	// Mallory completes the consent URL meant for alice.
	consent(reauthorize(link.ID, map[string]any{}), "mallory")
	st := s.WaitFor(ctx, link.ID, "the re-authorization refused", func(st workflows.State) bool {
		return strings.Contains(st.LastError, "re-authorization refused")
	})
	if st.Status != workflows.StatusReauthRequired {
		t.Fatalf("after the refused re-authorization the link is %s", st.Status)
	}
	if strings.Contains(st.LastError, "mallory") || strings.Contains(st.LastError, "alice") {
		t.Fatalf("last_error names an end-user: %q", st.LastError)
	}
	// The workflow suspends the link again (a rewrite of the same token,
	// so its version moves): what is stored must be the same.
	after, _ := s.Token(ctx, link.ID)
	if after.RefreshToken != before.RefreshToken || after.AccessToken != before.AccessToken || after.Subject != before.Subject {
		t.Fatal("the refused re-authorization changed the stored token")
	}
	if got := subject(link.ID); got != "alice" {
		t.Fatalf("link subject %q after mallory was refused", got)
	}
	// The API reads the links row, which the workflow records in the
	// background: poll it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.Client.GetLink(ctx, link.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == "reauth_required" && strings.Contains(got.LastError, "allow_subject_change") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API shows %s with last_error %q", got.Status, got.LastError)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Allowed explicitly, mallory takes the link over.
	consent(reauthorize(link.ID, map[string]any{"allow_subject_change": true}), "mallory")
	s.WaitFor(ctx, link.ID, "active", e2e.Status(workflows.StatusActive))
	if got := subject(link.ID); got != "mallory" {
		t.Fatalf("link subject %q after an allowed change to mallory", got)
	}
	s.ScanForSecrets(ctx)
}
