package e2e_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sdkworker "go.temporal.io/sdk/worker"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/worker"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestRefusedWebhookDeliveryIsShown: a tenant whose webhook resolves to an
// internal address (here loopback, which registration lets through for
// development) gets nothing, as before, and GET /v1/webhook now says so
// and why, instead of leaving the tenant to wonder.
func TestRefusedWebhookDeliveryIsShown(t *testing.T) {
	t.Parallel()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: time.Hour})
	o := e2e.PeerClientCredentials(peer)
	o.NoWorker = true
	s := e2e.Start(t, o)
	// A worker as production runs it: internal addresses refused.
	w := worker.New(s.Temporal, &activities.Activities{Providers: s.Registry, Secrets: s.Secrets, Store: s.Store}, sdkworker.Options{})
	if err := w.Start(); err != nil {
		t.Fatalf("worker: %v", err)
	}
	t.Cleanup(w.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	recv := newHookReceiver(t)
	// The query stands for a token of the receiver's own: never shown.
	hook, err := s.Client.SetWebhook(ctx, recv.srv.URL+"/tw?key=receiver-own-token", []string{tokenwarden.EventLinkActive})
	if err != nil {
		t.Fatalf("set webhook: %v", err)
	}
	s.Remember(hook.Secret)
	if hook.LastDelivery != nil || hook.FailuresSinceLastSuccess != 0 {
		t.Fatalf("a new webhook shows a delivery: %+v", hook)
	}

	link, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "svc", Grant: tokenwarden.GrantClientCredentials}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	s.WaitFor(ctx, link.ID, "active", e2e.Status(workflows.StatusActive))

	var shown *tokenwarden.Webhook
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if shown, err = s.Client.GetWebhook(ctx); err != nil {
			t.Fatalf("get webhook: %v", err)
		}
		if shown.LastDelivery != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if shown.LastDelivery == nil {
		t.Fatal("GET /v1/webhook shows no delivery attempt 60 s after the link.active event: the tenant cannot see why nothing arrives")
	}
	d := shown.LastDelivery
	t.Logf("GET /v1/webhook: last_delivery %+v, failures_since_last_success %d", *d, shown.FailuresSinceLastSuccess)
	switch {
	case d.OK || d.Retrying:
		t.Errorf("a refused delivery shows ok=%v retrying=%v", d.OK, d.Retrying)
	case d.Event != tokenwarden.EventLinkActive || !strings.HasPrefix(d.EventID, "evt_"):
		t.Errorf("last delivery names event %q (%q)", d.Event, d.EventID)
	case !strings.Contains(d.Problem, "internal address") || !strings.Contains(d.Problem, "public addresses only"):
		t.Errorf("the problem does not say why: %q", d.Problem)
	case strings.Contains(d.Problem, "receiver-own-token") || strings.Contains(d.Problem, "/tw"):
		t.Errorf("the problem quotes the URL's path or query: %q", d.Problem)
	case time.Since(d.At) > time.Minute || d.At.After(time.Now().Add(time.Second)):
		t.Errorf("last delivery at %s", d.At)
	case shown.FailuresSinceLastSuccess != 1 || !shown.LastSuccessAt.IsZero():
		t.Errorf("failures since last success %d, last success %s", shown.FailuresSinceLastSuccess, shown.LastSuccessAt)
	}

	// The raw answer has the documented shape.
	req, err := s.Client.NewRequest(ctx, "GET", "/v1/webhook", nil)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := s.Client.Do(req, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"last_delivery", "last_success_at", "failures_since_last_success"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("GET /v1/webhook has no %q", k)
		}
	}
	if got := string(raw["last_success_at"]); got != "null" {
		t.Errorf("last_success_at = %s, want null", got)
	}

	recv.mu.Lock()
	n := len(recv.got)
	recv.mu.Unlock()
	if n != 0 {
		t.Errorf("%d deliveries reached the internal address", n)
	}
	assertNotInPostgres(t, s, hook.Secret)
}
