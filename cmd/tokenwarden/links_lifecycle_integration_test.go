package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestLinksLifecycleAgainstTheGateway runs 'links get' and 'links watch'
// against a real gateway and engine: the next step and the timeline of a
// live link, a forced refresh appearing in a running watch, Ctrl-C, and
// an unknown link.
func TestLinksLifecycleAgainstTheGateway(t *testing.T) {
	t.Parallel()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Hour})
	s := e2e.Start(t, e2e.PeerClientCredentials(peer))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	link, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "svc", Grant: tokenwarden.GrantClientCredentials}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	s.WaitFor(ctx, link.ID, "active", e2e.Status(workflows.StatusActive))
	// The flags, not the environment: this test runs in parallel.
	gw := []string{"--gateway", s.Gateway.URL, "--api-key", s.APIKey}

	// 'links get': the link, its next step, its timeline. The audit
	// trail is written beside the lifecycle: wait for the enrollment.
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var stdout, stderr bytes.Buffer
		if err := runLinks(ctx, append([]string{"get", link.ID}, gw...), &stdout, &stderr); err != nil {
			t.Fatalf("links get: %v", err)
		}
		out = stdout.String()
		if strings.Contains(out, "enrolled") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"status", "active", "Next: refresh at ", "before the token expires at", "Recent events (oldest first):", "enrolled"} {
		if !strings.Contains(out, want) {
			t.Errorf("links get: no %q in\n%s", want, out)
		}
	}

	// 'links watch': a forced refresh shows up as it happens.
	w := startWatch(t, append([]string{link.ID, "--interval", "200ms"}, gw...)...)
	waitFor(t, w.out, "Watching link "+link.ID+" (peer, user svc), status active; Ctrl-C to stop.")
	waitFor(t, w.out, "next: refresh at ")
	before := strings.Count(w.out.String(), "refreshed")
	if _, err := s.Client.Refresh(ctx, link.ID); err != nil {
		t.Fatalf("force refresh: %v", err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for strings.Count(w.out.String(), "refreshed") == before {
		if time.Now().After(deadline) {
			t.Fatalf("the forced refresh did not show in the watch within 30 s:\n%s", w.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := w.stop(t); err != nil {
		t.Fatalf("Ctrl-C: the watch ended with %v", err)
	}
	t.Logf("links watch:\n%s", w.out.String())

	// An unknown link: a clear error at once, naming the fix.
	var stdout, stderr bytes.Buffer
	err = runLinks(ctx, append([]string{"watch", "lnk_unknown"}, gw...), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "(not_found)") || !strings.Contains(err.Error(), "tokenwarden links list") {
		t.Errorf("watch of an unknown link: %v", err)
	}
	tok, _ := s.Token(ctx, link.ID)
	if strings.Contains(out+w.out.String(), tok.AccessToken) {
		t.Error("links get or watch printed the access token")
	}
	s.ScanForSecrets(ctx)
}
