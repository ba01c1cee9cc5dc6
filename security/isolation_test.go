package security_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// bodies are request bodies that pass decoding on the routes that take
// one, so that an answer is about the link, not about the body.
var bodies = map[string]string{
	"POST /v1/links":                  `{}`,
	"POST /v1/links/{id}/revoke":      `{"reason":"intruder"}`,
	"DELETE /v1/links/{id}":           ``,
	"POST /v1/links/{id}/reauthorize": `{}`,
	"PUT /v1/webhook":                 `{"url":"https://intruder.example/hook"}`,
}

func errorCode(body string) string {
	var env struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &env)
	return env.Error.Code
}

// TestTenantIsolation tries every /v1 route the gateway serves against a
// real, active link: with another tenant's API key each link route must
// answer exactly as for a link that does not exist (404), and change
// nothing; without a key (or with a forged one) every route answers 401.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	s := newStack(t, gateway.Config{})
	ctx := testContext(t)

	l, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "victim", Grant: tokenwarden.GrantClientCredentials}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	s.WaitFor(ctx, l.ID, "active", e2e.Status(workflows.StatusActive))
	_, version := s.Token(ctx, l.ID)
	hook, err := s.Client.SetWebhook(ctx, "https://victim.example/hook", nil)
	if err != nil {
		t.Fatalf("set webhook: %v", err)
	}
	s.Remember(hook.Secret)
	s.WaitRecorded(ctx, l.ID) // the audit trail is written in the background
	eventsBefore := s.eventTypes(t, ctx, l.ID)

	if _, err := s.Store.EnsureTenant(ctx, "intruder", "Intruder"); err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := s.Store.CreateAPIKey(ctx, "intruder", "intruder")
	if err != nil {
		t.Fatal(err)
	}
	s.Remember(otherKey)

	const missing = "lnk_doesnotexistdoesnotexist"
	tried := 0
	for _, r := range s.GatewaySrv.Routes() {
		if !strings.HasPrefix(r.Path, "/v1/") || r.Path == gateway.CallbackPath ||
			strings.HasPrefix(r.Path, gateway.CallbackPath+"/") || strings.HasPrefix(r.Path, gateway.StartPath+"/") {
			// The browser's OAuth pages take no key (callback_test.go).
			continue
		}
		tried++
		name := r.Method + " " + r.Path
		body := bodies[name]
		if body == "" && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
			body = `{}`
		}
		path := strings.ReplaceAll(r.Path, "{id}", l.ID)

		// A HEAD answer has no body (RFC 9110 section 9.3.2): its status
		// alone is checked.
		head := r.Method == http.MethodHead
		for _, key := range []string{"", "tw_forged-key-0123456789abcdef"} {
			a := s.do(t, r.Method, path, key, body)
			if a.status != http.StatusUnauthorized || !head && errorCode(a.body) != gateway.CodeUnauthorized {
				t.Errorf("%s with key %q: %d %s, want 401 unauthorized", name, key, a.status, errorCode(a.body))
			}
		}

		a := s.do(t, r.Method, path, otherKey, body)
		if strings.Contains(a.body, l.ID) || strings.Contains(a.body, "victim") {
			t.Errorf("%s with another tenant's key: the answer names the victim's link or webhook", name)
		}
		if !strings.Contains(r.Path, "{id}") {
			// Tenant-wide routes answer about the intruder's own tenant
			// (checked above: never naming the victim's link or webhook;
			// and below: the victim's state is untouched).
			continue
		}
		ghost := s.do(t, r.Method, strings.ReplaceAll(r.Path, "{id}", missing), otherKey, body)
		if a.status != http.StatusNotFound || !head && errorCode(a.body) != gateway.CodeNotFound {
			t.Errorf("%s with another tenant's key: %d %s, want 404 not_found", name, a.status, errorCode(a.body))
		}
		if a.status != ghost.status || errorCode(a.body) != errorCode(ghost.body) {
			t.Errorf("%s: another tenant's link answers %d %s, a missing link %d %s: existence leaks",
				name, a.status, errorCode(a.body), ghost.status, errorCode(ghost.body))
		}
	}
	if tried < 12 {
		t.Fatalf("only %d /v1 routes tried; Routes() lost some", tried)
	}

	// Nothing the intruder did reached the victim.
	st, err := s.State(ctx, l.ID)
	if err != nil || st.Status != workflows.StatusActive {
		t.Fatalf("victim link after the attempts: status %q, err %v", st.Status, err)
	}
	if _, v := s.Token(ctx, l.ID); v != version {
		t.Errorf("victim token version %d -> %d: someone refreshed it", version, v)
	}
	if after := s.eventTypes(t, ctx, l.ID); len(after) != len(eventsBefore) {
		t.Errorf("victim audit trail grew from %v to %v", eventsBefore, after)
	}
	w, err := s.Client.GetWebhook(ctx)
	if err != nil || w.URL != "https://victim.example/hook" {
		t.Fatalf("victim webhook after the attempts: %v (err %v)", w, err)
	}
	if sec, err := s.Secrets.ReadWebhookSecret(ctx, e2e.Tenant); err != nil || sec != hook.Secret {
		t.Errorf("victim webhook secret changed or is gone (err %v)", err)
	}
	// The intruder's PUT made the intruder a webhook of its own, nothing more.
	if sec, err := s.Secrets.ReadWebhookSecret(ctx, "intruder"); err != nil || sec == hook.Secret {
		t.Errorf("intruder webhook secret: err %v, same as the victim's %v", err, sec == hook.Secret)
	}
}
